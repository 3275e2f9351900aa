"""Config service HTTP API: service catalogue (calendars, SLA policies, business services)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from services.config.adapters import catalogue as repository
from services.config.application.catalogue import (
    DefineCalendar,
    DefinePolicy,
    calendar_out,
    define_calendar,
    define_policy,
    policy_out,
)
from services.config.application.uow import ConfigUnitOfWork
from services.config.domain import classes
from services.config.domain.catalogue import (
    DEFAULT_PAUSE_ON,
    DEFAULT_WARNING_THRESHOLD,
    MAX_SERVICES,
    PAUSE_REASONS,
    SlaPolicyDefinition,
    Target,
    catalogue_entry,
)
from shared.calendars import CalendarSpec
from shared.context import RequestContext
from shared.db import tenant_transaction
from shared.errors import NotFound
from shared.events.catalogue import CiStatus
from shared.http.context import authorize
from shared.http.etags import IfMatch, etag, if_match_version
from shared.http.models import RequestBody
from shared.http.openapi import IF_MATCH_OPTIONAL
from shared.http.pagination import (
    DEFAULT_PAGE_SIZE,
    Cursor,
    Page,
    PageSize,
    cursor_int,
    decode_cursor,
    invalid_cursor,
    page_of,
)
from shared.service import ServiceRuntime, runtime_of

router = APIRouter(tags=["service catalogue"])
Runtime = Annotated[ServiceRuntime, Depends(runtime_of)]

Name = Annotated[str, Path(pattern=classes.CLASS_NAME.pattern, description="e.g. gold_24x7")]


def _written(body: dict[str, Any], location: str) -> JSONResponse:
    """201 for version 1, 200 for a redefinition, with its ETag and Location."""
    return JSONResponse(
        body,
        status_code=201 if body["version"] == 1 else 200,
        headers={"ETag": etag(body["version"]), "Location": location},
    )


# --- calendars ---------------------------------------------------------------------------------


class CalendarDefinition(RequestBody):
    """Body of PUT /calendars/{name}."""

    description: str = Field(default="", max_length=2000)
    calendar: CalendarSpec


class CalendarOut(BaseModel):
    """A business-hours calendar, shared by SLA policies."""

    name: str
    description: str
    calendar: CalendarSpec
    version: int
    updated_at: datetime
    updated_by: str


class CalendarVersionOut(BaseModel):
    """One version of a calendar: who defined what, when."""

    version: int
    at: datetime
    actor: str
    definition: dict[str, Any] = Field(description="{description, calendar} as defined.")


def _calendar_json(row: dict[str, Any]) -> dict[str, Any]:
    return CalendarOut.model_validate(calendar_out(row)).model_dump(mode="json")


@router.get("/calendars", response_model=list[CalendarOut], summary="The tenant's calendars")
async def list_calendars(
    context: Annotated[RequestContext, authorize("ci:read")], runtime: Runtime
) -> list[dict[str, Any]]:
    async with tenant_transaction(runtime.pool, context.tenant_id, readonly=True) as conn:
        rows = await repository.calendars(conn, context.tenant_id)
    return [_calendar_json(r) for r in rows]


@router.get("/calendars/{name}", response_model=CalendarOut, summary="A calendar (ETag: version)")
async def read_calendar(
    name: Name, context: Annotated[RequestContext, authorize("ci:read")], runtime: Runtime
) -> JSONResponse:
    async with tenant_transaction(runtime.pool, context.tenant_id, readonly=True) as conn:
        row = await repository.calendar(conn, context.tenant_id, name)
    if row is None:
        raise NotFound("calendar", name)
    body = _calendar_json(row)
    return JSONResponse(body, headers={"ETag": etag(body["version"])})


@router.put(
    "/calendars/{name}",
    response_model=CalendarOut,
    summary="Define (201) or redefine (200) a calendar; its SLA policies are republished",
    responses={201: {"model": CalendarOut, "description": "Defined: its first version"}},
    openapi_extra=IF_MATCH_OPTIONAL,
)
async def put_calendar(
    name: Name,
    body: CalendarDefinition,
    context: Annotated[RequestContext, authorize("catalogue:define")],
    runtime: Runtime,
    if_match: IfMatch = None,
) -> JSONResponse:
    saved = await define_calendar(
        ConfigUnitOfWork(runtime.pool, context),
        DefineCalendar(
            name, body.description, body.calendar, if_match_version(if_match, required=False)
        ),
    )
    return _written(CalendarOut.model_validate(saved).model_dump(mode="json"), f"/calendars/{name}")


@router.get(
    "/calendars/{name}/history",
    response_model=Page[CalendarVersionOut],
    summary="Every version of a calendar",
)
async def read_calendar_history(
    name: Name,
    context: Annotated[RequestContext, authorize("ci:read")],
    runtime: Runtime,
    cursor: Cursor = None,
    limit: PageSize = DEFAULT_PAGE_SIZE,
) -> Page[dict[str, Any]]:
    after = cursor_int(cursor)
    async with tenant_transaction(runtime.pool, context.tenant_id, readonly=True) as conn:
        rows = await repository.calendar_history(
            conn, context.tenant_id, name, after=after, limit=limit + 1
        )
        if not rows and await repository.calendar(conn, context.tenant_id, name) is None:
            raise NotFound("calendar", name)
    return page_of(rows, limit, key=lambda r: [r["version"]])


# --- SLA policies ------------------------------------------------------------------------------


class TargetIn(RequestBody):
    """Targets of one priority, in business minutes on the policy's calendar."""

    response_minutes: int = Field(description="Time to first response; at most resolution.")
    resolution_minutes: int = Field(description="Time to resolution.")


class SlaPolicyIn(RequestBody):
    """Body of PUT /sla-policies/{name}."""

    description: str = Field(default="", max_length=2000)
    calendar: str = Field(max_length=63, description="Name of one of the tenant's calendars.")
    targets: dict[str, TargetIn] = Field(
        description="Exactly P1 to P5.",
        examples=[{"P1": {"response_minutes": 15, "resolution_minutes": 240}}],
    )
    pause_on: list[str] = Field(
        default=list(DEFAULT_PAUSE_ON),
        max_length=len(PAUSE_REASONS),
        description=f"On-hold reasons that pause the clocks: {', '.join(PAUSE_REASONS)}.",
    )
    warning_threshold: float = Field(
        default=DEFAULT_WARNING_THRESHOLD,
        description="Share of a target after which a warning is raised (0 < x < 1).",
    )
    services: list[uuid.UUID] = Field(
        default_factory=list,
        max_length=MAX_SERVICES,
        description="Business service CI ids the policy covers (each by one policy at most).",
    )
    default: bool = Field(
        default=False, description="The tenant's policy for work that names no covered service."
    )

    def definition(self) -> SlaPolicyDefinition:
        """The domain's view of the body."""
        return SlaPolicyDefinition(
            description=self.description,
            calendar=self.calendar,
            targets={
                p: Target(t.response_minutes, t.resolution_minutes) for p, t in self.targets.items()
            },
            pause_on=tuple(self.pause_on),
            warning_threshold=self.warning_threshold,
            services=tuple(self.services),
            default=self.default,
        )


class TargetOut(BaseModel):
    """Targets of one priority, in business minutes."""

    response_minutes: int
    resolution_minutes: int


class SlaPolicyOut(BaseModel):
    """An SLA policy: targets per priority on a calendar, the business services it covers."""

    name: str
    description: str
    calendar: str
    targets: dict[str, TargetOut]
    pause_on: list[str]
    warning_threshold: float
    services: list[uuid.UUID]
    default: bool
    version: int
    updated_at: datetime
    updated_by: str


class SlaPolicyVersionOut(BaseModel):
    """One version of a policy: who, when, why, the definition and the calendar it used."""

    version: int
    at: datetime
    actor: str
    cause: str = Field(description="`defined`, or `calendar_redefined` when republished.")
    definition: dict[str, Any]
    calendar_version: int
    calendar: dict[str, Any]


def _policy_json(row: dict[str, Any]) -> dict[str, Any]:
    return SlaPolicyOut.model_validate(policy_out(row)).model_dump(mode="json")


@router.get("/sla-policies", response_model=list[SlaPolicyOut], summary="The tenant's SLA policies")
async def list_policies(
    context: Annotated[RequestContext, authorize("ci:read")], runtime: Runtime
) -> list[dict[str, Any]]:
    async with tenant_transaction(runtime.pool, context.tenant_id, readonly=True) as conn:
        rows = await repository.policies(conn, context.tenant_id)
    return [_policy_json(r) for r in rows]


@router.get(
    "/sla-policies/{name}", response_model=SlaPolicyOut, summary="An SLA policy (ETag: version)"
)
async def read_policy(
    name: Name, context: Annotated[RequestContext, authorize("ci:read")], runtime: Runtime
) -> JSONResponse:
    async with tenant_transaction(runtime.pool, context.tenant_id, readonly=True) as conn:
        row = await repository.policy(conn, context.tenant_id, name)
    if row is None:
        raise NotFound("SLA policy", name)
    body = _policy_json(row)
    return JSONResponse(body, headers={"ETag": etag(body["version"])})


@router.put(
    "/sla-policies/{name}",
    response_model=SlaPolicyOut,
    summary="Define (201) or redefine (200) an SLA policy",
    responses={
        201: {"model": SlaPolicyOut, "description": "Defined: its first version"},
        409: {"description": "Another policy is the default, or covers one of these services"},
    },
    openapi_extra=IF_MATCH_OPTIONAL,
)
async def put_policy(
    name: Name,
    body: SlaPolicyIn,
    context: Annotated[RequestContext, authorize("catalogue:define")],
    runtime: Runtime,
    if_match: IfMatch = None,
) -> JSONResponse:
    saved = await define_policy(
        ConfigUnitOfWork(runtime.pool, context),
        DefinePolicy(name, body.definition(), if_match_version(if_match, required=False)),
    )
    out = SlaPolicyOut.model_validate(saved).model_dump(mode="json")
    return _written(out, f"/sla-policies/{name}")


@router.get(
    "/sla-policies/{name}/history",
    response_model=Page[SlaPolicyVersionOut],
    summary="Every version of an SLA policy, with the calendar each used",
)
async def read_policy_history(
    name: Name,
    context: Annotated[RequestContext, authorize("ci:read")],
    runtime: Runtime,
    cursor: Cursor = None,
    limit: PageSize = DEFAULT_PAGE_SIZE,
) -> Page[dict[str, Any]]:
    after = cursor_int(cursor)
    async with tenant_transaction(runtime.pool, context.tenant_id, readonly=True) as conn:
        rows = await repository.policy_history(
            conn, context.tenant_id, name, after=after, limit=limit + 1
        )
        if not rows and await repository.policy(conn, context.tenant_id, name) is None:
            raise NotFound("SLA policy", name)
    return page_of(rows, limit, key=lambda r: [r["version"]])


# --- business services -------------------------------------------------------------------------


class BusinessServiceOut(BaseModel):
    """A business service's catalogue entry."""

    id: uuid.UUID
    name: str
    status: CiStatus
    criticality: int
    owner: str | None
    customer: str | None
    availability_target: float | None = Field(description="Agreed availability in percent.")
    sla_policy: str | None = Field(description="The SLA policy that covers it, if one does.")


def _service_position(cursor: str | None) -> tuple[str, uuid.UUID] | None:
    if not cursor:
        return None
    name, ident = decode_cursor(cursor, 2)
    try:
        return str(name), uuid.UUID(str(ident))
    except ValueError:
        raise invalid_cursor() from None


@router.get(
    "/business-services",
    response_model=Page[BusinessServiceOut],
    summary="The service catalogue: business services by name, with owner, customer and SLA",
)
async def list_business_services(
    context: Annotated[RequestContext, authorize("ci:read")],
    runtime: Runtime,
    cursor: Cursor = None,
    limit: PageSize = DEFAULT_PAGE_SIZE,
    include_retired: Annotated[bool, Query(description="List retired services too.")] = False,
) -> Page[dict[str, Any]]:
    after = _service_position(cursor)
    async with tenant_transaction(runtime.pool, context.tenant_id, readonly=True) as conn:
        rows = await repository.business_services(
            conn, context.tenant_id, after=after, include_retired=include_retired, limit=limit + 1
        )
    entries = [catalogue_entry(ci, policy) for ci, policy in rows]
    return page_of(entries, limit, key=lambda e: [e["name"], e["id"]])


@router.get(
    "/business-services/{ci_id}",
    response_model=BusinessServiceOut,
    summary="A business service's catalogue entry",
)
async def read_business_service(
    ci_id: uuid.UUID,
    context: Annotated[RequestContext, authorize("ci:read")],
    runtime: Runtime,
) -> dict[str, Any]:
    async with tenant_transaction(runtime.pool, context.tenant_id, readonly=True) as conn:
        found = await repository.business_service(conn, context.tenant_id, ci_id)
    if found is None:
        raise NotFound("business service", str(ci_id))
    return catalogue_entry(*found)
