"""Idempotency-Key on every POST: a retried request gets the first response, not a twin.

One mechanism for every POST of every service, in the HTTP layer, so no route can forget it.
A POST carrying `Idempotency-Key` runs in one request transaction: the first
`tenant_transaction` the request's own code opens begins it and claims the key (for the tenant
and the caller, the token's subject), every later one joins it as a savepoint, and it commits
only once the response is known, with the response stored beside the key. So the creation and
the stored answer commit together or not at all: a crash, a 4xx or a 5xx leaves the key
unclaimed, and a retry runs afresh. A retry whose claim meets a stored answer gets that answer
(`Idempotent-Replayed: true`); a concurrent retry waits on the first one's row lock, then gets
its answer. The same key with a different request is refused (422).

Background tasks a request starts (the record-number allocator) keep their own transactions:
only the request's own task joins the request transaction.

Streamed uploads (`POST /imports`) pass through this middleware: they commit as they read, so
they cannot run in one transaction. Such a route honours the key itself through the same
mechanism without HTTP (`shared/idempotency.py`: header, key syntax, retention, the typed
errors), with the same scope (tenant and caller) and replay header: the config service records
the key with the import run (see services/config/application/imports.py), replays a completed
run's answer, refuses a retry while the run is still going (409) and lets a failed run's key go.
`key_error_problem` answers its typed errors exactly as this middleware answers its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared import idempotency as keys
from shared.db import Connection, RequestTransaction, all_tenants_transaction, request_transaction
from shared.db import set_tenant as _set_tenant
from shared.http.guards import read_body, replaying
from shared.http.problems import (
    PROBLEM_BASE,
    HttpProblem,
    database_unavailable,
    database_unavailable_response,
    problem_response,
)

HEADER = keys.HEADER
REPLAYED_HEADER = keys.REPLAYED_HEADER
DEFAULT_RETENTION = keys.DEFAULT_RETENTION
# Response headers worth replaying; the rest (date, correlation id, length) belong to the reply.
_KEPT_HEADERS = ("content-type", "location", "etag")

PARAMETER: dict[str, Any] = {
    "name": HEADER,
    "in": "header",
    "required": False,
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": 255,
        "pattern": keys.KEY_PATTERN.pattern,
    },
    "description": (
        "A unique printable string chosen by the caller; a retry with it (same caller, same"
        " request) returns the first response with `Idempotent-Replayed: true`."
    ),
}


def key_problem(key: str) -> HttpProblem | None:
    """Why a client's Idempotency-Key is not acceptable (422), or None when it is."""
    if keys.valid_key(key):
        return None
    return HttpProblem(
        422,
        "Request validation failed",
        f"invalid: {HEADER}",
        type_=PROBLEM_BASE + "validation",
        errors=[{"in": "header", "field": HEADER, "detail": keys.KEY_SYNTAX}],
    )


def key_reused() -> HttpProblem:
    """The 422 for an Idempotency-Key already used by the caller for a different request."""
    return HttpProblem(
        422,
        "Idempotency-Key reused",
        "this Idempotency-Key was already used for a different request",
        type_=PROBLEM_BASE + "idempotency-key-reused",
        errors=[{"in": "header", "field": HEADER, "detail": "reused"}],
    )


def key_error_problem(exc: keys.KeyReused | keys.KeyInProgress) -> HttpProblem:
    """The answer to a key a use case could not honour, the same as this middleware's own."""
    if isinstance(exc, keys.KeyReused):
        return key_reused()
    return HttpProblem(
        409,
        "Conflict",
        exc.detail,
        type_=PROBLEM_BASE + exc.problem,
        errors=[{"in": f.location, "field": f.field, "detail": f.detail} for f in exc.fields],
    )


def request_fingerprint(method: str, path: str, query: bytes, body: bytes) -> str:
    """A stable hash of what was asked, to refuse a key reused for a different request."""
    try:
        # The same JSON sent with other spacing or key order is the same request.
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        canonical = body
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), query, canonical):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


class Replayed(Exception):
    """The key was answered before: unwinds the request to send the stored response."""

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        super().__init__("replayed")
        self.status = status
        self.headers = headers
        self.body = body


class KeyedRequest(RequestTransaction):
    """The request transaction of one POST with an Idempotency-Key."""

    def __init__(self, key: str, fingerprint: str, state: dict[str, Any]) -> None:
        self.key = key
        self.fingerprint = fingerprint
        self.state = state  # the request's state: tenant and subject, once authenticated
        self.task = asyncio.current_task()
        self.pool: asyncpg.Pool | None = None
        self.conn: PoolConnectionProxy[Any] | None = None
        self.transaction: Any = None
        self.tenant_id = ""
        self.caller = ""
        self.committed = False

    def joins(self) -> bool:
        """Only the request's own task joins; tasks it started keep their own transactions."""
        return asyncio.current_task() is self.task

    async def connection(self, pool: asyncpg.Pool, tenant_id: str) -> Connection:
        """The request's connection; the first call begins the transaction and claims the key."""
        if self.conn is not None:
            if pool is not self.pool or tenant_id != self.tenant_id:
                raise RuntimeError("one request transaction serves one pool and one tenant")
            return self.conn
        self.pool, self.tenant_id = pool, tenant_id
        self.caller = str(self.state.get("subject") or "")
        self.conn = await pool.acquire()
        self.transaction = self.conn.transaction()
        await self.transaction.start()
        await _set_tenant(self.conn, tenant_id)
        await self._claim(self.conn)
        return self.conn

    async def _claim(self, conn: Connection) -> None:
        claimed = await conn.fetchval(
            "INSERT INTO idempotency_keys (tenant_id, caller, key, request_hash)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true",
            self.tenant_id,
            self.caller,
            self.key,
            self.fingerprint,
        )
        if claimed:
            return
        row = await conn.fetchrow(
            "SELECT request_hash, response_status, response_headers, response_bytes"
            " FROM idempotency_keys WHERE tenant_id = $1 AND caller = $2 AND key = $3",
            self.tenant_id,
            self.caller,
            self.key,
        )
        assert row is not None
        if row["request_hash"] != self.fingerprint:
            raise key_reused()
        headers = [(k.encode(), v.encode()) for k, v in row["response_headers"] or []]
        raise Replayed(row["response_status"], headers, bytes(row["response_bytes"] or b""))

    async def commit(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """Store the response with the key and commit everything the request did."""
        if self.conn is None:
            return
        kept = [[k.decode(), v.decode()] for k, v in headers if k.decode().lower() in _KEPT_HEADERS]
        await self.conn.execute(
            "UPDATE idempotency_keys SET response_status = $4, response_headers = $5,"
            " response_bytes = $6 WHERE tenant_id = $1 AND caller = $2 AND key = $3",
            self.tenant_id,
            self.caller,
            self.key,
            status,
            kept,
            body,
        )
        await self.transaction.commit()
        self.committed = True

    async def close(self) -> None:
        """Roll back whatever was not committed and give the connection back."""
        if self.conn is None or self.pool is None:
            return
        conn, self.conn = self.conn, None
        try:
            if not self.committed:
                await self.transaction.rollback()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            pass  # the connection broke: the server has dropped the transaction already
        finally:
            await self.pool.release(conn)


class IdempotencyMiddleware:
    """Runs each POST that carries an Idempotency-Key in a request transaction (see above)."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute] = ()) -> None:
        self.app = app
        self.routes = routes
        self.streamed = {
            route.path for route in routes if isinstance(route, APIRoute) and _streamed(route)
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] in self.streamed:
            await self.app(scope, receive, send)
            return
        key = Headers(scope=scope).get(HEADER)
        if key is None:
            await self.app(scope, receive, send)
            return
        invalid = key_problem(key)
        if invalid is not None:
            await problem_response(
                Request(scope),
                invalid.status,
                invalid.title,
                invalid.detail,
                type_=invalid.type,
                errors=invalid.errors,
            )(scope, receive, send)
            return
        body, other = await read_body(scope, receive, self.routes)
        fingerprint = request_fingerprint(
            "POST", scope["path"], scope.get("query_string", b""), body
        )
        keyed = KeyedRequest(key, fingerprint, scope.setdefault("state", {}))
        answer: list[Message] = []

        async def hold(message: Message) -> None:
            # Nothing reaches the client before the request transaction has committed.
            answer.append(message)

        token = request_transaction.set(keyed)
        try:
            try:
                await self.app(scope, replaying(body, other, receive), hold)
            except Replayed as replay:
                answer = _replayed(replay)
            else:
                start = answer[0] if answer else None
                if start is not None and 200 <= start["status"] < 300:
                    content = b"".join(m.get("body", b"") for m in answer[1:])
                    try:
                        await keyed.commit(start["status"], list(start.get("headers", [])), content)
                    except Exception as exc:
                        if not database_unavailable(exc):
                            raise
                        # Committed or not, the client has not heard: a retry with the same key
                        # either replays the stored answer or does the work once.
                        answer = await _messages(_unavailable(scope))
        finally:
            request_transaction.reset(token)
            await keyed.close()
        for message in answer:
            await send(message)


def _unavailable(scope: Scope) -> Response:
    return database_unavailable_response(
        Request(scope), "the database is unreachable; retry with the same Idempotency-Key"
    )


async def _messages(response: Response) -> list[Message]:
    """What a response would send, to be sent once the request transaction is settled."""
    sent: list[Message] = []

    async def nothing() -> Message:
        return {"type": "http.disconnect"}

    async def keep(message: Message) -> None:
        sent.append(message)

    await response({"type": "http"}, nothing, keep)
    return sent


def _streamed(route: BaseRoute) -> bool:
    return isinstance(route, APIRoute) and bool(
        (route.openapi_extra or {}).get("x-streamed-upload")
    )


def _replayed(replay: Replayed) -> list[Message]:
    headers = [*replay.headers, (REPLAYED_HEADER.lower().encode(), b"true")]
    headers.append((b"content-length", str(len(replay.body)).encode()))
    return [
        {"type": "http.response.start", "status": replay.status, "headers": headers},
        {"type": "http.response.body", "body": replay.body, "more_body": False},
    ]


def document_idempotency_key(routes: Sequence[BaseRoute]) -> None:
    """Declare the optional Idempotency-Key header in OpenAPI on every POST that honours it."""
    for route in routes:
        if not isinstance(route, APIRoute) or "POST" not in (route.methods or ()):
            continue
        extra = dict(route.openapi_extra or {})
        parameters = list(extra.get("parameters", []))
        if not any(p.get("name") == HEADER for p in parameters):
            parameters.append(PARAMETER)
        extra["parameters"] = parameters
        route.openapi_extra = extra


async def purge_expired(pool: asyncpg.Pool, retention: timedelta = DEFAULT_RETENTION) -> int:
    """Forget keys older than the retention period; return how many."""
    async with all_tenants_transaction(pool) as conn:
        result: str = await conn.execute(
            "DELETE FROM idempotency_keys WHERE created_at < now() - $1::interval", retention
        )
    return int(result.split()[-1])
