"""Which state changes incidents, service requests and problems may make (ISO/IEC 20000-1 8.6).

Pure: no I/O. One generic `StateMachine` holds each record type's transitions, the details a
transition needs and the values a detail may take (`INCIDENT`, `SERVICE_REQUEST`, `PROBLEM`);
a `check_*_transition` function per record type takes the details as keyword arguments (for
requests it also matches the approval's decision to the move). Every check refuses with:

- `UnknownState` (a `ValueError`) for a state name the record type does not have;
- `IllegalTransition` when the record type's table has no such move; it carries `current`,
  `wanted` and the sorted tuple `allowed` of the states `current` may go to (HTTP: 409);
- `InvalidTransitionDetails` (a `ValueError`) when a detail the move needs is missing or blank,
  has a value that is not allowed, or is given to a move that does not take it, so that nothing
  a client sends is silently dropped; `problems` maps each field to why (HTTP: 422).

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

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Final, Generic, Literal, TypeVar, get_args

S = TypeVar("S", bound=str)


class WorkflowError(Exception):
    """A state change the workflow rules refuse."""


class UnknownState(WorkflowError, ValueError):
    """A state name the record type does not have."""

    def __init__(self, record: str, state: str, known: tuple[str, ...]) -> None:
        super().__init__(f"{record}: {state!r} is not a state; the states are {', '.join(known)}")
        self.record = record
        self.state = state
        self.known = known


class IllegalTransition(WorkflowError):
    """A move the record type's transition table does not have."""

    def __init__(self, record: str, current: str, wanted: str, allowed: tuple[str, ...]) -> None:
        where = (
            f"allowed from {current}: {', '.join(allowed)}" if allowed else f"{current} is final"
        )
        super().__init__(f"{record}: cannot go from {current} to {wanted} ({where})")
        self.record = record
        self.current = current
        self.wanted = wanted
        self.allowed = allowed


class InvalidTransitionDetails(WorkflowError, ValueError):
    """A legal move whose details are missing, not allowed, or not taken by that move."""

    def __init__(self, record: str, current: str, wanted: str, problems: Mapping[str, str]) -> None:
        listed = "; ".join(f"{name}: {why}" for name, why in problems.items())
        super().__init__(f"{record}: {current} to {wanted}: {listed}")
        self.record = record
        self.current = current
        self.wanted = wanted
        self.problems: Mapping[str, str] = MappingProxyType(dict(problems))


class MajorReviewMissing(WorkflowError):
    """A major incident cannot be closed before its post-resolution review is recorded."""

    def __init__(self, priority: int, flagged: bool) -> None:
        why = f"priority {priority}" if priority == 1 else "flagged major"
        super().__init__(f"a major incident ({why}) cannot be closed until its review is recorded")
        self.priority = priority
        self.flagged = flagged


@dataclass(frozen=True)
class StateMachine(Generic[S]):
    """The states of one record type, the moves between them, and the details each move needs.

    `transitions` maps every state (final ones to an empty set) to the states it may go to;
    `requires` maps a move `(from, to)` to the names of the details it needs; `choices` maps a
    detail to the values it may take, where they are a fixed list. All are frozen on
    construction, and a table that names a state it does not define is refused.
    """

    record: str
    transitions: Mapping[S, frozenset[S]]
    requires: Mapping[tuple[S, S], tuple[str, ...]] = field(default_factory=dict)
    choices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        undefined = sorted(
            {target for targets in self.transitions.values() for target in targets}
            - set(self.transitions)
        )
        if undefined:
            raise ValueError(f"{self.record}: moves to undefined states {', '.join(undefined)}")
        not_moves = sorted(
            f"{a}->{b}" for a, b in self.requires if b not in self.transitions.get(a, frozenset())
        )
        if not_moves:
            raise ValueError(
                f"{self.record}: details required for non-moves {', '.join(not_moves)}"
            )
        object.__setattr__(
            self,
            "transitions",
            MappingProxyType({state: frozenset(t) for state, t in self.transitions.items()}),
        )
        object.__setattr__(self, "requires", MappingProxyType(dict(self.requires)))
        object.__setattr__(self, "choices", MappingProxyType(dict(self.choices)))

    @property
    def states(self) -> tuple[S, ...]:
        """Every state, in the order the table defines them."""
        return tuple(self.transitions)

    @property
    def final_states(self) -> tuple[S, ...]:
        """The states nothing leaves."""
        return tuple(state for state, targets in self.transitions.items() if not targets)

    def state(self, name: str) -> S:
        """`name` as one of this record type's states, or `UnknownState`."""
        for state in self.transitions:
            if state == name:
                return state
        raise UnknownState(self.record, name, self.states)

    def allowed_from(self, state: str) -> tuple[S, ...]:
        """The states `state` may go to, sorted by name (empty for a final state)."""
        return tuple(sorted(self.transitions[self.state(state)]))

    def can(self, current: str, wanted: str) -> bool:
        """Whether the table has the move from `current` to `wanted`."""
        return self.state(wanted) in self.transitions[self.state(current)]

    def required(self, current: str, wanted: str) -> tuple[str, ...]:
        """The names of the details the move needs (empty for none)."""
        return self.requires.get((self.state(current), self.state(wanted)), ())

    def check(
        self, current: str, wanted: str, details: Mapping[str, object | None] | None = None
    ) -> None:
        """Refuse an unknown state, a move not in the table, or details the move does not fit.

        `details` maps each detail the caller knows of to its value or None (not given). A
        detail the move needs must be given and, when it is text, not blank, and one of its
        `choices` if it has them; a detail it does not need must not be given. All problems
        are reported together, the needed details first.
        """
        if not self.can(current, wanted):
            raise IllegalTransition(self.record, current, wanted, self.allowed_from(current))
        needed = self.required(current, wanted)
        given = {**dict.fromkeys(needed), **(details or {})}
        problems: dict[str, str] = {}
        for name, value in given.items():
            choices = self.choices.get(name)
            if name not in needed:
                if value is not None:
                    problems[name] = f"not taken by the move from {current} to {wanted}"
            elif value is None or (isinstance(value, str) and not value.strip()):
                problems[name] = f"required to go from {current} to {wanted}"
            elif choices is not None and value not in choices:
                problems[name] = f"must be one of {', '.join(choices)}, not {value!r}"
        if problems:
            raise InvalidTransitionDetails(self.record, current, wanted, problems)


def _on_entry(
    transitions: Mapping[S, Iterable[S]], needs: Mapping[S, tuple[str, ...]]
) -> dict[tuple[S, S], tuple[str, ...]]:
    """Details required by every move into a state, whatever it comes from."""
    return {
        (source, target): needs[target]
        for source, targets in transitions.items()
        for target in targets
        if target in needs
    }


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
    _on_entry(
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
        raise InvalidTransitionDetails(
            "service request",
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
