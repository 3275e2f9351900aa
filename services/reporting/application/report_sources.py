"""The protocols a service report takes its figures through (`domain/report_data.py` has the
figures): the KPI part implements `KpiReader`, the service-level part (availability, SLA
results, improvement actions, audit findings) `ServiceLevelReader`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Protocol

from asyncpg import Connection

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


class KpiReader(Protocol):
    def definitions(self) -> Sequence[KpiDefinition]: ...

    async def series(self, conn: Connection, tenant: str, query: KpiQuery) -> list[KpiPoint]: ...

    async def basis(self, conn: Connection, tenant: str) -> Basis | None: ...

    async def series_across(
        self, conn: Connection, tenants: Sequence[str], query: KpiQuery
    ) -> list[KpiPoint]:
        """The KPIs over the records of several tenants together (a provider's staff whose
        token names them): computed over the union, not averaged per tenant."""
        ...


class ServiceLevelReader(Protocol):
    async def availability(
        self,
        conn: Connection,
        tenant: str,
        services: Sequence[str] | None,
        period: PeriodKind,
        start: date,
        count: int,
    ) -> list[AvailabilityPoint]: ...

    async def sla_results(
        self, conn: Connection, tenant: str, period: PeriodKind, start: date, count: int
    ) -> list[SlaTargetResult]: ...

    async def improvement_actions(
        self, conn: Connection, tenant: str, *, open_only: bool = False
    ) -> list[ImprovementAction]: ...

    async def audit_findings(
        self, conn: Connection, tenant: str, *, open_only: bool = False
    ) -> list[AuditFinding]: ...
