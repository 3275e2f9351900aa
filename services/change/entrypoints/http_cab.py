"""HTTP API of risk and approvals (ISO/IEC 20000-1 8.5.1): the risk rule set and assessments,
the approval policies, decisions on a change's approval steps, the approver's queue and CAB
meetings. Thin handlers: validate, call a use case (`application/risk.py`,
`application/approvals.py`) in a unit of work with the service's reactions, answer. Refusals
are the typed errors of `shared/errors.py`, mapped once to problem+json."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from services.change.application import approvals, risk
from services.change.application.reactions import unit_of_work
from services.change.domain.approvals import ApprovalPolicies, Approvers, PolicyRow
from services.change.domain.risk import RiskRules, RiskThresholds, RiskWeights
from services.change.metrics import ChangeMetrics
from shared.context import RequestContext
from shared.errors import NotFound
from shared.http.context import authorize
from shared.http.etags import IfMatch, etag, if_match_version
from shared.http.models import RequestBody
from shared.service import ServiceRuntime, runtime_of
from shared.timestamps import Timestamp

router = APIRouter(tags=["risk and approvals"])
Runtime = Annotated[ServiceRuntime, Depends(runtime_of)]


def _metrics(runtime: ServiceRuntime) -> ChangeMetrics | None:
    found = runtime.service_metrics
    return found if isinstance(found, ChangeMetrics) else None


# --- risk ------------------------------------------------------------------------------------


class RiskSettingsBody(RequestBody):
    """The tenant's risk rule set (a field left out takes its default)."""

    weights: RiskWeights = Field(default_factory=RiskWeights)
    thresholds: RiskThresholds = Field(default_factory=RiskThresholds)
    blast_radius_hops: int = Field(
        default=2, ge=1, le=10, description="How far up the CMDB graph the blast radius walks."
    )


class RiskSettingsOut(RiskSettingsBody):
    """The rule set in force and its version (0: the defaults, never saved)."""

    version: int


def _rules_response(version: int, rules: RiskRules) -> JSONResponse:
    body = {**rules.model_dump(mode="json"), "version": version}
    return JSONResponse(body, headers={"ETag": etag(version)})


@router.get(
    "/risk-settings",
    response_model=RiskSettingsOut,
    summary="The tenant's risk rule set: weights, level thresholds, blast-radius hops",
)
async def get_risk_settings(
    context: Annotated[RequestContext, authorize("risk:read")], runtime: Runtime
) -> JSONResponse:
    async with unit_of_work(runtime.pool, context) as uow:
        version, rules = await risk.risk_rules(uow)
    return _rules_response(version, rules)


@router.put(
    "/risk-settings",
    response_model=RiskSettingsOut,
    summary='Save a new version of the risk rule set (If-Match required; "0" the first time)',
)
async def put_risk_settings(
    body: RiskSettingsBody,
    context: Annotated[RequestContext, authorize("change_policy:configure")],
    runtime: Runtime,
    if_match: IfMatch = None,
) -> JSONResponse:
    expected = if_match_version(if_match, required=True)
    assert expected is not None
    rules = RiskRules.model_validate(body.model_dump())
    async with unit_of_work(runtime.pool, context) as uow:
        version, saved = await risk.replace_risk_rules(
            uow, rules, expected_version=expected, now=approvals.utc_now()
        )
    return _rules_response(version, saved)


class AssessmentRequest(RequestBody):
    """Body of POST /changes/{id}/risk-assessments: optionally, a person's override."""

    level: Literal["low", "medium", "high"] | None = Field(
        default=None, description="Override the computed level (needs a reason)."
    )
    reason: str | None = Field(default=None, max_length=2000)


class FactorOut(BaseModel):
    """One factor of the score."""

    name: str
    input: Any
    contribution: float
    explanation: str


class AssessmentOut(BaseModel):
    """A recorded risk assessment: inputs, factors with contributions, score and level."""

    id: uuid.UUID
    change_id: uuid.UUID
    change_version: int = Field(description="The change's version that carries its level.")
    rule_set_version: int
    inputs: dict[str, Any]
    factors: list[FactorOut]
    score: float
    computed_level: str
    level: str = Field(description="The level in force (an override when override_reason).")
    override_reason: str | None
    assessed_at: datetime
    assessed_by: str


class AssessmentList(BaseModel):
    """A change's assessments, newest first."""

    items: list[AssessmentOut]


@router.post(
    "/changes/{change_id}/risk-assessments",
    status_code=201,
    response_model=AssessmentOut,
    summary="Assess a change's risk now and set its risk level (a new version of the change)",
    responses={409: {"description": "The change is past being assessed"}},
)
async def post_risk_assessment(
    change_id: uuid.UUID,
    body: AssessmentRequest,
    context: Annotated[RequestContext, authorize("risk:assess")],
    runtime: Runtime,
) -> JSONResponse:
    async with unit_of_work(runtime.pool, context) as uow:
        assessed = await risk.assess_change(
            uow,
            change_id,
            now=approvals.utc_now(),
            level=body.level,
            reason=body.reason,
            sources=risk.SCHEDULE_SOURCES,
        )
    view = AssessmentOut.model_validate(risk.assessment_view(assessed)).model_dump(mode="json")
    location = f"/changes/{change_id}/risk-assessments/{assessed.id}"
    return JSONResponse(view, status_code=201, headers={"Location": location})


@router.get(
    "/changes/{change_id}/risk-assessments",
    response_model=AssessmentList,
    summary="Every risk assessment of a change, newest first",
)
async def list_risk_assessments(
    change_id: uuid.UUID,
    context: Annotated[RequestContext, authorize("risk:read")],
    runtime: Runtime,
) -> dict[str, Any]:
    async with unit_of_work(runtime.pool, context) as uow:
        found = await risk.assessments(uow, change_id)
    return {"items": [risk.assessment_view(a) for a in found]}


@router.get(
    "/changes/{change_id}/risk-assessments/latest",
    response_model=AssessmentOut,
    summary="A change's latest risk assessment",
)
async def latest_risk_assessment(
    change_id: uuid.UUID,
    context: Annotated[RequestContext, authorize("risk:read")],
    runtime: Runtime,
) -> dict[str, Any]:
    async with unit_of_work(runtime.pool, context) as uow:
        found = await risk.assessments(uow, change_id)
    if not found:
        raise NotFound("risk assessment of change", str(change_id))
    return risk.assessment_view(found[0])


# --- approval policies -----------------------------------------------------------------------


class ApprovalPoliciesBody(RequestBody):
    """The tenant's approval policies: the decision table (first matching row wins) and the
    members of each assignment group."""

    rows: list[PolicyRow] = Field(max_length=100)
    groups: dict[str, list[str]] = Field(
        default_factory=dict, description="Assignment group -> its members' user names."
    )


class ApprovalPoliciesOut(ApprovalPoliciesBody):
    """The policies in force and their version (0: the defaults, never saved)."""

    version: int


def _policies_response(version: int, policies: ApprovalPolicies) -> JSONResponse:
    body = {**policies.model_dump(mode="json"), "version": version}
    return JSONResponse(body, headers={"ETag": etag(version)})


@router.get(
    "/approval-policies",
    response_model=ApprovalPoliciesOut,
    summary="The tenant's approval policies (the defaults until it saves its own)",
)
async def get_approval_policies(
    context: Annotated[RequestContext, authorize("risk:read")], runtime: Runtime
) -> JSONResponse:
    async with unit_of_work(runtime.pool, context) as uow:
        version, policies = await approvals.approval_policies(uow)
    return _policies_response(version, policies)


@router.put(
    "/approval-policies",
    response_model=ApprovalPoliciesOut,
    summary='Save a new version of the approval policies (If-Match required; "0" the first time)',
)
async def put_approval_policies(
    body: ApprovalPoliciesBody,
    context: Annotated[RequestContext, authorize("change_policy:configure")],
    runtime: Runtime,
    if_match: IfMatch = None,
) -> JSONResponse:
    expected = if_match_version(if_match, required=True)
    assert expected is not None
    policies = ApprovalPolicies(
        rows=tuple(body.rows), groups={g: tuple(m) for g, m in body.groups.items()}
    )
    async with unit_of_work(runtime.pool, context) as uow:
        version, saved = await approvals.replace_approval_policies(
            uow, policies, expected_version=expected, now=approvals.utc_now()
        )
    return _policies_response(version, saved)


# --- decisions -------------------------------------------------------------------------------


class DecisionBody(RequestBody):
    """Body of POST /changes/{id}/approvals."""

    decision: Literal["approve", "reject"]
    comment: str = Field(default="", max_length=5000, description="Required to reject.")
    content_hash: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="The content hash the approver read; refused (409) if it changed since.",
    )
    blackout_override_reason: str | None = Field(
        default=None,
        max_length=2000,
        description=(
            "An emergency override: why the change may be scheduled into a blackout. Without"
            " it, the approval that would schedule the change into a blackout is refused (409"
            " naming each blackout and its CIs); with it, the override is recorded."
        ),
    )


class DecisionOut(BaseModel):
    """A decision, bound to the change's content hash when it was made."""

    id: uuid.UUID
    step_id: uuid.UUID
    step: str | None
    approver: str
    decision: str
    comment: str
    content_hash: str
    void: bool = Field(description="Its content hash is not the change's: it does not count.")
    at: datetime
    cab_meeting_id: uuid.UUID | None


class StepOut(BaseModel):
    """An approval step of the change's latest round."""

    id: uuid.UUID
    round: int
    position: int
    name: str
    approvers: Approvers
    quorum: str
    n: int | None
    deadline: float = Field(description="Seconds from the step becoming pending.")
    content_hash: str
    state: str
    outcome: str = Field(description="pending, approved or rejected, from the counted decisions")
    opened_at: datetime
    deadline_at: datetime | None
    escalations: int
    completed_at: datetime | None


class AuthorizationOut(BaseModel):
    """A change's authorization: status, the latest round's steps, who approved, and every
    decision (void ones marked)."""

    status: Literal["not_required", "pending", "approved", "rejected"]
    content_hash: str
    round: int
    steps: list[StepOut]
    approved_by: list[str]
    decisions: list[DecisionOut]


def _authorization(a: approvals.Authorization) -> dict[str, Any]:
    out = AuthorizationOut.model_validate(approvals.authorization_view(a))
    return out.model_dump(mode="json")


@router.get(
    "/changes/{change_id}/approvals",
    response_model=AuthorizationOut,
    summary="A change's authorization: its approval steps and every decision",
)
async def get_approvals(
    change_id: uuid.UUID,
    context: Annotated[RequestContext, authorize("approval:read")],
    runtime: Runtime,
) -> dict[str, Any]:
    async with unit_of_work(runtime.pool, context) as uow:
        change = await uow.changes.get(change_id)
        if change is None:
            raise NotFound("change", str(change_id))
        return _authorization(await approvals.authorization(uow, change))


_DECISION_REFUSALS: dict[int | str, dict[str, Any]] = {
    403: {"description": "The requester or implementer, or not an approver of the pending step"},
    409: {
        "description": "Not awaiting approval, the content changed since it was read, or the"
        " caller already decided on this step"
    },
}


@router.post(
    "/changes/{change_id}/approvals",
    status_code=201,
    response_model=AuthorizationOut,
    summary="Approve or reject the change's pending approval step",
    responses=_DECISION_REFUSALS,
)
async def post_approval(
    change_id: uuid.UUID,
    body: DecisionBody,
    context: Annotated[RequestContext, authorize("approval:decide")],
    runtime: Runtime,
) -> JSONResponse:
    async with unit_of_work(runtime.pool, context) as uow:
        decided = await approvals.decide(
            uow,
            change_id,
            decision=body.decision,
            comment=body.comment,
            content_hash=body.content_hash,
            now=approvals.utc_now(),
            metrics=_metrics(runtime),
            blackout_override_reason=body.blackout_override_reason,
        )
    return JSONResponse(_authorization(decided), status_code=201)


# --- the approver's queue --------------------------------------------------------------------


class ChangeSummary(BaseModel):
    """What an approver sees of a change at a glance."""

    id: uuid.UUID
    reference: str | None
    title: str
    type: str
    state: str
    risk_level: str | None
    requester: str
    assignment_group: str | None
    affected_cis: list[uuid.UUID]
    business_services: list[str]
    planned_start: datetime | None
    planned_end: datetime | None
    content_hash: str


class PendingStepOut(BaseModel):
    """A pending step as the queue and the agenda show it."""

    id: uuid.UUID
    round: int
    position: int
    name: str
    approvers: Approvers
    quorum: str
    n: int | None
    deadline_at: datetime | None
    escalations: int


class QueueItem(BaseModel):
    """A decision awaiting the caller."""

    change: ChangeSummary
    step: PendingStepOut
    awaits: str = Field(description="What completes the step.")
    approvals: int = Field(description="Approvals counted so far.")
    overdue: bool


class Queue(BaseModel):
    """Every pending step the caller may decide, oldest deadline first."""

    items: list[QueueItem]


@router.get(
    "/approvals/queue",
    response_model=Queue,
    summary="What awaits me: every pending approval step the caller may decide",
)
async def get_queue(
    context: Annotated[RequestContext, authorize("approval:decide")], runtime: Runtime
) -> dict[str, Any]:
    async with unit_of_work(runtime.pool, context) as uow:
        items = await approvals.queue(uow, now=approvals.utc_now())
    return {"items": items}


# --- CAB meetings ----------------------------------------------------------------------------


class NewCabMeeting(RequestBody):
    """Body of POST /cab-meetings."""

    title: str = Field(default="Change Advisory Board", min_length=1, max_length=200)
    starts_at: Timestamp
    members: list[str] = Field(min_length=1, max_length=100)


class CabMeetingOut(BaseModel):
    """A CAB meeting."""

    id: uuid.UUID
    title: str
    starts_at: datetime
    members: list[str]
    created_at: datetime
    created_by: str


class AgendaDecision(BaseModel):
    """A decision already taken on an agenda item's step."""

    approver: str
    decision: str
    comment: str


class AgendaItem(QueueItem):
    """A change awaiting a CAB step, with the decisions so far."""

    decisions: list[AgendaDecision]


class CabMeetingWithAgenda(CabMeetingOut):
    """A CAB meeting and its agenda: the changes awaiting a CAB step now."""

    agenda: list[AgendaItem]


class MeetingDecisionBody(DecisionBody):
    """Body of POST /cab-meetings/{id}/decisions: a member's decision on an agenda item."""

    change_id: uuid.UUID


@router.post(
    "/cab-meetings",
    status_code=201,
    response_model=CabMeetingOut,
    summary="Plan a CAB meeting with its members",
)
async def post_cab_meeting(
    body: NewCabMeeting,
    context: Annotated[RequestContext, authorize("cab:schedule")],
    runtime: Runtime,
) -> JSONResponse:
    async with unit_of_work(runtime.pool, context) as uow:
        meeting = await approvals.schedule_meeting(
            uow,
            title=body.title,
            starts_at=body.starts_at,
            members=body.members,
            now=approvals.utc_now(),
        )
    view = CabMeetingOut.model_validate(approvals.meeting_view(meeting)).model_dump(mode="json")
    return JSONResponse(view, status_code=201, headers={"Location": f"/cab-meetings/{meeting.id}"})


@router.get(
    "/cab-meetings/{meeting_id}",
    response_model=CabMeetingWithAgenda,
    summary="A CAB meeting with its agenda (the changes awaiting a CAB step)",
)
async def get_cab_meeting(
    meeting_id: uuid.UUID,
    context: Annotated[RequestContext, authorize("approval:read")],
    runtime: Runtime,
) -> dict[str, Any]:
    async with unit_of_work(runtime.pool, context) as uow:
        return await approvals.meeting_with_agenda(uow, meeting_id, now=approvals.utc_now())


@router.post(
    "/cab-meetings/{meeting_id}/decisions",
    status_code=201,
    response_model=AuthorizationOut,
    summary="A member's decision on a change of the agenda (the same approvals)",
    responses=_DECISION_REFUSALS,
)
async def post_cab_decision(
    meeting_id: uuid.UUID,
    body: MeetingDecisionBody,
    context: Annotated[RequestContext, authorize("approval:decide")],
    runtime: Runtime,
) -> JSONResponse:
    async with unit_of_work(runtime.pool, context) as uow:
        decided = await approvals.decide_in_meeting(
            uow,
            meeting_id,
            body.change_id,
            decision=body.decision,
            comment=body.comment,
            content_hash=body.content_hash,
            now=approvals.utc_now(),
            metrics=_metrics(runtime),
            blackout_override_reason=body.blackout_override_reason,
        )
    return JSONResponse(_authorization(decided), status_code=201)
