"""Revoked tokens: a list every replica of every service keeps from the revocation topic.

Revocations are events (`itsm.config.token.revoked.v1`), published by the config service through
its outbox to a compacted topic. Each service process reads that topic from its beginning, with
no consumer group (every replica needs every revocation), before it serves its first request,
then follows it: a revoked token stops working everywhere within about a second.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge

from shared.events.binding import DecodeError, from_kafka, parse_payload
from shared.events.catalogue import AUTH_REVOCATIONS, TokenRevokedV1

log = logging.getLogger(__name__)

POLL_TIMEOUT_MS = 500


class RevocationList:
    """(tenant, token id) pairs that must be refused, each until its token would expire."""

    def __init__(self) -> None:
        self._revoked: dict[tuple[str, str], datetime | None] = {}

    def add(self, tenant_id: str, token_id: str, expires_at: datetime | None = None) -> None:
        """Refuse this token for this tenant from now on."""
        self._revoked[(tenant_id, token_id)] = expires_at

    def is_revoked(self, tenant_id: str, token_id: str) -> bool:
        """Whether the token has been revoked for the tenant."""
        return (tenant_id, token_id) in self._revoked

    def forget_expired(self, now: datetime | None = None) -> int:
        """Drop entries whose tokens have expired anyway (their exp check refuses them)."""
        now = now or datetime.now(UTC)
        expired = [k for k, exp in self._revoked.items() if exp is not None and exp < now]
        for key in expired:
            del self._revoked[key]
        return len(expired)

    def __len__(self) -> int:
        return len(self._revoked)


class RevocationMetrics:
    """What an operator needs to see that revocations arrive."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "itsm_token_revocation_events",
            "Revocation topic messages read, by outcome (applied, invalid).",
            ["outcome"],
            registry=registry,
        )
        self.size = Gauge(
            "itsm_token_revocations",
            "Revoked tokens this process refuses (expired ones are forgotten).",
            registry=registry,
        )


class RevocationListener:
    """Reads the revocation topic into a RevocationList: all of it at start, then as it grows."""

    def __init__(
        self,
        revocations: RevocationList,
        kafka_options: Mapping[str, Any],
        metrics: RevocationMetrics,
        *,
        topic: str = AUTH_REVOCATIONS,
        load_timeout: float = 60.0,
    ) -> None:
        self.revocations = revocations
        self.kafka_options = dict(kafka_options)
        self.topic = topic
        self.load_timeout = load_timeout
        self.metrics = metrics
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        """Load every revocation published so far, then keep following the topic."""
        # No group: every partition is assigned to this process, read from the beginning.
        consumer = AIOKafkaConsumer(
            self.topic,
            **self.kafka_options,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=POLL_TIMEOUT_MS,
        )
        await consumer.start()
        self._consumer = consumer
        try:
            async with asyncio.timeout(self.load_timeout):
                partitions = await self._assigned(consumer)
                end = await consumer.end_offsets(partitions)
                while not await _reached(consumer, end):
                    await self._read(consumer)
        except TimeoutError:
            await self.stop()
            raise RuntimeError(
                f"could not read the revocation topic {self.topic} within {self.load_timeout} s:"
                " does it exist (python -m shared.kafka create-topics) and may we read it?"
            ) from None
        except BaseException:
            await self.stop()
            raise
        self.metrics.size.set(len(self.revocations))
        log.info("revocation list loaded", extra={"revocations": len(self.revocations)})

    async def stop(self) -> None:
        """Stop following the topic (cancel follow() first)."""
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def follow(self) -> None:
        """Apply revocations as they are published, until cancelled (after start()).

        A background task under the process's supervisor: an error ends it and the supervisor
        restarts it (the consumer keeps its position and reconnects by itself).
        """
        consumer = self._consumer
        if consumer is None:
            raise RuntimeError("the revocation listener is not started")
        while True:
            await self._read(consumer)
            self.metrics.size.set(len(self.revocations))

    async def _assigned(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        # aiokafka has no event for "partitions assigned" without a group: poll for it.
        while not consumer.assignment():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        return sorted(consumer.assignment())

    async def _read(self, consumer: AIOKafkaConsumer) -> None:
        batches = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS)
        for records in batches.values():
            for record in records:
                self.apply(record)
        if batches:
            self.revocations.forget_expired()

    def apply(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """Add the revocation a record carries; log and count one that is not a revocation."""
        try:
            envelope = from_kafka(record.value, record.headers)
            payload = parse_payload(envelope)
        except DecodeError as exc:
            self.metrics.events.labels("invalid").inc()
            log.warning(
                "ignoring an invalid message on the revocation topic",
                extra={"reason": exc.reason, "partition": record.partition, "at": record.offset},
            )
            return
        if not isinstance(payload, TokenRevokedV1):
            self.metrics.events.labels("invalid").inc()
            log.warning("ignoring an event that is not a revocation", extra={"type": envelope.type})
            return
        self.revocations.add(envelope.tenantid, payload.token_id, payload.expires_at)
        self.metrics.events.labels("applied").inc()


async def _reached(consumer: AIOKafkaConsumer, end: Mapping[TopicPartition, int]) -> bool:
    """Whether the consumer has read every partition up to the given offsets."""
    for tp, offset in end.items():
        if await consumer.position(tp) < offset:
            return False
    return True
