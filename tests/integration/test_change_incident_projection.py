"""The change service's projection of incidents on the real broker and database: incidents the
incident service logs, declares major and resolves reach `open_major_incidents` and
`incident_exists`; older versions replayed change nothing; suspicions are kept once; tenants
never see each other's incidents."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaProducer

from services.change.adapters import incidents
from shared.db import tenant_transaction
from shared.events.envelope import new_envelope
from tests.integration.test_incident_management import create, move, seed
from tests.support import eventually, send_event


@pytest.fixture
async def incident_api(service_client):
    return await service_client("incident")


@pytest.fixture
async def change_service(start_runtime):
    return await start_runtime("change")


@pytest.fixture
def agent(auth, tenant):
    return auth(tenant, "agent", subject="alice")


@pytest.fixture
async def raw_producer(infra):
    producer = AIOKafkaProducer(bootstrap_servers=infra.bootstrap_servers)
    await producer.start()
    yield producer
    await producer.stop()


async def majors(pools, tenant, *, services=(), ci_ids=()):
    async with tenant_transaction(pools["change"], tenant, readonly=True) as conn:
        return await incidents.open_major_incidents(
            conn, tenant, services=list(services), ci_ids=list(ci_ids)
        )


async def exists(pools, tenant, incident_id):
    async with tenant_transaction(pools["change"], tenant, readonly=True) as conn:
        return await incidents.incident_exists(conn, tenant, uuid.UUID(incident_id))


def event(tenant, subject, type, version, data, *, at=None):
    envelope = new_envelope(
        source="itsm/incident",
        type=type,
        subject=subject,
        tenantid=tenant,
        itsmversion=version,
        actor="tester",
        data=data,
    )
    if at is not None:
        envelope = envelope.model_copy(update={"time": at})
    return envelope


def created(tenant, subject, *, major=False, services=(), ci_id=None):
    data = {
        "title": "Orders failing",
        "description": "",
        "impact": 1,
        "urgency": 1,
        "priority": 1,
        "state": "new",
        "number": 7,
        "major": major,
        "services": list(services),
        "ci_id": ci_id,
    }
    return event(tenant, subject, "itsm.incident.created.v1", 1, data)


def transitioned(tenant, subject, version, to_state, from_state="in_progress"):
    data = {"from_state": from_state, "to_state": to_state, "priority": 1}
    return event(tenant, subject, "itsm.incident.transitioned.v1", version, data)


async def test_a_major_incident_logged_on_a_ci_is_open_on_its_services_until_resolved(
    incident_api, change_service, agent, pools, tenant
):
    ci_id, service_id = await seed(pools, tenant)
    incident = await create(incident_api, agent, impact=1, urgency=1, ci_id=ci_id)
    assert incident["major"] is True

    found = await eventually(lambda: majors(pools, tenant, services=[service_id]), bool)
    [major] = found
    assert major.incident_id == uuid.UUID(incident["id"])
    assert major.number == incident["number"]
    assert major.services == (service_id,)
    assert major.ci_id == uuid.UUID(ci_id)
    assert major.declared_at is not None
    assert await majors(pools, tenant, ci_ids=[uuid.UUID(ci_id)]) == found
    assert await majors(pools, tenant, services=["another-service"]) == []
    assert await exists(pools, tenant, incident["id"])

    moved = await move(incident_api, agent, incident, "in_progress")
    resolved = await move(
        incident_api,
        agent,
        moved.json(),
        "resolved",
        resolution_code="solved_permanently",
        resolution_notes="restarted",
    )
    assert resolved.status_code == 200, resolved.text

    await eventually(lambda: majors(pools, tenant, services=[service_id]), lambda m: m == [])
    assert await exists(pools, tenant, incident["id"])


async def test_an_incident_not_yet_projected_does_not_exist_and_a_minor_one_is_no_major(
    incident_api, change_service, agent, pools, tenant
):
    assert not await exists(pools, tenant, str(uuid.uuid4()))
    ci_id, service_id = await seed(pools, tenant)
    minor = await create(incident_api, agent, impact=3, urgency=3, ci_id=ci_id)

    await eventually(lambda: exists(pools, tenant, minor["id"]), bool)
    assert await majors(pools, tenant, services=[service_id], ci_ids=[uuid.UUID(ci_id)]) == []


async def test_an_older_version_replayed_after_a_newer_one_changes_nothing(
    change_service, pools, tenant, raw_producer
):
    subject, service_id = str(uuid.uuid4()), f"svc-{uuid.uuid4().hex[:6]}"
    await send_event(raw_producer, created(tenant, subject, major=True, services=[service_id]))
    await send_event(raw_producer, transitioned(tenant, subject, 2, "in_progress", "new"))
    await send_event(raw_producer, transitioned(tenant, subject, 3, "resolved"))
    # The create and the move into progress again, as new events (a rebuild, a replay).
    await send_event(raw_producer, created(tenant, subject, major=True, services=[service_id]))
    await send_event(raw_producer, transitioned(tenant, subject, 2, "in_progress", "new"))
    # The same incident id in another tenant: the same message key, so the same partition,
    # applied after everything above.
    other = f"t-{uuid.uuid4().hex[:12]}"
    await send_event(raw_producer, created(other, subject))

    await eventually(lambda: exists(pools, other, subject), bool)
    assert await majors(pools, tenant, services=[service_id]) == []
    async with tenant_transaction(pools["change"], tenant, readonly=True) as conn:
        row = await conn.fetchrow(
            "SELECT state, version, resolved_at FROM proj_incidents WHERE id = $1",
            uuid.UUID(subject),
        )
    assert (row["state"], row["version"]) == ("resolved", 3)
    assert row["resolved_at"] is not None


async def test_a_major_declared_by_an_update_moves_to_the_new_services_of_the_incident(
    change_service, pools, tenant, raw_producer
):
    subject = str(uuid.uuid4())
    before, after = f"svc-{uuid.uuid4().hex[:6]}", f"svc-{uuid.uuid4().hex[:6]}"
    await send_event(raw_producer, created(tenant, subject, services=[before]))
    update = {
        "changes": {"services": {"from": [before], "to": [after]}},
        "priority": 1,
        "state": "new",
        "services": [after],
    }
    await send_event(raw_producer, event(tenant, subject, "itsm.incident.updated.v1", 2, update))
    declared = {"title": "Orders failing", "priority": 1, "reason": "flagged", "services": [after]}
    await send_event(
        raw_producer, event(tenant, subject, "itsm.incident.major_declared.v1", 2, declared)
    )

    [major] = await eventually(lambda: majors(pools, tenant, services=[after]), bool)
    assert major.incident_id == uuid.UUID(subject)
    assert await majors(pools, tenant, services=[before]) == []


async def test_a_suspected_change_is_kept_once_and_a_tenant_sees_only_its_own(
    change_service, pools, tenant, raw_producer
):
    subject, change_id = str(uuid.uuid4()), str(uuid.uuid4())
    ci_id = str(uuid.uuid4())
    implemented_at = datetime.now(UTC) - timedelta(hours=1)
    data = {
        "change_id": change_id,
        "ci_id": ci_id,
        "implemented_at": implemented_at.isoformat(),
        "window_seconds": 86_400,
    }
    other = f"t-{uuid.uuid4().hex[:12]}"
    for _ in range(2):  # a retrying publisher: two events, one suspicion
        await send_event(
            raw_producer, event(tenant, subject, "itsm.incident.change_suspected.v1", 2, data)
        )
    # The same incident id in another tenant: the same key, so applied after the two above.
    await send_event(raw_producer, created(other, subject, major=True, services=["shared-name"]))

    async def suspected():
        async with tenant_transaction(pools["change"], tenant, readonly=True) as conn:
            return await incidents.suspected_incidents(conn, tenant, change_id)

    await eventually(lambda: exists(pools, other, subject), bool)
    [suspicion] = await eventually(suspected, bool)
    assert suspicion.incident_id == uuid.UUID(subject)
    assert suspicion.ci_id == ci_id
    assert suspicion.implemented_at == implemented_at
    assert await majors(pools, tenant, services=["shared-name"]) == []
    assert not await exists(pools, tenant, subject)
