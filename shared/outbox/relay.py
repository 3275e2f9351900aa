"""The outbox relay: publishes committed outbox rows to Kafka, in order per aggregate, retrying
failures with backoff; safe to run in every replica of a service."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import asyncpg.pool
from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from shared.db import Connection, all_tenants_transaction
from shared.events.binding import Headers
from shared.metrics import PlatformMetrics
from shared.outbox.partitioning import partition_for

log = logging.getLogger(__name__)

# Rows the relay handles between two yields to the event loop: it shares the process with the
# service's requests, which should not wait for a whole batch of its Python work.
_SLICE = 100


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
