"""Satisfaction surveys and outage records on the real broker and database.

Surveys: resolving an incident announces its survey on Kafka; the caller answers through the
link with no header at all and the answer is on Kafka; a second answer is 409; an expired
survey is 410 (the clock is the app's, set by the test); a tampered token is 404 without saying
why; results are listed per tenant; the token is in no row and no event.
Outages: recorded, changed with If-Match, withdrawn, each an event; marked on a major incident
and ended when it is resolved; invisible to another tenant.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from services.incident.adapters import projections
from services.incident.entrypoints import surveys_http
from shared.db import tenant_transaction
from shared.events.catalogue import INCIDENT_EVENTS, BusinessServiceDefinedV1
from shared.http.app import create_app
from tests.conftest import DEFINITIONS
from tests.support import end_offsets, fetch_as, published_so_far, read_topic, sample_value

KEY = "survey-key-for-tests-0123456789abcdef"
BASE = "https://itsm.example.com/incident"
SENT = "itsm.incident.survey.sent.v1"
ANSWERED = "itsm.incident.survey.answered.v1"
RECORDED = "itsm.incident.outage.recorded.v1"
UPDATED = "itsm.incident.outage.updated.v1"
REFUSALS = "itsm_survey_refusals_total"


class Clock:
    """The time the survey routes judge links at; None: the real time."""

    def __init__(self) -> None:
        self.at: datetime | None = None

    def __call__(self) -> datetime:
        return self.at or datetime.now(UTC)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def api(start_runtime, clock) -> AsyncIterator[httpx.AsyncClient]:
    """The incident service with a survey key and a public base URL, its clock the test's."""
    runtime = await start_runtime("incident", survey_key=KEY, public_base_url=BASE)
    app = create_app(runtime, DEFINITIONS["incident"].routers)
    app.dependency_overrides[surveys_http.utc_now] = clock
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://incident"
    ) as client:
        client.runtime = runtime  # type: ignore[attr-defined]
        yield client


@pytest.fixture
def agent(auth, tenant):
    return auth(tenant, "agent", subject="alice")


@pytest.fixture
async def start(infra):
    return await end_offsets(infra.bootstrap_servers, INCIDENT_EVENTS)


async def events_on(infra, pools, tenant, start, subject: str) -> list[tuple[str, int, dict]]:
    """(type, version, data) of the subject's events on Kafka, once the tenant's outbox drained."""
    end = await published_so_far(
        infra.bootstrap_servers, INCIDENT_EVENTS, pools["incident"], tenant
    )
    records = await read_topic(infra.bootstrap_servers, start, to=end)
    mine = [r for r in records if r.key == subject.encode()]
    return [
        (
            dict(r.headers)["ce_type"].decode(),
            int(dict(r.headers)["ce_itsmversion"]),
            json.loads(r.value),
        )
        for r in mine
    ]


async def resolved_incident(api, headers, **fields: Any) -> dict:
    body = {"title": "VPN down", "impact": 2, "urgency": 2, "caller": "carol", **fields}
    made = await api.post("/incidents", json=body, headers=headers)
    assert made.status_code == 201, made.text
    moved = await api.post(
        f"/incidents/{made.json()['id']}/transitions",
        json={"to": "resolved", "resolution_code": "solved_permanently", "resolution_notes": "ok"},
        headers={**headers, "If-Match": made.headers["ETag"]},
    )
    assert moved.status_code == 200, moved.text
    return moved.json()


async def link(api, headers, incident_id: str) -> dict:
    found = await api.get(f"/incidents/{incident_id}/survey", headers=headers)
    assert found.status_code == 200, found.text
    assert found.headers["cache-control"] == "no-store"
    return found.json()


def path_of(url: str) -> str:
    assert url.startswith(BASE + "/surveys/")
    return url.removeprefix(BASE)


# --- surveys -----------------------------------------------------------------------------------


async def test_a_resolved_incidents_caller_answers_its_survey_through_the_link_without_any_header(
    api, agent, infra, pools, tenant, start
):
    incident = await resolved_incident(
        api, agent, services=["svc-vpn"], assignment_group="network", assignee="nina"
    )
    shown = await link(api, agent, incident["id"])
    assert (shown["state"], shown["caller"], shown["score"]) == ("open", "carol", None)
    path = path_of(shown["url"])

    page = await api.get(path)  # no Authorization, no X-Tenant-Id
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["referrer-policy"] == "no-referrer"
    assert '<form method="post">' in page.text and "<script" not in page.text
    assert f"INC{incident['number']}" in page.text and 'name="score"' in page.text
    prompt = await api.get(path, headers={"Accept": "application/json"})
    assert prompt.json()["reference"] == f"INC{incident['number']}"
    assert prompt.json()["record"] == "incident"

    answered = await api.post(
        path,
        content="score=4&comment=Quick+and+friendly",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answered.status_code == 200, answered.text
    assert "Thank you" in answered.text

    events = await events_on(infra, pools, tenant, start, f"survey/{incident['id']}")
    assert [(t, v) for t, v, _ in events] == [(SENT, 1), (ANSWERED, 2)]
    sent, answer = events[0][2], events[1][2]
    assert (sent["record"], sent["record_id"], sent["caller"]) == (
        "incident",
        incident["id"],
        "carol",
    )
    assert (sent["services"], sent["assignment_group"], sent["assignee"]) == (
        ["svc-vpn"],
        "network",
        "nina",
    )
    assert (answer["score"], answer["comment"], answer["assignee"]) == (
        4,
        "Quick and friendly",
        "nina",
    )
    after = await link(api, agent, incident["id"])
    assert (after["state"], after["score"], after["url"]) == ("answered", 4, None)

    # The token is the credential: it is in no row of the service and in no event.
    token = path.rsplit("/", 1)[1]
    assert token not in json.dumps([e[2] for e in events])
    rows = await fetch_as(pools["incident"], tenant, "SELECT surveys::text AS row FROM surveys")
    assert rows and all(token not in r["row"] for r in rows)


async def test_a_second_answer_is_409_and_an_expired_survey_is_410_by_the_apps_clock(
    api, agent, tenant, clock, pools
):
    first = await resolved_incident(api, agent)
    path = path_of((await link(api, agent, first["id"]))["url"])
    assert (await api.post(path, json={"score": 5})).status_code == 200
    again = await api.post(path, json={"score": 1, "comment": "changed my mind"})
    assert again.status_code == 409, again.text
    assert again.headers["content-type"] == "application/problem+json"
    assert (await api.get(path)).status_code == 409

    second = await resolved_incident(api, agent)
    shown = await link(api, agent, second["id"])
    expires_at = datetime.fromisoformat(shown["expires_at"])
    clock.at = expires_at - timedelta(seconds=1)
    assert (await api.get(path_of(shown["url"]))).status_code == 200
    clock.at = expires_at
    for answer in (
        await api.get(path_of(shown["url"])),
        await api.post(path_of(shown["url"]), json={"score": 3}),
    ):
        assert answer.status_code == 410, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
    scores = await fetch_as(
        pools["incident"], tenant, "SELECT record_id, score FROM surveys ORDER BY sent_at"
    )
    assert [(str(r["record_id"]), r["score"]) for r in scores] == [
        (first["id"], 5),
        (second["id"], None),
    ]


async def test_a_tampered_or_foreign_token_is_404_without_saying_which_part_was_wrong(
    api, agent, auth, tenant
):
    incident = await resolved_incident(api, agent)
    path = path_of((await link(api, agent, incident["id"]))["url"])
    token = path.rsplit("/", 1)[1]
    payload, mac = token.split(".")
    refused_before = sample_value(api.runtime.registry, REFUSALS, {"reason": "invalid"})
    tampered = [
        f"/surveys/{payload}.{('A' if mac[0] != 'A' else 'B') + mac[1:]}",
        f"/surveys/{payload[:-2]}.{mac}",
        "/surveys/not-a-token",
        f"/surveys/{token}x",
    ]
    answers = [await api.post(p, json={"score": 1}) for p in tampered]
    answers.append(await api.get(tampered[0], headers=auth(tenant, "tenant_admin")))
    assert [a.status_code for a in answers] == [404] * 5, [a.text for a in answers]
    assert len({a.json()["detail"] for a in answers}) == 1
    assert all(a.headers["content-type"] == "application/problem+json" for a in answers)
    refused = sample_value(api.runtime.registry, REFUSALS, {"reason": "invalid"})
    assert refused == refused_before + 5
    # The genuine link still works: nothing was answered by the attempts.
    assert (await api.post(path, json={"score": 2})).status_code == 200


async def test_survey_results_are_listed_to_the_tenant_only_and_an_answer_is_validated(
    api, agent, auth, tenant
):
    incident = await resolved_incident(api, agent)
    path = path_of((await link(api, agent, incident["id"]))["url"])
    bad = await api.post(path, json={"score": 6, "comment": "x"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "score"
    long = await api.post(path, json={"score": 3, "comment": "x" * 2001})
    assert long.status_code == 422 and long.json()["errors"][0]["field"] == "comment"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    nul = await api.post(path, content="score=3&comment=a%00b", headers=form)
    assert nul.status_code == 422 and nul.json()["errors"][0]["field"] == "comment"
    word = await api.post(path, content="score=good", headers=form)
    assert word.status_code == 422 and word.json()["errors"][0]["field"] == "score"
    text = await api.post(path, content="score=3", headers={"Content-Type": "text/plain"})
    assert text.status_code == 422 and text.json()["errors"][0]["field"] == "Content-Type"
    assert (await api.post(path, json={"score": 3, "comment": "fine"})).status_code == 200

    manager = auth(tenant, "problem_manager")
    listed = await api.get("/surveys", params={"score": 3}, headers=manager)
    assert listed.status_code == 200, listed.text
    [item] = listed.json()["items"]
    assert (item["record_id"], item["score"], item["comment"]) == (incident["id"], 3, "fine")
    assert (await api.get("/surveys", params={"score": 5}, headers=manager)).json()["items"] == []
    assert (await api.get("/surveys", headers=auth(tenant, "requester"))).status_code == 403

    other = f"{tenant}-other"
    stranger = auth(other, "agent")
    assert (await api.get("/surveys", headers=stranger)).json()["items"] == []
    foreign = await api.get(f"/incidents/{incident['id']}/survey", headers=stranger)
    assert foreign.status_code == 404


# --- outages -----------------------------------------------------------------------------------


async def seed_services(pools, tenant, *names: str) -> dict[str, str]:
    """Business services in the incident service's projection of the catalogue (no broker)."""
    ids = {name: str(uuid.uuid4()) for name in names}
    async with tenant_transaction(pools["incident"], tenant) as conn:
        await projections.upsert_business_services(
            conn,
            tenant,
            [
                BusinessServiceDefinedV1(id=i, name=n, status="active", criticality=2, version=1)
                for n, i in ids.items()
            ],
        )
    return ids


async def test_an_outage_is_recorded_ended_and_withdrawn_with_if_match_each_an_event(
    api, agent, auth, infra, pools, tenant, start
):
    services = await seed_services(pools, tenant, "payroll", "mail")
    began = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    made = await api.post(
        "/outages",
        json={
            "services": ["payroll", services["mail"]],
            "kind": "outage",
            "start": began.isoformat(),
        },
        headers=agent,
    )
    assert made.status_code == 201, made.text
    outage = made.json()
    assert made.headers["ETag"] == '"1"' and made.headers["Location"] == f"/outages/{outage['id']}"
    assert outage["services"] == [services["payroll"], services["mail"]] and outage["end"] is None

    url = f"/outages/{outage['id']}"
    ended_at = began + timedelta(hours=1)
    assert (
        await api.patch(url, json={"end": ended_at.isoformat()}, headers=agent)
    ).status_code == 428
    backwards = await api.patch(
        url,
        json={"end": (began - timedelta(hours=1)).isoformat()},
        headers={**agent, "If-Match": '"1"'},
    )
    assert backwards.status_code == 422 and backwards.json()["errors"][0]["field"] == "end"
    ended = await api.patch(
        url, json={"end": ended_at.isoformat()}, headers={**agent, "If-Match": '"1"'}
    )
    assert ended.status_code == 200 and ended.headers["ETag"] == '"2"', ended.text
    stale = await api.patch(url, json={"summary": "db"}, headers={**agent, "If-Match": '"1"'})
    assert stale.status_code == 412
    withdrawn = await api.patch(
        url,
        json={"withdrawn": True, "reason": "a monitoring test"},
        headers={**agent, "If-Match": '"2"'},
    )
    assert withdrawn.status_code == 200 and withdrawn.json()["withdrawn"] is True

    read = await api.get(url, headers=auth(tenant, "auditor"))
    assert read.status_code == 200 and read.headers["ETag"] == '"3"'
    listed = await api.get("/outages", params={"service": services["mail"]}, headers=agent)
    assert [o["id"] for o in listed.json()["items"]] == [outage["id"]]

    events = await events_on(infra, pools, tenant, start, f"outage/{outage['id']}")
    assert [(t, v) for t, v, _ in events] == [(RECORDED, 1), (UPDATED, 2), (UPDATED, 3)]
    assert events[1][2]["outage"]["end"].startswith(ended_at.strftime("%Y-%m-%dT%H:%M:%S"))
    assert (events[2][2]["withdrawn"], events[2][2]["reason"]) == (True, "a monitoring test")


async def test_unknown_services_and_times_in_the_future_are_422_naming_the_field(
    api, agent, pools, tenant
):
    await seed_services(pools, tenant, "payroll")
    now = datetime.now(UTC)
    answers = {
        "services[1]": {
            "services": ["payroll", "nope"],
            "kind": "outage",
            "start": now.isoformat(),
        },
        "start": {
            "services": ["payroll"],
            "kind": "degradation",
            "start": (now + timedelta(hours=1)).isoformat(),
        },
        "end": {
            "services": ["payroll"],
            "kind": "outage",
            "start": now.isoformat(),
            "end": (now + timedelta(hours=1)).isoformat(),
        },
    }
    for field, body in answers.items():
        refused = await api.post("/outages", json=body, headers=agent)
        assert refused.status_code == 422, refused.text
        assert [e["field"] for e in refused.json()["errors"]] == [field]


async def test_an_outage_marked_on_a_major_incident_ends_when_the_incident_is_resolved(
    api, agent, infra, pools, tenant, start
):
    services = await seed_services(pools, tenant, "payroll")
    minor = await api.post(
        "/incidents", json={"title": "slow", "impact": 3, "urgency": 3}, headers=agent
    )
    not_major = await api.post(
        f"/incidents/{minor.json()['id']}/outages",
        json={"services": ["payroll"], "start": datetime.now(UTC).isoformat()},
        headers=agent,
    )
    assert not_major.status_code == 409, not_major.text

    major = await api.post(
        "/incidents", json={"title": "Payroll down", "impact": 1, "urgency": 1}, headers=agent
    )
    assert major.json()["major"] is True
    marked = await api.post(
        f"/incidents/{major.json()['id']}/outages",
        json={"services": ["payroll"], "start": datetime.now(UTC).isoformat(), "summary": "down"},
        headers=agent,
    )
    assert marked.status_code == 201, marked.text
    assert marked.json()["incident_id"] == major.json()["id"]
    resolved = await api.post(
        f"/incidents/{major.json()['id']}/transitions",
        json={"to": "resolved", "resolution_code": "solved_permanently", "resolution_notes": "up"},
        headers={**agent, "If-Match": major.headers["ETag"]},
    )
    assert resolved.status_code == 200, resolved.text

    outage = (await api.get(f"/outages/{marked.json()['id']}", headers=agent)).json()
    assert outage["version"] == 2
    assert datetime.fromisoformat(outage["end"]) == datetime.fromisoformat(
        resolved.json()["resolved_at"]
    )
    events = await events_on(infra, pools, tenant, start, f"outage/{outage['id']}")
    assert [(t, v) for t, v, _ in events] == [(RECORDED, 1), (UPDATED, 2)]
    assert events[0][2]["outage"]["services"] == [services["payroll"]]


async def test_another_tenant_neither_sees_nor_changes_an_outage(api, agent, auth, pools, tenant):
    await seed_services(pools, tenant, "payroll")
    made = await api.post(
        "/outages",
        json={"services": ["payroll"], "kind": "outage", "start": datetime.now(UTC).isoformat()},
        headers=agent,
    )
    assert made.status_code == 201
    stranger = auth(f"{tenant}-other", "tenant_admin")
    url = f"/outages/{made.json()['id']}"
    assert (await api.get(url, headers=stranger)).status_code == 404
    assert (await api.get("/outages", headers=stranger)).json()["items"] == []
    changed = await api.patch(url, json={"summary": "x"}, headers={**stranger, "If-Match": '"1"'})
    assert changed.status_code == 404
    # Its services are the tenant's own: another tenant cannot name them.
    foreign = await api.post(
        "/outages",
        json={"services": ["payroll"], "kind": "outage", "start": datetime.now(UTC).isoformat()},
        headers=stranger,
    )
    assert foreign.status_code == 422


async def test_a_tenant_sets_how_long_surveys_last_or_switches_them_off(api, agent, auth, tenant):
    admin = auth(tenant, "tenant_admin", subject="ada")
    saved = await api.put(
        "/incident-settings", json={"survey_days": 3}, headers={**admin, "If-Match": '"0"'}
    )
    assert saved.status_code == 200 and saved.json()["survey_days"] == 3, saved.text
    incident = await resolved_incident(api, agent)
    shown = await link(api, agent, incident["id"])
    resolved_at = datetime.fromisoformat(incident["resolved_at"])
    expires_at = datetime.fromisoformat(shown["expires_at"])
    assert timedelta(days=3) - timedelta(seconds=1) <= expires_at - resolved_at <= timedelta(days=3)

    off = await api.put(
        "/incident-settings", json={"surveys_enabled": False}, headers={**admin, "If-Match": '"1"'}
    )
    assert off.status_code == 200 and off.json()["surveys_enabled"] is False
    quiet = await resolved_incident(api, agent)
    assert (await api.get(f"/incidents/{quiet['id']}/survey", headers=agent)).status_code == 404
