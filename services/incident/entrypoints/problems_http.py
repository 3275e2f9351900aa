"""Problem and known error HTTP API (ISO/IEC 20000-1 8.6.3): thin handlers that validate and
call a use case (`application/problems.py`); reads, history and writes are the shared routes of
a versioned record (`shared/http/records.py`). Refusals are typed errors of the domain (a
problem in the wrong state for the action is a 409 naming it), answered by the one mapping of
`shared/http/problems.py`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from services.incident.adapters.problems import ProblemFilter
from services.incident.application import problems
from services.incident.domain import workflow
from shared.context import RequestContext
from shared.http import records
from shared.http.context import authorize
from shared.http.etags import IfMatch, etag, if_match_version
from shared.http.models import RequestBody
from shared.http.pagination import Cursor, PageSize
from shared.service import ServiceRuntime

router = APIRouter(tags=["problems"])
Runtime = records.Runtime

ProblemStateName = workflow.ProblemState


class NewProblem(RequestBody):
    """Body of POST /problems."""

    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=20_000)
    ci_id: uuid.UUID | None = Field(default=None, description="The configuration item at fault.")
    service: str | None = Field(
        default=None, min_length=1, max_length=200, description="The business service affected."
    )
    incidents: list[uuid.UUID] = Field(
        default_factory=list, max_length=100, description="Incidents to link now."
    )


class ProblemTransition(RequestBody):
    """Body of POST /problems/{id}/transitions."""

    to: ProblemStateName
    root_cause: str | None = Field(
        default=None,
        max_length=20_000,
        description="For known_error, and resolved from investigating.",
    )
    workaround: str | None = Field(default=None, max_length=20_000, description="For known_error.")
    resolution_notes: str | None = Field(
        default=None, max_length=20_000, description="For resolved."
    )


class IncidentLink(RequestBody):
    """Body of POST /problems/{id}/incidents."""

    incident_id: uuid.UUID


class KnownError(RequestBody):
    """Body of POST /problems/{id}/known-error (both needed, non-blank)."""

    root_cause: str | None = Field(default=None, max_length=20_000)
    workaround: str | None = Field(default=None, max_length=20_000)


class ChangeRequest(RequestBody):
    """Body of POST /problems/{id}/change-requests."""

    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=20_000)
    ci_ids: list[uuid.UUID] = Field(
        default_factory=list,
        max_length=100,
        description="The CIs to change; default the problem's.",
    )


class ProblemOut(BaseModel):
    """A problem as the API returns it."""

    id: uuid.UUID
    reference: str = Field(description="PRB<number>, per tenant.")
    number: int
    tenant_id: str
    title: str
    description: str
    ci_id: uuid.UUID | None
    service: str | None
    origin: str = Field(description="manual, or trend (opened from recurring incidents)")
    state: str
    root_cause: str | None
    workaround: str | None
    resolution_notes: str | None
    known_error_id: uuid.UUID | None = Field(
        description="The problem's own id once a known error was published (incidents carry"
        " it); the workaround is given to new incidents while the state is known_error."
    )
    known_error_published_at: datetime | None
    incidents: list[uuid.UUID]
    change_requests: list[uuid.UUID] = Field(description="Request ids of the changes asked for.")
    changes: list[ProblemChangeOut] = Field(
        default_factory=list,
        description="The changes answering it, with their state (GET /problems/{id} only).",
    )
    version: int
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str
    resolved_at: datetime | None
    closed_at: datetime | None


class ProblemChangeOut(BaseModel):
    """A change answering the problem, as the change service last announced it."""

    change_id: uuid.UUID
    reference: str = Field(description="CHG<number>.")
    number: int
    type: str
    state: str
    outcome: str | None
    request_id: uuid.UUID | None = Field(description="The change request it answers.")


class ProblemPage(BaseModel):
    """One page of problems, newest first."""

    items: list[ProblemOut]
    next_cursor: str | None = None


class ChangeRequestOut(BaseModel):
    """The change asked for (the change service turns it into a request for change)."""

    request_id: uuid.UUID = Field(description="The change service's idempotency key.")
    problem: ProblemOut


def _out(body: dict[str, Any]) -> dict[str, Any]:
    return ProblemOut.model_validate(body).model_dump(mode="json")


def _with_etag(body: dict[str, Any], status: int = 200, **headers: str) -> JSONResponse:
    return records.versioned(ProblemOut, body, status, **headers)


_STATE_REFUSES = {409: {"description": "The problem is in a state that does not allow this"}}


@router.post(
    "/problems",
    status_code=201,
    response_model=ProblemOut,
    summary="Open a problem",
    responses={409: {"description": "An incident is closed, or linked to another open problem"}},
)
async def create_problem(
    body: NewProblem,
    context: Annotated[RequestContext, authorize("problem:create")],
    runtime: Runtime,
) -> JSONResponse:
    command = problems.NewProblem(
        title=body.title,
        description=body.description,
        ci_id=body.ci_id,
        service=body.service,
        incidents=tuple(body.incidents),
    )
    created = await problems.create_problem(runtime.pool, command, context)
    return _with_etag(created, 201, Location=f"/problems/{created['id']}")


@router.get("/problems", response_model=ProblemPage, summary="Search problems")
async def list_problems(
    context: Annotated[RequestContext, authorize("problem:read")],
    runtime: Runtime,
    limit: PageSize = 50,
    cursor: Cursor = None,
    state: Annotated[list[ProblemStateName] | None, Query()] = None,
    ci_id: uuid.UUID | None = None,
    service: str | None = None,
    origin: Literal["manual", "trend"] | None = None,
) -> dict[str, Any]:
    after = records.after_cursor(cursor)
    where = ProblemFilter(states=tuple(state or ()), ci_id=ci_id, service=service, origin=origin)
    found = await problems.search_problems(
        runtime.pool, context.tenant_id, where, after=after, limit=limit + 1
    )
    page, next_cursor = records.keyset_page(found, limit)
    return {
        "items": [_out(problems.problem_view(p)) for p in page],
        "next_cursor": next_cursor,
    }


async def _read(
    runtime: ServiceRuntime, context: RequestContext, problem_id: uuid.UUID
) -> dict[str, Any]:
    problem = await problems.get_problem(runtime.pool, problem_id, context.tenant_id)
    view = problems.problem_view(problem)
    view["changes"] = await problems.changes_of_problem(runtime.pool, problem_id, context.tenant_id)
    return view


async def _transition(
    runtime: ServiceRuntime,
    context: RequestContext,
    problem_id: uuid.UUID,
    body: ProblemTransition,
    expected: int,
) -> dict[str, Any]:
    problem = await problems.transition_problem(
        runtime.pool,
        problem_id,
        body.to,
        context,
        expected_version=expected,
        root_cause=body.root_cause,
        workaround=body.workaround,
        resolution_notes=body.resolution_notes,
    )
    return problems.problem_view(problem)


async def _link(
    runtime: ServiceRuntime,
    context: RequestContext,
    problem_id: uuid.UUID,
    body: IncidentLink,
    expected: int,
) -> dict[str, Any]:
    problem = await problems.link_incident(
        runtime.pool, problem_id, body.incident_id, context, expected_version=expected
    )
    return problems.problem_view(problem)


async def _publish(
    runtime: ServiceRuntime,
    context: RequestContext,
    problem_id: uuid.UUID,
    body: KnownError,
    expected: int,
) -> dict[str, Any]:
    problem = await problems.publish_known_error(
        runtime.pool,
        problem_id,
        context,
        root_cause=body.root_cause,
        workaround=body.workaround,
        expected_version=expected,
    )
    return problems.problem_view(problem)


_problems = records.RecordRoutes(router, "/problems", ident="problem_id", model=ProblemOut)
_problems.read(
    permission="problem:read",
    read=_read,
    name="read_problem",
    summary="Read a problem",
)
_problems.write(
    "/transitions",
    body=ProblemTransition,
    permission="problem:manage",
    write=_transition,
    name="post_transition",
    summary="Move a problem to another state (If-Match required)",
    responses={
        409: {"description": "The workflow does not allow this move from the current state"}
    },
)
_problems.write(
    "/incidents",
    body=IncidentLink,
    permission="problem:create",
    write=_link,
    name="post_incident_link",
    summary="Link an incident to the problem (If-Match required)",
    responses={
        409: {
            "description": "The problem or the incident is in a state that does not allow it,"
            " or the incident is linked to another open problem"
        }
    },
)
_problems.write(
    "/known-error",
    body=KnownError,
    permission="problem:manage",
    write=_publish,
    name="post_known_error",
    summary="Publish (or revise) the root cause and workaround as a known error (If-Match)",
    responses=_STATE_REFUSES,
)


@router.post(
    "/problems/{problem_id}/change-requests",
    status_code=202,
    response_model=ChangeRequestOut,
    summary="Ask the change service for a change (If-Match required)",
    responses={409: {"description": "The problem is in a state that does not allow this"}},
)
async def post_change_request(
    problem_id: uuid.UUID,
    body: ChangeRequest,
    context: Annotated[RequestContext, authorize("problem:manage")],
    runtime: Runtime,
    if_match: IfMatch = None,
) -> JSONResponse:
    expected = if_match_version(if_match, required=True)
    requested = await problems.request_change(
        runtime.pool,
        problem_id,
        context,
        title=body.title,
        description=body.description,
        ci_ids=tuple(body.ci_ids),
        expected_version=expected,
    )
    body_out = {
        "request_id": str(requested.request_id),
        "problem": _out(problems.problem_view(requested.problem)),
    }
    return JSONResponse(
        body_out, status_code=202, headers={"ETag": etag(requested.problem.version)}
    )


async def _history(
    runtime: ServiceRuntime, context: RequestContext, problem_id: uuid.UUID
) -> list[dict[str, Any]]:
    return await problems.problem_history(runtime.pool, problem_id, context.tenant_id)


_problems.history(
    permission="problem:read",
    history=_history,
)
