"""Benchmark: the reporting service's KPIs.

`make bench-kpi` (or `python -m tests.benchmarks.kpis`). Its own PostgreSQL (and Kafka, which
the platform's provisioning wants) under `.state/bench-kpi`, the reporting schema migrated.
Prints, each beside a baseline of the same run:

- a month's KPIs for one business service over 1,000,000 incidents: every incident and
  workload KPI of the newest month (and of a month in the middle of the year), restricted to
  one of ten services, through `KpiProjection.series` (the API's and the report builder's
  code path: one statement for the facts and their basis, the values computed by the domain's
  `evaluate`), median and p99 of N rounds (goal p99 < 200 ms); beside a plain aggregate query
  over the same rows (count and mean time to resolve of the same facts, in SQL, planned alike);
- the projection rebuilt from 1,000,000 ledger events (incident lifecycles with their SLA
  clocks, changes, deployments and surveys) through the `kpis rebuild` command (goal < 2 min),
  beside a plain `COPY (SELECT message_value ...) TO STDOUT` of the same rows.

Set-up is the fast way and not timed: the 1,000,000 incidents' facts are made in Python and
written with `COPY`, and so are the 1,000,000 ledger rows (as the platform's superuser, since
row-level security refuses `COPY` to the service's role) with a signed-checkpoint row at their
size. Nothing is asserted: the machines are noisy, so read medians and ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import random
import shutil
import statistics
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg

from services.reporting.application.kpis import KpiProjection
from services.reporting.commands import kpis as kpis_command
from services.reporting.definition import DEFINITION
from services.reporting.domain import kpis
from services.reporting.domain.report_data import KpiQuery, period_of
from services.reporting.settings import ReportingSettings
from shared.db import create_pool, tenant_transaction
from shared.devstack.kafka import REPO_ROOT
from shared.devstack.platform import Infra, LocalPlatform
from shared.provision import DEFAULT_DATABASE, dsn_for_admin_database
from shared.service import migrate_only
from tests.benchmarks.pipeline import percentile

SERVICES = [f"svc-{i:02d}" for i in range(10)]
GROUPS = [f"group-{i}" for i in range(8)]
AGENTS = [f"agent-{i:02d}" for i in range(40)]
YEAR_START = datetime(2025, 12, 1, tzinfo=UTC)
YEAR_SECONDS = 365 * 86400.0
NEWEST_MONTH = date(2026, 11, 1)
MIDDLE_MONTH = date(2026, 5, 1)
INCIDENT_KPIS = [d.id for d in kpis.DEFINITIONS if kpis.BY_ID[d.id].measure.kind == "incident"]


def settings_of(infra: Infra) -> ReportingSettings:
    return ReportingSettings(
        database_url=infra.service_dsns["reporting"],
        kafka_bootstrap_servers=infra.bootstrap_servers,
        auth_jwks_file=infra.keys.jwks_file,
        ledger_signing_key_file=str(infra.ledger_key_file),
    )


def incident_fact(n: int, rng: random.Random) -> kpis.Fact:
    """One incident of the year as the fold leaves it (most resolved within a day)."""
    opened = YEAR_START.timestamp() + rng.random() * YEAR_SECONDS
    fact = kpis.Fact("incident", str(uuid.UUID(int=n)), opened=opened, last=opened)
    fact.priority = rng.choice((1, 2, 3, 3, 3, 4, 4, 5))
    fact.category = rng.choice(("network", "hardware", "software", "access"))
    fact.services = sorted(set(rng.sample(SERVICES, rng.choice((1, 1, 1, 2)))))
    fact.group = rng.choice(GROUPS)
    fact.agent = rng.choice(AGENTS)
    fact.creator = rng.choice(AGENTS)
    fact.ack = opened + rng.expovariate(1 / 900)
    fact.resp_at, fact.resp_business = fact.ack, fact.ack - opened
    fact.resp_met = fact.resp_business < 1800
    if rng.random() < 0.995:  # a small backlog stays open
        fact.resolved = fact.ack + rng.expovariate(1 / 20000)
        fact.resolver = fact.agent if rng.random() < 0.6 else fact.creator
        fact.ended = fact.last = fact.resolved
        fact.res_at, fact.res_business = fact.resolved, (fact.resolved - opened) * 0.4
        fact.res_met = fact.res_business < 14400
        fact.in_state = {"new": fact.ack - opened, "in_progress": fact.resolved - fact.ack}
        fact.reopens = 1 if rng.random() < 0.05 else 0
    if rng.random() < 0.1:
        fact.breaches = [opened + 14400]
        fact.warnings = [opened + 10000]
    fact.state = "resolved" if fact.resolved else "in_progress"
    return fact


async def load_facts(admin: asyncpg.Connection, tenant: str, n: int) -> float:
    """Write n incidents' facts with COPY; seconds (set-up, not measured)."""
    rng = random.Random(21)
    began = time.perf_counter()
    as_of = 0.0
    # In the order the projection writes them: a fact's row is rewritten at its last event.
    facts = sorted((incident_fact(i, rng) for i in range(n)), key=lambda f: f.last)
    for start in range(0, n, 100_000):
        rows = []
        served = []
        for fact in facts[start : start + 100_000]:
            as_of = max(as_of, fact.last)
            served.extend(
                (tenant, "incident", service, fact.id, fact.first_at(), fact.last_at())
                for service in fact.services
            )
            rows.append(
                (
                    tenant,
                    "incident",
                    fact.id,
                    fact.first_at(),
                    fact.last_at(),
                    fact.services,
                    json.dumps(fact.to_json()),
                )
            )
        await admin.copy_records_to_table(
            "kpi_facts",
            records=rows,
            columns=["tenant_id", "kind", "record_id", "first_at", "last_at", "services", "body"],
            schema_name="reporting",
        )
        await admin.copy_records_to_table(
            "kpi_fact_services",
            records=served,
            columns=["tenant_id", "kind", "service", "record_id", "first_at", "last_at"],
            schema_name="reporting",
        )
    await admin.execute(
        "INSERT INTO reporting.kpi_progress (tenant_id, tree_size, root_hash, as_of)"
        " VALUES ($1, $2, $3, $4)",
        tenant,
        n * 5,
        bytes(32),
        as_of,
    )
    await admin.execute("ANALYZE reporting.kpi_facts")
    await admin.execute("ANALYZE reporting.kpi_fact_services")
    return time.perf_counter() - began


async def query_rounds(
    pool: asyncpg.Pool, tenant: str, month: date, rounds: int
) -> tuple[list[float], list[float], int]:
    """Latencies (ms) of the month's KPIs for one service through the projection's reader,
    and of the plain aggregate over the same rows; the facts the month reads."""
    projection = KpiProjection(ZoneInfo("UTC"))
    ids = INCIDENT_KPIS
    period = period_of("month", month)
    lo, hi = kpis.bounds(period, ZoneInfo("UTC"))
    reader, plain = [], []
    facts = 0
    for r in range(rounds + 3):
        service = SERVICES[r % len(SERVICES)]
        query = KpiQuery(kpis=ids, period="month", start=month, count=1, services=[service])
        began = time.perf_counter()
        async with tenant_transaction(pool, tenant, readonly=True) as conn:
            points = await projection.series(conn, tenant, query)
        reader_ms = (time.perf_counter() - began) * 1000
        began = time.perf_counter()
        async with tenant_transaction(pool, tenant, readonly=True) as conn:
            # Planned as the reader's statement is (for its parameters, no JIT).
            await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan; SET LOCAL jit = off")
            row = await conn.fetchrow(
                "SELECT count(*) AS n, avg((body->>'resolved')::float8 - (body->>'opened')::float8)"
                " FILTER (WHERE (body->>'resolved')::float8 >= $3"
                " AND (body->>'resolved')::float8 < $4) AS mean_resolve"
                " FROM kpi_facts WHERE tenant_id = $1 AND kind = 'incident'"
                " AND services && $2::text[] AND last_at >= $3 AND first_at < $4",
                tenant,
                [service],
                lo,
                hi,
            )
        plain_ms = (time.perf_counter() - began) * 1000
        assert points and row is not None
        if r >= 3:  # warm-up rounds left out
            reader.append(reader_ms)
            plain.append(plain_ms)
            facts = row["n"]
    return reader, plain, facts


def ledger_rows(tenant: str, n: int) -> tuple[list[tuple[object, ...]], int]:
    """n ledger rows of one tenant: incident lifecycles (created, acknowledged, response clock
    stopped, resolved, resolution clock stopped), changes implemented with a deployment, and
    surveys; event times increasing over a year."""
    rng = random.Random(7)
    rows: list[tuple[object, ...]] = []
    step = YEAR_SECONDS / n
    clock = YEAR_START.timestamp()
    versions: dict[str, int] = {}
    changes: list[str] = []

    def add(type_: str, subject: str, data: Mapping[str, object]) -> None:
        nonlocal clock
        clock += step
        version = versions[subject] = versions.get(subject, 0) + 1
        value = json.dumps(data).encode()
        rows.append(
            (
                tenant,
                uuid.uuid4(),
                type_,
                "itsm/bench",
                subject,
                version,
                datetime.fromtimestamp(clock, UTC),
                "bench",
                "alice",
                "{}",
                "itsm.bench",
                0,
                len(rows),
                value,
                b"\x00",
                len(rows),
                hashlib.sha256(value).digest(),
            )
        )

    while len(rows) < n:
        roll = rng.random()
        if roll < 0.9:
            incident = str(uuid.uuid4())
            priority = rng.choice((1, 2, 3, 4, 5))
            services = rng.sample(SERVICES, 1)
            add(
                "itsm.incident.created.v1",
                incident,
                {
                    "title": "t",
                    "description": "",
                    "impact": 2,
                    "urgency": 2,
                    "priority": priority,
                    "state": "new",
                    "services": services,
                    "assignment_group": rng.choice(GROUPS),
                    "assignee": rng.choice(AGENTS),
                    "suspected_change": changes[-1] if changes and rng.random() < 0.02 else None,
                },
            )
            move = {"from_state": "new", "to_state": "in_progress", "priority": priority}
            add("itsm.incident.transitioned.v1", incident, move)
            for kind in ("response", "resolution"):
                if kind == "resolution":
                    resolve = {"from_state": "in_progress", "to_state": "resolved"}
                    add(
                        "itsm.incident.transitioned.v1", incident, {**resolve, "priority": priority}
                    )
                clock_ref = {
                    "record": "incident",
                    "record_id": incident,
                    "kind": kind,
                    "policy": "gold",
                    "priority": priority,
                    "target_seconds": 3600,
                }
                add(
                    "itsm.incident.sla.clock_stopped.v1",
                    f"sla/{incident}/{kind}",
                    {
                        "clock": clock_ref,
                        "result": rng.choice(("met", "met", "breached")),
                        "elapsed_seconds": rng.random() * 7200,
                    },
                )
        elif roll < 0.95:
            change = str(uuid.uuid4())
            changes.append(change)
            add(
                "itsm.change.created.v1",
                change,
                {
                    "change_id": change,
                    "type": rng.choice(("standard", "normal", "emergency")),
                    "origin": "manual",
                    "business_services": rng.sample(SERVICES, 1),
                },
            )
            add(
                "itsm.change.implemented.v1",
                change,
                {"change_id": change, "outcome": rng.choice(("successful", "failed"))},
            )
            deployment = str(uuid.uuid4())
            add(
                "itsm.change.deployment_recorded.v1",
                deployment,
                {"deployment_id": deployment, "status": "succeeded", "change_id": change},
            )
        else:
            survey = f"survey/{uuid.uuid4()}"
            who = {"record": "incident", "services": rng.sample(SERVICES, 1)}
            add("itsm.incident.survey.sent.v1", survey, who)
            add("itsm.incident.survey.answered.v1", survey, {**who, "score": rng.randint(1, 5)})
    return rows[:n], n


LEDGER_COLUMNS = [
    "tenant_id",
    "event_id",
    "type",
    "source",
    "subject",
    "version",
    "time",
    "correlation_id",
    "actor",
    "data",
    "topic",
    "partition",
    "kafka_offset",
    "message_value",
    "message_headers",
    "leaf_index",
    "leaf_hash",
]


async def load_ledger(admin: asyncpg.Connection, tenant: str, n: int) -> float:
    """Write n ledger rows and a checkpoint row at size n with COPY; seconds (set-up)."""
    began = time.perf_counter()
    rows, size = ledger_rows(tenant, n)
    for start in range(0, len(rows), 100_000):
        await admin.copy_records_to_table(
            "ledger",
            records=rows[start : start + 100_000],
            columns=LEDGER_COLUMNS,
            schema_name="reporting",
        )
    await admin.execute(
        "INSERT INTO reporting.ledger_checkpoints (tenant_id, tree_size, root_hash, note, key_id)"
        " VALUES ($1, $2, $3, 'bench', 'bench')",
        tenant,
        size,
        bytes(32),
    )
    # The log's head (its size; the frontier is not needed here: nothing is appended).
    await admin.execute(
        "INSERT INTO reporting.ledger_heads (tenant_id, size) VALUES ($1, $2)", tenant, size
    )
    await admin.execute("ANALYZE reporting.ledger")
    return time.perf_counter() - began


async def copy_ledger(pool: asyncpg.Pool, tenant: str) -> float:
    """Seconds a plain COPY of the same rows' messages takes (the rebuild's baseline)."""
    began = time.perf_counter()
    out = io.BytesIO()
    async with tenant_transaction(pool, tenant, readonly=True) as conn:
        await conn.copy_from_query(
            "SELECT leaf_index, type, subject, time, actor, message_value FROM ledger"
            " WHERE tenant_id = $1 ORDER BY leaf_index",
            tenant,
            output=out,
            format="binary",
        )
    return time.perf_counter() - began


def summary(name: str, values: list[float], goal: str = "") -> str:
    return (
        f"  {name:<44} median {statistics.median(values):8.1f} ms"
        f"   p99 {percentile(values, 99):8.1f} ms {goal}"
    )


async def measure(infra: Infra, args: argparse.Namespace) -> None:
    settings = settings_of(infra)
    await migrate_only(DEFINITION, settings)
    admin = await asyncpg.connect(dsn_for_admin_database(infra.admin_dsn, DEFAULT_DATABASE))
    pool = await create_pool(
        settings.database_url.get_secret_value(),
        schema="reporting",
        application_name="bench-kpi",
        max_size=2,
    )
    try:
        tenant = "bench-facts"
        if args.only == "rebuild":
            args.incidents = 0
        print(f"writing {args.incidents:,} incidents' facts (COPY)", flush=True)
        seconds = await load_facts(admin, tenant, args.incidents)
        print(f"  written in {seconds:.1f} s", flush=True)
        months = [] if args.only == "rebuild" else [NEWEST_MONTH, MIDDLE_MONTH]
        for label, month in zip(("newest month", "a middle month"), months, strict=False):
            reader, plain, facts = await query_rounds(pool, tenant, month, args.rounds)
            print(
                f"a month's {len(INCIDENT_KPIS)} incident and workload KPIs for one service"
                f" ({label} {month:%Y-%m}, ~{facts:,} facts), {args.rounds} rounds"
            )
            print(summary("KpiProjection.series", reader, "(goal p99 < 200 ms)"))
            print(summary("plain aggregate query, same rows", plain))
            print(
                f"  ratio (medians)                              "
                f"{statistics.median(reader) / statistics.median(plain):8.1f}",
                flush=True,
            )

        if args.only == "queries":
            return
        tenant = "bench-ledger"
        print(f"writing {args.events:,} ledger events and a checkpoint (COPY)", flush=True)
        seconds = await load_ledger(admin, tenant, args.events)
        print(f"  written in {seconds:.1f} s", flush=True)
        baseline = await copy_ledger(pool, tenant)
        began = time.perf_counter()
        status = await kpis_command.run(
            argparse.Namespace(action="rebuild", tenant=[tenant]), settings
        )
        rebuild = time.perf_counter() - began
        if status != 0:
            raise RuntimeError(f"kpis rebuild failed ({status})")
        facts = await admin.fetchval(
            "SELECT count(*) FROM reporting.kpi_facts WHERE tenant_id = $1", tenant
        )
        print(f"projection rebuilt from {args.events:,} ledger events ({facts:,} facts)")
        print(
            f"  kpis rebuild command                {rebuild:8.1f} s"
            f"   {args.events / rebuild:8.0f} events/s   (goal < 120 s)"
        )
        print(f"  COPY of the same rows (baseline)    {baseline:8.1f} s")
        print(f"  ratio rebuild / COPY                {rebuild / baseline:8.1f}", flush=True)
    finally:
        await pool.close()
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--incidents", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=200, help="queries per month measured")
    parser.add_argument("--only", choices=["queries", "rebuild"], help="one part only")
    parser.add_argument("--state-dir", type=Path, default=REPO_ROOT / ".state" / "bench-kpi")
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
        asyncio.run(measure(infra, args))
    finally:
        platform.stop()


if __name__ == "__main__":
    main()
