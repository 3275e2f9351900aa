"""Incident HTTP API: thin handlers that validate and call a use case.

An incident is a numbered, versioned record: reading it, its history and every write to it
(If-Match, answered with the new version and its ETag) are the shared routes of
`shared/http/records.py`. Refusals are typed errors the use case and the domain raise; the one
mapping of `shared/http/problems.py` answers them (409 with `allowed` for a move the workflow
does not have, 422 naming each missing detail, 409 for a major incident closed without review).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from services.incident.adapters import repository
from services.incident.adapters.repository import IncidentFilter
from services.incident.application import sla
from services.incident.application.handlers import (
    LogIncident,
    add_work_note,
    incident_view,
    log_new_incident,
    record_major_review,
    transition_incident,
    update_incident,
)
from services.incident.domain import workflow
from services.incident.domain.incident import Incident
from services.incident.entrypoints.common import metrics_of
from shared.context import RequestContext
from shared.db import Connection, tenant_transaction
from shared.errors import NotFound
from shared.http import records
from shared.http.context import authorize
from shared.http.models import RequestBody
from shared.http.pagination import PageSize
from shared.http.types import Timestamp
from shared.service import ServiceRuntime

router = APIRouter(tags=["incidents"])
Runtime = records.Runtime

IncidentStateName = workflow.IncidentState


class NewIncident(RequestBody):
    """Body of POST /incidents."""

    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=20_000)
    impact: int = Field(ge=1, le=3, description="1 = high (many users or a whole service), 3 = low")
    urgency: int = Field(ge=1, le=3, description="1 = high (work stopped), 3 = low")
    caller: str | None = Field(default=None, max_length=200)
    category: str | None = Field(default=None, max_length=100)
    ci_id: uuid.UUID | None = Field(default=None, description="The configuration item affected.")
    services: list[str] = Field(
        default_factory=list,
        max_length=50,
        description="Business service ids affected, besides those the CI supports.",
    )
    assignment_group: str | None = Field(default=None, max_length=200)
    assignee: str | None = Field(default=None, max_length=200)
    major: bool = Field(default=False, description="Flag as a major incident (P1 is anyway).")
    major_owner: str | None = Field(default=None, max_length=200)
    parent_id: uuid.UUID | None = None


class IncidentChanges(RequestBody):
    """Body of PATCH /incidents/{id}: the fields to change (state moves via /transitions; a
    problem links its incidents via POST /problems/{id}/incidents, so both sides agree)."""

    title: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=20_000)
    caller: str | None = Field(default=None, max_length=200)
    category: str | None = Field(default=None, max_length=100)
    ci_id: uuid.UUID | None = None
    impact: int | None = Field(default=None, ge=1, le=3)
    urgency: int | None = Field(default=None, ge=1, le=3)
    assignment_group: str | None = Field(default=None, max_length=200)
    assignee: str | None = Field(default=None, max_length=200)
    major: bool | None = None
    major_owner: str | None = Field(default=None, max_length=200)
    parent_id: uuid.UUID | None = None
    suspected_change: str | None = Field(default=None, max_length=200)


class Transition(RequestBody):
    """Body of POST /incidents/{id}/transitions."""

    to: IncidentStateName
    hold_reason: str | None = Field(
        default=None, description="For on_hold: awaiting_customer, awaiting_vendor, awaiting_change"
    )
    resolution_code: str | None = Field(default=None, description="For resolved.")
    resolution_notes: str | None = Field(default=None, max_length=20_000)


class WorkNote(RequestBody):
    """Body of POST /incidents/{id}/work-notes."""

    note: str = Field(min_length=1, max_length=20_000)


class MajorReview(RequestBody):
    """Body of POST /incidents/{id}/major-review."""

    summary: str = Field(min_length=1, max_length=20_000)
    lessons: str = Field(default="", max_length=20_000)


class IncidentOut(BaseModel):
    """An incident as the API returns it."""

    id: uuid.UUID
    reference: str | None = Field(description="INC<number>, per tenant.")
    number: int | None
    tenant_id: str
    title: str
    description: str
    caller: str | None
    category: str | None
    ci_id: uuid.UUID | None
    services: list[str]
    sla_policy: str | None
    impact: int
    urgency: int
    priority: int = Field(description="1..5 from the tenant's impact × urgency matrix")
    state: str
    hold_reason: str | None
    resolution_code: str | None
    resolution_notes: str | None
    assignment_group: str | None
    assignee: str | None
    major: bool
    major_flagged: bool
    major_owner: str | None
    major_review: dict[str, Any] | None
    parent_id: uuid.UUID | None
    problem_id: uuid.UUID | None
    suspected_change: str | None
    origin: str
    workaround: str | None
    known_error_id: uuid.UUID | None
    version: int
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str
    resolved_at: datetime | None
    closed_at: datetime | None


class IncidentPage(BaseModel):
    """One page of incidents, newest first."""

    items: list[IncidentOut]
    next_cursor: str | None = None


def _with_etag(body: dict[str, Any], status: int = 200, **headers: str) -> JSONResponse:
    return records.versioned(IncidentOut, body, status, **headers)


async def _incident(
    runtime: ServiceRuntime, context: RequestContext, incident_id: uuid.UUID
) -> Incident:
    """The tenant's incident, or NotFound."""
    async with tenant_transaction(runtime.pool, context.tenant_id, readonly=True) as conn:
        incident = await repository.get(conn, context.tenant_id, incident_id)
    if incident is None:
        raise NotFound("incident", str(incident_id))
    return incident


async def _known(conn: Connection, context: RequestContext, incident_id: uuid.UUID) -> None:
    """NotFound unless the tenant has this incident."""
    if await repository.get(conn, context.tenant_id, incident_id) is None:
        raise NotFound("incident", str(incident_id))


@router.post("/incidents", status_code=201, response_model=IncidentOut, summary="Log an incident")
async def create_incident(
    body: NewIncident,
    context: Annotated[RequestContext, authorize("incident:create")],
    runtime: Runtime,
) -> JSONResponse:
    values = body.model_dump()
    values["services"] = tuple(values["services"])
    values["major_flagged"] = values.pop("major")
    created = await log_new_incident(
        runtime.pool, LogIncident(**values), context, metrics_of(runtime)
    )
    return _with_etag(created, 201, Location=f"/incidents/{created['id']}")


@router.get("/incidents", response_model=IncidentPage, summary="Search incidents")
async def list_incidents(
    context: Annotated[RequestContext, authorize("incident:read")],
    runtime: Runtime,
    limit: PageSize = 50,
    cursor: str | None = None,
    state: Annotated[list[IncidentStateName] | None, Query()] = None,
    priority: Annotated[list[Annotated[int, Field(ge=1, le=5)]] | None, Query()] = None,
    service: str | None = None,
    ci_id: uuid.UUID | None = None,
    assignee: str | None = None,
    assignment_group: str | None = None,
    breached: bool | None = None,
    major: bool | None = None,
    created_after: Timestamp | None = None,
    created_before: Timestamp | None = None,
    resolved_after: Timestamp | None = None,
    resolved_before: Timestamp | None = None,
) -> dict[str, Any]:
    after = records.after_cursor(cursor)
    where = IncidentFilter(
        states=tuple(state or ()),
        priorities=tuple(priority or ()),
        service=service,
        ci_id=ci_id,
        assignee=assignee,
        assignment_group=assignment_group,
        breached=breached,
        major=major,
        created_after=created_after,
        created_before=created_before,
        resolved_after=resolved_after,
        resolved_before=resolved_before,
    )
    async with tenant_transaction(runtime.pool, context.tenant_id, readonly=True) as conn:
        found = await repository.search(
            conn, context.tenant_id, where, after=after, limit=limit + 1
        )
    page, next_cursor = records.keyset_page(found, limit)
    return {"items": [incident_view(i) for i in page], "next_cursor": next_cursor}


async def _read(
    runtime: ServiceRuntime, context: RequestContext, incident_id: uuid.UUID
) -> dict[str, Any]:
    return incident_view(await _incident(runtime, context, incident_id))


async def _patch(
    runtime: ServiceRuntime,
    context: RequestContext,
    incident_id: uuid.UUID,
    body: IncidentChanges,
    expected: int,
) -> dict[str, Any]:
    wanted = body.model_dump(exclude_unset=True)
    if "major" in wanted:
        wanted["major_flagged"] = wanted.pop("major")
    incident = await update_incident(
        runtime.pool,
        incident_id,
        wanted,
        context,
        expected_version=expected,
        metrics=metrics_of(runtime),
    )
    return incident_view(incident)


async def _transition(
    runtime: ServiceRuntime,
    context: RequestContext,
    incident_id: uuid.UUID,
    body: Transition,
    expected: int,
) -> dict[str, Any]:
    incident = await transition_incident(
        runtime.pool,
        incident_id,
        body.to,
        context,
        expected_version=expected,
        hold_reason=body.hold_reason,
        resolution_code=body.resolution_code,
        resolution_notes=body.resolution_notes,
        metrics=metrics_of(runtime),
    )
    return incident_view(incident)


_REFUSED_MOVE = {
    409: {"description": "The workflow does not allow this move from the current state"}
}

_incidents = records.RecordRoutes(router, "/incidents", ident="incident_id", model=IncidentOut)
_incidents.read(
    permission="incident:read",
    read=_read,
    name="read_incident",
    summary="Read an incident",
)
_incidents.write(
    method="patch",
    body=IncidentChanges,
    permission="incident:update",
    write=_patch,
    name="patch_incident",
    summary="Change an incident's fields (If-Match required)",
    responses=_REFUSED_MOVE,
)
_incidents.write(
    "/transitions",
    body=Transition,
    permission="incident:update",
    write=_transition,
    name="post_transition",
    summary="Move an incident to another state (If-Match required)",
    responses=_REFUSED_MOVE,
)


@router.post("/incidents/{incident_id}/work-notes", status_code=201, summary="Add a work note")
async def post_work_note(
    incident_id: uuid.UUID,
    body: WorkNote,
    context: Annotated[RequestContext, authorize("incident:update")],
    runtime: Runtime,
) -> dict[str, Any]:
    return await add_work_note(runtime.pool, incident_id, body.note, context)


@router.get("/incidents/{incident_id}/work-notes", summary="An incident's work notes")
async def get_work_notes(
    incident_id: uuid.UUID,
    context: Annotated[RequestContext, authorize("incident:read")],
    runtime: Runtime,
) -> list[dict[str, Any]]:
    async with tenant_transaction(runtime.pool, context.tenant_id, readonly=True) as conn:
        await _known(conn, context, incident_id)
        return await repository.work_notes(conn, context.tenant_id, incident_id)


async def _history(
    runtime: ServiceRuntime, context: RequestContext, incident_id: uuid.UUID
) -> list[dict[str, Any]]:
    async with tenant_transaction(runtime.pool, context.tenant_id, readonly=True) as conn:
        await _known(conn, context, incident_id)
        return await repository.history(conn, context.tenant_id, incident_id)


_incidents.history(
    permission="incident:read",
    history=_history,
)


async def _review(
    runtime: ServiceRuntime,
    context: RequestContext,
    incident_id: uuid.UUID,
    body: MajorReview,
    expected: int,
) -> dict[str, Any]:
    incident = await record_major_review(
        runtime.pool, incident_id, body.summary, body.lessons, context, expected_version=expected
    )
    return incident_view(incident)


_incidents.write(
    "/major-review",
    body=MajorReview,
    permission="incident:update",
    write=_review,
    name="post_major_review",
    summary="Record the review of a major incident (needed before closure; If-Match required)",
    responses={409: {"description": "The incident is not a major incident"}},
)


@router.get("/incidents/{incident_id}/sla", summary="The incident's SLA clocks, as of now")
async def get_sla(
    incident_id: uuid.UUID,
    context: Annotated[RequestContext, authorize("incident:read")],
    runtime: Runtime,
) -> list[dict[str, Any]]:
    async with tenant_transaction(runtime.pool, context.tenant_id, readonly=True) as conn:
        await _known(conn, context, incident_id)
        clocks = await sla.clocks_of(conn, context.tenant_id, "incident", incident_id)
    return [c.as_json() for c in clocks]
