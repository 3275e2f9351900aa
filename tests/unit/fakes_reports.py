"""Test doubles of the readers a service report takes its figures through (`KpiReader`,
`ServiceLevelReader`): in-memory figures, so report tests run before (and apart from) the KPI
and service-level parts. Not the real readers: those are wired in
`services/reporting/report_wiring.py`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from services.reporting.application.reports import ReportSources
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
from services.reporting.domain.reports import shift

DEFINITIONS = (
    KpiDefinition(
        "incident.resolve_time.median",
        1,
        "Median time to resolve",
        "seconds",
        "lower",
        "incident",
        "Median of resolved_at - created_at over incidents resolved in the period.",
    ),
    KpiDefinition(
        "incident.volume",
        1,
        "Incidents opened",
        "count",
        "none",
        "incident",
        "Incidents created in the period.",
    ),
    KpiDefinition(
        "change.success_rate",
        2,
        "Change success rate",
        "ratio",
        "higher",
        "change",
        "Changes closed successful over changes closed.",
    ),
)


def value_for(tenant: str, kpi: str, start: date) -> float:
    """A deterministic figure per tenant, KPI and period (so tests can predict it)."""
    base = {"incident.resolve_time.median": 3600.0, "incident.volume": 10.0}.get(kpi, 0.9)
    bump = (start.toordinal() % 7) / 10
    scale = 1 + (sum(map(ord, tenant)) % 3)
    return round(base * (1 + bump) * (scale if kpi != "change.success_rate" else 1), 4)


@dataclass
class FakeKpiReader:
    """KPIs from `value_for`, or from `values[(tenant, kpi, period start)]` when given there
    (None: no data in that period)."""

    values: dict[tuple[str, str, date], float | None] = field(default_factory=dict)
    bases: dict[str, Basis] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)

    def definitions(self) -> Sequence[KpiDefinition]:
        return DEFINITIONS

    def _points(self, tenants: Sequence[str], query: KpiQuery) -> list[KpiPoint]:
        by_id = {d.id: d for d in DEFINITIONS}
        first = period_of(query.period, query.start)
        out = []
        for n in range(query.count):
            period = shift(first, n)
            for kpi in query.kpis:
                figures = [
                    self.values.get((t, kpi, period.start), value_for(t, kpi, period.start))
                    for t in tenants
                ]
                known = [f for f in figures if f is not None]
                value = None if not known else round(sum(known) / len(known), 4)
                if kpi == "incident.volume" and known:
                    value = sum(known)
                out.append(
                    KpiPoint(
                        kpi,
                        by_id[kpi].version,
                        period,
                        "tenant",
                        None,
                        value,
                        count=len(known) * 10,
                        target=query.targets.get(kpi),
                    )
                )
        return out

    async def series(self, conn: Any, tenant: str, query: KpiQuery) -> list[KpiPoint]:
        self.calls.append(("series", tenant))
        return self._points([tenant], query)

    async def basis(self, conn: Any, tenant: str) -> Basis | None:
        if tenant in self.bases:
            return self.bases[tenant]
        size = await conn.fetchval(
            "SELECT coalesce(max(tree_size), 0) FROM ledger_checkpoints WHERE tenant_id = $1",
            tenant,
        )
        if not size:
            return None
        root = await conn.fetchval(
            "SELECT encode(root_hash, 'base64') FROM ledger_checkpoints"
            " WHERE tenant_id = $1 AND tree_size = $2",
            tenant,
            size,
        )
        return Basis(size, root)

    async def series_across(
        self, conn: Any, tenants: Sequence[str], query: KpiQuery
    ) -> list[KpiPoint]:
        self.calls.append(("series_across", tuple(tenants)))
        return self._points(tenants, query)


@dataclass
class FakeServiceLevelReader:
    """One service's availability per period, one SLA result, an action and a finding."""

    service: str = "svc-mail"
    target: float = 0.999

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
        out = []
        for n in range(count):
            p = shift(first, n)
            down = 60.0 * (n % 3) * 30
            agreed = 30 * 86400.0
            value = 1 - down / agreed
            out.append(
                AvailabilityPoint(
                    self.service,
                    p,
                    agreed,
                    down,
                    0.0,
                    0.0,
                    n % 3,
                    value,
                    None,
                    down / (n % 3) if n % 3 else None,
                    target=self.target,
                    breached=value < self.target,
                )
            )
        return out

    async def sla_results(
        self, conn: Any, tenant: str, period: PeriodKind, start: date, count: int
    ) -> list[SlaTargetResult]:
        p = period_of(period, start)
        return [SlaTargetResult("Gold", "P1 resolution", p, 8, 2, 0.8, 0.95, True)]

    async def improvement_actions(
        self, conn: Any, tenant: str, *, open_only: bool = False
    ) -> list[ImprovementAction]:
        return [
            ImprovementAction(
                "ia-1",
                "Shorten P1 resolution <script>alert(1)</script>",
                "sla_target_missed",
                self.service,
                "olivia",
                date(2026, 12, 31),
                "open",
                "",
                datetime(2026, 11, 2, tzinfo=UTC),
                1,
            )
        ]

    async def audit_findings(
        self, conn: Any, tenant: str, *, open_only: bool = False
    ) -> list[AuditFinding]:
        return [
            AuditFinding(
                "af-1",
                "Internal audit 2026",
                "8.5.1",
                "Emergency changes lack a PIR",
                "minor_nonconformity",
                "carol",
                "Add PIR to the emergency checklist",
                date(2026, 12, 15),
                "in_progress",
                datetime(2026, 10, 20, tzinfo=UTC),
                2,
            )
        ]


def fake_sources(**kpi_options: Any) -> ReportSources:
    """Both test doubles together."""
    return ReportSources(FakeKpiReader(**kpi_options), FakeServiceLevelReader())
