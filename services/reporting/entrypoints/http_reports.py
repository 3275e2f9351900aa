"""Service reports over HTTP (README "Service reports"): definitions (If-Match), reports asked
for on demand (a job with progress, like evidence exports), their formats, the
management-review pack, and a provider's view across the tenants its token serves."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from services.reporting.adapters import reports as store
from services.reporting.application import reports
from services.reporting.domain import report_render
from services.reporting.domain.report_data import Basis, PeriodKind
from services.reporting.domain.reports import (
    FORMATS,
    MAX_TREND,
    MEDIA_TYPES,
    Format,
    ReportSpec,
    Schedule,
    ShownKpi,
    parse_period,
)
from services.reporting.entrypoints.http_log import ReportingRuntime
from services.reporting.report_wiring import report_sources
from shared.context import RequestContext
from shared.db import all_tenants_transaction, tenant_transaction
from shared.errors import Conflict, NotFound
from shared.http.context import authorize, authorize_tenants
from shared.http.etags import IfMatch, etag, if_match_version
from shared.http.models import RequestBody
from shared.http.pagination import DEFAULT_PAGE_SIZE, Cursor, Page, PageSize, encode_cursor
from shared.http.problems import HttpProblem
from shared.http.records import after_cursor
from shared.service import runtime_of

router = APIRouter(tags=["service reports"])
Runtime = Annotated[ReportingRuntime, Depends(runtime_of)]
Reader = Annotated[RequestContext, authorize("report:read")]
Manager = Annotated[RequestContext, authorize("report:manage")]
ProviderReader = Annotated[RequestContext, authorize_tenants("report:read")]
KPI_ID = r"^[a-z0-9_.:-]{1,120}$"
HH_MM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


def _default_formats() -> list[Format]:
    return ["json", "csv", "html"]


# --- definitions --------------------------------------------------------------------------------


class KpiShown(RequestBody):
    """A KPI the report shows, and the target drawn for it (none: the KPI's own, if any)."""

    id: str = Field(pattern=KPI_ID, description="A KPI id of `GET /kpi-definitions`.")
    target: float | None = Field(default=None, allow_inf_nan=False)


class ScheduleIn(RequestBody):
    """When scheduled reports are made: `every` day, week (Mondays) or month (the 1st) at
    `local_time` in the definition's time zone, each for the newest period that has ended."""

    every: Schedule = "none"
    local_time: str = Field(default="06:00", pattern=HH_MM, description="HH:MM, local time.")


class DefinitionBody(RequestBody):
    """A report definition (every field; what is left out takes its default)."""

    name: str = Field(min_length=1, max_length=200)
    audience: str = Field(min_length=1, max_length=200, description="Who the report is for.")
    services: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list, max_length=50, description="Business services; none: all."
    )
    period: PeriodKind = "month"
    kpis: list[KpiShown] = Field(min_length=1, max_length=50)
    trend_periods: int = Field(default=5, ge=0, le=MAX_TREND, description="Previous periods.")
    schedule: ScheduleIn = Field(default_factory=ScheduleIn)
    time_zone: str = Field(default="UTC", min_length=1, max_length=64)
    formats: list[Format] = Field(
        default_factory=_default_formats, min_length=1, max_length=len(FORMATS)
    )

    def as_input(self) -> reports.DefinitionInput:
        hours, minutes = (int(part) for part in self.schedule.local_time.split(":"))
        return reports.DefinitionInput(
            spec=ReportSpec(
                name=self.name,
                audience=self.audience,
                services=tuple(dict.fromkeys(self.services)),
                period_kind=self.period,
                kpis=tuple(ShownKpi(k.id, k.target) for k in self.kpis),
                trend_periods=self.trend_periods,
                formats=tuple(dict.fromkeys(self.formats)),
                time_zone=self.time_zone,
            ),
            schedule=self.schedule.every,
            schedule_time=time(hours, minutes),
        )


class ScheduleOut(BaseModel):
    every: Schedule
    local_time: str


class DefinitionOut(BaseModel):
    """A report definition as stored, with its version (the ETag)."""

    id: uuid.UUID
    version: int
    name: str
    audience: str
    services: list[str]
    period: PeriodKind
    kpis: list[dict[str, Any]]
    trend_periods: int
    schedule: ScheduleOut
    time_zone: str
    formats: list[str]
    deleted: bool
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str


def _definition(stored: store.StoredDefinition, status: int = 200, **headers: str) -> JSONResponse:
    body = DefinitionOut.model_validate(reports.definition_json(stored)).model_dump(mode="json")
    return JSONResponse(
        body,
        status_code=status,
        headers={"ETag": etag(stored.definition.version), **headers},
    )


@router.post(
    "/report-definitions",
    status_code=201,
    response_model=DefinitionOut,
    summary="Define a service report (422 naming an unknown KPI)",
)
async def create_definition(
    body: DefinitionBody, context: Manager, runtime: Runtime
) -> JSONResponse:
    stored = await reports.create_definition(
        runtime.pool, context, body.as_input(), report_sources(runtime).kpis
    )
    return _definition(stored, 201, Location=f"/report-definitions/{stored.definition.id}")


@router.get(
    "/report-definitions",
    response_model=Page[DefinitionOut],
    summary="The tenant's report definitions, oldest first",
)
async def list_definitions(
    context: Reader, runtime: Runtime, cursor: Cursor = None, limit: PageSize = DEFAULT_PAGE_SIZE
) -> Page[DefinitionOut]:
    after = after_cursor(cursor)
    async with tenant_transaction(runtime.pool, context.tenant_id, readonly=True) as conn:
        rows = await store.list_definitions(conn, after, limit + 1)
    items = [DefinitionOut.model_validate(reports.definition_json(r)) for r in rows[:limit]]
    last = rows[limit - 1] if len(rows) > limit else None
    return Page[DefinitionOut](
        items=items,
        next_cursor=None
        if last is None
        else encode_cursor([last.created_at.isoformat(), last.definition.id]),
    )


@router.get(
    "/report-definitions/{definition_id}",
    response_model=DefinitionOut,
    summary="A report definition (ETag: its version)",
)
async def get_definition(
    definition_id: uuid.UUID, context: Reader, runtime: Runtime
) -> JSONResponse:
    return _definition(await reports.get_definition(runtime.pool, context.tenant_id, definition_id))


@router.put(
    "/report-definitions/{definition_id}",
    response_model=DefinitionOut,
    summary="Replace a report definition (If-Match required)",
)
async def put_definition(
    definition_id: uuid.UUID,
    body: DefinitionBody,
    context: Manager,
    runtime: Runtime,
    if_match: IfMatch = None,
) -> JSONResponse:
    expected = if_match_version(if_match, required=True)
    assert expected is not None
    stored = await reports.update_definition(
        runtime.pool,
        context,
        definition_id,
        body.as_input(),
        report_sources(runtime).kpis,
        expected_version=expected,
    )
    return _definition(stored)


@router.delete(
    "/report-definitions/{definition_id}",
    response_model=DefinitionOut,
    summary="Retire a report definition (If-Match required; its reports stay)",
)
async def delete_definition(
    definition_id: uuid.UUID, context: Manager, runtime: Runtime, if_match: IfMatch = None
) -> JSONResponse:
    expected = if_match_version(if_match, required=True)
    assert expected is not None
    stored = await reports.delete_definition(
        runtime.pool, context, definition_id, expected_version=expected
    )
    return _definition(stored)


# --- reports ------------------------------------------------------------------------------------


class ReportRequest(RequestBody):
    """A report of a definition for one period (the period that starts on `period_start`)."""

    definition_id: uuid.UUID
    period_start: date = Field(
        description="The first day of the period: a Monday for weeks, the 1st for months."
    )


class ReviewRequest(RequestBody):
    """The management-review pack for one period: every process's KPIs and trends, SLA
    performance, availability, improvement actions and internal-audit findings."""

    period: PeriodKind = "month"
    period_start: date
    trend_periods: int = Field(default=5, ge=0, le=MAX_TREND)
    time_zone: str = Field(default="UTC", min_length=1, max_length=64)
    formats: list[Format] = Field(
        default_factory=_default_formats, min_length=1, max_length=len(FORMATS)
    )


class ReportOut(BaseModel):
    """A report: its job's progress and, once done, the SHA-256 of each format and the ledger
    checkpoint its figures were computed from."""

    id: uuid.UUID
    tenant_id: str
    kind: str
    definition_id: uuid.UUID | None
    definition_version: int | None
    name: str
    period: dict[str, Any]
    trigger: str
    state: str = Field(description="queued, running, done or failed")
    percent: float
    requested_by: str
    formats: dict[str, str] = Field(description="Format to hex SHA-256 (once done).")
    links: dict[str, str]
    basis: dict[str, Any] | None = Field(description="tree_size and root_hash of the checkpoint.")
    error: str | None
    created_at: datetime
    finished_at: datetime | None


def _report(report: store.StoredReport) -> ReportOut:
    return ReportOut(
        id=report.id,
        tenant_id=report.tenant_id,
        kind=report.kind,
        definition_id=report.definition_id,
        definition_version=report.definition_version,
        name=str(report.spec.get("name", "")),
        period={
            "kind": report.period_kind,
            "start": report.period_start.isoformat(),
            "label": report.period_label,
            "from": report.period_from.isoformat(),
            "to": report.period_to.isoformat(),
        },
        trigger=report.trigger,
        state=report.state,
        percent=report.percent,
        requested_by=report.requested_by,
        formats=report.formats,
        links={fmt: f"/reports/{report.id}.{fmt}" for fmt in report.formats},
        basis=None
        if report.tree_size is None
        else {"tree_size": report.tree_size, "root_hash": report.root_hash},
        error=report.error,
        created_at=report.created_at,
        finished_at=report.finished_at,
    )


@router.post(
    "/reports",
    status_code=202,
    response_model=ReportOut,
    summary="Generate a report of a definition for a period (a job; follow its Location)",
    responses={404: {"description": "No such report definition (`definition_id`)"}},
)
async def start_report(
    body: ReportRequest, context: Manager, runtime: Runtime, response: Response
) -> ReportOut:
    report = await reports.request_report(
        runtime.pool, context, body.definition_id, body.period_start
    )
    response.headers["Location"] = f"/reports/{report.id}"
    return _report(report)


@router.post(
    "/management-reviews",
    status_code=202,
    response_model=ReportOut,
    summary="Generate the management-review pack for a period (a job; follow its Location)",
)
async def start_review(
    body: ReviewRequest, context: Manager, runtime: Runtime, response: Response
) -> ReportOut:
    report = await reports.request_management_review(
        runtime.pool,
        context,
        report_sources(runtime).kpis,
        period_kind=body.period,
        period_start=body.period_start,
        trend_periods=body.trend_periods,
        time_zone=body.time_zone,
        formats=list(dict.fromkeys(body.formats)),
    )
    response.headers["Location"] = f"/reports/{report.id}"
    return _report(report)


def _page(rows: list[store.StoredReport], limit: int) -> Page[ReportOut]:
    last = rows[limit - 1] if len(rows) > limit else None
    return Page[ReportOut](
        items=[_report(r) for r in rows[:limit]],
        next_cursor=None
        if last is None
        else encode_cursor([last.created_at.isoformat(), str(last.id)]),
    )


@router.get(
    "/reports", response_model=Page[ReportOut], summary="The tenant's reports, newest first"
)
async def list_reports(
    context: Reader,
    runtime: Runtime,
    definition_id: uuid.UUID | None = None,
    cursor: Cursor = None,
    limit: PageSize = DEFAULT_PAGE_SIZE,
) -> Page[ReportOut]:
    after = after_cursor(cursor)
    async with tenant_transaction(runtime.pool, context.tenant_id, readonly=True) as conn:
        rows = await store.list_reports(conn, after, limit + 1, definition_id)
    return _page(rows, limit)


def _file_response(content: bytes, fmt: str, report: store.StoredReport) -> Response:
    headers = {
        "Content-Disposition": f'inline; filename="report-{report.id}.{fmt}"',
        "Digest": f"sha-256={report.formats.get(fmt, '')}",
        "X-Content-Type-Options": "nosniff",
    }
    if fmt == "html":
        headers["Content-Security-Policy"] = report_render.CONTENT_SECURITY_POLICY
    return Response(content, media_type=MEDIA_TYPES[fmt], headers=headers)


@router.get(
    "/reports/{report_id}.{fmt}",
    summary="A report in one format (json, csv, html, pdf); 409 until it is done",
    response_class=Response,
    responses={
        200: {"content": {MEDIA_TYPES[f]: {} for f in FORMATS}},
        409: {"description": "The report is not done (queued, running or failed)"},
    },
)
async def report_file(
    report_id: uuid.UUID, fmt: Format, context: Reader, runtime: Runtime
) -> Response:
    report = await reports.report_status(runtime.pool, context.tenant_id, report_id)
    if report.state != "done":
        raise Conflict(f"the report is {report.state}: its files exist once it is done")
    async with tenant_transaction(runtime.pool, context.tenant_id, readonly=True) as conn:
        found = await store.file_of(conn, report_id, fmt)
    if found is None:
        raise NotFound("format", f"{fmt} of report {report_id} (not generated)")
    return _file_response(found[0], fmt, report)


@router.get("/reports/{report_id}", response_model=ReportOut, summary="A report and its progress")
async def get_report(report_id: uuid.UUID, context: Reader, runtime: Runtime) -> ReportOut:
    return _report(await reports.report_status(runtime.pool, context.tenant_id, report_id))


# --- a provider's view across tenants -----------------------------------------------------------

TenantsQuery = Annotated[
    list[str],
    Query(
        alias="tenant",
        min_length=1,
        max_length=50,
        description="A tenant the token serves (repeat for several).",
    ),
]


def served(context: RequestContext, tenants: list[str]) -> list[str]:
    """The tenants asked for, each one the token serves; 403 naming the first it does not."""
    wanted = list(dict.fromkeys(tenants))
    for tenant in wanted:
        if tenant not in context.tenants:
            raise HttpProblem(
                403,
                "Forbidden",
                f"the token does not serve tenant {tenant}",
                errors=[{"in": "query", "field": "tenant", "detail": f"not served: {tenant}"}],
            )
    return wanted


class TenantReports(BaseModel):
    """The newest reports of one tenant."""

    tenant_id: str
    reports: list[ReportOut]


@router.get(
    "/provider/reports",
    response_model=list[TenantReports],
    summary="The newest reports of each tenant named (a provider's staff; 403 for a tenant the"
    " token does not serve)",
)
async def provider_reports(
    context: ProviderReader,
    runtime: Runtime,
    tenants: TenantsQuery,
    limit: PageSize = DEFAULT_PAGE_SIZE,
) -> list[TenantReports]:
    out = []
    for tenant in served(context, tenants):
        async with tenant_transaction(runtime.pool, tenant, readonly=True) as conn:
            rows = await store.list_reports(conn, None, limit)
        out.append(TenantReports(tenant_id=tenant, reports=[_report(r) for r in rows]))
    return out


@router.get(
    "/provider/kpis",
    summary="KPIs over the records of several tenants together (a provider's staff), as JSON,"
    " CSV or HTML with charts; computed on request, not stored",
    response_class=Response,
    responses={200: {"content": {MEDIA_TYPES[f]: {} for f in ("json", "csv", "html")}}},
)
async def provider_kpis(
    context: ProviderReader,
    runtime: Runtime,
    tenants: TenantsQuery,
    kpi: Annotated[list[Annotated[str, Field(pattern=KPI_ID)]], Query(min_length=1, max_length=50)],
    period_start: date,
    period: PeriodKind = "month",
    trend_periods: Annotated[int, Query(ge=0, le=MAX_TREND)] = 5,
    time_zone: Annotated[str, Query(min_length=1, max_length=64)] = "UTC",
    format: Literal["json", "csv", "html"] = "json",
) -> Response:
    chosen = served(context, tenants)
    sources = report_sources(runtime)
    checked = reports.checked_definition(
        reports.DefinitionInput(
            spec=ReportSpec(
                name="Across tenants",
                audience="service provider",
                services=(),
                period_kind=period,
                kpis=tuple(ShownKpi(k) for k in dict.fromkeys(kpi)),
                trend_periods=trend_periods,
                formats=(format,),
                time_zone=time_zone,
            ),
            schedule="none",
            schedule_time=time(0),
        ),
        sources.kpis.definitions(),
    )
    bases: dict[str, Basis | None] = {}
    for tenant in chosen:
        async with tenant_transaction(runtime.pool, tenant, readonly=True) as conn:
            bases[tenant] = await sources.kpis.basis(conn, tenant)  # type: ignore[arg-type]
    builder = reports.ReportBuilder(sources.kpis, sources.levels)
    try:
        period_start_checked = parse_period(period, period_start).start
    except ValueError as exc:
        raise HttpProblem(
            422,
            "Unprocessable Content",
            str(exc),
            errors=[{"in": "query", "field": "period_start", "detail": str(exc)}],
        ) from None
    async with all_tenants_transaction(runtime.pool) as conn:
        content = await builder.across(
            conn,
            chosen,
            bases,
            spec=checked.spec,
            period_start=period_start_checked,
            generated_at=datetime.now(UTC),
        )
    rendered = reports.render(content, [format])[format]
    headers = {"X-Content-Type-Options": "nosniff"}
    if format == "html":
        headers["Content-Security-Policy"] = report_render.CONTENT_SECURITY_POLICY
    return Response(rendered, media_type=MEDIA_TYPES[format], headers=headers)
