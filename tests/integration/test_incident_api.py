"""The skeleton's incident API on the real database: create, read, idempotency, errors, access."""

import uuid

import asyncpg
import pytest

from tests.support import fetch_as, fetchval_as, sample_value


@pytest.fixture
async def api(service_client):
    return await service_client("incident")


NEW = {"title": "Payroll app returns 500", "description": "since 09:00", "impact": 1, "urgency": 2}


async def test_a_logged_incident_can_be_read_back_with_its_priority(api, auth, tenant):
    created = await api.post("/incidents", json=NEW, headers=auth(tenant, "agent", subject="alice"))
    assert created.status_code == 201
    body = created.json()
    assert body["priority"] == 2
    assert body["state"] == "new"
    assert body["created_by"] == "alice"
    assert created.headers["location"] == f"/incidents/{body['id']}"
    read = await api.get(f"/incidents/{body['id']}", headers=auth(tenant, "auditor"))
    assert read.status_code == 200
    assert read.json() == body


async def _created_events(pools, tenant, incident_id):
    return [
        r["event_type"]
        for r in await fetch_as(
            pools["incident"],
            tenant,
            "SELECT event_type FROM outbox WHERE message_key = $1 ORDER BY position",
            incident_id,
        )
    ]


async def test_creating_an_incident_writes_its_row_and_its_created_event_together(
    service_client, auth, pools, tenant
):
    api = await service_client("incident", outbox_relay="separate")  # events stay in the outbox
    created = await api.post("/incidents", json=NEW, headers=auth(tenant, "agent"))
    assert created.status_code == 201, created.text
    incident_id = created.json()["id"]
    stored = await fetchval_as(
        pools["incident"], tenant, "SELECT count(*) FROM incidents WHERE id = $1::uuid", incident_id
    )
    assert stored == 1
    assert await _created_events(pools, tenant, incident_id) == ["itsm.incident.created.v1"]


async def test_an_outbox_write_failing_after_the_incident_was_written_leaves_neither(
    service_client, migrated, auth, pools, tenant
):
    api = await service_client("incident", outbox_relay="separate")
    # The database refuses this tenant's outbox rows, after checking the incident row is
    # already written in the same transaction: the failure comes after the state change.
    name = f"refuse_outbox_{uuid.uuid4().hex[:8]}"
    owner = await asyncpg.connect(migrated.service_dsns["incident"])
    try:
        await owner.execute(
            f"""
            CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF EXISTS (SELECT 1 FROM incidents WHERE id::text = NEW.message_key) THEN
                    RAISE EXCEPTION 'injected: outbox refused after incident % was written',
                        NEW.message_key;
                END IF;
                RAISE EXCEPTION 'injected: outbox refused before its incident was written';
            END $$;
            CREATE TRIGGER {name} AFTER INSERT ON outbox FOR EACH ROW
                WHEN (NEW.tenant_id = '{tenant}') EXECUTE FUNCTION {name}();
            """
        )
        try:
            response = await api.post("/incidents", json=NEW, headers=auth(tenant, "agent"))
        except asyncpg.RaiseError as exc:  # the app re-raises what it answered 500 for
            failure = str(exc)
        else:
            failure = f"{response.status_code} {response.text}"
    finally:
        await owner.execute(f"DROP TRIGGER IF EXISTS {name} ON outbox; DROP FUNCTION {name}()")
        await owner.close()

    assert "after incident" in failure, failure
    incident_id = failure.split("after incident ")[1].split()[0]
    count = "SELECT count(*) FROM {} WHERE tenant_id = $1"
    for table in ("incidents", "incident_history", "outbox", "sla_clocks"):
        assert await fetchval_as(pools["incident"], tenant, count.format(table), tenant) == 0, table
    assert await _created_events(pools, tenant, incident_id) == []
    # The same request goes through once the database accepts the events again.
    retried = await api.post("/incidents", json=NEW, headers=auth(tenant, "agent"))
    assert retried.status_code == 201, retried.text
    assert await _created_events(pools, tenant, retried.json()["id"]) == [
        "itsm.incident.created.v1"
    ]


async def test_a_retried_post_with_the_same_idempotency_key_returns_the_first_incident(
    api, auth, pools, tenant
):
    headers = {**auth(tenant, "integration"), "Idempotency-Key": str(uuid.uuid4())}
    first = await api.post("/incidents", json=NEW, headers=headers)
    second = await api.post("/incidents", json=NEW, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers["idempotent-replayed"] == "true"
    count = await fetchval_as(
        pools["incident"], tenant, "SELECT count(*) FROM incidents WHERE tenant_id = $1", tenant
    )
    assert count == 1


async def test_an_idempotency_key_reused_for_a_different_request_is_refused(api, auth, tenant):
    headers = {**auth(tenant, "agent"), "Idempotency-Key": "key-1"}
    await api.post("/incidents", json=NEW, headers=headers)
    reused = await api.post("/incidents", json={**NEW, "title": "Something else"}, headers=headers)
    assert reused.status_code == 422
    assert reused.json()["errors"][0]["field"] == "Idempotency-Key"


async def test_invalid_input_is_a_problem_naming_the_field_and_stores_nothing(
    api, auth, pools, tenant
):
    response = await api.post(
        "/incidents", json={**NEW, "urgency": 5}, headers=auth(tenant, "agent")
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in response.json()["errors"]] == ["urgency"]
    assert (
        await fetchval_as(
            pools["incident"], tenant, "SELECT count(*) FROM incidents WHERE tenant_id = $1", tenant
        )
        == 0
    )


async def test_another_tenants_incident_reads_as_not_found(api, auth, tenant):
    created = (await api.post("/incidents", json=NEW, headers=auth(tenant, "agent"))).json()
    other = await api.get(f"/incidents/{created['id']}", headers=auth("someone-else", "agent"))
    missing = await api.get(f"/incidents/{uuid.uuid4()}", headers=auth(tenant, "agent"))
    assert other.status_code == missing.status_code == 404
    assert other.json()["title"] == missing.json()["title"]


async def test_requests_get_a_correlation_id_and_are_counted(api, auth, tenant):
    response = await api.get(
        f"/incidents/{uuid.uuid4()}",
        headers={**auth(tenant, "agent"), "X-Correlation-Id": "abc-123"},
    )
    assert response.headers["x-correlation-id"] == "abc-123"
    labels = {"method": "GET", "route": "/incidents/{incident_id}", "status": "404"}
    assert sample_value(api.runtime.registry, "itsm_http_requests_total", labels) >= 1


async def test_health_and_metrics_need_no_token(api):
    assert (await api.get("/health/live")).status_code == 200
    ready = await api.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {
        "database": "ok",
        "migrations": "ok",
        "kafka": "ok",
        "background": "ok",
    }
    metrics = await api.get("/metrics")
    assert "itsm_outbox_backlog" in metrics.text


@pytest.mark.parametrize(
    "authorization",
    [None, "Basic dXNlcjpwdw==", "Bearer not-a-token", "Bearer "],
    ids=["missing", "not-bearer", "garbage", "empty"],
)
async def test_requests_without_a_valid_token_are_401_problems(api, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = await api.post("/incidents", json=NEW, headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_an_expired_token_is_401_and_counted(api, infra, tenant):
    token = infra.keys.issuer().mint(
        subject="late", tenants=[tenant], roles=["agent"], ttl_seconds=-600
    )
    response = await api.get(
        f"/incidents/{uuid.uuid4()}", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401
    assert (
        sample_value(api.runtime.registry, "itsm_auth_failures_total", {"reason": "expired"}) >= 1
    )


async def test_a_role_without_the_permission_is_403(api, auth, tenant):
    response = await api.post("/incidents", json=NEW, headers=auth(tenant, "auditor"))
    assert response.status_code == 403


async def test_provider_staff_name_one_of_their_tenants_and_are_refused_others(api, auth, tenant):
    several = auth(tenant, "agent", tenants=[tenant, "other-customer"])
    assert (await api.post("/incidents", json=NEW, headers=several)).status_code == 400
    chosen = await api.post("/incidents", json=NEW, headers={**several, "X-Tenant-Id": tenant})
    assert chosen.status_code == 201
    assert chosen.json()["tenant_id"] == tenant
    refused = await api.post("/incidents", json=NEW, headers={**several, "X-Tenant-Id": "not-mine"})
    assert refused.status_code == 403
