"""The shared request guards in the service processes (uvicorn), not only in-process apps."""

import asyncio
import uuid

import httpx
import pytest

from tests.conftest import free_port

SERVER = {"hostname": "srv", "environment": "production"}


@pytest.fixture(scope="module")
def services(local_platform, migrated):
    ports = {name: free_port() for name in ("config",)}
    started = local_platform.start_services(migrated, ports)
    yield {s.name: s.url for s in started}
    for service in started:
        service.stop()
    local_platform.services.clear()


async def test_racing_retries_of_a_keyed_post_over_http_create_one_ci(services, auth, tenant):
    url = services["config"]
    headers = {**auth(tenant, "config_manager", subject="ops"), "Idempotency-Key": "e2e-ci"}
    body = {"class": "server", "name": f"web-{uuid.uuid4().hex[:6]}", "attributes": SERVER}
    async with httpx.AsyncClient() as client:
        answers = await asyncio.gather(
            *(client.post(f"{url}/cis", json=body, headers=headers) for _ in range(4))
        )
        assert [a.status_code for a in answers] == [201] * 4, [a.text for a in answers]
        assert len({a.json()["id"] for a in answers}) == 1
        assert sum(a.headers.get("idempotent-replayed") == "true" for a in answers) == 3
        listed = await client.get(
            f"{url}/cis", params={"name": body["name"]}, headers=auth(tenant, "config_manager")
        )
        assert len(listed.json()["items"]) == 1


async def test_nul_over_http_is_a_422_naming_the_parameter(services, auth, tenant):
    async with httpx.AsyncClient() as client:
        response = await client.get(
            f"{services['config']}/cis?name=a%00b", headers=auth(tenant, "config_manager")
        )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "name"
