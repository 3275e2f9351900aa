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


@pytest.mark.parametrize("service", ["incident", "config", "reporting"])
def test_openapi_declares_the_bearer_scheme_on_every_service_route(service):
    from tests.conftest import DEFINITIONS

    spec = create_app(runtime(), DEFINITIONS[service].routers).openapi()
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    operations = [
        (path, method, op)
        for path, item in spec["paths"].items()
        if not path.startswith(("/health", "/metrics"))
        # The one deliberate exception: a survey link, whose signed token is the credential.
        and path != "/surveys/{token}"
        for method, op in item.items()
    ]
    assert operations
    for path, method, op in operations:
        assert op.get("security") == [{"bearer": []}], (method, path)
    assert "security" not in spec["paths"]["/health/live"]["get"]
