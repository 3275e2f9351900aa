"""Discovery imports on the real database and broker: outcomes, idempotency, drift, progress."""

import asyncio
import json
import uuid

import pytest

from services.config.application import imports as import_use_cases
from services.config.application.uow import ConfigUnitOfWork
from services.config.domain.imports import parse_jsonl_line
from shared.context import RequestContext
from shared.events.binding import from_kafka
from shared.events.catalogue import CONFIG_EVENTS
from tests.support import end_offsets, fetch_as, fetchval_as, read_topic, sample_value

JSONL = {"Content-Type": "application/x-ndjson"}


@pytest.fixture
async def config(service_client, tenant):
    # The census test reads the tenant's own series: an operator's opt-in (METRICS_TENANTS).
    return await service_client("config", metrics_tenants=tenant)


@pytest.fixture
def manager(auth, tenant):
    return auth(tenant, "config_manager", subject="discovery-bot")


def server(external_id, **overrides):
    row = {
        "external_id": external_id,
        "class": "server",
        "name": f"srv-{external_id}",
        "attributes": {"hostname": f"srv-{external_id}", "environment": "production"},
    }
    return {**row, **overrides}


def jsonl(*rows):
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


ESTATE = [
    {
        "external_id": "svc-pay",
        "class": "business_service",
        "name": "Payroll",
        "criticality": 1,
        "attributes": {"owner": "cfo", "customer": "finance", "availability_target": 99.9},
    },
    {
        "external_id": "app-pay",
        "class": "application",
        "name": "payroll-app",
        "attributes": {"environment": "production"},
    },
    server("h1"),
    server("h2"),
    {"kind": "relationship", "type": "provides", "source": "app-pay", "target": "svc-pay"},
    {"kind": "relationship", "type": "runs_on", "source": "app-pay", "target": "h1"},
]


async def run(config, headers, body, source="vcenter", content=JSONL, **params):
    response = await config.post(
        "/imports",
        params={"source": source, **params},
        content=body,
        headers={**headers, **content},
    )
    assert response.status_code == 201, response.text
    return response.json()


async def rows_of(config, headers, import_id, **params):
    response = await config.get(f"/imports/{import_id}/rows", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def ci_by_external_id(config, tenant, source, external_id):
    return await fetchval_as(
        config.runtime.pool,
        tenant,
        "SELECT ci_id FROM ci_external_ids WHERE source = $1 AND external_id = $2",
        source,
        external_id,
    )


async def test_an_import_creates_cis_and_relationships_and_reports_every_row(
    config, manager, tenant
):
    report = await run(config, manager, jsonl(*ESTATE))
    assert report["status"] == "completed"
    assert report["rows"] == 6
    assert report["outcomes"] == {
        "created": 6,
        "updated": 0,
        "unchanged": 0,
        "drift": 0,
        "rejected": 0,
    }
    rows = await rows_of(config, manager, report["id"])
    assert [(r["line"], r["kind"], r["outcome"]) for r in rows] == [
        (1, "ci", "created"),
        (2, "ci", "created"),
        (3, "ci", "created"),
        (4, "ci", "created"),
        (5, "relationship", "created"),
        (6, "relationship", "created"),
    ]
    assert rows[4]["key"] == "app-pay -provides-> svc-pay"

    h1 = await ci_by_external_id(config, tenant, "vcenter", "h1")
    history = (await config.get(f"/cis/{h1}/history", headers=manager)).json()["items"]
    assert [(v["version"], v["source"], v["actor"]) for v in history] == [
        (1, "vcenter", "discovery-bot")
    ]
    ci = (await config.get(f"/cis/{h1}", headers=manager)).json()
    assert ci["external_ids"] == {"vcenter": "h1"}
    assert ci["status"] == "active"
    # Imported relationships feed the service membership like any other.
    payroll = await ci_by_external_id(config, tenant, "vcenter", "svc-pay")
    services = await fetchval_as(
        config.runtime.pool,
        tenant,
        "SELECT services FROM ci_service_membership WHERE ci_id = $1",
        h1,
    )
    assert services == [payroll]


async def test_importing_the_same_data_again_changes_nothing_and_writes_no_version(
    config, manager, tenant
):
    await run(config, manager, jsonl(*ESTATE))
    versions = await fetchval_as(config.runtime.pool, tenant, "SELECT count(*) FROM ci_versions")
    again = await run(config, manager, jsonl(*ESTATE))
    assert again["outcomes"]["unchanged"] == 6
    assert again["outcomes"]["created"] == again["outcomes"]["updated"] == 0
    assert (
        await fetchval_as(config.runtime.pool, tenant, "SELECT count(*) FROM ci_versions")
        == versions
    )
    relationships = await fetchval_as(
        config.runtime.pool, tenant, "SELECT count(*) FROM relationships"
    )
    assert relationships == 2


async def test_changed_data_makes_a_new_version_attributed_to_the_source(config, manager, tenant):
    await run(config, manager, jsonl(server("h1"), server("h2")))
    changed = server("h1", attributes={"os": "Debian 13"}, criticality=2)
    report = await run(config, manager, jsonl(changed, server("h2")))
    assert report["outcomes"]["updated"] == 1
    assert report["outcomes"]["unchanged"] == 1

    h1 = await ci_by_external_id(config, tenant, "vcenter", "h1")
    ci = (await config.get(f"/cis/{h1}", headers=manager)).json()
    # Attributes the row names are merged in; the others stay.
    assert ci["attributes"] == {
        "hostname": "srv-h1",
        "environment": "production",
        "os": "Debian 13",
    }
    assert ci["criticality"] == 2
    latest = (await config.get(f"/cis/{h1}/history", headers=manager)).json()["items"][-1]
    assert latest["version"] == 2
    assert latest["source"] == "vcenter"
    assert sorted(latest["changed"]) == ["attributes", "criticality"]
    assert report["id"] in latest["reason"]


async def test_a_difference_on_a_controlled_ci_is_raised_as_drift_and_not_applied(
    config, manager, tenant, infra
):
    created = await config.post(
        "/cis",
        json={
            "class": "server",
            "name": "core-db-host",
            "controlled": True,
            "attributes": {"hostname": "core-db-host", "environment": "production"},
            "external_ids": {"vcenter": "core"},
        },
        headers=manager,
    )
    assert created.status_code == 201, created.text
    ci_id = created.json()["id"]
    start = await end_offsets(infra.bootstrap_servers, CONFIG_EVENTS)
    drifted = server(
        "core", name="core-db-host", attributes={"hostname": "core-db-host", "os": "Debian 13"}
    )
    report = await run(config, manager, jsonl(drifted))
    assert report["outcomes"]["drift"] == 1
    [row] = await rows_of(config, manager, report["id"], outcome="drift")
    assert row["ci_id"] == ci_id
    assert "attributes.os" in row["reason"]

    ci = (await config.get(f"/cis/{ci_id}", headers=manager)).json()
    assert ci["version"] == 1
    assert "os" not in ci["attributes"]
    assert sample_value(config.runtime.registry, "itsm_config_drift_events_total") >= 1

    def drifts(records):
        events = [from_kafka(r.value, r.headers) for r in records]
        return [
            e
            for e in events
            if e.tenantid == tenant and e.type == "itsm.config.ci.drift_detected.v1"
        ]

    records = await read_topic(infra.bootstrap_servers, start, until=lambda rs: drifts(rs))
    [event] = drifts(records)
    assert event.subject == ci_id
    assert event.data["source"] == "vcenter"
    assert event.data["import_id"] == report["id"]
    assert event.data["differences"] == {
        "attributes.os": {"recorded": None, "discovered": "Debian 13"}
    }
    assert event.data["ci"]["version"] == 1


async def test_bad_rows_are_rejected_with_the_reason_and_the_rest_is_applied(
    config, manager, tenant
):
    await run(config, manager, jsonl(server("h1")))
    body = b"".join(
        [
            jsonl(server("h2")),
            b"{not json\n",
            jsonl({"external_id": "x", "class": "spaceship", "name": "x"}),
            jsonl(server("h3", attributes={"hostname": "h3", "environment": "moon"})),
            jsonl({"kind": "relationship", "type": "runs_on", "source": "h2", "target": "nope"}),
            jsonl({"external_id": "h1", "class": "database", "name": "srv-h1"}),
            jsonl({"external_id": "h4", "class": "server", "name": "", "attributes": {}}),
            jsonl(server("h5")),
        ]
    )
    report = await run(config, manager, body)
    assert report["outcomes"]["created"] == 2
    assert report["outcomes"]["rejected"] == 6
    rejected = {
        r["line"]: r["reason"]
        for r in await rows_of(config, manager, report["id"])
        if r["outcome"] == "rejected"
    }
    assert rejected[2].startswith("row: not JSON")
    assert rejected[3] == "class: no CI class named 'spaceship'"
    assert rejected[4].startswith("attributes.environment")
    assert rejected[5] == "target: no CI with external id 'nope' from this source"
    assert rejected[6] == "class: registered as server, not database"
    assert rejected[7].startswith("name:")
    assert await ci_by_external_id(config, tenant, "vcenter", "h5") is not None


async def test_a_csv_import_types_attribute_cells_by_the_class_schema(config, manager, tenant):
    body = (
        b"kind,external_id,class,name,criticality,attributes.engine,attributes.port,"
        b"type,source,target\n"
        b"ci,db1,database,orders-db,2,postgresql,5432,,,\n"
        b"ci,db2,database,stock-db,,mysql,not-a-port,,,\n"
        b"relationship,,,,,,,depends_on,db1,db1\n"
    )
    report = await run(config, manager, body, content={"Content-Type": "text/csv"})
    assert report["format"] == "csv"
    assert report["outcomes"]["created"] == 1
    rows = await rows_of(config, manager, report["id"])
    assert [r["line"] for r in rows] == [2, 3, 4]
    assert rows[1]["reason"] == "attributes.port: expected integer"
    assert rows[2]["reason"] == "target: the same CI as source"
    db1 = await ci_by_external_id(config, tenant, "vcenter", "db1")
    ci = (await config.get(f"/cis/{db1}", headers=manager)).json()
    assert ci["attributes"] == {"engine": "postgresql", "port": 5432}
    assert ci["criticality"] == 2


async def test_progress_is_visible_while_a_large_import_streams_in(config, manager):
    release = asyncio.Event()

    async def body():
        yield jsonl(*(server(f"p{i}") for i in range(1500)))
        await release.wait()
        yield jsonl(*(server(f"q{i}") for i in range(10)))

    posting = asyncio.create_task(
        config.post(
            "/imports", params={"source": "vcenter"}, content=body(), headers={**manager, **JSONL}
        )
    )

    async def running():
        listed = (await config.get("/imports", headers=manager)).json()["items"]
        return [i for i in listed if i["status"] == "running" and i["rows"] >= 1000]

    for _ in range(300):
        seen = await running()
        if seen:
            break
        await asyncio.sleep(0.1)
    assert seen, "the running import never reported its first batch"
    progress = (await config.get(f"/imports/{seen[0]['id']}", headers=manager)).json()
    assert progress["status"] == "running"
    assert progress["rows"] == 1000
    assert progress["bytes_read"] > 0
    release.set()
    response = await posting
    assert response.status_code == 201, response.text
    assert response.json()["rows"] == 1510
    assert response.json()["status"] == "completed"


async def test_a_finished_import_is_announced_with_its_counts(config, manager, tenant, infra):
    start = await end_offsets(infra.bootstrap_servers, CONFIG_EVENTS)
    report = await run(config, manager, jsonl(server("h1"), {"external_id": "bad"}))

    def completed(records):
        events = [from_kafka(r.value, r.headers) for r in records]
        return [
            e
            for e in events
            if e.tenantid == tenant and e.type == "itsm.config.import.completed.v1"
        ]

    records = await read_topic(infra.bootstrap_servers, start, until=lambda rs: completed(rs))
    [event] = completed(records)
    assert event.subject == f"import/{report['id']}"
    assert event.data["status"] == "completed"
    assert event.data["rows"] == 2
    assert event.data["outcomes"]["created"] == 1
    assert event.data["outcomes"]["rejected"] == 1
    assert (
        sample_value(
            config.runtime.registry, "itsm_config_import_rows_total", {"outcome": "rejected"}
        )
        >= 1
    )


async def test_imports_are_refused_without_a_known_format_or_a_valid_source(config, manager):
    response = await config.post(
        "/imports",
        params={"source": "vcenter"},
        content=b"x",
        headers={**manager, "Content-Type": "application/pdf"},
    )
    assert response.status_code == 415
    assert response.headers["content-type"] == "application/problem+json"
    response = await config.post(
        "/imports", params={"source": "Bad Source!"}, content=b"", headers={**manager, **JSONL}
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "source"


async def test_another_tenants_import_is_not_found_and_an_agent_cannot_import(
    config, manager, auth, tenant
):
    report = await run(config, manager, jsonl(server("h1")))
    theirs = auth(f"{tenant}-x", "config_manager")
    assert (await config.get(f"/imports/{report['id']}", headers=theirs)).status_code == 404
    rows = await config.get(f"/imports/{report['id']}/rows", headers=theirs)
    assert rows.status_code == 404
    agent = auth(tenant, "agent")
    response = await config.post(
        "/imports",
        params={"source": "vcenter"},
        content=jsonl(server("h2")),
        headers={**agent, **JSONL},
    )
    assert response.status_code == 403
    unknown = await config.get(f"/imports/{uuid.uuid4()}", headers=manager)
    assert unknown.status_code == 404


async def test_the_ci_census_counts_cis_by_class_and_status(config, manager, tenant):
    from services.config.application.census import refresh

    await run(config, manager, jsonl(server("h1"), server("h2", status="planned")))
    runtime = config.runtime
    await refresh(runtime.pool, runtime.service_metrics, runtime.metrics.tenant)
    labels = {"class": "server", "tenant": tenant}
    assert sample_value(runtime.registry, "itsm_config_cis", {**labels, "status": "active"}) == 1
    assert sample_value(runtime.registry, "itsm_config_cis", {**labels, "status": "planned"}) == 1
    rows = await fetch_as(runtime.pool, tenant, "SELECT class, status, count FROM ci_census")
    assert {(r["class"], r["status"], r["count"]) for r in rows} == {
        ("server", "active", 1),
        ("server", "planned", 1),
    }


async def test_the_cli_streams_a_file_with_a_progress_bar_and_returns_the_report(
    config, manager, tmp_path
):
    import io

    from services.config.cli import upload

    path = tmp_path / "estate.jsonl"
    path.write_bytes(jsonl(*(server(f"c{i}") for i in range(3000))))
    progress = io.StringIO()
    token = manager["Authorization"].removeprefix("Bearer ")
    status, body = await upload(
        "http://config",
        token,
        path,
        source="cmdb-scan",
        format_="jsonl",
        progress=progress,
        transport=config._transport,
    )
    assert status == 201, body
    assert body["outcomes"]["created"] == 3000
    assert body["source"] == "cmdb-scan"
    assert "100.0%" in progress.getvalue()
    assert progress.getvalue().endswith("\n")


async def test_a_ci_twice_in_one_import_is_created_then_updated_in_input_order(
    config, manager, tenant
):
    report = await run(config, manager, jsonl(server("h1"), server("h1", name="renamed")))
    rows = await rows_of(config, manager, report["id"])
    assert [r["outcome"] for r in rows] == ["created", "updated"]
    ci_id = await ci_by_external_id(config, tenant, "vcenter", "h1")
    ci = (await config.get(f"/cis/{ci_id}", headers=manager)).json()
    assert (ci["name"], ci["version"]) == ("renamed", 2)
    history = (await config.get(f"/cis/{ci_id}/history", headers=manager)).json()["items"]
    assert [v["changed"] for v in history] == [["created"], ["name"]]


def relationship(type_, source, target):
    return {"kind": "relationship", "type": type_, "source": source, "target": target}


async def test_a_row_repeated_in_one_batch_is_created_once_and_then_unchanged(
    config, manager, tenant
):
    body = jsonl(
        server("h1"),
        server("h1"),
        server("h2"),
        relationship("hosted_on", "h1", "h2"),
        relationship("hosted_on", "h1", "h2"),
    )
    report = await run(config, manager, body)
    rows = await rows_of(config, manager, report["id"])
    assert [r["outcome"] for r in rows] == [
        "created",
        "unchanged",
        "created",
        "created",
        "unchanged",
    ]
    assert rows[0]["ci_id"] == rows[1]["ci_id"]
    assert await fetchval_as(config.runtime.pool, tenant, "SELECT count(*) FROM cis") == 2
    relationships = await fetchval_as(
        config.runtime.pool, tenant, "SELECT count(*) FROM relationships"
    )
    assert relationships == 1


async def test_a_later_batch_updates_and_links_a_ci_that_an_earlier_batch_of_the_import_created(
    config, manager, tenant
):
    first_batch = [server(f"b{i}") for i in range(1000)]
    body = jsonl(
        *first_batch,
        server("b0", name="renamed"),
        server("b1000"),
        relationship("hosted_on", "b1000", "b0"),
        relationship("hosted_on", "b1", "b1000"),
    )
    report = await run(config, manager, body)
    assert report["outcomes"]["created"] == 1003
    assert report["outcomes"]["updated"] == 1
    rows = {
        r["line"]: r
        for r in await fetch_as(
            config.runtime.pool,
            tenant,
            "SELECT line, outcome, reason FROM import_rows WHERE import_id = $1 AND line > 1000",
            uuid.UUID(report["id"]),
        )
    }
    assert [rows[line]["outcome"] for line in (1001, 1002, 1003, 1004)] == [
        "updated",
        "created",
        "created",
        "created",
    ]
    b0 = await ci_by_external_id(config, tenant, "vcenter", "b0")
    history = (await config.get(f"/cis/{b0}/history", headers=manager)).json()["items"]
    assert [(v["version"], v["changed"]) for v in history] == [(1, ["created"]), (2, ["name"])]
    dependents = await fetch_as(
        config.runtime.pool,
        tenant,
        "SELECT source_id FROM relationships WHERE target_id = $1",
        b0,
    )
    assert [r["source_id"] for r in dependents] == [
        await ci_by_external_id(config, tenant, "vcenter", "b1000")
    ]


async def test_an_imports_events_reach_the_topic_in_order_with_complete_envelopes(
    config, manager, tenant, infra
):
    start = await end_offsets(infra.bootstrap_servers, CONFIG_EVENTS)
    correlation = f"import-{uuid.uuid4().hex}"
    body = jsonl(
        server("h1"),
        server("h2"),
        server("h1", name="renamed"),
        relationship("hosted_on", "h1", "h2"),
    )
    report = await run(config, {**manager, "X-Correlation-Id": correlation}, body)
    assert report["outcomes"] == {
        "created": 3,
        "updated": 1,
        "unchanged": 0,
        "drift": 0,
        "rejected": 0,
    }

    def mine(records):
        return [r for r in records if dict(r.headers).get("ce_tenantid") == tenant.encode()]

    def complete(records):
        types = [dict(r.headers)["ce_type"] for r in mine(records)]
        return b"itsm.config.import.completed.v1" in types

    records = mine(await read_topic(infra.bootstrap_servers, start, until=complete))
    events = [from_kafka(r.value, r.headers) for r in records]
    assert len({e.id for e in events}) == len(events)
    assert all(r.key == e.subject.encode() for r, e in zip(records, events, strict=True))
    assert {e.correlationid for e in events} == {correlation}
    assert {e.actor for e in events} == {"discovery-bot"}
    h1 = str(await ci_by_external_id(config, tenant, "vcenter", "h1"))
    # One key, one partition: the CI's events arrive in the order they were made.
    assert [(e.type, e.itsmversion, e.data["ci"]["name"]) for e in events if e.subject == h1] == [
        ("itsm.config.ci.created.v1", 1, "srv-h1"),
        ("itsm.config.ci.updated.v1", 2, "renamed"),
    ]
    [added] = [e for e in events if e.type == "itsm.config.relationship.added.v1"]
    assert added.itsmversion == 1
    assert added.subject == added.data["relationship"]["id"]
    assert added.data["relationship"]["source_id"] == h1


# --- pipelined batches: decided without locks while the batch before is written ----------


def parsed_rows(*rows, first_line=1):
    return [parse_jsonl_line(first_line + i, json.dumps(r).encode()) for i, r in enumerate(rows)]


async def started(config, tenant, source="vcenter"):
    context = RequestContext(tenant, "discovery-bot", f"corr-{uuid.uuid4().hex}")
    return await import_use_cases.start_import(
        ConfigUnitOfWork(config.runtime.pool, context), source=source, format_="jsonl"
    )


async def decided(config, run, rows, overlay=None):
    return await import_use_cases._prepare(config.runtime.pool, run, rows, overlay or {})


async def outcomes_of(config, tenant, run):
    found = await fetch_as(
        config.runtime.pool,
        tenant,
        "SELECT line, outcome, reason FROM import_rows WHERE import_id = $1 ORDER BY line",
        run.id,
    )
    return [(r["line"], r["outcome"], r["reason"]) for r in found]


async def test_a_ci_changed_meanwhile_makes_its_batch_decide_again_and_no_change_is_lost(
    config, manager, tenant
):
    await run(config, manager, jsonl(server("h1")))
    h1 = await ci_by_external_id(config, tenant, "vcenter", "h1")
    importing = await started(config, tenant)
    rows = parsed_rows(server("h1", name="from-discovery"))
    batch = await decided(config, importing, rows)

    meanwhile = await config.patch(
        f"/cis/{h1}", json={"owner_team": "ops"}, headers={**manager, "If-Match": '"1"'}
    )
    assert meanwhile.status_code == 200, meanwhile.text
    redone = await import_use_cases._commit(config.runtime.pool, importing, rows, batch, None)

    assert redone is True
    ci = (await config.get(f"/cis/{h1}", headers=manager)).json()
    assert (ci["name"], ci["owner_team"], ci["version"]) == ("from-discovery", "ops", 3)
    history = (await config.get(f"/cis/{h1}/history", headers=manager)).json()["items"]
    assert [(v["version"], v["changed"]) for v in history] == [
        (1, ["created"]),
        (2, ["owner_team"]),
        (3, ["name"]),
    ]
    assert await outcomes_of(config, tenant, importing) == [(1, "updated", None)]


async def test_an_external_id_claimed_after_its_batch_was_decided_makes_the_batch_decide_again(
    config, manager, tenant
):
    importing = await started(config, tenant)
    rows = parsed_rows(server("n1"), relationship("hosted_on", "n1", "n2"))
    batch = await decided(config, importing, rows)
    assert [r.outcome for r in batch.results] == ["created", "rejected"]

    await run(config, manager, jsonl(server("n1"), server("n2")))  # another import, meanwhile
    redone = await import_use_cases._commit(config.runtime.pool, importing, rows, batch, None)

    assert redone is True
    assert await outcomes_of(config, tenant, importing) == [
        (1, "unchanged", None),
        (2, "created", None),
    ]
    named = await fetchval_as(
        config.runtime.pool, tenant, "SELECT count(*) FROM cis WHERE name = 'srv-n1'"
    )
    assert named == 1


async def test_a_batch_decided_while_the_one_before_is_written_sees_that_batchs_cis(
    config, manager, tenant
):
    await run(config, manager, jsonl(server("old"), server("doomed")))
    importing = await started(config, tenant)
    first_rows = parsed_rows(server("fresh"), server("doomed", status="retired"))
    first = await decided(config, importing, first_rows)
    # Decided before the first batch commits: "fresh" and the retirement are not committed yet.
    second_rows = parsed_rows(
        server("fresh", name="renamed"),
        relationship("hosted_on", "fresh", "old"),
        relationship("hosted_on", "old", "doomed"),
        first_line=3,
    )
    second = await decided(config, importing, second_rows, overlay=first.touched)
    pool = config.runtime.pool
    assert await import_use_cases._commit(pool, importing, first_rows, first, None) is False
    assert await import_use_cases._commit(pool, importing, second_rows, second, None) is False

    assert await outcomes_of(config, tenant, importing) == [
        (1, "created", None),
        (2, "updated", None),
        (3, "updated", None),
        (4, "created", None),
        (5, "rejected", "target: the CI with external id 'doomed' is retired"),
    ]
    fresh = await ci_by_external_id(config, tenant, "vcenter", "fresh")
    history = (await config.get(f"/cis/{fresh}/history", headers=manager)).json()["items"]
    assert [(v["version"], v["changed"]) for v in history] == [(1, ["created"]), (2, ["name"])]
    hosts = await fetch_as(
        pool, tenant, "SELECT target_id FROM relationships WHERE source_id = $1", fresh
    )
    assert [r["target_id"] for r in hosts] == [
        await ci_by_external_id(config, tenant, "vcenter", "old")
    ]


async def imports_count(config, tenant):
    return await fetchval_as(
        config.runtime.pool, tenant, "SELECT count(*) FROM imports WHERE tenant_id = $1", tenant
    )


def keyed(headers, key):
    return {**headers, **JSONL, "Idempotency-Key": key}


async def test_an_import_retried_with_its_key_answers_the_first_import_and_records_no_second_run(
    config, manager, tenant
):
    params = {"source": "vcenter"}
    first = await config.post(
        "/imports", params=params, content=jsonl(*ESTATE), headers=keyed(manager, "nightly-1")
    )
    assert first.status_code == 201, first.text
    again = await config.post(
        "/imports", params=params, content=jsonl(*ESTATE), headers=keyed(manager, "nightly-1")
    )
    assert (again.status_code, again.content) == (201, first.content)
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert (
        again.headers["location"] == first.headers["location"] == f"/imports/{first.json()['id']}"
    )
    assert await imports_count(config, tenant) == 1
    rows = await fetchval_as(
        config.runtime.pool, tenant, "SELECT count(*) FROM import_rows WHERE tenant_id = $1", tenant
    )
    assert rows == len(ESTATE)


async def test_the_same_import_key_from_another_caller_gets_an_import_of_its_own(
    config, manager, auth, tenant
):
    other = auth(tenant, "config_manager", subject="other-bot")
    body = jsonl(server("h1"))
    first = await config.post(
        "/imports", params={"source": "vcenter"}, content=body, headers=keyed(manager, "shared")
    )
    theirs = await config.post(
        "/imports", params={"source": "vcenter"}, content=body, headers=keyed(other, "shared")
    )
    assert first.status_code == theirs.status_code == 201, theirs.text
    assert theirs.json()["id"] != first.json()["id"]
    assert theirs.json()["started_by"] == "other-bot"
    assert "idempotent-replayed" not in theirs.headers
    assert await imports_count(config, tenant) == 2


async def test_an_import_key_retried_while_its_import_runs_is_refused_with_409(
    config, manager, tenant
):
    release = asyncio.Event()

    async def body():
        yield jsonl(*(server(f"r{i}") for i in range(1001)))
        await release.wait()
        yield jsonl(server("last"))

    posting = asyncio.create_task(
        config.post(
            "/imports", params={"source": "vcenter"}, content=body(), headers=keyed(manager, "k9")
        )
    )
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while not (await config.get("/imports", headers=manager)).json()["items"]:
            assert asyncio.get_running_loop().time() < deadline, "the import never started"
            await asyncio.sleep(0.05)
        retry = await config.post(
            "/imports",
            params={"source": "vcenter"},
            content=jsonl(server("last")),
            headers=keyed(manager, "k9"),
        )
        assert retry.status_code == 409, retry.text
        assert retry.headers["content-type"] == "application/problem+json"
        assert "in progress" in retry.json()["detail"]
        assert retry.json()["errors"][0]["field"] == "Idempotency-Key"
        # The use case raises a typed error; the answer keeps the import's own problem type.
        assert retry.json()["type"] == "urn:itsm:problem:import-in-progress"
    finally:
        release.set()
    first = await posting
    assert first.status_code == 201, first.text
    assert first.json()["rows"] == 1002
    after = await config.post(
        "/imports", params={"source": "vcenter"}, content=b"", headers=keyed(manager, "k9")
    )
    assert (after.status_code, after.json()) == (201, first.json())
    assert after.headers["idempotent-replayed"] == "true"
    assert await imports_count(config, tenant) == 1


async def test_a_failed_import_lets_its_key_go_so_a_retry_runs_afresh(config, tenant):
    context = RequestContext(tenant, "discovery-bot", f"corr-{uuid.uuid4().hex}")
    pool = config.runtime.pool

    async def broken():
        yield jsonl(server("f1"))
        raise import_use_cases.ImportInterrupted("the client went away")

    failing = await import_use_cases.start_import(
        ConfigUnitOfWork(pool, context),
        source="vcenter",
        format_="jsonl",
        idempotency_key="retry-me",
    )
    assert isinstance(failing, import_use_cases._Run)
    with pytest.raises(import_use_cases.ImportInterrupted):
        await import_use_cases.run_import(pool, failing, format_="jsonl", chunks=broken())

    retried = await import_use_cases.start_import(
        ConfigUnitOfWork(pool, context),
        source="vcenter",
        format_="jsonl",
        idempotency_key="retry-me",
    )
    assert isinstance(retried, import_use_cases._Run)
    assert retried.id != failing.id
    statuses = await fetch_as(
        pool,
        tenant,
        "SELECT id, status, idempotency_key FROM imports WHERE tenant_id = $1",
        tenant,
    )
    assert {(r["id"], r["status"], r["idempotency_key"]) for r in statuses} == {
        (failing.id, "failed", None),
        (retried.id, "running", "retry-me"),
    }


async def test_an_import_key_reused_for_another_source_or_a_bad_key_is_refused_with_422(
    config, manager, tenant
):
    body = jsonl(server("h1"))
    first = await config.post(
        "/imports", params={"source": "vcenter"}, content=body, headers=keyed(manager, "src")
    )
    assert first.status_code == 201, first.text
    other = await config.post(
        "/imports", params={"source": "aws"}, content=body, headers=keyed(manager, "src")
    )
    assert other.status_code == 422, other.text
    assert other.json()["errors"][0]["field"] == "Idempotency-Key"
    # Answered as the Idempotency-Key middleware answers a reused key on every other POST.
    assert (other.json()["title"], other.json()["type"]) == (
        "Idempotency-Key reused",
        "urn:itsm:problem:idempotency-key-reused",
    )
    bad = await config.post(
        "/imports", params={"source": "vcenter"}, content=body, headers=keyed(manager, "a b")
    )
    assert bad.status_code == 422, bad.text
    assert bad.json()["errors"][0]["field"] == "Idempotency-Key"
    assert await imports_count(config, tenant) == 1
