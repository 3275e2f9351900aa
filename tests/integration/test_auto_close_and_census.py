"""Resolved incidents close automatically after the tenant's `auto_close_days`, once, and only
when still resolved; the census counts open incidents of every tenant for the gauge."""

import json
import uuid

import pytest
from prometheus_client import CollectorRegistry

from services.incident.application.housekeeping import census, close_due, publish_census
from services.incident.metrics import IncidentMetrics
from shared.db import tenant_transaction
from shared.events.catalogue import INCIDENT_EVENTS
from tests.support import end_offsets, header, read_topic, sample_value


@pytest.fixture
async def api(service_client):
    return await service_client("incident")


@pytest.fixture
def agent(auth, tenant):
    return auth(tenant, "agent", subject="alice")


async def create(api, headers, **fields):
    body = {"title": "Printer jam", "impact": 3, "urgency": 2, **fields}
    response = await api.post("/incidents", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def move(api, headers, incident, to, **details):
    response = await api.post(
        f"/incidents/{incident['id']}/transitions",
        json={"to": to, **details},
        headers={**headers, "If-Match": f'"{incident["version"]}"'},
    )
    assert response.status_code == 200, response.text
    return response.json()


async def resolve(api, headers, incident):
    started = await move(api, headers, incident, "in_progress")
    return await move(
        api,
        headers,
        started,
        "resolved",
        resolution_code="solved_permanently",
        resolution_notes="Cleared the jam",
    )


async def resolved_days_ago(pools, tenant, incident_id, days):
    """Pretend the incident was resolved `days` ago, with its queue entry due accordingly."""
    async with tenant_transaction(pools["incident"], tenant) as conn:
        await conn.execute(
            "UPDATE incidents SET resolved_at = now() - make_interval(days => $2) WHERE id = $1",
            uuid.UUID(incident_id),
            days,
        )
        await conn.execute(
            "UPDATE auto_close_queue SET due_at = now() - make_interval(days => $2 - 7)"
            " WHERE incident_id = $1",
            uuid.UUID(incident_id),
            days,
        )


async def queued(pools, tenant, incident_id):
    async with tenant_transaction(pools["incident"], tenant, readonly=True) as conn:
        return await conn.fetchval(
            "SELECT due_at FROM auto_close_queue WHERE incident_id = $1", uuid.UUID(incident_id)
        )


async def state_of(api, headers, incident):
    return (await api.get(f"/incidents/{incident['id']}", headers=headers)).json()


async def test_a_resolved_incident_closes_automatically_once_its_days_are_over(
    api, agent, pools, tenant, infra
):
    incident = await resolve(api, agent, await create(api, agent))
    assert await queued(pools, tenant, incident["id"]) is not None
    await resolved_days_ago(pools, tenant, incident["id"], 8)
    start = await end_offsets(infra.bootstrap_servers, INCIDENT_EVENTS)

    assert await close_due(pools["incident"]) >= 1

    closed = await state_of(api, agent, incident)
    assert closed["state"] == "closed"
    assert closed["updated_by"] == "system:auto-close"
    assert await queued(pools, tenant, incident["id"]) is None

    def moves(records):
        return [
            json.loads(r.value)
            for r in records
            if r.key == incident["id"].encode()
            and header(r, "ce_type") == "itsm.incident.transitioned.v1"
            and json.loads(r.value)["to_state"] == "closed"
        ]

    [event] = moves(
        await read_topic(infra.bootstrap_servers, start, until=lambda rs: len(moves(rs)) >= 1)
    )
    assert (event["from_state"], event["to_state"], event["automatic"]) == (
        "resolved",
        "closed",
        True,
    )


async def test_an_incident_not_yet_due_or_reopened_is_left_alone(api, agent, pools, tenant):
    fresh = await resolve(api, agent, await create(api, agent))
    reopened = await resolve(api, agent, await create(api, agent))
    reopened = await move(api, agent, reopened, "in_progress")
    assert await queued(pools, tenant, reopened["id"]) is None

    await close_due(pools["incident"])

    assert (await state_of(api, agent, fresh))["state"] == "resolved"
    assert (await state_of(api, agent, reopened))["state"] == "in_progress"


async def test_a_longer_auto_close_period_set_after_resolution_postpones_closure(
    api, agent, auth, pools, tenant
):
    incident = await resolve(api, agent, await create(api, agent))
    await resolved_days_ago(pools, tenant, incident["id"], 8)
    admin = auth(tenant, "tenant_admin")
    saved = await api.put(
        "/incident-settings", json={"auto_close_days": 30}, headers={**admin, "If-Match": '"0"'}
    )
    assert saved.status_code == 200

    await close_due(pools["incident"])

    assert (await state_of(api, agent, incident))["state"] == "resolved"
    due = await queued(pools, tenant, incident["id"])
    async with tenant_transaction(pools["incident"], tenant, readonly=True) as conn:
        in_days = await conn.fetchval("SELECT extract(epoch FROM $1 - now()) / 86400", due)
    assert 21 < in_days < 23  # resolved 8 days ago, closes 30 days after resolution


async def test_a_major_incident_without_its_review_is_not_closed_automatically(
    api, agent, pools, tenant
):
    incident = await resolve(api, agent, await create(api, agent, impact=1, urgency=1))
    assert incident["major"] is True
    await resolved_days_ago(pools, tenant, incident["id"], 8)

    await close_due(pools["incident"])

    assert (await state_of(api, agent, incident))["state"] == "resolved"
    assert await queued(pools, tenant, incident["id"]) is not None


async def test_the_census_counts_open_incidents_by_priority_and_state(api, agent, pools):
    before = await census(pools["incident"])
    p5 = [await create(api, agent, impact=3, urgency=3) for _ in range(2)]
    await move(api, agent, p5[0], "in_progress")
    await resolve(api, agent, await create(api, agent, impact=3, urgency=3))

    after = await census(pools["incident"])

    assert after[(5, "new")] - before[(5, "new")] == 1
    assert after[(5, "in_progress")] - before[(5, "in_progress")] == 1
    metrics = IncidentMetrics(CollectorRegistry())
    publish_census(metrics, after)
    gauge = sample_value(
        metrics.registry, "itsm_incident_open", {"priority": "P5", "state": "in_progress"}
    )
    assert gauge == after[(5, "in_progress")]
    assert sample_value(metrics.registry, "itsm_incident_open", {"priority": "P1"}) == sum(
        after[(1, s)] for s in ("new", "in_progress", "on_hold")
    )
