"""Events of change and release management (ISO/IEC 20000-1 8.5.1, 8.5.3): the contract
consumers use. Every event's subject is the change id (`change_id`), unless it says otherwise.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

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
