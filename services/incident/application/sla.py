"""SLA clocks of incidents and service requests: their life inside the use cases, and the
scheduler that announces warnings and breaches when they fall due.

**Inside a use case.** The incident and request use cases call `start_clocks`, `on_hold`,
`resume`, `stop`, `reopen` and `retarget` on their unit of work (`application/uow.py`; these
functions never commit), with the instant of the change; starting is a reaction to a new record
(`application/reactions.py`). Each function locks the record's clocks (`uow.clocks`), changes
them with the pure `SlaClock` (`domain/sla.py`), writes them back with their new schedule, and
records on the unit of work every event the change causes: `SlaWarningReachedV1` /
`SlaBreachedV1` whenever a change sets `warned_at` / `breached_at` (a pause, a stop or a
retarget can record a crossing first), then `SlaClockStoppedV1` when a clock stops. The subject
is `sla/<record id>/<kind>` and the sequence a per-clock counter kept in the row, one per event.
A record with no policy has no clocks, and every function is then a no-op. Each returns the
events it recorded (`Fired`), and counts warnings and breaches in the unit of work's `metrics`
when it has them (as recorded: a transaction rolled back afterwards has been counted all the
same).

Which state changes call what is the aggregate's business; the expected mapping:

| record change                                  | call                                    |
|------------------------------------------------|-----------------------------------------|
| logged / submitted (with a policy)             | `start_clocks`                          |
| put on hold, or its hold reason changed        | `on_hold(reason=...)`                   |
| back from hold                                 | `resume`                                |
| first response (incident `in_progress`, ...)   | `stop(kind="response")`                 |
| resolved / fulfilled                           | `stop(kind=("response", "resolution"))` |
| reopened (resolved → in_progress)              | `reopen(kind="resolution")`             |
| priority or policy changed                     | `retarget`                              |

**Instants.** The domain refuses an instant before a clock's last change. The scheduler may
have advanced a clock (to its own, database, time) between the moment a use case read its
clock and the moment it got the row's lock; so an instant before the clock's last change is
taken as that last change (a difference of milliseconds), never refused.

**The scheduler** (`run_scheduler`, one loop per replica): in one all-tenants transaction it
claims the due clocks of every tenant (`FOR UPDATE SKIP LOCKED`, so N replicas announce each
crossing exactly once), advances each to now, writes it back and records its events on a unit of
work of the row's own tenant joining that transaction, then commits; then it sleeps until the
earliest pending deadline (at most `interval`). Everything it needs is in the table, so a
restart loses nothing: after an outage the overdue clocks fire on the first round, dated at
their exact due instant and flagged `late` when they fire more than `late_after` after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, Protocol

import asyncpg

from services.incident.adapters import sla as repository
from services.incident.adapters.sla import ClockRow
from services.incident.application.uow import IncidentUnitOfWork, IncidentWork
from services.incident.domain.sla import (
    CLOCK_KINDS,
    PRIORITY_NAMES,
    ClockKind,
    ClockState,
    SlaClock,
    pauses,
)
from services.incident.metrics import IncidentMetrics
from shared.calendars import CalendarSpec
from shared.context import RequestContext
from shared.db import Connection, all_tenants_transaction
from shared.events.catalogue import (
    EventPayload,
    RecordKind,
    SlaBreachedV1,
    SlaClockRefV1,
    SlaClockStoppedV1,
    SlaWarningReachedV1,
)

log = logging.getLogger(__name__)

SCHEDULER_ACTOR: Final = "system:sla-scheduler"
DEFAULT_LATE_AFTER: Final = timedelta(seconds=5)
# A clock the scheduler cannot advance (a row it cannot rebuild) is tried again this much later.
RETRY_AFTER: Final = timedelta(seconds=60)
# The shortest nap between rounds when something is due that another replica holds.
MIN_WAIT_SECONDS: Final = 0.05

FiredKind = Literal["warning", "breach", "stopped"]
# Where the scheduler reads "now": the database's clock, one time for every replica; a test
# passes its own instant to prove what is (and is not) due at it without waiting.
SchedulerClock = Callable[[Connection], Awaitable[datetime]]


# --- what a policy must offer -------------------------------------------------------------------


class TargetPair(Protocol):
    """Targets of one priority, in business seconds (`SlaTargetV1` is one)."""

    @property
    def response_seconds(self) -> int: ...

    @property
    def resolution_seconds(self) -> int: ...


class ClockPolicy(Protocol):
    """The SLA policy in force for a record, as the policy projection holds it.

    `targets` maps "P1".."P5" to a `TargetPair` (e.g. `SlaTargetV1`) or a tuple
    (response_seconds, resolution_seconds).
    """

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> int: ...

    @property
    def targets(self) -> Mapping[Any, TargetPair | tuple[int, int]]: ...

    @property
    def calendar(self) -> CalendarSpec: ...

    @property
    def pause_on(self) -> Collection[str]: ...

    @property
    def warning_threshold(self) -> float: ...


def targets_of(policy: ClockPolicy) -> dict[str, tuple[int, int]]:
    """The policy's targets per priority name as (response_seconds, resolution_seconds)."""
    targets: dict[str, tuple[int, int]] = {}
    for name, target in policy.targets.items():
        if isinstance(target, tuple):
            response, resolution = target
        else:
            response, resolution = target.response_seconds, target.resolution_seconds
        targets[str(name)] = (int(response), int(resolution))
    return targets


def target_seconds_for(
    targets: Mapping[str, tuple[int, int]], priority: int, kind: ClockKind
) -> int:
    """The `kind` target of a priority 1 (P1) to 5 (P5); `ValueError` if the policy has none."""
    if isinstance(priority, bool) or not isinstance(priority, int) or not 1 <= priority <= 5:
        raise ValueError(f"priority must be a whole number from 1 to 5, got {priority!r}")
    name = PRIORITY_NAMES[priority - 1]
    try:
        response, resolution = targets[name]
    except KeyError:
        raise ValueError(f"the SLA policy has no targets for {name}") from None
    return response if kind == "response" else resolution


# --- what changes announce ---------------------------------------------------------------------


@dataclass(frozen=True)
class Fired:
    """An event a change recorded for a clock."""

    event: FiredKind
    record: RecordKind
    kind: ClockKind
    tenant_id: str
    subject: str
    sequence: int
    payload: EventPayload
    due_at: datetime | None = None
    late: bool = False


def _ref(row: ClockRow) -> SlaClockRefV1:
    return SlaClockRefV1(
        record=row.record,
        record_id=row.record_id,
        kind=row.kind,
        policy=row.policy,
        priority=row.priority,
        target_seconds=row.clock.target_seconds,
    )


def announce(before: SlaClock, after: ClockRow, at: datetime, late_after: timedelta) -> list[Fired]:
    """The events of a change from `before` to `after.clock`, numbered on from its sequence:
    a warning and a breach for each crossing the change recorded (`late` when `at` is more
    than `late_after` after it), then the stop."""
    fired: list[Fired] = []
    clock = after.clock
    sequence = after.sequence

    def add(event: FiredKind, payload: EventPayload, due_at: datetime | None, late: bool) -> None:
        nonlocal sequence
        sequence += 1
        fired.append(
            Fired(
                event=event,
                record=after.record,
                kind=after.kind,
                tenant_id=after.tenant_id,
                subject=after.subject,
                sequence=sequence,
                payload=payload,
                due_at=due_at,
                late=late,
            )
        )

    for event, was, now, model in (
        ("warning", before.warned_at, clock.warned_at, SlaWarningReachedV1),
        ("breach", before.breached_at, clock.breached_at, SlaBreachedV1),
    ):
        if was is None and now is not None:
            late = at - now > late_after
            payload = model(
                clock=_ref(after), due_at=now, late=late, elapsed_seconds=clock.elapsed_seconds
            )
            add(event, payload, now, late)  # type: ignore[arg-type]
    if before.stopped_at is None and clock.stopped_at is not None:
        outcome = clock.outcome()
        stopped = SlaClockStoppedV1(
            clock=_ref(after),
            result=outcome.result,
            elapsed_seconds=outcome.elapsed_seconds,
            paused_seconds=outcome.paused_seconds,
            started_at=outcome.started_at,
            stopped_at=outcome.stopped_at,
        )
        add("stopped", stopped, None, False)
    return fired


def _announced(
    changes: Sequence[tuple[ClockRow, ClockRow]], at: datetime, late_after: timedelta
) -> tuple[list[ClockRow], list[Fired]]:
    """The changed rows to store (sequence moved on past their events) and the events."""
    fired: list[Fired] = []
    rows: list[ClockRow] = []
    for before, after in changes:
        events = announce(before.clock, after, at, late_after)
        fired.extend(events)
        if events:
            after = replace(after, sequence=events[-1].sequence)
        if after != before:
            rows.append(after)
    return rows, fired


async def _write(
    uow: IncidentWork,
    changes: Sequence[tuple[ClockRow, ClockRow]],
    *,
    at: datetime,
    late_after: timedelta,
) -> list[Fired]:
    """Store changed clocks and record their events on the use case's unit of work."""
    rows, fired = _announced(changes, at, late_after)
    await uow.clocks.save(rows)
    for f in fired:
        uow.record(f.subject, f.sequence, [f.payload])
    return fired


async def _write_scheduled(
    conn: Connection,
    changes: Sequence[tuple[ClockRow, ClockRow]],
    *,
    at: datetime,
    late_after: timedelta,
) -> list[Fired]:
    """The scheduler's writes, in its all-tenants transaction: the clocks, then each clock's
    events on a unit of work of its tenant and of the correlation its clock started under."""
    rows, fired = _announced(changes, at, late_after)
    await repository.save(conn, rows)
    batches: dict[tuple[str, str | None], list[Fired]] = {}
    correlation = {(a.tenant_id, a.subject): a.correlation_id for _, a in changes}
    for f in fired:
        batches.setdefault((f.tenant_id, correlation[f.tenant_id, f.subject]), []).append(f)
    for (tenant_id, key), batch in batches.items():
        # A clock started before correlation ids were kept has none; the outbox takes None.
        context = RequestContext(tenant_id, SCHEDULER_ACTOR, key)  # type: ignore[arg-type]
        async with IncidentUnitOfWork.joining(conn, context) as uow:
            for f in batch:
                uow.record(f.subject, f.sequence, [f.payload])
    return fired


def _count(metrics: IncidentMetrics | None, fired: Iterable[Fired]) -> None:
    if metrics is None:
        return
    for f in fired:
        if f.event != "stopped":
            metrics.sla_fired(f.event, f.record, f.kind, f.late)


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"at must be a timezone-aware datetime, got naive {at!r}")
    return at.astimezone(UTC)


def _kinds(kind: ClockKind | Iterable[ClockKind]) -> frozenset[str]:
    kinds = frozenset((kind,) if isinstance(kind, str) else kind)
    unknown = kinds - set(CLOCK_KINDS)
    if unknown:
        raise ValueError(f"clock kinds are {', '.join(CLOCK_KINDS)}, got {sorted(unknown)}")
    return kinds


async def _change(
    uow: IncidentWork,
    *,
    record: RecordKind,
    record_id: str | uuid.UUID,
    at: datetime,
    late_after: timedelta,
    how: Callable[[ClockRow, datetime], ClockRow],
) -> list[Fired]:
    """Lock a record's clocks, apply `how(row, at) -> row` to each, store and announce."""
    at = _utc(at)
    changes = []
    for row in await uow.clocks.load(record, str(record_id), for_update=True):
        changed = how(row, max(at, row.clock.changed_at))
        if changed != row:
            changes.append((row, changed))
    fired = await _write(uow, changes, at=at, late_after=late_after)
    _count(uow.metrics, fired)
    return fired


# --- use cases' side -----------------------------------------------------------------------------


async def start_clocks(
    uow: IncidentWork,
    *,
    record: RecordKind,
    record_id: str | uuid.UUID,
    policy: ClockPolicy | None,
    priority: int,
    at: datetime,
    kinds: Iterable[ClockKind] = CLOCK_KINDS,
) -> list[Fired]:
    """Start the record's clocks (both kinds unless told) running at `at` under `policy` for
    `priority` (1-5). No policy: no clocks. A clock that exists already is left as it is (a
    redelivered command). Starting announces nothing; the scheduler announces what falls due,
    even if `at` lies so far back that a deadline has passed already. The clocks keep the unit
    of work's correlation id for the events the scheduler announces later."""
    if policy is None:
        return []
    at = _utc(at)
    targets = targets_of(policy)
    rows = [
        ClockRow(
            tenant_id=uow.tenant_id,
            record=record,
            record_id=str(record_id),
            kind=kind,
            policy=policy.name,
            policy_version=policy.version,
            priority=priority,
            targets=targets,
            calendar=CalendarSpec.model_validate(policy.calendar.model_dump()),
            pause_on=tuple(sorted(policy.pause_on)),
            clock=SlaClock.start(
                kind, target_seconds_for(targets, priority, kind), at, policy.warning_threshold
            ),
            correlation_id=uow.context.correlation_id,
        )
        for kind in CLOCK_KINDS
        if kind in _kinds(kinds)
    ]
    await uow.clocks.insert(rows)
    return []


async def on_hold(
    uow: IncidentWork,
    *,
    record: RecordKind,
    record_id: str | uuid.UUID,
    reason: str | None,
    at: datetime,
    late_after: timedelta = DEFAULT_LATE_AFTER,
) -> list[Fired]:
    """The record is on hold for `reason` from `at` (None: not on hold): clocks whose policy
    pauses on that reason pause, the others run. Also for a change of hold reason while on
    hold. Stopped clocks only remember the reason."""

    def hold(row: ClockRow, at: datetime) -> ClockRow:
        row = replace(row, hold_reason=reason)
        if row.clock.state == "stopped":
            return row
        calendar = row.business_calendar
        if pauses(reason, row.pause_on):
            return row.with_clock(row.clock.pause(at, calendar))
        return row.with_clock(row.clock.resume(at, calendar))

    return await _change(
        uow,
        record=record,
        record_id=record_id,
        at=at,
        late_after=late_after,
        how=hold,
    )


async def resume(
    uow: IncidentWork,
    *,
    record: RecordKind,
    record_id: str | uuid.UUID,
    at: datetime,
    late_after: timedelta = DEFAULT_LATE_AFTER,
) -> list[Fired]:
    """The record is back from hold at `at`: its paused clocks run again, keeping their time."""
    return await on_hold(
        uow, record=record, record_id=record_id, reason=None, at=at, late_after=late_after
    )


async def stop(
    uow: IncidentWork,
    *,
    record: RecordKind,
    record_id: str | uuid.UUID,
    kind: ClockKind | Iterable[ClockKind],
    at: datetime,
    late_after: timedelta = DEFAULT_LATE_AFTER,
) -> list[Fired]:
    """Stop the record's `kind` clock(s) at `at`, recording met or breached, and announce
    `SlaClockStoppedV1` (after any crossing the stop records first). A stopped clock is left
    as it is, so a repeated stop announces nothing."""
    kinds = _kinds(kind)

    def halt(row: ClockRow, at: datetime) -> ClockRow:
        if row.kind not in kinds:
            return row
        return row.with_clock(row.clock.stop(at, row.business_calendar))

    return await _change(
        uow,
        record=record,
        record_id=record_id,
        at=at,
        late_after=late_after,
        how=halt,
    )


async def reopen(
    uow: IncidentWork,
    *,
    record: RecordKind,
    record_id: str | uuid.UUID,
    at: datetime,
    kind: ClockKind | Iterable[ClockKind] = "resolution",
    late_after: timedelta = DEFAULT_LATE_AFTER,
) -> list[Fired]:
    """Run the record's stopped `kind` clock(s) again from `at`, keeping their elapsed time
    (the time between stop and reopen counts as nothing). The response clock normally stays
    stopped: the first response happened. Reopening announces nothing by itself."""
    kinds = _kinds(kind)

    def restart(row: ClockRow, at: datetime) -> ClockRow:
        if row.kind not in kinds:
            return row
        return row.with_clock(row.clock.reopen(at))

    return await _change(
        uow,
        record=record,
        record_id=record_id,
        at=at,
        late_after=late_after,
        how=restart,
    )


async def retarget(
    uow: IncidentWork,
    *,
    record: RecordKind,
    record_id: str | uuid.UUID,
    at: datetime,
    priority: int | None = None,
    policy: ClockPolicy | None = None,
    late_after: timedelta = DEFAULT_LATE_AFTER,
) -> list[Fired]:
    """The record's priority and/or policy changed at `at` (None: unchanged).

    Running and paused clocks keep their elapsed and paused time: the time so far is banked
    on the OLD calendar, then they count towards the new target on the new one. A crossing the
    change causes is announced at once (dated `at`); a lower target can take a clock out of
    breach, and a later breach is announced again. With a new policy the clock pauses or runs
    by its `pause_on` and the record's hold reason. Stopped clocks keep their outcome and
    snapshot. A record without clocks stays without: call `start_clocks` for one that gets
    its first policy.
    """

    def move(row: ClockRow, at: datetime) -> ClockRow:
        if row.clock.state == "stopped":
            return row
        new_priority = row.priority if priority is None else priority
        if policy is None:
            targets, calendar, pause_on = row.targets, row.calendar, row.pause_on
            name, version, threshold = row.policy, row.policy_version, row.clock.warning_threshold
        else:
            targets = targets_of(policy)
            calendar = CalendarSpec.model_validate(policy.calendar.model_dump())
            pause_on = tuple(sorted(policy.pause_on))
            name, version, threshold = policy.name, policy.version, policy.warning_threshold
        target = target_seconds_for(targets, new_priority, row.kind)
        moved = replace(
            row,
            priority=new_priority,
            policy=name,
            policy_version=version,
            targets=targets,
            calendar=calendar,
            pause_on=pause_on,
        )
        if moved == row and target == row.clock.target_seconds:
            return row  # nothing changed (a redelivered command)
        # Bank the time so far on the OLD calendar; from `at` on, the new one counts.
        clock = row.clock.advance(at, row.business_calendar)
        if target != clock.target_seconds or threshold != clock.warning_threshold:
            clock = clock.retarget(
                at, row.business_calendar, target_seconds=target, warning_threshold=threshold
            )
        if pauses(row.hold_reason, pause_on) != (clock.state == "paused"):
            # The new policy pauses on other reasons than the old one.
            new_calendar = moved.business_calendar
            clock = (
                clock.resume(at, new_calendar)
                if clock.state == "paused"
                else clock.pause(at, new_calendar)
            )
        return moved.with_clock(clock)

    return await _change(
        uow,
        record=record,
        record_id=record_id,
        at=at,
        late_after=late_after,
        how=move,
    )


# --- the API's view ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ClockView:
    """A clock as the API shows it, at the instant it was read."""

    record: RecordKind
    record_id: str
    kind: ClockKind
    state: ClockState
    policy: str
    policy_version: int
    priority: int
    target_seconds: int
    warning_threshold: float
    started_at: datetime
    elapsed_seconds: float
    remaining_seconds: float
    paused_seconds: float
    paused_business_seconds: float
    hold_reason: str | None
    warning_at: datetime | None
    breach_at: datetime | None
    warned_at: datetime | None
    breached_at: datetime | None
    stopped_at: datetime | None
    outcome: Literal["met", "breached"] | None
    as_of: datetime

    @property
    def breached(self) -> bool:
        """Whether the clock has reached its target (by `as_of`, or at its stop)."""
        return self.breached_at is not None

    def as_json(self) -> dict[str, Any]:
        """JSON-ready: instants as ISO 8601 strings, plus `breached`."""
        body: dict[str, Any] = {}
        for name, value in self.__dict__.items():
            body[name] = value.isoformat() if isinstance(value, datetime) else value
        body["breached"] = self.breached
        return body


def view_of(row: ClockRow, at: datetime) -> ClockView:
    """The clock as it stands at `at` (banked to `at`, not stored; never before its last
    change): what it counted, what is left, and its pending deadlines."""
    calendar = row.business_calendar
    clock = row.clock
    as_of = max(_utc(at), clock.changed_at)
    if clock.state != "stopped":
        clock = clock.advance(as_of, calendar)
    schedule = repository.schedule_of(clock, calendar)
    return ClockView(
        record=row.record,
        record_id=row.record_id,
        kind=row.kind,
        state=clock.state,
        policy=row.policy,
        policy_version=row.policy_version,
        priority=row.priority,
        target_seconds=clock.target_seconds,
        warning_threshold=clock.warning_threshold,
        started_at=clock.started_at,
        elapsed_seconds=clock.elapsed_seconds,
        remaining_seconds=clock.target_seconds - clock.elapsed_seconds,
        paused_seconds=clock.paused_seconds,
        paused_business_seconds=clock.paused_business_seconds,
        hold_reason=row.hold_reason,
        warning_at=schedule.warning_at,
        breach_at=schedule.breach_at,
        warned_at=clock.warned_at,
        breached_at=clock.breached_at,
        stopped_at=clock.stopped_at,
        outcome=clock.outcome().result if clock.stopped_at is not None else None,
        as_of=as_of,
    )


async def clocks_of(
    conn: Connection,
    tenant: str,
    record: RecordKind,
    record_id: str | uuid.UUID,
    *,
    at: datetime | None = None,
) -> list[ClockView]:
    """The record's clocks (response, then resolution) as they stand at `at` (default now);
    empty for a record without a policy. On a connection in the caller's transaction (the
    HTTP read of an incident's clocks); a use case calls `views_of` on its unit of work."""
    at = datetime.now(UTC) if at is None else at
    records = await repository.load(conn, tenant, record, str(record_id))
    return [view_of(repository.row_from(r), at) for r in records]


async def views_of(
    uow: IncidentWork, record: RecordKind, record_id: str | uuid.UUID, *, at: datetime | None = None
) -> list[ClockView]:
    """`clocks_of` on a unit of work."""
    at = datetime.now(UTC) if at is None else at
    return [view_of(row, at) for row in await uow.clocks.load(record, str(record_id))]


# --- the scheduler ------------------------------------------------------------------------------


async def process_due(
    pool: asyncpg.Pool,
    metrics: IncidentMetrics | None = None,
    *,
    batch: int = 500,
    late_after: timedelta = DEFAULT_LATE_AFTER,
    clock: SchedulerClock = repository.now,
) -> int:
    """One round: advance up to `batch` clocks of any tenant due by `clock` and announce their
    crossings, in one transaction. Return how many clocks it claimed."""
    async with all_tenants_transaction(pool) as conn:
        now = await clock(conn)
        claimed_at = time.monotonic()
        claimed = await repository.claim_due(conn, now, batch)
        changes: list[tuple[ClockRow, ClockRow]] = []
        failures: list[tuple[asyncpg.Record, datetime, str]] = []
        for stored in claimed:
            try:
                row = repository.row_from(stored)
                at = max(now, row.clock.changed_at)
                advanced = row.with_clock(row.clock.advance(at, row.business_calendar))
                following = repository.schedule_of(advanced.clock, advanced.business_calendar)
                if not announce(row.clock, advanced, at, late_after) and (
                    following.next_due_at is not None and following.next_due_at <= now
                ):
                    raise RuntimeError(
                        f"the clock was due at {stored['next_due_at'].isoformat()} but advancing"
                        " it to now recorded no crossing"
                    )
                changes.append((row, advanced))
            except Exception as exc:  # one bad row must not hold up every other tenant's clocks
                log.exception(
                    "could not advance an SLA clock; trying again later",
                    extra={
                        "tenant_id": stored["tenant_id"],
                        "subject": f"sla/{stored['record_id']}/{stored['kind']}",
                    },
                )
                failures.append((stored, now + RETRY_AFTER, repr(exc)))
        fired = await _write_scheduled(conn, changes, at=now, late_after=late_after)
        await repository.postpone(conn, failures)
    committed = (now + timedelta(seconds=time.monotonic() - claimed_at)).astimezone(UTC)
    _count(metrics, fired)
    if metrics is not None:
        for f in fired:
            if f.due_at is not None:
                delay = (committed - f.due_at).total_seconds()
                metrics.sla_detection_delay.observe(max(0.0, delay))
    if fired:
        log.info(
            "SLA events fired",
            extra={
                "warnings": sum(f.event == "warning" for f in fired),
                "breaches": sum(f.event == "breach" for f in fired),
                "late": sum(f.late for f in fired),
            },
        )
    return len(claimed)


async def seconds_until_due(
    pool: asyncpg.Pool, interval: float, clock: SchedulerClock = repository.now
) -> float:
    """How long to sleep: until the earliest pending deadline of any tenant, at most `interval`
    and at least a short nap (a due clock another replica holds must not make this one spin)."""
    async with all_tenants_transaction(pool) as conn:
        now = await clock(conn)
        due = await repository.next_due(conn)
    if due is None:
        return interval
    return min(interval, max(MIN_WAIT_SECONDS, (due - now).total_seconds()))


async def run_scheduler(
    pool: asyncpg.Pool,
    metrics: IncidentMetrics | None,
    *,
    interval: float = 1.0,
    batch: int = 500,
    late_after: timedelta = DEFAULT_LATE_AFTER,
    stop_event: asyncio.Event | None = None,
    clock: SchedulerClock = repository.now,
) -> None:
    """Announce SLA warnings and breaches as they fall due, until cancelled or `stop_event`.

    Safe in every replica (claims skip each other's rows). A full batch is followed at once by
    the next; otherwise it sleeps until the earliest deadline, at most `interval` seconds, so a
    deadline set by a use case meanwhile waits at most that long. It keeps no error policy of
    its own: an error ends it, and the process's supervisor logs, counts and restarts it.
    """
    stop_event = stop_event or asyncio.Event()
    while not stop_event.is_set():
        claimed = await process_due(pool, metrics, batch=batch, late_after=late_after, clock=clock)
        if claimed >= batch:
            continue
        delay = await seconds_until_due(pool, interval, clock)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop_event.wait(), timeout=delay)
