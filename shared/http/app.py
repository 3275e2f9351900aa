"""The FastAPI application every service serves: conventions, health, metrics, then its routes."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from types import UnionType
from typing import TYPE_CHECKING, Annotated, Any, Protocol, Union, get_args, get_origin

from fastapi import APIRouter, FastAPI, Request
from fastapi.params import Form
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.http.context import CORRELATION_HEADER, correlation_id_from
from shared.http.guards import install_request_guards
from shared.http.limits import RequestLimitsMiddleware
from shared.http.models import lax_number_fields
from shared.http.openapi import install_asyncapi, install_openapi
from shared.http.problems import install_problem_handlers, problem_response
from shared.logging import correlation_id
from shared.metrics import PlatformMetrics

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from shared.settings import ServiceSettings


class Runtime(Protocol):
    """What the app needs of the process it serves: a service, or a separate outbox relay."""

    metrics: PlatformMetrics
    registry: CollectorRegistry

    # Read-only, so that a runtime with a service's own settings class is one too.
    @property
    def settings(self) -> ServiceSettings: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def readiness(self) -> dict[str, str]: ...


# One line per request at INFO (the access log): what was asked, of which route, by whom, for
# which tenant, with what outcome and how long it took. The token itself is never logged.
access_log = logging.getLogger("itsm.access")


class ObservabilityMiddleware:
    """Binds a correlation id to each request, records request rate, errors and duration, and
    writes the request's access log line."""

    def __init__(self, app: ASGIApp, metrics: PlatformMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        cid = correlation_id_from(headers.get(CORRELATION_HEADER.lower().encode(), b"").decode())
        state = scope.setdefault("state", {})
        state["correlation_id"] = cid
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
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            method = scope["method"]
            tenant_id = state.get("tenant_id")
            tenant = self.metrics.tenant(tenant_id)
            self.metrics.http_requests.labels(method, template, str(status), tenant).inc()
            self.metrics.http_duration.labels(method, template).observe(elapsed)
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "request",
                    extra={
                        "correlation_id": cid,
                        "method": method,
                        "route": template,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 3),
                        "tenant": tenant_id,
                        "subject": state.get("subject"),
                    },
                )
            correlation_id.reset(token)


def operations_router(runtime: Runtime) -> APIRouter:
    """`/health/live`, `/health/ready` and `/metrics`: unauthenticated, for orchestrators."""
    router = APIRouter(tags=["operations"])

    @router.get("/health/live", summary="The process is up")
    async def live() -> dict[str, str]:
        return {"status": "live"}

    @router.get(
        "/health/ready",
        summary="Database and Kafka reachable, migrations applied, no background task down",
        responses={503: {"description": "Not ready: `checks` names what is not ok"}},
    )
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
    runtime: Runtime,
    routers: Sequence[APIRouter],
    *,
    asyncapi: Callable[[], dict[str, Any]] | None = None,
    **fastapi_args: Any,
) -> FastAPI:
    """A service's app: its runtime started in the lifespan, shared conventions, its routes, and
    its event contract at /asyncapi.json when `asyncapi` gives one."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    # /docs and /redoc come from install_openapi, which serves them without a CDN.
    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, **fastapi_args)
    app.state.runtime = runtime
    install_openapi(app)
    install_problem_handlers(app)
    operations = operations_router(runtime)
    install_request_guards(app, routers)  # NUL refusal and Idempotency-Key, inside the body limit
    app.add_middleware(
        RequestLimitsMiddleware,
        max_bytes=lambda: runtime.settings.http_max_body_bytes,
        upload_bytes=lambda: runtime.settings.http_max_upload_bytes,
        max_json_depth=lambda: runtime.settings.http_max_json_depth,
        routes=[route for router in (operations, *routers) for route in router.routes],
    )
    # Added last, so it runs first: the limits' refusals are counted, logged, and carry the
    # correlation id.
    app.add_middleware(ObservabilityMiddleware, metrics=runtime.metrics)
    app.include_router(operations)
    if asyncapi is not None:
        install_asyncapi(app, asyncapi)
    for router in routers:
        _refuse_unguarded_routes(router)
        _refuse_open_bodies(router)
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


def _refuse_open_bodies(router: APIRouter) -> None:
    """Fail at start-up if a route's JSON body would accept unknown fields without a 422."""
    for route in router.routes:
        if not isinstance(route, APIRoute):
            continue
        # Form and file fields are not JSON objects; everything else is the JSON body.
        fields = [f for f in route.dependant.body_params if not isinstance(f.field_info, Form)]
        if not fields:
            continue
        where = f"{','.join(sorted(route.methods or ()))} {route.path}"
        # FastAPI wraps several (or embedded) body parameters in a model that ignores extras.
        if len({f.name for f in fields}) > 1 or getattr(fields[0].field_info, "embed", False):
            raise RuntimeError(f"{where}: take the body as one pydantic model, not several fields")
        annotation = fields[0].field_info.annotation
        if _free_form(annotation):
            raise RuntimeError(f"{where}: the body must be a pydantic model, not a mapping")
        open_models = _open_models(annotation, set())
        if open_models:
            raise RuntimeError(
                f"{where}: body models must derive from RequestBody (shared/http/models.py):"
                f" {', '.join(open_models)}"
            )


def _free_form(annotation: Any) -> bool:
    """Whether a body annotation is a mapping or Any (directly, optionally or in a union)."""
    origin = get_origin(annotation)
    if origin in (Annotated, Union, UnionType):
        return any(_free_form(arg) for arg in get_args(annotation))
    origin = origin or annotation
    return annotation is Any or (isinstance(origin, type) and issubclass(origin, Mapping))


def _open_models(annotation: Any, seen: set[type[BaseModel]]) -> list[str]:
    """The models reachable from an annotation that accept unknown fields, and their fields that
    would coerce a string or boolean into a number (`Model.field`)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if annotation in seen:
            return []
        seen.add(annotation)
        found = [] if annotation.model_config.get("extra") == "forbid" else [annotation.__name__]
        found += lax_number_fields(annotation)
        for field in annotation.model_fields.values():
            found += _open_models(field.annotation, seen)
        return found
    return [name for arg in get_args(annotation) for name in _open_models(arg, seen)]
