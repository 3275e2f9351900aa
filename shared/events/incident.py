"""Events of incident management (ISO/IEC 20000-1 8.6.1), its SLA clocks (8.3.3), service
requests (8.6.2) and problems (8.6.3): published by the incident service."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.events.base import EventPayload, event
from shared.events.topics import INCIDENT_EVENTS

# --- Incident management (ISO/IEC 20000-1 8.6.1) ----------------------------------------------

Impact = Literal[1, 2, 3]
Urgency = Literal[1, 2, 3]

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


# --- Customer satisfaction (ISO/IEC 20000-1 9.1) ----------------------------------------------

SURVEY_SUBJECT_PREFIX = "survey/"


@event("itsm.incident.survey.sent.v1", topic=INCIDENT_EVENTS, source="itsm/incident")
class SurveySentV1(EventPayload):
    """A satisfaction survey was offered for a resolved incident or a fulfilled request.

    Subject `survey/<record id>`, version 1. The link's token is never in an event; the survey
    accepts one answer until `expires_at`. `services`, `assignment_group` and `assignee` are
    the record's when it was resolved, so the KPIs group answers without calling back.
    """

    record: RecordKind
    record_id: str
    caller: str | None = None
    services: list[str] = Field(default_factory=list)
    assignment_group: str | None = None
    assignee: str | None = None
    expires_at: datetime


@event("itsm.incident.survey.answered.v1", topic=INCIDENT_EVENTS, source="itsm/incident")
class SurveyAnsweredV1(EventPayload):
    """The caller answered the survey (subject `survey/<record id>`, version 2): a score from 1
    (very dissatisfied) to 5 (very satisfied) and an optional comment."""

    record: RecordKind
    record_id: str
    score: int = Field(ge=1, le=5)
    comment: str = Field(default="", max_length=2000)
    services: list[str] = Field(default_factory=list)
    assignment_group: str | None = None
    assignee: str | None = None


# --- Outages of business services (ISO/IEC 20000-1 8.7.1) -------------------------------------

OUTAGE_SUBJECT_PREFIX = "outage/"
OutageKind = Literal["outage", "degradation"]


class OutageV1(BaseModel):
    """An outage (the service unavailable) or a degradation (available, impaired) of business
    services, from `start` to `end` (None while it lasts)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    services: list[str] = Field(min_length=1)
    kind: OutageKind
    start: datetime
    end: datetime | None = None
    incident_id: str | None = Field(
        default=None, description="The major incident it was marked on; None: recorded directly."
    )
    summary: str = Field(default="", max_length=2000)


@event("itsm.incident.outage.recorded.v1", topic=INCIDENT_EVENTS, source="itsm/incident")
class OutageRecordedV1(EventPayload):
    """An outage or degradation was recorded, on a major incident or directly.

    Subject `outage/<outage id>`, version 1.
    """

    outage: OutageV1


@event("itsm.incident.outage.updated.v1", topic=INCIDENT_EVENTS, source="itsm/incident")
class OutageUpdatedV1(EventPayload):
    """An outage as it now stands (subject `outage/<outage id>`, versions 2, 3, ...): its end
    set, a time corrected, or the record withdrawn (recorded in error; it no longer counts)."""

    outage: OutageV1
    withdrawn: bool = False
    reason: str = Field(default="", max_length=2000)
