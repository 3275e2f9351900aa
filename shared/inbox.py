"""Idempotent event consumers: inbox row and effect in one transaction, offsets after commit."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import Consumer, KafkaMessage

from shared.db import Connection, set_tenant
from shared.events.binding import DecodeError, from_kafka, parse_payload
from shared.events.catalogue import EventPayload, spec_of_class
from shared.events.envelope import Envelope
from shared.kafka import DEAD_LETTER_TOPIC
from shared.logging import bound_correlation_id
from shared.metrics import PlatformMetrics

log = logging.getLogger(__name__)

# Errors that say "try again later", not "this message is bad": the whole batch is redelivered.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.TransactionRollbackError,
    asyncpg.OperatorInterventionError,
    asyncpg.InsufficientResourcesError,
    asyncpg.CannotConnectNowError,
    # A session PostgreSQL ended mid-transaction, as asyncpg reports it (asyncpg#784).
    asyncpg.exceptions.InternalClientError,
)


class _HandlerFailedError(Exception):
    """A handler failed in a batch applied without savepoints."""


@dataclass(frozen=True)
class ReceivedEvent:
    """A decoded, validated event and where it was read from."""

    envelope: Envelope
    payload: EventPayload
    record: ConsumerRecord[bytes, bytes]


# A consumer's one write shape: apply one tenant's events, in arrival order, inside the batch's
# transaction. Isolating a failing event calls the same handler with a batch of that event alone.
BatchHandler = Callable[[Connection, Sequence[ReceivedEvent]], Awaitable[None]]


@dataclass(frozen=True)
class DeadLetter:
    """A message the consumer gives up on, and why."""

    record: ConsumerRecord[bytes, bytes]
    reason: str
    detail: str


class EventConsumer:
    """Consumes topics in batches into one transaction each; safe to run as N replicas.

    It subscribes by catalogue class (`handles=(CiCreatedV1, ...)`: their topics, only their
    types) or to whole topics (`topics=(INCIDENT_EVENTS, ...)`: every catalogued type on them);
    events of other types on its topics are skipped, neither applied nor kept in the inbox.
    `accepts` narrows its types further by content (a CI write only when it names a change):
    an event it refuses is skipped the same way.
    """

    def __init__(
        self,
        *,
        name: str,
        handler: BatchHandler,
        pool: asyncpg.Pool,
        producer: AIOKafkaProducer,
        metrics: PlatformMetrics,
        handles: Iterable[type[EventPayload]] = (),
        topics: Iterable[str] = (),
        max_records: int = 1000,
        retry_delay: float = 1.0,
        after_commit: Callable[[Sequence[ReceivedEvent]], Awaitable[None]] | None = None,
        accepts: Callable[[EventPayload], bool] | None = None,
    ) -> None:
        classes = tuple(handles)
        whole = tuple(dict.fromkeys(topics))
        if bool(classes) == bool(whole):
            raise ValueError(f"{name}: give either the event classes it handles or whole topics")
        specs = [spec_of_class(model) for model in classes]
        self.name = name
        # None: every event on the topics.
        self.types: frozenset[str] | None = frozenset(s.type for s in specs) if specs else None
        self.topics = whole or tuple(dict.fromkeys(s.topic for s in specs))
        self.handler = handler
        self.pool = pool
        self.producer = producer
        self.metrics = metrics
        self.max_records = max_records
        self.retry_delay = retry_delay
        self.after_commit = after_commit
        self.accepts = accepts

    def subscribe(self, broker: KafkaBroker) -> None:
        """Attach this consumer to a broker as a batch subscriber in its own consumer group."""

        async def on_batch(message: KafkaMessage, consumer: Consumer) -> None:
            records: tuple[ConsumerRecord[bytes, bytes], ...] = message.raw_message
            await self.process(records, consumer)

        broker.subscriber(
            *self.topics,
            group_id=self.name,
            batch=True,
            max_records=self.max_records,
            auto_offset_reset="earliest",
            # Offsets are committed only after the database commit; an error rewinds the batch.
            ack_policy=AckPolicy.NACK_ON_ERROR,
            parser=_parse_leaving_headers_undecoded,
            decoder=_undecoded,
            title=self.name,
        )(on_batch)

    def handles_type(self, event_type: str) -> bool:
        """Whether this consumer applies events of this type (others on its topics are skipped)."""
        return self.types is None or event_type in self.types

    async def process(
        self, records: Sequence[ConsumerRecord[bytes, bytes]], consumer: AIOKafkaConsumer | None
    ) -> None:
        """Apply a batch exactly once in effect; dead-letter what cannot be applied."""
        events: list[ReceivedEvent] = []
        dead: list[DeadLetter] = []
        for record in records:
            try:
                envelope = from_kafka(record.value, record.headers)
                payload = parse_payload(envelope)
            except DecodeError as exc:
                dead.append(DeadLetter(record, exc.reason, exc.detail))
                continue
            if self.handles_type(envelope.type) and (self.accepts is None or self.accepts(payload)):
                events.append(ReceivedEvent(envelope, payload, record))
        try:
            applied, duplicates = await self._apply(events, dead)
        except TRANSIENT_ERRORS:
            log.warning("batch failed on a transient error; it will be redelivered", exc_info=True)
            await asyncio.sleep(self.retry_delay)
            raise
        if self.after_commit is not None:
            await self.after_commit(applied)
        for event in applied:
            tenant = self.metrics.tenant(event.envelope.tenantid)
            self.metrics.consumed.labels(self.name, event.envelope.type, tenant).inc()
        if duplicates:
            self.metrics.inbox_duplicates.labels(self.name).inc(duplicates)
        for letter in dead:
            self.metrics.dead_lettered.labels(self.name, letter.reason).inc()
        if consumer is not None:
            self._report_lag(records, consumer)

    async def _apply(
        self, events: list[ReceivedEvent], dead: list[DeadLetter]
    ) -> tuple[list[ReceivedEvent], int]:
        """Apply the batch in one transaction; if a handler fails, redo it event by event."""
        try:
            return await self._apply_batch(events, dead, isolate=False)
        except _HandlerFailedError:
            # Rare: pay for a savepoint per event only when a batch holds a failing event.
            return await self._apply_batch(events, dead, isolate=True)

    async def _apply_batch(
        self, events: list[ReceivedEvent], dead: list[DeadLetter], *, isolate: bool
    ) -> tuple[list[ReceivedEvent], int]:
        applied: list[ReceivedEvent] = []
        failed: list[DeadLetter] = []
        duplicates = 0
        async with self.pool.acquire() as conn, conn.transaction():
            # Row-level security shows one tenant at a time: apply the batch tenant by tenant
            # (order within a tenant, and so within every aggregate, is kept).
            for tenant_id, group in _by_tenant(events).items():
                await set_tenant(conn, tenant_id)
                done, skipped = await self._apply_tenant(conn, group, failed, isolate=isolate)
                applied.extend(done)
                duplicates += skipped
            # Dead letters are acknowledged by Kafka before the batch commits: none is lost.
            await self._dead_letter([*dead, *failed])
        dead.extend(failed)
        return applied, duplicates

    async def _apply_tenant(
        self,
        conn: Connection,
        events: list[ReceivedEvent],
        failed: list[DeadLetter],
        *,
        isolate: bool,
    ) -> tuple[list[ReceivedEvent], int]:
        """Record one tenant's events in the inbox and apply the new ones; return (applied,
        duplicates). Handler failures are appended to `failed` (isolate) or raised."""
        rows = await conn.fetch(
            "INSERT INTO inbox (consumer, event_id, tenant_id, event_type)"
            " SELECT $1, * FROM unnest($2::uuid[], $3::text[], $4::text[])"
            " ON CONFLICT DO NOTHING RETURNING event_id",
            self.name,
            [e.envelope.id for e in events],
            [e.envelope.tenantid for e in events],
            [e.envelope.type for e in events],
        )
        fresh: set[Any] = {r["event_id"] for r in rows}
        duplicates = 0
        todo: list[ReceivedEvent] = []
        for event in events:
            if event.envelope.id not in fresh:
                duplicates += 1
                continue
            fresh.discard(event.envelope.id)  # the same event twice in one batch
            todo.append(event)
        if not todo:
            return todo, duplicates
        if not isolate:
            try:
                with bound_correlation_id(_common_correlation_id(todo)):
                    await self.handler(conn, todo)
            except TRANSIENT_ERRORS:
                raise
            except Exception as exc:
                raise _HandlerFailedError from exc
            return todo, duplicates
        applied: list[ReceivedEvent] = []
        for event in todo:
            try:
                with bound_correlation_id(event.envelope.correlationid):
                    async with conn.transaction():  # a savepoint per event
                        await self.handler(conn, [event])
            except TRANSIENT_ERRORS:
                raise
            except Exception as exc:
                log.exception(
                    "handler failed; dead-lettering the event",
                    extra={"event_id": str(event.envelope.id), "type": event.envelope.type},
                )
                # Forget it in the inbox so that a replay from the dead-letter topic applies.
                await conn.execute(
                    "DELETE FROM inbox WHERE consumer = $1 AND event_id = $2",
                    self.name,
                    event.envelope.id,
                )
                failed.append(DeadLetter(event.record, "handler-failed", repr(exc)))
                continue
            applied.append(event)
        return applied, duplicates

    async def _dead_letter(self, dead: list[DeadLetter]) -> None:
        pending = []
        for letter in dead:
            record = letter.record
            log.warning(
                "dead-lettering a message",
                extra={
                    "reason": letter.reason,
                    "detail": letter.detail,
                    "topic": record.topic,
                    "partition": record.partition,
                    "offset": record.offset,
                },
            )
            headers = [
                *[(k, v) for k, v in record.headers if not k.startswith("dlq_")],
                ("dlq_reason", letter.reason.encode()),
                ("dlq_detail", letter.detail[:2000].encode()),
                ("dlq_consumer", self.name.encode()),
                ("dlq_source_topic", record.topic.encode()),
                ("dlq_source_partition", str(record.partition).encode()),
                ("dlq_source_offset", str(record.offset).encode()),
                ("dlq_time", datetime.now(UTC).isoformat().encode()),
            ]
            pending.append(
                await self.producer.send(
                    DEAD_LETTER_TOPIC, value=record.value, key=record.key, headers=headers
                )
            )
        for future in pending:
            await future

    def _report_lag(
        self, records: Sequence[ConsumerRecord[bytes, bytes]], consumer: AIOKafkaConsumer
    ) -> None:
        last: dict[TopicPartition, int] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            last[tp] = max(last.get(tp, -1), record.offset)
        for tp, offset in last.items():
            highwater = consumer.highwater(tp)
            if highwater is not None:
                self.metrics.consumer_lag.labels(self.name, tp.topic, str(tp.partition)).set(
                    max(0, highwater - offset - 1)
                )


def _common_correlation_id(events: Sequence[ReceivedEvent]) -> str | None:
    """The correlation id the events share (log lines of their handler carry it), else None."""
    ids = {e.envelope.correlationid for e in events}
    return ids.pop() if len(ids) == 1 else None


def _by_tenant(events: Sequence[ReceivedEvent]) -> dict[str, list[ReceivedEvent]]:
    """The events grouped by tenant, each group in arrival order, the tenants in id order: a
    handler that locks a row per tenant (the ledger's tree heads) then takes the locks of two
    replicas' batches in the same order, so they never deadlock."""
    groups: dict[str, list[ReceivedEvent]] = {}
    for event in events:
        groups.setdefault(event.envelope.tenantid, []).append(event)
    return dict(sorted(groups.items()))


async def _parse_leaving_headers_undecoded(
    records: tuple[ConsumerRecord[bytes, bytes], ...],
    original: Callable[[Any], Awaitable[Any]],
) -> Any:
    """faststream's batch parser, without its decoding of every header as UTF-8: one header
    that is not (a producer's binary trace context) failed the batch, which was redelivered
    for ever. The consumer reads the binding's headers itself and dead-letters bad ones."""
    message = await original(tuple(dataclasses.replace(r, headers=()) for r in records))
    message.raw_message = records
    return message


async def _undecoded(message: Any) -> None:
    """Leave bodies undecoded: the consumer decodes them itself and dead-letters failures."""
    return None
