"""The problem aggregate (ISO/IEC 20000-1 8.6.3): its fields, what may change, and the events.

Pure logic, like `domain/incident.py`: the application layer loads a `Problem`, asks this module
for the next version and its events, and stores both in one transaction. Moves follow
`workflow.PROBLEM`. A known error is not a record of its own: it is a problem whose root cause
and workaround are published (state `known_error`), and the problem's id is the known error's
id, so an incident that got the workaround points at the problem that explains it.

Every change bumps the version, which is also the sequence of the events it announces (several
events of one change share it, as an incident's transition and major declaration do).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Final, Literal

from services.incident.domain import workflow
from shared.errors import Conflict, FieldError
from shared.events.catalogue import (
    EventPayload,
    KnownErrorPublishedV1,
    ProblemChangeRequestedV1,
    ProblemCreatedV1,
    ProblemIncidentLinkedV1,
    ProblemTransitionedV1,
)
from shared.records.record import Changed, VersionedRecord, apply_change, change_value, diff
from shared.records.record import transition as move

Origin = Literal["manual", "trend"]
# States in which a problem still explains incidents: nothing links to a closed or cancelled one.
CLOSED_STATES: Final[tuple[str, ...]] = workflow.PROBLEM.final_states
# A change is requested while the cause is still there (not once resolved, closed or cancelled).
CHANGE_STATES: Final[tuple[str, ...]] = ("new", "investigating", "known_error")


@dataclass(frozen=True)
class Problem(VersionedRecord):
    """A problem as the service stores it (PRB<number>; `incidents`: the linked incidents,
    oldest link first; `change_requests`: the request ids of the changes it asked for, oldest
    first)."""

    PREFIX: ClassVar[str] = "PRB"

    number: int
    title: str
    description: str
    origin: str
    ci_id: uuid.UUID | None = None
    service: str | None = None
    root_cause: str | None = None
    workaround: str | None = None
    resolution_notes: str | None = None
    known_error_published_at: datetime | None = None
    change_requests: tuple[uuid.UUID, ...] = ()
    incidents: tuple[uuid.UUID, ...] = ()
    resolved_at: datetime | None = None
    closed_at: datetime | None = None

    @property
    def known_error_id(self) -> uuid.UUID | None:
        """The known error's id (the problem's) once one was published, else None."""
        return self.id if self.known_error_published_at is not None else None

    @property
    def is_open(self) -> bool:
        """Whether the problem still explains incidents (not closed or cancelled)."""
        return self.state not in CLOSED_STATES


@dataclass(frozen=True)
class ProblemChange(Changed[Problem]):
    """A new version of a problem, what changed, and the events to publish."""

    @property
    def problem(self) -> Problem:
        """The new version."""
        return self.record


class WrongProblemState(workflow.WorkflowError, Conflict):
    """A problem in a state that refuses this: a closed or cancelled one takes no more links,
    a resolved, closed or cancelled one requests no change (HTTP: 409 naming the problem)."""

    def __init__(self, state: str, what: str) -> None:
        super().__init__(
            f"problem: a {state} problem cannot {what}",
            fields=[FieldError("problem_id", f"the problem is {state}", "path")],
        )
        self.state = state
        self.what = what


def _published(problem: Problem) -> KnownErrorPublishedV1:
    assert problem.root_cause is not None and problem.workaround is not None
    return KnownErrorPublishedV1(
        known_error_id=str(problem.id),
        title=problem.title,
        root_cause=problem.root_cause,
        workaround=problem.workaround,
        ci_id=change_value(problem.ci_id),
        service=problem.service,
    )


def open_problem(
    *,
    tenant_id: str,
    number: int,
    title: str,
    description: str,
    actor: str,
    now: datetime,
    ci_id: uuid.UUID | None = None,
    service: str | None = None,
    origin: Origin = "manual",
    incidents: Sequence[uuid.UUID] = (),
    problem_id: uuid.UUID | None = None,
) -> tuple[Problem, list[EventPayload]]:
    """A new problem in state `new` covering these incidents, and the event that announces it
    (`problem_id`: its id when the caller chose one already, e.g. to link incidents first)."""
    if not title.strip():
        raise ValueError("a problem needs a title")
    linked = tuple(dict.fromkeys(incidents))
    problem = Problem.first(
        id=problem_id,
        tenant_id=tenant_id,
        actor=actor,
        now=now,
        number=number,
        title=title,
        description=description,
        origin=origin,
        state="new",
        ci_id=ci_id,
        service=service,
        incidents=linked,
    )
    event = ProblemCreatedV1(
        title=title,
        description=description,
        ci_id=change_value(ci_id),
        service=service,
        origin=origin,
        incidents=[str(i) for i in linked],
        number=number,
    )
    return problem, [event]


def transition(
    problem: Problem,
    wanted: str,
    *,
    actor: str,
    now: datetime,
    root_cause: str | None = None,
    workaround: str | None = None,
    resolution_notes: str | None = None,
) -> ProblemChange:
    """Move to another state; raise IllegalTransition (409) or InvalidTransitionDetails (422).

    Entering `known_error` publishes the known error (root cause and workaround); resolving
    records the notes (and the root cause when it was not recorded yet); going back to
    `investigating` from `resolved` clears the resolution. Root cause and workaround stay on
    the record when a known error goes back to investigation: it is no longer published (only
    `known_error` problems give workarounds to new incidents), and the history keeps them.
    """
    values: dict[str, Any] = {}
    if root_cause is not None:
        values["root_cause"] = root_cause
    if wanted == "known_error":
        values |= {"workaround": workaround, "known_error_published_at": now}
    elif wanted == "resolved":
        values |= {"resolution_notes": resolution_notes, "resolved_at": now}
    elif wanted == "investigating" and problem.state == "resolved":  # the fix did not work
        values |= {"resolution_notes": None, "resolved_at": None}
    elif wanted == "closed":
        values["closed_at"] = now
    after, changes = move(
        problem,
        workflow.PROBLEM,
        wanted,
        actor=actor,
        now=now,
        details={
            "root_cause": root_cause,
            "workaround": workaround,
            "resolution_notes": resolution_notes,
        },
        values=values,
    )
    events: list[EventPayload] = [
        ProblemTransitionedV1(
            from_state=problem.state,
            to_state=wanted,
            root_cause=root_cause,
            resolution_notes=resolution_notes,
        )
    ]
    if wanted == "known_error":
        events.append(_published(after))
    return ProblemChange(after, changes, events)


def publish_known_error(
    problem: Problem, *, root_cause: str | None, workaround: str | None, actor: str, now: datetime
) -> ProblemChange:
    """Publish the root cause and workaround as a known error.

    From `investigating` this is the move to `known_error`; on a known error it revises the
    published root cause and workaround (a better workaround is published again, no move).
    Anything else is the workflow's IllegalTransition; blank details are InvalidTransitionDetails.
    """
    if problem.state != "known_error":
        return transition(
            problem,
            "known_error",
            actor=actor,
            now=now,
            root_cause=root_cause,
            workaround=workaround,
        )
    missing = {
        name: "required to publish a known error"
        for name, value in (("root_cause", root_cause), ("workaround", workaround))
        if value is None or not value.strip()
    }
    if missing:
        raise workflow.PROBLEM.refuse(problem.state, "known_error", missing)
    values: dict[str, Any] = {"root_cause": root_cause, "workaround": workaround}
    changes = diff(problem, values)
    if not changes:
        return ProblemChange(problem, {}, [])
    after, _ = apply_change(
        problem, {**values, "known_error_published_at": now}, actor=actor, now=now
    )
    return ProblemChange(after, changes, [_published(after)])


def link_incident(
    problem: Problem, incident_id: uuid.UUID, *, actor: str, now: datetime
) -> ProblemChange:
    """Link an incident; linking one already linked changes nothing (no version, no event)."""
    if not problem.is_open:
        raise WrongProblemState(problem.state, "take more incidents")
    if incident_id in problem.incidents:
        return ProblemChange(problem, {}, [])
    incidents = (*problem.incidents, incident_id)
    after, changes = apply_change(problem, {"incidents": incidents}, actor=actor, now=now)
    return ProblemChange(after, changes, [ProblemIncidentLinkedV1(incident_id=str(incident_id))])


def request_change(
    problem: Problem,
    *,
    request_id: uuid.UUID,
    title: str,
    description: str,
    ci_ids: Sequence[uuid.UUID] = (),
    actor: str,
    now: datetime,
) -> ProblemChange:
    """Ask for a change that removes the cause; the event carries the trail the change service
    records (incidents → problem → known error → change). Without CIs named, the problem's CI."""
    if problem.state not in CHANGE_STATES:
        raise WrongProblemState(problem.state, "request a change")
    if not title.strip():
        raise workflow.PROBLEM.refuse(
            problem.state, problem.state, {"title": "required to request a change"}
        )
    targets = tuple(dict.fromkeys(ci_ids)) or ((problem.ci_id,) if problem.ci_id else ())
    requests = (*problem.change_requests, request_id)
    after, changes = apply_change(problem, {"change_requests": requests}, actor=actor, now=now)
    event = ProblemChangeRequestedV1(
        request_id=str(request_id),
        title=title,
        description=description,
        ci_ids=[str(c) for c in targets],
        known_error_id=change_value(problem.known_error_id),
        incidents=[str(i) for i in problem.incidents],
    )
    return ProblemChange(after, changes, [event])
