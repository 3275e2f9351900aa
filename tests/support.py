"""Helpers for tests that read real topics and wait for asynchronous effects."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from shared.db import tenant_transaction
from shared.events.binding import to_kafka
from shared.events.envelope import Envelope, new_envelope

T = TypeVar("T")
E = TypeVar("E", bound=BaseException)


async def end_offsets(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    """Each partition's next offset: read from here to see only what is produced later."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = [
                TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()
            ]
        return dict(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()


async def read_topic(
    bootstrap: str,
    start: dict[TopicPartition, int],
    *,
    until: Callable[[list[ConsumerRecord[bytes, bytes]]], bool] | None = None,
    timeout: float = 30.0,
    settle: float = 0.0,
    to: dict[TopicPartition, int] | None = None,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Records from the given offsets until `until(records)` holds, then `settle` seconds more.

    With `to` (end offsets taken once the writers are done, e.g. after the outbox drained),
    reading also goes on until every partition is read up to them: all that was produced by
    then is in the result, duplicates included, without waiting a fixed quiet period. `settle`
    (such a quiet period) is left for a case with no end to read to; no test uses it now.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        consumer.assign(list(start))
        for tp, offset in start.items():
            consumer.seek(tp, offset)
        deadline = time.monotonic() + timeout
        settled_at: float | None = None
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for partition_records in batch.values():
                records.extend(partition_records)
            done = until is None or until(records)
            if settled_at is None and done and (to is None or await _read_up_to(consumer, to)):
                settled_at = time.monotonic() + settle
            if settled_at is not None and time.monotonic() >= settled_at:
                return records
        raise AssertionError(f"condition not met within {timeout}s; read {len(records)} records")
    finally:
        await consumer.stop()


async def _read_up_to(consumer: AIOKafkaConsumer, end: dict[TopicPartition, int]) -> bool:
    for tp, offset in end.items():
        if await consumer.position(tp) < offset:
            return False
    return True


async def eventually(
    probe: Callable[[], Awaitable[T]], check: Callable[[T], bool], timeout: float = 30.0
) -> T:
    """Poll `probe` until `check` accepts its value; fail with the last value after the timeout."""
    deadline = time.monotonic() + timeout
    value = await probe()
    while not check(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"still not as expected after {timeout}s: {value!r}")
        await asyncio.sleep(0.2)
        value = await probe()
    return value


def incident_event(tenant: str, *, type: str = "itsm.incident.created.v1", **data: Any) -> Envelope:
    """An incident event as the incident service would send it (data overridable)."""
    payload = {
        "title": "Disk full",
        "description": "",
        "impact": 2,
        "urgency": 2,
        "priority": 3,
        "state": "new",
    }
    return new_envelope(
        source="itsm/incident",
        type=type,
        subject=str(uuid.uuid4()),
        tenantid=tenant,
        itsmversion=1,
        actor="t",
        data={**payload, **data} if type.endswith("created.v1") else data,
    )


async def send_event(
    producer: Any,
    envelope: Envelope,
    topic: str = "itsm.incident.events",
    *,
    legacy_version: bool = False,
) -> None:
    """Put an event on a topic with the CloudEvents binding, bypassing the outbox.

    `legacy_version`: as written before `itsmversion`, the version in `ce_sequence` instead.
    """
    wire = to_kafka(envelope)
    headers = wire.headers
    if legacy_version:
        headers = [("ce_sequence" if k == "ce_itsmversion" else k, v) for k, v in headers]
    await producer.send_and_wait(topic, wire.value, key=wire.key, headers=headers)


def header(record: ConsumerRecord[bytes, bytes], name: str) -> str | None:
    """A header's value as text, or None."""
    for key, value in record.headers:
        if key == name:
            return value.decode()
    return None


def sample_value(registry: Any, name: str, labels: dict[str, str] | None = None) -> float:
    """The sum of a sample over the label values not given (0 when absent)."""
    wanted = labels or {}
    return float(
        sum(
            sample.value
            for metric in registry.collect()
            for sample in metric.samples
            if sample.name == name and all(sample.labels.get(k) == v for k, v in wanted.items())
        )
    )


async def fetch_as(pool: asyncpg.Pool, tenant: str, query: str, *args: Any) -> list[Any]:
    """Rows of a query run as the tenant (row-level security shows nothing without one)."""
    async with tenant_transaction(pool, tenant) as conn:
        return list(await conn.fetch(query, *args))


async def fetchval_as(pool: asyncpg.Pool, tenant: str, query: str, *args: Any) -> Any:
    """The first value of a query run as the tenant."""
    async with tenant_transaction(pool, tenant) as conn:
        return await conn.fetchval(query, *args)


async def clock_passes(instant: datetime, timeout: float = 5.0) -> None:
    """Wait until the clock the services stamp records with reads later than `instant`.

    Whatever is written next is then stamped after it: a test that needs an instant between two
    writes takes the first write's stored timestamp and waits for this, instead of sleeping.
    """

    async def now() -> datetime:
        return datetime.now(UTC)

    await eventually(now, lambda current: current > instant, timeout)


async def published_so_far(
    bootstrap: str, topic: str, pool: asyncpg.Pool, tenant: str, timeout: float = 30.0
) -> dict[TopicPartition, int]:
    """The topic's end offsets once none of the tenant's events waits in the service's outbox.

    The relay deletes a row once Kafka acknowledged it, so by then every event the tenant's
    committed transactions wrote is below these offsets: `read_topic(..., to=these)` sees them
    all, duplicates included, with no quiet period to wait out.
    """
    await eventually(
        lambda: fetchval_as(
            pool, tenant, "SELECT count(*) FROM outbox WHERE tenant_id = $1", tenant
        ),
        lambda waiting: waiting == 0,
        timeout,
    )
    return await end_offsets(bootstrap, topic)


def ledger_received(envelope: Envelope, offset: int, topic: str = "itsm.incident.events") -> Any:
    """The event as the reporting service's ledger consumer hands it to `ledger.append_many`
    (its payload parsed by the catalogue, its Kafka record as the relay's binding writes it)."""
    from shared.events.binding import parse_payload
    from shared.inbox import ReceivedEvent

    wire = to_kafka(envelope)
    record = ConsumerRecord(topic, 0, offset, 0, 0, wire.key, wire.value, None, 0, 0, wire.headers)
    return ReceivedEvent(envelope, parse_payload(envelope), record)


async def refusal(
    attempt: Callable[[], Awaitable[object]], error: type[E], limit_s: float, allowed: str
) -> E:
    """The `error` that `attempt()` is refused with; success (failing with `allowed`) or no
    answer within `limit_s` seconds fails the test."""
    try:
        async with asyncio.timeout(limit_s):
            await attempt()
    except error as refused:
        return refused
    except TimeoutError:
        pytest.fail(f"no answer after {limit_s} s instead of a refusal")
    pytest.fail(allowed)
