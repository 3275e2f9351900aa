"""Request limits refused before the app reads the request, each as problem+json.

Body size: a declared `Content-Length` over the limit is refused (413) before the app runs. A
body of unknown length (chunked) is counted as the app reads it; the read that passes the limit
fails, nothing more is read, and whatever the app would have answered is replaced by the 413.

JSON nesting: a JSON body nested deeper than the limit is refused (422) when its last byte
arrives, before it is parsed. The check is a byte count per chunk; only a body with more
brackets than the limit is measured exactly (see `json_nesting_exceeds`).

Headers the app reads one value of (Authorization, If-Match, ...) sent twice, or a
`Content-Length` that is not a number, are refused (400) naming the header: Starlette would
silently take the first value, and a proxy in front may have taken the other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.http.problems import PROBLEM_BASE, problem_response

# `openapi_extra` of a route that streams a large upload (an import): its body may be as large as
# `upload_bytes()` instead of the general limit. Only routes with a fixed path can be marked.
STREAMED_UPLOAD: dict[str, object] = {"x-streamed-upload": True}

# Headers of which the app reads one value: a second one is refused, not ignored.
SINGLETON_HEADERS = {
    name.lower().encode(): name
    for name in (
        "Authorization",
        "Content-Length",
        "Content-Type",
        "Idempotency-Key",
        "If-Match",
        "X-Correlation-Id",
        "X-Tenant-Id",
    )
}

# For the exact nesting check: `{}` counted as `[]`, every other byte dropped.
_SQUARE = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


class BodyTooLarge(Exception):
    """Raised by `receive` once the request body has passed the limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body larger than {limit} bytes")
        self.limit = limit


class JsonTooDeep(Exception):
    """Raised by `receive` when a complete JSON body nests deeper than the limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"JSON nested deeper than {limit} levels")
        self.limit = limit


def json_nesting_exceeds(body: bytes, limit: int) -> bool:
    """Whether a JSON text nests arrays and objects more than `limit` deep (byte operations in C,
    no parsing: strings are cut out, then innermost bracket pairs removed once per level)."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    # After removing escaped backslashes, then escaped quotes, every quote delimits a string.
    unescaped = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    structure = b"".join(unescaped.split(b'"')[::2]).translate(_SQUARE, _NOT_BRACKETS)
    for _ in range(limit):
        inner_removed = structure.replace(b"[]", b"")
        if len(inner_removed) == len(structure):
            break
        structure = inner_removed
    if b"[]" in structure:
        return True  # a pair still enclosed after `limit` levels were removed
    # Unbalanced (invalid JSON, left to the parser), unless it opens more levels than allowed:
    # a parser would descend into them before noticing.
    return structure.count(b"[") > limit


class RequestLimitsMiddleware:
    """Refuses, as problem+json, request bodies larger than `max_bytes()` (413), JSON bodies
    nested deeper than `max_json_depth()` (422) and repeated singleton headers (400).

    `routes` name the route of a request refused before routing, for its metrics.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: Callable[[], int],
        routes: Sequence[BaseRoute] = (),
        upload_bytes: Callable[[], int] | None = None,
        max_json_depth: Callable[[], int] | None = None,
    ) -> None:
        self.app = app
        # Callables, so the limits come from the runtime's settings when a request arrives.
        self.max_bytes = max_bytes
        self.upload_bytes = upload_bytes or max_bytes
        self.max_json_depth = max_json_depth
        self.routes = routes
        self.uploads = {
            (method, route.path)
            for route in routes
            if isinstance(route, APIRoute) and (route.openapi_extra or {}).get("x-streamed-upload")
            for method in route.methods or ()
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared: int | None = None
        is_json = False
        seen: set[bytes] = set()
        for name, value in scope["headers"]:
            if name not in SINGLETON_HEADERS:
                continue
            if name in seen:
                await self._refuse(scope, receive, send, _repeated(scope, SINGLETON_HEADERS[name]))
                return
            seen.add(name)
            if name == b"content-length":
                if not value.isdigit():
                    await self._refuse(scope, receive, send, _bad_content_length(scope))
                    return
                declared = int(value)
            elif name == b"content-type":
                media_type = value.partition(b";")[0].strip().lower()
                is_json = media_type == b"application/json" or media_type.endswith(b"+json")

        upload = (scope["method"], scope["path"]) in self.uploads
        limit = self.upload_bytes() if upload else self.max_bytes()
        if declared is not None and declared > limit:
            await self._refuse(scope, receive, send, _too_large(scope, limit))
            return
        max_depth = self.max_json_depth() if is_json and self.max_json_depth else 0

        received = 0
        brackets = 0
        chunks: list[bytes] = []
        refusal: Response | None = None
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received, brackets, refusal
            if refusal is not None:
                raise BodyTooLarge(limit)
            message = await receive()
            if message["type"] != "http.request":
                return message
            body: bytes = message.get("body", b"")
            received += len(body)
            if received > limit:
                refusal = _too_large(scope, limit)
                raise BodyTooLarge(limit)
            if max_depth:
                chunks.append(body)
                brackets += body.count(b"[") + body.count(b"{")
                # Fewer brackets than the limit cannot nest deeper: most bodies stop here.
                if (
                    not message.get("more_body", False)
                    and brackets > max_depth
                    and json_nesting_exceeds(b"".join(chunks), max_depth)
                ):
                    refusal = _too_deep(scope, max_depth)
                    raise JsonTooDeep(max_depth)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if refusal is not None:
                # The app's answer to a body it could not read (400, 500...) is replaced below.
                return
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if refusal is None or response_started:
                raise
        if refusal is not None:
            if response_started:
                # Too late for a refusal: end the exchange so the client sees an incomplete one.
                raise BodyTooLarge(limit)
            await refusal(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, response: Response) -> None:
        _match_route(scope, self.routes)
        await response(scope, receive, send)


def _match_route(scope: Scope, routes: Sequence[BaseRoute]) -> None:
    """Name the route a refused request was for, so its metrics carry the route template."""
    for route in routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            scope["route"] = route
            return


def _too_large(scope: Scope, limit: int) -> Response:
    return problem_response(
        Request(scope),
        413,
        "Content Too Large",
        f"the request body exceeds the limit of {limit} bytes",
        type_=PROBLEM_BASE + "body-too-large",
        errors=[{"in": "body", "field": "body", "detail": f"larger than {limit} bytes"}],
        # The rest of the body is never read: the connection cannot carry another request.
        headers={"Connection": "close"},
        extensions={"max_body_bytes": limit},
    )


def _too_deep(scope: Scope, limit: int) -> Response:
    return problem_response(
        Request(scope),
        422,
        "Request validation failed",
        f"invalid: body (JSON nested deeper than {limit} levels)",
        type_=PROBLEM_BASE + "validation",
        errors=[
            {
                "in": "body",
                "field": "body",
                "pointer": "#/",
                "detail": f"nested deeper than {limit} levels",
            }
        ],
        extensions={"max_json_depth": limit},
    )


def _repeated(scope: Scope, header: str) -> Response:
    return problem_response(
        Request(scope),
        400,
        "Bad Request",
        f"{header} must be sent once",
        type_=PROBLEM_BASE + "malformed-request",
        errors=[{"in": "header", "field": header, "detail": "sent more than once"}],
    )


def _bad_content_length(scope: Scope) -> Response:
    return problem_response(
        Request(scope),
        400,
        "Bad Request",
        "Content-Length must be a non-negative integer",
        type_=PROBLEM_BASE + "malformed-request",
        errors=[{"in": "header", "field": "Content-Length", "detail": "not a byte count"}],
        # The body's end is unknown: the connection cannot carry another request.
        headers={"Connection": "close"},
    )
