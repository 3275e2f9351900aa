"""The relay publishes exactly what was committed, in per-aggregate order, and never drops."""

import asyncio
import uuid

import pytest
from prometheus_client import CollectorRegistry

from shared import outbox
from shared.db import all_tenants_transaction, tenant_transaction
from shared.events.binding import from_kafka
from shared.events.catalogue import INCIDENT_EVENTS, IncidentCreatedV1
from shared.kafka import create_producer
from shared.metrics import PlatformMetrics
from shared.outbox import OutboxRelay
from tests.support import end_offsets, eventually, fetch_as, fetchval_as, read_topic

PAYLOAD = IncidentCreatedV1(
    title="Disk full", description="", impact=2, urgency=2, priority=3, state="new"
)


@pytest.fixture
async def producer(infra):
    p = create_producer(infra.bootstrap_servers, "test-relay")
    await p.start()
    yield p
    await p.stop()


class BrokenProducer:
    """A producer whose broker is unreachable."""

    async def send(self, *args, **kwargs):
        raise ConnectionError("broker unreachable")


def relay_for(pools, producer, cls=OutboxRelay, **kwargs):
    return cls(
        pool=pools["incident"],
        producer=producer,
        metrics=PlatformMetrics(CollectorRegistry()),
        schema="incident",
        **kwargs,
    )


async def write_events(pool, tenant, subjects, per_subject):
    """Interleave `per_subject` events for each subject, one transaction each."""
    ids = []
    for seq in range(1, per_subject + 1):
        for subject in subjects:
            async with tenant_transaction(pool, tenant) as conn:
                envelope = await outbox.append(
                    conn, PAYLOAD, subject=subject, tenant_id=tenant, sequence=seq, actor="test"
                )
            ids.append(envelope.id)
    return ids


async def drain(relay):
    while await relay.publish_batch():
        pass


async def published(infra, start, tenant, count):
    """The tenant's records on the incident topic since `start`: at least `count`, and every one
    produced up to now (the relays were drained first), so that a duplicate would be seen."""

    def mine(records):
        return [r for r in records if dict(r.headers).get("ce_tenantid") == tenant.encode()]

    end = await end_offsets(infra.bootstrap_servers, INCIDENT_EVENTS)
    records = await read_topic(
        infra.bootstrap_servers, start, until=lambda rs: len(mine(rs)) >= count, to=end
    )
    return mine(records)


async def test_relay_publishes_exactly_the_committed_events_in_aggregate_order(
    infra, pools, producer, tenant
):
    start = await end_offsets(infra.bootstrap_servers, INCIDENT_EVENTS)
    subjects = [str(uuid.uuid4()) for _ in range(3)]
    committed = await write_events(pools["incident"], tenant, subjects, per_subject=20)

    class Abort(Exception):
        pass

    aborted = []
    with pytest.raises(Abort):
        async with tenant_transaction(pools["incident"], tenant) as conn:
            for seq in range(1, 6):
                envelope = await outbox.append(
                    conn,
                    PAYLOAD,
                    subject=str(uuid.uuid4()),
                    tenant_id=tenant,
                    sequence=seq,
                    actor="test",
                )
                aborted.append(envelope.id)
            raise Abort

    await drain(relay_for(pools, producer, batch_size=7))

    records = await published(infra, start, tenant, len(committed))
    events = [from_kafka(r.value, r.headers) for r in records]
    assert sorted(e.id for e in events) == sorted(committed)
    assert not set(aborted) & {e.id for e in events}
    for subject in subjects:
        assert [e.itsmversion for e in events if e.subject == subject] == list(range(1, 21))
    assert {r.key.decode() for r in records} == set(subjects)


async def test_several_relays_at_once_keep_each_aggregates_order(infra, pools, producer, tenant):
    start = await end_offsets(infra.bootstrap_servers, INCIDENT_EVENTS)
    subjects = [str(uuid.uuid4()) for _ in range(4)]
    committed = await write_events(pools["incident"], tenant, subjects, per_subject=25)
    relays = [relay_for(pools, producer, batch_size=5) for _ in range(3)]

    async def run(relay):
        # Every replica keeps going until none finds work, as replicas polling the same table do.
        idle = 0
        while idle < 3:
            idle = idle + 1 if await relay.publish_batch() == 0 else 0
            await asyncio.sleep(0)

    await asyncio.gather(*(run(r) for r in relays))

    records = await published(infra, start, tenant, len(committed))
    events = [from_kafka(r.value, r.headers) for r in records]
    assert len(events) == len(committed)
    for subject in subjects:
        assert [e.itsmversion for e in events if e.subject == subject] == list(range(1, 26))


async def test_a_failed_publish_is_kept_and_retried_not_dropped(infra, pools, producer, tenant):
    start = await end_offsets(infra.bootstrap_servers, INCIDENT_EVENTS)
    subject = str(uuid.uuid4())
    [event_id] = await write_events(pools["incident"], tenant, [subject], per_subject=1)

    broken = relay_for(pools, BrokenProducer(), max_backoff=0.01)
    assert await broken.publish_batch() == 0
    [row] = await fetch_as(
        pools["incident"],
        tenant,
        "SELECT attempts, last_error FROM outbox WHERE event_id = $1",
        event_id,
    )
    assert row["attempts"] == 1
    assert "broker unreachable" in row["last_error"]

    # Wait until the database's clock is past the (tiny) backoff: the relay asks it, not us.
    await eventually(
        lambda: fetchval_as(
            pools["incident"],
            tenant,
            "SELECT next_attempt_at <= clock_timestamp() FROM outbox WHERE event_id = $1",
            event_id,
        ),
        lambda due: due is True,
        timeout=10,
    )
    await drain(relay_for(pools, producer))
    records = await published(infra, start, tenant, 1)
    assert [from_kafka(r.value, r.headers).id for r in records] == [event_id]
    assert (
        await fetchval_as(
            pools["incident"], tenant, "SELECT count(*) FROM outbox WHERE event_id = $1", event_id
        )
        == 0
    )


async def test_backlog_metrics_report_unpublished_rows_and_their_age(pools, producer, tenant):
    relay = relay_for(pools, producer)
    await drain(relay)
    await write_events(pools["incident"], tenant, [str(uuid.uuid4())], per_subject=3)
    rows, age = await relay.report_backlog()
    assert rows >= 3
    assert age >= 0
    assert relay.metrics.registry.get_sample_value("itsm_outbox_backlog") == rows
    await drain(relay)
    rows, age = await relay.report_backlog()
    assert (rows, age) == (0, 0)


async def test_appending_outside_a_transaction_is_refused(pools, tenant):
    async with pools["incident"].acquire() as conn:
        with pytest.raises(RuntimeError, match="transaction"):
            await outbox.append(conn, PAYLOAD, subject="x", tenant_id=tenant, sequence=1, actor="t")


async def test_an_event_waiting_for_a_retry_holds_back_later_events_of_its_aggregate(
    infra, pools, producer, tenant
):
    start = await end_offsets(infra.bootstrap_servers, INCIDENT_EVENTS)
    subject, other = str(uuid.uuid4()), str(uuid.uuid4())
    [first] = await write_events(pools["incident"], tenant, [subject], per_subject=1)

    assert await relay_for(pools, BrokenProducer(), max_backoff=3600).publish_batch() == 0
    async with tenant_transaction(pools["incident"], tenant) as conn:
        second = await outbox.append(
            conn, PAYLOAD, subject=subject, tenant_id=tenant, sequence=2, actor="t"
        )
        unrelated = await outbox.append(
            conn, PAYLOAD, subject=other, tenant_id=tenant, sequence=1, actor="t"
        )

    await drain(relay_for(pools, producer))
    records = await published(infra, start, tenant, 1)
    assert [from_kafka(r.value, r.headers).id for r in records] == [unrelated.id]
    waiting = await fetch_as(
        pools["incident"],
        tenant,
        "SELECT event_id FROM outbox WHERE message_key = $1 ORDER BY position",
        subject,
    )
    assert [r["event_id"] for r in waiting] == [first, second.id]
    await fetch_as(pools["incident"], tenant, "DELETE FROM outbox WHERE message_key = $1", subject)


async def test_a_long_backlog_waiting_for_retries_still_holds_back_later_events_of_its_aggregates(
    infra, pools, producer, tenant
):
    start = await end_offsets(infra.bootstrap_servers, INCIDENT_EVENTS)
    subject, other = str(uuid.uuid4()), str(uuid.uuid4())
    backlog = [str(uuid.uuid4()) for _ in range(5)]
    # Six rows wait for a retry, the aggregate's last: more than twice the relay's batch, so
    # the relay looks the claimed aggregates up by key.
    await write_events(pools["incident"], tenant, [*backlog, subject], per_subject=1)
    assert await relay_for(pools, BrokenProducer(), max_backoff=3600).publish_batch() == 0
    async with tenant_transaction(pools["incident"], tenant) as conn:
        await outbox.append(conn, PAYLOAD, subject=subject, tenant_id=tenant, sequence=2, actor="t")
        unrelated = await outbox.append(
            conn, PAYLOAD, subject=other, tenant_id=tenant, sequence=1, actor="t"
        )

    await drain(relay_for(pools, producer, batch_size=2))
    records = await published(infra, start, tenant, 1)
    assert [from_kafka(r.value, r.headers).id for r in records] == [unrelated.id]
    held = await fetch_as(
        pools["incident"],
        tenant,
        "SELECT message_key, attempts FROM outbox WHERE message_key = $1 ORDER BY position",
        subject,
    )
    assert [(r["message_key"], r["attempts"]) for r in held] == [(subject, 1), (subject, 0)]
    await fetch_as(
        pools["incident"],
        tenant,
        "DELETE FROM outbox WHERE message_key = ANY($1::text[])",
        [subject, *backlog],
    )


async def test_published_rows_are_deleted_by_address_whatever_plan_the_statement_caches(pools):
    # A prepared statement's generic plan knows neither the array nor the backlog: by position,
    # it scanned the whole outbox once per batch (seconds per batch behind a long backlog).
    async with all_tenants_transaction(pools["incident"]) as conn:
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        statement = outbox.relay._MARK_PUBLISHED.replace("$1::tid[]", "$1")
        await conn.execute(f"PREPARE mark_published(tid[]) AS {statement}")
        try:
            plan = [r[0] for r in await conn.fetch("EXPLAIN EXECUTE mark_published('{}')")]
        finally:
            await conn.execute("DEALLOCATE mark_published")
    assert any("Tid Scan on outbox" in line for line in plan), plan
    assert not any("Seq Scan" in line for line in plan), plan
