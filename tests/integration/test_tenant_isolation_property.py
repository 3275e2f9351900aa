"""Property: whatever tenants create, no read, list or search ever shows another tenant's data."""

import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import eventually

LETTERS = "abcd"

# What happens in one example: who creates what, and whether they call with a token that
# serves several tenants (provider staff naming one per request) or with a single-tenant token.
actions = st.lists(
    st.tuples(
        st.sampled_from(["incident", "revocation"]),
        st.sampled_from(LETTERS),
        st.booleans(),
    ),
    min_size=1,
    max_size=10,
)


@pytest.fixture
async def apps(service_client):
    """In-process incident, config and reporting services on the real broker and database."""
    return {name: await service_client(name) for name in ("incident", "config", "reporting")}


async def read_all(client, path, headers, **params):
    """Every item of a paginated list, following next_cursor."""
    items, cursor = [], None
    while True:
        query = {**params, "limit": 3, **({"cursor": cursor} if cursor else {})}
        response = await client.get(path, params=query, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=actions)
async def test_no_read_list_or_search_ever_returns_another_tenants_object(apps, auth, steps):
    run = uuid.uuid4().hex[:8]
    tenants = {letter: f"p-{run}-{letter}" for letter in LETTERS}
    everyone = list(tenants.values())

    def headers(tenant, *roles, provider=False):
        if provider:
            return {**auth(tenant, *roles, tenants=everyone), "X-Tenant-Id": tenant}
        return auth(tenant, *roles)

    incidents: dict[str, str] = {}  # incident id -> owner
    revoked: dict[str, str] = {}  # token id -> owner
    for kind, letter, provider in steps:
        tenant = tenants[letter]
        if kind == "incident":
            created = await apps["incident"].post(
                "/incidents",
                json={"title": f"{kind} of {letter}", "impact": 2, "urgency": 3},
                headers=headers(tenant, "agent", provider=provider),
            )
            assert created.status_code == 201, created.text
            assert created.json()["tenant_id"] == tenant
            incidents[created.json()["id"]] = tenant
        else:
            jti = str(uuid.uuid4())
            response = await apps["config"].post(
                "/token-revocations",
                json={"token_id": jti, "reason": "property test"},
                headers=headers(tenant, "tenant_admin", provider=provider),
            )
            assert response.status_code == 201, response.text
            revoked[jti] = tenant

    missing = await apps["incident"].get(
        f"/incidents/{uuid.uuid4()}", headers=headers(everyone[0], "auditor")
    )
    assert missing.status_code == 404
    for tenant in everyone:
        auditor = headers(tenant, "auditor")
        own = {i for i, owner in incidents.items() if owner == tenant}
        for incident_id, owner in incidents.items():
            read = await apps["incident"].get(f"/incidents/{incident_id}", headers=auditor)
            if owner == tenant:
                assert read.status_code == 200 and read.json()["tenant_id"] == tenant
            else:
                # Indistinguishable from an incident that does not exist.
                assert read.status_code == 404
                assert read.json()["title"] == missing.json()["title"]
            searched = await read_all(apps["reporting"], "/ledger", auditor, subject=incident_id)
            assert all(e["subject"] == incident_id for e in searched)
            if owner != tenant:
                assert searched == []

        # The ledger lists exactly the tenant's own events once they have arrived.
        ledger = await eventually(
            lambda auditor=auditor: read_all(apps["reporting"], "/ledger", auditor),
            lambda entries, own=own: {e["subject"] for e in entries} >= own,
            timeout=30,
        )
        revocation_subjects = {f"{tenant}/{t}" for t, o in revoked.items() if o == tenant}
        assert {e["subject"] for e in ledger} <= own | revocation_subjects

        listed = await read_all(apps["config"], "/token-revocations", auditor)
        assert {r["token_id"] for r in listed} == {t for t, o in revoked.items() if o == tenant}
