"""Relationships and impact analysis on the real database: paths, cycles, depth, tenants."""

import uuid

import pytest

from tests.support import sample_value


@pytest.fixture
async def config(service_client):
    return await service_client("config")


@pytest.fixture
def manager(auth, tenant):
    return auth(tenant, "config_manager")


ATTRIBUTES = {
    "business_service": {"owner": "cfo", "customer": "finance", "availability_target": 99.9},
    "application": {"environment": "production"},
    "database": {"engine": "postgresql", "port": 5432},
    "server": {"hostname": "srv", "environment": "production"},
}


async def ci(config, headers, ci_class, name, criticality=3):
    response = await config.post(
        "/cis",
        json={
            "class": ci_class,
            "name": name,
            "criticality": criticality,
            "attributes": ATTRIBUTES[ci_class],
        },
        headers=headers,
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def relate(config, headers, source, type_, target):
    response = await config.post(
        "/relationships",
        json={"type": type_, "source_id": source, "target_id": target},
        headers=headers,
    )
    assert response.status_code in (200, 201), response.text
    return response.json()["id"]


async def impact(config, headers, ci_id, **params):
    response = await config.get(f"/cis/{ci_id}/impact", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
async def estate(config, manager):
    """payroll (service) <-provides- payroll-app -depends_on-> payroll-db -runs_on-> srv-1;
    billing (service) <-provides- billing-app -depends_on-> payroll-db; srv-1 also hosts cache."""
    ids = {
        "payroll": await ci(config, manager, "business_service", "Payroll", 1),
        "billing": await ci(config, manager, "business_service", "Billing", 2),
        "payroll-app": await ci(config, manager, "application", "payroll-app"),
        "billing-app": await ci(config, manager, "application", "billing-app"),
        "payroll-db": await ci(config, manager, "database", "payroll-db"),
        "srv-1": await ci(config, manager, "server", "srv-1"),
    }
    await relate(config, manager, ids["payroll-app"], "provides", ids["payroll"])
    await relate(config, manager, ids["billing-app"], "provides", ids["billing"])
    await relate(config, manager, ids["payroll-app"], "depends_on", ids["payroll-db"])
    await relate(config, manager, ids["billing-app"], "depends_on", ids["payroll-db"])
    await relate(config, manager, ids["payroll-db"], "runs_on", ids["srv-1"])
    return ids


async def test_impact_of_a_server_reaches_the_business_services_with_their_paths(
    config, manager, estate
):
    found = await impact(config, manager, estate["srv-1"])
    names = {i["name"]: i for i in found["items"]}
    assert set(names) == {"payroll-db", "payroll-app", "billing-app", "Payroll", "Billing"}
    assert names["payroll-db"]["depth"] == 1
    assert names["Payroll"]["depth"] == 3
    assert names["Payroll"]["paths"] == [
        [estate["srv-1"], estate["payroll-db"], estate["payroll-app"], estate["payroll"]]
    ]
    services = [(s["name"], s["criticality"]) for s in found["business_services"]]
    assert services == [("Payroll", 1), ("Billing", 2)]
    assert found["truncated"] is False
    registry = config.runtime.registry
    assert (
        sample_value(
            registry, "itsm_config_impact_query_duration_seconds_count", {"direction": "upward"}
        )
        >= 1
    )


async def test_downward_impact_lists_what_a_service_depends_on(config, manager, estate):
    found = await impact(config, manager, estate["payroll"], direction="downward")
    assert {i["name"] for i in found["items"]} == {"payroll-app", "payroll-db", "srv-1"}


async def test_depth_limits_the_walk(config, manager, estate):
    found = await impact(config, manager, estate["srv-1"], depth=2)
    assert {i["name"] for i in found["items"]} == {"payroll-db", "payroll-app", "billing-app"}


async def test_several_paths_to_the_same_ci_are_all_reported(config, manager, estate):
    await relate(config, manager, estate["billing-app"], "depends_on", estate["payroll-app"])
    found = await impact(config, manager, estate["payroll-db"])
    billing = next(i for i in found["items"] if i["name"] == "Billing")
    assert billing["depth"] == 2
    assert len(billing["paths"]) == 2


async def test_paths_come_shortest_first_and_items_by_depth_criticality_and_name(
    config, manager, estate
):
    await relate(config, manager, estate["billing-app"], "depends_on", estate["payroll-app"])
    found = await impact(config, manager, estate["payroll-db"])
    assert [(i["name"], i["depth"]) for i in found["items"]] == [
        ("billing-app", 1),
        ("payroll-app", 1),
        ("Payroll", 2),
        ("Billing", 2),
    ]
    billing = found["items"][3]
    assert billing["paths"] == [
        [estate["payroll-db"], estate["billing-app"], estate["billing"]],
        [estate["payroll-db"], estate["payroll-app"], estate["billing-app"], estate["billing"]],
    ]
    assert [s["name"] for s in found["business_services"]] == ["Payroll", "Billing"]


async def test_names_with_quotes_backslashes_controls_and_non_ascii_come_back_intact(
    config, manager
):
    awkward = 'say "hi" \\ C:\\temp\tcol\nline \u00fcml\u00e4ut \u2713 </script>'
    server = await ci(config, manager, "server", "plain")
    app = await ci(config, manager, "application", awkward)
    await relate(config, manager, app, "runs_on", server)
    found = await impact(config, manager, server)
    assert [(i["id"], i["name"], i["class"], i["status"]) for i in found["items"]] == [
        (app, awkward, "application", "active")
    ]
    assert found["items"][0]["paths"] == [[server, app]]


async def test_a_cycle_is_walked_once_and_ends(config, manager):
    a = await ci(config, manager, "application", "a")
    b = await ci(config, manager, "application", "b")
    c = await ci(config, manager, "application", "c")
    await relate(config, manager, a, "depends_on", b)
    await relate(config, manager, b, "depends_on", c)
    await relate(config, manager, c, "depends_on", a)
    found = await impact(config, manager, a, depth=10)
    assert sorted((i["name"], i["depth"]) for i in found["items"]) == [("b", 2), ("c", 1)]


async def test_a_removed_relationship_no_longer_counts_but_stays_in_the_history(
    config, manager, estate
):
    relationship = await relate(
        config, manager, estate["billing-app"], "depends_on", estate["payroll-db"]
    )
    removed = await config.delete(
        f"/relationships/{relationship}", params={"reason": "migrated"}, headers=manager
    )
    assert removed.status_code == 200
    assert removed.json()["removed_at"] is not None
    found = await impact(config, manager, estate["payroll-db"])
    assert "Billing" not in {i["name"] for i in found["items"]}
    history = await config.get(f"/cis/{estate['payroll-db']}/relationships", headers=manager)
    assert relationship in [r["id"] for r in history.json()]
    again = await config.delete(f"/relationships/{relationship}", headers=manager)
    assert again.status_code == 404


async def test_relating_an_unknown_or_foreign_ci_is_refused_naming_the_field(
    config, manager, auth, estate
):
    stranger = auth(f"t-{uuid.uuid4().hex[:12]}", "config_manager")
    theirs = await ci(config, stranger, "server", "theirs")
    response = await config.post(
        "/relationships",
        json={"type": "runs_on", "source_id": estate["payroll-db"], "target_id": theirs},
        headers=manager,
    )
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["target_id"]
    foreign = await config.get(f"/cis/{estate['srv-1']}/impact", headers=stranger)
    assert foreign.status_code == 404
