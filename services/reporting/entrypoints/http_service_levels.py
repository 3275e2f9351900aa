"""Service level management over HTTP: availability per business service, SLA results, the
tenant's service-level settings, improvement actions and internal-audit findings. Thin handlers
over `application/service_levels.py`; refusals are the typed errors of `shared/errors.py`,
answered by the one problem+json mapping."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from services.reporting.adapters import service_levels as store
from services.reporting.application import service_levels as use_cases
from services.reporting.domain.report_data import Basis, PeriodKind
from services.reporting.domain.service_levels import (
    OPEN_ACTION,
    AuditFindingRecord,
    ImprovementActionRecord,
)
from services.reporting.metrics import ReportingMetrics
from services.reporting.settings import ReportingSettings
from shared.calendars import CalendarSpec
from shared.context import RequestContext
from shared.db import tenant_transaction
from shared.errors import invalid_field
from shared.events.reporting import FindingSeverity, FindingStatus, ImprovementStatus
from shared.http import records
from shared.http.context import authorize
from shared.http.etags import IfMatch, etag, if_match_version
from shared.http.models import RequestBody
from shared.http.pagination import Cursor, PageSize
from shared.records.sql import Condition
from shared.service import ServiceRuntime

router = APIRouter(tags=["service levels"])
Runtime = records.Runtime

READ = "service_level:read"
CONFIGURE = "service_level:configure"
MANAGE_ACTIONS = "improvement:manage"
MANAGE_FINDINGS = "audit_finding:manage"
Count = Annotated[int, Query(ge=1, le=366, description="How many consecutive periods.")]
Start = Annotated[
    date | None,
    Query(description="A day in the first period (default: the last `count` up to now)."),
]
Owner = Annotated[str, Field(min_length=1, max_length=200)]


def _metrics(runtime: ServiceRuntime) -> ReportingMetrics | None:
    metrics = runtime.service_metrics
    return metrics if isinstance(metrics, ReportingMetrics) else None


def levels_of(runtime: ServiceRuntime) -> use_cases.ServiceLevels:
    """The reader, with the service's defaults."""
    return use_cases.ServiceLevels(defaults_of(runtime.settings))


def defaults_of(settings: Any) -> use_cases.Defaults:
    """The tenant settings' defaults from the service's settings."""
    if not isinstance(settings, ReportingSettings):
        return use_cases.Defaults()
    return use_cases.Defaults(
        sla_objective=settings.sla_objective,
        improvement_due_days=settings.improvement_due_days,
        availability_metric_services=settings.availability_metric_services,
    )


def _now() -> datetime:
    return datetime.now(UTC)


# --- figures -----------------------------------------------------------------------------------


class BasisOut(BaseModel):
    """The signed checkpoint the figures stand on."""

    tree_size: int
    root_hash: str = Field(description="Base64 of the checkpoint's root hash.")


class AvailabilityOut(BaseModel):
    """A service's availability in one period (seconds of agreed service time)."""

    service: str
    period: PeriodKind
    period_start: date
    label: str
    agreed_seconds: float
    downtime_seconds: float
    planned_downtime_seconds: float
    degraded_seconds: float
    outages: int
    availability: float | None = Field(description="0..1; null when nothing was agreed.")
    mtbf_seconds: float | None
    mtrs_seconds: float | None
    target: float | None = Field(description="The agreed availability as a ratio (0..1).")
    breached: bool | None


class AvailabilityPage(BaseModel):
    """Availability per service and period."""

    basis: BasisOut | None
    items: list[AvailabilityOut]


class SlaResultOut(BaseModel):
    """Performance against one target of one policy in one period."""

    policy: str
    target: str
    period: PeriodKind
    period_start: date
    label: str
    met: int
    breached: int
    compliance: float | None
    objective: float | None
    missed: bool
    breach_alerts: int = Field(description="Breaches announced in the period (clocks running).")
    warnings: int


class SlaResultPage(BaseModel):
    """SLA results per policy, target and period."""

    basis: BasisOut | None
    items: list[SlaResultOut]


def _basis(basis: Basis | None) -> dict[str, Any] | None:
    return None if basis is None else {"tree_size": basis.tree_size, "root_hash": basis.root_hash}


@router.get("/availability", response_model=AvailabilityPage, summary="Availability per service")
async def read_availability(
    context: Annotated[RequestContext, authorize(READ)],
    runtime: Runtime,
    service: Annotated[
        list[str] | None, Query(max_length=100, description="Business service ids (default all).")
    ] = None,
    period: PeriodKind = "month",
    start: Start = None,
    count: Count = 1,
) -> dict[str, Any]:
    levels = levels_of(runtime)
    async with tenant_transaction(runtime.pool, context.tenant_id, readonly=True) as conn:
        spans = await levels.spans(conn, context.tenant_id, period, start, count)
        points = await levels.availability_in(conn, context.tenant_id, service, spans)
        basis = await levels.basis(conn, context.tenant_id)
    return {
        "basis": _basis(basis),
        "items": [
            {
                **{k: getattr(p, k) for k in AvailabilityOut.model_fields if hasattr(p, k)},
                "period": p.period.kind,
                "period_start": p.period.start,
                "label": p.period.label,
            }
            for p in points
        ],
    }


@router.get("/sla-results", response_model=SlaResultPage, summary="Performance against SLA targets")
async def read_sla_results(
    context: Annotated[RequestContext, authorize(READ)],
    runtime: Runtime,
    period: PeriodKind = "month",
    start: Start = None,
    count: Count = 1,
    policy: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    missed: bool | None = None,
) -> dict[str, Any]:
    levels = levels_of(runtime)
    async with tenant_transaction(runtime.pool, context.tenant_id, readonly=True) as conn:
        spans = await levels.spans(conn, context.tenant_id, period, start, count)
        found = await levels.sla_performance(conn, context.tenant_id, spans)
        basis = await levels.basis(conn, context.tenant_id)
    items = [
        {
            "policy": r.policy,
            "target": r.target,
            "period": r.period.kind,
            "period_start": r.period.start,
            "label": r.period.label,
            "met": r.met,
            "breached": r.breached,
            "compliance": r.compliance,
            "objective": r.objective,
            "missed": r.missed,
            "breach_alerts": alerts["breaches"],
            "warnings": alerts["warnings"],
        }
        for r, alerts in found
        if (policy is None or r.policy == policy) and (missed is None or r.missed == missed)
    ]
    return {"basis": _basis(basis), "items": items}


# --- settings ----------------------------------------------------------------------------------


class SettingsOut(BaseModel):
    """The tenant's service-level settings (version 0: the defaults, never changed)."""

    sla_objective: float
    time_zone: str
    improvement_period: PeriodKind
    version: int
    updated_at: datetime | None
    updated_by: str | None


class SettingsIn(RequestBody):
    """Body of PUT /service-level-settings: the fields to change."""

    sla_objective: float | None = Field(
        default=None, gt=0, le=1, description="Compliance share agreed where a policy names none."
    )
    time_zone: str | None = Field(
        default=None, min_length=1, max_length=64, description="IANA zone periods are cut in."
    )
    improvement_period: PeriodKind | None = Field(
        default=None, description="The period a missed target opens an action for."
    )


def _settings_view(settings: use_cases.TenantSettings) -> JSONResponse:
    out = SettingsOut.model_validate(settings, from_attributes=True).model_dump(mode="json")
    return JSONResponse(out, headers={"ETag": etag(settings.version)})


@router.get("/service-level-settings", response_model=SettingsOut, summary="The tenant's settings")
async def read_settings(
    context: Annotated[RequestContext, authorize(READ)], runtime: Runtime
) -> JSONResponse:
    async with tenant_transaction(runtime.pool, context.tenant_id, readonly=True) as conn:
        found = await use_cases.tenant_settings(
            conn, context.tenant_id, defaults_of(runtime.settings)
        )
    return _settings_view(found)


@router.put(
    "/service-level-settings", response_model=SettingsOut, summary="Change the tenant's settings"
)
async def change_settings(
    body: SettingsIn,
    context: Annotated[RequestContext, authorize(CONFIGURE)],
    runtime: Runtime,
    if_match: IfMatch = None,
) -> JSONResponse:
    expected = if_match_version(if_match, required=True)
    assert expected is not None
    values = body.model_dump(exclude_none=True)
    if "time_zone" in values:
        try:
            CalendarSpec.always_open(values["time_zone"])
        except ValueError:
            raise invalid_field("time_zone", "not an IANA time zone") from None
    saved = await use_cases.save_tenant_settings(
        runtime.pool, context, values, expected, defaults_of(runtime.settings), _now()
    )
    return _settings_view(saved)


# --- improvement actions -----------------------------------------------------------------------


class ActionOut(BaseModel):
    """An improvement action as the API returns it."""

    id: uuid.UUID
    title: str
    source: str
    service: str | None
    policy: str | None
    target: str | None
    period: str | None
    finding_id: uuid.UUID | None
    owner: str | None
    due_date: date | None
    status: ImprovementStatus
    outcome: str
    overdue: bool = Field(description="Past its due date and not closed.")
    version: int
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str


class ActionPage(BaseModel):
    """One page of improvement actions, newest first."""

    items: list[ActionOut]
    next_cursor: str | None = None


class NewAction(RequestBody):
    """Body of POST /improvement-actions."""

    title: str = Field(min_length=1, max_length=200)
    service: str | None = Field(default=None, min_length=1, max_length=200)
    owner: Owner | None = None
    due_date: date | None = None
    finding_id: uuid.UUID | None = Field(default=None, description="The audit finding it answers.")


class ActionChange(RequestBody):
    """Body of PATCH /improvement-actions/{id}: the fields to change."""

    title: str | None = Field(default=None, min_length=1, max_length=200)
    owner: Owner | None = None
    due_date: date | None = None
    status: ImprovementStatus | None = Field(
        default=None, description="open -> in_progress -> done | cancelled (done needs outcome)."
    )
    outcome: str | None = Field(default=None, max_length=20_000)


class NewFindingAction(RequestBody):
    """Body of POST /audit-findings/{id}/improvement-actions (all optional)."""

    title: str | None = Field(default=None, min_length=1, max_length=200)
    service: str | None = Field(default=None, min_length=1, max_length=200)
    owner: Owner | None = None
    due_date: date | None = None


def action_view(action: ImprovementActionRecord) -> dict[str, Any]:
    """The action as the API shows it."""
    return {
        "id": action.id,
        "title": action.title,
        "source": action.source,
        "service": action.service,
        "policy": action.policy,
        "target": action.target,
        "period": action.period,
        "finding_id": action.finding_id,
        "owner": action.owner,
        "due_date": action.due_date,
        "status": action.state,
        "outcome": action.outcome,
        "overdue": action.overdue(_now().date()),
        "version": action.version,
        "created_at": action.created_at,
        "created_by": action.created_by,
        "updated_at": action.updated_at,
        "updated_by": action.updated_by,
    }


@router.post(
    "/improvement-actions",
    status_code=201,
    response_model=ActionOut,
    summary="Open an improvement action",
)
async def create_action(
    body: NewAction,
    context: Annotated[RequestContext, authorize(MANAGE_ACTIONS)],
    runtime: Runtime,
) -> JSONResponse:
    action = await use_cases.create_action(
        runtime.pool, context, body.model_dump(exclude_none=True), _now(), _metrics(runtime)
    )
    return records.versioned(
        ActionOut, action_view(action), 201, Location=f"/improvement-actions/{action.id}"
    )


@router.get("/improvement-actions", response_model=ActionPage, summary="List improvement actions")
async def list_actions(
    context: Annotated[RequestContext, authorize(READ)],
    runtime: Runtime,
    limit: PageSize = 50,
    cursor: Cursor = None,
    status: ImprovementStatus | None = None,
    open: Annotated[
        bool | None, Query(description="Only those not closed (or only closed).")
    ] = None,
    overdue: Annotated[bool, Query(description="Only those past their due date.")] = False,
    source: Literal["sla_target_missed", "availability_target_missed", "audit_finding", "manual"]
    | None = None,
) -> dict[str, Any]:
    after = records.after_cursor(cursor)
    where = []
    if status is not None:
        where.append(Condition("r.state = {p}", status))
    if open is not None:
        test = "r.state = ANY({p}::text[])" if open else "NOT r.state = ANY({p}::text[])"
        where.append(Condition(test, list(OPEN_ACTION)))
    if overdue:
        where.append(
            Condition("r.due_date < {p} AND r.state IN ('open', 'in_progress')", _now().date())
        )
    if source is not None:
        where.append(Condition("r.source = {p}", source))
    async with tenant_transaction(runtime.pool, context.tenant_id, readonly=True) as conn:
        found = await store.ACTIONS.search(
            conn, context.tenant_id, where, after=after, limit=limit + 1
        )
    page, next_cursor = records.keyset_page(found, limit)
    return {
        "items": [ActionOut.model_validate(action_view(a)).model_dump(mode="json") for a in page],
        "next_cursor": next_cursor,
    }


async def _read_action(
    runtime: ServiceRuntime, context: RequestContext, action_id: uuid.UUID
) -> dict[str, Any]:
    return action_view(await use_cases.get_action(runtime.pool, context.tenant_id, action_id))


async def _action_history(
    runtime: ServiceRuntime, context: RequestContext, action_id: uuid.UUID
) -> list[dict[str, Any]]:
    await use_cases.get_action(runtime.pool, context.tenant_id, action_id)
    async with tenant_transaction(runtime.pool, context.tenant_id, readonly=True) as conn:
        return await store.ACTIONS.history(conn, context.tenant_id, action_id)


async def _change_action(
    runtime: ServiceRuntime,
    context: RequestContext,
    action_id: uuid.UUID,
    body: ActionChange,
    expected: int,
) -> dict[str, Any]:
    values = body.model_dump(exclude_unset=True)
    for name in ("title", "status", "outcome"):
        if name in values and values[name] is None:
            raise invalid_field(name, "cannot be null")
    action = await use_cases.update_action(
        runtime.pool, context, action_id, values, expected, _now(), _metrics(runtime)
    )
    return action_view(action)


_actions = records.RecordRoutes(router, "/improvement-actions", ident="action_id", model=ActionOut)
_actions.read(
    permission=READ, read=_read_action, name="read_improvement_action", summary="An action"
)
_actions.history(permission=READ, history=_action_history)
_actions.write(
    method="patch",
    body=ActionChange,
    permission=MANAGE_ACTIONS,
    write=_change_action,
    name="change_improvement_action",
    summary="Assign, reschedule, progress or close an action (If-Match)",
)


# --- audit findings ----------------------------------------------------------------------------


class FindingOut(BaseModel):
    """An internal-audit finding as the API returns it."""

    id: uuid.UUID
    audit: str
    clause: str
    finding: str
    severity: FindingSeverity
    owner: str | None
    corrective_action: str
    due_date: date | None
    status: FindingStatus
    version: int
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str


class FindingPage(BaseModel):
    """One page of findings, newest first."""

    items: list[FindingOut]
    next_cursor: str | None = None


class NewFinding(RequestBody):
    """Body of POST /audit-findings."""

    audit: str = Field(min_length=1, max_length=200, description="Which audit raised it.")
    clause: str = Field(min_length=1, max_length=20, pattern=r"^\d+(\.\d+)*$", examples=["8.5.1"])
    finding: str = Field(min_length=1, max_length=20_000)
    severity: FindingSeverity
    owner: Owner | None = None
    corrective_action: str = Field(default="", max_length=20_000)
    due_date: date | None = None


class FindingChange(RequestBody):
    """Body of PATCH /audit-findings/{id}: the fields to change."""

    audit: str | None = Field(default=None, min_length=1, max_length=200)
    clause: str | None = Field(default=None, min_length=1, max_length=20, pattern=r"^\d+(\.\d+)*$")
    finding: str | None = Field(default=None, min_length=1, max_length=20_000)
    severity: FindingSeverity | None = None
    owner: Owner | None = None
    corrective_action: str | None = Field(default=None, max_length=20_000)
    due_date: date | None = None
    status: FindingStatus | None = Field(
        default=None, description="open -> in_progress -> closed (closing needs corrective_action)."
    )


def finding_view(finding: AuditFindingRecord) -> dict[str, Any]:
    """The finding as the API shows it."""
    return {
        "id": finding.id,
        "audit": finding.audit,
        "clause": finding.clause,
        "finding": finding.finding,
        "severity": finding.severity,
        "owner": finding.owner,
        "corrective_action": finding.corrective_action,
        "due_date": finding.due_date,
        "status": finding.state,
        "version": finding.version,
        "created_at": finding.created_at,
        "created_by": finding.created_by,
        "updated_at": finding.updated_at,
        "updated_by": finding.updated_by,
    }


@router.post(
    "/audit-findings", status_code=201, response_model=FindingOut, summary="Record a finding"
)
async def record_finding(
    body: NewFinding,
    context: Annotated[RequestContext, authorize(MANAGE_FINDINGS)],
    runtime: Runtime,
) -> JSONResponse:
    finding = await use_cases.record_finding(runtime.pool, context, body.model_dump(), _now())
    return records.versioned(
        FindingOut, finding_view(finding), 201, Location=f"/audit-findings/{finding.id}"
    )


@router.get("/audit-findings", response_model=FindingPage, summary="List audit findings")
async def list_findings(
    context: Annotated[RequestContext, authorize(READ)],
    runtime: Runtime,
    limit: PageSize = 50,
    cursor: Cursor = None,
    status: FindingStatus | None = None,
    severity: FindingSeverity | None = None,
    clause: Annotated[str | None, Query(min_length=1, max_length=20)] = None,
) -> dict[str, Any]:
    after = records.after_cursor(cursor)
    where = []
    if status is not None:
        where.append(Condition("r.state = {p}", status))
    if severity is not None:
        where.append(Condition("r.severity = {p}", severity))
    if clause is not None:
        where.append(Condition("r.clause = {p}", clause))
    async with tenant_transaction(runtime.pool, context.tenant_id, readonly=True) as conn:
        found = await store.FINDINGS.search(
            conn, context.tenant_id, where, after=after, limit=limit + 1
        )
    page, next_cursor = records.keyset_page(found, limit)
    return {
        "items": [FindingOut.model_validate(finding_view(f)).model_dump(mode="json") for f in page],
        "next_cursor": next_cursor,
    }


async def _read_finding(
    runtime: ServiceRuntime, context: RequestContext, finding_id: uuid.UUID
) -> dict[str, Any]:
    return finding_view(await use_cases.get_finding(runtime.pool, context.tenant_id, finding_id))


async def _finding_history(
    runtime: ServiceRuntime, context: RequestContext, finding_id: uuid.UUID
) -> list[dict[str, Any]]:
    await use_cases.get_finding(runtime.pool, context.tenant_id, finding_id)
    async with tenant_transaction(runtime.pool, context.tenant_id, readonly=True) as conn:
        return await store.FINDINGS.history(conn, context.tenant_id, finding_id)


async def _change_finding(
    runtime: ServiceRuntime,
    context: RequestContext,
    finding_id: uuid.UUID,
    body: FindingChange,
    expected: int,
) -> dict[str, Any]:
    values = body.model_dump(exclude_unset=True)
    for name in ("audit", "clause", "finding", "severity", "corrective_action", "status"):
        if name in values and values[name] is None:
            raise invalid_field(name, "cannot be null")
    finding = await use_cases.update_finding(
        runtime.pool, context, finding_id, values, expected, _now()
    )
    return finding_view(finding)


_findings = records.RecordRoutes(router, "/audit-findings", ident="finding_id", model=FindingOut)
_findings.read(permission=READ, read=_read_finding, name="read_audit_finding", summary="A finding")
_findings.history(permission=READ, history=_finding_history)
_findings.write(
    method="patch",
    body=FindingChange,
    permission=MANAGE_FINDINGS,
    write=_change_finding,
    name="change_audit_finding",
    summary="Assign, progress or close a finding (If-Match)",
)


@router.post(
    "/audit-findings/{finding_id}/improvement-actions",
    status_code=201,
    response_model=ActionOut,
    summary="Open an improvement action for a finding",
)
async def action_for_finding(
    finding_id: uuid.UUID,
    body: NewFindingAction,
    context: Annotated[RequestContext, authorize(MANAGE_ACTIONS)],
    runtime: Runtime,
) -> JSONResponse:
    action = await use_cases.action_for_finding(
        runtime.pool,
        context,
        finding_id,
        body.model_dump(exclude_unset=True),
        _now(),
        _metrics(runtime),
    )
    return records.versioned(
        ActionOut, action_view(action), 201, Location=f"/improvement-actions/{action.id}"
    )
