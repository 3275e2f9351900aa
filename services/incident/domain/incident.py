"""The incident aggregate: its fields, what may change, and the events that say so.

Pure logic: the application layer loads an `Incident`, asks this module for the next version
and its events, and stores both in one transaction. An incident is a numbered, versioned record
(`shared/records/record.py`): every change goes through its `apply_change` or `transition`.
Priority always comes from the tenant's impact × urgency matrix; a P1 or a flagged incident is
major (`workflow.is_major`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from services.incident.domain import workflow
from services.incident.domain.priority import PriorityMatrix
from shared.events.catalogue import (
    EventPayload,
    IncidentCreatedV1,
    IncidentTransitionedV1,
    IncidentUpdatedV1,
    MajorIncidentDeclaredV1,
)
from shared.records.record import Changed, VersionedRecord, apply_change, change_value, diff
from shared.records.record import transition as move

# Fields a PATCH may change (state moves through transitions, priority through the matrix).
EDITABLE = (
    "title",
    "description",
    "caller",
    "category",
    "ci_id",
    "impact",
    "urgency",
    "assignment_group",
    "assignee",
    "major_flagged",
    "major_owner",
    "parent_id",
    "problem_id",
    "suspected_change",
)


@dataclass(frozen=True)
class Incident(VersionedRecord):
    """An incident as the service stores it (INC<number>; logged before numbering: none)."""

    PREFIX: ClassVar[str] = "INC"

    title: str
    description: str
    impact: int
    urgency: int
    priority: int
    number: int | None = None
    caller: str | None = None
    category: str | None = None
    ci_id: uuid.UUID | None = None
    services: tuple[str, ...] = ()
    sla_policy: str | None = None
    assignment_group: str | None = None
    assignee: str | None = None
    major: bool = False
    major_flagged: bool = False
    major_owner: str | None = None
    major_review: dict[str, Any] | None = None
    parent_id: uuid.UUID | None = None
    problem_id: uuid.UUID | None = None
    suspected_change: str | None = None
    hold_reason: str | None = None
    resolution_code: str | None = None
    resolution_notes: str | None = None
    origin: str = "manual"
    workaround: str | None = None
    known_error_id: uuid.UUID | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None


@dataclass(frozen=True)
class Change(Changed[Incident]):
    """A new version of an incident, what changed, and the events to publish."""

    @property
    def incident(self) -> Incident:
        """The new version."""
        return self.record


def _declared(incident: Incident, before: Incident | None) -> MajorIncidentDeclaredV1 | None:
    """The major-incident notification when an incident becomes major."""
    if not incident.major or (before is not None and before.major):
        return None
    return MajorIncidentDeclaredV1(
        title=incident.title,
        priority=incident.priority,
        reason="priority" if incident.priority == 1 else "flagged",
        owner=incident.major_owner,
        services=list(incident.services),
        ci_id=str(incident.ci_id) if incident.ci_id else None,
    )


def log_incident(
    *,
    tenant_id: str,
    title: str,
    description: str,
    impact: int,
    urgency: int,
    actor: str,
    now: datetime,
    matrix: PriorityMatrix | None = None,
    number: int | None = None,
    services: tuple[str, ...] = (),
    sla_policy: str | None = None,
    workaround: str | None = None,
    known_error_id: uuid.UUID | None = None,
    **fields: Any,
) -> tuple[Incident, list[EventPayload]]:
    """A new incident in state `new`, and the events that announce it."""
    priority = (matrix or PriorityMatrix.default()).priority(impact, urgency)
    flagged = bool(fields.get("major_flagged", False))
    incident = Incident.first(
        tenant_id=tenant_id,
        actor=actor,
        now=now,
        title=title,
        description=description,
        impact=impact,
        urgency=urgency,
        priority=priority,
        state="new",
        number=number,
        services=tuple(sorted(services)),
        sla_policy=sla_policy,
        major=workflow.is_major(priority, flagged=flagged),
        workaround=workaround,
        known_error_id=known_error_id,
        **fields,
    )
    events: list[EventPayload] = [
        IncidentCreatedV1(
            title=title,
            description=description,
            impact=impact,
            urgency=urgency,
            priority=priority,
            state="new",
            number=number,
            caller=incident.caller,
            category=incident.category,
            ci_id=change_value(incident.ci_id),
            services=list(incident.services),
            sla_policy=sla_policy,
            assignment_group=incident.assignment_group,
            assignee=incident.assignee,
            major=incident.major,
            parent_id=change_value(incident.parent_id),
            origin=incident.origin,
            workaround=workaround,
            known_error_id=change_value(known_error_id),
            suspected_change=incident.suspected_change,
        )
    ]
    declared = _declared(incident, None)
    if declared is not None:
        events.append(declared)
    return incident, events


def update(
    incident: Incident,
    wanted: dict[str, Any],
    *,
    actor: str,
    now: datetime,
    matrix: PriorityMatrix,
    services: tuple[str, ...] | None = None,
    sla_policy: str | None = None,
    reason: str | None = None,
) -> Change | None:
    """Apply field changes (None when nothing changes); priority follows impact × urgency.

    `services`/`sla_policy` are the affected services and policy after a CI change (from the
    projection); None keeps them.
    """
    if incident.state in workflow.INCIDENT.final_states:
        raise workflow.IllegalTransition("incident", incident.state, "updated", ())
    values = {k: v for k, v in wanted.items() if k in EDITABLE}
    if services is not None:
        values["services"] = tuple(sorted(services))
        values["sla_policy"] = sla_policy
    impact = values.get("impact", incident.impact)
    urgency = values.get("urgency", incident.urgency)
    values["priority"] = matrix.priority(impact, urgency)
    flagged = values.get("major_flagged", incident.major_flagged)
    values["major"] = incident.major or workflow.is_major(values["priority"], flagged=flagged)
    if not diff(incident, values):
        return None
    after, changes = apply_change(incident, values, actor=actor, now=now)
    events: list[EventPayload] = [
        IncidentUpdatedV1(
            changes=changes,
            priority=after.priority,
            state=after.state,
            services=list(after.services),
            reason=reason,
        )
    ]
    declared = _declared(after, incident)
    if declared is not None:
        events.append(declared)
    return Change(after, changes, events)


def transition(
    incident: Incident,
    wanted: str,
    *,
    actor: str,
    now: datetime,
    hold_reason: str | None = None,
    resolution_code: str | None = None,
    resolution_notes: str | None = None,
    automatic: bool = False,
) -> Change:
    """Move to another state; raise IllegalTransition (409) or InvalidTransitionDetails (422).

    Closing a major incident needs its review (MajorReviewMissing).
    """

    def reviewed(incident: Incident) -> None:
        if wanted == "closed":
            workflow.check_major_review(
                priority=incident.priority,
                flagged=incident.major_flagged,
                review_recorded=incident.major_review is not None,
            )

    values: dict[str, Any] = {"hold_reason": hold_reason}
    if wanted == "resolved":
        values |= {
            "resolution_code": resolution_code,
            "resolution_notes": resolution_notes,
            "resolved_at": now,
        }
    elif wanted == "in_progress" and incident.state == "resolved":  # reopened
        values |= {"resolution_code": None, "resolution_notes": None, "resolved_at": None}
    elif wanted == "closed":
        values["closed_at"] = now
    after, changes = move(
        incident,
        workflow.INCIDENT,
        wanted,
        actor=actor,
        now=now,
        details={
            "hold_reason": hold_reason,
            "resolution_code": resolution_code,
            "resolution_notes": resolution_notes,
        },
        values=values,
        guard=reviewed,
    )
    event = IncidentTransitionedV1(
        from_state=incident.state,
        to_state=wanted,
        hold_reason=hold_reason,
        resolution_code=resolution_code,
        resolution_notes=resolution_notes,
        automatic=automatic,
        priority=incident.priority,
    )
    return Change(after, changes, [event])


def replace_review(
    incident: Incident, review: dict[str, Any], *, actor: str, now: datetime
) -> Incident:
    """The next version of a major incident, with its review recorded."""
    return apply_change(incident, {"major_review": review}, actor=actor, now=now)[0]
