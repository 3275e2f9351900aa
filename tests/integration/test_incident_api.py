"""The skeleton's incident API on the real database: create, read, idempotency, errors."""

import uuid

import httpx
import pytest

from tests.support import sample_value


@pytest.fixture
async def api(start_runtime):
    runtime = await start_runtime("incident")
    from shared.http.app import create_app
    from tests.conftest import DEFINITIONS

    app = create_app(runtime, DEFINITIONS["incident"].routers)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://incident") as client:
        client.runtime = runtime
        yield client


NEW = {"title": "Payroll app returns 500", "description": "since 09:00", "impact": 1, "urgency": 2}


async def test_a_logged_incident_can_be_read_back_with_its_priority(api, tenant):
    created = await api.post(
        "/incidents", json=NEW, headers={"X-Tenant-Id": tenant, "X-Actor": "alice"}
    )
    assert created.status_code == 201
    body = created.json()
    assert body["priority"] == 2
    assert body["state"] == "new"
    assert created.headers["location"] == f"/incidents/{body['id']}"
    read = await api.get(f"/incidents/{body['id']}", headers={"X-Tenant-Id": tenant})
    assert read.status_code == 200
    assert read.json() == body


async def test_creating_an_incident_writes_its_event_in_the_same_transaction(api, pools, tenant):
    created = (await api.post("/incidents", json=NEW, headers={"X-Tenant-Id": tenant})).json()
    # Either still in the outbox or already published; in both cases exactly one event exists.
    pending = await pools["incident"].fetchval(
        "SELECT count(*) FROM outbox WHERE message_key = $1", created["id"]
    )
    published = sample_value(
        api.runtime.registry, "itsm_outbox_published_total", {"topic": "itsm.incident.events"}
    )
    assert pending == 1 or published >= 1


async def test_a_retried_post_with_the_same_idempotency_key_returns_the_first_incident(
    api, pools, tenant
):
    headers = {"X-Tenant-Id": tenant, "Idempotency-Key": str(uuid.uuid4())}
    first = await api.post("/incidents", json=NEW, headers=headers)
    second = await api.post("/incidents", json=NEW, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers["idempotent-replayed"] == "true"
    count = await pools["incident"].fetchval(
        "SELECT count(*) FROM incidents WHERE tenant_id = $1", tenant
    )
    assert count == 1


async def test_an_idempotency_key_reused_for_a_different_request_is_refused(api, tenant):
    headers = {"X-Tenant-Id": tenant, "Idempotency-Key": "key-1"}
    await api.post("/incidents", json=NEW, headers=headers)
    reused = await api.post("/incidents", json={**NEW, "title": "Something else"}, headers=headers)
    assert reused.status_code == 422
    assert reused.json()["errors"][0]["field"] == "Idempotency-Key"


async def test_invalid_input_is_a_problem_naming_the_field_and_stores_nothing(api, pools, tenant):
    response = await api.post(
        "/incidents", json={**NEW, "urgency": 5}, headers={"X-Tenant-Id": tenant}
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in response.json()["errors"]] == ["urgency"]
    assert (
        await pools["incident"].fetchval(
            "SELECT count(*) FROM incidents WHERE tenant_id = $1", tenant
        )
        == 0
    )


async def test_another_tenants_incident_reads_as_not_found(api, tenant):
    created = (await api.post("/incidents", json=NEW, headers={"X-Tenant-Id": tenant})).json()
    other = await api.get(f"/incidents/{created['id']}", headers={"X-Tenant-Id": "someone-else"})
    missing = await api.get(f"/incidents/{uuid.uuid4()}", headers={"X-Tenant-Id": tenant})
    assert other.status_code == missing.status_code == 404
    assert other.json()["title"] == missing.json()["title"]


async def test_requests_get_a_correlation_id_and_are_counted(api, tenant):
    response = await api.get(
        f"/incidents/{uuid.uuid4()}", headers={"X-Tenant-Id": tenant, "X-Correlation-Id": "abc-123"}
    )
    assert response.headers["x-correlation-id"] == "abc-123"
    labels = {"method": "GET", "route": "/incidents/{incident_id}", "status": "404"}
    assert sample_value(api.runtime.registry, "itsm_http_requests_total", labels) >= 1


async def test_health_and_metrics_need_no_tenant(api):
    assert (await api.get("/health/live")).status_code == 200
    ready = await api.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "migrations": "ok", "kafka": "ok"}
    metrics = await api.get("/metrics")
    assert "itsm_outbox_backlog" in metrics.text
