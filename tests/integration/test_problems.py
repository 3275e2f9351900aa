"""Problems and known errors on the real database and broker: PRB numbers, incident links,
known errors and their workarounds, trends that suggest (or open) problems exactly once,
change requests carrying the trail, permissions, tenants.

The known-error lookup (`known_error_for`) and the trend detector (`trends.after_incident_logged`,
a reaction to a new incident) are called here directly, in a unit of work of their own, on
incidents logged through the API: the tests hold whether or not logging an incident runs them
too (a second call for the same incident finds the trend already suggested, and suggests
nothing).
"""

import asyncio
import json
import uuid
from datetime import UTC, datetime

import pytest

from services.incident.adapters import projections
from services.incident.application import problems as use_cases
from services.incident.application import trends
from services.incident.application.uow import IncidentUnitOfWork
from services.incident.domain.incident import log_incident
from shared.context import RequestContext
from shared.db import tenant_transaction
from shared.events.catalogue import (
    INCIDENT_EVENTS,
    BusinessServiceDefinedV1,
    CiStateV1,
    ServiceMembershipChangedV1,
)
from tests.support import end_offsets, fetch_as, published_so_far, read_topic, sample_value

SUGGESTED = "itsm.incident.problem.suggested.v1"
SUGGESTIONS = "itsm_problem_suggestions_total"


@pytest.fixture
async def api(service_client):
    return await service_client("incident")


@pytest.fixture
def agent(auth, tenant):
    return auth(tenant, "agent", subject="alice")


@pytest.fixture
def manager(auth, tenant):
    return auth(tenant, "problem_manager", subject="pat")


@pytest.fixture
async def start(infra):
    """Offsets of the incident topic before the test: read what the test publishes."""
    return await end_offsets(infra.bootstrap_servers, INCIDENT_EVENTS)


async def seed_ci(pools, tenant, name="payroll-db"):
    """A CI supporting one business service (projection rows, as the config events leave them)."""
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
                    name=name,
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
        await projections.upsert_business_service(
            conn,
            tenant,
            BusinessServiceDefinedV1(
                id=service_id, name="Payroll", status="active", criticality=1, version=1
            ),
        )
    return ci_id, service_id


async def set_trends(pools, tenant, *, threshold=3, window=86_400, opens=False):
    async with tenant_transaction(pools["incident"], tenant) as conn:
        await conn.execute(
            "INSERT INTO incident_settings (tenant_id, trend_threshold, trend_window_seconds,"
            " trend_opens_problem, updated_at, updated_by) VALUES ($1, $2, $3, $4, now(), 't')",
            tenant,
            threshold,
            window,
            opens,
        )


async def log(api, headers, **fields):
    body = {"title": "Payroll slow", "impact": 2, "urgency": 2, **fields}
    response = await api.post("/incidents", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def open_problem(api, headers, **fields):
    response = await api.post("/problems", json={"title": "Deadlocks", **fields}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def if_match(headers, record):
    return {**headers, "If-Match": f'"{record["version"]}"'}


async def move(api, headers, problem, to, **details):
    return await api.post(
        f"/problems/{problem['id']}/transitions",
        json={"to": to, **details},
        headers=if_match(headers, problem),
    )


async def known_error(api, headers, problem, **body):
    return await api.post(
        f"/problems/{problem['id']}/known-error", json=body, headers=if_match(headers, problem)
    )


async def published(api, manager, **fields):
    """A problem through investigation to a published known error."""
    problem = await open_problem(api, manager, **fields)
    problem = (await move(api, manager, problem, "investigating")).json()
    response = await known_error(
        api, manager, problem, root_cause="lock order", workaround="rerun the batch"
    )
    assert response.status_code == 200, response.text
    return response.json()


def context(tenant, actor="alice"):
    return RequestContext(tenant, actor, str(uuid.uuid4()))


async def detect(api, pools, tenant, incident_id):
    """Run the trend detector for an incident, as record_incident does, in its own transaction."""
    uow = IncidentUnitOfWork(
        pools["incident"], context(tenant), metrics=api.runtime.service_metrics
    )
    async with uow:
        incident = await uow.incidents.get(uuid.UUID(incident_id))
        assert incident is not None
        return await trends.after_incident_logged(uow, incident, await uow.settings.get())


def suggestions(api, basis):
    return sample_value(api.runtime.service_metrics.registry, SUGGESTIONS, {"basis": basis})


async def events_on(infra, start, subject, until, to=None):
    """(type, data) of the subject's events on Kafka, in order, once `until(types)` holds (and,
    with `to`, every event up to those offsets was read)."""

    def mine(records):
        return [r for r in records if r.key == subject.encode()]

    def types(records):
        return [dict(r.headers)["ce_type"].decode() for r in mine(records)]

    records = await read_topic(
        infra.bootstrap_servers,
        start,
        until=lambda rs: until(types(rs)),
        timeout=30,
        to=to,
    )
    return [(dict(r.headers)["ce_type"].decode(), json.loads(r.value)) for r in mine(records)]


# --- Records, links, known errors -----------------------------------------------------------


async def test_a_problem_opened_by_hand_gets_a_prb_number_and_reads_back_with_its_etag(
    api, agent, infra, start
):
    response = await api.post(
        "/problems",
        json={"title": "Nightly batch deadlocks", "service": "svc-payroll"},
        headers={**agent, "Idempotency-Key": "prb-1"},
    )
    assert response.status_code == 201, response.text
    problem = response.json()
    assert problem["reference"] == "PRB1"
    assert (problem["state"], problem["origin"], problem["version"]) == ("new", "manual", 1)
    assert response.headers["etag"] == '"1"'
    assert response.headers["location"] == f"/problems/{problem['id']}"
    read = await api.get(f"/problems/{problem['id']}", headers=agent)
    assert read.json() == problem and read.headers["etag"] == '"1"'
    again = await api.post(
        "/problems",
        json={"title": "Nightly batch deadlocks", "service": "svc-payroll"},
        headers={**agent, "Idempotency-Key": "prb-1"},
    )
    assert again.json()["id"] == problem["id"]
    assert again.headers["idempotent-replayed"] == "true"
    second = await open_problem(api, agent)
    assert second["reference"] == "PRB2"
    events = await events_on(infra, start, problem["id"], lambda t: len(t) >= 1)
    assert events[0][0] == "itsm.incident.problem.created.v1"
    assert events[0][1]["number"] == 1 and events[0][1]["service"] == "svc-payroll"


async def test_linking_an_incident_gives_it_the_problem_with_a_new_version_and_events(
    api, agent, infra, start
):
    incident = await log(api, agent)
    problem = await open_problem(api, agent)
    missing = await api.post(
        f"/problems/{problem['id']}/incidents", json={"incident_id": incident["id"]}, headers=agent
    )
    assert missing.status_code == 428
    response = await api.post(
        f"/problems/{problem['id']}/incidents",
        json={"incident_id": incident["id"]},
        headers=if_match(agent, problem),
    )
    assert response.status_code == 200, response.text
    linked = response.json()
    assert linked["incidents"] == [incident["id"]]
    assert linked["version"] == 2 and response.headers["etag"] == '"2"'
    now = (await api.get(f"/incidents/{incident['id']}", headers=agent)).json()
    assert now["problem_id"] == problem["id"]
    assert now["version"] == incident["version"] + 1
    history = (await api.get(f"/incidents/{incident['id']}/history", headers=agent)).json()
    assert history[-1]["changes"]["problem_id"] == {"from": None, "to": problem["id"]}
    again = await api.post(
        f"/problems/{problem['id']}/incidents",
        json={"incident_id": incident["id"]},
        headers=if_match(agent, linked),
    )
    assert again.json()["version"] == 2
    stale = await api.post(
        f"/problems/{problem['id']}/incidents",
        json={"incident_id": incident["id"]},
        headers=if_match(agent, problem),
    )
    assert stale.status_code == 412
    on_incident = await events_on(
        infra, start, incident["id"], lambda t: "itsm.incident.updated.v1" in t
    )
    updated = next(d for t, d in on_incident if t == "itsm.incident.updated.v1")
    assert updated["changes"]["problem_id"]["to"] == problem["id"]
    on_problem = await events_on(
        infra, start, problem["id"], lambda t: "itsm.incident.problem.incident_linked.v1" in t
    )
    assert on_problem[-1][1] == {"incident_id": incident["id"]}


async def test_a_problem_opened_with_incidents_links_them_and_refuses_unknown_or_taken_ones(
    api, agent
):
    first, second = await log(api, agent), await log(api, agent)
    problem = await open_problem(api, agent, incidents=[second["id"], first["id"]])
    assert problem["incidents"] == sorted([first["id"], second["id"]])
    assert (await api.get(f"/problems/{problem['id']}", headers=agent)).json() == problem
    for incident in (first, second):
        read = (await api.get(f"/incidents/{incident['id']}", headers=agent)).json()
        assert read["problem_id"] == problem["id"]
    unknown = await api.post(
        "/problems", json={"title": "x", "incidents": [str(uuid.uuid4())]}, headers=agent
    )
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["field"] == "incidents"
    taken = await api.post(
        "/problems", json={"title": "x", "incidents": [first["id"]]}, headers=agent
    )
    assert taken.status_code == 409
    assert taken.json()["errors"][0]["field"] == "incidents"
    listed = (await api.get("/problems", headers=agent)).json()
    assert [p["id"] for p in listed["items"]] == [problem["id"]]


async def test_publishing_a_known_error_needs_root_cause_and_workaround_and_is_announced(
    api, manager, infra, start
):
    problem = await open_problem(api, manager)
    too_early = await known_error(api, manager, problem, root_cause="a", workaround="b")
    assert too_early.status_code == 409
    assert too_early.json()["allowed"] == ["cancelled", "investigating"]
    problem = (await move(api, manager, problem, "investigating")).json()
    no_workaround = await known_error(api, manager, problem, root_cause="lock order")
    assert no_workaround.status_code == 422
    assert [e["field"] for e in no_workaround.json()["errors"]] == ["workaround"]
    blank_cause = await known_error(api, manager, problem, root_cause=" ", workaround="rerun")
    assert [e["field"] for e in blank_cause.json()["errors"]] == ["root_cause"]
    response = await known_error(
        api, manager, problem, root_cause="lock order", workaround="rerun the batch"
    )
    assert response.status_code == 200, response.text
    known = response.json()
    assert known["state"] == "known_error" and known["known_error_id"] == known["id"]
    events = await events_on(
        infra,
        start,
        problem["id"],
        lambda t: "itsm.incident.problem.known_error_published.v1" in t,
    )
    assert [t for t, _ in events] == [
        "itsm.incident.problem.created.v1",
        "itsm.incident.problem.transitioned.v1",
        "itsm.incident.problem.transitioned.v1",
        "itsm.incident.problem.known_error_published.v1",
    ]
    assert events[-1][1]["workaround"] == "rerun the batch"
    assert events[-1][1]["known_error_id"] == problem["id"]


async def test_an_illegal_move_is_409_naming_the_allowed_ones_and_missing_notes_422(api, manager):
    problem = await open_problem(api, manager)
    closing = await move(api, manager, problem, "closed")
    assert closing.status_code == 409
    assert closing.json()["allowed"] == ["cancelled", "investigating"]
    problem = (await move(api, manager, problem, "investigating")).json()
    no_notes = await move(api, manager, problem, "resolved", root_cause="lock order")
    assert no_notes.status_code == 422
    assert [e["field"] for e in no_notes.json()["errors"]] == ["resolution_notes"]
    history = (await api.get(f"/problems/{problem['id']}/history", headers=manager)).json()
    assert [(h["version"], h["action"], h["actor"]) for h in history] == [
        (1, "created", "pat"),
        (2, "transitioned", "pat"),
    ]


async def test_a_new_incident_on_the_ci_or_its_service_gets_the_newest_known_errors_workaround(
    api, manager, agent, pools, tenant
):
    ci_id, service_id = await seed_ci(pools, tenant)
    other_ci, _ = await seed_ci(pools, tenant, name="mail")
    on_service = await published(api, manager, service=service_id)
    on_ci = await published(api, manager, ci_id=ci_id)

    async def lookup(ci, services):
        async with IncidentUnitOfWork(pools["incident"], context(tenant)) as uow:
            return await use_cases.known_error_for(
                uow, uuid.UUID(ci) if ci else None, tuple(services)
            )

    found = await lookup(ci_id, [service_id])
    assert found == use_cases.KnownErrorRef(uuid.UUID(on_ci["id"]), "rerun the batch")
    by_service = await lookup(other_ci, ["svc-x", service_id])
    assert by_service is not None and by_service.id == uuid.UUID(on_service["id"])
    assert await lookup(other_ci, ["svc-x"]) is None
    # Back to investigation: no longer a published known error.
    await move(api, manager, on_ci, "investigating")
    after = await lookup(ci_id, [service_id])
    assert after is not None and after.id == uuid.UUID(on_service["id"])
    stranger = f"t-{uuid.uuid4().hex[:8]}"
    async with IncidentUnitOfWork(pools["incident"], context(stranger)) as uow:
        assert await use_cases.known_error_for(uow, None, (service_id,)) is None


# --- Trends ---------------------------------------------------------------------------------


async def test_incidents_reaching_the_threshold_on_a_ci_suggest_one_problem_not_one_per_incident(
    api, agent, pools, tenant, infra, start
):
    ci_id, service_id = await seed_ci(pools, tenant)
    incidents = []
    for _ in range(5):
        incident = await log(api, agent, ci_id=ci_id)
        incidents.append(incident)
        await detect(api, pools, tenant, incident["id"])
    subject = f"trend/ci/{ci_id}"
    # Every event the detections wrote is on the topic once the outbox drained: read them all.
    end = await published_so_far(
        infra.bootstrap_servers, INCIDENT_EVENTS, pools["incident"], tenant
    )
    events = await events_on(infra, start, subject, lambda t: SUGGESTED in t, to=end)
    assert [t for t, _ in events] == [SUGGESTED]
    data = events[0][1]
    assert data["ci_id"] == ci_id and data["opened_problem_id"] is None
    assert data["incidents"] == [i["id"] for i in incidents[:3]]
    assert (data["threshold"], data["window_seconds"]) == (3, 86_400)
    # The CI's service has the same incidents: its trend is the CI's, not suggested again.
    rows = await fetch_as(
        pools["incident"], tenant, "SELECT basis, key, suggestions FROM problem_trends"
    )
    assert [tuple(r) for r in rows] == [("ci", ci_id, 1)]
    assert service_id not in {r["key"] for r in rows}


async def test_concurrent_incidents_on_a_service_suggest_exactly_once(api, pools, tenant):
    """Five transactions each store an incident, then all detect at once: whichever detects
    third sees three incidents, and only one suggestion is made."""
    before = suggestions(api, "service")
    stored = asyncio.Barrier(5)

    async def log_and_detect(n):
        uow = IncidentUnitOfWork(
            pools["incident"], context(tenant), metrics=api.runtime.service_metrics
        )
        async with uow:
            incident, _ = log_incident(
                tenant_id=tenant,
                title=f"Checkout error {n}",
                description="",
                impact=2,
                urgency=2,
                actor="alice",
                now=datetime.now(UTC),
                services=("svc-checkout",),
            )
            await uow.incidents.insert(incident)
            await stored.wait()  # none has committed: each sees only its own incident so far
            await trends.after_incident_logged(uow, incident, await uow.settings.get())

    await asyncio.gather(*(log_and_detect(n) for n in range(5)))
    rows = await fetch_as(
        pools["incident"], tenant, "SELECT basis, key, suggestions, incidents FROM problem_trends"
    )
    assert [(r["basis"], r["key"], r["suggestions"]) for r in rows] == [
        ("service", "svc-checkout", 1)
    ]
    assert len(rows[0]["incidents"]) == 3
    assert suggestions(api, "service") - before == 1


async def test_incidents_outside_the_window_do_not_count(api, agent, pools, tenant):
    ci_id, _ = await seed_ci(pools, tenant)
    await set_trends(pools, tenant, threshold=3, window=3_600)
    old = []
    for _ in range(2):
        old.append(await log(api, agent, ci_id=ci_id))
        await detect(api, pools, tenant, old[-1]["id"])
    async with tenant_transaction(pools["incident"], tenant) as conn:
        await conn.execute(
            "UPDATE incidents SET created_at = created_at - interval '2 hours'"
            " WHERE id = ANY($1::uuid[])",
            [uuid.UUID(i["id"]) for i in old],
        )
    fresh = []
    for _ in range(2):
        fresh.append(await log(api, agent, ci_id=ci_id))
        await detect(api, pools, tenant, fresh[-1]["id"])
    rows = await fetch_as(pools["incident"], tenant, "SELECT key FROM problem_trends")
    assert rows == []
    third = await log(api, agent, ci_id=ci_id)
    await detect(api, pools, tenant, third["id"])
    rows = await fetch_as(pools["incident"], tenant, "SELECT key, incidents FROM problem_trends")
    assert [r["key"] for r in rows] == [ci_id]
    assert {str(i) for i in rows[0]["incidents"]} == {i["id"] for i in (*fresh, third)}


async def test_incidents_already_linked_to_an_open_problem_suggest_nothing(
    api, agent, pools, tenant
):
    ci_id, _ = await seed_ci(pools, tenant)
    first, second = await log(api, agent, ci_id=ci_id), await log(api, agent, ci_id=ci_id)
    await open_problem(api, agent, ci_id=ci_id, incidents=[first["id"], second["id"]])
    third = await log(api, agent, ci_id=ci_id)
    await detect(api, pools, tenant, third["id"])
    assert await fetch_as(pools["incident"], tenant, "SELECT key FROM problem_trends") == []


async def test_a_tenant_that_opens_problems_from_trends_gets_one_with_the_incidents_linked(
    api, agent, pools, tenant, infra, start
):
    ci_id, _ = await seed_ci(pools, tenant)
    await set_trends(pools, tenant, threshold=2, opens=True)
    first = await log(api, agent, ci_id=ci_id)
    await detect(api, pools, tenant, first["id"])
    second = await log(api, agent, ci_id=ci_id)
    returned = await detect(api, pools, tenant, second["id"])
    listed = (await api.get("/problems", params={"origin": "trend"}, headers=agent)).json()
    assert len(listed["items"]) == 1
    problem = listed["items"][0]
    assert problem["ci_id"] == ci_id
    assert problem["title"] == "Recurring incidents on configuration item payroll-db"
    assert sorted(problem["incidents"]) == sorted([first["id"], second["id"]])
    for incident in (first, second):
        read = (await api.get(f"/incidents/{incident['id']}", headers=agent)).json()
        assert read["problem_id"] == problem["id"]
    assert returned.problem_id == uuid.UUID(problem["id"])
    events = await events_on(infra, start, f"trend/ci/{ci_id}", lambda t: SUGGESTED in t)
    assert events[0][1]["opened_problem_id"] == problem["id"]
    created = await events_on(infra, start, problem["id"], lambda t: len(t) >= 1)
    assert created[0][1]["origin"] == "trend"
    # Its incidents are explained now: the next one on the CI suggests nothing new.
    third = await log(api, agent, ci_id=ci_id)
    await detect(api, pools, tenant, third["id"])
    again = (await api.get("/problems", params={"origin": "trend"}, headers=agent)).json()
    assert len(again["items"]) == 1


# --- Change requests ------------------------------------------------------------------------


async def test_a_change_request_carries_the_trail_from_incidents_to_the_known_error(
    api, agent, manager, pools, tenant, infra, start
):
    ci_id, _ = await seed_ci(pools, tenant)
    incident = await log(api, agent, ci_id=ci_id)
    problem = await published(api, manager, ci_id=ci_id)
    problem = (
        await api.post(
            f"/problems/{problem['id']}/incidents",
            json={"incident_id": incident["id"]},
            headers=if_match(agent, problem),
        )
    ).json()
    unknown = await api.post(
        f"/problems/{problem['id']}/change-requests",
        json={"title": "Add index", "ci_ids": [str(uuid.uuid4())]},
        headers=if_match(manager, problem),
    )
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "ci_ids"
    response = await api.post(
        f"/problems/{problem['id']}/change-requests",
        json={"title": "Add index", "description": "on payroll.runs"},
        headers=if_match(manager, problem),
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["problem"]["change_requests"] == [body["request_id"]]
    events = await events_on(
        infra, start, problem["id"], lambda t: "itsm.incident.problem.change_requested.v1" in t
    )
    assert events[-1][1] == {
        "request_id": body["request_id"],
        "title": "Add index",
        "description": "on payroll.runs",
        "ci_ids": [ci_id],
        "known_error_id": problem["id"],
        "incidents": [incident["id"]],
    }


# --- Who and which tenant -------------------------------------------------------------------


async def test_a_requester_cannot_touch_problems_and_an_agent_cannot_publish_known_errors(
    api, auth, tenant, agent
):
    requester = auth(tenant, "requester")
    assert (await api.post("/problems", json={"title": "x"}, headers=requester)).status_code == 403
    assert (await api.get("/problems", headers=requester)).status_code == 403
    problem = await open_problem(api, agent)
    assert (await move(api, agent, problem, "investigating")).status_code == 403
    refused = await known_error(api, agent, problem, root_cause="a", workaround="b")
    assert refused.status_code == 403
    change = await api.post(
        f"/problems/{problem['id']}/change-requests",
        json={"title": "x"},
        headers=if_match(agent, problem),
    )
    assert change.status_code == 403


async def test_another_tenant_never_sees_links_or_moves_the_problem(api, agent, auth):
    incident = await log(api, agent)
    problem = await open_problem(api, agent)
    stranger_tenant = f"t-{uuid.uuid4().hex[:8]}"
    stranger = auth(stranger_tenant, "problem_manager")
    assert (await api.get(f"/problems/{problem['id']}", headers=stranger)).status_code == 404
    assert (
        await api.get(f"/problems/{problem['id']}/history", headers=stranger)
    ).status_code == 404
    assert (await move(api, stranger, problem, "investigating")).status_code == 404
    linked = await api.post(
        f"/problems/{problem['id']}/incidents",
        json={"incident_id": incident["id"]},
        headers=if_match(stranger, problem),
    )
    assert linked.status_code == 404
    own = await open_problem(api, stranger)
    foreign_incident = await api.post(
        f"/problems/{own['id']}/incidents",
        json={"incident_id": incident["id"]},
        headers=if_match(stranger, own),
    )
    assert foreign_incident.status_code == 422
    listed = (await api.get("/problems", headers=stranger)).json()
    assert [p["id"] for p in listed["items"]] == [own["id"]]


async def test_search_filters_by_state_ci_and_service_and_pages_with_a_cursor(
    api, manager, pools, tenant
):
    ci_id, service_id = await seed_ci(pools, tenant)
    on_ci = [await open_problem(api, manager, ci_id=ci_id) for _ in range(3)]
    on_service = await open_problem(api, manager, service=service_id)
    await move(api, manager, on_service, "investigating")
    by_ci = (await api.get("/problems", params={"ci_id": ci_id}, headers=manager)).json()
    assert {p["id"] for p in by_ci["items"]} == {p["id"] for p in on_ci}
    by_service = (
        await api.get("/problems", params={"service": service_id}, headers=manager)
    ).json()
    assert [p["id"] for p in by_service["items"]] == [on_service["id"]]
    by_state = (
        await api.get("/problems", params={"state": ["investigating"]}, headers=manager)
    ).json()
    assert [p["id"] for p in by_state["items"]] == [on_service["id"]]
    seen, cursor = [], None
    while True:
        params = {"ci_id": ci_id, "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await api.get("/problems", params=params, headers=manager)).json()
        seen += [p["id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [p["id"] for p in reversed(on_ci)]
    bad = await api.get("/problems", params={"cursor": "nonsense"}, headers=manager)
    assert bad.status_code == 422


async def test_once_its_window_has_passed_a_trend_that_goes_on_is_suggested_again(
    api, agent, pools, tenant
):
    ci_id, _ = await seed_ci(pools, tenant)
    await set_trends(pools, tenant, threshold=2, window=3_600)
    for _ in range(2):
        incident = await log(api, agent, ci_id=ci_id)
        await detect(api, pools, tenant, incident["id"])
    async with tenant_transaction(pools["incident"], tenant) as conn:
        await conn.execute("UPDATE incidents SET created_at = created_at - interval '2 hours'")
        await conn.execute(
            "UPDATE problem_trends SET suggested_at = suggested_at - interval '2 hours',"
            " window_start = window_start - interval '2 hours'"
        )
    later = []
    for _ in range(2):
        later.append(await log(api, agent, ci_id=ci_id))
        await detect(api, pools, tenant, later[-1]["id"])
    rows = await fetch_as(
        pools["incident"], tenant, "SELECT suggestions, incidents FROM problem_trends"
    )
    assert [r["suggestions"] for r in rows] == [2]
    assert [str(i) for i in rows[0]["incidents"]] == [i["id"] for i in later]


# --- Through POST /incidents: the hooks as record_incident runs them ------------------------


async def test_an_incident_logged_on_a_ci_with_a_known_error_comes_back_with_its_workaround(
    api, agent, manager, pools, tenant
):
    ci_id, service_id = await seed_ci(pools, tenant)
    other_ci, other_service = await seed_ci(pools, tenant, name="ledger-db")
    on_the_ci = await published(api, manager, ci_id=ci_id)
    on_the_service = await published(api, manager, service=other_service)

    for fields, problem in (
        ({"ci_id": ci_id}, on_the_ci),
        ({"services": [other_service]}, on_the_service),
        ({"ci_id": other_ci}, on_the_service),  # the CI supports that service
    ):
        incident = await log(api, agent, **fields)
        assert incident["known_error_id"] == problem["id"], fields
        assert incident["workaround"] == problem["workaround"]
    elsewhere = await log(api, agent, services=[service_id])
    assert (elsewhere["known_error_id"], elsewhere["workaround"]) == (None, None)


async def test_the_incident_that_completes_a_trend_comes_back_linked_to_the_opened_problem(
    api, agent, pools, tenant
):
    ci_id, _ = await seed_ci(pools, tenant)
    await set_trends(pools, tenant, threshold=2, opens=True)
    first = await log(api, agent, ci_id=ci_id)
    assert first["problem_id"] is None

    response = await api.post(
        "/incidents",
        json={"title": "Payroll slow", "impact": 2, "urgency": 2, "ci_id": ci_id},
        headers=agent,
    )

    assert response.status_code == 201
    second = response.json()
    assert second["problem_id"] is not None
    assert (second["version"], response.headers["ETag"]) == (2, '"2"')
    problem = (await api.get(f"/problems/{second['problem_id']}", headers=agent)).json()
    assert sorted(problem["incidents"]) == sorted([first["id"], second["id"]])
