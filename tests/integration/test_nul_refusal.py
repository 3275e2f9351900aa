"""NUL (U+0000) is refused with 422 naming the field on every service, and changes nothing."""

from __future__ import annotations

import pytest

from tests.support import fetchval_as

SERVER = {"hostname": "srv", "environment": "production"}
ROLES = ("tenant_admin", "integration", "problem_manager", "agent")


@pytest.fixture
def headers(auth, tenant) -> dict[str, str]:
    return auth(tenant, *ROLES, subject="alice")


def refused(response, where: str, field: str) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert [(e["in"], e["field"]) for e in response.json()["errors"]] == [(where, field)]


async def count(pool, tenant: str, table: str) -> int:
    query = f"SELECT count(*) FROM {table} WHERE tenant_id = $1"
    return int(await fetchval_as(pool, tenant, query, tenant))


async def test_nul_in_a_relationship_deletion_reason_is_refused_and_the_relationship_stays(
    service_client, headers
):
    config = await service_client("config")
    ids = []
    for name in ("app-1", "db-1"):
        body = {"class": "server", "name": name, "attributes": SERVER}
        ids.append((await config.post("/cis", json=body, headers=headers)).json()["id"])
    related = await config.post(
        "/relationships",
        json={"type": "depends_on", "source_id": ids[0], "target_id": ids[1]},
        headers=headers,
    )
    assert related.status_code == 201, related.text
    relationship = related.json()["id"]
    response = await config.delete(
        f"/relationships/{relationship}?reason=audit%00gap", headers=headers
    )
    refused(response, "query", "reason")
    listed = await config.get(f"/cis/{ids[0]}/relationships", headers=headers)
    assert relationship in listed.text


async def test_nul_in_incident_service_fields_and_filters_is_refused_and_nothing_changes(
    service_client, headers, pools, tenant
):
    api = await service_client("incident")
    refused(
        await api.post(
            "/incidents", json={"title": "a\x00b", "impact": 1, "urgency": 1}, headers=headers
        ),
        "body",
        "title",
    )
    assert await count(pools["incident"], tenant, "incidents") == 0
    refused(await api.get("/incidents?service=pay%00roll", headers=headers), "query", "service")

    submitted = await api.post(
        "/requests",
        json={"title": "New laptop", "item": "Laptop", "impact": 2, "urgency": 2},
        headers=headers,
    )
    request = submitted.json()
    moved = await api.post(
        f"/requests/{request['id']}/transitions",
        json={"to": "cancelled", "notes": "done\x00"},
        headers={**headers, "If-Match": f'"{request["version"]}"'},
    )
    refused(moved, "body", "notes")
    after = (await api.get(f"/requests/{request['id']}", headers=headers)).json()
    assert (after["state"], after["version"]) == (request["state"], request["version"])

    problem = (await api.post("/problems", json={"title": "Deadlocks"}, headers=headers)).json()
    change = await api.post(
        f"/problems/{problem['id']}/change-requests",
        json={"title": "Add\x00index"},
        headers={**headers, "If-Match": f'"{problem["version"]}"'},
    )
    refused(change, "body", "title")
    after = (await api.get(f"/problems/{problem['id']}", headers=headers)).json()
    assert after["change_requests"] == [] and after["version"] == problem["version"]


async def test_nul_in_config_service_fields_filters_and_path_is_refused(
    service_client, headers, pools, tenant
):
    config = await service_client("config")
    body = {"class": "server", "name": "web\x00-1", "attributes": SERVER}
    refused(await config.post("/cis", json=body, headers=headers), "body", "name")
    body = {"class": "server", "name": "web-1", "attributes": {**SERVER, "hostname": "\x00"}}
    refused(await config.post("/cis", json=body, headers=headers), "body", "attributes.hostname")
    assert await count(pools["config"], tenant, "cis") == 0
    refused(await config.get("/cis?name=web%00", headers=headers), "query", "name")
    refused(await config.get("/baselines/base%00line", headers=headers), "path", "name")


async def test_nul_in_an_import_row_rejects_that_row_naming_the_field(service_client, headers):
    config = await service_client("config")
    rows = (
        b'{"external_id": "vm-1", "class": "server", "name": "vm\\u0000one",'
        b' "attributes": {"hostname": "a", "environment": "production"}}\n'
        b'{"external_id": "vm-2", "class": "server", "name": "vm-two",'
        b' "attributes": {"hostname": "b", "environment": "production"}}\n'
    )
    response = await config.post(
        "/imports?source=vcenter",
        content=rows,
        headers={**headers, "Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 201, response.text
    run = response.json()
    listed = await config.get(f"/imports/{run['id']}/rows", headers=headers)
    outcomes = {r["line"]: r for r in listed.json()["items"]}
    assert outcomes[1]["outcome"] == "rejected"
    assert outcomes[1]["reason"] == "name: must not contain NUL (U+0000)"
    assert outcomes[2]["outcome"] != "rejected"
    csv = (
        b"external_id,class,name,attributes.hostname,attributes.environment\n"
        b"vm-3,server,x,h\x00,production\n"
    )
    response = await config.post(
        "/imports?source=vcenter", content=csv, headers={**headers, "Content-Type": "text/csv"}
    )
    assert response.status_code == 201, response.text
    listed = await config.get(f"/imports/{response.json()['id']}/rows", headers=headers)
    [row] = listed.json()["items"]
    assert (row["outcome"], row["reason"]) == (
        "rejected",
        "attributes.hostname: must not contain NUL (U+0000)",
    )


async def test_nul_in_a_ledger_filter_is_refused(service_client, auth, tenant):
    reporting = await service_client("reporting")
    response = await reporting.get("/ledger?subject=ci%00", headers=auth(tenant, "auditor"))
    refused(response, "query", "subject")


async def test_nul_reaching_the_change_service_is_refused_too(service_client):
    change = await service_client("change")
    refused(await change.get("/health/live?probe=%00"), "query", "probe")
