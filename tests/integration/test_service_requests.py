"""Service requests on the real database and broker: submission, approvals with segregation of
duties, fulfilment, If-Match, SLA clocks, who sees what, tenants."""

import json
import uuid
from datetime import UTC, datetime

import pytest

from services.incident.adapters import projections
from shared.calendars import CalendarSpec
from shared.db import tenant_transaction
from shared.events.catalogue import (
    INCIDENT_EVENTS,
    BusinessServiceDefinedV1,
    SlaPolicyDefinedV1,
    SlaTargetV1,
)
from tests.support import end_offsets, read_topic

SECONDS = {f"P{p}": (3_600 * p, 14_400 * p) for p in range(1, 6)}


@pytest.fixture
async def api(service_client):
    return await service_client("incident")


@pytest.fixture
def ann(auth, tenant):
    """A requester: submits and follows her own requests."""
    return auth(tenant, "requester", subject="ann")


@pytest.fixture
def eve(auth, tenant):
    """A service desk agent: fulfils requests (and may approve others')."""
    return auth(tenant, "agent", subject="eve")


@pytest.fixture
def carol(auth, tenant):
    """An approver."""
    return auth(tenant, "change_manager", subject="carol")


@pytest.fixture
async def start(infra):
    """Offsets of the incident topic before the test: read what the test publishes."""
    return await end_offsets(infra.bootstrap_servers, INCIDENT_EVENTS)


async def seed(pools, tenant, *, pause_on=(), default=False, name="gold"):
    """A business service covered by an SLA policy (projection rows, as the consumer writes)."""
    service_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    async with tenant_transaction(pools["incident"], tenant) as conn:
        await projections.upsert_business_service(
            conn,
            tenant,
            BusinessServiceDefinedV1(
                id=service_id,
                name=f"Workplace {service_id[:8]}",
                status="active",
                criticality=2,
                sla_policy=None if default else name,
                version=1,
            ),
        )
        await projections.upsert_policy(
            conn,
            tenant,
            SlaPolicyDefinedV1(
                name=name,
                targets={
                    p: SlaTargetV1(response_seconds=r, resolution_seconds=s)
                    for p, (r, s) in SECONDS.items()
                },
                calendar_name="always",
                calendar=CalendarSpec.always_open().model_dump(),
                pause_on=list(pause_on),
                warning_threshold=0.75,
                services=[] if default else [service_id],
                default=default,
                version=1,
            ),
            now,
        )
    return service_id


async def submit(api, headers, **fields):
    body = {"title": "New laptop", "item": "Laptop", **fields}
    response = await api.post("/requests", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def at(request):
    """If-Match for the version a request was read at."""
    return {"If-Match": f'"{request["version"]}"'}


async def move(api, headers, request, to, **details):
    return await api.post(
        f"/requests/{request['id']}/transitions",
        json={"to": to, **details},
        headers={**headers, **at(request)},
    )


async def decide(api, headers, request, decision, comment=""):
    return await api.post(
        f"/requests/{request['id']}/approvals",
        json={"decision": decision, "comment": comment},
        headers={**headers, **at(request)},
    )


async def clocks(api, headers, request):
    response = await api.get(f"/requests/{request['id']}/sla", headers=headers)
    assert response.status_code == 200, response.text
    return {c["kind"]: c for c in response.json()}


async def events_of(infra, start, subject, until):
    """(type, data) of the subject's events on Kafka, in order, once `until(types)` holds."""

    def mine(records):
        return [r for r in records if r.key == subject.encode()]

    def types(records):
        return [dict(r.headers)["ce_type"].decode() for r in mine(records)]

    records = await read_topic(
        infra.bootstrap_servers, start, until=lambda rs: until(types(rs)), timeout=30
    )
    return [
        (dict(r.headers)["ce_type"].decode(), json.loads(r.value), dict(r.headers))
        for r in mine(records)
    ]


# --- submission -------------------------------------------------------------------------------


async def test_a_submitted_request_is_announced_on_kafka_with_its_number_req1(
    api, ann, infra, start, tenant
):
    response = await api.post(
        "/requests",
        json={"title": "New laptop", "item": "Laptop", "impact": 2, "urgency": 2},
        headers=ann,
    )
    assert response.status_code == 201, response.text
    request = response.json()
    assert response.headers["location"] == f"/requests/{request['id']}"
    assert response.headers["etag"] == '"1"'
    assert (request["reference"], request["number"]) == ("REQ1", 1)
    assert (request["state"], request["requester"], request["priority"]) == ("submitted", "ann", 3)
    events = await events_of(infra, start, request["id"], lambda t: len(t) >= 1)
    kind, data, headers = events[0]
    assert kind == "itsm.incident.request.submitted.v1"
    assert (data["number"], data["requester"], data["item"]) == (1, "ann", "Laptop")
    assert headers["ce_tenantid"].decode() == tenant
    assert headers["ce_actor"].decode() == "ann"
    second = await submit(api, ann)
    assert second["reference"] == "REQ2"


async def test_a_repeated_submission_with_the_same_idempotency_key_returns_the_first_request(
    api, ann
):
    headers = {**ann, "Idempotency-Key": f"k-{uuid.uuid4()}"}
    first = await api.post("/requests", json={"title": "Mailbox"}, headers=headers)
    again = await api.post("/requests", json={"title": "Mailbox"}, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    listed = (await api.get("/requests", headers=ann)).json()["items"]
    assert len(listed) == 1


async def test_an_unknown_business_service_is_a_422_naming_service(api, ann):
    response = await api.post(
        "/requests", json={"title": "x", "service": str(uuid.uuid4())}, headers=ann
    )
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["service"]


async def test_the_requester_cannot_be_named_among_the_approvers(api, ann):
    response = await api.post(
        "/requests", json={"title": "x", "approvers": ["carol", "ann"]}, headers=ann
    )
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["approvers"]


# --- approvals --------------------------------------------------------------------------------


async def test_an_approval_starts_fulfilment_recording_approver_time_and_event(
    api, ann, carol, infra, start
):
    request = await submit(api, ann, needs_approval=True)
    assert (request["state"], request["version"]) == ("awaiting_approval", 2)
    response = await decide(api, carol, request, "approved", "fine by me")
    assert response.status_code == 200, response.text
    approved = response.json()
    assert (approved["state"], approved["version"]) == ("in_fulfilment", 3)
    assert response.headers["etag"] == '"3"'
    [approval] = approved["approvals"]
    assert (approval["approver"], approval["decision"], approval["comment"]) == (
        "carol",
        "approved",
        "fine by me",
    )
    decided_at = datetime.fromisoformat(approval["at"])
    assert decided_at == datetime.fromisoformat(approved["updated_at"])
    expected = [
        "itsm.incident.request.submitted.v1",
        "itsm.incident.request.transitioned.v1",
        "itsm.incident.request.approval_recorded.v1",
        "itsm.incident.request.transitioned.v1",
    ]
    events = await events_of(infra, start, request["id"], lambda t: len(t) >= len(expected))
    assert [kind for kind, _, _ in events] == expected
    recorded = events[2][1]
    assert (recorded["approver"], recorded["decision"]) == ("carol", "approved")
    assert datetime.fromisoformat(recorded["at"]) == decided_at
    assert events[2][2]["ce_actor"].decode() == "carol"
    assert (events[3][1]["from_state"], events[3][1]["to_state"]) == (
        "awaiting_approval",
        "in_fulfilment",
    )
    history = (await api.get(f"/requests/{request['id']}/history", headers=carol)).json()
    assert [(h["version"], h["action"], h["actor"]) for h in history] == [
        (1, "submitted", "ann"),
        (2, "transitioned", "ann"),
        (3, "decided", "carol"),
    ]
    assert history[2]["changes"]["approval"]["to"]["approver"] == "carol"


async def test_a_rejection_needs_a_comment_and_then_rejects_the_request(api, ann, carol):
    request = await submit(api, ann, needs_approval=True)
    refused = await decide(api, carol, request, "rejected")
    assert refused.status_code == 422
    assert [e["field"] for e in refused.json()["errors"]] == ["comment"]
    rejected = await decide(api, carol, request, "rejected", "no budget this quarter")
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["state"] == "rejected"
    assert rejected.json()["approvals"][0]["comment"] == "no budget this quarter"


async def test_nobody_approves_a_request_they_submitted_or_that_is_for_them(api, auth, tenant):
    ann = auth(tenant, "agent", subject="ann")
    bob = auth(tenant, "agent", subject="bob")
    request = await submit(api, ann, requested_for="bob", needs_approval=True)
    assert request["requester"] == "bob"
    for who in (ann, bob):
        refused = await decide(api, who, request, "approved")
        assert refused.status_code == 403, refused.text
        assert "segregation of duties" in refused.json()["detail"]
    still = (await api.get(f"/requests/{request['id']}", headers=ann)).json()
    assert (still["state"], still["approvals"]) == ("awaiting_approval", [])


async def test_named_approvers_must_all_approve_and_nobody_else_may(api, ann, auth, tenant):
    carol = auth(tenant, "change_manager", subject="carol")
    dave = auth(tenant, "agent", subject="dave")
    mallory = auth(tenant, "agent", subject="mallory")
    request = await submit(api, ann, approvers=["carol", "dave"])
    assert request["pending_approvers"] == ["carol", "dave"]
    assert (await decide(api, mallory, request, "approved")).status_code == 403
    first = (await decide(api, carol, request, "approved")).json()
    assert (first["state"], first["pending_approvers"]) == ("awaiting_approval", ["dave"])
    again = await decide(api, carol, first, "approved")
    assert again.status_code == 409
    second = (await decide(api, dave, first, "approved")).json()
    assert second["state"] == "in_fulfilment"
    assert [a["approver"] for a in second["approvals"]] == ["carol", "dave"]


async def test_a_decision_on_a_request_that_needs_no_approval_is_a_409(api, ann, carol):
    request = await submit(api, ann)
    response = await decide(api, carol, request, "approved")
    assert response.status_code == 409
    assert "not awaiting approval" in response.json()["detail"]


# --- moves ------------------------------------------------------------------------------------


async def test_a_request_is_fulfilled_with_notes_and_closed(api, ann, eve):
    request = await submit(api, ann)
    started = (await move(api, eve, request, "in_fulfilment")).json()
    no_notes = await move(api, eve, started, "fulfilled")
    assert no_notes.status_code == 422
    assert [e["field"] for e in no_notes.json()["errors"]] == ["notes"]
    done = await move(api, eve, started, "fulfilled", notes="handed over, asset 4711")
    assert done.status_code == 200, done.text
    assert done.json()["fulfilment_notes"] == "handed over, asset 4711"
    closed = (await move(api, eve, done.json(), "closed")).json()
    assert (closed["state"], closed["closed_by"], closed["version"]) == ("closed", "eve", 4)


async def test_an_illegal_move_is_a_409_naming_the_allowed_ones(api, ann, eve):
    request = await submit(api, ann)
    response = await move(api, eve, request, "fulfilled", notes="done")
    assert response.status_code == 409
    problem = response.json()
    assert problem["allowed"] == ["awaiting_approval", "cancelled", "in_fulfilment"]
    assert "in_fulfilment" in problem["errors"][0]["detail"]


async def test_leaving_approval_without_a_decision_is_a_422_naming_the_approval(api, ann, eve):
    request = await submit(api, ann, needs_approval=True)
    response = await move(api, eve, request, "in_fulfilment")
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["field"] == "approval"
    assert "/approvals" in error["detail"]


async def test_a_stale_if_match_is_412_and_a_missing_one_428(api, ann, eve, carol):
    request = await submit(api, ann, needs_approval=True)
    assert (await move(api, eve, request, "cancelled")).status_code == 200
    stale = await decide(api, carol, request, "approved")
    assert stale.status_code == 412
    assert stale.headers["etag"] == '"3"'
    missing = await api.post(
        f"/requests/{request['id']}/transitions", json={"to": "cancelled"}, headers=eve
    )
    assert missing.status_code == 428


# --- SLA clocks -------------------------------------------------------------------------------


async def test_clocks_start_at_submission_and_stop_at_fulfilment_with_their_outcome(
    api, ann, eve, pools, tenant, infra, start
):
    service_id = await seed(pools, tenant)
    request = await submit(api, ann, service=service_id, impact=2, urgency=3)
    assert (request["service"], request["sla_policy"], request["priority"]) == (
        service_id,
        "gold",
        4,
    )
    running = await clocks(api, ann, request)
    assert {k: (c["state"], c["target_seconds"]) for k, c in running.items()} == {
        "response": ("running", SECONDS["P4"][0]),
        "resolution": ("running", SECONDS["P4"][1]),
    }
    started = (await move(api, eve, request, "in_fulfilment")).json()
    after_start = await clocks(api, eve, started)
    assert (after_start["response"]["state"], after_start["response"]["outcome"]) == (
        "stopped",
        "met",
    )
    assert after_start["resolution"]["state"] == "running"
    await move(api, eve, started, "fulfilled", notes="done")
    done = await clocks(api, eve, started)
    assert {k: (c["state"], c["outcome"]) for k, c in done.items()} == {
        "response": ("stopped", "met"),
        "resolution": ("stopped", "met"),
    }
    stopped = await events_of(
        infra,
        start,
        f"sla/{request['id']}/resolution",
        lambda t: "itsm.incident.sla.clock_stopped.v1" in t,
    )
    assert stopped[-1][1]["result"] == "met"
    assert stopped[-1][1]["clock"]["record"] == "request"


async def test_a_service_by_name_or_the_tenants_default_policy_applies(api, ann, pools, tenant):
    await seed(pools, tenant, default=True, name="standard")
    service_id = await seed(pools, tenant, name="gold")
    unnamed = await submit(api, ann)
    assert unnamed["sla_policy"] == "standard"
    assert set(await clocks(api, ann, unnamed)) == {"response", "resolution"}
    by_name = await submit(api, ann, service=f"workplace {service_id[:8]}")
    assert (by_name["service"], by_name["sla_policy"]) == (service_id, "gold")


async def test_without_any_policy_a_request_has_no_clocks(api, ann):
    request = await submit(api, ann)
    assert request["sla_policy"] is None
    assert await clocks(api, ann, request) == {}


async def test_waiting_for_approval_pauses_the_clocks_only_if_the_policy_says_so(
    api, ann, carol, pools, tenant
):
    pausing = await seed(pools, tenant, pause_on=("awaiting_approval",), name="paused")
    counting = await seed(pools, tenant, name="counting")
    paused = await submit(api, ann, service=pausing, needs_approval=True)
    running = await submit(api, ann, service=counting, needs_approval=True)
    assert {c["state"] for c in (await clocks(api, ann, paused)).values()} == {"paused"}
    assert {c["state"] for c in (await clocks(api, ann, running)).values()} == {"running"}
    approved = (await decide(api, carol, paused, "approved")).json()
    resumed = await clocks(api, ann, approved)
    assert (resumed["response"]["state"], resumed["resolution"]["state"]) == (
        "stopped",
        "running",
    )
    rejected = (await decide(api, carol, running, "rejected", "not now")).json()
    assert {c["state"] for c in (await clocks(api, ann, rejected)).values()} == {"stopped"}


# --- search -----------------------------------------------------------------------------------


async def test_search_filters_and_pages_with_a_cursor(api, ann, eve, pools, tenant):
    service_id = await seed(pools, tenant)
    on_service = [await submit(api, ann, service=service_id) for _ in range(3)]
    urgent = await submit(api, eve, requested_for="bob", impact=1, urgency=1)
    await move(api, eve, urgent, "in_fulfilment")
    by_service = (await api.get("/requests", params={"service": service_id}, headers=eve)).json()
    assert {r["id"] for r in by_service["items"]} == {r["id"] for r in on_service}
    by_state = (await api.get("/requests", params={"state": "in_fulfilment"}, headers=eve)).json()
    assert [r["id"] for r in by_state["items"]] == [urgent["id"]]
    by_priority = (await api.get("/requests", params={"priority": [1]}, headers=eve)).json()
    assert [r["id"] for r in by_priority["items"]] == [urgent["id"]]
    by_requester = (await api.get("/requests", params={"requester": "bob"}, headers=eve)).json()
    assert [r["id"] for r in by_requester["items"]] == [urgent["id"]]
    seen, cursor = [], None
    while True:
        params = {"requester": "ann", "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await api.get("/requests", params=params, headers=eve)).json()
        seen += [r["id"] for r in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [r["id"] for r in reversed(on_service)]
    bad = await api.get("/requests", params={"cursor": "nonsense"}, headers=eve)
    assert bad.status_code == 422


# --- who sees and does what -------------------------------------------------------------------


async def test_a_requester_may_neither_approve_nor_fulfil(api, ann, auth, tenant):
    dan = auth(tenant, "requester", subject="dan")
    request = await submit(api, ann, needs_approval=True)
    assert (await decide(api, dan, request, "approved")).status_code == 403
    assert (await move(api, dan, request, "cancelled")).status_code == 403
    assert (await move(api, ann, request, "cancelled")).status_code == 403


async def test_a_requester_sees_only_requests_they_made_or_that_are_for_them(
    api, ann, eve, auth, tenant
):
    dan = auth(tenant, "requester", subject="dan")
    own = await submit(api, ann)
    for_ann = await submit(api, eve, requested_for="ann")
    others = await submit(api, dan)
    listed = (await api.get("/requests", headers=ann)).json()["items"]
    assert {r["id"] for r in listed} == {own["id"], for_ann["id"]}
    for path in ("", "/history", "/sla"):
        assert (await api.get(f"/requests/{others['id']}{path}", headers=ann)).status_code == 404
    assert (await api.get(f"/requests/{for_ann['id']}", headers=ann)).status_code == 200
    everything = (await api.get("/requests", headers=eve)).json()["items"]
    assert {r["id"] for r in everything} == {own["id"], for_ann["id"], others["id"]}


async def test_another_tenant_never_sees_decides_or_moves_the_request(api, ann, auth):
    request = await submit(api, ann, needs_approval=True)
    stranger = auth(f"t-{uuid.uuid4().hex[:8]}", "tenant_admin", subject="carol")
    assert (await api.get(f"/requests/{request['id']}", headers=stranger)).status_code == 404
    assert (await decide(api, stranger, request, "approved")).status_code == 404
    assert (await move(api, stranger, request, "cancelled")).status_code == 404
    assert (await api.get("/requests", headers=stranger)).json()["items"] == []
    assert (await submit(api, stranger))["reference"] == "REQ1"
