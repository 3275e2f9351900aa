"""A record type's states, the moves between them and the details each move needs (pure).

One `StateMachine` per record type (incidents, service requests and problems today; changes and
releases next) checks a wanted move and refuses it with a typed error of `shared/errors.py`, so
the one mapping at the HTTP edge answers it without the endpoint translating anything:

- `UnknownState` (a `ValidationFailed`, also a `ValueError`): a state name the type does not
  have (422 naming the field that asked for it);
- `IllegalTransition` (an `InvalidTransition`): no such move in the table; it carries `current`,
  `wanted` and the sorted tuple `allowed` of the states `current` may go to (409 with `allowed`);
- `InvalidTransitionDetails` (a `ValidationFailed`, also a `ValueError`): a detail the move needs
  is missing or blank, has a value that is not allowed, or is given to a move that does not take
  it; `problems` maps each field to why, and each field's error ends with the machine's hint for
  it, if it has one (422 naming every field).

No state moves to itself, and an illegal move is reported before its details are looked at.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Generic, TypeVar

from shared.errors import DomainError, FieldError, InvalidTransition, Location, ValidationFailed

S = TypeVar("S", bound=str)


class WorkflowError(DomainError):
    """A state change, or a change in a state, that a record's rules refuse."""


class UnknownState(WorkflowError, ValidationFailed, ValueError):
    """A state name the record type does not have."""

    def __init__(
        self, record: str, state: str, known: tuple[str, ...], *, field: str = "to"
    ) -> None:
        message = f"{record}: {state!r} is not a state; the states are {', '.join(known)}"
        super().__init__([FieldError(field, message)])
        self.args = (message,)  # str(exc) says why; `detail` is the 422's "invalid: <field>"
        self.record = record
        self.state = state
        self.known = known


class IllegalTransition(WorkflowError, InvalidTransition):
    """A move the record type's transition table does not have."""


class InvalidTransitionDetails(WorkflowError, ValidationFailed, ValueError):
    """A legal move whose details are missing, not allowed, or not taken by that move."""

    def __init__(
        self,
        record: str,
        current: str,
        wanted: str,
        problems: Mapping[str, str],
        *,
        hints: Mapping[str, str] | None = None,
        location: Location = "body",
    ) -> None:
        hints = hints or {}
        super().__init__(
            [
                FieldError(name, why + hints.get(name, ""), location)
                for name, why in problems.items()
            ]
        )
        listed = "; ".join(f"{name}: {why}" for name, why in problems.items())
        self.args = (f"{record}: {current} to {wanted}: {listed}",)
        self.record = record
        self.current = current
        self.wanted = wanted
        self.problems: Mapping[str, str] = MappingProxyType(dict(problems))


@dataclass(frozen=True)
class StateMachine(Generic[S]):
    """The states of one record type, the moves between them, and the details each move needs.

    `transitions` maps every state (final ones to an empty set) to the states it may go to;
    `requires` maps a move `(from, to)` to the names of the details it needs; `choices` maps a
    detail to the values it may take, where they are a fixed list; `hints` maps a detail to what
    a refusal naming it adds (where the caller should go instead). All are frozen on
    construction, and a table that names a state it does not define is refused.
    """

    record: str
    transitions: Mapping[S, frozenset[S]]
    requires: Mapping[tuple[S, S], tuple[str, ...]] = field(default_factory=dict)
    choices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    hints: Mapping[str, str] = field(default_factory=dict)

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
        object.__setattr__(self, "hints", MappingProxyType(dict(self.hints)))

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

    def refuse(
        self, current: str, wanted: str, problems: Mapping[str, str]
    ) -> InvalidTransitionDetails:
        """The refusal of a move's details, with this machine's hints."""
        return InvalidTransitionDetails(self.record, current, wanted, problems, hints=self.hints)

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
            raise self.refuse(current, wanted, problems)


def on_entry(
    transitions: Mapping[S, Iterable[S]], needs: Mapping[S, tuple[str, ...]]
) -> dict[tuple[S, S], tuple[str, ...]]:
    """Details required by every move into a state, whatever it comes from."""
    return {
        (source, target): needs[target]
        for source, targets in transitions.items()
        for target in targets
        if target in needs
    }
