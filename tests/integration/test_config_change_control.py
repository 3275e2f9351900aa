"""Configuration items under change control on the real broker and database (issue 19): the
config service checks a CI write's `change_id` against its projection of the change service's
events and records it in the CI's history; a controlled CI modified, or drifted, with no
authorising change is announced, and the change service opens one unauthorized change to
review it, however often the announcement arrives."""

import json
import uuid
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaProducer

from services.change.application.uow import ChangeUnitOfWork, store_change, store_new_change
from services.change.domain.change import Change, open_change, transition
from shared.context import RequestContext
from shared.events.binding import from_kafka
from shared.events.catalogue import CONFIG_EVENTS
from tests.support import (
    end_offsets,
    eventually,
    fetch_as,
    fetchval_as,
    published_so_far,
    read_topic,
    sample_value,
    send_event,
)

# The normal route to implement.
ROUTE = ("assess", "authorize", "scheduled", "implement")
SERVER = {
    "class": "server",
    "name": "pay-db-1",
    "criticality": 2,
    "attributes": {"hostname": "pay-db-1", "environment": "production"},
}


@pytest.fixture
async def config(service_client):
    return await service_client("config")


@pytest.fixture
async def change(service_client):
    return await service_client("change")


@pytest.fixture
def manager(auth, tenant):
    return auth(tenant, "config_manager", subject="carol")


@pytest.fixture
async def raw_producer(infra):
    producer = AIOKafkaProducer(bootstrap_servers=infra.bootstrap_servers)
    await producer.start()
    yield producer
    await producer.stop()


async def a_ci(config, headers, **overrides):
    body = {**SERVER, "external_ids": {"vcenter": f"h-{uuid.uuid4().hex[:8]}"}, **overrides}
    response = await config.post("/cis", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def patch(config, headers, ci_id, version, **body):
    return await config.patch(
        f"/cis/{ci_id}", json=body, headers={**headers, "If-Match": f'"{version}"'}
    )


async def a_change_in(change, tenant, state, ci_ids):
    """A normal change on these CIs moved to `state` by the change service's own record code;
    its relay publishes the events the config service projects."""
    context = RequestContext(tenant, "dave", "corr-change-control")
    now = datetime.now(UTC)
    async with ChangeUnitOfWork(change.runtime.pool, context) as uow:
        record, events = open_change(
            tenant_id=tenant,
            number=await uow.changes.next_number(),
            type="normal",
            title="Resize the payments database",
            description="",
            justification="capacity",
            requester="dave",
            actor="dave",
            now=now,
            affected_cis=tuple(uuid.UUID(c) for c in ci_ids),
        )
        await store_new_change(uow, record, events)
        for wanted in ROUTE[: ROUTE.index(state) + 1] if state != "new" else ():
            record = await store_change(
                uow, transition(record, wanted, actor="dave", now=now), "transitioned"
            )
    return record


async def projected(config, tenant, record: Change):
    """Wait until the config service's projection shows the change in its state."""
    await eventually(
        lambda: fetchval_as(
            config.runtime.pool,
            tenant,
            "SELECT state FROM change_projection WHERE change_id = $1",
            record.id,
        ),
        lambda state: state == record.state,
    )


async def unauthorized_changes(change, tenant, ci_id):
    return await fetch_as(
        change.runtime.pool,
        tenant,
        "SELECT id, type, origin, state, title, requester, affected_cis FROM changes"
        " WHERE origin = 'unauthorized' AND $1 = ANY (affected_cis)",
        uuid.UUID(ci_id),
    )


async def test_a_ci_write_under_a_change_in_implement_is_recorded_in_history_and_events(
    config, change, manager, tenant, infra
):
    ci = await a_ci(config, manager, controlled=True)
    record = await a_change_in(change, tenant, "implement", [ci["id"]])
    await projected(config, tenant, record)
    start = await end_offsets(infra.bootstrap_servers, CONFIG_EVENTS)

    updated = await patch(config, manager, ci["id"], 1, criticality=1, change_id=str(record.id))
    assert updated.status_code == 200, updated.text
    new = await config.post(
        "/cis",
        json={**SERVER, "name": "pay-db-2", "change_id": str(record.id)},
        headers=manager,
    )
    assert new.status_code == 201, new.text

    history = (await config.get(f"/cis/{ci['id']}/history", headers=manager)).json()["items"]
    assert [(v["version"], v["change_id"]) for v in history] == [(1, None), (2, str(record.id))]
    first = (await config.get(f"/cis/{new.json()['id']}/history", headers=manager)).json()
    assert first["items"][0]["change_id"] == str(record.id)

    end = await published_so_far(
        infra.bootstrap_servers, CONFIG_EVENTS, config.runtime.pool, tenant
    )
    records = await read_topic(infra.bootstrap_servers, start, to=end)
    mine = [e for e in (from_kafka(r.value, r.headers) for r in records) if e.tenantid == tenant]
    assert {(e.type, e.data["change_id"]) for e in mine} == {
        ("itsm.config.ci.updated.v1", str(record.id)),
        ("itsm.config.ci.created.v1", str(record.id)),
    }


async def test_a_ci_write_under_a_change_not_in_implement_is_refused_naming_change_id(
    config, change, manager, tenant
):
    ci = await a_ci(config, manager, controlled=True)
    record = await a_change_in(change, tenant, "scheduled", [ci["id"]])
    await projected(config, tenant, record)

    refused = await patch(config, manager, ci["id"], 1, criticality=1, change_id=str(record.id))
    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    [error] = refused.json()["errors"]
    assert error["field"] == "change_id"
    assert f"CHG{record.number} is in scheduled" in error["detail"]

    unknown = await patch(config, manager, ci["id"], 1, criticality=1, change_id=str(uuid.uuid4()))
    assert unknown.status_code == 422
    assert [e["field"] for e in unknown.json()["errors"]] == ["change_id"]

    other = await a_ci(config, manager, name="pay-db-9")
    elsewhere = await a_change_in(change, tenant, "implement", [other["id"]])
    await projected(config, tenant, elsewhere)
    unlisted = await patch(config, manager, ci["id"], 1, name="x", change_id=str(elsewhere.id))
    assert unlisted.status_code == 409
    assert "does not list" in unlisted.json()["errors"][0]["detail"]
    assert (await config.get(f"/cis/{ci['id']}", headers=manager)).json()["version"] == 1


async def test_a_controlled_ci_modified_without_a_change_opens_one_unauthorized_change(
    config, change, manager, tenant, infra, raw_producer
):
    ci = await a_ci(config, manager, controlled=True)
    start = await end_offsets(infra.bootstrap_servers, CONFIG_EVENTS)
    modified = await patch(config, manager, ci["id"], 1, criticality=1)
    assert modified.status_code == 200, modified.text

    found = await eventually(
        lambda: unauthorized_changes(change, tenant, ci["id"]), lambda rows: len(rows) == 1
    )
    [row] = found
    assert (row["type"], row["state"], row["requester"]) == ("normal", "new", "carol")
    assert (
        row["title"] == "Unauthorized change on pay-db-1: criticality (modified without a change)"
    )
    assert row["affected_cis"] == [uuid.UUID(ci["id"])]
    registry = change.runtime.registry
    assert (
        sample_value(registry, "itsm_change_unauthorized_total", {"found_by": "ci_modified"}) == 1
    )

    # The same announcement delivered again opens nothing more. A second detection (another
    # event id) sent after it on the same partition (the CI's key) does open one: once it is
    # there, the repeated one before it has been handled.
    end = await published_so_far(
        infra.bootstrap_servers, CONFIG_EVENTS, config.runtime.pool, tenant
    )
    records = await read_topic(infra.bootstrap_servers, start, to=end)
    [detected] = [
        e
        for e in (from_kafka(r.value, r.headers) for r in records)
        if e.tenantid == tenant and e.type == "itsm.config.ci.unauthorized_change_detected.v1"
    ]
    assert detected.data["found_by"] == "ci_modified" and detected.data["by"] == "carol"
    await send_event(raw_producer, detected, CONFIG_EVENTS)
    await send_event(raw_producer, detected.model_copy(update={"id": uuid.uuid4()}), CONFIG_EVENTS)
    await eventually(
        lambda: unauthorized_changes(change, tenant, ci["id"]), lambda rows: len(rows) >= 2
    )
    assert len(await unauthorized_changes(change, tenant, ci["id"])) == 2
    assert (
        await fetchval_as(
            change.runtime.pool,
            tenant,
            "SELECT count(*) FROM unauthorized_detections WHERE detection_id = $1",
            detected.id,
        )
        == 1
    )


async def test_drift_on_a_ci_of_a_controlled_class_opens_an_unauthorized_change(
    config, change, manager, tenant, auth
):
    admin = auth(tenant, "tenant_admin", subject="erin")
    empty = await config.get("/change-control", headers=manager)
    assert (empty.status_code, empty.json(), empty.headers["etag"]) == (
        200,
        {"classes": [], "version": 0},
        '"0"',
    )
    put = await config.put(
        "/change-control", json={"classes": ["server"]}, headers={**admin, "If-Match": '"0"'}
    )
    assert put.status_code == 200, put.text
    assert put.json() == {"classes": ["server"], "version": 1}
    stale = await config.put(
        "/change-control", json={"classes": []}, headers={**admin, "If-Match": '"0"'}
    )
    assert stale.status_code == 412

    ci = await a_ci(config, manager, external_ids={"vcenter": "drifty"})
    row = {
        "external_id": "drifty",
        "class": "server",
        "name": "pay-db-1",
        "attributes": {"hostname": "pay-db-1", "os": "Debian 13"},
    }
    imported = await config.post(
        "/imports",
        params={"source": "vcenter"},
        content=(json.dumps(row) + "\n").encode(),
        headers={**manager, "Content-Type": "application/x-ndjson"},
    )
    assert imported.status_code == 201, imported.text
    assert imported.json()["outcomes"]["drift"] == 1

    [found] = await eventually(
        lambda: unauthorized_changes(change, tenant, ci["id"]), lambda rows: len(rows) == 1
    )
    assert (
        found["title"]
        == "Unauthorized change on pay-db-1: attributes.os (drift found by discovery)"
    )
    assert found["requester"] == "discovery:vcenter"
    assert (
        sample_value(
            change.runtime.registry, "itsm_change_unauthorized_total", {"found_by": "drift"}
        )
        >= 1
    )
