"""Benchmark: conflict detection of the change schedule at scale, beside the raw overlap query.

`make bench-change` (or `python -m tests.benchmarks.change_conflicts --cis 100000`).
Generates one tenant's CMDB projection (100,000 CIs, two `depends_on` relationships each, the
services they support), 10,000 changes with planned windows over 30 days on 1 to 5 CIs each,
and a few maintenance and blackout windows (recurring, per CI and per service). Then, for
changes on 1,000 CIs each (random windows in the same 30 days), it times in the same run:

- conflict detection (`application.schedule.conflicts_of_window`, hops 1: the CMDB
  neighbourhood of every CI, the services they support, the changes on any of them or by the
  implementer, every window's occurrences, open major incidents, and the rules) p50/p99;
- the raw overlap query alone (changes whose planned window overlaps, no CIs, no rules)
  p50/p99: the floor of reading the schedule;
- risk assessment of scheduled changes (`application.risk.assess` with the service's sources:
  blast radius over the CMDB graph, earlier outcomes, the maintenance windows, major incidents;
  recorded and announced, as `POST /changes/{id}/risk-assessments` does) p50/p99, beside a
  plain read of the same change row.

Goal: conflict detection p99 < 200 ms. Nothing is asserted: these machines are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from services.change.adapters.windows import overlapping_changes
from services.change.application import risk
from services.change.application import schedule as use_cases
from services.change.application.uow import ChangeUnitOfWork
from services.change.definition import DEFINITION
from services.change.domain import schedule as rules
from services.change.domain.schedule import PlannedWork
from shared.context import RequestContext
from shared.db import create_pool, migrate, tenant_transaction
from shared.devstack.kafka import REPO_ROOT
from shared.devstack.platform import LocalPlatform
from shared.registry import service
from tests.benchmarks.pipeline import percentile

TENANT = "bench-change"
START = datetime(2027, 1, 4, tzinfo=UTC)
SPAN = timedelta(days=30)


def ms(values: list[float]) -> str:
    """p50 and p99 in milliseconds."""
    return (
        f"p50 {percentile(values, 50) * 1000:7.1f} ms  p99 {percentile(values, 99) * 1000:7.1f} ms"
    )


async def seed(pool: asyncpg.Pool, cis: int, changes: int, rng: random.Random) -> list[str]:
    """The CMDB projection, the changes and the windows; the CI ids."""
    ids = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(cis)]
    services = [f"service-{i}" for i in range(200)]
    now = datetime.now(UTC)
    # Row-level security refuses COPY: set-based INSERTs from arrays instead.
    async with tenant_transaction(pool, TENANT) as conn:
        await conn.execute(
            "INSERT INTO cmdb_cis (tenant_id, id, ci_class, name, status, criticality, version,"
            " updated_at) SELECT $1, id, 'server', id, 'active', 3, 1, $3"
            " FROM unnest($2::text[]) id",
            TENANT,
            ids,
            now,
        )
        sources = [ci for ci in ids for _ in range(2)]
        await conn.execute(
            "INSERT INTO cmdb_relationships (tenant_id, id, type, source_id, target_id, removed,"
            " version) SELECT $1, gen_random_uuid()::text, 'depends_on', s, t, false, 1"
            " FROM unnest($2::text[], $3::text[]) AS r(s, t)",
            TENANT,
            sources,
            [ids[rng.randrange(cis)] for _ in sources],
        )
        await conn.execute(
            "INSERT INTO cmdb_ci_services (tenant_id, ci_id, services, sequence)"
            " SELECT $1, ci, ARRAY[s], 1 FROM unnest($2::text[], $3::text[]) AS r(ci, s)",
            TENANT,
            ids,
            [rng.choice(services) for _ in ids],
        )
        rows = []
        for number in range(1, changes + 1):
            begins = START + timedelta(minutes=15 * rng.randrange(int(SPAN.total_seconds() // 900)))
            rows.append(
                (
                    TENANT,
                    uuid.uuid4(),
                    number,
                    f"change {number}",
                    f"implementer-{rng.randrange(300)}",
                    [uuid.UUID(rng.choice(ids)) for _ in range(rng.randint(1, 5))],
                    begins,
                    begins + timedelta(hours=rng.randint(1, 6)),
                    now,
                )
            )
        await conn.executemany(
            "INSERT INTO changes (tenant_id, id, number, type, origin, state, title, description,"
            " justification, requester, implementer, affected_cis, planned_start, planned_end,"
            " version, created_at, created_by, updated_at, updated_by)"
            " VALUES ($1, $2, $3, 'normal', 'manual', 'scheduled', $4, '', '', 'rita', $5, $6,"
            " $7, $8, 1, $9, 'rita', $9, 'rita')",
            rows,
        )
        await conn.execute("ANALYZE")
    context = RequestContext(TENANT, "mia", "")
    windows = [
        ("Sunday nights", "maintenance", "all", None, [], "FREQ=WEEKLY;BYDAY=SU", 6),
        (
            "DB Tuesdays",
            "maintenance",
            "cis",
            None,
            rng.sample(ids, 2_000),
            "FREQ=WEEKLY;BYDAY=TU",
            4,
        ),
        ("Payroll freeze", "blackout", "service", services[0], [], None, 72),
        (
            "Core freeze",
            "blackout",
            "cis",
            None,
            rng.sample(ids, 5_000),
            "FREQ=MONTHLY;BYMONTHDAY=1",
            24,
        ),
    ]
    for name, kind, scope, svc, chosen, rule, hours in windows:
        async with ChangeUnitOfWork(pool, context) as uow:
            await uow.conn.execute(
                "INSERT INTO cmdb_business_services (tenant_id, id, name, status, criticality,"
                " version) VALUES ($1, $2, $2, 'active', 1, 1) ON CONFLICT DO NOTHING",
                TENANT,
                services[0],
            )
            await use_cases.define_window_in(
                uow,
                use_cases.WindowFields(
                    name=name,
                    kind=kind,
                    scope=scope,
                    service=svc,
                    ci_ids=tuple(chosen),
                    start=datetime(2026, 12, 6, 1, 0),
                    duration=timedelta(hours=hours),
                    rrule=rule,
                    time_zone="Europe/Berlin",
                ),
            )
            await uow.commit()
    return ids


async def measure(dsn: str, args: argparse.Namespace) -> None:
    rng = random.Random(11)
    pool = await create_pool(
        dsn, schema=service("change").schema, application_name="bench", min_size=1, max_size=2
    )
    try:
        began = time.perf_counter()
        ids = await seed(pool, args.cis, args.changes, rng)
        print(
            f"seeded {args.cis:,} CIs, {2 * args.cis:,} relationships, {args.changes:,} changes"
            f" in {time.perf_counter() - began:.1f} s"
        )
        detection: list[float] = []
        raw: list[float] = []
        reads: list[float] = []
        checks: list[float] = []
        found: list[int] = []
        listed: list[int] = []
        context = RequestContext(TENANT, "reader", "")
        for _ in range(args.rounds):
            begins = START + timedelta(hours=rng.randrange(int(SPAN.total_seconds() // 3600)))
            planned = PlannedWork(
                start=begins,
                end=begins + timedelta(hours=4),
                ci_ids=tuple(rng.sample(ids, args.change_cis)),
                implementer=f"implementer-{rng.randrange(300)}",
            )
            async with ChangeUnitOfWork(pool, context) as uow:
                # conflicts_of_window is these two steps: what surrounds the window (the
                # database's share), then the rules (Python's).
                t0 = time.perf_counter()
                around = await use_cases.surroundings(uow, planned, hops=1)
                t1 = time.perf_counter()
                conflicts = rules.detect(planned, around)
                detection.append(time.perf_counter() - t0)
                reads.append(t1 - t0)
                checks.append(time.perf_counter() - t1)
                t0 = time.perf_counter()
                await overlapping_changes(uow.conn, TENANT, planned.start, planned.end)
                raw.append(time.perf_counter() - t0)
            found.append(len(conflicts))
            listed.append(max((len(c.ci_ids) for c in conflicts), default=0))
        print(
            f"conflict detection, a change on {args.change_cis:,} CIs (hops 1), {args.rounds}"
            f" rounds: {ms(detection)}  (goal p99 < 200 ms; mean {statistics.mean(found):.0f}"
            f" conflicts, up to {max(listed)} CIs in one)"
        )
        print(f"  of which reading what surrounds the window:                {ms(reads)}")
        print(f"  of which the rules:                                          {ms(checks)}")
        print(f"raw overlap query (same windows, no CIs, no rules):        {ms(raw)}")
        async with tenant_transaction(pool, TENANT) as conn:
            chosen = [
                r["id"]
                for r in await conn.fetch(
                    "SELECT id FROM changes WHERE tenant_id = $1 ORDER BY id LIMIT $2",
                    TENANT,
                    args.risk_rounds,
                )
            ]
        assessing: list[float] = []
        plain: list[float] = []
        for change_id in chosen:
            async with ChangeUnitOfWork(pool, RequestContext(TENANT, "mia", "")) as uow:
                t0 = time.perf_counter()
                change = await uow.changes.get(change_id, lock=True)
                assert change is not None
                await risk.assess(uow, change, sources=risk.SCHEDULE_SOURCES)
                assessing.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                await uow.conn.fetchrow(
                    "SELECT * FROM changes WHERE tenant_id = $1 AND id = $2", TENANT, change_id
                )
                plain.append(time.perf_counter() - t0)
        print(
            f"risk assessment of a scheduled change (1-5 CIs), {len(chosen)} rounds:"
            f"   {ms(assessing)}"
        )
        print(f"plain read of the same change row:                         {ms(plain)}")
    finally:
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cis", type=int, default=100_000)
    parser.add_argument("--changes", type=int, default=10_000)
    parser.add_argument("--change-cis", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--risk-rounds", type=int, default=200)
    parser.add_argument("--state-dir", type=Path, default=REPO_ROOT / ".state" / "bench-change")
    args = parser.parse_args()

    platform = LocalPlatform(
        args.state_dir, kafka_port=29292, kafka_controller_port=29293, postgres_port=55462
    )
    if platform.postgres is not None:
        platform.postgres.destroy()
    for sub in ("kafka", "logs"):
        shutil.rmtree(args.state_dir / sub, ignore_errors=True)
    try:
        infra = platform.start_infra()

        async def run() -> None:
            conn = await asyncpg.connect(infra.service_dsns["change"])
            try:
                await migrate(conn, DEFINITION.migration_sources())
            finally:
                await conn.close()
            await measure(infra.service_dsns["change"], args)

        asyncio.run(run())
    finally:
        platform.stop()


if __name__ == "__main__":
    main()
