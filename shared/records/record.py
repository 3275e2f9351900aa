"""The numbered, versioned record (pure): its common fields, and the one way to change it.

Every change of a record makes its next version: the version goes up by one, the change is
stamped with who and when (`updated_at`, `updated_by`), and what changed is collected as
`{"field": {"from": old, "to": new}}` (values as JSON, `change_value`) for the history row and
the updated events. A state move goes through the record type's `StateMachine` first
(`transition`). The events a change announces travel with it (`Changed`), and the application
stores the version, its history row and its events in one transaction.

A record type subclasses `VersionedRecord` (a frozen dataclass; the common fields are keyword
arguments) and names its reference prefix (`PREFIX`, e.g. "INC"); its number is its own field,
because an incident logged before numbering has none.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, ClassVar, Generic, Self, TypeVar

from shared.events.catalogue import EventPayload
from shared.ids import new_id
from shared.records.workflow import StateMachine

Changes = dict[str, dict[str, Any]]


@dataclass(frozen=True, kw_only=True)
class VersionedRecord:
    """What every numbered, versioned record has: identity, tenant, state, version, and who
    created and last changed it, when."""

    # The reference is PREFIX<number>, per tenant (INC42, REQ7, PRB3).
    PREFIX: ClassVar[str] = ""

    id: uuid.UUID
    tenant_id: str
    state: str
    version: int
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str

    @classmethod
    def first(
        cls,
        *,
        tenant_id: str,
        state: str,
        actor: str,
        now: datetime,
        id: uuid.UUID | None = None,
        **fields: Any,
    ) -> Self:
        """Version 1 of a new record in `state`, created (and so last changed) by `actor` at
        `now`, with a new id unless the caller chose one."""
        return cls(
            id=id or new_id(),
            tenant_id=tenant_id,
            state=state,
            version=1,
            created_at=now,
            created_by=actor,
            updated_at=now,
            updated_by=actor,
            **fields,
        )

    @property
    def reference(self) -> str | None:
        """PREFIX<number>, or None for a record without a number."""
        number = getattr(self, "number", None)
        return f"{self.PREFIX}{number}" if number is not None else None


R = TypeVar("R", bound=VersionedRecord)


@dataclass(frozen=True)
class Changed(Generic[R]):
    """A new version of a record, what changed, and the events that announce it."""

    record: R
    changes: Changes
    events: list[EventPayload] = field(default_factory=list)


def change_value(value: Any) -> Any:
    """A field value as JSON: instants in RFC 3339 (`2026-05-01T10:00:00Z`), ids as text."""
    if isinstance(value, datetime):
        # str() gives "2026-05-01 10:00:00+00:00": not RFC 3339, unlike every other instant.
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, tuple | list):
        return [change_value(v) for v in value]
    return value


def diff(before: VersionedRecord, values: Mapping[str, Any]) -> Changes:
    """The fields whose value differs from the record's, as `{"from", "to"}` in JSON."""
    return {
        name: {"from": change_value(getattr(before, name)), "to": change_value(value)}
        for name, value in values.items()
        if getattr(before, name) != value
    }


def apply_change(
    record: R, values: Mapping[str, Any], *, actor: str, now: datetime
) -> tuple[R, Changes]:
    """The next version with these field values, stamped by `actor` at `now`, and what changed.

    The version goes up even when no field changes (a decision recorded on a request is a
    version of its own); a caller for whom nothing changing means no version checks `diff`."""
    after = replace(record, **values, version=record.version + 1, updated_at=now, updated_by=actor)
    return after, diff(record, values)


def transition(
    record: R,
    machine: StateMachine[Any],
    wanted: str,
    *,
    actor: str,
    now: datetime,
    details: Mapping[str, object | None] | None = None,
    values: Mapping[str, Any] | None = None,
    guard: Callable[[R], None] | None = None,
) -> tuple[R, Changes]:
    """The next version in state `wanted`, with `values` set, once the machine allows the move
    with these `details` and `guard` (a rule of the record's own, run after the move is found
    legal) does not refuse it."""
    machine.check(record.state, wanted, details)
    if guard is not None:
        guard(record)
    return apply_change(
        record, {"state": machine.state(wanted), **(values or {})}, actor=actor, now=now
    )
