"""KPIs on the real broker and database: events published -> ledger -> signed checkpoint ->
KPI projection -> API and metrics; every figure recomputed from an evidence export equals the
API's; a provider's staff see the tenants their token names, per tenant and together, and
nothing of any other; the rebuild command folds the same figures again."""

from __future__ import annotations

import argparse
import base64
import io
import json
import tarfile
import uuid
from datetime import UTC, datetime, timedelta

from services.reporting.adapters import kpis as kpi_store
from services.reporting.application import kpis as kpi_projection
from services.reporting.commands import kpis as kpis_command
from services.reporting.domain import kpis
from shared.db import tenant_transaction
from shared.events.catalogue import CHANGE_EVENTS, INCIDENT_EVENTS
from shared.events.envelope import new_envelope
from tests.support import eventually, fetch_as, sample_value, send_event

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
NOVEMBER = {"period": "month", "start": "2026-11-01"}


class Sender:
    """Events of one tenant as the incident and change services publish them."""

    def __init__(self, producer, tenant: str) -> None:
        self.producer = producer
        self.tenant = tenant
        self.versions: dict[str, int] = {}
        self.sent = 0

    async def send(self, type_, subject, at, data, *, actor="alice", topic=INCIDENT_EVENTS):
        version = self.versions[subject] = self.versions.get(subject, 0) + 1
        envelope = new_envelope(
            source="itsm/change" if topic == CHANGE_EVENTS else "itsm/incident",
            type=type_,
            subject=subject,
            tenantid=self.tenant,
            itsmversion=version,
            actor=actor,
            data=data,
            time=at,
        )
        await send_event(self.producer, envelope, topic)
        self.sent += 1

    async def incident(self, at, *, priority=3, services=(), **fields) -> str:
        incident_id = str(uuid.uuid4())
        data = {
            "title": "Mail down",
            "description": "",
            "impact": 2,
            "urgency": 2,
            "priority": priority,
            "state": "new",
            "services": list(services),
            **fields,
        }
        await self.send("itsm.incident.created.v1", incident_id, at, data)
        return incident_id

    async def move(self, incident_id, before, after, at, priority=3, actor="alice"):
        data = {"from_state": before, "to_state": after, "priority": priority}
        await self.send("itsm.incident.transitioned.v1", incident_id, at, data, actor=actor)

    async def clock(self, incident_id, kind, result, at, elapsed, priority=3):
        clock = {
            "record": "incident",
            "record_id": incident_id,
            "kind": kind,
            "policy": "gold",
            "priority": priority,
            "target_seconds": 3600,
        }
        data = {
            "clock": clock,
            "result": result,
            "elapsed_seconds": elapsed,
            "paused_seconds": 0,
            "started_at": T0.isoformat(),
            "stopped_at": at.isoformat(),
        }
        await self.send("itsm.incident.sla.clock_stopped.v1", f"sla/{incident_id}/{kind}", at, data)


async def send_month(sender: Sender, service: str) -> None:
    """November's work of one tenant: three incidents (one reopened, one still open), SLA
    results, a failed emergency change that caused an incident, a survey answered."""
    h = timedelta(hours=1)
    first = await sender.incident(T0, priority=2, services=[service], assignment_group="desk")
    await sender.move(first, "new", "in_progress", T0 + h / 6, priority=2)
    await sender.clock(first, "response", "met", T0 + h / 6, 600.0, priority=2)
    await sender.move(first, "in_progress", "resolved", T0 + h, priority=2)
    await sender.clock(first, "resolution", "met", T0 + h, 3000.0, priority=2)
    second_at = T0 + timedelta(days=1)
    second = await sender.incident(second_at, priority=1, services=[service, "shared-svc"])
    await sender.move(second, "new", "in_progress", second_at + h / 2, priority=1)
    await sender.move(second, "in_progress", "resolved", second_at + 2 * h, priority=1)
    await sender.move(second, "resolved", "in_progress", second_at + 3 * h, priority=1)
    await sender.move(second, "in_progress", "resolved", second_at + 4 * h, priority=1)
    await sender.clock(second, "resolution", "breached", second_at + 4 * h, 14000.0, priority=1)
    change = str(uuid.uuid4())
    change_at = T0 + timedelta(days=10)
    await sender.send(
        "itsm.change.created.v1",
        change,
        change_at,
        {
            "change_id": change,
            "number": 1,
            "type": "emergency",
            "origin": "manual",
            "title": "Patch",
            "requester": "carol",
            "business_services": [service],
            "content_hash": "h",
        },
        topic=CHANGE_EVENTS,
    )
    await sender.send(
        "itsm.change.implemented.v1",
        change,
        change_at + 2 * h,
        {
            "change_id": change,
            "title": "Patch",
            "ci_ids": [],
            "implemented_at": (change_at + 2 * h).isoformat(),
            "outcome": "failed",
        },
        topic=CHANGE_EVENTS,
    )
    await sender.incident(
        change_at + 3 * h, priority=3, services=[service], suspected_change=change
    )
    survey = f"survey/{first}"
    answer = {"record": "incident", "record_id": first, "services": [service], "assignee": "bob"}
    expires = (T0 + timedelta(days=14)).isoformat()
    await sender.send(
        "itsm.incident.survey.sent.v1", survey, T0 + 2 * h, {**answer, "expires_at": expires}
    )
    await sender.send(
        "itsm.incident.survey.answered.v1", survey, T0 + 5 * h, {**answer, "score": 4}
    )


async def in_ledger(pools, tenant: str, count: int) -> None:
    """Wait until the ledger holds `count` events of the tenant's services."""
    await eventually(
        lambda: fetch_as(
            pools["reporting"],
            tenant,
            "SELECT count(*) AS n FROM ledger WHERE type NOT LIKE 'itsm.reporting.%'",
        ),
        lambda rows: rows[0]["n"] >= count,
    )


async def figures(reporting, headers, *ids: str, **params) -> dict:
    response = await reporting.get(
        "/kpis", params={"kpi": ",".join(ids), **NOVEMBER, **params}, headers=headers
    )
    assert response.status_code == 200, response.text
    return response.json()


def value_of(body: dict, kpi: str, dimension_value: str | None = None) -> float | None:
    [point] = [
        p for p in body["points"] if p["kpi"] == kpi and p["dimension_value"] == dimension_value
    ]
    return point["value"]


async def signed_checkpoint(reporting, auth, tenant) -> int:
    """Sign a checkpoint of everything logged so far (after the log's key entry is in)."""

    async def sign():
        return await reporting.post("/ledger/checkpoints", headers=auth(tenant, "auditor"))

    response = await eventually(sign, lambda r: r.status_code in (200, 201))
    return response.json()["tree_size"]


async def test_published_events_become_kpis_that_name_their_checkpoint_and_a_rebuild_agrees(
    service_client, pools, producer, auth, tenant
):
    reporting = await service_client(
        "reporting", checkpoint_interval_seconds=0.2, kpi_interval_seconds=0.2
    )
    service = f"svc-{uuid.uuid4().hex[:8]}"
    sender = Sender(producer, tenant)
    await send_month(sender, service)
    await in_ledger(pools, tenant, sender.sent)
    manager = auth(tenant, "change_manager")
    ids = [
        "incident.volume",
        "incident.resolve_time.mean",
        "incident.reopen_rate",
        "incident.sla.resolution_compliance",
        "incident.backlog",
        "dora.change_failure_rate",
        "incident.caused_by_change",
        "csat.score.mean",
    ]
    body = await eventually(
        lambda: figures(reporting, manager, *ids),
        lambda b: value_of(b, "incident.volume") == 3 and value_of(b, "csat.score.mean") == 4,
    )
    # The basis is a signed checkpoint of the tenant's log.
    [checkpoint] = await fetch_as(
        pools["reporting"],
        tenant,
        "SELECT root_hash FROM ledger_checkpoints WHERE tree_size = $1",
        body["basis"]["tree_size"],
    )
    assert base64.b64decode(body["basis"]["root_hash"]) == checkpoint["root_hash"]
    # 1 h, and 4 h for the reopened one (its last resolution), counted once.
    assert value_of(body, "incident.resolve_time.mean") == (3600.0 + 4 * 3600.0) / 2
    assert value_of(body, "incident.reopen_rate") == 0.5
    assert value_of(body, "incident.sla.resolution_compliance") == 0.5
    assert value_of(body, "incident.backlog") == 1
    assert value_of(body, "dora.change_failure_rate") == 1.0
    assert value_of(body, "incident.caused_by_change") == 1

    by_priority = await figures(reporting, manager, "incident.volume", dimension="priority")
    assert {p["dimension_value"]: p["value"] for p in by_priority["points"]} == {
        "P1": 1,
        "P2": 1,
        "P3": 1,
    }
    weeks = await figures(
        reporting, manager, "incident.volume", period="week", start="2026-11-02", count=2
    )
    assert [(p["period"]["label"], p["value"]) for p in weeks["points"]] == [
        ("2026-W45", 2),
        ("2026-W46", 1),
    ]
    shared_only = await figures(reporting, manager, "incident.volume", service="shared-svc")
    assert value_of(shared_only, "incident.volume") == 1

    # Agents do not read KPIs; an unknown KPI is a 422 naming the parameter.
    refused = await reporting.get(
        "/kpis", params={"kpi": "incident.volume"}, headers=auth(tenant, "agent")
    )
    assert refused.status_code == 403
    unknown = await reporting.get("/kpis", params={"kpi": "nope"}, headers=manager)
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["field"] == "kpi"
    definitions = await reporting.get("/kpis/definitions", headers=manager)
    assert {d["id"] for d in definitions.json()} == {d.id for d in kpis.DEFINITIONS}

    # The rebuild command resets the projection and folds the same figures again.
    settings = reporting.runtime.settings
    status = await kpis_command.run(argparse.Namespace(action="rebuild", tenant=[tenant]), settings)
    assert status == 0
    again = await figures(reporting, manager, *ids)
    assert again["points"] == body["points"]
    assert again["basis"]["tree_size"] >= body["basis"]["tree_size"]


async def stored_facts(pool, tenant: str) -> tuple[list, list]:
    """The tenant's fact rows and per-service rows, in key order (one snapshot)."""
    async with tenant_transaction(pool, tenant, readonly=True) as conn:
        facts = await conn.fetch(
            "SELECT kind, record_id, first_at, last_at, services, body FROM kpi_facts"
            " ORDER BY kind, record_id"
        )
        served = await conn.fetch(
            "SELECT kind, service, record_id, first_at, last_at FROM kpi_fact_services"
            " ORDER BY kind, record_id, service"
        )
    return [tuple(r) for r in facts], [tuple(r) for r in served]


async def test_a_rebuild_over_many_chunks_stores_exactly_the_facts_the_kpi_task_stored(
    service_client, pools, producer, auth, tenant, monkeypatch
):
    reporting = await service_client(
        "reporting", checkpoint_interval_seconds=0.2, kpi_interval_seconds=0.2
    )
    sender = Sender(producer, tenant)
    await send_month(sender, f"svc-{uuid.uuid4().hex[:8]}")
    await in_ledger(pools, tenant, sender.sent)
    manager = auth(tenant, "change_manager")
    await eventually(
        lambda: figures(reporting, manager, "incident.volume", "csat.score.mean"),
        lambda b: value_of(b, "incident.volume") == 3 and value_of(b, "csat.score.mean") == 4,
    )
    folded = await stored_facts(pools["reporting"], tenant)
    assert len(folded[0]) == 5  # three incidents, a change and a survey
    assert folded[1]

    # Two entries per chunk, three facts per insert and room for two facts in memory (so
    # facts are written, dropped and read again mid-rebuild): the rebuild's fold gives the
    # rows the task's upserts gave, row for row.
    monkeypatch.setattr(kpi_projection, "CHUNK", 2)
    monkeypatch.setattr(kpi_store, "INSERT_BATCH", 3)
    monkeypatch.setattr(kpi_projection, "REBUILD_FACTS_IN_MEMORY", 2)
    counts = await kpi_projection.rebuild(pools["reporting"], [tenant])
    assert counts[tenant] >= sender.sent
    assert await stored_facts(pools["reporting"], tenant) == folded

    # With room for every fact: written once, at the end.
    monkeypatch.setattr(kpi_projection, "REBUILD_FACTS_IN_MEMORY", 100)
    await kpi_projection.rebuild(pools["reporting"], [tenant])
    assert await stored_facts(pools["reporting"], tenant) == folded


async def test_kpis_recomputed_from_an_evidence_export_equal_the_apis(
    service_client, pools, producer, auth, tenant
):
    # Checkpoints only on demand: the export and the projection stand on the same one.
    reporting = await service_client(
        "reporting", checkpoint_interval_seconds=3600, kpi_interval_seconds=0.2
    )
    sender = Sender(producer, tenant)
    await send_month(sender, "svc-a")
    await send_month(sender, "svc-b")
    await in_ledger(pools, tenant, sender.sent)
    size = await signed_checkpoint(reporting, auth, tenant)
    auditor = auth(tenant, "auditor")
    ids = [d.id for d in kpis.DEFINITIONS]
    await eventually(
        lambda: figures(reporting, auditor, "incident.volume"),
        lambda b: b["basis"] is not None and b["basis"]["tree_size"] == size,
    )
    headers = {**auditor, "Idempotency-Key": str(uuid.uuid4())}
    started = await reporting.post(
        "/evidence-exports",
        json={"from": "2026-10-01T00:00:00Z", "to": "2026-12-01T00:00:00Z"},
        headers=headers,
    )
    assert started.status_code == 202, started.text
    location = started.headers["Location"]

    async def job():
        return (await reporting.get(location, headers=auditor)).json()

    done = await eventually(job, lambda j: j["state"] in ("done", "failed"), timeout=60)
    assert done["state"] == "done" and done["tree_size"] == size
    archive = (await reporting.get(f"{location}/archive", headers=auditor)).content
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        [entries] = [m for m in tar.getmembers() if m.name.endswith("/entries.jsonl")]
        lines = tar.extractfile(entries).read().decode().splitlines()  # type: ignore[union-attr]
    events = [
        kpis.event_of_entry(item["index"], base64.b64decode(item["entry"]))
        for item in map(json.loads, lines)
    ]
    facts = kpis.fold_all(events).values()
    as_of = max(e.time.timestamp() for e in events)
    for dimension in ("tenant", "service", "priority", "group", "agent", "category"):
        for period, start, count in (("month", "2026-11-01", 1), ("week", "2026-11-02", 3)):
            api = await figures(
                reporting, auditor, *ids, dimension=dimension, period=period, start=start,
                count=count,
            )  # fmt: skip
            assert api["basis"]["tree_size"] == size
            recomputed = kpis.evaluate(
                facts,
                ids,
                period,  # type: ignore[arg-type]
                datetime.fromisoformat(start).date(),
                count,
                zone=reporting.runtime.settings.kpi_zone,
                as_of=as_of,
                dimension=dimension,
            )
            mine = [
                (p.kpi, p.period.label, p.dimension_value, p.value, p.count) for p in recomputed
            ]
            theirs = [
                (p["kpi"], p["period"]["label"], p["dimension_value"], p["value"], p["count"])
                for p in api["points"]
            ]
            assert mine == theirs, dimension
    assert any(v is not None and v > 0 for (_, _, _, v, _) in mine)


async def test_a_providers_staff_see_the_tenants_their_token_names_and_nothing_else(
    service_client, pools, producer, auth
):
    reporting = await service_client(
        "reporting", checkpoint_interval_seconds=0.2, kpi_interval_seconds=0.2
    )
    first, second, other = (f"t-{uuid.uuid4().hex[:12]}" for _ in range(3))
    counts = {first: 2, second: 1, other: 5}
    for tenant, n in counts.items():
        sender = Sender(producer, tenant)
        for i in range(n):
            await sender.incident(T0 + timedelta(hours=i), services=["svc-a"])
        await in_ledger(pools, tenant, n)
    for tenant, n in counts.items():
        await eventually(
            lambda tenant=tenant: figures(reporting, auth(tenant, "auditor"), "incident.volume"),
            lambda b, n=n: value_of(b, "incident.volume") == n,
        )
    staff = auth(first, "auditor", tenants=[first, second])
    body = await figures(
        reporting, {**staff, "X-Tenant-Id": first}, "incident.volume", tenants=f"{first},{second}"
    )
    assert value_of(body, "incident.volume") == 3  # over both, never the other tenant's 5
    assert {t["tenant"]: value_of(t, "incident.volume") for t in body["tenants"]} == {
        first: 2,
        second: 1,
    }
    assert set(body["bases"]) == {first, second}
    assert all(b["tree_size"] >= 1 for b in body["bases"].values())

    # A tenant the token does not serve is refused, whole.
    refused = await reporting.get(
        "/kpis",
        params={"kpi": "incident.volume", "tenants": f"{first},{other}", **NOVEMBER},
        headers={**staff, "X-Tenant-Id": first},
    )
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("application/problem+json")
    single = auth(first, "auditor")
    refused = await reporting.get(
        "/kpis",
        params={"kpi": "incident.volume", "tenants": f"{first},{second}", **NOVEMBER},
        headers=single,
    )
    assert refused.status_code == 403


async def test_kpis_are_exposed_as_a_gauge_with_bounded_labels_and_no_tenant(
    service_client, pools, producer, auth, tenant
):
    reporting = await service_client(
        "reporting",
        checkpoint_interval_seconds=0.2,
        kpi_interval_seconds=0.2,
        kpi_metrics_interval_seconds=0.2,
        kpi_metrics_services=100,
    )
    service = f"svc-{uuid.uuid4().hex[:8]}"
    sender = Sender(producer, tenant)
    now = datetime.now(UTC)
    await sender.incident(now - timedelta(seconds=2), priority=2, services=[service])
    await in_ledger(pools, tenant, 1)
    registry = reporting.runtime.registry
    labels = {"kpi": "incident.volume", "period": "day", "service": service, "priority": ""}
    await eventually(
        lambda: _async(sample_value(registry, "itsm_reporting_kpi_value", labels)),
        lambda value: value == 1,
    )
    samples = [
        s
        for metric in registry.collect()
        for s in metric.samples
        if s.name == "itsm_reporting_kpi_value"
    ]
    assert all(set(s.labels) == {"kpi", "period", "service", "priority"} for s in samples)
    assert {s.labels["period"] for s in samples} <= {"day", "week", "month"}
    assert {s.labels["priority"] for s in samples} <= {"", "P1", "P2", "P3", "P4", "P5"}
    assert any(s.labels["priority"] == "P2" for s in samples)
    exposition = await reporting.get("/metrics")
    assert f'service="{service}"' in exposition.text
    assert tenant not in exposition.text
    assert "itsm_reporting_kpi_tenant_value{" not in exposition.text


async def _async(value):
    return value


async def test_a_tenant_listed_in_metrics_tenants_gets_kpi_series_of_its_own(
    service_client, pools, producer, tenant
):
    other = f"t-{uuid.uuid4().hex[:12]}"
    reporting = await service_client(
        "reporting",
        checkpoint_interval_seconds=0.2,
        kpi_interval_seconds=0.2,
        kpi_metrics_interval_seconds=0.2,
        metrics_tenants=tenant,
    )
    now = datetime.now(UTC)
    for who, n in ((tenant, 2), (other, 1)):
        sender = Sender(producer, who)
        for _ in range(n):
            await sender.incident(now - timedelta(seconds=2))
        await in_ledger(pools, who, n)
    registry = reporting.runtime.registry
    labels = {"tenant": tenant, "kpi": "incident.volume", "period": "day"}
    await eventually(
        lambda: _async(sample_value(registry, "itsm_reporting_kpi_tenant_value", labels)),
        lambda value: value == 2,
    )
    exposition = (await reporting.get("/metrics")).text
    assert f'tenant="{tenant}"' in exposition
    assert other not in exposition  # not listed: only in the figures over every tenant
