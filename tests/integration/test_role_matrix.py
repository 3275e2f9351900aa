"""The role matrix, enforced: every role a route's permission does not grant gets 403.

Routes are discovered from each service's routers, and each route's permission from its
`authorize(permission)` dependency, so a new endpoint is covered the moment it is added.

FastAPI calls a route's dependencies (authorize among them) before it validates the route's
own path, query and body parameters, so a refused role gets 403 whatever the request holds.
Requests here send `{}` as the body of routes that take one: a refused role must get 403, an
allowed role the route's own answer (422 for the empty body, 404 for the random id...). If
FastAPI ever validated the body first, the 403 tests would fail rather than pass vacuously.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.params import Form
from fastapi.routing import APIRoute

from shared.auth.roles import PERMISSIONS, ROLES
from shared.devstack.platform import Infra
from shared.http.app import create_app
from shared.service import ServiceRuntime
from tests.conftest import DEFINITIONS


@dataclass(frozen=True)
class Endpoint:
    """One method of one route of one service, and the permission it declares."""

    service: str
    method: str
    route: APIRoute
    permission: str

    def __str__(self) -> str:
        return f"{self.service}:{self.method} {self.route.path}"


def signed(route: APIRoute) -> bool:
    """A route authenticated by a secret, not by a bearer token and roles: a webhook by its
    tool's signature, a calendar feed by its token's secret URL."""
    return any(getattr(d.call, "signed", False) for d in route.dependant.dependencies)


def refusal(route: APIRoute) -> int:
    """What such a route answers without its secret: 401 (a webhook), 404 (a feed's URL)."""
    return next(
        getattr(d.call, "refusal", 401)
        for d in route.dependant.dependencies
        if getattr(d.call, "signed", False)
    )


def endpoints(*, webhooks: bool = False) -> Iterator[Endpoint]:
    for name, definition in DEFINITIONS.items():
        for router in definition.routers:
            for route in router.routes:
                assert isinstance(route, APIRoute)
                if signed(route) != webhooks:
                    continue
                permission = next(
                    d.call.permission
                    for d in route.dependant.dependencies
                    if hasattr(d.call, "permission")
                )
                for method in sorted(route.methods or ()):
                    yield Endpoint(name, method, route, permission)


ENDPOINTS = list(endpoints())
WEBHOOKS = list(endpoints(webhooks=True))
REFUSED = [
    (e, role) for e in ENDPOINTS for role in sorted(ROLES - PERMISSIONS.get(e.permission, set()))
]
GRANTED = [
    (e, role) for e in ENDPOINTS for role in sorted(ROLES & PERMISSIONS.get(e.permission, set()))
]


def path_of(route: APIRoute) -> str:
    """The route's path with a well-formed value for each path parameter."""
    types = {p.name: p.field_info.annotation for p in route.dependant.path_params}

    def value(match: re.Match[str]) -> str:
        annotation = types.get(match.group(1))
        if annotation is int:
            return "1"
        return str(uuid.uuid4()) if annotation in (uuid.UUID, None) else "x"

    return re.sub(r"{(\w+)(?::\w+)?}", value, route.path)


def request_args(route: APIRoute) -> dict[str, Any]:
    json_body = [p for p in route.dependant.body_params if not isinstance(p.field_info, Form)]
    return {"json": {}} if json_body else {}


@pytest.fixture(scope="module")
async def clients(migrated: Infra) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """Each service with routes, started on the session's broker and database."""
    runtimes: list[ServiceRuntime] = []
    clients: dict[str, httpx.AsyncClient] = {}
    try:
        for name in sorted({e.service for e in ENDPOINTS}):
            definition = DEFINITIONS[name]
            settings = definition.settings_class(  # type: ignore[call-arg]
                database_url=migrated.service_dsns[name],
                kafka_bootstrap_servers=migrated.bootstrap_servers,
                outbox_poll_interval_seconds=0.2,
                auth_jwks_file=migrated.keys.jwks_file,
            )
            runtime = ServiceRuntime(definition, settings)
            await runtime.start()
            runtimes.append(runtime)
            transport = httpx.ASGITransport(app=create_app(runtime, definition.routers))
            clients[name] = httpx.AsyncClient(transport=transport, base_url=f"http://{name}")
        yield clients
    finally:
        for client in clients.values():
            await client.aclose()
        for runtime in reversed(runtimes):
            await runtime.stop()


async def call(clients, auth, tenant: str, endpoint: Endpoint, role: str) -> httpx.Response:
    return await clients[endpoint.service].request(
        endpoint.method,
        path_of(endpoint.route),
        headers=auth(tenant, role, subject=f"matrix-{role}"),
        **request_args(endpoint.route),
    )


def test_every_service_route_is_in_the_matrix():
    assert ENDPOINTS, "no routes discovered"
    for endpoint in ENDPOINTS:
        granted = PERMISSIONS.get(endpoint.permission, frozenset())
        assert granted, f"{endpoint} declares {endpoint.permission}, which grants no role"


@pytest.mark.parametrize(("endpoint", "role"), REFUSED, ids=[f"{e}-{role}" for e, role in REFUSED])
async def test_a_role_the_matrix_does_not_grant_is_403(clients, auth, tenant, endpoint, role):
    response = await call(clients, auth, tenant, endpoint, role)
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["title"] == "Forbidden"
    assert endpoint.permission in problem["detail"]


@pytest.mark.parametrize(("endpoint", "role"), GRANTED, ids=[f"{e}-{role}" for e, role in GRANTED])
async def test_a_role_the_matrix_grants_is_let_through(clients, auth, tenant, endpoint, role):
    response = await call(clients, auth, tenant, endpoint, role)
    assert response.status_code not in (401, 403), response.text
    assert response.status_code < 500, response.text


@pytest.mark.parametrize("endpoint", WEBHOOKS, ids=str)
async def test_a_signed_route_refuses_any_role_without_its_secret(clients, auth, tenant, endpoint):
    """No role opens a webhook or a feed's secret URL: the tool's signature, the feed token's
    secret is its only authentication."""
    for role in sorted(ROLES):
        response = await call(clients, auth, tenant, endpoint, role)
        assert response.status_code == refusal(endpoint.route), response.text
        assert response.headers["content-type"] == "application/problem+json"
