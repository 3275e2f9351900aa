"""HTTP API of service requests (ISO/IEC 20000-1 8.6.2): thin handlers that validate, call a
use case (`application/requests.py`) and map refusals to problems.

Refusals: a move the workflow does not have is 409 naming the allowed ones (`allowed`); a
missing detail (notes to fulfil, an approval to leave `awaiting_approval`, a comment to reject)
is 422 naming the field; a decision by the requester or the submitter, or by someone the
request does not name as approver, is 403 (segregation of duties: the caller may not, whatever
the request's state); a second decision by one approver, or one on a request not awaiting
approval, is 409. Writes to a request need `If-Match` (428 without, 412 when stale).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from services.incident.adapters.requests import RequestFilter
from services.incident.application import requests
from services.incident.domain import request as domain
from services.incident.domain import workflow
from services.incident.entrypoints.common import metrics_of, versioned, workflow_problem
from shared.context import RequestContext
from shared.http.context import authorize
from shared.http.etags import IfMatch, if_match_version
from shared.http.models import RequestBody
from shared.http.pagination import (
    Cursor,
    PageSize,
    cursor_instant,
    decode_cursor,
    encode_cursor,
    invalid_cursor,
)
from shared.http.problems import Problem
from shared.service import ServiceRuntime, runtime_of

router = APIRouter(tags=["service requests"])
Runtime = Annotated[ServiceRuntime, Depends(runtime_of)]

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
    return versioned(RequestOut, body, status, **headers)


def _refusal(exc: workflow.WorkflowError) -> Problem:
    """The problem for a refused move or decision (module docstring)."""
    if isinstance(exc, domain.SelfApproval | domain.NotAnApprover):
        return Problem(
            403,
            "Forbidden",
            str(exc),
            errors=[{"in": "body", "field": "decision", "detail": str(exc)}],
        )
    if isinstance(exc, workflow.IllegalTransition | workflow.InvalidTransitionDetails):
        return workflow_problem(exc, hints=_HINTS)
    return Problem(
        409, "Conflict", str(exc), errors=[{"in": "body", "field": "decision", "detail": str(exc)}]
    )


_HINTS = {"approval": "; decide with POST /requests/{id}/approvals"}


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
    after = None
    if cursor:
        key = decode_cursor(cursor, 2)
        try:
            after = (cursor_instant(key[0]), uuid.UUID(key[1]))
        except (TypeError, ValueError):
            raise invalid_cursor() from None
    where = RequestFilter(
        states=tuple(state or ()),
        priorities=tuple(priority or ()),
        requester=requester,
        service=service,
        item=item,
    )
    page = await requests.search_requests(runtime.pool, where, context, after=after, limit=limit)
    next_cursor = None
    if page.last is not None:
        next_cursor = encode_cursor([page.last[0].isoformat(), str(page.last[1])])
    return {"items": page.items, "next_cursor": next_cursor}


@router.get("/requests/{request_id}", response_model=RequestOut, summary="Read a service request")
async def read_request(
    request_id: uuid.UUID,
    context: Annotated[RequestContext, authorize("request:read")],
    runtime: Runtime,
) -> JSONResponse:
    return _with_etag(await requests.get_request(runtime.pool, request_id, context))


@router.post(
    "/requests/{request_id}/transitions",
    response_model=RequestOut,
    summary="Move a service request to another state (If-Match required)",
    responses={
        409: {"description": "The workflow does not allow this move from the current state"}
    },
)
async def post_transition(
    request_id: uuid.UUID,
    body: Transition,
    context: Annotated[RequestContext, authorize("request:fulfil")],
    runtime: Runtime,
    if_match: IfMatch = None,
) -> JSONResponse:
    expected = if_match_version(if_match, required=True)
    try:
        view = await requests.transition_request(
            runtime.pool,
            request_id,
            body.to,
            context,
            expected_version=expected,
            notes=body.notes,
            metrics=metrics_of(runtime),
        )
    except workflow.WorkflowError as exc:
        raise _refusal(exc) from None
    return _with_etag(view)


@router.post(
    "/requests/{request_id}/approvals",
    response_model=RequestOut,
    summary="Approve or reject a service request (If-Match required; never one's own)",
    responses={409: {"description": "No decision is due, or the caller already decided"}},
)
async def post_approval(
    request_id: uuid.UUID,
    body: NewDecision,
    context: Annotated[RequestContext, authorize("request:approve")],
    runtime: Runtime,
    if_match: IfMatch = None,
) -> JSONResponse:
    expected = if_match_version(if_match, required=True)
    try:
        view = await requests.decide_request(
            runtime.pool,
            request_id,
            body.decision,
            context,
            expected_version=expected,
            comment=body.comment,
            metrics=metrics_of(runtime),
        )
    except workflow.WorkflowError as exc:
        raise _refusal(exc) from None
    return _with_etag(view)


@router.get("/requests/{request_id}/history", summary="Every version: who, when, what")
async def get_history(
    request_id: uuid.UUID,
    context: Annotated[RequestContext, authorize("request:read")],
    runtime: Runtime,
) -> list[dict[str, Any]]:
    return await requests.request_history(runtime.pool, request_id, context)


@router.get("/requests/{request_id}/sla", summary="The request's SLA clocks, as of now")
async def get_sla(
    request_id: uuid.UUID,
    context: Annotated[RequestContext, authorize("request:read")],
    runtime: Runtime,
) -> list[dict[str, Any]]:
    return await requests.request_clocks(runtime.pool, request_id, context)
