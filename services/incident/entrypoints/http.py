"""Incident HTTP API: thin handlers that validate, call a use case and map errors."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from services.incident.adapters import repository
from services.incident.application.handlers import (
    LogIncident,
    incident_view,
    log_new_incident,
)
from shared.db import tenant_transaction
from shared.http.context import RequestContext, authorize
from shared.http.idempotency import REPLAYED_HEADER, IdempotencyKey
from shared.http.problems import not_found
from shared.service import ServiceRuntime, runtime_of

router = APIRouter(tags=["incidents"])
Runtime = Annotated[ServiceRuntime, Depends(runtime_of)]


class NewIncident(BaseModel):
    """Body of POST /incidents."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=20_000)
    impact: int = Field(ge=1, le=3, description="1 = high (many users or a whole service), 3 = low")
    urgency: int = Field(ge=1, le=3, description="1 = high (work stopped), 3 = low")


class IncidentOut(BaseModel):
    """An incident as the API returns it."""

    id: uuid.UUID
    tenant_id: str
    title: str
    description: str
    impact: int
    urgency: int
    priority: int = Field(description="1..5 from the impact × urgency matrix")
    state: str
    version: int
    created_at: datetime
    created_by: str


@router.post("/incidents", status_code=201, response_model=IncidentOut, summary="Log an incident")
async def create_incident(
    body: NewIncident,
    context: Annotated[RequestContext, authorize("incident:create")],
    runtime: Runtime,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    created = await log_new_incident(
        runtime.pool, LogIncident(**body.model_dump()), context, idempotency_key
    )
    headers = {"Location": f"/incidents/{created.body['id']}"}
    if created.replayed:
        headers[REPLAYED_HEADER] = "true"
    body_out = IncidentOut.model_validate(created.body).model_dump(mode="json")
    return JSONResponse(body_out, status_code=201, headers=headers)


@router.get("/incidents/{incident_id}", response_model=IncidentOut, summary="Read an incident")
async def read_incident(
    incident_id: uuid.UUID,
    context: Annotated[RequestContext, authorize("incident:read")],
    runtime: Runtime,
) -> dict[str, object]:
    async with tenant_transaction(runtime.pool, context.tenant_id, readonly=True) as conn:
        incident = await repository.get(conn, context.tenant_id, incident_id)
    if incident is None:
        raise not_found("incident", str(incident_id))
    return incident_view(incident)
