"""Incident management on the real database: services and policy from the projection, states,
If-Match, priority, major incidents, SLA clocks driven by moves, search, tenants."""

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from services.incident.adapters import projections
from shared.calendars import CalendarSpec
from shared.db import tenant_transaction
from shared.events.catalogue import (
    INCIDENT_EVENTS,
    CiStateV1,
    ServiceMembershipChangedV1,
    SlaPolicyDefinedV1,
    SlaTargetV1,
)
from tests.support import end_offsets, read_topic

SECONDS = {f"P{p}": (3_600 * p, 14_400 * p) for p in range(1, 6)}


@pytest.fixture
async def api(service_client):
    return await service_client("incident")


@pytest.fixture
def agent(auth, tenant):
    return auth(tenant, "agent", subject="alice")


async def seed(pools, tenant, *, pause_on=("awaiting_customer",)):
    """A CI supporting one business service covered by a policy (projection rows, no broker)."""
    ci_id, service_id = str(uuid.uuid4()), str(uuid.uuid4())
    now = datetime.now(UTC)
    async with tenant_transaction(pools["incident"], tenant) as conn:
        await projections.upsert_cis(
            conn,
            tenant,
            [
                CiStateV1(
                    id=ci_id,
                    ci_class="database",
                    name="payroll-db",
                    status="active",
                    owner_team="dba",
                    criticality=1,
                    attributes={},
                    external_ids={},
                    controlled=False,
                    version=1,
                    updated_at=now,
                    updated_by="tester",
                )
            ],
        )
        await projections.upsert_memberships(
            conn,
            tenant,
            [
                ServiceMembershipChangedV1(
                    ci_id=ci_id, services=[service_id], previous=[], sequence=1
                )
            ],
        )
        await projections.upsert_policy(
            conn,
            tenant,
            SlaPolicyDefinedV1(
                name="gold",
                targets={
                    p: SlaTargetV1(response_seconds=r, resolution_seconds=s)
                    for p, (r, s) in SECONDS.items()
                },
                calendar_name="always",
                calendar=CalendarSpec.always_open().model_dump(),
                pause_on=list(pause_on),
                warning_threshold=0.75,
                services=[service_id],
                default=False,
                version=1,
            ),
            now,
        )
    return ci_id, service_id


async def create(api, headers, **fields):
    body = {"title": "Payroll down", "impact": 2, "urgency": 2, **fields}
    response = await api.post("/incidents", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def move(api, headers, incident, to, **details):
    return await api.post(
        f"/incidents/{incident['id']}/transitions",
        json={"to": to, **details},
        headers={**headers, "If-Match": f'"{incident["version"]}"'},
    )


@pytest.fixture
async def start(infra):
    """Offsets of the incident topic before the test: read what the test publishes."""
    return await end_offsets(infra.bootstrap_servers, INCIDENT_EVENTS)


async def events_of(infra, start, subject, until):
    """(type, headers) of the subject's events on Kafka, in order, once `until(types)` holds."""

    def mine(records):
        return [r for r in records if r.key == subject.encode()]

    def types(records):
        return [dict(r.headers)["ce_type"].decode() for r in mine(records)]

    records = await read_topic(
        infra.bootstrap_servers, start, until=lambda rs: until(types(rs)), timeout=30
    )
    return [
        (dict(r.headers)["ce_type"].decode(), {k: v.decode() for k, v in r.headers})
        for r in mine(records)
    ]


async def test_an_incident_on_a_ci_gets_its_services_and_policy_from_the_projection(
    api, agent, pools, tenant
):
    ci_id, service_id = await seed(pools, tenant)
    incident = await create(api, agent, ci_id=ci_id)
    assert incident["services"] == [service_id]
    assert incident["sla_policy"] == "gold"
    assert incident["reference"] == "INC1"
    clocks = (await api.get(f"/incidents/{incident['id']}/sla", headers=agent)).json()
    assert {c["kind"]: c["target_seconds"] for c in clocks} == {
        "response": SECONDS["P3"][0],
        "resolution": SECONDS["P3"][1],
    }
    assert all(c["state"] == "running" for c in clocks)


async def test_an_unknown_ci_is_a_422_naming_ci_id(api, agent):
    response = await api.post(
        "/incidents",
        json={"title": "x", "impact": 3, "urgency": 3, "ci_id": str(uuid.uuid4())},
        headers=agent,
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "ci_id"


async def test_the_whole_life_of_an_incident_is_a_chain_of_events_with_actor(
    api, agent, infra, start
):
    incident = await create(api, agent)
    steps = [
        ("in_progress", {}),
        ("on_hold", {"hold_reason": "awaiting_vendor"}),
        ("in_progress", {}),
        ("resolved", {"resolution_code": "solved_permanently", "resolution_notes": "restarted"}),
        ("closed", {}),
    ]
    for to, details in steps:
        response = await move(api, agent, incident, to, **details)
        assert response.status_code == 200, response.text
        incident = response.json()
        assert incident["state"] == to
        assert response.headers["etag"] == f'"{incident["version"]}"'
    assert incident["resolution_code"] == "solved_permanently"
    assert incident["closed_at"] is not None
    expected = ["itsm.incident.created.v1"] + ["itsm.incident.transitioned.v1"] * 5
    events = await events_of(infra, start, incident["id"], lambda t: len(t) >= len(expected))
    types = [t for t, _ in events]
    assert types == expected
    assert {h["ce_actor"] for _, h in events} == {"alice"}
    history = (await api.get(f"/incidents/{incident['id']}/history", headers=agent)).json()
    assert [h["version"] for h in history] == [1, 2, 3, 4, 5, 6]
    assert history[2]["changes"]["hold_reason"] == {"from": None, "to": "awaiting_vendor"}


async def test_an_illegal_move_is_a_409_naming_the_allowed_ones(api, agent):
    incident = await create(api, agent)
    response = await move(api, agent, incident, "closed")
    assert response.status_code == 409
    problem = response.json()
    assert problem["allowed"] == ["cancelled", "in_progress", "on_hold", "resolved"]
    assert "in_progress" in problem["errors"][0]["detail"]


async def test_on_hold_needs_a_reason_and_resolving_needs_a_code(api, agent):
    incident = await create(api, agent)
    no_reason = await move(api, agent, incident, "on_hold")
    assert no_reason.status_code == 422
    assert no_reason.json()["errors"][0]["field"] == "hold_reason"
    no_code = await move(api, agent, incident, "resolved")
    assert no_code.status_code == 422
    assert {e["field"] for e in no_code.json()["errors"]} >= {"resolution_code"}


async def test_a_stale_if_match_is_412_and_a_missing_one_428(api, agent):
    incident = await create(api, agent)
    assert (await move(api, agent, incident, "in_progress")).status_code == 200
    stale = await move(api, agent, incident, "cancelled")
    assert stale.status_code == 412
    missing = await api.patch(f"/incidents/{incident['id']}", json={"urgency": 1}, headers=agent)
    assert missing.status_code == 428


async def test_changing_impact_recomputes_priority_and_retargets_the_clocks_keeping_time(
    api, agent, pools, tenant, infra, start
):
    ci_id, _ = await seed(pools, tenant)
    incident = await create(api, agent, ci_id=ci_id, impact=3, urgency=3)
    assert incident["priority"] == 5
    response = await api.patch(
        f"/incidents/{incident['id']}",
        json={"impact": 1, "urgency": 1},
        headers={**agent, "If-Match": f'"{incident["version"]}"'},
    )
    assert response.status_code == 200, response.text
    changed = response.json()
    assert changed["priority"] == 1
    assert changed["major"] is True
    clocks = (await api.get(f"/incidents/{incident['id']}/sla", headers=agent)).json()
    resolution = next(c for c in clocks if c["kind"] == "resolution")
    assert resolution["target_seconds"] == SECONDS["P1"][1]
    assert resolution["elapsed_seconds"] > 0
    events = await events_of(
        infra, start, incident["id"], lambda t: "itsm.incident.major_declared.v1" in t
    )
    assert "itsm.incident.updated.v1" in [t for t, _ in events]


async def test_a_pausing_hold_reason_pauses_the_clocks_and_another_does_not(
    api, agent, pools, tenant
):
    ci_id, _ = await seed(pools, tenant, pause_on=("awaiting_customer",))
    paused = await create(api, agent, ci_id=ci_id)
    paused = (await move(api, agent, paused, "on_hold", hold_reason="awaiting_customer")).json()
    running = await create(api, agent, ci_id=ci_id)
    running = (await move(api, agent, running, "on_hold", hold_reason="awaiting_vendor")).json()

    async def resolution_state(incident):
        clocks = (await api.get(f"/incidents/{incident['id']}/sla", headers=agent)).json()
        return next(c["state"] for c in clocks if c["kind"] == "resolution")

    assert await resolution_state(paused) == "paused"
    assert await resolution_state(running) == "running"
    resumed = (await move(api, agent, paused, "in_progress")).json()
    assert await resolution_state(resumed) == "running"


async def test_resolving_stops_the_clocks_with_an_outcome(api, agent, pools, tenant):
    ci_id, _ = await seed(pools, tenant)
    incident = await create(api, agent, ci_id=ci_id)
    await move(
        api,
        agent,
        incident,
        "resolved",
        resolution_code="solved_workaround",
        resolution_notes="failover",
    )
    clocks = (await api.get(f"/incidents/{incident['id']}/sla", headers=agent)).json()
    assert {c["kind"]: (c["state"], c["outcome"]) for c in clocks} == {
        "response": ("stopped", "met"),
        "resolution": ("stopped", "met"),
    }


async def test_a_major_incident_cannot_close_before_its_review(api, agent, infra, start):
    incident = await create(api, agent, impact=1, urgency=1, major_owner="bob")
    assert incident["major"] is True
    await events_of(infra, start, incident["id"], lambda t: "itsm.incident.major_declared.v1" in t)
    incident = (
        await move(
            api,
            agent,
            incident,
            "resolved",
            resolution_code="solved_permanently",
            resolution_notes="fixed",
        )
    ).json()
    refused = await move(api, agent, incident, "closed")
    assert refused.status_code == 409
    reviewed = await api.post(
        f"/incidents/{incident['id']}/major-review",
        json={"summary": "db failover too slow", "lessons": "tune it"},
        headers={**agent, "If-Match": f'"{incident["version"]}"'},
    )
    assert reviewed.status_code == 200, reviewed.text
    closed = await move(api, agent, reviewed.json(), "closed")
    assert closed.status_code == 200


async def test_work_notes_are_kept_in_order_with_their_author(api, agent):
    incident = await create(api, agent)
    for note in ("looked at logs", "restarted pod"):
        posted = await api.post(
            f"/incidents/{incident['id']}/work-notes", json={"note": note}, headers=agent
        )
        assert posted.status_code == 201
    notes = (await api.get(f"/incidents/{incident['id']}/work-notes", headers=agent)).json()
    assert [(n["note"], n["author"]) for n in notes] == [
        ("looked at logs", "alice"),
        ("restarted pod", "alice"),
    ]


async def test_search_filters_and_pages_with_a_cursor(api, agent, pools, tenant):
    ci_id, service_id = await seed(pools, tenant)
    on_ci = [await create(api, agent, ci_id=ci_id, assignee="bob") for _ in range(3)]
    other = await create(api, agent, impact=1, urgency=1)
    await move(api, agent, other, "in_progress")
    by_service = (await api.get("/incidents", params={"service": service_id}, headers=agent)).json()
    assert {i["id"] for i in by_service["items"]} == {i["id"] for i in on_ci}
    by_state = (await api.get("/incidents", params={"state": "in_progress"}, headers=agent)).json()
    assert [i["id"] for i in by_state["items"]] == [other["id"]]
    by_priority = (
        await api.get("/incidents", params={"priority": [1], "major": "true"}, headers=agent)
    ).json()
    assert [i["id"] for i in by_priority["items"]] == [other["id"]]
    seen, cursor = [], None
    while True:
        params = {"assignee": "bob", "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await api.get("/incidents", params=params, headers=agent)).json()
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [i["id"] for i in reversed(on_ci)]
    bad = await api.get("/incidents", params={"cursor": "nonsense"}, headers=agent)
    assert bad.status_code == 422


async def test_another_tenant_never_sees_or_moves_the_incident(api, agent, auth):
    incident = await create(api, agent)
    stranger = auth(f"t-{uuid.uuid4().hex[:8]}", "agent")
    assert (await api.get(f"/incidents/{incident['id']}", headers=stranger)).status_code == 404
    assert (await move(api, stranger, incident, "in_progress")).status_code == 404
    listed = (await api.get("/incidents", headers=stranger)).json()
    assert listed["items"] == []


async def test_a_requester_may_log_but_not_work_an_incident(api, auth, tenant):
    requester = auth(tenant, "requester")
    incident = await create(api, requester)
    assert (await move(api, requester, incident, "in_progress")).status_code == 403


async def test_concurrent_creations_in_one_tenant_get_distinct_consecutive_numbers(api, agent):
    created = await asyncio.gather(*(create(api, agent, title=f"Burst {i}") for i in range(40)))
    assert sorted(i["number"] for i in created) == list(range(1, 41))
    later = await create(api, agent)
    assert later["reference"] == "INC41"
