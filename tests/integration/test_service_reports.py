"""Service reports on the real broker and database: definitions with If-Match and an event per
version, reports on demand (a job) kept in every format with its SHA-256 and recorded in the
ledger naming the checkpoint they stand on, the management-review pack, scheduled reports made
once per period by any number of replicas (an injected clock, catch-up after downtime), and a
provider's view across the tenants its token serves.

The KPI and service-level figures come from the readers' test doubles (tests/unit/
fakes_reports.py): this tests the reports, not the KPI engine."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from aiokafka import AIOKafkaProducer

from services.reporting.application.reports import ReportScheduler
from services.reporting.report_wiring import use_report_sources
from shared.events.catalogue import INCIDENT_EVENTS
from tests.support import eventually, fetch_as, incident_event, sample_value, send_event
from tests.unit.fakes_reports import FakeKpiReader, fake_sources, value_for

FAST = {"checkpoint_interval_seconds": 0.2, "report_poll_seconds": 0.2}
SAVED = "itsm.reporting.report_definition.saved.v1"
GENERATED = "itsm.reporting.report.generated.v1"


def definition(**overrides: object) -> dict[str, object]:
    return {
        "name": "Mail service — monthly",
        "audience": "customer",
        "services": ["svc-mail"],
        "period": "month",
        "kpis": [
            {"id": "incident.resolve_time.median", "target": 4000},
            {"id": "incident.volume"},
        ],
        "trend_periods": 3,
        "formats": ["json", "csv", "html"],
        **overrides,
    }


async def reporting_with_doubles(service_client, **overrides):
    client = await service_client("reporting", **{**FAST, **overrides})
    sources = fake_sources()
    use_report_sources(client.runtime, sources)
    return client, sources


async def ledger_events(pools, tenant, type_):
    rows = await fetch_as(
        pools["reporting"],
        tenant,
        "SELECT subject, version, data FROM ledger WHERE type = $1 ORDER BY leaf_index",
        type_,
    )
    return [
        (
            r["subject"],
            r["version"],
            json.loads(r["data"]) if isinstance(r["data"], str) else r["data"],
        )
        for r in rows
    ]


async def finished(client, headers, location):
    async def read():
        response = await client.get(location, headers=headers)
        assert response.status_code == 200, response.text
        return response.json()

    report = await eventually(read, lambda r: r["state"] in ("done", "failed"), timeout=60)
    assert report["state"] == "done", report
    return report


async def test_a_definition_is_versioned_written_with_if_match_and_each_version_is_an_event(
    service_client, pools, auth, tenant
):
    reporting, _ = await reporting_with_doubles(service_client)
    admin = auth(tenant, "tenant_admin")

    unknown = await reporting.post(
        "/report-definitions",
        json=definition(kpis=[{"id": "incident.volume"}, {"id": "incident.happiness"}]),
        headers=admin,
    )
    assert unknown.status_code == 422, unknown.text
    assert unknown.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in unknown.json()["errors"]] == ["kpis.1.id"]
    reader_only = await reporting.post(
        "/report-definitions", json=definition(), headers=auth(tenant, "auditor")
    )
    assert reader_only.status_code == 403

    created = await reporting.post("/report-definitions", json=definition(), headers=admin)
    assert created.status_code == 201, created.text
    assert created.headers["ETag"] == '"1"'
    ident = created.json()["id"]
    assert created.headers["Location"] == f"/report-definitions/{ident}"
    read = await reporting.get(f"/report-definitions/{ident}", headers=auth(tenant, "auditor"))
    assert read.json()["kpis"][0] == {"id": "incident.resolve_time.median", "target": 4000.0}

    changed = definition(name="Mail service", trend_periods=5, schedule={"every": "monthly"})
    path = f"/report-definitions/{ident}"
    assert (await reporting.put(path, json=changed, headers=admin)).status_code == 428
    stale = await reporting.put(path, json=changed, headers={**admin, "If-Match": '"7"'})
    assert stale.status_code == 412
    replaced = await reporting.put(path, json=changed, headers={**admin, "If-Match": '"1"'})
    assert replaced.status_code == 200, replaced.text
    assert replaced.headers["ETag"] == '"2"'
    assert replaced.json()["schedule"] == {"every": "monthly", "local_time": "06:00"}

    listed = await reporting.get("/report-definitions", headers=admin)
    assert [d["id"] for d in listed.json()["items"]] == [ident]
    retired = await reporting.delete(path, headers={**admin, "If-Match": '"2"'})
    assert retired.status_code == 200 and retired.json()["deleted"] is True
    assert (await reporting.get(path, headers=admin)).status_code == 404
    assert (await reporting.get("/report-definitions", headers=admin)).json()["items"] == []

    events = await eventually(
        lambda: ledger_events(pools, tenant, SAVED), lambda rows: len(rows) == 3, timeout=30
    )
    assert [(s, v) for s, v, _ in events] == [(f"report-definition/{ident}", n) for n in (1, 2, 3)]
    assert [d["definition"]["name"] for _, _, d in events] == [
        "Mail service — monthly",
        "Mail service",
        "Mail service",
    ]
    assert [d["deleted"] for _, _, d in events] == [False, False, True]


async def test_a_report_on_demand_is_kept_in_each_format_and_recorded_in_the_ledger_with_its_basis(
    service_client, pools, auth, tenant, infra
):
    reporting, _ = await reporting_with_doubles(service_client)
    admin = auth(tenant, "tenant_admin")
    producer = AIOKafkaProducer(bootstrap_servers=infra.bootstrap_servers)
    await producer.start()
    try:
        await send_event(producer, incident_event(tenant), INCIDENT_EVENTS)
    finally:
        await producer.stop()
    signed = await eventually(
        lambda: fetch_as(
            pools["reporting"],
            tenant,
            "SELECT tree_size, encode(root_hash, 'base64') AS root FROM ledger_checkpoints"
            " ORDER BY tree_size DESC LIMIT 1",
        ),
        lambda rows: bool(rows),
        timeout=30,
    )
    created = await reporting.post("/report-definitions", json=definition(), headers=admin)
    ident = created.json()["id"]
    before = sample_value(
        reporting.runtime.registry,
        "itsm_reports_generated_total",
        {"kind": "service_report", "trigger": "on_demand"},
    )

    bad_period = await reporting.post(
        "/reports", json={"definition_id": ident, "period_start": "2026-11-02"}, headers=admin
    )
    assert bad_period.status_code == 422
    assert [e["field"] for e in bad_period.json()["errors"]] == ["period_start"]
    started = await reporting.post(
        "/reports", json={"definition_id": ident, "period_start": "2026-11-01"}, headers=admin
    )
    assert started.status_code == 202, started.text
    assert started.json()["state"] == "queued"
    report = await finished(reporting, admin, started.headers["Location"])
    assert report["period"]["label"] == "2026-11"
    assert set(report["formats"]) == {"json", "csv", "html"}

    # The basis: the checkpoint the figures stand on (the newest when the report was built).
    assert report["basis"]["tree_size"] >= signed[0]["tree_size"]
    kinds = {"json": "application/json", "csv": "text/csv", "html": "text/html"}
    for fmt, media in kinds.items():
        got = await reporting.get(f"/reports/{report['id']}.{fmt}", headers=admin)
        assert got.status_code == 200, got.text
        assert got.headers["content-type"].startswith(media)
        assert hashlib.sha256(got.content).hexdigest() == report["formats"][fmt]
    page = await reporting.get(f"/reports/{report['id']}.html", headers=admin)
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert page.text.count("<svg ") == 3  # two KPIs and the service's availability
    document = (await reporting.get(f"/reports/{report['id']}.json", headers=admin)).json()
    volume = document["kpis"][1]["values"][-1]["value"]
    assert volume == value_for(tenant, "incident.volume", date(2026, 11, 1))
    assert (await reporting.get(f"/reports/{report['id']}.pdf", headers=admin)).status_code == 404

    [(subject, version, data)] = await eventually(
        lambda: ledger_events(pools, tenant, GENERATED), lambda rows: len(rows) == 1, timeout=30
    )
    assert (subject, version) == (f"report/{report['id']}", 1)
    assert data["tree_size"] == report["basis"]["tree_size"]
    assert data["root_hash"] == report["basis"]["root_hash"]
    assert data["formats"] == report["formats"] and data["trigger"] == "on_demand"
    assert data["definition_id"] == ident and data["definition_version"] == 1
    after = sample_value(
        reporting.runtime.registry,
        "itsm_reports_generated_total",
        {"kind": "service_report", "trigger": "on_demand"},
    )
    assert after == before + 1


async def test_the_management_review_pack_holds_every_process_sla_availability_actions_findings(
    service_client, pools, auth, tenant
):
    reporting, _ = await reporting_with_doubles(service_client)
    admin = auth(tenant, "tenant_admin")
    started = await reporting.post(
        "/management-reviews",
        json={"period": "month", "period_start": "2026-11-01", "trend_periods": 2},
        headers=admin,
    )
    assert started.status_code == 202, started.text
    report = await finished(reporting, admin, started.headers["Location"])
    assert report["kind"] == "management_review"
    document = (await reporting.get(f"/reports/{report['id']}.json", headers=admin)).json()
    assert {k["kpi"]["process"] for k in document["kpis"]} == {"incident", "change"}
    assert document["sla"][0]["missed"] is True
    assert [a["id"] for a in document["improvement_actions"]] == ["ia-1"]
    assert [(f["clause"], f["status"]) for f in document["audit_findings"]] == [
        ("8.5.1", "in_progress")
    ]
    assert len(document["availability"]) == 3
    page = (await reporting.get(f"/reports/{report['id']}.html", headers=admin)).text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script" not in page
    [(_, _, data)] = await eventually(
        lambda: ledger_events(pools, tenant, GENERATED), lambda rows: len(rows) == 1, timeout=30
    )
    assert data["kind"] == "management_review" and data["definition_id"] is None


async def test_scheduled_reports_are_made_once_per_period_by_every_replica_and_caught_up(
    service_client, pools, auth, tenant
):
    reporting, _ = await reporting_with_doubles(service_client)
    admin = auth(tenant, "tenant_admin")
    created = await reporting.post(
        "/report-definitions",
        json=definition(
            period="day", trend_periods=2, schedule={"every": "daily", "local_time": "06:00"}
        ),
        headers=admin,
    )
    ident = created.json()["id"]
    made_at = datetime.fromisoformat(created.json()["created_at"])
    # The service was down for three days: three runs were missed (06:00 each day).
    later = datetime.combine(made_at.date() + timedelta(days=3), datetime.min.time(), UTC)
    later += timedelta(hours=7)
    replicas = [
        ReportScheduler(pools["reporting"], clock=lambda: later, catch_up_days=35) for _ in range(3)
    ]
    queued = await asyncio.gather(*(r.run_once() for r in replicas))
    assert sum(queued) == 3
    assert await replicas[0].run_once() == 0  # nothing is due twice

    async def listed():
        response = await reporting.get(f"/reports?definition_id={ident}", headers=admin)
        return response.json()["items"]

    reports = await eventually(
        listed, lambda items: len(items) == 3 and all(r["state"] == "done" for r in items), 60
    )
    days = sorted(r["period"]["start"] for r in reports)
    first = made_at.date()
    assert days == [(first + timedelta(days=n)).isoformat() for n in range(3)]
    assert {r["trigger"] for r in reports} == {"schedule"}
    assert {r["requested_by"] for r in reports} == {"system:report-scheduler"}
    events = await eventually(
        lambda: ledger_events(pools, tenant, GENERATED), lambda rows: len(rows) == 3, timeout=30
    )
    assert {d["trigger"] for _, _, d in events} == {"schedule"}


async def test_a_providers_staff_see_their_tenants_reports_and_kpis_across_them_and_no_other(
    service_client, auth
):
    reporting, sources = await reporting_with_doubles(service_client)
    a, b, other = (f"t-{uuid.uuid4().hex[:12]}" for _ in range(3))
    report_of = {}
    for tenant in (a, b, other):
        admin = auth(tenant, "tenant_admin")
        created = await reporting.post("/report-definitions", json=definition(), headers=admin)
        started = await reporting.post(
            "/reports",
            json={"definition_id": created.json()["id"], "period_start": "2026-10-01"},
            headers=admin,
        )
        report_of[tenant] = (await finished(reporting, admin, started.headers["Location"]))["id"]
    staff = auth(a, "provider_admin", tenants=[a, b])

    listed = await reporting.get(f"/provider/reports?tenant={a}&tenant={b}", headers=staff)
    assert listed.status_code == 200, listed.text
    assert [(t["tenant_id"], [r["id"] for r in t["reports"]]) for t in listed.json()] == [
        (a, [report_of[a]]),
        (b, [report_of[b]]),
    ]
    own = await reporting.get(f"/reports/{report_of[b]}", headers={**staff, "X-Tenant-Id": b})
    assert own.status_code == 200 and own.json()["tenant_id"] == b

    across = await reporting.get(
        "/provider/kpis",
        params={
            "tenant": [a, b],
            "kpi": ["incident.volume"],
            "period_start": "2026-11-01",
            "trend_periods": 1,
        },
        headers=staff,
    )
    assert across.status_code == 200, across.text
    document = across.json()
    assert document["tenants"] == [a, b]
    expected = sum(value_for(t, "incident.volume", date(2026, 11, 1)) for t in (a, b))
    assert document["kpis"][0]["values"][-1]["value"] == expected
    assert isinstance(sources.kpis, FakeKpiReader)
    assert ("series_across", (a, b)) in sources.kpis.calls
    page = await reporting.get(
        "/provider/kpis",
        params={
            "tenant": [a, b],
            "kpi": ["incident.volume"],
            "period_start": "2026-11-01",
            "format": "html",
        },
        headers=staff,
    )
    assert page.status_code == 200 and "<svg " in page.text

    # Nothing of a tenant the token does not serve: 403 naming it, for every view.
    refused = await reporting.get(
        "/provider/kpis",
        params={"tenant": [a, other], "kpi": ["incident.volume"], "period_start": "2026-11-01"},
        headers=staff,
    )
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert other in refused.json()["detail"]
    assert refused.json()["errors"][0]["field"] == "tenant"
    refused = await reporting.get(f"/provider/reports?tenant={other}", headers=staff)
    assert refused.status_code == 403 and other in refused.json()["detail"]
    foreign = await reporting.get(
        f"/reports/{report_of[other]}", headers={**staff, "X-Tenant-Id": other}
    )
    assert foreign.status_code == 403
    # A report id of another tenant is not there for a tenant the token serves.
    hidden = await reporting.get(
        f"/reports/{report_of[other]}", headers={**staff, "X-Tenant-Id": a}
    )
    assert hidden.status_code == 404


@pytest.mark.parametrize("path", ["/reports", "/report-definitions"])
async def test_reports_need_a_token(service_client, path):
    reporting, _ = await reporting_with_doubles(service_client)
    assert (await reporting.get(path)).status_code == 401
