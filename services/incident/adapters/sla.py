"""SLA clocks in PostgreSQL (`sla_clocks`, migration 0004): rows in, `ClockRow`s out.

A row is an `SlaClock` (its fields are columns) plus what the clock counts with: the policy's
name, version and targets for every priority, the priority, the calendar (a `CalendarSpec`
snapshot as jsonb), the hold reasons that pause it and the record's current hold reason. With
those the scheduler advances a clock from its row alone, and a change of priority or hold
reason needs no lookup in the policy projection. Every write recomputes the schedule from the
clock: the pending `warning_at`/`breach_at` and `next_due_at`, the earlier of the two (NULL:
nothing pending).

Use cases read and write inside their tenant transaction (row-level security shows them their
tenant only); the scheduler claims due rows of every tenant in an all-tenants transaction,
which the table's policies allow for reading and advancing only. Connections come from
`shared.db.create_pool`, whose jsonb codec this module relies on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import lru_cache
from typing import Any, cast

import asyncpg

from services.incident.domain.sla import ClockKind, SlaClock
from shared.calendars import BusinessCalendar, CalendarSpec
from shared.db import Connection
from shared.events.catalogue import RecordKind

log = logging.getLogger(__name__)

# Every stored column but the bookkeeping (`updated_at`), in the order of `_values`.
_COLUMNS = (
    "tenant_id",
    "record",
    "record_id",
    "kind",
    "policy",
    "policy_version",
    "priority",
    "targets",
    "calendar",
    "pause_on",
    "hold_reason",
    "sequence",
    "correlation_id",
    "target_seconds",
    "warning_threshold",
    "started_at",
    "elapsed_seconds",
    "running_since",
    "paused_since",
    "stopped_at",
    "paused_seconds",
    "paused_business_seconds",
    "warned_at",
    "breached_at",
    "warning_at",
    "breach_at",
    "next_due_at",
    "last_error",
)
_KEY = 4  # tenant_id, record, record_id, kind
_LIST = ", ".join(_COLUMNS)


@dataclass(frozen=True)
class ClockRow:
    """One stored clock: which record's, under which policy, and the clock itself."""

    tenant_id: str
    record: RecordKind
    record_id: str
    kind: ClockKind
    policy: str
    policy_version: int
    priority: int
    targets: Mapping[str, tuple[int, int]]
    calendar: CalendarSpec
    pause_on: tuple[str, ...]
    clock: SlaClock
    hold_reason: str | None = None
    sequence: int = 0
    correlation_id: str | None = None

    @property
    def business_calendar(self) -> BusinessCalendar:
        """The calendar the clock counts on (shared between clocks with the same spec)."""
        return calendar_of(self.calendar)

    @property
    def subject(self) -> str:
        """The clock's event subject (its aggregate id): `sla/<record id>/<kind>`."""
        return f"sla/{self.record_id}/{self.kind}"

    def with_clock(self, clock: SlaClock) -> ClockRow:
        """The same row holding a changed clock."""
        return replace(self, clock=clock)


@dataclass(frozen=True)
class Schedule:
    """When a clock's pending crossings are due; all None when nothing is pending."""

    warning_at: datetime | None
    breach_at: datetime | None
    error: str | None = None

    @property
    def next_due_at(self) -> datetime | None:
        """The earlier pending deadline: what the scheduler waits for."""
        pending = [d for d in (self.warning_at, self.breach_at) if d is not None]
        return min(pending) if pending else None


def _spec_key(spec: CalendarSpec) -> str:
    return json.dumps(spec.model_dump(mode="json"), sort_keys=True)


@lru_cache(maxsize=256)
def _calendar_from_key(key: str) -> BusinessCalendar:
    return BusinessCalendar(CalendarSpec.model_validate_json(key))


def calendar_of(spec: CalendarSpec) -> BusinessCalendar:
    """A `BusinessCalendar` for the spec, built once per distinct spec (it caches its days)."""
    return _calendar_from_key(_spec_key(spec))


def schedule_of(clock: SlaClock, calendar: BusinessCalendar) -> Schedule:
    """The clock's pending deadlines on its calendar.

    A calendar that never opens has no deadlines: the clock cannot count, so nothing is ever
    due; the reason is kept (`error`) and logged rather than failing the change.
    """
    try:
        return Schedule(clock.warning_at(calendar), clock.breach_at(calendar))
    except ValueError as exc:
        log.warning("an SLA clock has no deadline on its calendar", extra={"reason": str(exc)})
        return Schedule(None, None, error=str(exc))


def _clock_from(record: asyncpg.Record | dict[str, Any]) -> SlaClock:
    return SlaClock(
        kind=record["kind"],
        target_seconds=record["target_seconds"],
        warning_threshold=record["warning_threshold"],
        started_at=record["started_at"],
        elapsed_seconds=record["elapsed_seconds"],
        running_since=record["running_since"],
        paused_since=record["paused_since"],
        stopped_at=record["stopped_at"],
        paused_seconds=record["paused_seconds"],
        paused_business_seconds=record["paused_business_seconds"],
        warned_at=record["warned_at"],
        breached_at=record["breached_at"],
    )


def _json(value: Any) -> Any:
    # Pools made by shared.db decode jsonb; a bare connection hands over the text.
    return json.loads(value) if isinstance(value, str | bytes) else value


def row_from(record: asyncpg.Record) -> ClockRow:
    """Rebuild a stored clock; `ValueError` (pydantic's included) if its fields contradict."""
    spec = CalendarSpec.model_validate(_json(record["calendar"]))
    targets = _json(record["targets"])
    return ClockRow(
        tenant_id=record["tenant_id"],
        record=cast(RecordKind, record["record"]),
        record_id=record["record_id"],
        kind=cast(ClockKind, record["kind"]),
        policy=record["policy"],
        policy_version=record["policy_version"],
        priority=record["priority"],
        targets={p: (t["response_seconds"], t["resolution_seconds"]) for p, t in targets.items()},
        calendar=spec,
        pause_on=tuple(record["pause_on"]),
        clock=_clock_from(record),
        hold_reason=record["hold_reason"],
        sequence=record["sequence"],
        correlation_id=record["correlation_id"],
    )


_INSERT = (
    f"INSERT INTO sla_clocks ({_LIST})"  # noqa: S608 - constant column list
    f" VALUES ({', '.join(f'${i}' for i in range(1, len(_COLUMNS) + 1))})"
    " ON CONFLICT (tenant_id, record, record_id, kind) DO NOTHING"
)
_UPDATE = (
    "UPDATE sla_clocks SET "  # noqa: S608 - constant column list
    + ", ".join(f"{c} = ${i}" for i, c in enumerate(_COLUMNS, 1) if i > _KEY)
    + ", updated_at = clock_timestamp()"
    " WHERE tenant_id = $1 AND record = $2 AND record_id = $3 AND kind = $4"
)


def _values(row: ClockRow) -> tuple[Any, ...]:
    c = row.clock
    schedule = schedule_of(c, row.business_calendar)
    return (
        row.tenant_id,
        row.record,
        row.record_id,
        row.kind,
        row.policy,
        row.policy_version,
        row.priority,
        {
            p: {"response_seconds": response, "resolution_seconds": resolution}
            for p, (response, resolution) in row.targets.items()
        },
        row.calendar.model_dump(mode="json"),
        list(row.pause_on),
        row.hold_reason,
        row.sequence,
        row.correlation_id,
        c.target_seconds,
        c.warning_threshold,
        c.started_at,
        c.elapsed_seconds,
        c.running_since,
        c.paused_since,
        c.stopped_at,
        c.paused_seconds,
        c.paused_business_seconds,
        c.warned_at,
        c.breached_at,
        schedule.warning_at,
        schedule.breach_at,
        schedule.next_due_at,
        schedule.error,
    )


async def insert(conn: Connection, rows: Sequence[ClockRow]) -> list[ClockRow]:
    """Store new clocks; a clock that exists already is kept as it is. Return the new ones."""
    inserted = []
    for row in rows:
        if await conn.execute(_INSERT, *_values(row)) == "INSERT 0 1":
            inserted.append(row)
    return inserted


async def save(conn: Connection, rows: Sequence[ClockRow]) -> None:
    """Write changed clocks back, with their recomputed schedules (one round trip)."""
    if rows:
        await conn.executemany(_UPDATE, [_values(row) for row in rows])


async def load(
    conn: Connection,
    tenant_id: str,
    record: RecordKind,
    record_id: str,
    *,
    for_update: bool = False,
) -> list[asyncpg.Record]:
    """A record's stored clocks (response first), locked for the transaction if asked.

    A use case locks them so that it and the scheduler change a clock one after the other:
    the scheduler skips locked clocks, and a use case waits for a clock the scheduler holds.
    """
    lock = " FOR UPDATE" if for_update else ""
    return await conn.fetch(
        f"SELECT {_LIST} FROM sla_clocks"  # noqa: S608 - constant column list
        f" WHERE tenant_id = $1 AND record = $2 AND record_id = $3 ORDER BY kind DESC{lock}",
        tenant_id,
        record,
        record_id,
    )


async def now(conn: Connection) -> datetime:
    """The database's clock: one time for every scheduler replica."""
    value = await conn.fetchval("SELECT clock_timestamp()")
    assert isinstance(value, datetime)
    return value


async def claim_due(conn: Connection, at: datetime, limit: int) -> list[asyncpg.Record]:
    """Lock up to `limit` clocks of any tenant due by `at`, earliest first, skipping the
    clocks another scheduler or a use case holds (all-tenants transaction)."""
    return await conn.fetch(
        f"SELECT {_LIST} FROM sla_clocks"  # noqa: S608 - constant column list
        " WHERE next_due_at <= $1 ORDER BY next_due_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        at,
        limit,
    )


async def postpone(
    conn: Connection, failures: Sequence[tuple[asyncpg.Record, datetime, str]]
) -> None:
    """Keep clocks that could not be advanced in the queue, due again later, with the reason."""
    await conn.executemany(
        "UPDATE sla_clocks SET next_due_at = $5, last_error = $6, updated_at = clock_timestamp()"
        " WHERE tenant_id = $1 AND record = $2 AND record_id = $3 AND kind = $4",
        [
            (r["tenant_id"], r["record"], r["record_id"], r["kind"], until, error)
            for r, until, error in failures
        ],
    )


async def next_due(conn: Connection) -> datetime | None:
    """The earliest pending deadline of any tenant (all-tenants transaction), or None."""
    value = await conn.fetchval(
        "SELECT min(next_due_at) FROM sla_clocks WHERE next_due_at IS NOT NULL"
    )
    assert value is None or isinstance(value, datetime)
    return value
