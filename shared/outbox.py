"""Transactional outbox: write events with the state change, relay them to Kafka afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import asyncpg.pool
from aiokafka import AIOKafkaProducer

from shared.db import Connection, all_tenants_transaction
from shared.events.binding import CONTENT_TYPE, encode_json, header_map
from shared.events.catalogue import EventPayload, spec_of
from shared.events.envelope import MAX_SUBJECT, Envelope, new_envelope
from shared.metrics import PlatformMetrics

log = logging.getLogger(__name__)


_INSERT = (
    "INSERT INTO outbox (event_id, tenant_id, topic, message_key, event_type, headers, payload)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7)"
)


@dataclass(frozen=True)
class Pending:
    """One event of a batch for `append_many`: its payload, aggregate and sequence."""

    payload: EventPayload
    subject: str
    sequence: int


def _row(
    pending: Pending,
    *,
    tenant_id: str,
    actor: str,
    correlation_id: str | None,
    causation_id: str | None,
) -> tuple[Envelope, tuple[Any, ...]]:
    spec = spec_of(pending.payload)
    envelope = new_envelope(
        source=spec.source,
        type=spec.type,
        subject=pending.subject,
        tenantid=tenant_id,
        sequence=pending.sequence,
        actor=actor,
        data=pending.payload.model_dump(mode="json"),
        correlationid=correlation_id,
        causationid=causation_id,
    )
    row = (
        envelope.id,
        tenant_id,
        spec.topic,
        pending.subject,
        spec.type,
        header_map(envelope),
        encode_json(envelope.data),
    )
    return envelope, row


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
    _require_transaction(conn)
    envelope, row = _row(
        Pending(payload, subject, sequence),
        tenant_id=tenant_id,
        actor=actor,
        correlation_id=correlation_id,
        causation_id=causation_id,
    )
    await conn.execute(_INSERT, *row)
    return envelope


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

    Returns the event ids. The attributes every event of the batch shares are validated once
    (as a full envelope); each event's own are checked as it is built.
    """
    _require_transaction(conn)
    if not events:
        return []
    now = datetime.now(UTC)
    first, _ = _row(
        events[0],
        tenant_id=tenant_id,
        actor=actor,
        correlation_id=correlation_id,
        causation_id=causation_id,
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
    ids: list[uuid.UUID] = []
    topics: list[str] = []
    subjects: list[str] = []
    types: list[str] = []
    headers: list[str] = []
    payloads: list[bytes] = []
    for pending in events:
        spec = spec_of(pending.payload)
        if not 1 <= len(pending.subject) <= MAX_SUBJECT or pending.sequence < 1:
            raise ValueError(
                f"event subject must be 1 to {MAX_SUBJECT} characters and sequence >= 1:"
                f" {pending.subject!r}, {pending.sequence}"
            )
        event_id = uuid.uuid4()
        ids.append(event_id)
        topics.append(spec.topic)
        subjects.append(pending.subject)
        types.append(spec.type)
        headers.append(
            json.dumps(
                {
                    **shared,
                    "ce_id": str(event_id),
                    "ce_source": spec.source,
                    "ce_type": spec.type,
                    "ce_subject": pending.subject,
                    "ce_sequence": str(pending.sequence),
                    "ce_correlationid": correlation_id or str(event_id),
                }
            )
        )
        payloads.append(encode_json(pending.payload.model_dump(mode="json")))
    # One statement, positions in the batch's order.
    await conn.execute(
        "INSERT INTO outbox (event_id, tenant_id, topic, message_key, event_type, headers,"
        " payload) SELECT e, $2, tp, k, et, h::jsonb, p FROM unnest($1::uuid[], $3::text[],"
        " $4::text[], $5::text[], $6::text[], $7::bytea[])"
        " WITH ORDINALITY AS x(e, tp, k, et, h, p, n) ORDER BY n",
        ids,
        tenant_id,
        topics,
        subjects,
        types,
        headers,
        payloads,
    )
    return ids


# Claim the oldest due rows that no other relay holds.
_CLAIM = """
SELECT position, tenant_id, topic, message_key, headers, payload, created_at, attempts
FROM outbox
WHERE next_attempt_at <= now()
ORDER BY position
LIMIT $1
FOR UPDATE SKIP LOCKED
"""

# Earlier rows of the claimed aggregates that this batch does not hold (another relay has them,
# or they wait for a retry): a claimed row behind one of them must wait, to keep the order.
_BLOCKERS = """
SELECT message_key, min(position) AS position
FROM outbox
WHERE message_key = ANY($1::text[])
  AND position < $2
  AND NOT (position = ANY($3::bigint[]))
GROUP BY message_key
"""


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
        """Publish until cancelled: on every NOTIFY, and at least every poll interval."""
        metrics_task = asyncio.create_task(self._report_backlog_forever())
        try:
            while True:
                await self._ensure_listener()
                try:
                    published = await self.publish_batch()
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    log.exception("outbox relay could not reach the database; retrying")
                    published = 0
                    await asyncio.sleep(self.poll_interval)
                if published >= self.batch_size:
                    continue  # more backlog waiting: do not sleep
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.poll_interval)
        finally:
            metrics_task.cancel()
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
                await self._mark_published(conn, [rows[i]["position"] for i in published])
            if failed:
                await self._schedule_retry(conn, [(rows[i], outcomes[i]) for i in failed])
        now = datetime.now(UTC)
        for i in published:
            tenant = self.metrics.tenant(rows[i]["tenant_id"])
            self.metrics.outbox_published.labels(rows[i]["topic"], tenant).inc()
            self.metrics.outbox_publish_latency.observe(
                (now - rows[i]["created_at"]).total_seconds()
            )
        for i in failed:
            self.metrics.outbox_publish_failures.labels(rows[i]["topic"]).inc()
        return len(published)

    async def _claim(self, conn: Connection) -> list[asyncpg.Record]:
        """Lock a batch of due rows, less those that would overtake an earlier row of theirs."""
        claimed = await conn.fetch(_CLAIM, self.batch_size)
        if not claimed:
            return []
        positions = [r["position"] for r in claimed]
        blockers = {
            r["message_key"]: r["position"]
            for r in await conn.fetch(
                _BLOCKERS, list({r["message_key"] for r in claimed}), positions[-1], positions
            )
        }
        return [
            r for r in claimed if r["position"] <= blockers.get(r["message_key"], r["position"])
        ]

    async def _send(self, rows: Sequence[asyncpg.Record]) -> list[BaseException | None]:
        """Hand every row to the producer, then wait for each acknowledgement."""
        pending: list[asyncio.Future[Any] | BaseException] = []
        for row in rows:
            try:
                pending.append(
                    await self.producer.send(
                        row["topic"],
                        value=row["payload"],
                        key=row["message_key"].encode(),
                        headers=[(k, v.encode()) for k, v in row["headers"].items()],
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

    async def _mark_published(self, conn: Connection, positions: list[int]) -> None:
        """Forget rows Kafka has acknowledged."""
        await conn.execute("DELETE FROM outbox WHERE position = ANY($1::bigint[])", positions)

    async def _schedule_retry(
        self, conn: Connection, failures: list[tuple[asyncpg.Record, BaseException | None]]
    ) -> None:
        """Keep failed rows and try them again later, backing off exponentially with jitter."""
        positions, delays, errors = [], [], []
        for row, error in failures:
            backoff = min(self.max_backoff, 0.5 * 2 ** row["attempts"])
            positions.append(row["position"])
            delays.append(backoff * random.uniform(0.8, 1.2))
            errors.append(repr(error) if error else "held back behind a failed earlier event")
        await conn.execute(
            """
            UPDATE outbox o
            SET attempts = o.attempts + 1,
                next_attempt_at = now() + make_interval(secs => f.delay),
                last_error = f.error
            FROM unnest($1::bigint[], $2::float8[], $3::text[]) AS f(position, delay, error)
            WHERE o.position = f.position
            """,
            positions,
            delays,
            errors,
        )
        log.warning(
            "outbox publish failed; will retry",
            extra={"rows": len(positions), "first_error": errors[0]},
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

    async def _report_backlog_forever(self) -> None:
        while True:
            try:
                await self.report_backlog()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                log.warning("could not measure the outbox backlog", exc_info=True)
            await asyncio.sleep(self.metrics_interval)

    async def _ensure_listener(self) -> None:
        """Hold a dedicated connection that LISTENs; polling covers the gaps while it is down."""
        if self._listener is not None and not self._listener.is_closed():
            return
        await self._close_listener()
        try:
            conn = await self.pool.acquire()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return
        # Held from here on: the finally in run() releases it, even when cancelled right now.
        self._listener = conn
        try:
            await conn.add_listener(self.channel, self._on_notify)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            await self._close_listener()

    async def _close_listener(self) -> None:
        if self._listener is None:
            return
        conn, self._listener = self._listener, None
        with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            await conn.remove_listener(self.channel, self._on_notify)
        await self.pool.release(conn)

    def _on_notify(self, *_: object) -> None:
        self._wake.set()
