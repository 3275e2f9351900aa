"""Benchmark: a service report generated (issue 21: goal < 5 s).

`make bench-report` (or `python -m tests.benchmarks.reports --rounds 7`). On a private
PostgreSQL (the reporting schema migrated), each round asks for a report and times the
generation job end to end, as a replica's runner does it (`ReportRunner.run`: claim, the
figures through the readers, JSON, CSV, the HTML page with its SVG charts, every format stored
with its SHA-256, `ReportGeneratedV1` in the outbox, in one transaction), for:
- a service report: 20 KPIs over 13 months (the month and a year before it) for 3 services;
- the management-review pack: 60 KPIs over 13 months, availability of 10 services, 40 SLA
  targets, 50 improvement actions, 30 audit findings;
- the same service report with its PDF, printed by headless Chromium, when `chromium` is there.
Beside them, in the same run, a baseline renders the same figures with `json.dumps` and a plain
`string.Template` HTML table (no charts, no storage). The readers are synthetic (the figures
are made in memory, as the KPI engine's reader would hand them over), so this measures the
report, not the KPI queries. Medians of the rounds; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import shutil
import socket
import statistics
import string
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, replace
from datetime import UTC, date, datetime
from datetime import time as clock_time
from pathlib import Path
from typing import Any

import asyncpg

from services.reporting.application import reports
from services.reporting.definition import DEFINITION
from services.reporting.domain.report_data import (
    AuditFinding,
    AvailabilityPoint,
    Basis,
    ImprovementAction,
    KpiDefinition,
    KpiPoint,
    KpiQuery,
    PeriodKind,
    SlaTargetResult,
    period_of,
)
from services.reporting.domain.reports import ReportSpec, ShownKpi, shift
from shared.context import RequestContext
from shared.db import create_pool, migrate, tenant_transaction
from shared.devstack.kafka import REPO_ROOT
from shared.devstack.postgres import LocalPostgres
from shared.provision import DEFAULT_DATABASE, dsn_for, provision
from shared.registry import SERVICE_NAMES, service

PROCESSES = ("incident", "request", "problem", "change", "deployment", "configuration")
UNITS = ("seconds", "count", "ratio", "score", "per_day")


def kpi_definitions(n: int) -> list[KpiDefinition]:
    return [
        KpiDefinition(
            f"{PROCESSES[i % len(PROCESSES)]}.kpi_{i:02d}",
            1,
            f"KPI number {i}",
            UNITS[i % len(UNITS)],  # type: ignore[arg-type]
            ("higher", "lower", "none")[i % 3],  # type: ignore[arg-type]
            PROCESSES[i % len(PROCESSES)],
            f"Synthetic KPI {i} for the benchmark.",
        )
        for i in range(n)
    ]


class SyntheticKpis:
    """Figures made in memory: a value per KPI, period and service."""

    def __init__(self, definitions: Sequence[KpiDefinition]) -> None:
        self._definitions = list(definitions)

    def definitions(self) -> Sequence[KpiDefinition]:
        return self._definitions

    async def series(self, conn: Any, tenant: str, query: KpiQuery) -> list[KpiPoint]:
        first = period_of(query.period, query.start)
        values = list(query.services or [None])
        return [
            KpiPoint(
                kpi,
                1,
                shift(first, n),
                "service" if value else "tenant",
                value,
                float((n * 37 + k * 11) % 97 + 1),
                100 + n,
                target=query.targets.get(kpi),
            )
            for n in range(query.count)
            for k, kpi in enumerate(query.kpis)
            for value in values
        ]

    async def basis(self, conn: Any, tenant: str) -> Basis | None:
        return Basis(1_000_000, "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80=")

    async def series_across(
        self, conn: Any, tenants: Sequence[str], query: KpiQuery
    ) -> list[KpiPoint]:
        return await self.series(conn, tenants[0], query)


class SyntheticLevels:
    """Availability of 10 services, 40 SLA targets, 50 actions, 30 findings."""

    async def availability(
        self,
        conn: Any,
        tenant: str,
        services: Sequence[str] | None,
        period: PeriodKind,
        start: date,
        count: int,
    ) -> list[AvailabilityPoint]:
        first = period_of(period, start)
        names = list(services or [f"svc-{i}" for i in range(10)])
        return [
            AvailabilityPoint(
                name,
                shift(first, n),
                2_592_000.0,
                float(n * 60),
                0.0,
                0.0,
                n % 3,
                1 - n * 60 / 2_592_000.0,
                None,
                None,
                target=0.9995,
                breached=n * 60 / 2_592_000.0 > 0.0005,
            )
            for name in names
            for n in range(count)
        ]

    async def sla_results(
        self, conn: Any, tenant: str, period: PeriodKind, start: date, count: int
    ) -> list[SlaTargetResult]:
        p = period_of(period, start)
        return [
            SlaTargetResult(
                f"policy-{i // 4}", f"P{i % 4 + 1} resolution", p, 90, i, 0.9, 0.95, i > 4
            )
            for i in range(40)
        ]

    async def improvement_actions(
        self, conn: Any, tenant: str, *, open_only: bool = False
    ) -> list[ImprovementAction]:
        return [
            ImprovementAction(
                f"ia-{i}",
                f"Action {i}",
                "manual",
                None,
                "olivia",
                None,
                "open",
                "",
                datetime(2026, 11, 1, tzinfo=UTC),
                1,
            )
            for i in range(50)
        ]

    async def audit_findings(
        self, conn: Any, tenant: str, *, open_only: bool = False
    ) -> list[AuditFinding]:
        return [
            AuditFinding(
                f"af-{i}",
                "Audit 2026",
                "8.5.1",
                f"Finding {i}",
                "observation",
                "carol",
                "Fix",
                None,
                "open",
                datetime(2026, 10, 1, tzinfo=UTC),
                1,
            )
            for i in range(30)
        ]


BASELINE_PAGE = string.Template(
    "<!DOCTYPE html><html><head><title>$title</title></head><body><h1>$title</h1>"
    "<table>$rows</table></body></html>"
)


async def baseline(sources: reports.ReportSources, spec: ReportSpec) -> float:
    """The same figures fetched, then json.dumps and a plain HTML table: seconds."""
    started = time.perf_counter()
    first = shift(period_of(spec.period_kind, date(2026, 11, 1)), -spec.trend_periods)
    query = KpiQuery(
        [k.id for k in spec.kpis],
        spec.period_kind,
        first.start,
        spec.trend_periods + 1,
        services=list(spec.services) or None,
    )
    points = await sources.kpis.series(None, "t", query)
    as_json = json.dumps([asdict(p) for p in points], default=str)
    rows = "".join(
        f"<tr><td>{p.kpi}</td><td>{p.period.label}</td><td>{p.value}</td></tr>" for p in points
    )
    page = BASELINE_PAGE.substitute(title=spec.name, rows=rows)
    assert as_json and page
    return time.perf_counter() - started


async def generate(
    pool: asyncpg.Pool,
    runner: reports.ReportRunner,
    context: RequestContext,
    kpis: SyntheticKpis,
    definition_id: uuid.UUID | None,
    formats: list[str],
) -> float:
    if definition_id is None:
        queued = await reports.request_management_review(
            pool,
            context,
            kpis,
            period_kind="month",
            period_start=date(2026, 11, 1),
            trend_periods=12,
            time_zone="Europe/Berlin",
            formats=formats,  # type: ignore[arg-type]
        )
    else:
        queued = await reports.request_report(pool, context, definition_id, date(2026, 11, 1))
    started = time.perf_counter()
    done = await runner.run(queued.id, context.tenant_id)
    elapsed = time.perf_counter() - started
    assert done is not None and done.state == "done", done
    return elapsed


def report_line(name: str, seconds: list[float], base: float | None) -> str:
    median = statistics.median(seconds)
    ratio = f"  ({median / base:,.1f}x the baseline)" if base else ""
    return f"{name:<52} median {median * 1000:8.1f} ms  max {max(seconds) * 1000:8.1f} ms{ratio}"


async def measure(dsn: str, rounds: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn, DEFINITION.migration_sources())
    finally:
        await conn.close()
    pool = await create_pool(
        dsn,
        schema=service("reporting").schema,
        application_name="bench-reports",
        min_size=1,
        max_size=4,
    )
    try:
        tenant = f"bench-{uuid.uuid4().hex[:8]}"
        context = RequestContext(tenant, "bench", "")
        small = SyntheticKpis(kpi_definitions(20))
        large = SyntheticKpis(kpi_definitions(60))
        levels = SyntheticLevels()
        spec = reports.DefinitionInput(
            spec=ReportSpec(
                "Service report",
                "customer",
                ("svc-mail", "svc-web", "svc-erp"),
                "month",
                tuple(ShownKpi(d.id, 50.0) for d in small.definitions()),
                12,
                ("json", "csv", "html"),
                "Europe/Berlin",
            ),
            schedule="none",
            schedule_time=clock_time(6),
        )
        stored = await reports.create_definition(pool, context, spec, small)
        with_pdf = await reports.create_definition(
            pool,
            context,
            reports.DefinitionInput(
                spec=replace(spec.spec, formats=("html", "pdf")),
                schedule="none",
                schedule_time=clock_time(6),
            ),
            small,
        )
        small_runner = reports.ReportRunner(pool, lambda: reports.ReportSources(small, levels))
        large_runner = reports.ReportRunner(pool, lambda: reports.ReportSources(large, levels))
        service_id = uuid.UUID(stored.definition.id)
        await generate(pool, small_runner, context, small, service_id, [])  # warm-up
        service_times = [
            await generate(pool, small_runner, context, small, service_id, [])
            for _ in range(rounds)
        ]
        review_times = [
            await generate(pool, large_runner, context, large, None, ["json", "csv", "html"])
            for _ in range(rounds)
        ]
        baseline_small = [
            await baseline(reports.ReportSources(small, levels), spec.spec) for _ in range(rounds)
        ]
        base = statistics.median(baseline_small)
        print(f"a report generated, {rounds} rounds (goal < 5 s):")
        print(report_line("baseline: json.dumps + string.Template table", baseline_small, None))
        print(report_line("service report (20 KPIs x 3 services x 13 months)", service_times, base))
        print(
            report_line("management review (60 KPIs x 13 months, 10 services)", review_times, base)
        )
        browser = reports.PdfPrinter.found("chromium")
        if browser is not None:
            pdf_runner = reports.ReportRunner(
                pool, lambda: reports.ReportSources(small, levels), printer=browser
            )
            pdf_id = uuid.UUID(with_pdf.definition.id)
            pdf_times = [
                await generate(pool, pdf_runner, context, small, pdf_id, [])
                for _ in range(max(3, rounds // 2))
            ]
            print(report_line("service report with its PDF (headless Chromium)", pdf_times, base))
            empty_pdf = []
            for _ in range(max(3, rounds // 2)):
                started = time.perf_counter()
                await browser.print(b"<!DOCTYPE html><p>x</p>")
                empty_pdf.append(time.perf_counter() - started)
            print(report_line("baseline: Chromium printing a one-line page", empty_pdf, None))
        else:
            print("no chromium on this machine: the PDF round is left out")
        async with tenant_transaction(pool, tenant, readonly=True) as conn:
            sizes = await conn.fetch(
                "SELECT format, avg(octet_length(content))::bigint AS bytes FROM report_files"
                " WHERE tenant_id = $1 GROUP BY format ORDER BY format",
                tenant,
            )
        print(
            "average size per format:", ", ".join(f"{r['format']} {r['bytes']:,} B" for r in sizes)
        )
    finally:
        await pool.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--state-dir", type=Path, default=REPO_ROOT / ".state" / "bench-reports")
    parser.add_argument("--postgres-port", type=int, default=0, help="default: a free one")
    args = parser.parse_args()
    postgres = LocalPostgres(args.state_dir, port=args.postgres_port or free_port())
    postgres.destroy()
    shutil.rmtree(args.state_dir, ignore_errors=True)
    try:
        postgres.start()
        passwords = {name: secrets.token_urlsafe(18) for name in SERVICE_NAMES}
        asyncio.run(provision(postgres.admin_dsn, passwords))
        dsn = dsn_for(
            postgres.admin_dsn,
            user="reporting",
            password=passwords["reporting"],
            database=DEFAULT_DATABASE,
        )
        asyncio.run(measure(dsn, args.rounds))
    finally:
        postgres.stop()


if __name__ == "__main__":
    main()
