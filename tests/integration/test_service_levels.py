"""Service level management on the real broker and database: events of the config, incident
and change services travel through Kafka into the ledger, the projections follow the signed
checkpoints, and availability, SLA results and improvement actions come out of them; the APIs of
improvement actions and audit findings with If-Match and problem+json."""

import uuid
from datetime import UTC, datetime

import pytest

from services.reporting.application.service_levels import (
    Defaults,
    ServiceLevels,
    rebuild,
    review_tenant,
    set_gauges,
)
from shared.events.envelope import new_envelope
from tests.support import eventually, fetch_as, sample_value, send_event

FAST = {
    "checkpoint_interval_seconds": 0.2,
    "service_level_interval_seconds": 0.2,
    # The review runs when the test says so, with the test's clock.
    "service_level_review_seconds": 86400,
}
ALWAYS_OPEN = {
    "timezone": "UTC",
    "weekly_hours": {
        d: [{"start": "00:00", "end": "24:00"}]
        for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    },
}
OCTOBER_SECONDS = 31 * 86400


def envelope(tenant, source, type, subject, version, data):
    return new_envelope(
        source=f"itsm/{source}",
        type=type,
        subject=subject,
        tenantid=tenant,
        itsmversion=version,
        actor="alice",
        data=data,
    )


async def send(producer, tenant, source, type, subject, version, data):
    await send_event(
        producer, envelope(tenant, source, type, subject, version, data), f"itsm.{source}.events"
    )


async def catalogue(producer, tenant, service):
    await send(
        producer,
        tenant,
        "config",
        "itsm.config.sla_policy.defined.v1",
        "sla-policy/gold",
        1,
        {
            "name": "gold",
            "targets": {"P1": {"response_seconds": 900, "resolution_seconds": 14400}},
            "calendar_name": "24x7",
            "calendar": ALWAYS_OPEN,
            "pause_on": [],
            "warning_threshold": 0.8,
            "services": [service],
            "default": False,
            "version": 1,
        },
    )
    await send(
        producer,
        tenant,
        "config",
        "itsm.config.business_service.defined.v1",
        f"business-service/{service}",
        1,
        {
            "id": service,
            "name": "Payments",
            "status": "active",
            "criticality": 1,
            "availability_target": 99.9,
            "sla_policy": "gold",
            "version": 1,
        },
    )


async def outage(producer, tenant, service, start, end, *, withdrawn=False):
    subject = f"outage/{uuid.uuid4()}"
    record = {"services": [service], "kind": "outage", "start": start, "end": end}
    await send(
        producer,
        tenant,
        "incident",
        "itsm.incident.outage.recorded.v1",
        subject,
        1,
        {"outage": record},
    )
    if withdrawn:
        await send(
            producer,
            tenant,
            "incident",
            "itsm.incident.outage.updated.v1",
            subject,
            2,
            {"outage": record, "withdrawn": True, "reason": "recorded in error"},
        )


async def approved_change(producer, tenant, service, start, end, *, cis=()):
    """An authorized change naming the service, or (with `cis`) only CIs."""
    change = str(uuid.uuid4())
    await send(
        producer,
        tenant,
        "change",
        "itsm.change.created.v1",
        change,
        1,
        {
            "change_id": change,
            "number": 1,
            "type": "normal",
            "origin": "manual",
            "title": "Database upgrade",
            "requester": "bob",
            "business_services": [] if cis else [service],
            "ci_ids": list(cis),
            "planned_start": start,
            "planned_end": end,
            "content_hash": "0" * 64,
        },
    )
    await send(
        producer,
        tenant,
        "change",
        "itsm.change.authorized.v1",
        change,
        2,
        {
            "change_id": change,
            "round": 1,
            "content_hash": "0" * 64,
            "steps": ["cab"],
            "approvers": ["carol"],
            "waited_seconds": 60.0,
        },
    )


async def clock_stopped(producer, tenant, result, stopped_at):
    record = str(uuid.uuid4())
    await send(
        producer,
        tenant,
        "incident",
        "itsm.incident.sla.clock_stopped.v1",
        f"sla/{record}/resolution",
        1,
        {
            "clock": {
                "record": "incident",
                "record_id": record,
                "kind": "resolution",
                "policy": "gold",
                "priority": 1,
                "target_seconds": 14400,
            },
            "result": result,
            "elapsed_seconds": 100.0,
            "paused_seconds": 0.0,
            "started_at": "2026-10-05T08:00:00Z",
            "stopped_at": stopped_at,
        },
    )


async def test_outages_changes_and_clocks_become_figures_and_a_missed_target_opens_one_action(
    service_client, pools, producer, auth, tenant
):
    reporting = await service_client("reporting", **FAST)
    service = str(uuid.uuid4())
    await catalogue(producer, tenant, service)
    # Two hours down; one hour more inside an approved change's window; one withdrawn.
    await outage(producer, tenant, service, "2026-10-10T10:00:00Z", "2026-10-10T12:00:00Z")
    await approved_change(producer, tenant, service, "2026-10-20T01:00:00Z", "2026-10-20T03:00:00Z")
    await outage(producer, tenant, service, "2026-10-20T01:00:00Z", "2026-10-20T02:00:00Z")
    await outage(
        producer, tenant, service, "2026-10-25T01:00:00Z", "2026-10-25T05:00:00Z", withdrawn=True
    )
    # Half an hour more inside the window of an approved change that names a CI of the service.
    ci = str(uuid.uuid4())
    await send(
        producer,
        tenant,
        "config",
        "itsm.config.service_membership.changed.v1",
        ci,
        1,
        {"ci_id": ci, "services": [service], "previous": [], "sequence": 1},
    )
    await approved_change(
        producer, tenant, service, "2026-10-22T01:00:00Z", "2026-10-22T02:00:00Z", cis=[ci]
    )
    await outage(producer, tenant, service, "2026-10-22T01:00:00Z", "2026-10-22T01:30:00Z")
    await clock_stopped(producer, tenant, "met", "2026-10-06T08:00:00Z")
    await clock_stopped(producer, tenant, "breached", "2026-10-07T08:00:00Z")
    headers = auth(tenant, "agent")
    params = {"service": service, "period": "month", "start": "2026-10-01"}

    async def availability():
        response = await reporting.get("/availability", params=params, headers=headers)
        assert response.status_code == 200, response.text
        return response.json()

    # Figures stand on a signed checkpoint: they appear once one covers every event sent.
    body = await eventually(
        availability,
        lambda b: (
            b["items"]
            and b["items"][0]["planned_downtime_seconds"] == 5400
            and b["items"][0]["downtime_seconds"] == 7200
        ),
    )
    [point] = body["items"]
    assert body["basis"]["tree_size"] >= 10 and body["basis"]["root_hash"]
    assert point["label"] == "2026-10" and point["agreed_seconds"] == OCTOBER_SECONDS
    assert point["outages"] == 1 and point["degraded_seconds"] == 0
    assert point["availability"] == pytest.approx(1 - 7200 / OCTOBER_SECONDS)
    assert point["mtrs_seconds"] == 7200 and point["target"] == pytest.approx(0.999)
    assert point["breached"] is True

    async def sla():
        response = await reporting.get(
            "/sla-results",
            params={"period": "month", "start": "2026-10-01", "policy": "gold"},
            headers=headers,
        )
        assert response.status_code == 200, response.text
        return response.json()["items"]

    results = await eventually(sla, lambda items: any(r["met"] + r["breached"] == 2 for r in items))
    resolution = next(r for r in results if r["target"] == "P1 resolution")
    assert resolution["compliance"] == 0.5 and resolution["objective"] == 0.95
    assert resolution["missed"] is True
    assert next(r for r in results if r["target"] == "P1 response")["missed"] is False

    # The projections are rebuilt from the ledger with the same figures.
    assert await rebuild(reporting.runtime.pool, tenant) >= 10
    assert (await availability())["items"] == body["items"]

    # The review in November, twice: the October misses open one action each, once.
    registry = reporting.runtime.registry
    before = sample_value(
        registry, "itsm_reporting_improvement_actions_opened_total", {"source": "sla_target_missed"}
    )
    levels = ServiceLevels(Defaults(), clock=lambda: datetime(2026, 11, 5, tzinfo=UTC))
    pool = reporting.runtime.pool
    metrics = reporting.runtime.service_metrics
    opened = await review_tenant(pool, levels, tenant, metrics)
    assert sorted(a.source for a in opened) == ["availability_target_missed", "sla_target_missed"]
    assert await review_tenant(pool, levels, tenant, metrics) == []
    after = sample_value(
        registry, "itsm_reporting_improvement_actions_opened_total", {"source": "sla_target_missed"}
    )
    assert after == before + 1

    # The gauge shows the month in progress as far as it has run (here: mid-October).
    october = ServiceLevels(Defaults(), clock=lambda: datetime(2026, 10, 15, 12, tzinfo=UTC))
    await set_gauges(pool, october, [tenant], metrics)
    shown = sample_value(
        registry,
        "itsm_reporting_service_availability_ratio",
        {"service": "Payments", "period": "month"},
    )
    assert shown == pytest.approx(1 - 7200 / (14.5 * 86400))
    assert (
        sample_value(
            registry,
            "itsm_reporting_service_availability_ratio",
            {"service": "Payments", "period": "day"},
        )
        == 1.0
    )

    async def opened_in_ledger():
        rows = await fetch_as(
            pools["reporting"],
            tenant,
            "SELECT data FROM ledger WHERE type = 'itsm.reporting.improvement_action.opened.v1'",
        )
        return [r["data"] for r in rows]

    recorded = await eventually(opened_in_ledger, lambda rows: len(rows) == 2)
    [sla_action] = [r["action"] for r in recorded if r["action"]["source"] == "sla_target_missed"]
    assert sla_action["policy"] == "gold" and sla_action["target"] == "P1 resolution"
    assert sla_action["period"] == "2026-10" and sla_action["status"] == "open"

    listed = await reporting.get(
        "/improvement-actions", params={"source": "availability_target_missed"}, headers=headers
    )
    [action] = listed.json()["items"]
    assert action["service"] == service and action["period"] == "2026-10"


async def test_an_improvement_action_moves_with_if_match_and_is_done_only_with_an_outcome(
    service_client, pools, auth, tenant
):
    reporting = await service_client("reporting", **FAST)
    manager = auth(tenant, "problem_manager")
    created = await reporting.post(
        "/improvement-actions",
        json={"title": "Shorten P1 resolution", "owner": "dana", "due_date": "2026-01-31"},
        headers=manager,
    )
    assert created.status_code == 201, created.text
    assert created.headers["ETag"] == '"1"'
    action = created.json()
    assert action["status"] == "open" and action["source"] == "manual" and action["overdue"]
    path = f"/improvement-actions/{action['id']}"

    missing = await reporting.patch(path, json={"status": "in_progress"}, headers=manager)
    assert missing.status_code == 428
    stale = await reporting.patch(
        path, json={"status": "in_progress"}, headers={**manager, "If-Match": '"7"'}
    )
    assert stale.status_code == 412 and stale.headers["ETag"] == '"1"'
    skipped = await reporting.patch(
        path, json={"status": "done", "outcome": "x"}, headers={**manager, "If-Match": '"1"'}
    )
    assert skipped.status_code == 409, skipped.text
    assert skipped.headers["content-type"].startswith("application/problem+json")

    started = await reporting.patch(
        path, json={"status": "in_progress"}, headers={**manager, "If-Match": '"1"'}
    )
    assert started.status_code == 200 and started.headers["ETag"] == '"2"'
    no_outcome = await reporting.patch(
        path, json={"status": "done"}, headers={**manager, "If-Match": '"2"'}
    )
    assert no_outcome.status_code == 422
    assert [e["field"] for e in no_outcome.json()["errors"]] == ["outcome"]
    done = await reporting.patch(
        path,
        json={"status": "done", "outcome": "Runbook rewritten; P1s now resolved in 2 h"},
        headers={**manager, "If-Match": '"2"'},
    )
    assert done.status_code == 200 and done.json()["status"] == "done"
    assert done.json()["overdue"] is False

    history = await reporting.get(f"{path}/history", headers=auth(tenant, "auditor"))
    assert [h["version"] for h in history.json()] == [1, 2, 3]
    assert history.json()[2]["changes"]["status"] == {"from": "in_progress", "to": "done"}
    # Another tenant sees nothing of it.
    other = await reporting.get(path, headers=auth(f"{tenant}-other", "tenant_admin"))
    assert other.status_code == 404

    async def events():
        rows = await fetch_as(
            pools["reporting"],
            tenant,
            "SELECT type, version FROM ledger WHERE subject = $1 ORDER BY version",
            f"improvement/{action['id']}",
        )
        return [(r["type"].split(".")[-2], r["version"]) for r in rows]

    assert await eventually(events, lambda found: len(found) == 3) == [
        ("opened", 1),
        ("updated", 2),
        ("updated", 3),
    ]


async def test_an_auditor_records_a_finding_that_opens_an_improvement_action(
    service_client, auth, tenant
):
    reporting = await service_client("reporting", **FAST)
    auditor = auth(tenant, "auditor")
    finding = {
        "audit": "Internal audit 2026-Q4",
        "clause": "8.5.1",
        "finding": "Emergency changes lack a post-implementation review.",
        "severity": "minor_nonconformity",
        "owner": "erin",
        "due_date": "2027-01-15",
    }
    refused = await reporting.post("/audit-findings", json=finding, headers=auth(tenant, "agent"))
    assert refused.status_code == 403
    invalid = await reporting.post(
        "/audit-findings", json={**finding, "severity": "grave"}, headers=auditor
    )
    assert invalid.status_code == 422
    assert any(e["field"] == "severity" for e in invalid.json()["errors"])
    recorded = await reporting.post("/audit-findings", json=finding, headers=auditor)
    assert recorded.status_code == 201, recorded.text
    found = recorded.json()
    assert found["status"] == "open" and recorded.headers["ETag"] == '"1"'

    action = await reporting.post(
        f"/audit-findings/{found['id']}/improvement-actions",
        json={},
        headers=auth(tenant, "change_manager"),
    )
    assert action.status_code == 201, action.text
    assert action.json()["finding_id"] == found["id"] and action.json()["owner"] == "erin"
    assert action.json()["source"] == "audit_finding"

    closing = await reporting.patch(
        f"/audit-findings/{found['id']}",
        json={"status": "closed"},
        headers={**auditor, "If-Match": '"1"'},
    )
    assert closing.status_code == 422
    assert [e["field"] for e in closing.json()["errors"]] == ["corrective_action"]
    closed = await reporting.patch(
        f"/audit-findings/{found['id']}",
        json={"status": "closed", "corrective_action": "Review step added to the workflow"},
        headers={**auditor, "If-Match": '"1"'},
    )
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    listed = await reporting.get(
        "/audit-findings", params={"status": "closed"}, headers=auth(tenant, "agent")
    )
    assert [f["id"] for f in listed.json()["items"]] == [found["id"]]


async def test_a_tenant_sets_its_objective_and_time_zone_with_if_match(
    service_client, auth, tenant
):
    reporting = await service_client("reporting", **FAST)
    admin = auth(tenant, "tenant_admin")
    defaults = await reporting.get("/service-level-settings", headers=auth(tenant, "agent"))
    assert defaults.status_code == 200 and defaults.headers["ETag"] == '"0"'
    assert defaults.json()["sla_objective"] == 0.95 and defaults.json()["time_zone"] == "UTC"

    body = {"sla_objective": 0.9, "time_zone": "Europe/Berlin", "improvement_period": "week"}
    refused = await reporting.put(
        "/service-level-settings", json=body, headers={**auth(tenant, "agent"), "If-Match": '"0"'}
    )
    assert refused.status_code == 403
    assert (
        await reporting.put("/service-level-settings", json=body, headers=admin)
    ).status_code == 428
    unknown = await reporting.put(
        "/service-level-settings",
        json={**body, "time_zone": "Mars/Olympus"},
        headers={**admin, "If-Match": '"0"'},
    )
    assert unknown.status_code == 422
    assert [e["field"] for e in unknown.json()["errors"]] == ["time_zone"]
    saved = await reporting.put(
        "/service-level-settings", json=body, headers={**admin, "If-Match": '"0"'}
    )
    assert saved.status_code == 200 and saved.headers["ETag"] == '"1"'
    assert saved.json()["improvement_period"] == "week" and saved.json()["updated_by"] == "tester"
    stale = await reporting.put(
        "/service-level-settings", json=body, headers={**admin, "If-Match": '"0"'}
    )
    assert stale.status_code == 412
