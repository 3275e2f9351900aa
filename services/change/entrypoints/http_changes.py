"""Change records over HTTP (ISO/IEC 20000-1 8.5.1): thin handlers that validate and call a
use case (`application/changes.py`); reads, history and writes are the shared routes of a
versioned record (`shared/http/records.py`: ETag, If-Match). Refusals are the typed errors of
the domain and the use cases, answered by the one mapping of `shared/http/problems.py`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, Field

from services.change.application import changes
from services.change.application.changes import ChangeService
from services.change.metrics import ChangeMetrics
from shared.context import RequestContext
from shared.errors import NotFound
from shared.http import records
from shared.http.context import authorize
from shared.http.models import RequestBody
from shared.http.pagination import Cursor, PageSize
from shared.service import ServiceRuntime

router = APIRouter(tags=["changes"])
Runtime = records.Runtime

ChangeTypeName = Literal["standard", "normal", "emergency"]
ChangeStateName = Literal[
    "new", "assess", "authorize", "scheduled", "implement", "review", "closed", "cancelled"
]
OutcomeName = Literal["successful", "successful_with_issues", "failed", "rolled_back"]
_TEXT = 20_000


class NewChange(RequestBody):
    """Body of POST /changes."""

    type: ChangeTypeName
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=_TEXT)
    justification: str = Field(default="", max_length=_TEXT)
    assignment_group: str | None = Field(default=None, min_length=1, max_length=200)
    implementer: str | None = Field(default=None, min_length=1, max_length=200)
    template_id: uuid.UUID | None = Field(
        default=None, description="A standard change's template (required for standard)."
    )
    affected_ci_ids: list[uuid.UUID] = Field(default_factory=list, max_length=1000)
    planned_start: AwareDatetime | None = None
    planned_end: AwareDatetime | None = None
    implementation_plan: str | None = Field(default=None, max_length=_TEXT)
    backout_plan: str | None = Field(default=None, max_length=_TEXT)
    test_plan: str | None = Field(default=None, max_length=_TEXT)
    test_evidence: list[str] = Field(
        default_factory=list, max_length=100, description="Links, or attachments' sha256:<hex>."
    )
    backout_tested: bool = False
    impact: str | None = Field(default=None, max_length=200)
    incident_ids: list[uuid.UUID] = Field(
        default_factory=list,
        max_length=100,
        description="Linked incidents (an emergency change needs one the service knows).",
    )
    problem_ids: list[uuid.UUID] = Field(default_factory=list, max_length=100)
    blackout_override_reason: str | None = Field(
        default=None,
        max_length=2000,
        description=(
            "A standard change is scheduled at once: into a blackout only with this emergency"
            " override's reason (recorded); without it, 409 naming each blackout and its CIs."
        ),
    )


class ChangeEdit(RequestBody):
    """Body of PATCH /changes/{id}: the fields to change (the actual start and end alone, while
    implementing or in review)."""

    type: Literal["normal", "emergency"] | None = None
    title: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=_TEXT)
    justification: str | None = Field(default=None, max_length=_TEXT)
    assignment_group: str | None = Field(default=None, min_length=1, max_length=200)
    implementer: str | None = Field(default=None, min_length=1, max_length=200)
    affected_ci_ids: list[uuid.UUID] | None = Field(default=None, max_length=1000)
    planned_start: AwareDatetime | None = None
    planned_end: AwareDatetime | None = None
    implementation_plan: str | None = Field(default=None, max_length=_TEXT)
    backout_plan: str | None = Field(default=None, max_length=_TEXT)
    test_plan: str | None = Field(default=None, max_length=_TEXT)
    test_evidence: list[str] | None = Field(default=None, max_length=100)
    backout_tested: bool | None = None
    impact: str | None = Field(default=None, max_length=200)
    actual_start: AwareDatetime | None = None
    actual_end: AwareDatetime | None = None


class ChangeTransition(RequestBody):
    """Body of POST /changes/{id}/transitions."""

    to: ChangeStateName
    outcome: OutcomeName | None = Field(default=None, description="Leaving implement.")
    outcome_reason: str | None = Field(
        default=None,
        max_length=_TEXT,
        description="Why the outcome differs from GET …/outcome-proposal's (required then).",
    )
    reason: str | None = Field(default=None, max_length=_TEXT, description="For cancelled.")


class ChangeLinks(RequestBody):
    """Body of POST /changes/{id}/links: incidents and problems to link."""

    incident_ids: list[uuid.UUID] = Field(default_factory=list, max_length=100)
    problem_ids: list[uuid.UUID] = Field(default_factory=list, max_length=100)


class BackoutExecuted(RequestBody):
    """Body of POST /changes/{id}/backout."""

    reason: str = Field(min_length=1, max_length=_TEXT)


class ChangeReview(RequestBody):
    """Body of POST /changes/{id}/review: the post-implementation review."""

    what_happened: str = Field(min_length=1, max_length=_TEXT)
    lessons: str = Field(default="", max_length=_TEXT)
    actions: list[str] = Field(default_factory=list, max_length=100)


class ChangeOut(BaseModel):
    """A change as the API returns it."""

    id: uuid.UUID
    reference: str = Field(description="CHG<number>, per tenant.")
    number: int
    tenant_id: str
    type: ChangeTypeName
    origin: str
    state: ChangeStateName
    title: str
    description: str
    justification: str
    requester: str
    assignment_group: str | None
    implementer: str | None
    template_id: uuid.UUID | None
    affected_ci_ids: list[uuid.UUID]
    business_services: list[str] = Field(description="Derived from the affected CIs.")
    planned_start: datetime | None
    planned_end: datetime | None
    actual_start: datetime | None
    actual_end: datetime | None
    deviation: bool = Field(description="Implemented outside the planned window.")
    implementation_plan: str | None
    backout_plan: str | None
    test_plan: str | None
    test_evidence: list[str]
    backout_tested: bool
    risk_level: str | None
    impact: str | None
    incident_ids: list[uuid.UUID]
    problem_ids: list[uuid.UUID]
    problem_request_id: uuid.UUID | None
    release_id: uuid.UUID | None
    outcome: str | None
    cancel_reason: str | None
    review_due_at: datetime | None = Field(description="Emergency changes: the PIR's due date.")
    closed_at: datetime | None
    content_hash: str = Field(description="SHA-256 of the approved content.")
    version: int
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str


class ChangePage(BaseModel):
    """One page of changes, newest first."""

    items: list[ChangeOut]
    next_cursor: str | None = None


class SuspectedOut(BaseModel):
    """An incident flagged as possibly caused by the change."""

    incident_id: uuid.UUID
    ci_id: str
    flagged_at: datetime


class OutcomeProposalOut(BaseModel):
    """The outcome proposed from the evidence, and the evidence."""

    change_id: uuid.UUID
    proposed_outcome: OutcomeName
    reasons: list[str]
    backout_executed: bool
    failed_deployments: list[str]
    suspected_incidents: list[SuspectedOut]


class ReviewOut(BaseModel):
    """A change's post-implementation review."""

    change_id: uuid.UUID
    what_happened: str
    lessons: str
    actions: list[str]
    reviewer: str
    reviewed_at: datetime


def service_of(runtime: ServiceRuntime) -> ChangeService:
    """The use cases on the runtime's pool, counting into its metrics."""
    metrics = runtime.service_metrics
    return ChangeService(runtime.pool, metrics if isinstance(metrics, ChangeMetrics) else None)


def _out(body: dict[str, Any]) -> dict[str, Any]:
    return ChangeOut.model_validate(body).model_dump(mode="json")


_STATE_REFUSES: dict[int, dict[str, Any]] = {
    409: {"description": "The change is in a state that does not allow this"}
}


@router.post(
    "/changes",
    status_code=201,
    response_model=ChangeOut,
    summary="Raise a request for change (a standard one from its template: scheduled at once)",
    responses={
        409: {
            "description": "A standard change's window is in a blackout and no"
            " blackout_override_reason was given"
        }
    },
)
async def create_change(
    body: NewChange,
    context: Annotated[RequestContext, authorize("change:create")],
    runtime: Runtime,
) -> JSONResponse:
    command = changes.NewChange(
        type=body.type,
        title=body.title,
        description=body.description,
        justification=body.justification,
        assignment_group=body.assignment_group,
        implementer=body.implementer,
        template_id=body.template_id,
        affected_cis=tuple(body.affected_ci_ids),
        planned_start=body.planned_start,
        planned_end=body.planned_end,
        implementation_plan=body.implementation_plan,
        backout_plan=body.backout_plan,
        test_plan=body.test_plan,
        test_evidence=tuple(body.test_evidence),
        backout_tested=body.backout_tested,
        impact=body.impact,
        incidents=tuple(body.incident_ids),
        problems=tuple(body.problem_ids),
        blackout_override_reason=body.blackout_override_reason,
    )
    change = await service_of(runtime).raise_change(context, command)
    view = changes.change_view(change)
    return records.versioned(ChangeOut, view, 201, Location=f"/changes/{change.id}")


@router.get("/changes", response_model=ChangePage, summary="Search changes")
async def list_changes(
    context: Annotated[RequestContext, authorize("change:read")],
    runtime: Runtime,
    limit: PageSize = 50,
    cursor: Cursor = None,
    state: Annotated[list[ChangeStateName] | None, Query()] = None,
    type: ChangeTypeName | None = None,
    ci_id: uuid.UUID | None = None,
    service: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    requester: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    window_from: Annotated[
        AwareDatetime | None, Query(description="Planned window ends after this instant.")
    ] = None,
    window_to: Annotated[
        AwareDatetime | None, Query(description="Planned window starts before this instant.")
    ] = None,
) -> dict[str, Any]:
    after = records.after_cursor(cursor)
    where = changes.ChangeFilter(
        states=tuple(state or ()),
        type=type,
        ci_id=ci_id,
        service=service,
        requester=requester,
        window_from=window_from,
        window_to=window_to,
    )
    found = await service_of(runtime).search(context.tenant_id, where, after=after, limit=limit + 1)
    page, next_cursor = records.keyset_page(found, limit)
    return {"items": [_out(changes.change_view(c)) for c in page], "next_cursor": next_cursor}


async def _read(
    runtime: ServiceRuntime, context: RequestContext, change_id: uuid.UUID
) -> dict[str, Any]:
    return changes.change_view(await service_of(runtime).get(context.tenant_id, change_id))


async def _edit(
    runtime: ServiceRuntime,
    context: RequestContext,
    change_id: uuid.UUID,
    body: ChangeEdit,
    expected: int,
) -> dict[str, Any]:
    values = body.model_dump(exclude_unset=True)
    if "affected_ci_ids" in values:
        values["affected_cis"] = values.pop("affected_ci_ids")
    change = await service_of(runtime).edit(context, change_id, values, expected)
    return changes.change_view(change)


async def _transition(
    runtime: ServiceRuntime,
    context: RequestContext,
    change_id: uuid.UUID,
    body: ChangeTransition,
    expected: int,
) -> dict[str, Any]:
    change = await service_of(runtime).transition(
        context,
        change_id,
        body.to,
        expected,
        outcome=body.outcome,
        reason=body.reason,
        outcome_reason=body.outcome_reason,
    )
    return changes.change_view(change)


async def _link(
    runtime: ServiceRuntime,
    context: RequestContext,
    change_id: uuid.UUID,
    body: ChangeLinks,
    expected: int,
) -> dict[str, Any]:
    change = await service_of(runtime).link(
        context, change_id, expected, incidents=body.incident_ids, problems=body.problem_ids
    )
    return changes.change_view(change)


async def _backout(
    runtime: ServiceRuntime,
    context: RequestContext,
    change_id: uuid.UUID,
    body: BackoutExecuted,
    expected: int,
) -> dict[str, Any]:
    change = await service_of(runtime).backout(context, change_id, expected, body.reason)
    return changes.change_view(change)


async def _review(
    runtime: ServiceRuntime,
    context: RequestContext,
    change_id: uuid.UUID,
    body: ChangeReview,
    expected: int,
) -> dict[str, Any]:
    change = await service_of(runtime).review(
        context,
        change_id,
        expected,
        what_happened=body.what_happened,
        lessons=body.lessons,
        actions=tuple(body.actions),
    )
    return changes.change_view(change)


_changes = records.RecordRoutes(router, "/changes", ident="change_id", model=ChangeOut)
_changes.read(permission="change:read", read=_read, name="read_change", summary="Read a change")
_changes.write(
    method="patch",
    body=ChangeEdit,
    permission="change:manage",
    write=_edit,
    name="patch_change",
    summary="Edit a change (If-Match; editing approved content of a scheduled change voids"
    " its approvals)",
)
_changes.write(
    "/transitions",
    body=ChangeTransition,
    permission="change:manage",
    write=_transition,
    name="post_change_transition",
    summary="Move a change to another state (If-Match required)",
    responses={
        409: {
            "description": "The workflow does not allow this move (authorize -> scheduled is"
            " the approvals' doing; closing needs a required review)"
        }
    },
)
_changes.write(
    "/links",
    body=ChangeLinks,
    permission="change:manage",
    write=_link,
    name="post_change_links",
    summary="Link incidents and problems to a change (If-Match required)",
    responses=_STATE_REFUSES,
)
_changes.write(
    "/backout",
    body=BackoutExecuted,
    permission="change:manage",
    write=_backout,
    name="post_change_backout",
    summary="Record that the backout plan was executed (If-Match required)",
    responses=_STATE_REFUSES,
)
_changes.write(
    "/review",
    body=ChangeReview,
    permission="change:manage",
    write=_review,
    name="post_change_review",
    summary="Record the post-implementation review (If-Match required)",
    responses=_STATE_REFUSES,
)


async def _history(
    runtime: ServiceRuntime, context: RequestContext, change_id: uuid.UUID
) -> list[dict[str, Any]]:
    return await service_of(runtime).history(context.tenant_id, change_id)


_changes.history(permission="change:read", history=_history)


@router.get(
    "/changes/{change_id}/outcome-proposal",
    response_model=OutcomeProposalOut,
    summary="The outcome the evidence proposes (backout, failed deployments, suspected incidents)",
    responses={409: {"description": "The change has not been implemented yet"}},
)
async def get_outcome_proposal(
    change_id: uuid.UUID,
    context: Annotated[RequestContext, authorize("change:read")],
    runtime: Runtime,
) -> dict[str, Any]:
    shown = await service_of(runtime).outcome_proposal(context.tenant_id, change_id)
    return {
        "change_id": str(change_id),
        "proposed_outcome": shown.proposal.outcome,
        "reasons": list(shown.proposal.reasons),
        "backout_executed": shown.evidence.backout_executed,
        "failed_deployments": list(shown.evidence.failed_deployments),
        "suspected_incidents": list(shown.suspected),
    }


@router.get(
    "/changes/{change_id}/review",
    response_model=ReviewOut,
    summary="A change's post-implementation review (404 until recorded)",
)
async def get_review(
    change_id: uuid.UUID,
    context: Annotated[RequestContext, authorize("change:read")],
    runtime: Runtime,
) -> dict[str, Any]:
    review = await service_of(runtime).review_of(context.tenant_id, change_id)
    if review is None:
        raise NotFound("review of change", str(change_id))
    return {
        "change_id": str(review.change_id),
        "what_happened": review.what_happened,
        "lessons": review.lessons,
        "actions": list(review.actions),
        "reviewer": review.reviewer,
        "reviewed_at": review.reviewed_at.isoformat(),
    }
