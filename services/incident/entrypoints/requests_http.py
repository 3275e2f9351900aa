"""HTTP API of service requests (ISO/IEC 20000-1 8.6.2): thin handlers that validate and call
a use case (`application/requests.py`); reads, history and writes are the shared routes of a
versioned record (`shared/http/records.py`).

Refusals are typed errors of the domain, answered by the one mapping of
`shared/http/problems.py`: a move the workflow does not have is 409 naming the allowed ones
(`allowed`); a missing detail (notes to fulfil, an approval to leave `awaiting_approval`, a
comment to reject) is 422 naming the field; a decision by the requester or the submitter, or by
someone the request does not name as approver, is 403 (segregation of duties: the caller may
not, whatever the request's state); a second decision by one approver, or one on a request not
awaiting approval, is 409. Writes to a request need `If-Match` (428 without, 412 when stale).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from services.incident.adapters.requests import RequestFilter
from services.incident.application import requests
from services.incident.domain import workflow
from services.incident.entrypoints.common import metrics_of
from shared.context import RequestContext
from shared.http import records
from shared.http.context import authorize
from shared.http.models import RequestBody
from shared.http.pagination import Cursor, PageSize
from shared.service import ServiceRuntime

router = APIRouter(tags=["service requests"])
Runtime = records.Runtime

RequestStateName = workflow.RequestState
Person = Annotated[str, Field(min_length=1, max_length=200)]


class NewRequest(RequestBody):
    """Body of POST /requests."""

    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=20_000)
    item: str | None = Field(
        default=None, max_length=200, description="What is requested: the catalogue item's name."
    )
    service: str | None = Field(
        default=None,
        max_length=200,
        description="The business service (its id, or its name); its SLA policy applies.",
    )
    requested_for: Person | None = Field(
        default=None, description="Who the request is for, when not the caller."
    )
    impact: int = Field(default=3, ge=1, le=3, description="1 = high, 3 = low (the default).")
    urgency: int = Field(default=3, ge=1, le=3, description="1 = high, 3 = low (the default).")
    needs_approval: bool | None = Field(
        default=None, description="Default: whether approvers are named."
    )
    approvers: list[Person] = Field(
        default_factory=list,
        max_length=20,
        description="Who must approve, all of them; none named: any one allowed approver.",
    )


class Transition(RequestBody):
    """Body of POST /requests/{id}/transitions."""

    to: RequestStateName
    notes: str | None = Field(
        default=None, max_length=20_000, description="Required for fulfilled: what was done."
    )


class NewDecision(RequestBody):
    """Body of POST /requests/{id}/approvals."""

    decision: workflow.Decision
    comment: str = Field(
        default="", max_length=20_000, description="Required to reject: the requester's reason."
    )


class ApprovalOut(BaseModel):
    """One decision on a request."""

    approver: str
    decision: str
    at: datetime
    comment: str


class RequestOut(BaseModel):
    """A service request as the API returns it."""

    id: uuid.UUID
    reference: str = Field(description="REQ<number>, per tenant.")
    number: int
    tenant_id: str
    title: str
    description: str
    requester: str = Field(description="Who the request is for.")
    item: str | None
    service: str | None
    impact: int
    urgency: int
    priority: int = Field(description="1..5 from the tenant's impact × urgency matrix")
    needs_approval: bool
    approvers: list[str]
    approvals: list[ApprovalOut]
    pending_approvers: list[str] = Field(description="Named approvers yet to decide.")
    state: str
    sla_policy: str | None
    fulfilment_notes: str | None
    version: int
    created_at: datetime
    created_by: str = Field(description="Who submitted it.")
    updated_at: datetime
    updated_by: str
    fulfilled_at: datetime | None
    closed_at: datetime | None
    closed_by: str | None


class RequestPage(BaseModel):
    """One page of requests, newest first."""

    items: list[RequestOut]
    next_cursor: str | None = None


def _with_etag(body: dict[str, Any], status: int = 200, **headers: str) -> JSONResponse:
    return records.versioned(RequestOut, body, status, **headers)


@router.post(
    "/requests",
    status_code=201,
    response_model=RequestOut,
    summary="Submit a service request",
)
async def create_request(
    body: NewRequest,
    context: Annotated[RequestContext, authorize("request:submit")],
    runtime: Runtime,
) -> JSONResponse:
    values = body.model_dump()
    values["approvers"] = tuple(values["approvers"])
    created = await requests.submit_request(
        runtime.pool, requests.SubmitRequest(**values), context, metrics_of(runtime)
    )
    return _with_etag(created, 201, Location=f"/requests/{created['id']}")


@router.get(
    "/requests",
    response_model=RequestPage,
    summary="Search service requests (a requester sees only their own)",
)
async def list_requests(
    context: Annotated[RequestContext, authorize("request:read")],
    runtime: Runtime,
    limit: PageSize = 50,
    cursor: Cursor = None,
    state: Annotated[list[RequestStateName] | None, Query()] = None,
    priority: Annotated[list[Annotated[int, Field(ge=1, le=5)]] | None, Query()] = None,
    requester: Annotated[str | None, Query(max_length=200)] = None,
    service: Annotated[str | None, Query(max_length=200)] = None,
    item: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    after = records.after_cursor(cursor)
    where = RequestFilter(
        states=tuple(state or ()),
        priorities=tuple(priority or ()),
        requester=requester,
        service=service,
        item=item,
    )
    page = await requests.search_requests(runtime.pool, where, context, after=after, limit=limit)
    return {"items": page.items, "next_cursor": records.cursor_of(page.last)}


async def _read(
    runtime: ServiceRuntime, context: RequestContext, request_id: uuid.UUID
) -> dict[str, Any]:
    return await requests.get_request(runtime.pool, request_id, context)


async def _transition(
    runtime: ServiceRuntime,
    context: RequestContext,
    request_id: uuid.UUID,
    body: Transition,
    expected: int,
) -> dict[str, Any]:
    return await requests.transition_request(
        runtime.pool,
        request_id,
        body.to,
        context,
        expected_version=expected,
        notes=body.notes,
        metrics=metrics_of(runtime),
    )


async def _decide(
    runtime: ServiceRuntime,
    context: RequestContext,
    request_id: uuid.UUID,
    body: NewDecision,
    expected: int,
) -> dict[str, Any]:
    return await requests.decide_request(
        runtime.pool,
        request_id,
        body.decision,
        context,
        expected_version=expected,
        comment=body.comment,
        metrics=metrics_of(runtime),
    )


async def _history(
    runtime: ServiceRuntime, context: RequestContext, request_id: uuid.UUID
) -> list[dict[str, Any]]:
    return await requests.request_history(runtime.pool, request_id, context)


_requests = records.RecordRoutes(router, "/requests", ident="request_id", model=RequestOut)
_requests.read(
    permission="request:read",
    read=_read,
    name="read_request",
    summary="Read a service request",
)
_requests.write(
    "/transitions",
    body=Transition,
    permission="request:fulfil",
    write=_transition,
    name="post_transition",
    summary="Move a service request to another state (If-Match required)",
    responses={
        409: {"description": "The workflow does not allow this move from the current state"}
    },
)
_requests.write(
    "/approvals",
    body=NewDecision,
    permission="request:approve",
    write=_decide,
    name="post_approval",
    summary="Approve or reject a service request (If-Match required; never one's own)",
    responses={409: {"description": "No decision is due, or the caller already decided"}},
)
_requests.history(
    permission="request:read",
    history=_history,
)


@router.get("/requests/{request_id}/sla", summary="The request's SLA clocks, as of now")
async def get_sla(
    request_id: uuid.UUID,
    context: Annotated[RequestContext, authorize("request:read")],
    runtime: Runtime,
) -> list[dict[str, Any]]:
    return await requests.request_clocks(runtime.pool, request_id, context)
