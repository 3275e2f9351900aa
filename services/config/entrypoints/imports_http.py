"""Config service HTTP API: discovery imports (streamed in, reported row by row)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.requests import ClientDisconnect

from services.config.adapters import imports as repository
from services.config.application.imports import (
    Answered,
    ImportInterrupted,
    run_import,
    start_import,
)
from services.config.application.uow import ConfigUnitOfWork
from services.config.domain.imports import OUTCOMES, Format, Outcome
from services.config.entrypoints.cis_http import SOURCE_NAME
from services.config.metrics import ConfigMetrics
from shared import idempotency
from shared.context import RequestContext
from shared.db import tenant_transaction
from shared.errors import NotFound
from shared.http.context import authorize
from shared.http.idempotency import key_error_problem
from shared.http.limits import STREAMED_UPLOAD, BodyTooLarge
from shared.http.pagination import (
    DEFAULT_PAGE_SIZE,
    Cursor,
    Page,
    PageSize,
    cursor_instant,
    cursor_int,
    decode_cursor,
    encode_cursor,
    invalid_cursor,
)
from shared.http.problems import HttpProblem
from shared.service import ServiceRuntime, runtime_of

router = APIRouter(tags=["discovery imports"])
Runtime = Annotated[ServiceRuntime, Depends(runtime_of)]

MEDIA_TYPES: dict[str, Format] = {
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/json-lines": "jsonl",
    "text/csv": "csv",
}


class ImportOut(BaseModel):
    """An import and its progress (counts grow batch by batch while it runs)."""

    id: uuid.UUID
    source: str
    format: Format
    status: Literal["running", "completed", "failed"]
    rows: int
    outcomes: dict[Outcome, int]
    bytes_read: int
    started_at: datetime
    started_by: str
    finished_at: datetime | None
    error: str | None


class ImportRowOut(BaseModel):
    """The outcome of one input row (line numbers count from 1, the CSV header included)."""

    line: int
    kind: Literal["ci", "relationship", "unknown"]
    key: str | None
    outcome: Outcome
    reason: str | None
    ci_id: uuid.UUID | None


def _out(record: dict[str, Any]) -> dict[str, Any]:
    return ImportOut.model_validate(
        {**record, "outcomes": {o: record[o] for o in OUTCOMES}}
    ).model_dump(mode="json")


def _format_of(request: Request, format_: Format | None) -> Format:
    if format_ is not None:
        return format_
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media in MEDIA_TYPES:
        return MEDIA_TYPES[media]
    raise HttpProblem(
        415,
        "Unsupported Media Type",
        "send JSON lines (application/x-ndjson) or CSV (text/csv), or name the format",
        errors=[{"in": "header", "field": "Content-Type", "detail": f"{media or 'none'}"}],
    )


async def _body(request: Request) -> AsyncIterator[bytes]:
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            yield chunk
    except ClientDisconnect:
        raise ImportInterrupted(f"the client went away after {received} bytes") from None
    except BodyTooLarge as exc:
        raise ImportInterrupted(f"the body passed the limit of {exc.limit} bytes") from exc


@router.post(
    "/imports",
    status_code=201,
    response_model=ImportOut,
    summary="Import CIs and relationships from a discovery source (streamed)",
    responses={
        409: {"description": "An import with this Idempotency-Key is still running"},
        415: {"description": "The body is neither NDJSON nor CSV"},
    },
    openapi_extra={
        **STREAMED_UPLOAD,
        "requestBody": {
            "required": True,
            "content": {
                "application/x-ndjson": {"schema": {"type": "string"}},
                "text/csv": {"schema": {"type": "string"}},
            },
        },
    },
)
async def post_import(
    request: Request,
    source: Annotated[
        str, Query(pattern=SOURCE_NAME, description="The discovery source, e.g. `vcenter`.")
    ],
    context: Annotated[RequestContext, authorize("ci:write")],
    runtime: Runtime,
    format_: Annotated[
        Format | None, Query(alias="format", description="Default: from Content-Type.")
    ] = None,
) -> JSONResponse:
    chosen = _format_of(request, format_)
    metrics = runtime.service_metrics
    assert isinstance(metrics, ConfigMetrics)
    key = request.headers.get(idempotency.HEADER)
    if key is not None:
        idempotency.check_key(key)
    try:
        run = await start_import(
            ConfigUnitOfWork(runtime.pool, context),
            source=source,
            format_=chosen,
            idempotency_key=key,
        )
    except (idempotency.KeyReused, idempotency.KeyInProgress) as refused:
        # Answered as the Idempotency-Key middleware answers its own (title, problem type).
        raise key_error_problem(refused) from None
    if isinstance(run, Answered):
        # The retry's upload was applied the first time: read to its end, and left unused.
        with contextlib.suppress(ClientDisconnect):
            async for _ in request.stream():
                pass
        return JSONResponse(
            _out(run.record),
            status_code=201,
            headers={
                "Location": f"/imports/{run.record['id']}",
                idempotency.REPLAYED_HEADER: "true",
            },
        )
    try:
        record = await run_import(
            runtime.pool, run, format_=chosen, chunks=_body(request), metrics=metrics
        )
    except ImportInterrupted as exc:
        metrics.imports.labels("failed").inc()
        if isinstance(exc.__cause__, BodyTooLarge):
            raise exc.__cause__ from None
        raise HttpProblem(400, "Bad Request", str(exc)) from None
    except Exception:
        metrics.imports.labels("failed").inc()
        raise
    metrics.imports.labels("completed").inc()
    return JSONResponse(
        _out(record), status_code=201, headers={"Location": f"/imports/{record['id']}"}
    )


@router.get("/imports", response_model=Page[ImportOut], summary="Imports, newest first")
async def list_imports(
    context: Annotated[RequestContext, authorize("ci:read")],
    runtime: Runtime,
    cursor: Cursor = None,
    limit: PageSize = DEFAULT_PAGE_SIZE,
) -> dict[str, Any]:
    before = None
    if cursor:
        started, ident = decode_cursor(cursor, 2)
        try:
            before = (cursor_instant(started), uuid.UUID(ident))
        except (TypeError, ValueError):
            raise invalid_cursor() from None
    async with tenant_transaction(runtime.pool, context.tenant_id, readonly=True) as conn:
        found = await repository.recent(conn, context.tenant_id, before=before, limit=limit + 1)
    items = [_out(r) for r in found[:limit]]
    last = found[limit - 1] if len(found) > limit else None
    next_cursor = encode_cursor([last["started_at"].isoformat(), str(last["id"])]) if last else None
    return {"items": items, "next_cursor": next_cursor}


@router.get("/imports/{import_id}", response_model=ImportOut, summary="An import and its progress")
async def read_import(
    import_id: uuid.UUID,
    context: Annotated[RequestContext, authorize("ci:read")],
    runtime: Runtime,
) -> dict[str, Any]:
    async with tenant_transaction(runtime.pool, context.tenant_id, readonly=True) as conn:
        record = await repository.get(conn, context.tenant_id, import_id)
    if record is None:
        raise NotFound("import", str(import_id))
    return _out(record)


@router.get(
    "/imports/{import_id}/rows",
    response_model=Page[ImportRowOut],
    summary="The outcome of every row of an import, in input order",
)
async def import_rows(
    import_id: uuid.UUID,
    context: Annotated[RequestContext, authorize("ci:read")],
    runtime: Runtime,
    outcome: Annotated[Outcome | None, Query(description="Only rows of this outcome.")] = None,
    cursor: Cursor = None,
    limit: PageSize = DEFAULT_PAGE_SIZE,
) -> dict[str, Any]:
    after = cursor_int(cursor)
    async with tenant_transaction(runtime.pool, context.tenant_id, readonly=True) as conn:
        if await repository.get(conn, context.tenant_id, import_id) is None:
            raise NotFound("import", str(import_id))
        found = await repository.rows(
            conn, context.tenant_id, import_id, outcome=outcome, after_line=after, limit=limit + 1
        )
    items = found[:limit]
    next_cursor = encode_cursor([items[-1]["line"]]) if len(found) > limit else None
    return {"items": items, "next_cursor": next_cursor}
