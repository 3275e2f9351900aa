"""Transactional outbox: write events with the state change, relay them to Kafka afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import struct
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii as quote
from typing import Any

import asyncpg
import asyncpg.pool
from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from shared.db import Connection, all_tenants_transaction
from shared.events.binding import CONTENT_TYPE, Headers
from shared.events.catalogue import EventPayload, spec_of
from shared.events.envelope import MAX_SUBJECT, Envelope
from shared.ids import new_ids
from shared.metrics import PlatformMetrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pending:
    """One event of a batch for `append_many`: its payload, aggregate and the aggregate's
    version after it (`sequence`; the `itsmversion` attribute on the wire).

    `data` is the payload as `payload.model_dump(mode="json")` gives it, for a caller that has
    it already (bulk writers that store the same state elsewhere): it is not dumped again.
    `encoded` is that data already serialised as `encode_data` does it, for a caller that
    encodes part of it for another use too (a CI's state, kept in its history as well).
    """

    payload: EventPayload
    subject: str
    sequence: int
    data: dict[str, Any] | None = None
    encoded: bytes | None = None


# `encode_json`'s settings, built once: json.dumps with arguments builds an encoder per call.
_PAYLOAD_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True, default=str)


def encode_data(data: Any) -> str:
    """JSON text as the outbox writes event payloads: compact, keys sorted."""
    return _PAYLOAD_ENCODER.encode(data)


# One statement for a whole batch, positions in the batch's order. Each event's headers come
# as JSON text built by encode_many (before the transaction): built in SQL, with
# jsonb_build_object per row, they cost the statement a fifth of its time. Event ids come from
# encode_many too (time-ordered: shared/ids.py).
_INSERT_MANY = """
INSERT INTO outbox (event_id, tenant_id, topic, message_key, event_type, headers, payload)
SELECT x.e, $1, x.tp, x.k, x.et, x.h::jsonb, x.p
FROM (
    SELECT u.*
    FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::bytea[], $7::uuid[])
         WITH ORDINALITY AS u(tp, k, et, h, p, e, n)
) x
ORDER BY x.n
"""


def _require_transaction(conn: Connection) -> None:
    if not conn.is_in_transaction():
        raise RuntimeError("outbox events must be written inside the state change's transaction")


async def append(
    conn: Connection,
    payload: EventPayload,
    *,
    subject: str,
    tenant_id: str,
    sequence: int,
    actor: str,
    correlation_id: str | None = None,
    causation_id: str | None = None,
) -> Envelope:
    """Add an event to the outbox inside the caller's transaction; return its envelope."""
    # `append_many` of one: one encoder for the wire format, so the two cannot drift apart.
    _require_transaction(conn)
    encoded, envelope = _encode(
        [Pending(payload, subject, sequence)],
        tenant_id=tenant_id,
        actor=actor,
        correlation_id=correlation_id,
        causation_id=causation_id,
    )
    await insert_encoded(conn, encoded)
    return envelope


@dataclass(frozen=True)
class Encoded:
    """A batch of one tenant's events validated and serialised for the outbox (encode_many):
    what is left to do is the database's. `select` keeps some of them (in their order)."""

    tenant_id: str
    correlation_id: str | None
    shared: str  # the headers every event of the batch has, as a JSON object
    topics: list[str]
    subjects: list[str]
    types: list[str]
    sources: list[str]
    sequences: list[int]
    payloads: list[bytes]
    ids: list[uuid.UUID]
    headers: list[str]  # each event's Kafka headers, the shared ones with its own, as JSON

    def __len__(self) -> int:
        return len(self.topics)

    def select(self, indices: Sequence[int]) -> Encoded:
        """Only the events at these positions of the batch."""
        return Encoded(
            self.tenant_id,
            self.correlation_id,
            self.shared,
            [self.topics[i] for i in indices],
            [self.subjects[i] for i in indices],
            [self.types[i] for i in indices],
            [self.sources[i] for i in indices],
            [self.sequences[i] for i in indices],
            [self.payloads[i] for i in indices],
            [self.ids[i] for i in indices],
            [self.headers[i] for i in indices],
        )


def encode_many(
    events: Sequence[Pending],
    *,
    tenant_id: str,
    actor: str,
    correlation_id: str | None = None,
    causation_id: str | None = None,
) -> Encoded:
    """Validate and serialise a batch of one tenant's events for `insert_encoded`.

    A bulk writer can do this before its transaction (or while another one runs), so that
    the transaction holds its locks only for the database's work. The attributes every event
    of the batch shares are validated once (as a full envelope); each event's own are checked
    as it is built. Raises ValueError for an event the outbox cannot carry.
    """
    if not events:
        return Encoded(tenant_id, correlation_id, "{}", [], [], [], [], [], [], [], [])
    encoded, _ = _encode(
        events,
        tenant_id=tenant_id,
        actor=actor,
        correlation_id=correlation_id,
        causation_id=causation_id,
    )
    return encoded


def _data(pending: Pending) -> dict[str, Any]:
    return pending.data if pending.data is not None else pending.payload.model_dump(mode="json")


def _encode(
    events: Sequence[Pending],
    *,
    tenant_id: str,
    actor: str,
    correlation_id: str | None,
    causation_id: str | None,
) -> tuple[Encoded, Envelope]:
    """The outbox's one encoder: a non-empty batch, and its first event's full envelope (the
    one that validates the shared attributes, with the id and time the batch carries)."""
    now = datetime.now(UTC)
    ids = new_ids(len(events))
    spec = spec_of(events[0].payload)
    first_data = _data(events[0])
    first = Envelope(
        id=ids[0],
        source=spec.source,
        type=spec.type,
        subject=events[0].subject,
        time=now,
        tenantid=tenant_id,
        itsmversion=events[0].sequence,
        correlationid=correlation_id or str(ids[0]),
        causationid=causation_id,
        actor=actor,
        data=first_data,
    )
    shared = {
        "content-type": CONTENT_TYPE,
        "ce_specversion": first.specversion,
        "ce_time": now.isoformat(),
        "ce_tenantid": tenant_id,
        "ce_actor": actor,
    }
    if causation_id is not None:
        shared["ce_causationid"] = causation_id
    shared_json = json.dumps(shared)
    encoded = Encoded(tenant_id, correlation_id, shared_json, [], [], [], [], [], [], ids, [])
    encode = _PAYLOAD_ENCODER.encode
    # Each event's headers: the shared object, its closing brace replaced by the event's own
    # (as header_map would give them; a correlation id defaults to the event's id).
    opening = shared_json[:-1]
    correlation = quote(correlation_id) if correlation_id else None
    quoted: dict[str, str] = {}
    for position, (pending, event_id) in enumerate(zip(events, ids, strict=True)):
        spec = spec_of(pending.payload)
        if not 1 <= len(pending.subject) <= MAX_SUBJECT or pending.sequence < 1:
            raise ValueError(
                f"event subject must be 1 to {MAX_SUBJECT} characters and sequence >= 1:"
                f" {pending.subject!r}, {pending.sequence}"
            )
        encoded.topics.append(spec.topic)
        encoded.subjects.append(pending.subject)
        encoded.types.append(spec.type)
        encoded.sources.append(spec.source)
        encoded.sequences.append(pending.sequence)
        kind = quoted.get(spec.type)
        if kind is None:
            kind = quoted[spec.type] = (
                f',"ce_source":{quote(spec.source)},"ce_type":{quote(spec.type)}'
            )
        own_id = f'"{event_id}"'
        encoded.headers.append(
            f'{opening},"ce_id":{own_id}{kind},"ce_subject":{quote(pending.subject)},'
            f'"ce_itsmversion":"{pending.sequence}","ce_correlationid":{correlation or own_id}}}'
        )
        if pending.encoded is not None:
            encoded.payloads.append(pending.encoded)
            continue
        data = first_data if position == 0 else _data(pending)
        encoded.payloads.append(encode(data).encode())
    return encoded, first


async def insert_encoded(conn: Connection, encoded: Encoded) -> list[uuid.UUID]:
    """Add an encoded batch to the outbox, in order, in one round trip; return the event ids."""
    _require_transaction(conn)
    if not encoded:
        return []
    await conn.execute(
        _INSERT_MANY,
        encoded.tenant_id,
        encoded.topics,
        encoded.subjects,
        encoded.types,
        encoded.headers,
        encoded.payloads,
        encoded.ids,
    )
    return list(encoded.ids)


async def append_many(
    conn: Connection,
    events: Sequence[Pending],
    *,
    tenant_id: str,
    actor: str,
    correlation_id: str | None = None,
    causation_id: str | None = None,
) -> list[uuid.UUID]:
    """Add a batch of one tenant's events, in order, in one round trip (bulk writes, imports).

    Returns the event ids. `encode_many` then `insert_encoded`, for a caller that encodes
    the batch before its transaction.
    """
    _require_transaction(conn)
    encoded = encode_many(
        events,
        tenant_id=tenant_id,
        actor=actor,
        correlation_id=correlation_id,
        causation_id=causation_id,
    )
    return await insert_encoded(conn, encoded)


# Rows the relay handles between two yields to the event loop: it shares the process with the
# service's requests, which should not wait for a whole batch of its Python work.
_SLICE = 100

_MURMUR_M = 0x5BD1E995
_MASK32 = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of a message key (the Java client's, and aiokafka's), a word at a
    time instead of a byte at a time."""
    m, mask = _MURMUR_M, _MASK32
    length = len(data)
    h = 0x9747B28C ^ length
    words = length >> 2
    for k in struct.unpack_from(f"<{words}I", data):
        k = (k * m) & mask
        h = ((h * m) & mask) ^ (((k ^ (k >> 24)) * m) & mask)
    tail = length & 3
    if tail:
        base = words << 2
        if tail == 3:
            h ^= data[base + 2] << 16
        if tail >= 2:
            h ^= data[base + 1] << 8
        h = ((h ^ data[base]) * m) & mask
    h = ((h ^ (h >> 13)) * m) & mask
    return h ^ (h >> 15)


def partition_for(key: bytes, partitions: Sequence[int]) -> int:
    """The partition Kafka's default partitioner gives a key, among a topic's partitions."""
    return partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]


# Claim the oldest due rows that no other relay holds. Their ctids address them until the
# transaction ends (a locked row is never moved), so that marking them published is a TID scan
# whatever the plan cache and the statistics say about the table: as a prepared statement's
# generic plan, `position = ANY($1)` became a sequential scan that compared every row with the
# whole array, and with a backlog of 25,000 rows one batch's DELETE took seconds.
_CLAIM = """
SELECT ctid, position, tenant_id, topic, message_key, headers, payload, created_at, attempts
FROM outbox
WHERE next_attempt_at <= now()
ORDER BY position
LIMIT $1
FOR UPDATE SKIP LOCKED
"""

_MARK_PUBLISHED = "DELETE FROM outbox WHERE ctid = ANY($1::tid[])"

# Every row up to the last claimed one, oldest first. The claimed rows are the oldest due
# ones, so this is usually the claimed rows alone: one short range of the primary key, read
# in order, instead of a probe per aggregate. Only rows held back (waiting for a retry, or
# claimed by another relay) make it longer; past a limit, _EARLIER answers instead.
_UP_TO = """
SELECT message_key, position
FROM outbox
WHERE position <= $1
ORDER BY position
LIMIT $2
"""

# The rows of the claimed aggregates up to the last claimed one. Those this batch does not hold
# (another relay has them, or they wait for a retry) block the claimed rows behind them, to
# keep the order. The batch's own rows are told apart in Python: as a prepared statement's
# generic plan, `NOT (position = ANY($3))` scanned the whole array for every row.
_EARLIER = """
SELECT message_key, position
FROM outbox
WHERE message_key = ANY($1::text[])
  AND position < $2
"""


def _headers(row: asyncpg.Record) -> Headers:
    """A claimed row's Kafka headers."""
    return [(name, value.encode()) for name, value in row["headers"].items()]


class OutboxRelay:
    """Publishes committed outbox rows to Kafka; safe to run in every replica of a service."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        producer: AIOKafkaProducer,
        metrics: PlatformMetrics,
        schema: str,
        batch_size: int = 1000,
        poll_interval: float = 1.0,
        max_backoff: float = 60.0,
        metrics_interval: float = 5.0,
    ) -> None:
        self.pool = pool
        self.producer = producer
        self.metrics = metrics
        self.channel = f"outbox_{schema}"
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff
        self.metrics_interval = metrics_interval
        self._wake = asyncio.Event()
        self._listener: asyncpg.pool.PoolConnectionProxy | None = None

    async def run(self) -> None:
        """Publish until cancelled: on every NOTIFY, and at least every poll interval.

        It keeps no error policy of its own: a database or Kafka error ends it, and the
        process's supervisor (shared/supervision.py) logs, counts and restarts it with backoff.
        """
        try:
            while True:
                await self._ensure_listener()
                published = await self.publish_batch()
                if published >= self.batch_size:
                    continue  # more backlog waiting: do not sleep
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.poll_interval)
        finally:
            await self._close_listener()

    async def publish_batch(self) -> int:
        """Publish one batch of due rows; return how many Kafka acknowledged."""
        async with all_tenants_transaction(self.pool) as conn:
            rows = await self._claim(conn)
            if not rows:
                return 0
            outcomes = await self._send(rows)
            published, failed = self._settle(rows, outcomes)
            if published:
                await self._mark_published(conn, [rows[i]["ctid"] for i in published])
            if failed:
                await self._schedule_retry(conn, [(rows[i], outcomes[i]) for i in failed])
        now = datetime.now(UTC)
        # Counted per (topic, tenant) rather than per row: a label lookup per row adds up.
        counts = Counter((rows[i]["topic"], rows[i]["tenant_id"]) for i in published)
        for (topic, tenant_id), n in counts.items():
            self.metrics.outbox_published.labels(topic, self.metrics.tenant(tenant_id)).inc(n)
        observe = self.metrics.outbox_publish_latency.observe
        for i in published:
            observe((now - rows[i]["created_at"]).total_seconds())
        for topic, n in Counter(rows[i]["topic"] for i in failed).items():
            self.metrics.outbox_publish_failures.labels(topic).inc(n)
        return len(published)

    async def _claim(self, conn: Connection) -> list[asyncpg.Record]:
        """Lock a batch of due rows, less those that would overtake an earlier row of theirs."""
        claimed = await conn.fetch(_CLAIM, self.batch_size)
        if not claimed:
            return []
        held = {r["position"] for r in claimed}
        last = claimed[-1]["position"]
        limit = 2 * len(claimed)
        earlier = await conn.fetch(_UP_TO, last, limit)
        if len(earlier) == limit:  # a backlog is held back: look up the claimed aggregates
            earlier = await conn.fetch(_EARLIER, list({r["message_key"] for r in claimed}), last)
        blockers: dict[str, int] = {}
        for r in earlier:
            key, position = r["message_key"], r["position"]
            if position not in held and position < blockers.get(key, position + 1):
                blockers[key] = position
        return [
            r for r in claimed if r["position"] <= blockers.get(r["message_key"], r["position"])
        ]

    async def _send(self, rows: Sequence[asyncpg.Record]) -> list[BaseException | None]:
        """Hand every row to the producer, then wait for each acknowledgement."""
        if self._batches_by_hand():
            return await self._send_batches(rows)
        pending: list[asyncio.Future[Any] | BaseException] = []
        for row in rows:
            try:
                pending.append(
                    await self.producer.send(
                        row["topic"],
                        value=row["payload"],
                        key=row["message_key"].encode(),
                        headers=_headers(row),
                    )
                )
            except Exception as exc:  # the producer refused it before sending (metadata, size)
                pending.append(exc)
        outcomes: list[BaseException | None] = []
        for item in pending:
            if isinstance(item, BaseException):
                outcomes.append(item)
                continue
            try:
                await item
                outcomes.append(None)
            except Exception as exc:
                outcomes.append(exc)
        return outcomes

    def _batches_by_hand(self) -> bool:
        """Whether the relay can build the producer's batches itself: an aiokafka producer that
        partitions by key with Kafka's default partitioner (the relay picks the same partition
        for a key as it would, so where each key's events go, and their order, is unchanged)."""
        partitioner = getattr(self.producer, "_partitioner", None)
        return isinstance(self.producer, AIOKafkaProducer) and type(partitioner) is (
            DefaultPartitioner
        )

    async def _send_batches(self, rows: Sequence[asyncpg.Record]) -> list[BaseException | None]:
        """`_send` with one record batch per partition instead of one producer call per row.

        What the producer does for each message (metadata wait, partitioner, accumulator, a
        future) costs more than encoding it; here that happens once per batch. Rows keep their
        order within a partition, hence per key. A row the producer would refuse before sending
        (metadata, size) fails alone, as with send(); a batch the broker refuses fails all its
        rows, as with send().
        """
        producer = self.producer
        assert isinstance(producer, AIOKafkaProducer)
        outcomes: list[BaseException | None] = [None] * len(rows)
        limit: int = getattr(producer, "_max_request_size", 1_048_576)
        partitions: dict[str, list[int]] = {}
        groups: dict[tuple[str, int], list[tuple[int, bytes, bytes, Headers]]] = {}
        for i, row in enumerate(rows):
            if i % _SLICE == _SLICE - 1:
                await asyncio.sleep(0)  # let the service's requests go on between slices
            topic = row["topic"]
            key = row["message_key"].encode()
            value = row["payload"]
            headers = _headers(row)
            try:
                choices = partitions.get(topic)
                if choices is None:
                    # The same list the default partitioner draws from (in the same order).
                    choices = partitions[topic] = list(await producer.partitions_for(topic))
                size = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers)
                if size > limit:
                    raise MessageSizeTooLargeError(
                        f"The message is {size} bytes when serialized, more than the"
                        f" producer's max_request_size of {limit}"
                    )
            except Exception as exc:  # what send() would have raised for this row
                outcomes[i] = exc
                continue
            partition = partition_for(key, choices)
            groups.setdefault((topic, partition), []).append((i, key, value, headers))
        sent: list[tuple[list[int], asyncio.Future[Any] | BaseException]] = []
        for (topic, partition), members in groups.items():
            batch = producer.create_batch()
            indexes: list[int] = []
            for n, (i, key, value, headers) in enumerate(members):
                if n % _SLICE == _SLICE - 1:
                    await asyncio.sleep(0)
                if batch.append(timestamp=None, key=key, value=value, headers=headers) is None:
                    # Full: queue it and go on in a new one (the first record always fits).
                    sent.append((indexes, await self._submit(batch, topic, partition)))
                    batch, indexes = producer.create_batch(), []
                    batch.append(timestamp=None, key=key, value=value, headers=headers)
                indexes.append(i)
            sent.append((indexes, await self._submit(batch, topic, partition)))
        for indexes, delivery in sent:
            outcome: BaseException | None = None
            if isinstance(delivery, BaseException):
                outcome = delivery
            else:
                try:
                    await delivery
                except Exception as exc:
                    outcome = exc
            for i in indexes:
                outcomes[i] = outcome
        return outcomes

    async def _submit(
        self, batch: BatchBuilder, topic: str, partition: int
    ) -> asyncio.Future[Any] | BaseException:
        """Queue a batch; the future of its acknowledgement, or why it was refused."""
        assert isinstance(self.producer, AIOKafkaProducer)
        batch.close()  # so that the producer's own send() never appends to it
        try:
            delivery: asyncio.Future[Any] = await self.producer.send_batch(
                batch, topic, partition=partition
            )
        except Exception as exc:
            return exc
        return delivery

    @staticmethod
    def _settle(
        rows: Sequence[asyncpg.Record], outcomes: Sequence[BaseException | None]
    ) -> tuple[list[int], list[int]]:
        """Split the batch into published and failed rows; after a failure, an aggregate's
        later rows count as failed too, so they are re-sent after it and never overtake it."""
        published: list[int] = []
        failed: list[int] = []
        broken_keys: set[str] = set()
        for i, (row, outcome) in enumerate(zip(rows, outcomes, strict=True)):
            if outcome is None and row["message_key"] not in broken_keys:
                published.append(i)
            else:
                broken_keys.add(row["message_key"])
                failed.append(i)
        return published, failed

    async def _mark_published(self, conn: Connection, rows: list[tuple[int, int]]) -> None:
        """Forget rows Kafka has acknowledged (by the ctids they were claimed at)."""
        await conn.execute(_MARK_PUBLISHED, rows)

    async def _schedule_retry(
        self, conn: Connection, failures: list[tuple[asyncpg.Record, BaseException | None]]
    ) -> None:
        """Keep failed rows and try them again later, backing off exponentially with jitter."""
        ctids, delays, errors = [], [], []
        for row, error in failures:
            backoff = min(self.max_backoff, 0.5 * 2 ** row["attempts"])
            ctids.append(row["ctid"])
            delays.append(backoff * random.uniform(0.8, 1.2))
            errors.append(repr(error) if error else "held back behind a failed earlier event")
        await conn.execute(
            """
            UPDATE outbox o
            SET attempts = o.attempts + 1,
                next_attempt_at = now() + make_interval(secs => f.delay),
                last_error = f.error
            FROM unnest($1::tid[], $2::float8[], $3::text[]) AS f(row_id, delay, error)
            WHERE o.ctid = f.row_id
            """,
            ctids,
            delays,
            errors,
        )
        log.warning(
            "outbox publish failed; will retry",
            extra={"rows": len(ctids), "first_error": errors[0]},
        )

    async def report_backlog(self) -> tuple[int, float]:
        """Refresh the backlog gauges; return (rows, age of the oldest in seconds)."""
        async with all_tenants_transaction(self.pool) as conn:
            row = await conn.fetchrow(
                "SELECT count(*) AS n,"
                " coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS age"
                " FROM outbox"
            )
        assert row is not None
        self.metrics.outbox_backlog.set(row["n"])
        self.metrics.outbox_oldest_age.set(row["age"])
        return row["n"], row["age"]

    async def report_backlog_forever(self) -> None:
        """Refresh the backlog gauges every metrics interval, until cancelled.

        A task of its own beside run(), reading the table: the gauges go on telling the truth
        while the relay loop is down, which is when OutboxStuck must fire.
        """
        while True:
            await self.report_backlog()
            await asyncio.sleep(self.metrics_interval)

    async def _ensure_listener(self) -> None:
        """Hold a dedicated connection that LISTENs; polling covers the gaps while it is down.

        A connection that the server drops (a PostgreSQL restart) is detached from its pool
        proxy by asyncpg, after which every call on the proxy raises; its termination listener
        tells us (or is_closed() does, or raises), and the next round acquires a new one.
        """
        if self._listener is not None:
            try:
                if not self._listener.is_closed():
                    return
            except asyncpg.InterfaceError:  # detached: asyncpg took the dead connection back
                self._listener = None
            await self._close_listener()
        try:
            conn = await self.pool.acquire()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return  # the database is down: the batch that follows fails and says so
        # Held from here on: the finally in run() releases it, even when cancelled right now.
        self._listener = conn
        try:
            conn.add_termination_listener(self._on_listener_lost)
            await conn.add_listener(self.channel, self._on_notify)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            await self._close_listener()

    def _on_listener_lost(self, *_: object) -> None:
        # asyncpg has already handed the dead connection back to the pool.
        self._listener = None
        self._wake.set()

    async def _close_listener(self) -> None:
        if self._listener is None:
            return
        conn, self._listener = self._listener, None
        with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            conn.remove_termination_listener(self._on_listener_lost)
            await conn.remove_listener(self.channel, self._on_notify)
        with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            await self.pool.release(conn)

    def _on_notify(self, *_: object) -> None:
        self._wake.set()
