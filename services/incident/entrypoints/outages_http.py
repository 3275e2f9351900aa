"""Outage records over HTTP: record (`POST /outages`, or on a major incident with
`POST /incidents/{id}/outages`), change with If-Match (`PATCH /outages/{id}`), read and list.
Refusals are the typed errors of the use case (`application/outages.py`)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from services.incident.adapters.outages import OutageFilter
from services.incident.application import outages as use_cases
from services.incident.application.outages import RecordOutage, outage_view
from services.incident.entrypoints.common import metrics_of
from shared.context import RequestContext
from shared.http import records
from shared.http.context import authorize
from shared.http.models import RequestBody
from shared.http.pagination import PageSize
from shared.http.types import Timestamp
from shared.service import ServiceRuntime

router = APIRouter(tags=["outages"])
Runtime = records.Runtime
Kind = Literal["outage", "degradation"]
ServiceName = Annotated[str, Field(min_length=1, max_length=200)]


class NewOutage(RequestBody):
    """Body of POST /outages."""

    services: list[ServiceName] = Field(
        min_length=1, max_length=50, description="Business services (ids or names) affected."
    )
    kind: Kind = Field(description="outage: unavailable; degradation: available, impaired.")
    start: Timestamp
    end: Timestamp | None = Field(default=None, description="None while it lasts.")
    incident_id: uuid.UUID | None = Field(
        default=None, description="The major incident it is marked on."
    )
    summary: str = Field(default="", max_length=2000)


class IncidentOutage(RequestBody):
    """Body of POST /incidents/{id}/outages (the incident is the path's)."""

    services: list[ServiceName] = Field(min_length=1, max_length=50)
    kind: Kind = "outage"
    start: Timestamp
    end: Timestamp | None = None
    summary: str = Field(default="", max_length=2000)


class OutageChanges(RequestBody):
    """Body of PATCH /outages/{id}: what to change; `withdrawn: true` with a `reason` withdraws
    the record (recorded in error: it no longer counts)."""

    start: Timestamp | None = None
    end: Timestamp | None = None
    kind: Kind | None = None
    summary: str | None = Field(default=None, max_length=2000)
    withdrawn: bool | None = None
    reason: str | None = Field(default=None, max_length=2000)


class OutageOut(BaseModel):
    """An outage as the API returns it."""

    id: uuid.UUID
    services: list[str]
    kind: Kind
    start: datetime
    end: datetime | None
    incident_id: uuid.UUID | None
    summary: str
    withdrawn: bool
    withdrawn_reason: str
    version: int
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str


class OutagePage(BaseModel):
    """One page of outages, latest start first."""

    items: list[OutageOut]
    next_cursor: str | None = None


def _created(outage: dict[str, Any]) -> JSONResponse:
    return records.versioned(OutageOut, outage, 201, Location=f"/outages/{outage['id']}")


@router.post(
    "/outages",
    status_code=201,
    response_model=OutageOut,
    summary="Record an outage or degradation of business services",
)
async def create_outage(
    body: NewOutage,
    context: Annotated[RequestContext, authorize("outage:record")],
    runtime: Runtime,
) -> JSONResponse:
    command = RecordOutage(
        services=tuple(body.services),
        kind=body.kind,
        start=body.start,
        end=body.end,
        incident_id=body.incident_id,
        summary=body.summary,
    )
    outage = await use_cases.record_outage(
        runtime.pool, command, context, metrics=metrics_of(runtime)
    )
    return _created(outage_view(outage))


@router.post(
    "/incidents/{incident_id}/outages",
    status_code=201,
    response_model=OutageOut,
    summary="Mark an outage on a major incident",
    responses={409: {"description": "The incident is not a major incident"}},
)
async def create_incident_outage(
    incident_id: uuid.UUID,
    body: IncidentOutage,
    context: Annotated[RequestContext, authorize("outage:record")],
    runtime: Runtime,
) -> JSONResponse:
    command = RecordOutage(
        services=tuple(body.services),
        kind=body.kind,
        start=body.start,
        end=body.end,
        incident_id=incident_id,
        summary=body.summary,
    )
    outage = await use_cases.record_outage(
        runtime.pool, command, context, on_incident=True, metrics=metrics_of(runtime)
    )
    return _created(outage_view(outage))


@router.get("/outages", response_model=OutagePage, summary="Outages, latest start first")
async def list_outages(
    context: Annotated[RequestContext, authorize("outage:read")],
    runtime: Runtime,
    limit: PageSize = 50,
    cursor: str | None = None,
    service: str | None = None,
    kind: Kind | None = None,
    incident_id: uuid.UUID | None = None,
    open: bool | None = None,
    withdrawn: bool | None = None,
    started_after: Timestamp | None = None,
    started_before: Timestamp | None = None,
) -> dict[str, Any]:
    after = records.after_cursor(cursor)
    where = OutageFilter(
        service=service,
        kind=kind,
        incident_id=incident_id,
        open=open,
        withdrawn=withdrawn,
        started_after=started_after,
        started_before=started_before,
    )
    found = await use_cases.list_outages(runtime.pool, context, where, after=after, limit=limit + 1)
    page = found[:limit]
    last = (page[-1].start, page[-1].id) if len(found) > limit else None
    return {"items": [outage_view(o) for o in page], "next_cursor": records.cursor_of(last)}


async def _read(
    runtime: ServiceRuntime, context: RequestContext, outage_id: uuid.UUID
) -> dict[str, Any]:
    return outage_view(await use_cases.read_outage(runtime.pool, context, outage_id))


async def _patch(
    runtime: ServiceRuntime,
    context: RequestContext,
    outage_id: uuid.UUID,
    body: OutageChanges,
    expected: int,
) -> dict[str, Any]:
    wanted = body.model_dump(exclude_unset=True)
    outage = await use_cases.update_outage(
        runtime.pool, outage_id, wanted, context, expected_version=expected
    )
    return outage_view(outage)


_outages = records.RecordRoutes(router, "/outages", ident="outage_id", model=OutageOut)
_outages.read(permission="outage:read", read=_read, name="read_outage", summary="Read an outage")
_outages.write(
    method="patch",
    body=OutageChanges,
    permission="outage:record",
    write=_patch,
    name="patch_outage",
    summary="Set an outage's end, correct its times, or withdraw it (If-Match required)",
    responses={409: {"description": "The outage was withdrawn: it takes no more changes"}},
)
