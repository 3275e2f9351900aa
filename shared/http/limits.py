"""Request body size limit: a body over the configured size is refused with 413, not read.

A declared `Content-Length` over the limit is refused before the app runs. A body of unknown
length (chunked) is counted as the app reads it; the read that passes the limit fails, nothing
more is read, and whatever the app would have answered is replaced by the 413.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.http.problems import PROBLEM_BASE, problem_response

# `openapi_extra` of a route that streams a large upload (an import): its body may be as large as
# `upload_bytes()` instead of the general limit. Only routes with a fixed path can be marked.
STREAMED_UPLOAD: dict[str, object] = {"x-streamed-upload": True}


class BodyTooLarge(Exception):
    """Raised by `receive` once the request body has passed the limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body larger than {limit} bytes")
        self.limit = limit


class BodySizeLimitMiddleware:
    """Refuses request bodies larger than `max_bytes()` with 413 problem+json.

    `routes` name the route of a request refused before routing, for its metrics.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: Callable[[], int],
        routes: Sequence[BaseRoute] = (),
        upload_bytes: Callable[[], int] | None = None,
    ) -> None:
        self.app = app
        # A callable, so the limit comes from the runtime's settings when a request arrives.
        self.max_bytes = max_bytes
        self.upload_bytes = upload_bytes or max_bytes
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
        upload = (scope["method"], scope["path"]) in self.uploads
        limit = self.upload_bytes() if upload else self.max_bytes()
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            _match_route(scope, self.routes)
            await _too_large(scope, receive, send, limit)
            return

        received = 0
        exceeded = False
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                raise BodyTooLarge(limit)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise BodyTooLarge(limit)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if exceeded:
                # The app's answer to a body it could not read (400, 500...) is replaced below.
                return
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not exceeded or response_started:
                raise
        if exceeded:
            if response_started:
                # Too late for a 413: end the exchange so the client sees an incomplete response.
                raise BodyTooLarge(limit)
            await _too_large(scope, receive, send, limit)


def _content_length(scope: Scope) -> int | None:
    value = Headers(scope=scope).get("content-length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _match_route(scope: Scope, routes: Sequence[BaseRoute]) -> None:
    """Name the route a refused request was for, so its metrics carry the route template."""
    for route in routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            scope["route"] = route
            return


async def _too_large(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    response = problem_response(
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
    await response(scope, receive, send)
