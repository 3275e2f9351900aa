"""Service reports wired to the real readers: events published -> ledger -> signed checkpoint
-> the KPI projection and service level management -> a report and a management-review pack
whose figures are the API's and whose basis is the checkpoint the KPIs stand on.

The other report tests use test doubles of the readers; this one checks the wiring
(`services/reporting/report_wiring.py`) with nothing replaced."""

from __future__ import annotations

import base64
import uuid

import asyncpg
import pytest

from shared.provision import DEFAULT_DATABASE, dsn_for_admin_database
from shared.registry import service as service_of
from tests.integration.test_kpis import Sender, figures, in_ledger, send_month, value_of
from tests.integration.test_service_reports import definition, finished
from tests.support import eventually, fetch_as, sample_value

FAST = {
    "checkpoint_interval_seconds": 0.2,
    "kpi_interval_seconds": 0.2,
    "service_level_interval_seconds": 0.2,
    "report_poll_seconds": 0.2,
}


def figure(document: dict, kpi: str, label: str) -> float | None:
    """The value a report's JSON shows for one KPI in one period (its whole-scope series)."""
    [shown] = [
        k for k in document["kpis"] if k["kpi"]["id"] == kpi and k["dimension_value"] is None
    ]
    [value] = [v["value"] for v in shown["values"] if v is not None and v["period"] == label]
    return value


async def test_a_report_shows_the_kpi_projections_figures_and_names_its_checkpoint(
    service_client, pools, producer, auth, tenant
):
    reporting = await service_client("reporting", **FAST)
    service = f"svc-{uuid.uuid4().hex[:8]}"
    sender = Sender(producer, tenant)
    await send_month(sender, service)
    await in_ledger(pools, tenant, sender.sent)
    manager = auth(tenant, "change_manager")
    ids = ("incident.volume", "incident.resolve_time.mean", "csat.score.mean")
    api = await eventually(
        lambda: figures(reporting, manager, *ids, service=service),
        lambda b: value_of(b, "incident.volume") == 3 and value_of(b, "csat.score.mean") == 4,
    )

    admin = auth(tenant, "tenant_admin")
    unknown = await reporting.post(
        "/report-definitions", json=definition(kpis=[{"id": "no.such.kpi"}]), headers=admin
    )
    assert unknown.status_code == 422
    assert [e["field"] for e in unknown.json()["errors"]] == ["kpis.0.id"]
    created = await reporting.post(
        "/report-definitions",
        json=definition(
            services=[service],
            kpis=[
                {"id": "incident.volume"},
                {"id": "incident.resolve_time.mean", "target": 7200},
                {"id": "csat.score.mean", "target": 4.5},
            ],
        ),
        headers=admin,
    )
    assert created.status_code == 201, created.text
    started = await reporting.post(
        "/reports",
        json={"definition_id": created.json()["id"], "period_start": "2026-11-01"},
        headers=admin,
    )
    assert started.status_code == 202, started.text
    report = await finished(reporting, admin, started.headers["Location"])

    document = (await reporting.get(f"/reports/{report['id']}.json", headers=admin)).json()
    for kpi in ids:
        assert figure(document, kpi, "2026-11") == value_of(api, kpi), kpi
    # The mean resolve time (2.5 h) is above its 2 h target: a breach the page highlights.
    assert figure(document, "incident.resolve_time.mean", "2026-11") == 2.5 * 3600
    page = (await reporting.get(f"/reports/{report['id']}.html", headers=admin)).text
    assert page.count("<svg ") >= 3

    # The basis is a signed checkpoint of the tenant's log, at least the one the API answered on.
    assert report["basis"]["tree_size"] >= api["basis"]["tree_size"]
    [signed] = await fetch_as(
        pools["reporting"],
        tenant,
        "SELECT root_hash FROM ledger_checkpoints WHERE tree_size = $1",
        report["basis"]["tree_size"],
    )
    assert base64.b64decode(report["basis"]["root_hash"]) == signed["root_hash"]


async def test_the_management_review_pack_takes_every_process_from_the_real_readers(
    service_client, pools, producer, auth, tenant
):
    reporting = await service_client("reporting", **FAST)
    service = f"svc-{uuid.uuid4().hex[:8]}"
    sender = Sender(producer, tenant)
    await send_month(sender, service)
    await in_ledger(pools, tenant, sender.sent)
    manager = auth(tenant, "change_manager")
    await eventually(
        lambda: figures(reporting, manager, "incident.volume"),
        lambda b: value_of(b, "incident.volume") == 3,
    )
    admin = auth(tenant, "tenant_admin")
    finding = await reporting.post(
        "/audit-findings",
        json={
            "audit": "Internal audit 2026-Q4",
            "clause": "8.5.1",
            "finding": "Two emergency changes lacked a retrospective review.",
            "severity": "minor_nonconformity",
        },
        headers=auth(tenant, "auditor"),
    )
    assert finding.status_code == 201, finding.text

    started = await reporting.post(
        "/management-reviews",
        json={"period": "month", "period_start": "2026-11-01", "trend_periods": 1},
        headers=admin,
    )
    assert started.status_code == 202, started.text
    report = await finished(reporting, admin, started.headers["Location"])
    document = (await reporting.get(f"/reports/{report['id']}.json", headers=admin)).json()
    processes = {k["kpi"]["process"] for k in document["kpis"]}
    assert {"incident", "change"} <= processes
    assert figure(document, "incident.volume", "2026-11") == 3
    assert [f["clause"] for f in document["audit_findings"]] == ["8.5.1"]
    # SLA performance from the clocks the month stopped (gold: one met, one breached).
    assert any(r["policy"] == "gold" for r in document["sla"]), document["sla"]


@pytest.fixture
async def superuser(infra):
    """A database superuser's session on the reporting schema, triggers off."""
    conn = await asyncpg.connect(dsn_for_admin_database(infra.admin_dsn, DEFAULT_DATABASE))
    await conn.execute(f"SET search_path = {service_of('reporting').schema}")
    await conn.execute("SET session_replication_role = replica")
    yield conn
    await conn.close()


async def test_a_tenant_whose_log_is_broken_holds_up_no_other_tenants_figures(
    service_client, pools, producer, auth, tenant, superuser
):
    # Another tenant's log claims 16 signed entries it does not hold (as after a superuser
    # deleted its rows); it sorts before every test tenant, so its KPI projection fails first on
    # every round, and every other tenant's figures must still come.
    broken = f"t-0-broken-{uuid.uuid4().hex[:8]}"
    await superuser.execute("INSERT INTO ledger_heads (tenant_id, size) VALUES ($1, 16)", broken)
    await superuser.execute(
        "INSERT INTO ledger_checkpoints (tenant_id, tree_size, root_hash, note, key_id)"
        " VALUES ($1, 16, $2, 'forged', '00000000')",
        broken,
        bytes(32),
    )
    reporting = await service_client("reporting", **FAST)
    sender = Sender(producer, tenant)
    await send_month(sender, f"svc-{uuid.uuid4().hex[:8]}")
    await in_ledger(pools, tenant, sender.sent)
    await eventually(
        lambda: figures(reporting, auth(tenant, "change_manager"), "incident.volume"),
        lambda b: value_of(b, "incident.volume") == 3,
    )
    failures = await eventually(lambda: _value(reporting, "kpi-projection"), lambda n: n >= 1)
    assert failures >= 1


async def _value(reporting, projection: str) -> float:
    return (
        sample_value(
            reporting.runtime.registry,
            "itsm_reporting_projection_failures_total",
            {"projection": projection},
        )
        or 0.0
    )
