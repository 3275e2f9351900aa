"""The FastAPI application every service serves: conventions, health, metrics, then its routes."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.http.context import CORRELATION_HEADER, correlation_id_from
from shared.http.problems import install_problem_handlers, problem_response
from shared.logging import correlation_id
from shared.metrics import PlatformMetrics

if TYPE_CHECKING:
    from shared.service import ServiceRuntime


class ObservabilityMiddleware:
    """Binds a correlation id to each request and records request rate, errors and duration."""

    def __init__(self, app: ASGIApp, metrics: PlatformMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        cid = correlation_id_from(headers.get(CORRELATION_HEADER.lower().encode(), b"").decode())
        scope.setdefault("state", {})["correlation_id"] = cid
        token = correlation_id.set(cid)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (CORRELATION_HEADER.lower().encode(), cid.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            correlation_id.reset(token)
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            method = scope["method"]
            self.metrics.http_requests.labels(method, template, str(status)).inc()
            self.metrics.http_duration.labels(method, template).observe(
                time.perf_counter() - started
            )


def operations_router(runtime: ServiceRuntime) -> APIRouter:
    """`/health/live`, `/health/ready` and `/metrics`: unauthenticated, for orchestrators."""
    router = APIRouter(tags=["operations"])

    @router.get("/health/live", summary="The process is up")
    async def live() -> dict[str, str]:
        return {"status": "live"}

    @router.get("/health/ready", summary="Database and Kafka reachable, migrations applied")
    async def ready(request: Request) -> Response:
        checks = await runtime.readiness()
        if all(v == "ok" for v in checks.values()):
            return JSONResponse({"status": "ready", "checks": checks})
        return problem_response(
            request,
            503,
            "Service Unavailable",
            "not ready: " + ", ".join(k for k, v in checks.items() if v != "ok"),
            extensions={"checks": checks},
        )

    @router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(runtime.registry), media_type=CONTENT_TYPE_LATEST)

    return router


def create_app(
    runtime: ServiceRuntime, routers: Sequence[APIRouter], **fastapi_args: Any
) -> FastAPI:
    """A service's app: its runtime started in the lifespan, shared conventions, its routes."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(lifespan=lifespan, **fastapi_args)
    app.state.runtime = runtime
    install_problem_handlers(app)
    app.add_middleware(ObservabilityMiddleware, metrics=runtime.metrics)
    app.include_router(operations_router(runtime))
    for router in routers:
        _refuse_unguarded_routes(router)
        app.include_router(router)
    return app


def _refuse_unguarded_routes(router: APIRouter) -> None:
    """Fail at start-up if a service route does not declare `authorize(permission)`."""
    for route in router.routes:
        if not isinstance(route, APIRoute):
            # Nested routers and mounts would hide routes from this check: not allowed.
            raise RuntimeError(f"{route!r}: service routers may hold API routes only")
        if not any(hasattr(d.call, "permission") for d in route.dependant.dependencies):
            raise RuntimeError(f"{route.path} declares no authorize(permission) dependency")
