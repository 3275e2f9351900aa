"""SLA clocks on the real database: the schedule, the scheduler and the events it writes.

The events are read from the incident service's outbox table (no relay runs in these tests),
in the order they were written.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from services.incident.adapters import sla as repository
from services.incident.application import sla
from services.incident.application.uow import IncidentUnitOfWork
from services.incident.metrics import IncidentMetrics
from shared.calendars import CalendarSpec
from shared.context import RequestContext
from shared.db import all_tenants_transaction, create_pool, tenant_transaction
from shared.events.catalogue import SlaTargetV1

WARNING = "itsm.incident.sla.warning_reached.v1"
BREACH = "itsm.incident.sla.breached.v1"
STOPPED = "itsm.incident.sla.clock_stopped.v1"
S = timedelta(seconds=1)


@dataclass(frozen=True)
class Policy:
    """What the policy projection hands the use cases (see sla.PolicySnapshot)."""

    name: str = "gold"
    version: int = 1
    targets: Mapping[str, SlaTargetV1] = field(
        default_factory=lambda: {
            "P1": SlaTargetV1(response_seconds=60, resolution_seconds=1200),
            "P2": SlaTargetV1(response_seconds=120, resolution_seconds=1800),
            "P3": SlaTargetV1(response_seconds=300, resolution_seconds=2),
            "P4": SlaTargetV1(response_seconds=600, resolution_seconds=3600),
            "P5": SlaTargetV1(response_seconds=900, resolution_seconds=7200),
        }
    )
    calendar: CalendarSpec = field(default_factory=CalendarSpec.always_open)
    pause_on: tuple[str, ...] = ("awaiting_customer",)
    warning_threshold: float = 0.75


GOLD = Policy()  # P3: 2 business seconds to resolve on a 24x7 calendar


def now() -> datetime:
    return datetime.now(UTC)


def exactly(value: str) -> datetime:
    return datetime.fromisoformat(value)


def at(instant: datetime):
    """A scheduler clock stopped at `instant`: a round sees exactly what is due by then."""

    async def clock(conn) -> datetime:
        return instant

    return clock


US = timedelta(microseconds=1)  # the database's resolution: the instant just before another


async def start(pool, tenant, *, at=None, priority=3, policy=GOLD, record="incident", rid=None):
    rid = rid or str(uuid.uuid4())
    async with IncidentUnitOfWork(pool, RequestContext(tenant, "agent", "corr-1")) as uow:
        await sla.start_clocks(
            uow, record=record, record_id=rid, policy=policy, priority=priority, at=at or now()
        )
    return rid


async def change(pool, tenant, what, rid, **kwargs):
    async with IncidentUnitOfWork(pool, RequestContext(tenant, "agent", "corr-2")) as uow:
        return await what(uow, record="incident", record_id=rid, **kwargs)


async def clocks(pool, tenant, rid, at=None):
    async with tenant_transaction(pool, tenant) as conn:
        return {
            c.kind: c for c in await sla.clocks_of(conn, tenant, "incident", rid, at=at or now())
        }


async def row(pool, tenant, rid, kind="resolution"):
    async with tenant_transaction(pool, tenant) as conn:
        return await conn.fetchrow(
            "SELECT * FROM sla_clocks WHERE record_id = $1 AND kind = $2", rid, kind
        )


async def events(pool, tenant, rid=None):
    """The tenant's SLA events in the outbox, in order: (type, subject, sequence, data)."""
    async with tenant_transaction(pool, tenant) as conn:
        rows = await conn.fetch(
            "SELECT event_type, message_key, headers, payload FROM outbox"
            " WHERE event_type LIKE 'itsm.incident.sla.%' ORDER BY position"
        )
    found = [
        (
            r["event_type"],
            r["message_key"],
            int(r["headers"]["ce_itsmversion"]),
            json.loads(r["payload"]),
        )
        for r in rows
    ]
    return [e for e in found if rid is None or e[1].startswith(f"sla/{rid}/")]


async def wait_for_events(pool, tenant, rid, count, timeout=10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = await events(pool, tenant, rid)
        if len(found) >= count or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.05)


@pytest.fixture
def metrics():
    return IncidentMetrics(CollectorRegistry())


def sample(metrics, name, **labels):
    return metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def scheduler(pools, metrics):
    """Start a scheduler loop on the incident pool; it stops when the test ends."""
    running: list[tuple[asyncio.Task, asyncio.Event]] = []

    def begin(pool=None, **kwargs):
        stop = asyncio.Event()
        kwargs.setdefault("interval", 0.5)
        task = asyncio.create_task(
            sla.run_scheduler(pool or pools["incident"], metrics, stop_event=stop, **kwargs)
        )
        running.append((task, stop))
        return task

    yield begin
    for _, stop in running:
        stop.set()
    await asyncio.gather(*(task for task, _ in running))


# --- the schedule fires --------------------------------------------------------------------------


async def test_a_two_second_target_on_a_24x7_calendar_fires_its_warning_then_its_breach_in_time(
    pools, tenant, scheduler, metrics
):
    pool = pools["incident"]
    started = now()
    rid = await start(pool, tenant, at=started)
    stored = await row(pool, tenant, rid)
    assert stored["warning_at"] == started + 1.5 * S
    assert stored["breach_at"] == started + 2 * S
    assert stored["next_due_at"] == started + 1.5 * S
    scheduler()

    fired = await wait_for_events(pool, tenant, rid, 2)

    assert [(t, subject, seq) for t, subject, seq, _ in fired] == [
        (WARNING, f"sla/{rid}/resolution", 1),
        (BREACH, f"sla/{rid}/resolution", 2),
    ]
    warning, breach = fired[0][3], fired[1][3]
    assert exactly(warning["due_at"]) == started + 1.5 * S
    assert exactly(breach["due_at"]) == started + 2 * S
    assert (warning["late"], breach["late"]) == (False, False)
    assert breach["clock"] == {
        "record": "incident",
        "record_id": rid,
        "kind": "resolution",
        "policy": "gold",
        "priority": 3,
        "target_seconds": 2,
    }
    assert breach["elapsed_seconds"] >= 2
    done = await row(pool, tenant, rid)
    assert done["next_due_at"] is None
    assert (done["warned_at"], done["breached_at"]) == (started + 1.5 * S, started + 2 * S)
    assert done["sequence"] == 2
    view = (await clocks(pool, tenant, rid))["resolution"]
    assert view.breached and view.remaining_seconds < 0 and view.state == "running"
    # The response clock (300 s) is still pending and fired nothing.
    assert (await clocks(pool, tenant, rid))["response"].warned_at is None
    assert (
        sample(
            metrics, "itsm_sla_breaches_total", record="incident", kind="resolution", late="false"
        )
        >= 1
    )
    assert sample(metrics, "itsm_sla_detection_delay_seconds_count") >= 2


async def test_nothing_fires_a_microsecond_before_its_deadline_and_each_crossing_fires_at_it(
    pools, tenant, metrics
):
    pool = pools["incident"]
    started = now()
    rid = await start(pool, tenant, at=started)  # resolution: warning at 1.5 s, breach at 2 s

    await sla.process_due(pool, metrics, clock=at(started + 1.5 * S - US))
    assert await events(pool, tenant, rid) == []
    assert (await row(pool, tenant, rid))["next_due_at"] == started + 1.5 * S

    await sla.process_due(pool, metrics, clock=at(started + 1.5 * S))
    assert [(t, seq) for t, _, seq, _ in await events(pool, tenant, rid)] == [(WARNING, 1)]
    assert (await row(pool, tenant, rid))["next_due_at"] == started + 2 * S

    await sla.process_due(pool, metrics, clock=at(started + 2 * S - US))
    assert [(t, seq) for t, _, seq, _ in await events(pool, tenant, rid)] == [(WARNING, 1)]

    await sla.process_due(pool, metrics, clock=at(started + 2 * S))
    fired = await events(pool, tenant, rid)
    assert [(t, seq, exactly(d["due_at"]), d["late"]) for t, _, seq, d in fired] == [
        (WARNING, 1, started + 1.5 * S, False),
        (BREACH, 2, started + 2 * S, False),
    ]
    assert (await row(pool, tenant, rid))["next_due_at"] is None


async def test_the_same_due_clocks_processed_by_three_concurrent_schedulers_fire_exactly_once(
    migrated, pools, tenant, metrics
):
    pool = pools["incident"]
    long_ago = now() - 10 * S
    rids = [await start(pool, tenant, at=long_ago) for _ in range(30)]
    replicas = [
        await create_pool(
            migrated.service_dsns["incident"],
            schema="incident",
            application_name=f"replica-{i}",
            min_size=1,
            max_size=2,
        )
        for i in range(3)
    ]
    reads = [0 for _ in replicas]  # how often each replica read the time: twice a round

    def counted(i):
        async def clock(conn) -> datetime:
            reads[i] += 1
            return await repository.now(conn)

        return clock

    try:
        stops = [asyncio.Event() for _ in replicas]
        loops = [
            asyncio.create_task(
                sla.run_scheduler(p, metrics, interval=0.1, batch=4, stop_event=s, clock=counted(i))
            )
            for i, (p, s) in enumerate(zip(replicas, stops, strict=True))
        ]
        await wait_for_events(pool, tenant, None, 60)
        # Room for a duplicate to show up, if there were one: two more rounds of every replica.
        seen = list(reads)
        deadline = asyncio.get_running_loop().time() + 10
        while any(r < s + 4 for r, s in zip(reads, seen, strict=True)):
            assert asyncio.get_running_loop().time() < deadline, (seen, reads)
            await asyncio.sleep(0.05)
        for s in stops:
            s.set()
        await asyncio.gather(*loops)
        # And three single rounds racing on what is left (nothing): still nothing more.
        await asyncio.gather(*(sla.process_due(p, metrics) for p in replicas))
    finally:
        for p in replicas:
            await p.close()

    fired = await events(pool, tenant)
    for rid in rids:
        mine = [(t, seq) for t, subject, seq, _ in fired if subject == f"sla/{rid}/resolution"]
        assert mine == [(WARNING, 1), (BREACH, 2)], rid
    assert len(fired) == 60


async def test_a_scheduler_that_was_down_fires_overdue_clocks_late_flagged_and_never_skipped(
    pools, tenant, metrics
):
    pool = pools["incident"]
    started = now() - 60 * S  # the scheduler was down the whole minute
    rid = await start(pool, tenant, at=started)

    await sla.process_due(pool, metrics, late_after=timedelta(seconds=5))

    fired = await events(pool, tenant, rid)
    assert [t for t, *_ in fired] == [WARNING, BREACH]
    warning, breach = fired[0][3], fired[1][3]
    assert (warning["late"], breach["late"]) == (True, True)
    assert exactly(warning["due_at"]) == started + 1.5 * S  # the exact instant, not now
    assert exactly(breach["due_at"]) == started + 2 * S
    assert breach["elapsed_seconds"] >= 60
    late = {"record": "incident", "kind": "resolution", "late": "true"}
    assert sample(metrics, "itsm_sla_warnings_total", **late) >= 1
    assert sample(metrics, "itsm_sla_breaches_total", **late) >= 1
    assert sample(metrics, "itsm_sla_detection_delay_seconds_sum") >= 58.5 + 58
    # Its response clock (300 s target) is not due: it was left alone.
    assert (await row(pool, tenant, rid, "response"))["warned_at"] is None


# --- pauses, retargets, stops --------------------------------------------------------------------


async def test_a_paused_clock_fires_nothing_and_resuming_reschedules_it_keeping_its_time(
    pools, tenant, metrics
):
    pool = pools["incident"]
    paused_at = now()
    rid = await start(pool, tenant, at=paused_at - 1 * S)
    await change(pool, tenant, sla.on_hold, rid, reason="awaiting_customer", at=paused_at)
    stored = await row(pool, tenant, rid)
    assert stored["paused_since"] == paused_at and stored["elapsed_seconds"] == 1.0
    assert (stored["warning_at"], stored["breach_at"], stored["next_due_at"]) == (None,) * 3

    # Scheduler rounds at and well past both deadlines, had it kept running (0.5 s and 1 s on).
    for later in (0.5 * S, 1 * S, 60 * S):
        await sla.process_due(pool, metrics, clock=at(paused_at + later))
    assert await events(pool, tenant, rid) == []
    assert await row(pool, tenant, rid) == stored

    resumed_at = paused_at + 3 * S
    await change(pool, tenant, sla.resume, rid, at=resumed_at)
    stored = await row(pool, tenant, rid)
    assert stored["elapsed_seconds"] == 1.0
    assert stored["paused_seconds"] == 3.0
    assert stored["warning_at"] == resumed_at + 0.5 * S
    assert stored["breach_at"] == resumed_at + 1 * S
    await sla.process_due(pool, metrics, clock=at(resumed_at + 0.5 * S - US))
    assert await events(pool, tenant, rid) == []
    await sla.process_due(pool, metrics, clock=at(resumed_at + 1 * S))
    fired = await events(pool, tenant, rid)
    assert [(t, exactly(d["due_at"]), d["late"]) for t, _, _, d in fired] == [
        (WARNING, resumed_at + 0.5 * S, False),
        (BREACH, resumed_at + 1 * S, False),
    ]


async def test_a_hold_reason_the_policy_does_not_pause_on_leaves_the_clock_running(pools, tenant):
    pool = pools["incident"]
    rid = await start(pool, tenant)
    await change(pool, tenant, sla.on_hold, rid, reason="awaiting_vendor", at=now())
    view = (await clocks(pool, tenant, rid))["resolution"]
    assert view.state == "running" and view.hold_reason == "awaiting_vendor"
    # The reason changes, while on hold, to one that pauses.
    await change(pool, tenant, sla.on_hold, rid, reason="awaiting_customer", at=now())
    assert (await clocks(pool, tenant, rid))["resolution"].state == "paused"


async def test_retarget_to_a_higher_priority_keeps_the_elapsed_time_and_moves_the_deadline(
    pools, tenant
):
    pool = pools["incident"]
    changed_at = now()
    rid = await start(pool, tenant, priority=4, at=changed_at - 300 * S)  # P4: 600 s, 3600 s
    before = await row(pool, tenant, rid)
    assert before["breach_at"] == changed_at + 3300 * S

    fired = await change(pool, tenant, sla.retarget, rid, priority=1, at=changed_at)  # 60, 1200

    after = await row(pool, tenant, rid)
    assert (after["priority"], after["target_seconds"], after["elapsed_seconds"]) == (1, 1200, 300)
    assert after["warning_at"] == changed_at + 600 * S  # 75 % of 1200 s is 900 s
    assert after["breach_at"] == changed_at + 900 * S
    assert after["next_due_at"] == changed_at + 600 * S
    # The response clock's 300 s are past P1's 60 s: breached by the retarget, dated at it.
    assert [(f.kind, f.event, f.due_at, f.late) for f in fired] == [
        ("response", "warning", changed_at, False),
        ("response", "breach", changed_at, False),
    ]
    response = await row(pool, tenant, rid, "response")
    assert (response["target_seconds"], response["elapsed_seconds"]) == (60, 300)
    assert response["next_due_at"] is None
    assert [d["clock"]["priority"] for *_, d in await events(pool, tenant, rid)] == [1, 1]


async def test_a_retarget_that_puts_a_clock_past_its_new_target_announces_it_at_once(pools, tenant):
    pool = pools["incident"]
    changed_at = now()
    rid = await start(pool, tenant, priority=5, at=changed_at - 100 * S)
    tight = Policy(
        version=2,
        targets={**GOLD.targets, "P5": SlaTargetV1(response_seconds=50, resolution_seconds=120)},
    )

    fired = await change(pool, tenant, sla.retarget, rid, policy=tight, at=changed_at)

    # Response: 100 s of 50 s, past both; resolution: 100 s of 120 s, past the warning (90 s).
    assert [(f.kind, f.event, f.sequence, f.due_at, f.late) for f in fired] == [
        ("response", "warning", 1, changed_at, False),
        ("response", "breach", 2, changed_at, False),
        ("resolution", "warning", 1, changed_at, False),
    ]
    written = await events(pool, tenant, rid)
    assert [(t, s, q) for t, s, q, _ in written] == [
        (WARNING, f"sla/{rid}/response", 1),
        (BREACH, f"sla/{rid}/response", 2),
        (WARNING, f"sla/{rid}/resolution", 1),
    ]
    assert written[1][3]["clock"]["target_seconds"] == 50
    resolution = await row(pool, tenant, rid)
    assert (resolution["policy_version"], resolution["breach_at"]) == (2, changed_at + 20 * S)


async def test_stopping_in_time_records_met_and_announces_the_stop(pools, tenant):
    pool = pools["incident"]
    started = now()
    rid = await start(pool, tenant, priority=1, at=started)
    stopped_at = started + 30 * S

    fired = await change(pool, tenant, sla.stop, rid, kind="response", at=stopped_at)

    assert [(f.event, f.kind, f.sequence) for f in fired] == [("stopped", "response", 1)]
    written = await events(pool, tenant, rid)
    assert [(t, s, q) for t, s, q, _ in written] == [(STOPPED, f"sla/{rid}/response", 1)]
    data = written[0][3]
    assert (data["result"], data["elapsed_seconds"], data["paused_seconds"]) == ("met", 30.0, 0.0)
    assert (exactly(data["started_at"]), exactly(data["stopped_at"])) == (started, stopped_at)
    response = await row(pool, tenant, rid, "response")
    assert response["next_due_at"] is None and response["stopped_at"] == stopped_at
    view = (await clocks(pool, tenant, rid, at=stopped_at + 3600 * S))["response"]
    assert (view.state, view.outcome, view.breached, view.elapsed_seconds) == (
        "stopped",
        "met",
        False,
        30.0,
    )
    # A redelivered stop changes and announces nothing.
    assert await change(pool, tenant, sla.stop, rid, kind="response", at=stopped_at + S) == []
    assert len(await events(pool, tenant, rid)) == 1


async def test_stopping_past_the_target_records_the_breach_first_then_the_breached_stop(
    pools, tenant
):
    pool = pools["incident"]
    started = now() - 10 * S
    rid = await start(pool, tenant, at=started)  # resolution: 2 s; no scheduler runs

    await change(pool, tenant, sla.stop, rid, kind=("response", "resolution"), at=started + 10 * S)

    written = await events(pool, tenant, rid)
    assert [(t, s, q) for t, s, q, _ in written] == [
        (STOPPED, f"sla/{rid}/response", 1),
        (WARNING, f"sla/{rid}/resolution", 1),
        (BREACH, f"sla/{rid}/resolution", 2),
        (STOPPED, f"sla/{rid}/resolution", 3),
    ]
    assert written[0][3]["result"] == "met"
    assert exactly(written[2][3]["due_at"]) == started + 2 * S
    assert written[2][3]["late"] is True  # 8 s after it fell due
    assert written[3][3]["result"] == "breached"
    # Reopened, the clock goes on from its elapsed time; both crossings stay recorded.
    reopened_at = started + 20 * S
    await change(pool, tenant, sla.reopen, rid, at=reopened_at)
    view = (await clocks(pool, tenant, rid, at=reopened_at + 5 * S))["resolution"]
    assert (view.state, view.elapsed_seconds, view.breached) == ("running", 15.0, True)
    assert (await clocks(pool, tenant, rid))["response"].state == "stopped"
    assert (await row(pool, tenant, rid))["next_due_at"] is None


async def test_a_record_without_a_policy_has_no_clocks_and_every_change_is_a_no_op(pools, tenant):
    pool = pools["incident"]
    rid = await start(pool, tenant, policy=None)
    at = now()
    assert await change(pool, tenant, sla.on_hold, rid, reason="awaiting_customer", at=at) == []
    assert await change(pool, tenant, sla.resume, rid, at=at) == []
    assert await change(pool, tenant, sla.retarget, rid, priority=1, at=at) == []
    assert await change(pool, tenant, sla.stop, rid, kind="resolution", at=at) == []
    assert await clocks(pool, tenant, rid) == {}


async def test_starting_the_clocks_again_keeps_the_running_ones(pools, tenant):
    pool = pools["incident"]
    started = now() - 5 * S
    rid = await start(pool, tenant, priority=4, at=started)
    await start(pool, tenant, priority=1, at=now(), rid=rid)  # a redelivered command
    stored = await row(pool, tenant, rid)
    assert (stored["started_at"], stored["priority"]) == (started, 4)


# --- tenants ---------------------------------------------------------------------------------


async def test_a_tenant_transaction_never_sees_another_tenants_clocks(pools, tenant):
    pool = pools["incident"]
    other = f"t-{uuid.uuid4().hex[:12]}"
    mine = await start(pool, tenant)
    theirs = await start(pool, other)

    async with tenant_transaction(pool, tenant) as conn:
        seen = await conn.fetch("SELECT tenant_id, record_id FROM sla_clocks")  # no filter
        views = await sla.clocks_of(conn, other, "incident", theirs)
        touched = await conn.execute(
            "UPDATE sla_clocks SET sequence = 99 WHERE record_id = $1", theirs
        )
        # A unit of work that believes it is the other tenant's, on this tenant's transaction.
        intruder = IncidentUnitOfWork.joining(conn, RequestContext(other, "intruder", "corr-3"))
        async with intruder:
            fired = await sla.stop(
                intruder, record="incident", record_id=theirs, kind="resolution", at=now()
            )
    assert {r["tenant_id"] for r in seen} == {tenant}
    assert {r["record_id"] for r in seen} == {mine}
    assert (views, touched, fired) == ([], "UPDATE 0", [])
    assert await pool.fetchval("SELECT count(*) FROM sla_clocks") == 0  # no tenant: nothing
    assert (await row(pool, other, theirs))["sequence"] == 0


async def test_the_scheduler_may_read_and_advance_every_tenants_clocks_but_never_create_any(
    pools, tenant
):
    pool = pools["incident"]
    rid = await start(pool, tenant, priority=5)
    async with all_tenants_transaction(pool) as conn:
        assert (
            await conn.fetchval("SELECT count(*) FROM sla_clocks WHERE tenant_id = $1", tenant) == 2
        )
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
        async with all_tenants_transaction(pool) as conn:
            await conn.execute(
                "INSERT INTO sla_clocks (tenant_id, record, record_id, kind, policy,"
                " policy_version, priority, target_seconds, warning_threshold, started_at,"
                " running_since, targets, calendar) SELECT tenant_id, record, 'forged', kind,"
                " policy, policy_version, priority, target_seconds, warning_threshold,"
                " started_at, running_since, targets, calendar FROM sla_clocks"
                " WHERE record_id = $1",
                rid,
            )
    async with all_tenants_transaction(pool) as conn:
        assert await conn.execute("DELETE FROM sla_clocks WHERE record_id = $1", rid) == "DELETE 0"
    # A clock with nothing pending is out of the scheduler's reach.
    await change(pool, tenant, sla.stop, rid, kind=("response", "resolution"), at=now())
    async with all_tenants_transaction(pool) as conn:
        assert (
            await conn.execute("UPDATE sla_clocks SET sequence = 0 WHERE record_id = $1", rid)
            == "UPDATE 0"
        )
