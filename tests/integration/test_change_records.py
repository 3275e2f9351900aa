"""Change records on the real broker and database: raising (CIs validated against the CMDB
projection, business services derived), emergency changes and their incident, standard changes
from the catalogue, the manual moves, outcome proposal and PIR, settings, and problem -> change
exactly once with the problem showing the change's state."""

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaProducer

from services.change.application.uow import ChangeUnitOfWork, store_change
from services.change.domain import change as domain
from shared.cmdb import writes
from shared.context import RequestContext
from shared.db import tenant_transaction
from shared.events.catalogue import (
    CHANGE_EVENTS,
    INCIDENT_EVENTS,
    CiStateV1,
    ServiceMembershipChangedV1,
)
from shared.events.envelope import new_envelope
from tests.support import end_offsets, eventually, header, read_topic, send_event


@pytest.fixture
async def api(service_client):
    return await service_client("change")


@pytest.fixture
def manager(auth, tenant):
    return auth(tenant, "change_manager", subject="carol")


@pytest.fixture
def requester(auth, tenant):
    return auth(tenant, "requester", subject="rita")


@pytest.fixture
async def raw_producer(infra):
    producer = AIOKafkaProducer(bootstrap_servers=infra.bootstrap_servers)
    await producer.start()
    yield producer
    await producer.stop()


async def a_ci(pools, tenant, *, services=(), status="active", ci_class="database"):
    """A CI in the change service's CMDB projection, supporting these business services."""
    ci_id = str(uuid.uuid4())
    async with tenant_transaction(pools["change"], tenant) as conn:
        await writes.upsert_cis(
            conn,
            tenant,
            [
                CiStateV1(
                    id=ci_id,
                    ci_class=ci_class,
                    name=f"db-{ci_id[:6]}",
                    status=status,
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
        if services:
            await writes.upsert_memberships(
                conn,
                tenant,
                [
                    ServiceMembershipChangedV1(
                        ci_id=ci_id, services=list(services), previous=[], sequence=1
                    )
                ],
            )
    return ci_id


async def known_incident(pools, tenant):
    """An incident the change service's projection knows (as its created event puts it)."""
    incident_id = uuid.uuid4()
    async with tenant_transaction(pools["change"], tenant) as conn:
        await conn.execute(
            "INSERT INTO proj_incidents (tenant_id, id, state, version, updated_at)"
            " VALUES ($1, $2, 'new', 1, now())",
            tenant,
            incident_id,
        )
    return str(incident_id)


async def raise_change(api, headers, **fields):
    body = {"type": "normal", "title": "Upgrade the database", **fields}
    response = await api.post("/changes", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def move(api, headers, change, to, **details):
    return await api.post(
        f"/changes/{change['id']}/transitions",
        json={"to": to, **details},
        headers={**headers, "If-Match": f'"{change["version"]}"'},
    )


async def moved(api, headers, change, to, **details):
    response = await move(api, headers, change, to, **details)
    assert response.status_code == 200, response.text
    return response.json()


async def approve(pools, tenant, change_id):
    """What the approvals engine does when a change's approvals complete."""
    context = RequestContext(tenant, "system:approvals", "corr")
    async with ChangeUnitOfWork(pools["change"], context) as uow:
        change = await uow.changes.locked(uuid.UUID(change_id), None)
        now = datetime.now(UTC)
        await store_change(
            uow, domain.transition(change, "scheduled", actor="cab", now=now), "transitioned"
        )


async def a_template(api, manager, **fields):
    body = {
        "name": f"Restart {uuid.uuid4().hex[:6]}",
        "implementation_plan": "systemctl restart app",
        "backout_plan": "nothing to back out",
        **fields,
    }
    response = await api.post("/change-templates", json=body, headers=manager)
    assert response.status_code == 201, response.text
    return response.json()


def errors_of(response):
    return {e["field"] for e in response.json()["errors"]}


async def test_a_change_on_known_cis_gets_their_business_services_and_an_etag(
    api, requester, pools, tenant
):
    first = await a_ci(pools, tenant, services=["payroll", "hr"])
    second = await a_ci(pools, tenant, services=["payroll"])

    response = await api.post(
        "/changes",
        json={"type": "normal", "title": "Patch", "affected_ci_ids": [first, second]},
        headers=requester,
    )

    assert response.status_code == 201, response.text
    change = response.json()
    assert response.headers["etag"] == '"1"'
    assert response.headers["location"] == f"/changes/{change['id']}"
    assert change["state"] == "new"
    assert change["reference"] == f"CHG{change['number']}"
    assert change["requester"] == "rita"
    assert change["business_services"] == ["hr", "payroll"]
    assert change["affected_ci_ids"] == [first, second]


async def test_an_unknown_or_retired_ci_is_a_422_naming_each_by_its_index(
    api, requester, pools, tenant
):
    known = await a_ci(pools, tenant)
    retired = await a_ci(pools, tenant, status="retired")
    response = await api.post(
        "/changes",
        json={
            "type": "normal",
            "title": "Patch",
            "affected_ci_ids": [known, str(uuid.uuid4()), retired],
        },
        headers=requester,
    )
    assert response.status_code == 422
    assert errors_of(response) == {"affected_ci_ids[1]", "affected_ci_ids[2]"}


async def test_an_emergency_change_without_a_known_incident_is_refused_naming_incident_ids(
    api, requester, pools, tenant
):
    none = await api.post(
        "/changes", json={"type": "emergency", "title": "Hotfix"}, headers=requester
    )
    unknown = await api.post(
        "/changes",
        json={"type": "emergency", "title": "Hotfix", "incident_ids": [str(uuid.uuid4())]},
        headers=requester,
    )
    assert (none.status_code, unknown.status_code) == (422, 422)
    assert errors_of(none) == errors_of(unknown) == {"incident_ids"}

    incident = await known_incident(pools, tenant)
    change = await raise_change(api, requester, type="emergency", incident_ids=[incident])
    assert change["incident_ids"] == [incident]


async def test_authorize_to_scheduled_by_hand_is_refused_and_wrong_first_moves_name_the_route(
    api, requester, manager
):
    change = await raise_change(api, requester)
    wrong = await move(api, manager, change, "authorize")
    assert wrong.status_code == 409
    assert wrong.json()["allowed"] == ["assess", "cancelled"]

    change = await moved(api, manager, change, "assess")
    change = await moved(api, manager, change, "authorize")
    by_hand = await move(api, manager, change, "scheduled")

    assert by_hand.status_code == 409
    assert "approvals" in by_hand.json()["detail"]
    assert "scheduled" not in by_hand.json()["allowed"]
    stale = await move(api, manager, {**change, "version": 1}, "assess")
    assert stale.status_code == 412


async def test_a_requester_may_raise_but_not_move_a_change(api, requester):
    change = await raise_change(api, requester)
    refused = await move(api, requester, change, "assess")
    assert refused.status_code == 403


async def test_a_standard_change_from_an_active_template_is_scheduled_at_once(
    api, requester, manager, pools, tenant
):
    ci = await a_ci(pools, tenant, ci_class="server")
    template = await a_template(api, manager, ci_classes=["server"], business_service="web")

    change = await raise_change(
        api, requester, type="standard", template_id=template["id"], affected_ci_ids=[ci]
    )

    assert change["state"] == "scheduled"
    assert change["version"] == 2
    assert change["risk_level"] == "low"
    assert change["implementation_plan"] == "systemctl restart app"
    assert change["business_services"] == ["web"]
    history = (await api.get(f"/changes/{change['id']}/history", headers=requester)).json()
    assert [h["action"] for h in history] == ["created", "transitioned"]


async def test_a_standard_change_needs_an_active_template_that_covers_its_cis(
    api, requester, manager, pools, tenant
):
    database = await a_ci(pools, tenant, ci_class="database")
    template = await a_template(api, manager, ci_classes=["server"])
    outside = await api.post(
        "/changes",
        json={
            "type": "standard",
            "title": "Restart",
            "template_id": template["id"],
            "affected_ci_ids": [database],
        },
        headers=requester,
    )
    assert outside.status_code == 422
    assert errors_of(outside) == {"affected_ci_ids[0]"}

    off = await api.patch(
        f"/change-templates/{template['id']}",
        json={"active": False},
        headers={**manager, "If-Match": '"1"'},
    )
    assert off.status_code == 200, off.text
    assert off.json()["version"] == 2
    inactive = await api.post(
        "/changes",
        json={"type": "standard", "title": "Restart", "template_id": template["id"]},
        headers=requester,
    )
    no_template = await api.post(
        "/changes", json={"type": "standard", "title": "Restart"}, headers=requester
    )
    assert errors_of(inactive) == errors_of(no_template) == {"template_id"}
    refused = await api.post(
        "/change-templates",
        json={"name": "Mine", "implementation_plan": "x", "backout_plan": "y"},
        headers=requester,
    )
    assert refused.status_code == 403


async def test_an_edit_of_a_scheduled_changes_plan_voids_its_approval_back_to_authorize(
    api, requester, manager, pools, tenant
):
    change = await raise_change(api, requester, implementation_plan="v1")
    change = await moved(api, manager, change, "assess")
    change = await moved(api, manager, change, "authorize")
    await approve(pools, tenant, change["id"])
    change = (await api.get(f"/changes/{change['id']}", headers=manager)).json()
    assert change["state"] == "scheduled"

    response = await api.patch(
        f"/changes/{change['id']}",
        json={"implementation_plan": "v2"},
        headers={**manager, "If-Match": f'"{change["version"]}"'},
    )

    assert response.status_code == 200, response.text
    assert response.json()["state"] == "authorize"
    assert response.json()["content_hash"] != change["content_hash"]


async def implemented(api, manager, requester, pools, tenant, **fields):
    """A normal change approved, scheduled and being implemented."""
    change = await raise_change(api, requester, **fields)
    change = await moved(api, manager, change, "assess")
    change = await moved(api, manager, change, "authorize")
    await approve(pools, tenant, change["id"])
    change = (await api.get(f"/changes/{change['id']}", headers=manager)).json()
    return await moved(api, manager, change, "implement")


async def test_an_outcome_other_than_the_proposal_needs_a_reason_and_a_failure_needs_a_pir(
    api, requester, manager, pools, tenant, infra
):
    change = await implemented(api, manager, requester, pools, tenant)
    proposal = await api.get(f"/changes/{change['id']}/outcome-proposal", headers=requester)
    assert proposal.json()["proposed_outcome"] == "successful"
    start = await end_offsets(infra.bootstrap_servers, CHANGE_EVENTS)

    silent = await move(api, manager, change, "review", outcome="failed")
    assert silent.status_code == 422
    assert errors_of(silent) == {"outcome_reason"}
    change = await moved(
        api, manager, change, "review", outcome="failed", outcome_reason="data loss seen"
    )
    closing = await move(api, manager, change, "closed")
    assert closing.status_code == 409
    assert {e["field"] for e in closing.json()["errors"]} == {"review"}

    reviewed = await api.post(
        f"/changes/{change['id']}/review",
        json={"what_happened": "index rebuild failed", "lessons": "test on a copy"},
        headers={**manager, "If-Match": f'"{change["version"]}"'},
    )
    assert reviewed.status_code == 200, reviewed.text
    closed = await moved(api, manager, reviewed.json(), "closed")
    assert closed["state"] == "closed"

    def mine(records):
        return [
            (header(r, "ce_type"), json.loads(r.value))
            for r in records
            if r.key == change["id"].encode()
        ]

    records = await read_topic(
        infra.bootstrap_servers,
        start,
        until=lambda rs: any(t == "itsm.change.reviewed.v1" for t, _ in mine(rs)),
    )
    events = dict(mine(records))
    moved_event = next(
        data
        for t, data in mine(records)
        if t == "itsm.change.transitioned.v1" and data["to_state"] == "review"
    )
    assert (moved_event["outcome"], moved_event["proposed_outcome"]) == ("failed", "successful")
    assert moved_event["outcome_reason"] == "data loss seen"
    assert events["itsm.change.reviewed.v1"]["lessons"] == "test on a copy"
    assert "itsm.change.implemented.v1" in events


async def test_a_successful_normal_change_closes_without_a_review(
    api, requester, manager, pools, tenant
):
    change = await implemented(api, manager, requester, pools, tenant)
    change = await moved(api, manager, change, "review", outcome="successful")
    closed = await moved(api, manager, change, "closed")
    assert closed["closed_at"] is not None


async def test_a_backout_proposes_rolled_back_and_a_suspected_incident_with_issues(
    api, requester, manager, pools, tenant, raw_producer
):
    backed = await implemented(api, manager, requester, pools, tenant)
    response = await api.post(
        f"/changes/{backed['id']}/backout",
        json={"reason": "latency doubled"},
        headers={**manager, "If-Match": f'"{backed["version"]}"'},
    )
    assert response.status_code == 200, response.text
    proposal = await api.get(f"/changes/{backed['id']}/outcome-proposal", headers=manager)
    assert proposal.json()["proposed_outcome"] == "rolled_back"
    assert proposal.json()["backout_executed"] is True

    suspected = await implemented(api, manager, requester, pools, tenant)
    incident_id = str(uuid.uuid4())
    await send_event(
        raw_producer,
        new_envelope(
            source="itsm/incident",
            type="itsm.incident.change_suspected.v1",
            subject=incident_id,
            tenantid=tenant,
            itsmversion=2,
            actor="system",
            data={
                "change_id": suspected["id"],
                "ci_id": str(uuid.uuid4()),
                "implemented_at": datetime.now(UTC).isoformat(),
                "window_seconds": 86_400,
            },
        ),
        INCIDENT_EVENTS,
    )

    async def proposed():
        response = await api.get(f"/changes/{suspected['id']}/outcome-proposal", headers=manager)
        return response.json()

    found = await eventually(proposed, lambda p: p["proposed_outcome"] == "successful_with_issues")
    assert [s["incident_id"] for s in found["suspected_incidents"]] == [incident_id]
    too_early = await api.get(
        f"/changes/{(await raise_change(api, requester))['id']}/outcome-proposal", headers=manager
    )
    assert too_early.status_code == 409


async def test_an_emergency_change_gets_its_review_due_and_cannot_close_without_one(
    api, requester, manager, auth, pools, tenant
):
    admin = auth(tenant, "tenant_admin")
    saved = await api.put(
        "/change-settings",
        json={"emergency_review_days": 3},
        headers={**admin, "If-Match": '"0"'},
    )
    assert saved.status_code == 200, saved.text
    assert saved.json()["version"] == 1
    assert saved.headers["etag"] == '"1"'
    incident = await known_incident(pools, tenant)
    change = await raise_change(api, requester, type="emergency", incident_ids=[incident])
    change = await moved(api, manager, change, "authorize")
    await approve(pools, tenant, change["id"])
    change = (await api.get(f"/changes/{change['id']}", headers=manager)).json()
    change = await moved(api, manager, change, "implement")
    change = await moved(api, manager, change, "review", outcome="successful")

    due = datetime.fromisoformat(change["review_due_at"])
    ended = datetime.fromisoformat(change["actual_end"])
    assert due - ended == timedelta(days=3)
    closing = await move(api, manager, change, "closed")
    assert closing.status_code == 409
    assert "emergency" in closing.json()["detail"]


async def test_change_settings_are_versioned_and_guarded_by_if_match(api, auth, tenant, requester):
    admin = auth(tenant, "tenant_admin")
    defaults = await api.get("/change-settings", headers=requester)
    assert defaults.json() == {
        "emergency_review_days": 5,
        "review_outcomes": ["failed", "rolled_back"],
        "review_risk_levels": ["high", "very_high"],
        "suspicion_window_seconds": 86_400,
        "version": 0,
    }
    stale = await api.put("/change-settings", json={}, headers={**admin, "If-Match": '"3"'})
    assert stale.status_code == 412
    missing = await api.put("/change-settings", json={}, headers=admin)
    assert missing.status_code == 428
    refused = await api.put("/change-settings", json={}, headers={**requester, "If-Match": '"0"'})
    assert refused.status_code == 403


async def test_changes_are_found_by_state_ci_service_requester_and_window(
    api, requester, manager, auth, pools, tenant
):
    ci = await a_ci(pools, tenant, services=["billing"])
    start = datetime(2031, 5, 1, 22, tzinfo=UTC)
    window = {
        "planned_start": start.isoformat(),
        "planned_end": (start + timedelta(hours=2)).isoformat(),
    }
    on_ci = await raise_change(api, requester, affected_ci_ids=[ci], **window)
    other = await raise_change(api, auth(tenant, "requester", subject="otto"))
    await moved(api, manager, other, "assess")

    async def ids(**params):
        response = await api.get("/changes", params=params, headers=manager)
        assert response.status_code == 200, response.text
        return [c["id"] for c in response.json()["items"]]

    assert await ids(ci_id=ci) == [on_ci["id"]]
    assert await ids(service="billing") == [on_ci["id"]]
    assert await ids(requester="otto") == [other["id"]]
    assert await ids(state="assess") == [other["id"]]
    inside = {
        "window_from": (start + timedelta(hours=1)).isoformat(),
        "window_to": (start + timedelta(hours=3)).isoformat(),
    }
    assert await ids(**inside) == [on_ci["id"]]
    after = {"window_from": (start + timedelta(hours=2)).isoformat()}
    assert await ids(**after) == []
    assert set(await ids()) == {on_ci["id"], other["id"]}
    page = (await api.get("/changes", params={"limit": 1}, headers=manager)).json()
    assert page["next_cursor"] is not None


async def test_a_problems_change_request_opens_one_change_and_the_problem_shows_its_state(
    service_client, api, manager, auth, tenant, pools, infra, raw_producer
):
    incident_api = await service_client("incident")
    problem_manager = auth(tenant, "problem_manager", subject="pat")
    problem = (
        await incident_api.post("/problems", json={"title": "Deadlocks"}, headers=problem_manager)
    ).json()
    start = await end_offsets(infra.bootstrap_servers, INCIDENT_EVENTS)
    asked = await incident_api.post(
        f"/problems/{problem['id']}/change-requests",
        json={"title": "Add an index", "description": "on orders(customer)"},
        headers={**problem_manager, "If-Match": f'"{problem["version"]}"'},
    )
    assert asked.status_code == 202, asked.text
    request_id = asked.json()["request_id"]

    async def changes():
        response = await api.get("/changes", headers=manager)
        return [c for c in response.json()["items"] if c["problem_request_id"] == request_id]

    [change] = await eventually(changes, lambda found: len(found) == 1)
    assert change["origin"] == "problem"
    assert change["type"] == "normal"
    assert change["problem_ids"] == [problem["id"]]
    assert change["requester"] == "pat"

    # The request's event again as it was (a redelivery) and as a new event (a replay).
    records = await read_topic(
        infra.bootstrap_servers,
        start,
        until=lambda rs: any(
            header(r, "ce_type") == "itsm.incident.problem.change_requested.v1" for r in rs
        ),
    )
    [record] = [
        r
        for r in records
        if header(r, "ce_type") == "itsm.incident.problem.change_requested.v1"
        and r.key == problem["id"].encode()
    ]
    await raw_producer.send_and_wait(
        INCIDENT_EVENTS, record.value, key=record.key, headers=list(record.headers)
    )
    replay = new_envelope(
        source="itsm/incident",
        type="itsm.incident.problem.change_requested.v1",
        subject=problem["id"],
        tenantid=tenant,
        itsmversion=problem["version"] + 1,
        actor="pat",
        data=json.loads(record.value),
    )
    await send_event(raw_producer, replay, INCIDENT_EVENTS)
    # Then a marker on the same key, so that both were applied before it.
    marker = new_envelope(
        source="itsm/incident",
        type="itsm.incident.problem.change_requested.v1",
        subject=problem["id"],
        tenantid=tenant,
        itsmversion=problem["version"] + 2,
        actor="pat",
        data={**json.loads(record.value), "request_id": str(uuid.uuid4()), "title": "marker"},
    )
    await send_event(raw_producer, marker, INCIDENT_EVENTS)
    await eventually(
        lambda: api.get("/changes", params={"requester": "pat"}, headers=manager),
        lambda r: len(r.json()["items"]) == 2,
    )
    assert len(await changes()) == 1
    # The replay was applied (found its change), not dead-lettered on the unique index.
    async with tenant_transaction(pools["change"], tenant, readonly=True) as conn:
        applied = await conn.fetchval(
            "SELECT count(*) FROM inbox WHERE consumer = 'change-problem-requests'"
            " AND event_id = $1",
            replay.id,
        )
    assert applied == 1

    await moved(api, manager, change, "assess")

    async def shown():
        response = await incident_api.get(f"/problems/{problem['id']}", headers=problem_manager)
        return response.json()["changes"]

    found = await eventually(
        shown, lambda cs: [c["state"] for c in cs if c["change_id"] == change["id"]] == ["assess"]
    )
    mine = next(c for c in found if c["change_id"] == change["id"])
    assert mine["reference"] == change["reference"]
    assert mine["request_id"] == request_id


async def test_a_change_is_cancelled_with_a_reason_and_links_only_known_incidents(
    api, requester, manager, pools, tenant
):
    change = await raise_change(api, requester)
    unknown = await api.post(
        f"/changes/{change['id']}/links",
        json={"incident_ids": [str(uuid.uuid4())]},
        headers={**manager, "If-Match": f'"{change["version"]}"'},
    )
    assert unknown.status_code == 422
    assert errors_of(unknown) == {"incident_ids"}
    incident, problem = await known_incident(pools, tenant), str(uuid.uuid4())
    linked = await api.post(
        f"/changes/{change['id']}/links",
        json={"incident_ids": [incident], "problem_ids": [problem]},
        headers={**manager, "If-Match": f'"{change["version"]}"'},
    )
    assert linked.status_code == 200, linked.text
    change = linked.json()
    assert (change["incident_ids"], change["problem_ids"]) == ([incident], [problem])

    silent = await move(api, manager, change, "cancelled")
    assert silent.status_code == 422
    assert errors_of(silent) == {"reason"}
    cancelled = await moved(api, manager, change, "cancelled", reason="superseded")
    assert (cancelled["state"], cancelled["cancel_reason"]) == ("cancelled", "superseded")


async def test_the_actual_window_is_recorded_while_implementing_and_a_deviation_flagged(
    api, requester, manager, pools, tenant
):
    start = datetime.now(UTC) + timedelta(hours=1)
    window = {
        "planned_start": start.isoformat(),
        "planned_end": (start + timedelta(hours=1)).isoformat(),
    }
    too_soon = await raise_change(api, requester)
    refused = await api.patch(
        f"/changes/{too_soon['id']}",
        json={"actual_start": start.isoformat()},
        headers={**manager, "If-Match": '"1"'},
    )
    assert refused.status_code == 422
    assert errors_of(refused) == {"actual_start"}

    change = await implemented(api, manager, requester, pools, tenant, **window)
    # Started now, an hour before the planned window: a deviation.
    assert change["deviation"] is True
    late_edit = await api.patch(
        f"/changes/{change['id']}",
        json={"title": "Another"},
        headers={**manager, "If-Match": f'"{change["version"]}"'},
    )
    assert late_edit.status_code == 422
    assert errors_of(late_edit) == {"state"}
    recorded = await api.patch(
        f"/changes/{change['id']}",
        json={"actual_start": (start + timedelta(minutes=5)).isoformat()},
        headers={**manager, "If-Match": f'"{change["version"]}"'},
    )
    assert recorded.status_code == 200, recorded.text
    assert recorded.json()["deviation"] is False
