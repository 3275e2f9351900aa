"""Alert intake on the real database and broker: Alertmanager webhooks and PagerDuty-style events
open one incident per alert group, update it, resolve, reopen and follow it, under concurrency
and across tenants."""

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import ConsumerRecord

from services.incident.adapters import projections
from shared.calendars import CalendarSpec
from shared.db import tenant_transaction
from shared.devstack.platform import Infra
from shared.events.catalogue import (
    INCIDENT_EVENTS,
    BusinessServiceDefinedV1,
    CiStateV1,
    SlaPolicyDefinedV1,
    SlaTargetV1,
)
from tests.support import end_offsets, fetch_as, read_topic, sample_value

Json = dict[str, Any]
Headers = dict[str, str]
Auth = Callable[..., Headers]
Pools = dict[str, asyncpg.Pool]
ServiceClient = Callable[[str], Awaitable[httpx.AsyncClient]]

ALERTMANAGER = "/integrations/alertmanager"
EVENTS = "/integrations/events"
STARTS = "2024-05-01T10:00:00Z"
UNSET = "0001-01-01T00:00:00Z"  # Go's zero time: a firing alert's endsAt
SECONDS = {f"P{p}": (600 * p, 3_600 * p) for p in range(1, 6)}


@pytest.fixture
async def api(service_client: ServiceClient) -> httpx.AsyncClient:
    return await service_client("incident")


@pytest.fixture
def hook(auth: Auth, tenant: str) -> Headers:
    """The monitoring tool's token."""
    return auth(tenant, "integration", subject="alertmanager")


@pytest.fixture
def agent(auth: Auth, tenant: str) -> Headers:
    return auth(tenant, "agent", subject="alice")


def alert(
    fingerprint: str = "f1",
    *,
    name: str = "HighErrorRate",
    status: str = "firing",
    severity: str = "warning",
    ends: str = UNSET,
    summary: str = "5xx above 5%",
    **labels: str,
) -> Json:
    return {
        "status": status,
        "labels": {"alertname": name, "severity": severity, **labels},
        "annotations": {"summary": summary},
        "startsAt": STARTS,
        "endsAt": ends,
        "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
        "fingerprint": fingerprint,
    }


def notification(
    *alerts: Json, group: str = '{}:{alertname="HighErrorRate"}', receiver: str = "itsm"
) -> Json:
    firing = any(a["status"] == "firing" for a in alerts)
    return {
        "version": "4",
        "groupKey": group,
        "truncatedAlerts": 0,
        "status": "firing" if firing else "resolved",
        "receiver": receiver,
        "groupLabels": {"alertname": "HighErrorRate"},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": list(alerts),
    }


async def send(
    api: httpx.AsyncClient,
    headers: Headers,
    body: Json,
    path: str = ALERTMANAGER,
    status: int = 200,
) -> Json:
    response = await api.post(path, json=body, headers=headers)
    assert response.status_code == status, response.text
    received: Json = response.json()
    return received


async def incident_of(api: httpx.AsyncClient, headers: Headers, receipt: Json) -> Json:
    response = await api.get(f"/incidents/{receipt['incident_id']}", headers=headers)
    assert response.status_code == 200, response.text
    incident: Json = response.json()
    return incident


async def notes_of(api: httpx.AsyncClient, headers: Headers, incident_id: str) -> list[str]:
    response = await api.get(f"/incidents/{incident_id}/work-notes", headers=headers)
    assert response.status_code == 200, response.text
    return [n["note"] for n in response.json()]


async def configure(api: httpx.AsyncClient, auth: Auth, tenant: str, **mapping: Any) -> None:
    """The tenant's alert mapping, through the settings API (a fresh tenant: version 0)."""
    response = await api.put(
        "/incident-settings",
        json={"alert_mapping": mapping},
        headers={**auth(tenant, "tenant_admin", subject="ada"), "If-Match": '"0"'},
    )
    assert response.status_code == 200, response.text


async def seed_ci(
    pools: Pools, tenant: str, name: str, external_ids: dict[str, str] | None = None
) -> str:
    ci_id = str(uuid.uuid4())
    state = CiStateV1(
        id=ci_id,
        ci_class="database",
        name=name,
        status="active",
        owner_team="dba",
        criticality=1,
        attributes={},
        external_ids=external_ids or {},
        controlled=False,
        version=1,
        updated_at=datetime.now(UTC),
        updated_by="tester",
    )
    async with tenant_transaction(pools["incident"], tenant) as conn:
        await projections.upsert_cis(conn, tenant, [state])
    return ci_id


async def seed_service(pools: Pools, tenant: str, name: str) -> str:
    service_id = str(uuid.uuid4())
    service = BusinessServiceDefinedV1(
        id=service_id, name=name, status="active", criticality=2, version=1
    )
    async with tenant_transaction(pools["incident"], tenant) as conn:
        await projections.upsert_business_service(conn, tenant, service)
    return service_id


async def seed_default_policy(pools: Pools, tenant: str) -> None:
    async with tenant_transaction(pools["incident"], tenant) as conn:
        await projections.upsert_policy(
            conn,
            tenant,
            SlaPolicyDefinedV1(
                name="standard",
                targets={
                    p: SlaTargetV1(response_seconds=r, resolution_seconds=s)
                    for p, (r, s) in SECONDS.items()
                },
                calendar_name="always",
                calendar=CalendarSpec.always_open().model_dump(),
                pause_on=[],
                warning_threshold=0.75,
                services=[],
                default=True,
                version=1,
            ),
            datetime.now(UTC),
        )


async def groups_of(pools: Pools, tenant: str) -> list[Any]:
    return await fetch_as(
        pools["incident"],
        tenant,
        "SELECT source, dedup_key, incident_id, incidents_opened, notifications, alerts,"
        " deduplicated, last_action, last_outcome FROM alert_groups WHERE tenant_id = $1",
        tenant,
    )


async def incident_count(pools: Pools, tenant: str) -> int:
    rows = await fetch_as(
        pools["incident"], tenant, "SELECT count(*) FROM incidents WHERE tenant_id = $1", tenant
    )
    return int(rows[0][0])


def metric(api: httpx.AsyncClient, name: str, source: str = "alertmanager") -> float:
    runtime: Any = getattr(api, "runtime")  # noqa: B009 - set by the service_client fixture
    return sample_value(runtime.service_metrics.registry, name, {"source": source})


# --- Opening -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("severity", "impact", "urgency", "priority"),
    [("critical", 1, 1, 1), ("warning", 2, 2, 3), ("info", 3, 3, 5)],
)
async def test_a_firing_notification_opens_an_incident_with_the_priority_of_its_severity(
    api: httpx.AsyncClient,
    hook: Headers,
    agent: Headers,
    pools: Pools,
    tenant: str,
    severity: str,
    impact: int,
    urgency: int,
    priority: int,
) -> None:
    ci_id = await seed_ci(pools, tenant, "payments-db")
    service_id = await seed_service(pools, tenant, "Payments")
    body = notification(alert(severity=severity, ci="payments-db", service="Payments"))

    receipt = await send(api, hook, body)

    assert receipt["status"] == "success"
    assert receipt["action"] == "opened"
    assert receipt["reference"] == "INC1"
    assert receipt["alerts"] == 1
    assert len(receipt["dedup_key"]) == 64
    incident = await incident_of(api, agent, receipt)
    assert (incident["impact"], incident["urgency"]) == (impact, urgency)
    assert incident["priority"] == priority
    assert incident["major"] is (priority == 1)
    assert incident["state"] == "new"
    assert incident["origin"] == "alertmanager"
    assert incident["title"] == "HighErrorRate: 5xx above 5%"
    assert incident["created_by"] == "alertmanager"
    assert incident["ci_id"] == ci_id
    assert incident["services"] == [service_id]
    assert "fingerprint: f1" in incident["description"]
    assert await incident_count(pools, tenant) == 1


async def test_the_ci_is_found_by_its_external_id_when_the_tenant_maps_it_so(
    api: httpx.AsyncClient, hook: Headers, agent: Headers, auth: Auth, pools: Pools, tenant: str
) -> None:
    await configure(
        api, auth, tenant, ci_label="instance", ci_match="external_id", ci_source="prometheus"
    )
    ci_id = await seed_ci(pools, tenant, "node-17", {"prometheus": "10.0.0.17:9100"})

    receipt = await send(api, hook, notification(alert(instance="10.0.0.17:9100")))

    incident = await incident_of(api, agent, receipt)
    assert incident["ci_id"] == ci_id


async def test_an_unknown_ci_or_service_is_named_in_the_description_and_the_alert_still_opens(
    api: httpx.AsyncClient, hook: Headers, agent: Headers, tenant: str
) -> None:
    receipt = await send(api, hook, notification(alert(ci="ghost-db", service="Nowhere")))

    assert receipt["action"] == "opened"
    incident = await incident_of(api, agent, receipt)
    assert incident["ci_id"] is None
    assert incident["services"] == []
    assert "configuration item named 'ghost-db', which is not known" in incident["description"]
    assert "business service 'Nowhere', which is not known" in incident["description"]


async def test_the_incident_created_event_says_it_came_from_alertmanager(
    api: httpx.AsyncClient, hook: Headers, infra: Infra
) -> None:
    start = await end_offsets(infra.bootstrap_servers, INCIDENT_EVENTS)

    receipt = await send(api, hook, notification(alert(severity="critical")))

    subject = receipt["incident_id"].encode()

    def created(records: list[ConsumerRecord[bytes, bytes]]) -> list[Any]:
        return [
            r
            for r in records
            if r.key == subject
            and dict(r.headers)["ce_type"].decode() == "itsm.incident.created.v1"
        ]

    records = await read_topic(infra.bootstrap_servers, start, until=lambda rs: bool(created(rs)))
    (event,) = created(records)
    data = json.loads(event.value)
    assert data["origin"] == "alertmanager"
    assert data["priority"] == 1
    assert dict(event.headers)["ce_actor"].decode() == "alertmanager"


# --- Repeated notifications and concurrency ---------------------------------------------------


async def test_a_repeated_notification_updates_the_incident_instead_of_opening_another(
    api: httpx.AsyncClient, hook: Headers, agent: Headers, pools: Pools, tenant: str
) -> None:
    await seed_default_policy(pools, tenant)
    first = await send(api, hook, notification(alert("f1", severity="warning")))
    assert first["action"] == "opened"

    worse = notification(alert("f1", severity="warning"), alert("f2", severity="critical"))
    second = await send(api, hook, worse)
    third = await send(api, hook, worse)

    assert second["action"] == "updated"
    assert third["action"] == "unchanged"
    assert first["incident_id"] == second["incident_id"] == third["incident_id"]
    assert first["dedup_key"] == second["dedup_key"] == third["dedup_key"]
    incident = await incident_of(api, agent, third)
    assert incident["version"] == 2  # the identical third notification changed nothing
    assert incident["priority"] == 1
    assert "fingerprint: f2" in incident["description"]
    clocks = (await api.get(f"/incidents/{incident['id']}/sla", headers=agent)).json()
    assert {c["kind"]: c["target_seconds"] for c in clocks} == {
        "response": SECONDS["P1"][0],
        "resolution": SECONDS["P1"][1],
    }
    assert await incident_count(pools, tenant) == 1
    (group,) = await groups_of(pools, tenant)
    assert (group["notifications"], group["alerts"], group["deduplicated"]) == (3, 5, 4)
    assert group["incidents_opened"] == 1
    assert metric(api, "itsm_alerts_received_total") == 5
    assert metric(api, "itsm_alerts_deduplicated_total") == 4
    assert metric(api, "itsm_alert_incidents_opened_total") == 1


async def test_twenty_simultaneous_notifications_of_one_group_on_two_replicas_open_one_incident(
    service_client: ServiceClient, hook: Headers, pools: Pools, tenant: str
) -> None:
    replicas = [await service_client("incident"), await service_client("incident")]

    receipts = await asyncio.gather(
        *(send(replicas[i % 2], hook, notification(alert("f1"), alert(f"g{i}"))) for i in range(20))
    )

    assert [r["action"] for r in receipts].count("opened") == 1
    assert {r["action"] for r in receipts} <= {"opened", "updated", "unchanged"}
    assert len({r["incident_id"] for r in receipts}) == 1
    assert await incident_count(pools, tenant) == 1
    (group,) = await groups_of(pools, tenant)
    assert (group["notifications"], group["alerts"], group["deduplicated"]) == (20, 40, 38)
    assert str(group["incident_id"]) == receipts[0]["incident_id"]


async def test_simultaneous_notifications_of_many_groups_open_one_incident_per_group(
    service_client: ServiceClient, hook: Headers, pools: Pools, tenant: str
) -> None:
    replicas = [await service_client("incident"), await service_client("incident")]
    groups = [f'{{}}:{{alertname="Alert{g}"}}' for g in range(25)]

    receipts = await asyncio.gather(
        *(
            send(replicas[(g + n) % 2], hook, notification(alert(f"f{n}"), group=group))
            for g, group in enumerate(groups)
            for n in range(2)
        )
    )

    assert [r["action"] for r in receipts].count("opened") == 25
    by_key: dict[str, set[str]] = {}
    for receipt in receipts:
        by_key.setdefault(receipt["dedup_key"], set()).add(receipt["incident_id"])
    assert len(by_key) == 25
    assert all(len(ids) == 1 for ids in by_key.values())
    assert await incident_count(pools, tenant) == 25
    numbers = await fetch_as(
        pools["incident"], tenant, "SELECT number FROM incidents WHERE tenant_id = $1", tenant
    )
    assert sorted(r["number"] for r in numbers) == list(range(1, 26))
    assert sorted(g["notifications"] for g in await groups_of(pools, tenant)) == [2] * 25


# --- Resolving, reopening, following ----------------------------------------------------------


async def test_a_resolved_group_resolves_its_incident_when_the_tenant_says_so(
    api: httpx.AsyncClient, hook: Headers, agent: Headers, auth: Auth, tenant: str
) -> None:
    await configure(api, auth, tenant, auto_resolve=True)
    opened = await send(api, hook, notification(alert()))

    ended = alert(status="resolved", ends="2024-05-01T10:42:00Z")
    receipt = await send(api, hook, notification(ended))

    assert receipt["action"] == "resolved"
    assert receipt["incident_id"] == opened["incident_id"]
    incident = await incident_of(api, agent, receipt)
    assert incident["state"] == "resolved"
    assert incident["resolution_code"] == "alert_cleared"
    assert "2024-05-01T10:42:00Z" in incident["resolution_notes"]
    assert incident["updated_by"] == "alertmanager"
    notes = await notes_of(api, agent, incident["id"])
    assert any("2024-05-01T10:42:00Z" in note for note in notes)
    assert metric(api, "itsm_alert_incidents_resolved_total") == 1


async def test_without_auto_resolve_a_resolved_group_only_adds_a_note(
    api: httpx.AsyncClient, hook: Headers, agent: Headers, pools: Pools, tenant: str
) -> None:
    opened = await send(api, hook, notification(alert()))

    ended = alert(status="resolved", ends="2024-05-01T10:42:00Z")
    receipt = await send(api, hook, notification(ended))

    assert receipt["action"] == "noted"
    incident = await incident_of(api, agent, receipt)
    assert incident["id"] == opened["incident_id"]
    assert incident["state"] == "new"
    assert incident["version"] == 1
    notes = await notes_of(api, agent, incident["id"])
    assert len(notes) == 1
    assert "2024-05-01T10:42:00Z" in notes[0]
    assert metric(api, "itsm_alert_incidents_resolved_total") == 0
    (group,) = await groups_of(pools, tenant)
    assert (group["last_action"], group["last_outcome"]) == ("resolve", "noted")


async def test_a_group_firing_again_reopens_its_resolved_incident(
    api: httpx.AsyncClient, hook: Headers, agent: Headers, auth: Auth, tenant: str
) -> None:
    await configure(api, auth, tenant, auto_resolve=True)
    opened = await send(api, hook, notification(alert()))
    await send(api, hook, notification(alert(status="resolved", ends="2024-05-01T10:42:00Z")))

    receipt = await send(api, hook, notification(alert()))

    assert receipt["action"] == "reopened"
    assert receipt["incident_id"] == opened["incident_id"]
    incident = await incident_of(api, agent, receipt)
    assert incident["state"] == "in_progress"
    assert incident["resolution_code"] is None
    notes = await notes_of(api, agent, incident["id"])
    assert "reopened automatically" in notes[-1]


async def test_a_group_firing_after_its_incident_was_closed_opens_a_new_incident(
    api: httpx.AsyncClient, hook: Headers, agent: Headers, auth: Auth, pools: Pools, tenant: str
) -> None:
    await configure(api, auth, tenant, auto_resolve=True)
    first = await send(api, hook, notification(alert()))
    await send(api, hook, notification(alert(status="resolved", ends="2024-05-01T10:42:00Z")))
    resolved = await incident_of(api, agent, first)
    closed = await api.post(
        f"/incidents/{first['incident_id']}/transitions",
        json={"to": "closed"},
        headers={**agent, "If-Match": f'"{resolved["version"]}"'},
    )
    assert closed.status_code == 200, closed.text

    receipt = await send(api, hook, notification(alert()))

    assert receipt["action"] == "opened"
    assert receipt["incident_id"] != first["incident_id"]
    assert receipt["reference"] == "INC2"
    assert receipt["dedup_key"] == first["dedup_key"]
    notes = await notes_of(api, agent, receipt["incident_id"])
    assert any("INC1" in note for note in notes)
    (group,) = await groups_of(pools, tenant)
    assert str(group["incident_id"]) == receipt["incident_id"]
    assert group["incidents_opened"] == 2


# --- The events endpoint -----------------------------------------------------------------------


def trigger(**fields: Any) -> Json:
    payload = {"summary": "Disk almost full on db-1", "source": "db-1", "severity": "error"}
    return {"event_action": "trigger", "payload": payload, **fields}


async def test_events_trigger_acknowledge_and_resolve_follow_one_incident_by_dedup_key(
    api: httpx.AsyncClient, hook: Headers, agent: Headers, tenant: str
) -> None:
    opened = await send(api, hook, trigger(), EVENTS, 202)
    again = await send(api, hook, trigger(), EVENTS, 202)
    key = opened["dedup_key"]
    acknowledged = await send(
        api, hook, {"event_action": "acknowledge", "dedup_key": key}, EVENTS, 202
    )
    resolved = await send(api, hook, {"event_action": "resolve", "dedup_key": key}, EVENTS, 202)

    assert [opened["action"], again["action"], acknowledged["action"], resolved["action"]] == [
        "opened",
        "unchanged",
        "acknowledged",
        "noted",
    ]
    assert again["dedup_key"] == acknowledged["dedup_key"] == resolved["dedup_key"] == key
    assert {r["incident_id"] for r in (opened, again, acknowledged, resolved)} == {
        opened["incident_id"]
    }
    incident = await incident_of(api, agent, resolved)
    assert incident["origin"] == "events"
    assert incident["priority"] == 2  # error: impact 2, urgency 1
    assert incident["state"] == "in_progress"  # acknowledged; resolving is left to people
    notes = await notes_of(api, agent, incident["id"])
    assert "acknowledged" in notes[0]
    assert f"resolve event for dedup key {key}" in notes[1]


async def test_an_event_with_its_own_dedup_key_is_resolved_when_the_tenant_says_so(
    api: httpx.AsyncClient, hook: Headers, agent: Headers, auth: Auth, tenant: str
) -> None:
    await configure(api, auth, tenant, auto_resolve=True)
    opened = await send(api, hook, trigger(dedup_key="db-1/disk"), EVENTS, 202)

    receipt = await send(
        api, hook, {"event_action": "resolve", "dedup_key": "db-1/disk"}, EVENTS, 202
    )

    assert opened["dedup_key"] == receipt["dedup_key"] == "db-1/disk"
    assert receipt["action"] == "resolved"
    assert (await incident_of(api, agent, receipt))["state"] == "resolved"
    assert metric(api, "itsm_alert_incidents_resolved_total", "events") == 1


async def test_a_follow_up_for_an_unknown_dedup_key_is_ignored_and_stores_nothing(
    api: httpx.AsyncClient, hook: Headers, pools: Pools, tenant: str
) -> None:
    for action in ("acknowledge", "resolve"):
        receipt = await send(
            api, hook, {"event_action": action, "dedup_key": "never-triggered"}, EVENTS, 202
        )
        assert receipt["action"] == "ignored"
        assert receipt["incident_id"] is None
        assert receipt["dedup_key"] == "never-triggered"
    assert await groups_of(pools, tenant) == []
    assert await incident_count(pools, tenant) == 0
    assert metric(api, "itsm_alerts_received_total", "events") == 2


# --- Refusals and tenants ----------------------------------------------------------------------


@pytest.mark.parametrize("action", ["acknowledge", "resolve"])
async def test_a_follow_up_without_dedup_key_is_refused_naming_dedup_key(
    api: httpx.AsyncClient, hook: Headers, action: str
) -> None:
    response = await api.post(EVENTS, json={"event_action": action}, headers=hook)

    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in response.json()["errors"]] == ["dedup_key"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**notification(alert()), "version": "3"}, "version"),
        ({**notification(alert()), "alerts": []}, "alerts"),
        ({k: v for k, v in notification(alert()).items() if k != "groupKey"}, "groupKey"),
    ],
)
async def test_an_invalid_notification_is_refused_naming_the_field(
    api: httpx.AsyncClient, hook: Headers, pools: Pools, tenant: str, body: Json, field: str
) -> None:
    response = await api.post(ALERTMANAGER, json=body, headers=hook)

    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in [e["field"] for e in response.json()["errors"]]
    assert await incident_count(pools, tenant) == 0


async def test_a_body_that_is_not_json_is_refused(api: httpx.AsyncClient, hook: Headers) -> None:
    response = await api.post(
        ALERTMANAGER, content=b"{not json", headers={**hook, "Content-Type": "application/json"}
    )

    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    ("path", "body"), [(ALERTMANAGER, notification(alert())), (EVENTS, trigger())]
)
async def test_a_token_without_role_integration_is_refused(
    api: httpx.AsyncClient, auth: Auth, pools: Pools, tenant: str, path: str, body: Json
) -> None:
    for role in ("agent", "tenant_admin"):
        response = await api.post(path, json=body, headers=auth(tenant, role))
        assert response.status_code == 403, response.text
    assert await incident_count(pools, tenant) == 0


async def test_the_same_group_in_two_tenants_opens_an_incident_in_each_that_the_other_cannot_see(
    api: httpx.AsyncClient, auth: Auth, tenant: str
) -> None:
    other = f"t-{uuid.uuid4().hex[:12]}"
    mine = await send(api, auth(tenant, "integration"), notification(alert()))
    theirs = await send(api, auth(other, "integration"), notification(alert()))

    assert mine["dedup_key"] == theirs["dedup_key"]
    assert mine["incident_id"] != theirs["incident_id"]
    assert mine["action"] == theirs["action"] == "opened"
    assert mine["reference"] == theirs["reference"] == "INC1"
    for reader, hidden in ((tenant, theirs), (other, mine)):
        response = await api.get(
            f"/incidents/{hidden['incident_id']}", headers=auth(reader, "agent")
        )
        assert response.status_code == 404
