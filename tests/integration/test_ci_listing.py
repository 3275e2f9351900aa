"""Listing and searching CIs on the real database: filters, pagination, bad input, tenants."""

import uuid

import pytest

ATTRIBUTES = {
    "server": {"hostname": "srv", "environment": "production"},
    "database": {"engine": "postgresql", "port": 5432},
    "application": {"environment": "production"},
}


@pytest.fixture
async def config(service_client):
    return await service_client("config")


@pytest.fixture
def manager(auth, tenant):
    return auth(tenant, "config_manager")


async def ci(config, headers, ci_class, name, **fields):
    body = {"class": ci_class, "name": name, "attributes": ATTRIBUTES[ci_class], **fields}
    response = await config.post("/cis", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def names(config, headers, **params):
    response = await config.get("/cis", params={"limit": 200, **params}, headers=headers)
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["next_cursor"] is None
    return {item["name"] for item in page["items"]}


@pytest.fixture
async def estate(config, manager):
    vm = f"vm-{uuid.uuid4().hex[:8]}"
    await ci(
        config,
        manager,
        "server",
        "web-01",
        owner_team="platform",
        criticality=2,
        external_ids={"vcenter": vm},
    )
    await ci(config, manager, "server", "Web-02", status="maintenance", owner_team="platform")
    await ci(config, manager, "database", "db-primary", owner_team="dba", criticality=1)
    await ci(config, manager, "application", "payroll-web", status="planned", criticality=2)
    old = await ci(config, manager, "server", "old-web", owner_team="platform")
    retired = await config.patch(
        f"/cis/{old}", json={"status": "retired"}, headers={**manager, "If-Match": '"1"'}
    )
    assert retired.status_code == 200, retired.text
    return {"vm": vm}


async def test_each_filter_narrows_the_list(config, manager, estate):
    everything = {"web-01", "Web-02", "db-primary", "payroll-web", "old-web"}
    assert await names(config, manager) == everything
    assert await names(config, manager, **{"class": "server"}) == {"web-01", "Web-02", "old-web"}
    assert await names(config, manager, status="retired") == {"old-web"}
    assert await names(config, manager, status=["active", "maintenance"]) == {
        "web-01",
        "Web-02",
        "db-primary",
    }
    assert await names(config, manager, owner_team="dba") == {"db-primary"}
    assert await names(config, manager, criticality=2) == {"web-01", "payroll-web"}
    assert await names(config, manager, external_id=f"vcenter:{estate['vm']}") == {"web-01"}
    assert await names(config, manager, external_id="vcenter:no-such-vm") == set()


async def test_name_is_a_case_insensitive_prefix_and_q_a_case_insensitive_substring(
    config, manager, estate
):
    assert await names(config, manager, name="WEB") == {"web-01", "Web-02"}
    assert await names(config, manager, name="web-0") == {"web-01", "Web-02"}
    assert await names(config, manager, name="web-01x") == set()
    assert await names(config, manager, q="WEB") == {"web-01", "Web-02", "payroll-web", "old-web"}
    assert await names(config, manager, q="oll-w") == {"payroll-web"}
    assert await names(config, manager, q="b-") == {"web-01", "Web-02", "db-primary"}
    assert await names(config, manager, q="x") == set()


async def test_filters_combine(config, manager, estate):
    assert await names(
        config, manager, **{"class": "server"}, status=["active", "retired"], owner_team="platform"
    ) == {"web-01", "old-web"}
    assert await names(config, manager, q="web", criticality=2) == {"web-01", "payroll-web"}
    assert await names(config, manager, name="w", status="maintenance") == {"Web-02"}
    assert (
        await names(config, manager, external_id=f"vcenter:{estate['vm']}", status="retired")
        == set()
    )


async def test_pages_walk_every_ci_once_in_id_order(config, manager):
    created = {await ci(config, manager, "server", f"node-{i}") for i in range(7)}
    await ci(config, manager, "database", "node-db")
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 3, "class": "server", **({"cursor": cursor} if cursor else {})}
        response = await config.get("/cis", params=params, headers=manager)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= 3
        seen += [item["id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert len(seen) == len(set(seen)) == 7
    assert set(seen) == created
    assert seen == sorted(seen, key=uuid.UUID)


async def test_a_listed_ci_has_the_shape_of_a_read_one(config, manager):
    ci_id = await ci(config, manager, "server", "shape-1", external_ids={"cmdb": "x-1"})
    listed = (await config.get("/cis", params={"name": "shape-1"}, headers=manager)).json()
    read = (await config.get(f"/cis/{ci_id}", headers=manager)).json()
    assert listed["items"] == [read]
    assert read["class"] == "server"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": ["active", "gone"]}, "status"),
        ({"criticality": "9"}, "criticality"),
        ({"criticality": "high"}, "criticality"),
        ({"class": "Not A Class"}, "class"),
        ({"external_id": "no-colon"}, "external_id"),
        ({"external_id": "Bad Source:1"}, "external_id"),
        ({"external_id": "vcenter:"}, "external_id"),
        ({"name": ""}, "name"),
        ({"q": ""}, "q"),
        ({"limit": "201"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
    ],
)
async def test_an_invalid_filter_is_a_422_naming_the_parameter(config, manager, params, field):
    response = await config.get("/cis", params=params, headers=manager)
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert {(e["in"], e["field"]) for e in errors} == {("query", field)}


async def test_another_tenants_cis_are_never_listed(config, manager, auth, estate):
    stranger = auth(f"t-{uuid.uuid4().hex[:12]}", "config_manager")
    await ci(config, stranger, "server", "web-stranger")
    assert await names(config, stranger) == {"web-stranger"}
    assert await names(config, stranger, q="web") == {"web-stranger"}
    assert await names(config, stranger, name="web") == {"web-stranger"}
    assert await names(config, stranger, external_id=f"vcenter:{estate['vm']}") == set()
    assert "web-stranger" not in await names(config, manager, q="web")


async def test_listing_needs_ci_read(config, auth, tenant):
    response = await config.get("/cis", headers=auth(tenant, "requester"))
    assert response.status_code == 403
