"""Timestamps need a time zone and a supported range (422 naming the field); baselines diff."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import quote

import pytest

from tests.support import fetchval_as

SERVER = {"hostname": "srv", "environment": "production"}
OUT_OF_RANGE = [
    "0001-01-01T00:00:00Z",  # asyncpg stores it as -infinity
    "0001-01-01T00:00:00+01:00",  # before year 1 in UTC: PostgreSQL says date out of range
    "9999-12-31T23:59:59-05:00",  # after year 9999 in UTC: Python cannot hold it
    "1899-12-31T23:59:59Z",
]
NAIVE = "2027-01-01T00:00:00"


def refused(response, where: str, field: str) -> None:
    assert response.status_code == 422, response.text
    assert [(e["in"], e["field"]) for e in response.json()["errors"]] == [(where, field)]


@pytest.fixture
def admin(auth, tenant):
    return auth(tenant, "tenant_admin", "config_manager", subject="carol")


@pytest.mark.parametrize("value", [*OUT_OF_RANGE, NAIVE])
async def test_a_revocation_expiry_without_zone_or_out_of_range_is_refused_naming_it(
    service_client, admin, value
):
    config = await service_client("config")
    body = {"token_id": "jti-1", "reason": "retired", "expires_at": value}
    refused(await config.post("/token-revocations", json=body, headers=admin), "body", "expires_at")


@pytest.mark.parametrize("value", [*OUT_OF_RANGE, NAIVE])
async def test_a_baseline_instant_without_zone_or_out_of_range_is_refused_naming_it(
    service_client, admin, pools, tenant, value
):
    config = await service_client("config")
    body = {"name": "epoch0", "at": value}
    refused(await config.post("/baselines", json=body, headers=admin), "body", "at")
    stored = "SELECT count(*) FROM baselines WHERE tenant_id = $1"
    assert await fetchval_as(pools["config"], tenant, stored, tenant) == 0


@pytest.mark.parametrize("value", [*OUT_OF_RANGE, NAIVE])
async def test_an_incident_date_filter_without_zone_or_out_of_range_is_refused_naming_it(
    service_client, auth, tenant, value
):
    api = await service_client("incident")
    response = await api.get(
        f"/incidents?created_after={quote(value)}", headers=auth(tenant, "agent")
    )
    refused(response, "query", "created_after")


async def test_a_baseline_keeps_its_instant_with_a_zone_and_diffs(service_client, admin):
    config = await service_client("config")
    body = {"name": "early", "at": "1900-01-01T02:00:00+02:00"}
    created = await config.post("/baselines", json=body, headers=admin)
    assert created.status_code == 201, created.text
    read = await config.get("/baselines/early", headers=admin)
    for at in (created.json()["at"], read.json()["at"]):
        assert datetime.fromisoformat(at) == datetime(1900, 1, 1, tzinfo=UTC)
        assert datetime.fromisoformat(at).tzinfo is not None
    diff = await config.get("/baselines/early/diff", headers=admin)
    assert diff.status_code == 200, diff.text


async def test_a_baseline_stored_at_minus_infinity_reads_lists_and_diffs(
    service_client, admin, pools, tenant
):
    config = await service_client("config")
    body = {"class": "server", "name": "web-1", "attributes": SERVER}
    assert (await config.post("/cis", json=body, headers=admin)).status_code == 201
    # What `POST /baselines {"at": "0001-01-01T00:00:00Z"}` stored before the range check.
    await fetchval_as(
        pools["config"],
        tenant,
        "INSERT INTO baselines (tenant_id, name, at, cis, relationships, created_at, created_by)"
        " VALUES ($1, 'epoch0', '-infinity', 0, 0, now(), 'carol')",
        tenant,
    )
    read = await config.get("/baselines/epoch0", headers=admin)
    assert read.status_code == 200, read.text
    assert read.json()["at"].endswith("Z")
    listed = await config.get("/baselines", headers=admin)
    assert [b["name"] for b in listed.json()["items"]] == ["epoch0"]
    diff = await config.get("/baselines/epoch0/diff", headers=admin)
    assert diff.status_code == 200, diff.text
    assert diff.json()["summary"]["cis"]["added"] == 1
