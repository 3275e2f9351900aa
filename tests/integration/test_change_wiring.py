"""The change service's four pieces wired together (commit 58985c4), through the HTTP API on the
real broker and database: risk reads the schedule's maintenance windows and the incident
projection's open major incidents; the last approval and a standard change's creation refuse a
blackout without an override reason (and record the override with one); the gate's failed
deployments are outcome evidence; a production deployment with no change finds its standard
change in the catalogue of templates."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaProducer

from shared.events.catalogue import CHANGE_EVENTS, INCIDENT_EVENTS
from shared.events.envelope import Envelope, new_envelope
from tests.integration.test_change_deployments import announcement
from tests.integration.test_change_schedule import published, seed_cmdb, window_body
from tests.support import eventually, fetch_as, published_so_far, send_event

OVERRIDDEN = "itsm.change.blackout_overridden.v1"


@pytest.fixture
async def api(service_client):
    return await service_client("change")


@pytest.fixture
def requester(auth, tenant):
    return auth(tenant, "requester", subject="rita")


@pytest.fixture
def manager(auth, tenant):
    return auth(tenant, "change_manager", subject="mia")


@pytest.fixture
def admin(auth, tenant):
    return auth(tenant, "tenant_admin", subject="ada")


@pytest.fixture
def pipeline(auth, tenant):
    return auth(tenant, "integration", subject="ci-bot")


@pytest.fixture
async def raw_producer(infra):
    producer = AIOKafkaProducer(bootstrap_servers=infra.bootstrap_servers)
    await producer.start()
    yield producer
    await producer.stop()


def ids(n: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(n)]


def window(start: datetime, hours: float = 2) -> dict[str, str]:
    return {
        "planned_start": start.isoformat(),
        "planned_end": (start + timedelta(hours=hours)).isoformat(),
    }


async def raise_change(api, headers, **fields) -> dict:
    body = {"type": "normal", "title": "Upgrade the payroll database", **fields}
    response = await api.post("/changes", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def moved(api, headers, change: dict, *states: str) -> dict:
    for state in states:
        response = await api.post(
            f"/changes/{change['id']}/transitions",
            json={"to": state},
            headers={**headers, "If-Match": f'"{change["version"]}"'},
        )
        assert response.status_code == 200, response.text
        change = response.json()
    return change


async def read(api, headers, change_id: str) -> dict:
    response = await api.get(f"/changes/{change_id}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def define_window(api, manager, **fields) -> dict:
    response = await api.post("/change-windows", json=window_body(**fields), headers=manager)
    assert response.status_code == 201, response.text
    return response.json()


async def set_policy(api, admin, *steps: dict) -> None:
    current = await api.get("/approval-policies", headers=admin)
    assert current.status_code == 200, current.text
    saved = await api.put(
        "/approval-policies",
        json={"rows": [{"name": "wiring", "steps": list(steps)}]},
        headers={**admin, "If-Match": current.headers["etag"]},
    )
    assert saved.status_code == 200, saved.text


def step(name: str, *users: str) -> dict:
    return {"name": name, "approvers": {"users": list(users)}, "deadline": "P1D"}


async def decide(api, headers, change: dict, **body):
    return await api.post(
        f"/changes/{change['id']}/approvals", json={"decision": "approve", **body}, headers=headers
    )


async def assess(api, headers, change: dict) -> dict:
    response = await api.post(f"/changes/{change['id']}/risk-assessments", json={}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def factor(assessment: dict, name: str) -> dict:
    [found] = [f for f in assessment["factors"] if f["name"] == name]
    return found


async def overrides(infra, pools, tenant, start, change_id: str) -> list[dict]:
    return [
        data
        for kind, data in await published(infra, pools, tenant, start, change_id)
        if kind == OVERRIDDEN
    ]


# --- 1. risk <- the schedule's maintenance windows -----------------------------------------


async def test_a_risk_assessment_weighs_the_maintenance_window_of_the_real_schedule(
    api, requester, manager, tenant, pools
):
    db, other = ids(2)
    await seed_cmdb(pools["change"], tenant, [db, other])
    # db is changed on Sunday nights only (01:00-05:00 Berlin); `other` has no window at all.
    await define_window(
        api,
        manager,
        name="db Sundays",
        kind="maintenance",
        scope="cis",
        ci_ids=[db],
        start="2027-01-03T01:00:00",
        duration="PT4H",
        rrule="FREQ=WEEKLY;BYDAY=SU",
    )
    wednesday = datetime(2027, 3, 3, 10, 0, tzinfo=UTC)
    sunday = datetime(2027, 3, 7, 1, 0, tzinfo=UTC)  # 02:00 in Berlin
    outside = await raise_change(api, requester, affected_ci_ids=[db], **window(wednesday))
    inside = await raise_change(api, requester, affected_ci_ids=[db], **window(sunday, 1))
    uncovered = await raise_change(api, requester, affected_ci_ids=[other], **window(wednesday))

    weighed = await assess(api, manager, outside)
    found = factor(weighed, "maintenance_window")
    assert (found["input"], found["contribution"]) == (False, 15.0)
    assert "outside" in found["explanation"]
    assert weighed["inputs"]["inside_maintenance_window"] is False

    found = factor(await assess(api, manager, inside), "maintenance_window")
    assert (found["input"], found["contribution"]) == (True, 0.0)
    assert "inside" in found["explanation"]

    unknown = await assess(api, manager, uncovered)
    found = factor(unknown, "maintenance_window")
    assert (found["input"], found["contribution"]) == (None, 0.0)
    assert "unknown" in found["explanation"]
    assert unknown["inputs"]["inside_maintenance_window"] is None


# --- 2. risk <- the incident projection's open major incidents ------------------------------


def incident(tenant: str, subject: str, version: int, type: str, **data) -> Envelope:
    return new_envelope(
        source="itsm/incident",
        type=f"itsm.incident.{type}.v1",
        subject=subject,
        tenantid=tenant,
        itsmversion=version,
        actor="tester",
        data=data,
    )


def logged(tenant: str, subject: str, *, major: bool, ci_id=None, services=()) -> Envelope:
    return incident(
        tenant,
        subject,
        1,
        "created",
        title="Payroll failing",
        description="",
        impact=1,
        urgency=1,
        priority=1 if major else 3,
        state="new",
        number=7,
        major=major,
        services=list(services),
        ci_id=ci_id,
    )


def resolved(tenant: str, subject: str, version: int) -> Envelope:
    return incident(
        tenant,
        subject,
        version,
        "transitioned",
        from_state="in_progress",
        to_state="resolved",
        priority=1,
    )


async def projected(pools, tenant) -> dict[str, bool]:
    """Each incident the change service's projection holds: whether it is resolved."""
    rows = await fetch_as(pools["change"], tenant, "SELECT id, resolved_at FROM proj_incidents")
    return {str(r["id"]): r["resolved_at"] is not None for r in rows}


async def test_a_risk_assessment_counts_the_open_major_incidents_the_incident_projection_holds(
    api, requester, manager, tenant, pools, raw_producer
):
    db, app = ids(2)
    payroll, billing = f"svc-{uuid.uuid4().hex[:8]}", f"svc-{uuid.uuid4().hex[:8]}"
    await seed_cmdb(pools["change"], tenant, [db, app], services={app: [payroll]})
    start = datetime.now(UTC) + timedelta(days=5)
    change = await raise_change(api, requester, affected_ci_ids=[db, app], **window(start))

    quiet = factor(await assess(api, manager, change), "major_incidents")
    assert (quiet["input"], quiet["contribution"]) == (0, 0.0)

    on_db, on_payroll, minor, over, elsewhere = ids(5)
    for event in (
        logged(tenant, on_db, major=True, ci_id=db),
        logged(tenant, on_payroll, major=True, services=[payroll]),  # app supports payroll
        logged(tenant, minor, major=False, ci_id=db),
        logged(tenant, over, major=True, ci_id=db),
        resolved(tenant, over, 2),
        logged(tenant, elsewhere, major=True, services=[billing]),
    ):
        await send_event(raw_producer, event, INCIDENT_EVENTS)
    await eventually(
        lambda: projected(pools, tenant), lambda found: len(found) == 5 and found.get(over) is True
    )

    assessed = await assess(api, manager, change)
    found = factor(assessed, "major_incidents")
    assert (found["input"], found["contribution"]) == (2, 20.0)
    assert found["explanation"].startswith("2 open major incidents")
    assert assessed["inputs"]["open_major_incidents"] == 2

    # Resolved in the incident service: the next assessment counts one fewer.
    await send_event(raw_producer, resolved(tenant, on_db, 2), INCIDENT_EVENTS)
    await eventually(lambda: projected(pools, tenant), lambda found: found[on_db] is True)
    found = factor(await assess(api, manager, change), "major_incidents")
    assert (found["input"], found["contribution"]) == (1, 10.0)


# --- 3. the last approval <- the schedule's blackouts --------------------------------------


async def test_the_last_approval_into_a_blackout_is_refused_naming_it_until_an_override_is_given(
    api, requester, manager, auth, admin, tenant, pools, infra
):
    db, app = ids(2)
    await seed_cmdb(pools["change"], tenant, [db, app])
    await set_policy(api, admin, step("technical", "dora"), step("cab", "ada"))
    freeze = await define_window(api, manager, scope="cis", ci_ids=[db])  # 1-8 March, Berlin
    change = await raise_change(
        api,
        requester,
        affected_ci_ids=[db, app],
        implementer="ivan",
        **window(datetime(2027, 3, 3, 10, 0, tzinfo=UTC)),
    )
    change = await moved(api, manager, change, "assess", "authorize")

    # Not the last approval: nothing is scheduled yet, so no blackout stands in the way.
    first = await decide(api, auth(tenant, "agent", subject="dora"), change)
    assert first.status_code == 201, first.text

    refused = await decide(api, admin, change, comment="fine by me")
    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    problem = refused.json()
    assert problem["blackouts"] == [
        {"window_id": freeze["id"], "reference": freeze["reference"], "ci_ids": [db]}
    ]
    assert [e["field"] for e in problem["errors"]] == ["blackout_override_reason"]
    assert freeze["reference"] in problem["detail"] and db in problem["detail"]
    assert (await read(api, manager, change["id"]))["state"] == "authorize"
    view = (await api.get(f"/changes/{change['id']}/approvals", headers=manager)).json()
    assert view["status"] == "pending"
    assert [d["approver"] for d in view["decisions"]] == ["dora"]  # ada's was not kept

    start = await published_so_far(infra.bootstrap_servers, CHANGE_EVENTS, pools["change"], tenant)
    approved = await decide(
        api, admin, change, blackout_override_reason="payroll cannot wait, INC42"
    )
    assert approved.status_code == 201, approved.text
    assert approved.json()["status"] == "approved"
    assert approved.json()["approved_by"] == ["dora", "ada"]
    assert (await read(api, manager, change["id"]))["state"] == "scheduled"
    assert await overrides(infra, pools, tenant, start, change["id"]) == [
        {
            "change_id": change["id"],
            "reason": "payroll cannot wait, INC42",
            "blackouts": [{"window_id": freeze["id"], "name": freeze["reference"], "ci_ids": [db]}],
        }
    ]


# --- 4. a standard change's creation <- the schedule's blackouts ---------------------------


async def test_a_standard_change_raised_into_a_blackout_needs_an_override_reason(
    api, requester, manager, tenant, pools, infra
):
    [db] = ids(1)
    await seed_cmdb(pools["change"], tenant, [db])
    made = await api.post(
        "/change-templates",
        json={
            "name": "Restart the payroll database",
            "implementation_plan": "systemctl restart postgresql",
            "backout_plan": "nothing to back out",
            "ci_ids": [db],
        },
        headers=manager,
    )
    assert made.status_code == 201, made.text
    template = made.json()
    freeze = await define_window(api, manager, scope="cis", ci_ids=[db])  # 1-8 March, Berlin
    body = {
        "type": "standard",
        "title": "Restart the payroll database",
        "template_id": template["id"],
        "affected_ci_ids": [db],
        **window(datetime(2027, 3, 3, 10, 0, tzinfo=UTC)),
    }

    refused = await api.post("/changes", json=body, headers=requester)
    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    problem = refused.json()
    assert problem["blackouts"] == [
        {"window_id": freeze["id"], "reference": freeze["reference"], "ci_ids": [db]}
    ]
    assert [e["field"] for e in problem["errors"]] == ["blackout_override_reason"]
    listed = await api.get("/changes", headers=manager)
    assert listed.json()["items"] == []  # nothing of the refused change was kept

    # Outside the blackout, a standard change needs no reason.
    later = {**body, **window(datetime(2027, 3, 10, 10, 0, tzinfo=UTC))}
    assert (await raise_change(api, requester, **later))["state"] == "scheduled"

    start = await published_so_far(infra.bootstrap_servers, CHANGE_EVENTS, pools["change"], tenant)
    overridden = await raise_change(
        api, requester, **{**body, "blackout_override_reason": "certificate expires tonight"}
    )
    assert overridden["state"] == "scheduled" and overridden["type"] == "standard"
    assert await overrides(infra, pools, tenant, start, overridden["id"]) == [
        {
            "change_id": overridden["id"],
            "reason": "certificate expires tonight",
            "blackouts": [{"window_id": freeze["id"], "name": freeze["reference"], "ci_ids": [db]}],
        }
    ]


# --- 5. the outcome proposal <- the gate's deployments -------------------------------------


async def test_the_outcome_proposal_names_a_failed_deployment_until_a_later_one_succeeds(
    api, requester, manager, admin, pipeline, tenant
):
    await set_policy(api, admin, step("technical", "ada"))
    now = datetime.now(UTC)
    change = await raise_change(api, requester, **window(now - timedelta(minutes=5), 2))
    change = await moved(api, manager, change, "assess", "authorize")
    approved = await decide(api, admin, change)
    assert approved.status_code == 201, approved.text
    change = await moved(api, manager, await read(api, manager, change["id"]), "implement")
    path = f"/changes/{change['id']}/outcome-proposal"
    assert (await api.get(path, headers=requester)).json()["proposed_outcome"] == "successful"

    async def deployed(sequence: int, status: str | None) -> dict:
        body = announcement(environment="production", sequence=sequence, change_id=change["id"])
        response = await api.post("/deployments", json=body, headers=pipeline)
        assert response.status_code == 201, response.text
        assert response.json()["decision"] == "allowed", response.text
        if status is not None:
            recorded = await api.post(
                f"/deployments/{response.json()['id']}/status",
                json={"status": status},
                headers=pipeline,
            )
            assert recorded.status_code == 200, recorded.text
        return response.json()

    await deployed(41, "failed")
    proposal = (await api.get(path, headers=requester)).json()
    assert proposal["proposed_outcome"] == "failed"
    assert proposal["failed_deployments"] == ["payroll-deploy/production#41"]
    assert "payroll-deploy/production#41" in proposal["reasons"][0]

    # Announced again but not reported yet: the failure still stands.
    retry = await deployed(42, None)
    assert (await api.get(path, headers=requester)).json()["proposed_outcome"] == "failed"
    succeeded = await api.post(
        f"/deployments/{retry['id']}/status", json={"status": "succeeded"}, headers=pipeline
    )
    assert succeeded.status_code == 200, succeeded.text
    proposal = (await api.get(path, headers=requester)).json()
    assert proposal["proposed_outcome"] == "successful"
    assert proposal["failed_deployments"] == []


# --- 6. the gate <- the catalogue of standard changes --------------------------------------


async def test_a_production_deployment_with_no_change_registers_a_standard_change_from_a_template(
    api, manager, pipeline, tenant, pools
):
    payroll, billing = f"svc-{uuid.uuid4().hex[:8]}", f"svc-{uuid.uuid4().hex[:8]}"
    created = {}
    for name, service, active in (
        ("Deploy payroll", payroll, True),
        ("Deploy billing", billing, False),  # retired from the catalogue
    ):
        made = await api.post(
            "/change-templates",
            json={
                "name": name,
                "implementation_plan": "run the pipeline",
                "backout_plan": "redeploy the previous digest",
                "business_service": service,
                "active": active,
            },
            headers=manager,
        )
        assert made.status_code == 201, made.text
        created[service] = made.json()

    standard = await api.post(
        "/deployments",
        json=announcement(environment="production", services=[payroll]),
        headers=pipeline,
    )
    assert standard.status_code == 201, standard.text
    deployment = standard.json()
    assert deployment["registered"] == "standard"
    assert deployment["decision"] == "allowed", deployment["reasons"]
    change = await read(api, manager, deployment["change_id"])
    assert (change["type"], change["state"], change["origin"]) == (
        "standard",
        "scheduled",
        "deployment",
    )
    assert change["template_id"] == created[payroll]["id"]
    assert change["business_services"] == [payroll]
    assert change["title"].startswith("Deploy payroll")
    # A standard change as the template makes one: its plans, risk low.
    assert change["risk_level"] == "low"
    assert change["implementation_plan"] == "run the pipeline"
    assert change["backout_plan"] == "redeploy the previous digest"

    unmatched = await api.post(
        "/deployments",
        json=announcement(pipeline="billing-deploy", environment="production", services=[billing]),
        headers=pipeline,
    )
    assert unmatched.status_code == 201, unmatched.text
    deployment = unmatched.json()
    assert deployment["registered"] == "unauthorized"
    assert deployment["decision"] == "prevented"
    assert "unauthorized" in [r["code"] for r in deployment["reasons"]]
    change = await read(api, manager, deployment["change_id"])
    assert (change["type"], change["state"], change["origin"]) == ("normal", "new", "unauthorized")
    assert change["template_id"] is None
