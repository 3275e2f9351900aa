"""KPIs over HTTP (README "KPIs"): the definitions, and the figures of periods per dimension,
each answer naming the signed checkpoint it was computed from."""

from __future__ import annotations

import re
import weakref
from datetime import date, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from services.reporting.application.kpis import KpiProjection
from services.reporting.domain import kpis
from services.reporting.domain.report_data import Basis, KpiPoint, KpiQuery
from services.reporting.entrypoints.http_log import ReportingRuntime
from shared.auth.tokens import TENANT_ID_PATTERN
from shared.context import RequestContext
from shared.db import tenant_transaction
from shared.errors import Forbidden, invalid_field
from shared.http.context import authorize
from shared.service import runtime_of

router = APIRouter(tags=["kpis"])
Runtime = Annotated[ReportingRuntime, Depends(runtime_of)]
Reader = Annotated[RequestContext, authorize("kpi:read")]

MAX_PERIODS = 120
MAX_TENANTS = 50
MAX_VALUES = 100
# Periods are computed in epoch seconds: far from the years a KPI can have data, refused.
FIRST_DAY = date(1970, 1, 1)
LAST_DAY = date(9000, 12, 31)
_TENANT_ID = re.compile(TENANT_ID_PATTERN)

_projections: weakref.WeakKeyDictionary[ReportingRuntime, KpiProjection] = (
    weakref.WeakKeyDictionary()
)


def projection_of(runtime: ReportingRuntime) -> KpiProjection:
    """The runtime's KPI reader (the report builder takes the same)."""
    found = _projections.get(runtime)
    if found is None:
        found = _projections[runtime] = KpiProjection(runtime.settings.kpi_zone)
    return found


class DefinitionOut(BaseModel):
    """A KPI's documented, versioned definition (docs/kpis.md)."""

    id: str
    version: int
    title: str
    unit: Literal["count", "seconds", "ratio", "score", "per_day"]
    better: Literal["higher", "lower", "none"] = Field(
        description="Which way is better: `higher`/`lower` (against a target), `none`."
    )
    process: str
    description: str


class BasisOut(BaseModel):
    """The signed checkpoint figures were computed from (`GET /ledger/checkpoint`)."""

    tree_size: int
    root_hash: str = Field(description="Base64 of the root at that size.")


class PeriodOut(BaseModel):
    kind: Literal["day", "week", "month"]
    start: date
    label: str


class PointOut(BaseModel):
    """A KPI's value for one period and one dimension value."""

    kpi: str
    version: int
    period: PeriodOut
    dimension: str
    dimension_value: str | None = Field(description="Null for the whole (dimension tenant).")
    value: float | None = Field(description="Null when the period has no data for it.")
    count: int = Field(description="The records (or events) the value is computed from.")


class TenantSeriesOut(BaseModel):
    tenant: str
    basis: BasisOut | None
    points: list[PointOut]


class SeriesOut(BaseModel):
    """The figures asked for. With `tenants`: `points` are over the union of the tenants'
    records, `tenants` has each one's own, `bases` each one's checkpoint."""

    basis: BasisOut | None = Field(description="The checkpoint (one tenant); null with tenants.")
    points: list[PointOut]
    bases: dict[str, BasisOut | None] | None = None
    tenants: list[TenantSeriesOut] | None = None


def _basis(basis: Basis | None) -> BasisOut | None:
    return None if basis is None else BasisOut(tree_size=basis.tree_size, root_hash=basis.root_hash)


def _points(points: list[KpiPoint]) -> list[PointOut]:
    return [
        PointOut(
            kpi=p.kpi,
            version=p.version,
            period=PeriodOut(kind=p.period.kind, start=p.period.start, label=p.period.label),
            dimension=p.dimension,
            dimension_value=p.dimension_value,
            value=p.value,
            count=p.count,
        )
        for p in points
    ]


def _listed(values: list[str] | None) -> list[str]:
    """Repeated parameters and comma-separated lists alike."""
    return [item.strip() for value in values or [] for item in value.split(",") if item.strip()]


@router.get(
    "/kpis/definitions", response_model=list[DefinitionOut], summary="Every KPI's definition"
)
async def read_definitions(context: Reader, runtime: Runtime) -> list[DefinitionOut]:
    return [
        DefinitionOut(
            id=d.id,
            version=d.version,
            title=d.title,
            unit=d.unit,
            better=d.better,
            process=d.process,
            description=d.description,
        )
        for d in projection_of(runtime).definitions()
    ]


@router.get("/kpis", response_model=SeriesOut, summary="KPI figures per period and dimension")
async def read_kpis(
    context: Reader,
    runtime: Runtime,
    kpi: Annotated[
        list[str], Query(description="KPI ids (repeat or comma-separate); see /kpis/definitions.")
    ],
    period: Annotated[Literal["day", "week", "month"], Query()] = "month",
    start: Annotated[
        date | None, Query(description="A day of the first period (default: the current one).")
    ] = None,
    count: Annotated[int, Query(ge=1, le=MAX_PERIODS, description="Consecutive periods.")] = 1,
    dimension: Annotated[
        Literal["tenant", "service", "group", "agent", "priority", "category"], Query()
    ] = "tenant",
    value: Annotated[
        list[str] | None, Query(description="Only these dimension values (e.g. a service id).")
    ] = None,
    service: Annotated[
        list[str] | None, Query(description="Only records of these business services.")
    ] = None,
    tenants: Annotated[
        str | None,
        Query(
            max_length=MAX_TENANTS * 65,
            description="Comma-separated tenants the token serves (a provider's staff): each"
            " one's figures and those over all of them together.",
        ),
    ] = None,
) -> SeriesOut:
    ids = _listed(kpi)
    if not ids:
        raise invalid_field("kpi", "name at least one KPI", "query")
    unknown = [i for i in ids if i not in kpis.BY_ID]
    if unknown:
        raise invalid_field("kpi", f"unknown KPI: {', '.join(unknown[:5])}", "query")
    reader = projection_of(runtime)
    zone = runtime.settings.kpi_zone
    if start is not None and not FIRST_DAY <= start <= LAST_DAY:
        raise invalid_field("start", f"a day from {FIRST_DAY} to {LAST_DAY}", "query")
    for name, listed in (("value", _listed(value)), ("service", _listed(service))):
        if len(listed) > MAX_VALUES:
            raise invalid_field(name, f"at most {MAX_VALUES} values", "query")
    query = KpiQuery(
        kpis=ids,
        period=period,
        start=start or datetime.now(zone).date(),
        count=count,
        dimension=dimension,
        values=_listed(value) or None,
        services=_listed(service) or None,
    )
    if tenants is None:
        async with tenant_transaction(runtime.pool, context.tenant_id, readonly=True) as conn:
            points, basis = await reader.series_with_basis(conn, context.tenant_id, query)
        return SeriesOut(basis=_basis(basis), points=_points(points))
    named = list(dict.fromkeys(_listed([tenants])))
    if not named or len(named) > MAX_TENANTS:
        raise invalid_field("tenants", f"name 1 to {MAX_TENANTS} tenants", "query")
    if any(not _TENANT_ID.fullmatch(t) for t in named):
        raise invalid_field("tenants", "not a tenant id", "query")
    refused = [t for t in named if t not in context.tenants]
    if refused:
        raise Forbidden("the token does not serve every tenant named in `tenants`")
    async with tenant_transaction(runtime.pool, context.tenant_id, readonly=True) as conn:
        own: list[TenantSeriesOut] = []
        for tenant in named:
            alone, of_one = await reader.series_across_with_bases(conn, [tenant], query)
            own.append(
                TenantSeriesOut(tenant=tenant, basis=_basis(of_one[tenant]), points=_points(alone))
            )
        together, bases = await reader.series_across_with_bases(conn, named, query)
    return SeriesOut(
        basis=None,
        points=_points(together),
        bases={t: _basis(b) for t, b in bases.items()},
        tenants=own,
    )
