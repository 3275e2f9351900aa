"""Benchmark: a month's availability of one business service over many outages, beside a plain
query over the same rows.

`make bench-service-levels` (or `python -m tests.benchmarks.service_levels --outages 20000`).
Starts a PostgreSQL of its own (no Kafka: the figures are read from the projections), migrates
the reporting schema and writes one tenant's projections directly: a business service covered
by an office-hours policy (Monday to Friday, 08:00-18:00 Europe/Berlin), `--outages` outage
and degradation records of that service over one month (1 minute to 2 hours each, 5 % of them
degradations, 2 % withdrawn), and 300 approved changes with planned windows in the same month,
plus the same volume of records of 20 other services. Then it times, in the same run:

- `ServiceLevels.availability_in` for the service and the month (the calendar's agreed time,
  the outages' union within it, less the approved windows; MTBF, MTRS): p50/p99;
- the plain query: count and summed duration of the service's outages overlapping the month,
  with no calendar, no union and no planned windows: the floor of reading the rows.

Goal: p99 < 200 ms (as the issue's KPI goal). Nothing is asserted: these machines are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg

from services.reporting.application.service_levels import Defaults, ServiceLevels
from services.reporting.definition import DEFINITION
from services.reporting.domain import service_levels as domain
from shared.db import create_pool, migrate, tenant_transaction
from shared.devstack.kafka import REPO_ROOT
from shared.devstack.postgres import LocalPostgres
from shared.provision import DEFAULT_DATABASE, dsn_for, provision
from shared.registry import service
from tests.benchmarks.pipeline import percentile

TENANT = "bench-service-levels"
MONTH = date(2026, 11, 1)
START = datetime(2026, 11, 1, tzinfo=UTC)
SPAN = timedelta(days=30)
OFFICE = {
    "timezone": "Europe/Berlin",
    "weekly_hours": {
        d: [{"start": "08:00", "end": "18:00"}] for d in ("mon", "tue", "wed", "thu", "fri")
    },
    "holidays": ["2026-11-01"],
}


def ms(values: list[float]) -> str:
    """p50 and p99 in milliseconds."""
    return (
        f"p50 {percentile(values, 50) * 1000:7.1f} ms  p99 {percentile(values, 99) * 1000:7.1f} ms"
    )


async def seed(pool: asyncpg.Pool, services: list[str], outages: int, rng: random.Random) -> None:
    """The policy, the services, their outages and the approved changes."""
    async with tenant_transaction(pool, TENANT) as conn:
        await conn.execute(
            "INSERT INTO sl_policies (tenant_id, name, calendar, services, is_default, targets)"
            " VALUES ($1, 'office', $2::jsonb, $3, true, '{P1,P2}')",
            TENANT,
            json.dumps(OFFICE),
            services,
        )
        await conn.executemany(
            "INSERT INTO sl_services (tenant_id, service_id, name, status, criticality,"
            " sla_policy, availability_target) VALUES ($1, $2, $3, 'active', 1, 'office', 99.5)",
            [(TENANT, s, f"service {i}") for i, s in enumerate(services)],
        )
        for name in services:
            rows = []
            for _ in range(outages):
                begins = START + timedelta(seconds=rng.randrange(int(SPAN.total_seconds())))
                rows.append(
                    (
                        f"outage/{uuid.UUID(int=rng.getrandbits(128))}",
                        "degradation" if rng.random() < 0.05 else "outage",
                        begins,
                        begins + timedelta(minutes=rng.randint(1, 120)),
                        rng.random() < 0.02,
                    )
                )
            # Row-level security refuses COPY: one set-based INSERT from arrays instead.
            await conn.execute(
                "INSERT INTO sl_outages (tenant_id, outage_id, service, kind, started_at,"
                " ended_at, withdrawn) SELECT $1, o, $2, k, s, e, w"
                " FROM unnest($3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[],"
                " $7::boolean[]) AS r(o, k, s, e, w)",
                TENANT,
                name,
                *[list(column) for column in zip(*rows, strict=True)],
            )
            changes = []
            for _ in range(300):
                begins = START + timedelta(hours=rng.randrange(int(SPAN.total_seconds() // 3600)))
                changes.append(
                    (TENANT, str(uuid.uuid4()), [name], begins, begins + timedelta(hours=2))
                )
            await conn.executemany(
                "INSERT INTO sl_changes (tenant_id, change_id, services, planned_start,"
                " planned_end, approved, state) VALUES ($1, $2, $3, $4, $5, true, 'closed')",
                changes,
            )
        await conn.execute("ANALYZE")


async def measure(dsn: str, outages: int, rounds: int) -> None:
    """Seed, then time both readings."""
    pool = await create_pool(
        dsn, schema=service("reporting").schema, application_name="bench-sl", min_size=1
    )
    rng = random.Random(7)
    services = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(21)]
    try:
        t0 = time.perf_counter()
        await seed(pool, services, outages, rng)
        print(
            f"seeded {21 * outages:,} outage records of 21 services in"
            f" {time.perf_counter() - t0:.1f} s"
        )
        levels = ServiceLevels(Defaults(), clock=lambda: datetime(2027, 1, 1, tzinfo=UTC))
        span = domain.spans("month", MONTH, 1, "Europe/Berlin")
        chosen = services[0]
        figures: list[float] = []
        plain: list[float] = []
        point = None
        for _ in range(rounds):
            async with tenant_transaction(pool, TENANT, readonly=True) as conn:
                t0 = time.perf_counter()
                [point] = await levels.availability_in(conn, TENANT, [chosen], span)
                figures.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                await conn.fetchrow(
                    "SELECT count(*), sum(extract(epoch FROM least(ended_at, $4)"
                    " - greatest(started_at, $3))) FROM sl_outages"
                    " WHERE tenant_id = $1 AND service = $2 AND started_at < $4"
                    " AND (ended_at IS NULL OR ended_at > $3)",
                    TENANT,
                    chosen,
                    span[0].start,
                    span[0].end,
                )
                plain.append(time.perf_counter() - t0)
        assert point is not None
        print(
            f"availability, one service, one month, {outages:,} outages ({rounds} rounds):"
            f" {ms(figures)}"
        )
        print(f"plain count and sum of the same rows:                       {ms(plain)}")
        print(
            f"  (availability {point.availability:.4f}, {point.outages} outages counted,"
            f" downtime {point.downtime_seconds / 3600:.1f} h, planned"
            f" {point.planned_downtime_seconds / 3600:.1f} h, agreed"
            f" {point.agreed_seconds / 3600:.0f} h)"
        )
    finally:
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--outages", type=int, default=20_000, help="outages per service")
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument(
        "--state-dir", type=Path, default=REPO_ROOT / ".state" / "bench-service-levels"
    )
    args = parser.parse_args()
    postgres = LocalPostgres(args.state_dir / "postgres", port=55472)
    postgres.destroy()
    shutil.rmtree(args.state_dir / "logs", ignore_errors=True)
    postgres.start()
    try:
        password = "bench-" + uuid.uuid4().hex

        async def run() -> None:
            names = ("incident", "change", "config", "reporting")
            await provision(postgres.admin_dsn, {n: password for n in names})
            dsn = dsn_for(
                postgres.admin_dsn, user="reporting", password=password, database=DEFAULT_DATABASE
            )
            conn = await asyncpg.connect(dsn)
            try:
                await migrate(conn, DEFINITION.migration_sources())
            finally:
                await conn.close()
            await measure(dsn, args.outages, args.rounds)

        asyncio.run(run())
    finally:
        postgres.stop()


if __name__ == "__main__":
    main()
