"""The event catalogue: one pydantic model per event type, and the registry from type to model."""

from __future__ import annotations

import builtins
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from shared.calendars import CalendarSpec
from shared.events.envelope import TYPE_RE


class EventPayload(BaseModel):
    """Base of every payload; unknown fields are ignored so additive changes keep the version."""

    model_config = ConfigDict(frozen=True, extra="ignore")


@dataclass(frozen=True)
class EventSpec:
    """What the catalogue knows of one event type."""

    type: str
    model: builtins.type[EventPayload]
    topic: str
    source: str


CATALOGUE: dict[str, EventSpec] = {}
_BY_MODEL: dict[type[EventPayload], EventSpec] = {}

P = TypeVar("P", bound=type[EventPayload])


def event(type_name: str, *, topic: str, source: str) -> Callable[[P], P]:
    """Register a payload model under its CloudEvents type."""

    def register(model: P) -> P:
        if not TYPE_RE.match(type_name):
            raise ValueError(f"event type {type_name!r} does not follow itsm.<domain>.<event>.vN")
        if type_name in CATALOGUE:
            raise ValueError(f"event type {type_name!r} is registered twice")
        spec = EventSpec(type=type_name, model=model, topic=topic, source=source)
        CATALOGUE[type_name] = spec
        _BY_MODEL[model] = spec
        return model

    return register


def spec_for(type_name: str) -> EventSpec | None:
    """The spec of a type, or None when the catalogue does not know it."""
    return CATALOGUE.get(type_name)


def spec_of(payload: EventPayload) -> EventSpec:
    """The spec of a payload instance; every payload class must be registered."""
    try:
        return _BY_MODEL[type(payload)]
    except KeyError:
        raise LookupError(f"{type(payload).__name__} is not in the event catalogue") from None


# --- Topics ---------------------------------------------------------------------------------

INCIDENT_EVENTS = "itsm.incident.events"
CHANGE_EVENTS = "itsm.change.events"
CONFIG_EVENTS = "itsm.config.events"
# Compacted: every replica of every service reads it from the beginning at start-up.
AUTH_REVOCATIONS = "itsm.auth.revocations"

Impact = Literal[1, 2, 3]
Urgency = Literal[1, 2, 3]


# --- Incident management (ISO/IEC 20000-1 8.6.1) ----------------------------------------------


IncidentState = Literal["new", "in_progress", "on_hold", "resolved", "closed", "cancelled"]
RequestState = Literal[
    "submitted",
    "awaiting_approval",
    "in_fulfilment",
    "fulfilled",
    "closed",
    "rejected",
    "cancelled",
]
ProblemState = Literal["new", "investigating", "known_error", "resolved", "closed", "cancelled"]
RecordKind = Literal["incident", "request"]
ClockKind = Literal["response", "resolution"]


@event("itsm.incident.created.v1", topic=INCIDENT_EVENTS, source="itsm/incident")
class IncidentCreatedV1(EventPayload):
    """An incident was logged (subject: the incident id; itsmversion: its version, 1).

    Fields after `state` were added with incident management; older events lack them.
    """

    title: str = Field(min_length=1, max_length=200)
    description: str = Field(max_length=20_000)
    impact: Impact
    urgency: Urgency
    priority: int = Field(ge=1, le=5)
    state: Literal["new"]
    number: int | None = Field(default=None, description="Per-tenant number (INC<number>).")
    caller: str | None = None
    category: str | None = None
    ci_id: str | None = None
    services: list[str] = Field(default_factory=list, description="Affected business services.")
    sla_policy: str | None = None
    assignment_group: str | None = None
    assignee: str | None = None
    major: bool = False
    parent_id: str | None = None
    origin: Literal["manual", "alertmanager", "events"] = "manual"
    workaround: str | None = Field(
        default=None, description="From a known error on the CI/service."
    )
    known_error_id: str | None = None
    suspected_change: str | None = Field(
        default=None, description="A change implemented on the CI shortly before (its id)."
    )


class FieldChangeV1(BaseModel):
    """One field's value before and after a change."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    before: Any = Field(alias="from")
    after: Any = Field(alias="to")


@event("itsm.incident.updated.v1", topic=INCIDENT_EVENTS, source="itsm/incident")
class IncidentUpdatedV1(EventPayload):
    """Fields of an incident changed without a state transition (subject: the incident id).

    `changes` maps each changed field to `{"from": ..., "to": ...}`; `priority` and `services`
    are the values after the change, so a consumer never has to call back.
    """

    changes: dict[str, dict[str, Any]]
    priority: int = Field(ge=1, le=5)
    state: IncidentState
    services: list[str] = Field(default_factory=list)
    reason: str | None = Field(default=None, description="Why, when the writer said (e.g. alert).")


@event("itsm.incident.transitioned.v1", topic=INCIDENT_EVENTS, source="itsm/incident")
class IncidentTransitionedV1(EventPayload):
    """An incident moved from one state to another (subject: the incident id).

    The actor and time are the envelope's `actor` and `time`.
    """

    from_state: IncidentState
    to_state: IncidentState
    hold_reason: str | None = None
    resolution_code: str | None = None
    resolution_notes: str | None = None
    automatic: bool = Field(default=False, description="Done by the service (auto-close, alert).")
    priority: int = Field(ge=1, le=5)


@event("itsm.incident.work_note_added.v1", topic=INCIDENT_EVENTS, source="itsm/incident")
class WorkNoteAddedV1(EventPayload):
    """A work note was added to an incident (subject: the incident id)."""

    note: str = Field(min_length=1, max_length=20_000)


@event("itsm.incident.major_declared.v1", topic=INCIDENT_EVENTS, source="itsm/incident")
class MajorIncidentDeclaredV1(EventPayload):
    """An incident became a major incident: notify the major-incident process.

    Subject: the incident id. `reason` is `priority` (P1) or `flagged`.
    """

    title: str
    priority: int = Field(ge=1, le=5)
    reason: Literal["priority", "flagged"]
    owner: str | None = None
    services: list[str] = Field(default_factory=list)
    ci_id: str | None = None


@event("itsm.incident.major_review_recorded.v1", topic=INCIDENT_EVENTS, source="itsm/incident")
class MajorReviewRecordedV1(EventPayload):
    """The review of a major incident was recorded (required before closure)."""

    summary: str = Field(min_length=1, max_length=20_000)
    lessons: str = ""
    reviewer: str


@event("itsm.incident.change_suspected.v1", topic=INCIDENT_EVENTS, source="itsm/incident")
class ChangeSuspectedV1(EventPayload):
    """An incident's CI was changed shortly before it: the change may have caused it."""

    change_id: str
    ci_id: str
    implemented_at: datetime
    window_seconds: int = Field(gt=0)


@event("itsm.incident.settings_changed.v1", topic=INCIDENT_EVENTS, source="itsm/incident")
class IncidentSettingsChangedV1(EventPayload):
    """A tenant changed its incident settings (subject `settings`, itsmversion the version).

    Carries the settings in full, as `GET /incident-settings` shows them: the audit trail of
    how priorities, auto-closure, alert mapping, trends and change correlation were configured.
    """

    settings: dict[str, Any]
    version: int = Field(ge=1)


# --- SLA clocks (ISO/IEC 20000-1 8.3.3) -------------------------------------------------------


class SlaClockRefV1(BaseModel):
    """Which clock: of which record, response or resolution, under which policy."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    record: RecordKind
    record_id: str
    kind: ClockKind
    policy: str
    priority: int = Field(ge=1, le=5)
    target_seconds: int = Field(gt=0)


@event("itsm.incident.sla.warning_reached.v1", topic=INCIDENT_EVENTS, source="itsm/incident")
class SlaWarningReachedV1(EventPayload):
    """A clock used up its warning share of the target (subject: `sla/<record id>/<kind>`)."""

    clock: SlaClockRefV1
    due_at: datetime = Field(description="When the warning was due.")
    late: bool = Field(description="Fired more than the scheduler's tolerance after `due_at`.")
    elapsed_seconds: float = Field(ge=0)


@event("itsm.incident.sla.breached.v1", topic=INCIDENT_EVENTS, source="itsm/incident")
class SlaBreachedV1(EventPayload):
    """A clock reached its target (subject: `sla/<record id>/<kind>`)."""

    clock: SlaClockRefV1
    due_at: datetime = Field(description="When the breach was due.")
    late: bool = Field(description="Fired more than the scheduler's tolerance after `due_at`.")
    elapsed_seconds: float = Field(ge=0)


@event("itsm.incident.sla.clock_stopped.v1", topic=INCIDENT_EVENTS, source="itsm/incident")
class SlaClockStoppedV1(EventPayload):
    """A clock stopped and its outcome is recorded (subject: `sla/<record id>/<kind>`)."""

    clock: SlaClockRefV1
    result: Literal["met", "breached"]
    elapsed_seconds: float = Field(ge=0, description="Business seconds counted.")
    paused_seconds: float = Field(ge=0, description="Wall-clock seconds spent paused.")
    started_at: datetime
    stopped_at: datetime


# --- Service requests (ISO/IEC 20000-1 8.6.2) -------------------------------------------------


@event("itsm.incident.request.submitted.v1", topic=INCIDENT_EVENTS, source="itsm/incident")
class RequestSubmittedV1(EventPayload):
    """A service request was submitted (subject: the request id)."""

    title: str = Field(min_length=1, max_length=200)
    description: str = Field(max_length=20_000)
    requester: str
    item: str | None = Field(default=None, description="What is requested (catalogue item).")
    service: str | None = None
    priority: int = Field(ge=1, le=5)
    needs_approval: bool
    sla_policy: str | None = None
    number: int | None = None
    impact: Impact | None = None
    urgency: Urgency | None = None
    approvers: list[str] = Field(
        default_factory=list, description="Named approvers (all must approve); empty: anyone."
    )


@event("itsm.incident.request.transitioned.v1", topic=INCIDENT_EVENTS, source="itsm/incident")
class RequestTransitionedV1(EventPayload):
    """A service request moved between states (subject: the request id)."""

    from_state: RequestState
    to_state: RequestState
    notes: str | None = None
    automatic: bool = Field(
        default=False, description="Made by the service (sent for approval on submission)."
    )


@event("itsm.incident.request.approval_recorded.v1", topic=INCIDENT_EVENTS, source="itsm/incident")
class RequestApprovalRecordedV1(EventPayload):
    """An approver decided on a service request (subject: the request id)."""

    approver: str
    decision: Literal["approved", "rejected"]
    at: datetime
    comment: str = ""


# --- Problems and known errors (ISO/IEC 20000-1 8.6.3) ----------------------------------------


@event("itsm.incident.problem.created.v1", topic=INCIDENT_EVENTS, source="itsm/incident")
class ProblemCreatedV1(EventPayload):
    """A problem was opened, by hand or from an incident trend (subject: the problem id)."""

    title: str = Field(min_length=1, max_length=200)
    description: str = Field(max_length=20_000)
    ci_id: str | None = None
    service: str | None = None
    origin: Literal["manual", "trend"] = "manual"
    incidents: list[str] = Field(default_factory=list)
    number: int | None = None


@event("itsm.incident.problem.suggested.v1", topic=INCIDENT_EVENTS, source="itsm/incident")
class ProblemSuggestedV1(EventPayload):
    """N incidents on one CI or service within a window: a problem is suggested.

    Subject: `trend/<ci|service>/<id>`.
    """

    ci_id: str | None = None
    service: str | None = None
    incidents: list[str]
    window_seconds: int = Field(gt=0)
    threshold: int = Field(ge=2)
    opened_problem_id: str | None = Field(
        default=None, description="Set when the tenant opens problems from trends directly."
    )


@event("itsm.incident.problem.transitioned.v1", topic=INCIDENT_EVENTS, source="itsm/incident")
class ProblemTransitionedV1(EventPayload):
    """A problem moved between states (subject: the problem id)."""

    from_state: ProblemState
    to_state: ProblemState
    root_cause: str | None = None
    resolution_notes: str | None = None


@event("itsm.incident.problem.incident_linked.v1", topic=INCIDENT_EVENTS, source="itsm/incident")
class ProblemIncidentLinkedV1(EventPayload):
    """An incident was linked to a problem (subject: the problem id)."""

    incident_id: str


@event(
    "itsm.incident.problem.known_error_published.v1", topic=INCIDENT_EVENTS, source="itsm/incident"
)
class KnownErrorPublishedV1(EventPayload):
    """A problem's root cause and workaround were published as a known error.

    Subject: the problem id. New incidents on `ci_id` or `service` get the workaround.
    """

    known_error_id: str
    title: str
    root_cause: str
    workaround: str
    ci_id: str | None = None
    service: str | None = None


@event("itsm.incident.problem.change_requested.v1", topic=INCIDENT_EVENTS, source="itsm/incident")
class ProblemChangeRequestedV1(EventPayload):
    """A problem asks for a change; the change service turns it into a request for change.

    Subject: the problem id. Carries the trail incident -> problem -> known error -> change.
    """

    request_id: str = Field(description="Idempotency key for the change service.")
    title: str
    description: str
    ci_ids: list[str] = Field(default_factory=list)
    known_error_id: str | None = None
    incidents: list[str] = Field(default_factory=list)


# --- Change management (ISO/IEC 20000-1 8.5.1), the contract consumers use ------------------


@event("itsm.change.implemented.v1", topic=CHANGE_EVENTS, source="itsm/change")
class ChangeImplementedV1(EventPayload):
    """A change was implemented on CIs (subject: the change id).

    The incident service flags incidents on these CIs within a window after `implemented_at`.
    """

    change_id: str
    title: str
    ci_ids: list[str]
    implemented_at: datetime
    outcome: Literal["successful", "failed", "partial"] = "successful"


# --- Configuration management (ISO/IEC 20000-1 8.2.6) -----------------------------------------

CiStatus = Literal["planned", "active", "maintenance", "retired"]


class CiStateV1(BaseModel):
    """A configuration item in full, as every CI event carries it (consumers never call back)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    ci_class: str
    name: str
    status: CiStatus
    owner_team: str | None
    criticality: int = Field(ge=1, le=4)
    attributes: dict[str, Any]
    external_ids: dict[str, str]
    controlled: bool
    version: int = Field(ge=1)
    updated_at: datetime
    updated_by: str


@event("itsm.config.ci.created.v1", topic=CONFIG_EVENTS, source="itsm/config")
class CiCreatedV1(EventPayload):
    """A configuration item was registered."""

    ci: CiStateV1
    source: str | None = Field(default=None, description="Discovery source, when imported.")


@event("itsm.config.ci.updated.v1", topic=CONFIG_EVENTS, source="itsm/config")
class CiUpdatedV1(EventPayload):
    """A configuration item changed: its full new state and the fields that changed."""

    ci: CiStateV1
    changed: list[str]
    reason: str | None = None
    change_ref: str | None = None
    source: str | None = None


@event("itsm.config.ci.retired.v1", topic=CONFIG_EVENTS, source="itsm/config")
class CiRetiredV1(EventPayload):
    """A configuration item was retired (its last state)."""

    ci: CiStateV1
    reason: str | None = None
    change_ref: str | None = None


RelationshipType = Literal[
    "depends_on", "runs_on", "hosted_on", "connects_to", "part_of", "provides"
]


class RelationshipV1(BaseModel):
    """A typed, directed relationship between two CIs (`source` <type> `target`)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    type: RelationshipType
    source_id: str
    target_id: str


@event("itsm.config.relationship.added.v1", topic=CONFIG_EVENTS, source="itsm/config")
class RelationshipAddedV1(EventPayload):
    """A relationship was added (subject: the relationship id)."""

    relationship: RelationshipV1


@event("itsm.config.relationship.removed.v1", topic=CONFIG_EVENTS, source="itsm/config")
class RelationshipRemovedV1(EventPayload):
    """A relationship was removed (subject: the relationship id)."""

    relationship: RelationshipV1
    reason: str | None = None


@event("itsm.config.ci_class.defined.v1", topic=CONFIG_EVENTS, source="itsm/config")
class CiClassDefinedV1(EventPayload):
    """A tenant defined (or redefined) a CI class and its attribute schema."""

    name: str
    description: str
    attribute_schema: dict[str, Any]
    version: int = Field(ge=1)


@event("itsm.config.service_membership.changed.v1", topic=CONFIG_EVENTS, source="itsm/config")
class ServiceMembershipChangedV1(EventPayload):
    """The set of business services a CI supports changed (a derived fact; subject: the CI id).

    A CI supports every business service that depends on it, directly or through other CIs
    (retired CIs support nothing and pass nothing on); a business service supports itself.
    Consumers keep `ci_id -> services` as a projection instead of walking the graph.
    """

    ci_id: str
    services: list[str] = Field(description="Business service CI ids, sorted.")
    previous: list[str] = Field(description="The set before this change, sorted.")
    sequence: int = Field(ge=1, description="Per CI, increases with every change of the set.")


@event("itsm.config.business_service.defined.v1", topic=CONFIG_EVENTS, source="itsm/config")
class BusinessServiceDefinedV1(EventPayload):
    """A business service was registered or its catalogue entry changed (subject: its CI id)."""

    id: str
    name: str
    status: CiStatus
    criticality: int = Field(ge=1, le=4)
    owner: str | None = None
    customer: str | None = None
    availability_target: float | None = None
    sla_policy: str | None = Field(default=None, description="The SLA policy that covers it.")
    version: int = Field(ge=1)


class CalendarV1(CalendarSpec):
    """A calendar as events carry it: the stored spec, tolerant of fields added later."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class SlaTargetV1(BaseModel):
    """Response and resolution targets for one priority, in business seconds."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    response_seconds: int = Field(gt=0)
    resolution_seconds: int = Field(gt=0)


@event("itsm.config.calendar.defined.v1", topic=CONFIG_EVENTS, source="itsm/config")
class CalendarDefinedV1(EventPayload):
    """A business-hours calendar was defined or redefined (subject: `calendar/<name>`)."""

    name: str
    description: str = ""
    calendar: CalendarV1
    version: int = Field(ge=1)


@event("itsm.config.sla_policy.defined.v1", topic=CONFIG_EVENTS, source="itsm/config")
class SlaPolicyDefinedV1(EventPayload):
    """An SLA policy was defined or redefined (subject: `sla-policy/<name>`).

    It carries its calendar in full, so a consumer can start clocks from this event alone.
    """

    name: str
    description: str = ""
    targets: dict[Literal["P1", "P2", "P3", "P4", "P5"], SlaTargetV1]
    calendar_name: str
    calendar: CalendarV1
    pause_on: list[str] = Field(description="On-hold reasons that pause the clocks.")
    warning_threshold: float = Field(gt=0, lt=1)
    services: list[str] = Field(description="Business service CI ids the policy covers.")
    default: bool = Field(description="Whether it applies to work that names no covered service.")
    version: int = Field(ge=1)


@event("itsm.config.ci.drift_detected.v1", topic=CONFIG_EVENTS, source="itsm/config")
class DriftDetectedV1(EventPayload):
    """Discovery found a controlled CI different from its record; nothing was applied.

    An unauthorised change until a change explains it (subject: the CI id).
    """

    ci: CiStateV1
    source: str
    import_id: str
    differences: dict[str, dict[str, Any]] = Field(
        description="Per field: `recorded` (the CMDB) and `discovered` (the source)."
    )


@event("itsm.config.import.completed.v1", topic=CONFIG_EVENTS, source="itsm/config")
class ImportCompletedV1(EventPayload):
    """A discovery import finished (subject: `import/<id>`)."""

    import_id: str
    source: str
    status: Literal["completed", "failed"]
    rows: int = Field(ge=0)
    outcomes: dict[str, int] = Field(
        description="Rows per outcome: created, updated, unchanged, drift, rejected."
    )
    started_at: datetime
    finished_at: datetime
    error: str | None = None


@event("itsm.config.baseline.created.v1", topic=CONFIG_EVENTS, source="itsm/config")
class BaselineCreatedV1(EventPayload):
    """A configuration baseline was named (subject: `baseline/<name>`)."""

    name: str
    description: str = ""
    at: datetime
    cis: int = Field(ge=0, description="CIs (not retired) in the baseline.")
    relationships: int = Field(ge=0)


# --- Access control (tenant administration, published by the config service) ----------------

TOKEN_ID_PATTERN = r"^[\x21-\x7e]{1,128}$"  # noqa: S105 - a pattern, not a secret


@event("itsm.config.token.revoked.v1", topic=AUTH_REVOCATIONS, source="itsm/config")
class TokenRevokedV1(EventPayload):
    """A tenant administrator revoked a token (by its `jti`) for their tenant.

    Every service refuses the token for that tenant from the moment it reads this event.
    The subject (and so the Kafka key of the compacted topic) is `<tenant>/<token id>`.
    """

    token_id: str = Field(pattern=TOKEN_ID_PATTERN)
    reason: str = Field(min_length=1, max_length=500)
    expires_at: datetime | None = Field(
        default=None, description="When the token expires anyway; the entry may be forgotten then."
    )


def revocation_subject(tenant_id: str, token_id: str) -> str:
    """The aggregate id (and Kafka key) of one tenant's revocation of one token."""
    return f"{tenant_id}/{token_id}"
