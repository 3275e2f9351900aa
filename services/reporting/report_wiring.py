"""Where the service takes a report's figures from: `report_sources(runtime)`, the one place
the KPI reader and the service-level reader are chosen.

Until the KPI part (`KpiReader`) and the service-level part (`ServiceLevelReader`) are wired in
here, the readers say so: no KPI is defined (a definition naming one is refused, 422) and a
report asked for fails with "not wired" (its job records the reason). Tests hand in their own
readers with `use_report_sources`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any, NoReturn
from weakref import WeakKeyDictionary

from services.reporting.application.reports import ReportSources, ReportSourcesNotWired
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
)

_chosen: WeakKeyDictionary[Any, ReportSources] = WeakKeyDictionary()


def _not_wired(what: str) -> NoReturn:
    raise ReportSourcesNotWired(f"the {what} is not wired into services/reporting/report_wiring.py")


class UnwiredKpiReader:
    """Stands where the KPI part's reader goes."""

    def definitions(self) -> Sequence[KpiDefinition]:
        return ()  # no KPI is defined in a build without the KPI part

    async def series(self, conn: Any, tenant: str, query: KpiQuery) -> list[KpiPoint]:
        _not_wired("KPI reader")

    async def basis(self, conn: Any, tenant: str) -> Basis | None:
        _not_wired("KPI reader")

    async def series_across(
        self, conn: Any, tenants: Sequence[str], query: KpiQuery
    ) -> list[KpiPoint]:
        _not_wired("KPI reader")


class UnwiredServiceLevelReader:
    """Stands where the service-level part's reader goes."""

    async def availability(
        self,
        conn: Any,
        tenant: str,
        services: Sequence[str] | None,
        period: PeriodKind,
        start: date,
        count: int,
    ) -> list[AvailabilityPoint]:
        _not_wired("service-level reader")

    async def sla_results(
        self, conn: Any, tenant: str, period: PeriodKind, start: date, count: int
    ) -> list[SlaTargetResult]:
        _not_wired("service-level reader")

    async def improvement_actions(
        self, conn: Any, tenant: str, *, open_only: bool = False
    ) -> list[ImprovementAction]:
        _not_wired("service-level reader")

    async def audit_findings(
        self, conn: Any, tenant: str, *, open_only: bool = False
    ) -> list[AuditFinding]:
        _not_wired("service-level reader")


def report_sources(runtime: Any) -> ReportSources:
    """The readers this runtime's reports take their figures through."""
    chosen = _chosen.get(runtime)
    if chosen is not None:
        return chosen
    return ReportSources(UnwiredKpiReader(), UnwiredServiceLevelReader())


def use_report_sources(runtime: Any, sources: ReportSources) -> None:
    """Make a runtime's reports take their figures from these readers."""
    _chosen[runtime] = sources
