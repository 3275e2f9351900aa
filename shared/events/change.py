"""Events of change and release management (ISO/IEC 20000-1 8.5.1, 8.5.3): the contract
consumers use. Every event's subject is the change id (`change_id`), unless it says otherwise.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from shared.events.base import EventPayload, event
from shared.events.topics import CHANGE_EVENTS

ChangeTypeName = Literal["standard", "normal", "emergency"]
ChangeStateName = Literal[
    "new", "assess", "authorize", "scheduled", "implement", "review", "closed", "cancelled"
]
# `partial` is what events written before the four outcomes of 8.5.1 said for
# `successful_with_issues`; consumers read both.
OutcomeName = Literal["successful", "successful_with_issues", "failed", "rolled_back", "partial"]
OriginName = Literal["manual", "problem", "deployment", "unauthorized"]


@event("itsm.change.created.v1", topic=CHANGE_EVENTS, source="itsm/change")
class ChangeCreatedV1(EventPayload):
    """A request for change was raised (state `new`)."""

    change_id: str
    number: int
    type: ChangeTypeName
    origin: OriginName
    title: str
    requester: str
    assignment_group: str | None = None
    implementer: str | None = None
    template_id: str | None = None
    ci_ids: list[str] = Field(default_factory=list)
    business_services: list[str] = Field(default_factory=list)
    planned_start: datetime | None = None
    planned_end: datetime | None = None
    problem_ids: list[str] = Field(default_factory=list)
    incident_ids: list[str] = Field(default_factory=list)
    problem_request_id: str | None = Field(
        default=None, description="The problem's change request this change answers."
    )
    content_hash: str = Field(description="SHA-256 of the approved content (approvals bind it).")


@event("itsm.change.updated.v1", topic=CHANGE_EVENTS, source="itsm/change")
class ChangeUpdatedV1(EventPayload):
    """Fields of a change were edited: `{field: {"from", "to"}}`. `approvals_voided` when the
    edit changed approved content of an approved change (it goes back to `authorize`)."""

    change_id: str
    changes: dict[str, dict[str, Any]]
    content_hash: str
    approvals_voided: bool = False


@event("itsm.change.transitioned.v1", topic=CHANGE_EVENTS, source="itsm/change")
class ChangeTransitionedV1(EventPayload):
    """A change moved between states; the actor and time are the envelope's. Carries the
    problems it answers, so the problem shows the change's progress."""

    change_id: str
    number: int
    type: ChangeTypeName
    from_state: ChangeStateName
    to_state: ChangeStateName
    outcome: OutcomeName | None = None
    reason: str | None = None
    problem_ids: list[str] = Field(default_factory=list)
    problem_request_id: str | None = None
    content_hash: str


@event("itsm.change.implemented.v1", topic=CHANGE_EVENTS, source="itsm/change")
class ChangeImplementedV1(EventPayload):
    """A change was implemented on CIs (subject: the change id), announced when it leaves
    `implement`.

    The incident service flags incidents on these CIs within a window after `implemented_at`.
    """

    change_id: str
    title: str
    ci_ids: list[str]
    implemented_at: datetime
    outcome: OutcomeName = "successful"


# --- the change schedule: windows, conflicts, blackout overrides (schedule) ---

WindowKindName = Literal["maintenance", "blackout"]
WindowScopeName = Literal["all", "service", "cis"]
ConflictKindName = Literal[
    "change", "maintenance_window", "blackout", "implementer", "major_incident"
]


@event("itsm.change.window_defined.v1", topic=CHANGE_EVENTS, source="itsm/change")
class ChangeWindowDefinedV1(EventPayload):
    """A maintenance or blackout window was defined or revised (subject: the window id)."""

    window_id: str
    number: int
    name: str
    kind: WindowKindName
    scope: WindowScopeName
    service: str | None = Field(default=None, description="The business service (scope service).")
    ci_ids: list[str] = Field(default_factory=list, description="The CIs (scope cis).")
    start: str = Field(description="Local wall-clock start (ISO 8601, no offset) in time_zone.")
    time_zone: str = Field(description="IANA time zone the start and the RRULE are read in.")
    calendar: str | None = Field(
        default=None, description="The business calendar the time zone was taken from."
    )
    duration_seconds: int
    rrule: str | None = Field(default=None, description="RFC 5545 RRULE value, if recurring.")
    exclusions: list[date] = Field(
        default_factory=list, description="Local dates on which no occurrence starts."
    )
    version: int
    previous_version: int | None = Field(default=None, description="None for a new window.")


@event("itsm.change.window_retired.v1", topic=CHANGE_EVENTS, source="itsm/change")
class ChangeWindowRetiredV1(EventPayload):
    """A window was retired: it no longer applies (subject: the window id)."""

    window_id: str
    number: int
    kind: WindowKindName
    reason: str
    version: int


class ScheduleConflictV1(BaseModel):
    """One conflict of a change's window: its kind, every CI of the change it involves, and the
    other change, window or incident."""

    kind: ConflictKindName
    detail: str
    ci_ids: list[str]
    other_id: str | None = None
    other_reference: str | None = None


@event("itsm.change.conflict_detected.v1", topic=CHANGE_EVENTS, source="itsm/change")
class ChangeConflictDetectedV1(EventPayload):
    """A change's conflicts were computed and differ from the last computed set (an empty list:
    the conflicts are gone)."""

    change_id: str
    planned_start: datetime | None
    planned_end: datetime | None
    hops: int
    conflicts: list[ScheduleConflictV1]
    fingerprint: str = Field(description="SHA-256 of the conflicts, to compare sets.")


class OverriddenBlackoutV1(BaseModel):
    """A blackout a change was scheduled into, and the change's CIs it covers."""

    window_id: str
    name: str
    ci_ids: list[str]


@event("itsm.change.blackout_overridden.v1", topic=CHANGE_EVENTS, source="itsm/change")
class ChangeBlackoutOverriddenV1(EventPayload):
    """A change was scheduled into blackout windows with an emergency override and its reason."""

    change_id: str
    reason: str
    blackouts: list[OverriddenBlackoutV1]
