"""Which state changes incidents, service requests and problems may make (ISO/IEC 20000-1 8.6).

Pure: no I/O. The generic `StateMachine` (`shared/records/workflow.py`) holds each record
type's transitions, the details a transition needs and the values a detail may take (`INCIDENT`,
`SERVICE_REQUEST`, `PROBLEM`); a `check_*_transition` function per record type takes the details
as keyword arguments (for requests it also matches the approval's decision to the move). Every
check refuses with a typed error of `shared/errors.py` (answered by the one mapping at the HTTP
edge, no endpoint translates them):

- `UnknownState` (a `ValidationFailed`, also a `ValueError`) for a state name the record type
  does not have (HTTP: 422);
- `IllegalTransition` (an `InvalidTransition`) when the record type's table has no such move; it
  carries `current`, `wanted` and the sorted tuple `allowed` of the states `current` may go to
  (HTTP: 409 naming the field `to`, with `allowed`);
- `InvalidTransitionDetails` (a `ValidationFailed`, also a `ValueError`) when a detail the move
  needs is missing or blank, has a value that is not allowed, or is given to a move that does
  not take it, so that nothing a client sends is silently dropped; `problems` maps each field to
  why (HTTP: 422 naming each field, with the machine's hint where the caller should go instead).

No state moves to itself: changing the hold reason of an on-hold incident is an update of the
record, not a transition. The checks run in that order: an illegal move is reported before its
details are looked at.

## Incidents (8.6.1)

| from          | may go to                                 |
|---------------|-------------------------------------------|
| `new`         | in_progress, on_hold, resolved, cancelled |
| `in_progress` | on_hold, resolved, cancelled              |
| `on_hold`     | in_progress, resolved, cancelled          |
| `resolved`    | in_progress, closed                       |
| `closed`      | (final)                                   |
| `cancelled`   | (final)                                   |

Details by target state: `on_hold` needs `hold_reason`, one of `HOLD_REASONS` (the reasons SLA
policies may pause on); `resolved` needs `resolution_code`, one of `RESOLUTION_CODES`, and
non-blank `resolution_notes`; other moves take no details. Why these moves:

- `new → resolved` is first-contact resolution (the service desk fixes it while logging it),
  which ITIL counts rather than forbids; `new → on_hold` is waiting for the caller before anyone
  can start. `new → closed` is not allowed: only a resolved incident (which has its resolution
  code) can be closed, so every closed incident says how it ended.
- `on_hold → resolved`: the wait itself can end the incident (the vendor's fix or the awaited
  change is the resolution), with no detour through in_progress.
- `resolved → in_progress` is the reopen when the caller says it is not fixed; the resolution
  it records is the application's to clear. `resolved → closed` is both the caller's
  confirmation and the automatic closure N days after resolution (scheduled elsewhere).
- `cancelled` (logged in error, duplicate) is possible until the incident is resolved; after
  that, the way out is closure. A closed incident is never reopened: a recurrence is a new
  incident, linked to the old one.

Major incidents: an incident is major when its priority is 1 or it is flagged major
(`is_major`). A major incident cannot be closed until its post-resolution review is recorded:
before closing, manually or automatically, call `check_major_review`, which raises
`MajorReviewMissing` (HTTP: 409). Only closure is guarded: cancelling (an incident logged in
error) needs no review. The automatic closure should skip a major incident without its review.

## Service requests (8.6.2)

| from                | may go to                                   |
|---------------------|---------------------------------------------|
| `submitted`         | awaiting_approval, in_fulfilment, cancelled |
| `awaiting_approval` | in_fulfilment, rejected, cancelled          |
| `in_fulfilment`     | fulfilled, cancelled                        |
| `fulfilled`         | closed                                      |
| `closed`            | (final)                                     |
| `rejected`          | (final)                                     |
| `cancelled`         | (final)                                     |

A request that needs approval goes `submitted → awaiting_approval`; one that does not goes
straight to `in_fulfilment`. Leaving `awaiting_approval` for `in_fulfilment` needs an approved
`Approval`, for `rejected` a rejected one (`state_after_approval` picks the state from the
decision; a decision on a request not awaiting approval is refused); the record keeps the
`Approval` (who, what, when, why). A rejection needs a comment,
because the requester is owed the reason. "Approved" is a decision, not a state. A request can be
cancelled (withdrawn) until it is fulfilled, also during fulfilment; a fulfilled request is only
closed, and a request found lacking after fulfilment is a new request. One decision moves the
request: where several approvers must agree, the application collects their approvals and
passes the one that decides.

## Problems and known errors (8.6.3)

| from            | may go to                          |
|-----------------|------------------------------------|
| `new`           | investigating, cancelled           |
| `investigating` | known_error, resolved, cancelled   |
| `known_error`   | investigating, resolved, cancelled |
| `resolved`      | investigating, closed              |
| `closed`        | (final)                            |
| `cancelled`     | (final)                            |

Details: `investigating → known_error` needs `root_cause` and `workaround`; `investigating →
resolved` needs `root_cause` and `resolution_notes`; `known_error → resolved` needs
`resolution_notes` (the root cause is recorded already). All must be non-blank.

- A known error is a problem whose root cause and workaround are recorded, so entering
  `known_error` needs both, non-blank.
- A problem is resolved when its cause is removed (usually by a change, linked elsewhere), so
  `resolved` needs the root cause (from `investigating`; a known error has it already) and
  notes on the fix. Without a root cause the problem stays open or is cancelled.
- `known_error → investigating`: the recorded root cause turned out wrong. `resolved →
  investigating`: the incidents came back, the fix did not work.
- `cancelled` until resolved (not a problem, duplicate, or a known error that will never be
  fixed because what it affects is retired).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Final, Literal, get_args

from shared.errors import Conflict, FieldError
from shared.records.workflow import (
    IllegalTransition,
    InvalidTransitionDetails,
    StateMachine,
    UnknownState,
    WorkflowError,
    on_entry,
)

__all__ = [
    "IllegalTransition",
    "InvalidTransitionDetails",
    "MajorReviewMissing",
    "StateMachine",
    "UnknownState",
    "WorkflowError",
]


class MajorReviewMissing(WorkflowError, Conflict):
    """A major incident cannot be closed before its post-resolution review is recorded."""

    def __init__(self, priority: int, flagged: bool, *, field: str = "to") -> None:
        why = f"priority {priority}" if priority == 1 else "flagged major"
        super().__init__(
            f"a major incident ({why}) cannot be closed until its review is recorded",
            fields=[FieldError(field, "record the major-incident review")],
        )
        self.priority = priority
        self.flagged = flagged


# --- Incidents --------------------------------------------------------------------------------

IncidentState = Literal["new", "in_progress", "on_hold", "resolved", "closed", "cancelled"]
HoldReason = Literal["awaiting_customer", "awaiting_vendor", "awaiting_change"]
# Kept few and fixed so that reports compare like with like across teams and tenants.
ResolutionCode = Literal[
    "solved_permanently",
    "solved_workaround",
    "resolved_by_caller",
    "not_reproducible",
    "not_solved",
    "alert_cleared",  # monitoring reported the alert over; nobody recorded a fix
]
HOLD_REASONS: Final[tuple[str, ...]] = get_args(HoldReason)
RESOLUTION_CODES: Final[tuple[str, ...]] = get_args(ResolutionCode)

_INCIDENT_MOVES: Final[dict[IncidentState, frozenset[IncidentState]]] = {
    "new": frozenset({"in_progress", "on_hold", "resolved", "cancelled"}),
    "in_progress": frozenset({"on_hold", "resolved", "cancelled"}),
    "on_hold": frozenset({"in_progress", "resolved", "cancelled"}),
    "resolved": frozenset({"in_progress", "closed"}),
    "closed": frozenset(),
    "cancelled": frozenset(),
}
INCIDENT: Final = StateMachine[IncidentState](
    "incident",
    _INCIDENT_MOVES,
    on_entry(
        _INCIDENT_MOVES,
        {"on_hold": ("hold_reason",), "resolved": ("resolution_code", "resolution_notes")},
    ),
    {"hold_reason": HOLD_REASONS, "resolution_code": RESOLUTION_CODES},
)


def check_incident_transition(
    current: str,
    wanted: str,
    *,
    hold_reason: str | None = None,
    resolution_code: str | None = None,
    resolution_notes: str | None = None,
) -> None:
    """Refuse an incident's move unless the table allows it with these details."""
    INCIDENT.check(
        current,
        wanted,
        {
            "hold_reason": hold_reason,
            "resolution_code": resolution_code,
            "resolution_notes": resolution_notes,
        },
    )


def is_major(priority: int, *, flagged: bool) -> bool:
    """Whether an incident is major: priority 1, or flagged major whatever its priority."""
    if isinstance(priority, bool) or not 1 <= priority <= 5:
        raise ValueError(f"priority must be 1 to 5, not {priority!r}")
    return priority == 1 or flagged


def check_major_review(*, priority: int, flagged: bool, review_recorded: bool) -> None:
    """Refuse to close a major incident whose post-resolution review is not recorded."""
    if is_major(priority, flagged=flagged) and not review_recorded:
        raise MajorReviewMissing(priority, flagged)


# --- Service requests -------------------------------------------------------------------------

RequestState = Literal[
    "submitted",
    "awaiting_approval",
    "in_fulfilment",
    "fulfilled",
    "closed",
    "rejected",
    "cancelled",
]
Decision = Literal["approved", "rejected"]
DECISIONS: Final[tuple[str, ...]] = get_args(Decision)

_REQUEST_MOVES: Final[dict[RequestState, frozenset[RequestState]]] = {
    "submitted": frozenset({"awaiting_approval", "in_fulfilment", "cancelled"}),
    "awaiting_approval": frozenset({"in_fulfilment", "rejected", "cancelled"}),
    "in_fulfilment": frozenset({"fulfilled", "cancelled"}),
    "fulfilled": frozenset({"closed"}),
    "closed": frozenset(),
    "rejected": frozenset(),
    "cancelled": frozenset(),
}
SERVICE_REQUEST: Final = StateMachine[RequestState](
    "service request",
    _REQUEST_MOVES,
    {
        ("awaiting_approval", "in_fulfilment"): ("approval",),
        ("awaiting_approval", "rejected"): ("approval",),
    },
    # A decision is not a move: the refusal says where to make it.
    hints={"approval": "; decide with POST /requests/{id}/approvals"},
)


@dataclass(frozen=True)
class Approval:
    """One approver's decision on a service request, as the record keeps it."""

    approver: str
    decision: Decision
    at: datetime
    comment: str = ""

    def __post_init__(self) -> None:
        if not self.approver.strip():
            raise ValueError("an approval needs its approver")
        if self.decision not in DECISIONS:
            raise ValueError(f"decision must be approved or rejected, not {self.decision!r}")
        if self.at.tzinfo is None or self.at.utcoffset() is None:
            raise ValueError("the time of an approval must be timezone-aware")
        if self.decision == "rejected" and not self.comment.strip():
            raise ValueError("a rejection needs a comment: the requester is owed the reason")


_STATE_AFTER: Final[Mapping[Decision, RequestState]] = MappingProxyType(
    {"approved": "in_fulfilment", "rejected": "rejected"}
)


def check_request_transition(
    current: str, wanted: str, *, approval: Approval | None = None
) -> None:
    """Refuse a service request's move unless the table allows it with this approval."""
    SERVICE_REQUEST.check(current, wanted, {"approval": approval})
    if approval is not None and (decided := _STATE_AFTER[approval.decision]) != wanted:
        raise SERVICE_REQUEST.refuse(
            current,
            wanted,
            {"approval": f"{approval.decision}, so the request goes to {decided}, not {wanted}"},
        )


def state_after_approval(current: str, approval: Approval) -> RequestState:
    """Where the decision takes a request awaiting approval: in_fulfilment or rejected."""
    wanted = _STATE_AFTER[approval.decision]
    check_request_transition(current, wanted, approval=approval)
    return wanted


# --- Problems and known errors ----------------------------------------------------------------

ProblemState = Literal["new", "investigating", "known_error", "resolved", "closed", "cancelled"]

PROBLEM: Final = StateMachine[ProblemState](
    "problem",
    {
        "new": frozenset({"investigating", "cancelled"}),
        "investigating": frozenset({"known_error", "resolved", "cancelled"}),
        "known_error": frozenset({"investigating", "resolved", "cancelled"}),
        "resolved": frozenset({"investigating", "closed"}),
        "closed": frozenset(),
        "cancelled": frozenset(),
    },
    {
        ("investigating", "known_error"): ("root_cause", "workaround"),
        ("investigating", "resolved"): ("root_cause", "resolution_notes"),
        ("known_error", "resolved"): ("resolution_notes",),
    },
)


def check_problem_transition(
    current: str,
    wanted: str,
    *,
    root_cause: str | None = None,
    workaround: str | None = None,
    resolution_notes: str | None = None,
) -> None:
    """Refuse a problem's move unless the table allows it with these details."""
    PROBLEM.check(
        current,
        wanted,
        {"root_cause": root_cause, "workaround": workaround, "resolution_notes": resolution_notes},
    )
