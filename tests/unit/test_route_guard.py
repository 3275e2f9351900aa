from dataclasses import dataclass

import pytest
from fastapi import APIRouter
from prometheus_client import CollectorRegistry

from shared.http.app import create_app
from shared.http.context import authorize
from shared.metrics import PlatformMetrics


@dataclass
class FakeRuntime:
    registry: CollectorRegistry
    metrics: PlatformMetrics


def runtime():
    registry = CollectorRegistry()
    return FakeRuntime(registry, PlatformMetrics(registry))


def test_a_service_with_a_route_that_declares_no_permission_refuses_to_start():
    router = APIRouter()

    @router.get("/forgotten")
    async def forgotten() -> dict[str, str]:
        return {}

    with pytest.raises(RuntimeError, match="/forgotten declares no authorize"):
        create_app(runtime(), [router])


def test_routes_that_declare_a_permission_are_accepted():
    router = APIRouter()

    @router.get("/guarded", dependencies=[authorize("incident:read")])
    async def guarded() -> dict[str, str]:
        return {}

    assert create_app(runtime(), [router]).openapi()["paths"]["/guarded"]
