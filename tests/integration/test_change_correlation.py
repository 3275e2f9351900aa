"""Change correlation on the real broker and database: changes announced on
`itsm.change.events`, and CI writes under a change on `itsm.config.events`, flag incidents on
their CIs within the tenant's window, whichever comes first, once, and never across tenants."""

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaProducer

from services.incident.adapters import projections
from services.incident.entrypoints.consumers import CHANGE_CORRELATION_CONSUMER
from shared.db import tenant_transaction
from shared.events.catalogue import CHANGE_EVENTS, CONFIG_EVENTS, INCIDENT_EVENTS, CiStateV1
from shared.events.envelope import new_envelope
from shared.kafka import DEAD_LETTER_TOPIC
from tests.support import (
    end_offsets,
    eventually,
    fetchval_as,
    header,
    published_so_far,
    read_topic,
    send_event,
)


@pytest.fixture
async def api(service_client):
    return await service_client("incident")


@pytest.fixture
def agent(auth, tenant):
    return auth(tenant, "agent", subject="alice")


@pytest.fixture
async def raw_producer(infra):
    producer = AIOKafkaProducer(bootstrap_servers=infra.bootstrap_servers)
    await producer.start()
    yield producer
    await producer.stop()


async def a_ci(pools, tenant, name="orders-db"):
    """A CI in the incident service's projection (as the config service's events put it)."""
    ci_id = str(uuid.uuid4())
    async with tenant_transaction(pools["incident"], tenant) as conn:
        await projections.upsert_cis(
            conn,
            tenant,
            [
                CiStateV1(
                    id=ci_id,
                    ci_class="database",
                    name=name,
                    status="active",
                    owner_team="dba",
                    criticality=2,
                    attributes={},
                    external_ids={},
                    controlled=False,
                    version=1,
                    updated_at=datetime.now(UTC),
                    updated_by="tester",
                )
            ],
        )
    return ci_id


def implemented(tenant, change_id, ci_ids, at, *, outcome="successful"):
    """`itsm.change.implemented.v1` as the change service will publish it."""
    return new_envelope(
        source="itsm/change",
        type="itsm.change.implemented.v1",
        subject=change_id,
        tenantid=tenant,
        itsmversion=1,
        actor="cicd",
        data={
            "change_id": change_id,
            "title": "Upgrade the database",
            "ci_ids": ci_ids,
            "implemented_at": at.isoformat(),
            "outcome": outcome,
        },
    )


async def recorded(pools, tenant, change_id):
    async with tenant_transaction(pools["incident"], tenant, readonly=True) as conn:
        return await conn.fetchval(
            "SELECT count(*) FROM change_implementations WHERE change_id = $1", change_id
        )


async def new_incident(api, headers, ci_id):
    response = await api.post(
        "/incidents",
        json={"title": "Orders failing", "impact": 2, "urgency": 2, "ci_id": ci_id},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    return response.json()


async def suspicions(infra, pools, tenant, start, incident_id, count):
    """The change_suspected events of an incident, once `count` of them are on the topic."""

    def mine(records):
        return [
            json.loads(r.value)
            for r in records
            if r.key == incident_id.encode()
            and header(r, "ce_type") == "itsm.incident.change_suspected.v1"
        ]

    bootstrap = infra.bootstrap_servers
    end = await published_so_far(bootstrap, INCIDENT_EVENTS, pools["incident"], tenant)
    records = await read_topic(bootstrap, start, until=lambda rs: len(mine(rs)) >= count, to=end)
    return mine(records)


async def test_an_incident_on_a_ci_changed_within_the_window_is_flagged_when_logged(
    api, agent, pools, tenant, infra, raw_producer
):
    ci_id = await a_ci(pools, tenant)
    change_id = f"CHG-{uuid.uuid4().hex[:8]}"
    await send_event(
        raw_producer,
        implemented(tenant, change_id, [ci_id], datetime.now(UTC) - timedelta(hours=2)),
        CHANGE_EVENTS,
    )
    await eventually(lambda: recorded(pools, tenant, change_id), lambda n: n == 1)
    start = await end_offsets(infra.bootstrap_servers, INCIDENT_EVENTS)

    incident = await new_incident(api, agent, ci_id)

    assert incident["suspected_change"] == change_id
    [event] = await suspicions(infra, pools, tenant, start, incident["id"], 1)
    assert event["change_id"] == change_id
    assert event["ci_id"] == ci_id
    assert event["window_seconds"] == 86_400


async def test_a_change_announced_after_the_incident_flags_it_with_a_new_version(
    api, agent, pools, tenant, infra, raw_producer
):
    ci_id = await a_ci(pools, tenant)
    incident = await new_incident(api, agent, ci_id)
    assert incident["suspected_change"] is None
    start = await end_offsets(infra.bootstrap_servers, INCIDENT_EVENTS)
    change_id = f"CHG-{uuid.uuid4().hex[:8]}"
    at = datetime.fromisoformat(incident["created_at"]) - timedelta(minutes=30)

    await send_event(raw_producer, implemented(tenant, change_id, [ci_id], at), CHANGE_EVENTS)

    async def read():
        return (await api.get(f"/incidents/{incident['id']}", headers=agent)).json()

    flagged = await eventually(read, lambda i: i["suspected_change"] == change_id)
    assert flagged["version"] == incident["version"] + 1
    [event] = await suspicions(infra, pools, tenant, start, incident["id"], 1)
    assert event["change_id"] == change_id
    history = (await api.get(f"/incidents/{incident['id']}/history", headers=agent)).json()
    assert history[-1]["action"] == "change_suspected"
    assert history[-1]["actor"] == "system:change-correlation"


async def test_changes_outside_the_window_or_on_other_cis_flag_nothing(
    api, agent, auth, pools, tenant, raw_producer
):
    admin = auth(tenant, "tenant_admin")
    saved = await api.put(
        "/incident-settings",
        json={"change_window_seconds": 3600},
        headers={**admin, "If-Match": '"0"'},
    )
    assert saved.status_code == 200
    ci_id, other_ci = await a_ci(pools, tenant), await a_ci(pools, tenant, "other-db")
    old, elsewhere = f"CHG-old-{uuid.uuid4().hex[:6]}", f"CHG-else-{uuid.uuid4().hex[:6]}"
    now = datetime.now(UTC)
    await send_event(
        raw_producer, implemented(tenant, old, [ci_id], now - timedelta(hours=2)), CHANGE_EVENTS
    )
    await send_event(
        raw_producer,
        implemented(tenant, elsewhere, [other_ci], now - timedelta(minutes=5)),
        CHANGE_EVENTS,
    )
    await eventually(lambda: recorded(pools, tenant, elsewhere), lambda n: n == 1)
    await eventually(lambda: recorded(pools, tenant, old), lambda n: n == 1)

    incident = await new_incident(api, agent, ci_id)

    assert incident["suspected_change"] is None


async def test_the_latest_change_before_the_incident_is_the_suspect_and_repeats_flag_once(
    api, agent, pools, tenant, infra, raw_producer
):
    ci_id = await a_ci(pools, tenant)
    incident = await new_incident(api, agent, ci_id)
    start = await end_offsets(infra.bootstrap_servers, INCIDENT_EVENTS)
    created = datetime.fromisoformat(incident["created_at"])
    earlier, later = f"CHG-a-{uuid.uuid4().hex[:6]}", f"CHG-b-{uuid.uuid4().hex[:6]}"
    later_event = implemented(tenant, later, [ci_id], created - timedelta(minutes=10))
    await send_event(raw_producer, later_event, CHANGE_EVENTS)
    await send_event(
        raw_producer,
        implemented(tenant, earlier, [ci_id], created - timedelta(hours=3)),
        CHANGE_EVENTS,
    )
    # The same announcement again, as a new event (a retrying publisher): recorded once.
    await send_event(
        raw_producer,
        implemented(tenant, later, [ci_id], created - timedelta(minutes=10)),
        CHANGE_EVENTS,
    )
    await eventually(lambda: recorded(pools, tenant, earlier), lambda n: n == 1)

    events = await suspicions(infra, pools, tenant, start, incident["id"], 2)
    assert sorted(e["change_id"] for e in events) == sorted([earlier, later])
    current = (await api.get(f"/incidents/{incident['id']}", headers=agent)).json()
    assert current["suspected_change"] == later


def ci_written(tenant, ci_id, at, change_id=None):
    """`itsm.config.ci.updated.v1` as the config service publishes a CI write, under a change's
    id when given (it accepts one only while the change is being implemented)."""
    return new_envelope(
        source="itsm/config",
        type="itsm.config.ci.updated.v1",
        subject=ci_id,
        tenantid=tenant,
        itsmversion=2,
        actor="ivan",
        data={
            "ci": {
                "id": ci_id,
                "ci_class": "database",
                "name": "orders-db",
                "status": "active",
                "owner_team": "dba",
                "criticality": 2,
                "attributes": {},
                "external_ids": {},
                "controlled": True,
                "version": 2,
                "updated_at": at.isoformat(),
                "updated_by": "ivan",
            },
            "changed": ["attributes"],
            "change_id": change_id,
        },
    )


async def test_an_incident_after_a_ci_write_under_a_change_is_flagged_while_it_is_implemented(
    api, agent, pools, tenant, infra, raw_producer
):
    ci_id = await a_ci(pools, tenant)
    earlier = await new_incident(api, agent, ci_id)
    change_id = str(uuid.uuid4())
    at = datetime.fromisoformat(earlier["created_at"]) + timedelta(microseconds=1)
    # A write with no change is skipped (not even kept in the inbox); then the change's write.
    unrelated = ci_written(tenant, ci_id, at)
    await send_event(raw_producer, unrelated, CONFIG_EVENTS)
    await send_event(raw_producer, ci_written(tenant, ci_id, at, change_id), CONFIG_EVENTS)
    await eventually(lambda: recorded(pools, tenant, change_id), lambda n: n == 1)
    assert not await fetchval_as(
        pools["incident"],
        tenant,
        "SELECT true FROM inbox WHERE consumer = $1 AND event_id = $2",
        CHANGE_CORRELATION_CONSUMER,
        unrelated.id,
    )
    start = await end_offsets(infra.bootstrap_servers, INCIDENT_EVENTS)

    later = await new_incident(api, agent, ci_id)

    assert later["suspected_change"] == change_id
    # The implementation's end, announced when the change leaves implement, flags it no more.
    end = datetime.fromisoformat(later["created_at"]) + timedelta(minutes=5)
    await send_event(raw_producer, implemented(tenant, change_id, [ci_id], end), CHANGE_EVENTS)
    await eventually(
        lambda: fetchval_as(
            pools["incident"],
            tenant,
            "SELECT implemented_at FROM change_implementations WHERE change_id = $1",
            change_id,
        ),
        lambda implemented_at: implemented_at == end,
    )
    [event] = await suspicions(infra, pools, tenant, start, later["id"], 1)
    assert event["change_id"] == change_id
    assert datetime.fromisoformat(event["implemented_at"]) == at
    current = (await api.get(f"/incidents/{earlier['id']}", headers=agent)).json()
    assert current["suspected_change"] is None


async def test_a_change_in_one_tenant_never_flags_another_tenants_incident(
    api, agent, auth, pools, tenant, raw_producer
):
    ci_id = await a_ci(pools, tenant)
    incident = await new_incident(api, agent, ci_id)
    other = f"t-{uuid.uuid4().hex[:12]}"
    change_id = f"CHG-{uuid.uuid4().hex[:8]}"
    await send_event(
        raw_producer,
        implemented(other, change_id, [ci_id], datetime.now(UTC) - timedelta(minutes=1)),
        CHANGE_EVENTS,
    )
    await eventually(lambda: recorded(pools, other, change_id), lambda n: n == 1)
    current = (await api.get(f"/incidents/{incident['id']}", headers=agent)).json()
    assert current["suspected_change"] is None
    assert await recorded(pools, tenant, change_id) == 0


async def test_a_change_naming_no_valid_ci_is_dead_lettered_with_the_reason(
    api, infra, tenant, raw_producer
):
    dlq_start = await end_offsets(infra.bootstrap_servers, DEAD_LETTER_TOPIC)
    bad = implemented(tenant, "CHG-bad", ["not-a-uuid"], datetime.now(UTC))
    await send_event(raw_producer, bad, CHANGE_EVENTS)

    def ours(records):
        return [
            r
            for r in records
            if r.key == bad.subject.encode()
            and header(r, "dlq_consumer") == CHANGE_CORRELATION_CONSUMER
        ]

    [dead] = ours(
        await read_topic(infra.bootstrap_servers, dlq_start, until=lambda rs: len(ours(rs)) >= 1)
    )
    assert header(dead, "dlq_source_topic") == CHANGE_EVENTS
    assert "ci_ids" in header(dead, "dlq_detail")
