"""Configuration items on the real database and broker: validation, versions, history, events."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared.events.binding import from_kafka
from shared.events.catalogue import CONFIG_EVENTS
from tests.support import clock_passes, end_offsets, read_topic

SERVER = {
    "class": "server",
    "name": "db-host-7",
    "criticality": 2,
    "owner_team": "platform",
    "attributes": {"hostname": "db-host-7", "os": "Debian 12", "environment": "production"},
    "external_ids": {"vcenter": "host-7"},
}


@pytest.fixture
async def config(service_client):
    return await service_client("config")


@pytest.fixture
def manager(auth, tenant):
    return auth(tenant, "config_manager", subject="carol")


async def create(config, headers, **overrides):
    body = {**SERVER, "external_ids": {"vcenter": f"host-{uuid.uuid4().hex[:8]}"}, **overrides}
    response = await config.post("/cis", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response


async def patch(config, headers, ci_id, version, **body):
    return await config.patch(
        f"/cis/{ci_id}", json=body, headers={**headers, "If-Match": f'"{version}"'}
    )


def events_of(records, tenant):
    return [
        from_kafka(r.value, r.headers)
        for r in records
        if dict(r.headers).get("ce_tenantid") == tenant.encode()
    ]


async def test_every_write_emits_its_event_with_the_full_new_state(config, manager, tenant, infra):
    start = await end_offsets(infra.bootstrap_servers, CONFIG_EVENTS)
    created = (await create(config, manager)).json()
    updated = await patch(config, manager, created["id"], 1, criticality=1, reason="now tier 1")
    assert updated.status_code == 200, updated.text
    retired = await patch(config, manager, created["id"], 2, status="retired")
    assert retired.status_code == 200

    records = await read_topic(
        infra.bootstrap_servers, start, until=lambda rs: len(events_of(rs, tenant)) >= 3
    )
    events = events_of(records, tenant)
    assert [e.type for e in events] == [
        "itsm.config.ci.created.v1",
        "itsm.config.ci.updated.v1",
        "itsm.config.ci.retired.v1",
    ]
    assert [e.itsmversion for e in events] == [1, 2, 3]
    assert {e.subject for e in events} == {created["id"]}
    assert events[1].data["changed"] == ["criticality"]
    assert events[1].data["reason"] == "now tier 1"
    assert events[1].data["ci"]["criticality"] == 1
    assert events[1].data["ci"]["attributes"] == SERVER["attributes"]
    assert events[2].data["ci"]["status"] == "retired"


async def test_an_attribute_that_breaks_its_class_schema_is_a_422_naming_it_with_its_pointer(
    config, manager
):
    response = await config.post(
        "/cis",
        json={**SERVER, "attributes": {**SERVER["attributes"], "cpu_cores": "many"}},
        headers=manager,
    )
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["attributes.cpu_cores"]
    assert [e["pointer"] for e in response.json()["errors"]] == ["#/attributes/cpu_cores"]
    unknown_class = await config.post("/cis", json={**SERVER, "class": "toaster"}, headers=manager)
    assert unknown_class.status_code == 422
    assert [e["field"] for e in unknown_class.json()["errors"]] == ["class"]


async def test_a_stale_write_is_412_and_a_write_without_if_match_is_428(config, manager):
    created = await create(config, manager)
    assert created.headers["etag"] == '"1"'
    ci_id = created.json()["id"]
    first = await patch(config, manager, ci_id, 1, name="db-host-7a")
    assert (first.status_code, first.headers["etag"]) == (200, '"2"')
    stale = await patch(config, manager, ci_id, 1, name="db-host-7b")
    assert stale.status_code == 412
    assert stale.headers["etag"] == '"2"'
    unconditional = await config.patch(f"/cis/{ci_id}", json={"name": "x"}, headers=manager)
    assert unconditional.status_code == 428
    assert [e["field"] for e in unconditional.json()["errors"]] == ["If-Match"]


async def test_history_records_every_version_and_as_of_returns_the_ci_as_it_was(
    config, manager, auth, tenant
):
    before = datetime.now(UTC)
    created = (await create(config, manager)).json()
    ci_id = created["id"]
    # The instant version 1 was stored at: as of it, the CI is as created, whatever follows.
    between = datetime.fromisoformat(created["updated_at"])
    await clock_passes(between)
    await patch(config, manager, ci_id, 1, owner_team="dba", reason="handover")

    history = await config.get(f"/cis/{ci_id}/history", headers=auth(tenant, "auditor"))
    assert history.status_code == 200
    items = history.json()["items"]
    assert [(v["version"], v["actor"], v["changed"]) for v in items] == [
        (1, "carol", ["created"]),
        (2, "carol", ["owner_team"]),
    ]
    assert items[1]["reason"] == "handover"
    assert datetime.fromisoformat(items[0]["at"]) == between
    assert datetime.fromisoformat(items[1]["at"]) > between
    assert items[1]["state"]["owner_team"] == "dba"

    then = await config.get(f"/cis/{ci_id}", params={"as_of": between.isoformat()}, headers=manager)
    assert (then.status_code, then.json()["owner_team"], then.json()["version"]) == (
        200,
        "platform",
        1,
    )
    now = await config.get(f"/cis/{ci_id}", headers=manager)
    assert now.json()["owner_team"] == "dba"
    not_yet = await config.get(
        f"/cis/{ci_id}",
        params={"as_of": (before - timedelta(seconds=1)).isoformat()},
        headers=manager,
    )
    assert not_yet.status_code == 404


async def test_the_same_values_again_make_no_new_version(config, manager):
    ci_id = (await create(config, manager)).json()["id"]
    same = await patch(config, manager, ci_id, 1, criticality=SERVER["criticality"])
    assert (same.status_code, same.json()["version"]) == (200, 1)


async def test_a_change_reference_is_kept_in_the_history(config, manager):
    # A free-text reference (another tool's ticket); the change that authorises a write of a
    # controlled CI is `change_id` (tests/integration/test_config_change_control.py).
    ci_id = (await create(config, manager, controlled=True)).json()["id"]
    accepted = await patch(config, manager, ci_id, 1, criticality=1, change_ref="CHG-1042")
    assert accepted.status_code == 200
    history = (await config.get(f"/cis/{ci_id}/history", headers=manager)).json()["items"]
    assert (history[-1]["change_ref"], history[-1]["change_id"]) == ("CHG-1042", None)


async def test_a_retired_ci_cannot_be_modified(config, manager):
    ci_id = (await create(config, manager)).json()["id"]
    await patch(config, manager, ci_id, 1, status="retired")
    again = await patch(config, manager, ci_id, 2, status="active")
    assert again.status_code == 409


async def test_another_tenants_ci_reads_and_writes_as_not_found(config, manager, auth):
    ci_id = (await create(config, manager)).json()["id"]
    stranger = auth(f"t-{uuid.uuid4().hex[:12]}", "tenant_admin")
    missing = await config.get(f"/cis/{uuid.uuid4()}", headers=stranger)
    read = await config.get(f"/cis/{ci_id}", headers=stranger)
    write = await patch(config, stranger, ci_id, 1, name="hijacked")
    history = await config.get(f"/cis/{ci_id}/history", headers=stranger)
    assert read.status_code == write.status_code == history.status_code == 404
    assert read.json()["title"] == missing.json()["title"]


async def test_an_external_id_belongs_to_one_ci_per_source(config, manager):
    first = (await create(config, manager)).json()
    clash = await config.post(
        "/cis", json={**SERVER, "external_ids": first["external_ids"]}, headers=manager
    )
    assert clash.status_code == 409
    assert [e["field"] for e in clash.json()["errors"]] == ["external_ids.vcenter"]


async def test_a_tenant_class_validates_the_attributes_of_its_cis(config, auth, tenant):
    admin = auth(tenant, "tenant_admin")
    schema = {
        "type": "object",
        "properties": {"slot": {"type": "integer", "minimum": 1}},
        "required": ["slot"],
        "additionalProperties": False,
    }
    defined = await config.put(
        "/ci-classes/blade", json={"attribute_schema": schema}, headers=admin
    )
    assert defined.status_code == 201, defined.text
    redefined = await config.put(
        "/ci-classes/blade", json={"attribute_schema": schema, "description": "v2"}, headers=admin
    )
    assert (redefined.status_code, redefined.json()["version"]) == (200, 2)
    bad = await config.post(
        "/cis", json={"class": "blade", "name": "b1", "attributes": {"slot": 0}}, headers=admin
    )
    assert [e["field"] for e in bad.json()["errors"]] == ["attributes.slot"]
    good = await config.post(
        "/cis", json={"class": "blade", "name": "b1", "attributes": {"slot": 3}}, headers=admin
    )
    assert good.status_code == 201
    listed = (await config.get("/ci-classes", headers=admin)).json()
    assert {"blade", "server", "business_service"} <= {c["name"] for c in listed}
    builtin = await config.put(
        "/ci-classes/server", json={"attribute_schema": schema}, headers=admin
    )
    assert builtin.status_code == 409
    not_an_object = await config.put(
        "/ci-classes/odd", json={"attribute_schema": {"type": "string"}}, headers=admin
    )
    assert not_an_object.status_code == 422
    assert not_an_object.json()["errors"][0]["field"] == "attribute_schema.type"
