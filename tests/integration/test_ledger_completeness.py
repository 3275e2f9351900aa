"""Completeness of the ledger and the entity timeline, on the real broker and database.

Events come from a raw producer (the CloudEvents binding, as the services' relays send them);
the reporting service records them, its completeness task finds gaps, announces each on its
outbox (the event comes back into the ledger) and indexes the references of the timeline.
"""

import uuid
from datetime import UTC, datetime

from services.reporting.adapters import ledger
from services.reporting.application.completeness import index_round
from shared.db import all_tenants_transaction, set_tenant, tenant_transaction
from shared.events.envelope import new_envelope
from tests.support import eventually, fetch_as, ledger_received, sample_value, send_event

INTERVAL = {"completeness_interval_seconds": 0.2}


def incident_updated(tenant, subject, version):
    return new_envelope(
        source="itsm/incident",
        type="itsm.incident.updated.v1",
        subject=subject,
        tenantid=tenant,
        itsmversion=version,
        actor="alice",
        data={
            "changes": {"urgency": {"from": 2, "to": version % 3 + 1}},
            "priority": 3,
            "state": "in_progress",
        },
    )


async def send_versions(producer, tenant, subject, versions):
    for version in versions:
        await send_event(producer, incident_updated(tenant, subject, version))


async def gaps(client, auth, tenant, **params):
    response = await client.get("/ledger/gaps", params=params, headers=auth(tenant, "auditor"))
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def ledger_types(pools, tenant):
    rows = await fetch_as(pools["reporting"], tenant, "SELECT type, data FROM ledger")
    return [(r["type"], r["data"]) for r in rows]


async def indexed_up_to_now(pools, tenant):
    """Wait until the task's watermark passes every row of the tenant recorded so far."""
    last = await fetch_as(pools["reporting"], tenant, "SELECT max(position) AS p FROM ledger")

    async def watermark():
        async with all_tenants_transaction(pools["reporting"]) as conn:
            return await conn.fetchval("SELECT watermark FROM ledger_completeness")

    await eventually(watermark, lambda w: w >= (last[0]["p"] or 0))


async def test_a_skipped_version_is_a_gap_announced_counted_and_closed_when_it_arrives(
    service_client, pools, producer, auth, tenant
):
    reporting = await service_client("reporting", **INTERVAL)
    registry = reporting.runtime.registry
    before = sample_value(registry, "itsm_ledger_gaps_detected_total", {"kind": "version_gap"})
    subject = str(uuid.uuid4())
    await send_versions(producer, tenant, subject, [1, 2, 5])

    [gap] = await eventually(lambda: gaps(reporting, auth, tenant), lambda items: len(items) == 1)
    assert gap["aggregate"] == subject and gap["kind"] == "version_gap"
    assert gap["missing_versions"] == [3, 4] and gap["last_seen_version"] == 2
    assert gap["closed_at"] is None
    after = sample_value(registry, "itsm_ledger_gaps_detected_total", {"kind": "version_gap"})
    assert after == before + 1
    assert sample_value(registry, "itsm_ledger_open_gaps") >= 1
    # Announced through the outbox: the event travels back into the ledger like any other.
    recorded = await eventually(
        lambda: ledger_types(pools, tenant),
        lambda rows: any(t == "itsm.reporting.ledger.gap_detected.v1" for t, _ in rows),
    )
    [(_, data)] = [r for r in recorded if r[0] == "itsm.reporting.ledger.gap_detected.v1"]
    assert data["aggregate"] == subject and data["missing_versions"] == [3, 4]

    # The missing versions arrive late (a relay catching up): the gap closes.
    await send_versions(producer, tenant, subject, [4, 3])
    [closed] = await eventually(
        lambda: gaps(reporting, auth, tenant, state="closed"), lambda items: len(items) == 1
    )
    assert closed["still_missing"] == [] and closed["closed_at"] is not None
    assert await gaps(reporting, auth, tenant, state="open") == []


async def test_an_aggregate_first_seen_above_version_one_is_a_missing_event(
    service_client, pools, producer, auth, tenant
):
    reporting = await service_client("reporting", **INTERVAL)
    subject = str(uuid.uuid4())
    await send_versions(producer, tenant, subject, [3, 4])
    [gap] = await eventually(lambda: gaps(reporting, auth, tenant), lambda items: len(items) == 1)
    assert gap["kind"] == "missing_event" and gap["missing_versions"] == [1, 2]
    assert gap["last_seen_version"] is None and gap["seen_version"] == 3


async def test_a_relay_publishing_duplicates_and_older_versions_again_raises_no_false_gap(
    service_client, pools, producer, auth, tenant
):
    reporting = await service_client("reporting", **INTERVAL)
    subject = str(uuid.uuid4())
    first = [incident_updated(tenant, subject, v) for v in (1, 2, 3)]
    for envelope in first:
        await send_event(producer, envelope)
    # A relay restarted before marking its rows sent publishes them again (same ids), and one
    # that re-encoded them publishes v2 and v3 under new ids; then the aggregate goes on.
    for envelope in first[1:]:
        await send_event(producer, envelope)
    await send_versions(producer, tenant, subject, [2, 3, 4])
    # Other events of families that do not number versions one by one: never checked.
    await send_event(
        producer,
        new_envelope(
            source="itsm/incident",
            type="itsm.incident.settings_changed.v1",
            subject="settings",
            tenantid=tenant,
            itsmversion=7,
            actor="alice",
            data={"settings": {}, "version": 7},
        ),
    )
    await eventually(
        lambda: fetch_as(pools["reporting"], tenant, "SELECT 1 FROM ledger"),
        lambda rows: len(rows) >= 7,
    )
    await indexed_up_to_now(pools, tenant)
    assert await gaps(reporting, auth, tenant) == []
    versions = await fetch_as(
        pools["reporting"], tenant, "SELECT subject, last_version FROM ledger_aggregate_versions"
    )
    assert [(r["subject"], r["last_version"]) for r in versions] == [(subject, 4)]


async def test_the_timeline_of_a_record_holds_its_events_and_those_of_records_naming_it(
    service_client, pools, producer, auth, tenant
):
    reporting = await service_client("reporting", **INTERVAL)
    incident, problem, ci, change, other = (str(uuid.uuid4()) for _ in range(5))

    def envelope(source, type, subject, version, data):
        return new_envelope(
            source=source,
            type=type,
            subject=subject,
            tenantid=tenant,
            itsmversion=version,
            actor="alice",
            data=data,
        )

    sent = [
        envelope(
            "itsm/incident",
            "itsm.incident.created.v1",
            incident,
            1,
            {
                "title": "Disk full",
                "description": "",
                "impact": 2,
                "urgency": 2,
                "priority": 3,
                "state": "new",
                "ci_id": ci,
            },
        ),
        envelope(
            "itsm/incident",
            "itsm.incident.problem.incident_linked.v1",
            problem,
            2,
            {"incident_id": incident},
        ),
        envelope(
            "itsm/change",
            "itsm.change.implemented.v1",
            change,
            1,
            {
                "change_id": change,
                "title": "patch",
                "ci_ids": [ci],
                "implemented_at": datetime.now(UTC).isoformat(),
            },
        ),
        incident_updated(tenant, incident, 2),
        incident_updated(tenant, other, 1),  # another record: not on the timeline
    ]
    topics = {"itsm/incident": "itsm.incident.events", "itsm/change": "itsm.change.events"}
    for item in sent:
        await send_event(producer, item, topics[item.source])
    await eventually(
        lambda: fetch_as(pools["reporting"], tenant, "SELECT 1 FROM ledger"),
        lambda rows: len(rows) >= len(sent),
    )
    await indexed_up_to_now(pools, tenant)
    headers = auth(tenant, "auditor")

    response = await reporting.get(f"/ledger/timeline/{incident}", headers=headers)
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    # Events of several partitions: the ledger's order, not the order they were sent in.
    about = {i["event_id"]: i["about_entity"] for i in items}
    assert about == {str(sent[0].id): True, str(sent[1].id): False, str(sent[3].id): True}
    positions = [i["position"] for i in items]
    assert positions == sorted(positions)
    # Each entry carries its index in the tenant's log: the one its proofs are asked by.
    indexes = await fetch_as(
        pools["reporting"], tenant, "SELECT event_id::text, leaf_index FROM ledger"
    )
    leaf = {r["event_id"]: r["leaf_index"] for r in indexes}
    assert [i["leaf_index"] for i in items] == [leaf[i["event_id"]] for i in items]
    assert all(isinstance(i["leaf_index"], int) for i in items)

    # A CI's timeline: the incident on it and the change implemented on it.
    response = await reporting.get(f"/ledger/timeline/{ci.upper()}", headers=headers)
    assert {i["event_id"] for i in response.json()["items"]} == {str(sent[0].id), str(sent[2].id)}

    # Cursor pagination, one entry a page, walks the same timeline.
    walked, cursor = [], None
    while True:
        params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        page = (
            await reporting.get(f"/ledger/timeline/{incident}", params=params, headers=headers)
        ).json()
        walked += [i["event_id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert walked == [i["event_id"] for i in items]

    # Another tenant sees nothing of it; a role without ledger:read is refused.
    stranger = f"t-{uuid.uuid4().hex[:12]}"
    response = await reporting.get(
        f"/ledger/timeline/{incident}", headers=auth(stranger, "auditor")
    )
    assert response.status_code == 200 and response.json()["items"] == []
    response = await reporting.get(f"/ledger/timeline/{incident}", headers=auth(tenant, "agent"))
    assert response.status_code == 403


async def test_a_foreign_cursor_on_the_timeline_is_refused_naming_it(service_client, auth, tenant):
    reporting = await service_client("reporting", **INTERVAL)
    response = await reporting.get(
        f"/ledger/timeline/{uuid.uuid4()}",
        params={"cursor": "nope"},
        headers=auth(tenant, "auditor"),
    )
    assert response.status_code == 422
    assert "cursor" in response.text


async def test_a_row_committed_after_a_later_position_is_indexed_all_the_same(pools, tenant):
    """Positions come from a sequence: a consumer replica's transaction can take a position,
    then commit after another replica's later one (of another tenant: one tenant's appends
    take turns on its log's head). The task must not step past it."""
    pool = pools["reporting"]
    other = f"t-{uuid.uuid4().hex[:12]}"
    first, second = str(uuid.uuid4()), str(uuid.uuid4())

    async def state():
        async with all_tenants_transaction(pool) as conn:
            return await conn.fetchrow("SELECT watermark, horizon FROM ledger_completeness")

    async with pool.acquire() as slow:
        transaction = slow.transaction()
        await transaction.start()
        await set_tenant(slow, tenant)
        await slow.fetchval("SELECT pg_current_xact_id()")  # as the inbox row gives it one
        await ledger.append_many(slow, [ledger_received(incident_updated(tenant, first, 1), 1)])
        held = await slow.fetchval("SELECT max(position) FROM ledger")
        async with tenant_transaction(pool, other) as conn:
            await ledger.append_many(conn, [ledger_received(incident_updated(other, second, 1), 2)])
            later = await conn.fetchval("SELECT max(position) FROM ledger")
        assert later > held
        for _ in range(4):
            await index_round(pool)
        assert (await state())["watermark"] < held
        await transaction.commit()

    async def indexed():
        await index_round(pool)
        async with all_tenants_transaction(pool) as conn:
            return await conn.fetch(
                "SELECT entity, position FROM ledger_references WHERE entity = ANY($1)",
                [first, second],
            )

    rows = await eventually(indexed, lambda rows: len(rows) == 2, timeout=10)
    assert {(r["entity"], r["position"]) for r in rows} == {(first, held), (second, later)}
