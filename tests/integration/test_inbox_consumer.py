"""Consumers apply each event once, dead-letter what they cannot read, and keep going."""

import uuid

import pytest
from aiokafka import AIOKafkaProducer
from cloudevents.core.bindings.kafka import KafkaMessage, from_binary_event
from prometheus_client import CollectorRegistry

from shared import outbox
from shared.db import tenant_transaction
from shared.events.binding import to_kafka
from shared.events.catalogue import INCIDENT_EVENTS, IncidentCreatedV1
from shared.kafka import DEAD_LETTER_TOPIC, create_producer
from shared.metrics import PlatformMetrics
from shared.outbox import OutboxRelay
from tests.support import (
    end_offsets,
    eventually,
    fetch_as,
    fetchval_as,
    header,
    incident_event,
    read_topic,
    sample_value,
    send_event,
)

PAYLOAD = IncidentCreatedV1(
    title="VPN flapping", description="", impact=1, urgency=1, priority=1, state="new"
)


@pytest.fixture
async def raw_producer(infra):
    producer = AIOKafkaProducer(bootstrap_servers=infra.bootstrap_servers)
    await producer.start()
    yield producer
    await producer.stop()


async def ledger_rows(pools, tenant, subject=None):
    return await fetch_as(
        pools["reporting"],
        tenant,
        "SELECT event_id, type, subject, version FROM ledger"
        " WHERE tenant_id = $1 AND ($2::text IS NULL OR subject = $2) ORDER BY position",
        tenant,
        subject,
    )


class CrashBeforeMark(Exception):
    pass


class RelayKilledAfterPublish(OutboxRelay):
    """Publishes, then dies before the rows are marked: the transaction never commits."""

    async def _mark_published(self, conn, positions):
        raise CrashBeforeMark


async def test_relay_killed_after_publish_republishes_and_the_inbox_drops_the_duplicate(
    infra, pools, tenant, start_runtime
):
    start = await end_offsets(infra.bootstrap_servers, INCIDENT_EVENTS)
    subject = str(uuid.uuid4())
    async with tenant_transaction(pools["incident"], tenant) as conn:
        envelope = await outbox.append(
            conn, PAYLOAD, subject=subject, tenant_id=tenant, sequence=1, actor="t"
        )

    producer = create_producer(infra.bootstrap_servers, "test-crashing-relay")
    await producer.start()
    try:
        crashing = RelayKilledAfterPublish(
            pool=pools["incident"],
            producer=producer,
            schema="incident",
            metrics=PlatformMetrics(CollectorRegistry()),
        )
        with pytest.raises(CrashBeforeMark):
            await crashing.publish_batch()
        # The row survived the crash, so a restarted relay publishes it again.
        assert (
            await fetchval_as(
                pools["incident"],
                tenant,
                "SELECT count(*) FROM outbox WHERE event_id = $1",
                envelope.id,
            )
            == 1
        )
        restarted = OutboxRelay(
            pool=pools["incident"],
            producer=producer,
            schema="incident",
            metrics=PlatformMetrics(CollectorRegistry()),
        )
        while await restarted.publish_batch():
            pass
    finally:
        await producer.stop()

    copies = await read_topic(
        infra.bootstrap_servers,
        start,
        until=lambda rs: sum(header(r, "ce_id") == str(envelope.id) for r in rs) >= 2,
    )
    assert sum(header(r, "ce_id") == str(envelope.id) for r in copies) == 2

    reporting = await start_runtime("reporting")
    await eventually(lambda: ledger_rows(pools, tenant, subject), lambda rows: len(rows) >= 1)

    async def duplicates():
        return sample_value(
            reporting.registry, "itsm_inbox_duplicates_total", {"consumer": "reporting-ledger"}
        )

    await eventually(duplicates, lambda n: n >= 1)
    rows = await ledger_rows(pools, tenant, subject)
    assert [r["event_id"] for r in rows] == [envelope.id]


async def test_unreadable_and_unknown_messages_are_dead_lettered_and_the_next_good_one_is_applied(
    infra, pools, tenant, raw_producer, start_runtime
):
    dlq_start = await end_offsets(infra.bootstrap_servers, DEAD_LETTER_TOPIC)
    reporting = await start_runtime("reporting")

    garbage_key = f"garbage-{tenant}".encode()
    await raw_producer.send_and_wait(INCIDENT_EVENTS, b"\x00not an event", key=garbage_key)

    unknown = incident_event(tenant, type="itsm.incident.teleported.v1", to="mars")
    await send_event(raw_producer, unknown)
    good = incident_event(tenant)
    await send_event(raw_producer, good)

    rows = await eventually(lambda: ledger_rows(pools, tenant), lambda rows: len(rows) >= 1)
    assert [r["event_id"] for r in rows] == [good.id]

    def ours(records):
        return [r for r in records if r.key in (garbage_key, unknown.subject.encode())]

    dead = ours(
        await read_topic(infra.bootstrap_servers, dlq_start, until=lambda rs: len(ours(rs)) >= 2)
    )
    reasons = {r.key: header(r, "dlq_reason") for r in dead}
    assert reasons == {
        garbage_key: "not-a-cloudevent",
        unknown.subject.encode(): "unknown-event-type",
    }
    for record in dead:
        assert header(record, "dlq_consumer") == "reporting-ledger"
        assert header(record, "dlq_source_topic") == INCIDENT_EVENTS
        assert header(record, "dlq_source_offset").isdigit()
        assert header(record, "dlq_detail")
    assert [r.value for r in dead if r.key == garbage_key] == [b"\x00not an event"]
    labels = {"consumer": "reporting-ledger", "reason": "unknown-event-type"}
    assert sample_value(reporting.registry, "itsm_dead_lettered_total", labels) >= 1


async def test_the_official_cloudevents_sdk_reads_our_messages_off_the_topic(
    infra, pools, tenant, start_runtime
):
    start = await end_offsets(infra.bootstrap_servers, INCIDENT_EVENTS)
    subject = str(uuid.uuid4())
    async with tenant_transaction(pools["incident"], tenant) as conn:
        envelope = await outbox.append(
            conn,
            PAYLOAD,
            subject=subject,
            tenant_id=tenant,
            sequence=1,
            actor="alice",
            correlation_id="corr-7",
        )
    await start_runtime("incident")  # its relay publishes the row

    [record] = [
        r
        for r in await read_topic(
            infra.bootstrap_servers,
            start,
            until=lambda rs: any(header(r, "ce_id") == str(envelope.id) for r in rs),
        )
        if header(r, "ce_id") == str(envelope.id)
    ]
    event = from_binary_event(
        KafkaMessage(headers=dict(record.headers), key=record.key, value=record.value)
    )
    assert event.get_specversion() == "1.0"
    assert event.get_id() == str(envelope.id)
    assert event.get_type() == "itsm.incident.created.v1"
    assert event.get_source() == "itsm/incident"
    assert event.get_subject() == subject
    assert event.get_time() == envelope.time
    assert event.get_datacontenttype() == "application/json"
    assert event.get_extension("tenantid") == tenant
    assert event.get_extension("correlationid") == "corr-7"
    assert event.get_extension("actor") == "alice"
    # The aggregate version in our own extension; no `sequence` to mislead a generic consumer.
    assert str(event.get_extension("itsmversion")) == "1"
    assert event.get_extension("sequence") is None
    assert event.get_data()["title"] == "VPN flapping"


async def test_a_failing_event_is_isolated_by_the_same_batch_handler_in_batches_of_one(
    infra, pools, tenant
):
    """The batch fails as a whole; the consumer redoes it with the one batch handler, an event
    at a time, dead-letters only the event that fails and applies the rest."""
    from aiokafka import ConsumerRecord

    from shared.inbox import EventConsumer

    def record(offset, title):
        envelope = incident_event(tenant, title=title)
        wire = to_kafka(envelope)
        return envelope, ConsumerRecord(
            INCIDENT_EVENTS,
            0,
            offset,
            0,
            0,
            wire.key,
            wire.value,
            None,
            len(wire.key),
            len(wire.value),
            wire.headers,
        )

    batch = [record(1, "fine"), record(2, "poison"), record(3, "also fine")]

    calls = []

    async def handler(conn, events):
        calls.append([e.payload.title for e in events])
        if any(e.payload.title == "poison" for e in events):
            raise ValueError("cannot digest poison")

    committed = []

    async def remember(applied):
        committed.extend(e.envelope.id for e in applied)

    producer = create_producer(infra.bootstrap_servers, "test-poison")
    await producer.start()
    dlq_start = await end_offsets(infra.bootstrap_servers, DEAD_LETTER_TOPIC)
    try:
        consumer = EventConsumer(
            name=f"test-poison-{tenant}",
            handles=(IncidentCreatedV1,),
            handler=handler,
            pool=pools["reporting"],
            producer=producer,
            metrics=PlatformMetrics(CollectorRegistry()),
            after_commit=remember,
        )
        await consumer.process([r for _, r in batch], None)
    finally:
        await producer.stop()

    fine, poison, also_fine = (e for e, _ in batch)
    assert calls == [["fine", "poison", "also fine"], ["fine"], ["poison"], ["also fine"]]
    assert committed == [fine.id, also_fine.id]
    inboxed = await fetch_as(
        pools["reporting"], tenant, "SELECT event_id FROM inbox WHERE consumer = $1", consumer.name
    )
    assert {r["event_id"] for r in inboxed} == {fine.id, also_fine.id}
    dead = [
        r
        for r in await read_topic(
            infra.bootstrap_servers,
            dlq_start,
            until=lambda rs: any(header(r, "ce_id") == str(poison.id) for r in rs),
        )
        if header(r, "ce_id") == str(poison.id)
    ]
    assert [header(r, "dlq_reason") for r in dead] == ["handler-failed"]
    assert "cannot digest poison" in header(dead[0], "dlq_detail")


async def test_a_consumer_subscribed_by_class_skips_other_types_of_its_topic(infra, pools, tenant):
    from aiokafka import ConsumerRecord

    from shared.inbox import EventConsumer

    def record(offset, envelope):
        wire = to_kafka(envelope)
        return ConsumerRecord(
            INCIDENT_EVENTS,
            0,
            offset,
            0,
            0,
            wire.key,
            wire.value,
            None,
            len(wire.key),
            len(wire.value),
            wire.headers,
        )

    created = incident_event(tenant)
    noted = incident_event(tenant, type="itsm.incident.work_note_added.v1", note="looking")
    seen = []

    async def handler(conn, events):
        seen.extend(e.envelope.id for e in events)

    producer = create_producer(infra.bootstrap_servers, "test-by-class")
    await producer.start()
    try:
        metrics = PlatformMetrics(CollectorRegistry())
        consumer = EventConsumer(
            name=f"test-by-class-{tenant}",
            handles=(IncidentCreatedV1,),
            handler=handler,
            pool=pools["reporting"],
            producer=producer,
            metrics=metrics,
        )
        assert consumer.topics == (INCIDENT_EVENTS,)
        await consumer.process([record(1, noted), record(2, created)], None)
    finally:
        await producer.stop()

    assert seen == [created.id]
    inboxed = await fetch_as(
        pools["reporting"], tenant, "SELECT event_id FROM inbox WHERE consumer = $1", consumer.name
    )
    assert [r["event_id"] for r in inboxed] == [created.id]
    # Skipped, not dead-lettered: no dead letter counted, and the consumer counts only `created`.
    assert sample_value(metrics.registry, "itsm_dead_lettered_total") == 0
    assert sample_value(metrics.registry, "itsm_consumer_events_total") == 1
