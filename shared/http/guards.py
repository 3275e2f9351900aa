"""Input every route refuses the same way, before any of its own code runs.

A NUL character (U+0000) is valid JSON and a valid percent-escape, but PostgreSQL cannot store
it in `text`: accepted, it makes a write the audit ledger cannot record (or a 500). So it is
refused with 422 naming the field, in every query parameter, path parameter and JSON body
string (keys included), for every route of every service. Streamed uploads (imports) check
their rows themselves, as they read them.

The common case costs one substring search per request part: a body is parsed here only when
its bytes hold the JSON escape for NUL or a raw NUL byte.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from urllib.parse import parse_qsl

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.http.problems import PROBLEM_BASE, problem_response
from shared.nul import NUL, REASON, nul_paths

_RAW_NUL = b"\x00"
_JSON_NUL = b"\\u0000"
_ESCAPED_NUL = b"%00"


def install_request_guards(app: FastAPI, routers: Sequence[APIRouter]) -> None:
    """Install the shared input guards (NUL refusal, Idempotency-Key) on a service's app."""
    from shared.http.idempotency import IdempotencyMiddleware, document_idempotency_key

    routes = [route for router in routers for route in router.routes]
    document_idempotency_key(routes)
    # Added first, so they run inside the body limit; NUL is checked before a key is claimed.
    app.add_middleware(IdempotencyMiddleware, routes=routes)
    app.add_middleware(NulRefusalMiddleware, routes=routes)


class NulRefusalMiddleware:
    """Answers 422 problem+json naming the field for any NUL in the path, query or JSON body."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute] = ()) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        errors = self._path_errors(scope) + _query_errors(scope.get("query_string", b""))
        if errors:
            await _refuse(scope, receive, send, errors, self.routes)
            return
        if not _is_json(scope):
            await self.app(scope, receive, send)
            return
        body, more = await read_body(scope, receive, self.routes)
        if _JSON_NUL in body or _RAW_NUL in body:
            errors = _body_errors(body)
            if errors:
                await _refuse(scope, receive, send, errors, self.routes)
                return
        await self.app(scope, replaying(body, more, receive), send)

    def _path_errors(self, scope: Scope) -> list[dict[str, str]]:
        path: str = scope.get("path", "")
        if NUL not in path:
            return []
        # Name the path parameter when a route matches; the whole path otherwise.
        for route in self.routes:
            match, child = route.matches(scope)
            if match != Match.NONE:
                params = child.get("path_params", {})
                named = [k for k, v in params.items() if isinstance(v, str) and NUL in v]
                if named:
                    return [_error("path", name) for name in named]
        return [_error("path", "path")]


def _error(where: str, field: str) -> dict[str, str]:
    item = {"in": where, "field": field, "detail": REASON}
    if where == "body":
        item["pointer"] = "#/" + field.replace(".", "/")
    return item


def _query_errors(query: bytes) -> list[dict[str, str]]:
    if _ESCAPED_NUL not in query and _RAW_NUL not in query:
        return []
    names: dict[str, None] = {}
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if NUL in name or NUL in value:
            names[name.replace(NUL, "\\u0000")] = None
    return [_error("query", name) for name in names]


def _is_json(scope: Scope) -> bool:
    if scope.get("method") in ("GET", "HEAD", "OPTIONS"):
        return False
    media = Headers(scope=scope).get("content-type", "").split(";")[0].strip().lower()
    # No content type: FastAPI may still read the body as JSON, so it is checked too.
    return media in ("", "application/json") or media.endswith("+json")


async def read_body(
    scope: Scope, receive: Receive, routes: Sequence[BaseRoute] = ()
) -> tuple[bytes, Message | None]:
    """The whole body (already bounded by the body limit), and a non-body message if one came."""
    chunks: list[bytes] = []
    try:
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks), message
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                return b"".join(chunks), None
    except Exception:
        _name_route(
            scope, routes
        )  # read before routing: the body limit's 413 still names its route
        raise


def replaying(body: bytes, other: Message | None, receive: Receive) -> Receive:
    """A `receive` that hands the app the body already read, then carries on as before."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
    if other is not None:
        pending = [other]

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


def _body_errors(body: bytes) -> list[dict[str, str]]:
    if _RAW_NUL in body:
        # JSON forbids raw control characters in strings: there is no field to name.
        return [_error("body", "body")]
    try:
        document = json.loads(body)
    except ValueError:
        return []  # not JSON: the route's own parsing answers it
    return [_error("body", path) for path in nul_paths(document)]


async def _refuse(
    scope: Scope,
    receive: Receive,
    send: Send,
    errors: list[dict[str, str]],
    routes: Sequence[BaseRoute],
) -> None:
    _name_route(scope, routes)
    fields = ", ".join(e["field"] for e in errors)
    response = problem_response(
        Request(scope),
        422,
        "Request validation failed",
        f"invalid: {fields}",
        type_=PROBLEM_BASE + "validation",
        errors=errors,
    )
    await response(scope, receive, send)


def _name_route(scope: Scope, routes: Sequence[BaseRoute]) -> None:
    """Let the request metrics carry the route template of a request answered before routing."""
    for route in routes:
        if isinstance(route, APIRoute):
            match, _ = route.matches(scope)
            if match == Match.FULL:
                scope["route"] = route
                return
