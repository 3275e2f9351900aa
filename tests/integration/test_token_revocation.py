"""Revoked tokens stop working in every running service within seconds, without a restart."""

import uuid

import jwt
import pytest

from tests.support import eventually, fetch_as, sample_value

NEW = {"title": "Disk full on db-7", "impact": 2, "urgency": 2}


@pytest.fixture
async def clients(service_client):
    """In-process config and incident services on the session's broker and database."""
    return {name: await service_client(name) for name in ("config", "incident")}


def token_id(headers):
    token = headers["Authorization"].removeprefix("Bearer ")
    return jwt.decode(token, options={"verify_signature": False})["jti"]


async def revoke(config, auth, tenant, jti, role="tenant_admin"):
    return await config.post(
        "/token-revocations",
        json={"token_id": jti, "reason": "integration account retired"},
        headers=auth(tenant, role, subject="admin"),
    )


async def test_a_revoked_integration_token_is_refused_by_a_running_service_within_seconds(
    clients, auth, tenant
):
    config, incident = clients["config"], clients["incident"]
    integration = auth(tenant, "integration", subject="alertmanager")
    assert (await incident.post("/incidents", json=NEW, headers=integration)).status_code == 201

    revoked = await revoke(config, auth, tenant, token_id(integration))
    assert revoked.status_code == 201, revoked.text
    assert revoked.json()["revoked_by"] == "admin"

    async def status():
        return (await incident.post("/incidents", json=NEW, headers=integration)).status_code

    assert await eventually(status, lambda code: code == 401, timeout=10) == 401
    refused = await incident.post("/incidents", json=NEW, headers=integration)
    assert refused.headers["content-type"] == "application/problem+json"
    registry = incident.runtime.registry
    assert sample_value(registry, "itsm_auth_failures_total", {"reason": "revoked"}) >= 1
    # Other tokens of the same tenant and subject are untouched.
    fresh = auth(tenant, "integration", subject="alertmanager")
    assert (await incident.post("/incidents", json=NEW, headers=fresh)).status_code == 201


async def test_a_service_started_after_the_revocation_refuses_the_token_from_its_first_request(
    clients, auth, tenant, service_client
):
    integration = auth(tenant, "integration")
    assert (await revoke(clients["config"], auth, tenant, token_id(integration))).status_code == 201
    await eventually(
        lambda: clients["incident"].post("/incidents", json=NEW, headers=integration),
        lambda response: response.status_code == 401,
        timeout=10,
    )
    later = await service_client("incident")
    first = await later.post("/incidents", json=NEW, headers=integration)
    assert first.status_code == 401


async def test_a_revocation_applies_to_the_revoking_tenant_only(clients, auth, tenant):
    other = f"t-{uuid.uuid4().hex[:12]}"
    provider = auth(tenant, "agent", subject="provider-staff", tenants=[tenant, other])
    assert (await revoke(clients["config"], auth, tenant, token_id(provider))).status_code == 201
    incident = clients["incident"]

    async def status(t):
        headers = {**provider, "X-Tenant-Id": t}
        return (await incident.post("/incidents", json=NEW, headers=headers)).status_code

    assert await eventually(lambda: status(tenant), lambda code: code == 401, timeout=10) == 401
    assert await status(other) == 201


async def test_revoking_twice_changes_nothing_and_the_list_shows_the_tenants_revocations(
    clients, auth, tenant, pools
):
    config = clients["config"]
    jti = str(uuid.uuid4())
    first = await revoke(config, auth, tenant, jti)
    again = await revoke(config, auth, tenant, jti)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    events = await fetch_as(
        pools["config"],
        tenant,
        "SELECT count(*) AS n FROM outbox WHERE message_key = $1",
        f"{tenant}/{jti}",
    )
    published = sample_value(
        config.runtime.registry, "itsm_outbox_published_total", {"topic": "itsm.auth.revocations"}
    )
    assert events[0]["n"] + published >= 1
    listed = await config.get("/token-revocations", headers=auth(tenant, "auditor"))
    assert listed.status_code == 200
    assert [r["token_id"] for r in listed.json()["items"]] == [jti]
    elsewhere = await config.get(
        "/token-revocations", headers=auth("t-" + uuid.uuid4().hex[:12], "auditor")
    )
    assert elsewhere.json()["items"] == []


@pytest.mark.parametrize("role", ["agent", "auditor", "integration", "requester"])
async def test_only_tenant_and_provider_administrators_may_revoke(clients, auth, tenant, role):
    response = await revoke(clients["config"], auth, tenant, str(uuid.uuid4()), role=role)
    assert response.status_code == 403


async def test_a_revocation_with_unknown_fields_or_a_bad_token_id_is_refused_naming_the_field(
    clients, auth, tenant
):
    config = clients["config"]
    headers = auth(tenant, "tenant_admin")
    unknown = await config.post(
        "/token-revocations", json={"token_id": "x", "reason": "r", "scope": "all"}, headers=headers
    )
    assert unknown.status_code == 422
    assert [e["field"] for e in unknown.json()["errors"]] == ["scope"]
    spaced = await config.post(
        "/token-revocations", json={"token_id": "has space", "reason": "r"}, headers=headers
    )
    assert [e["field"] for e in spaced.json()["errors"]] == ["token_id"]


async def test_the_revocation_list_pages_with_a_cursor_and_refuses_a_forged_one(
    clients, auth, tenant
):
    from shared.http.pagination import encode_cursor

    config = clients["config"]
    ids = [str(uuid.uuid4()) for _ in range(3)]
    for jti in ids:
        assert (await revoke(config, auth, tenant, jti)).status_code == 201
    reader = auth(tenant, "tenant_admin")
    first = (await config.get("/token-revocations?limit=2", headers=reader)).json()
    rest = (
        await config.get(
            "/token-revocations",
            params={"limit": 2, "cursor": first["next_cursor"]},
            headers=reader,
        )
    ).json()
    assert [r["token_id"] for r in first["items"] + rest["items"]] == ids
    assert rest["next_cursor"] is None
    forged = await config.get(
        "/token-revocations",
        params={"cursor": encode_cursor(["yesterday", "x"])},
        headers=reader,
    )
    assert forged.status_code == 422
    assert [e["field"] for e in forged.json()["errors"]] == ["cursor"]
