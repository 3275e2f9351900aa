"""The checkpointer: signs each tenant's log as it grows, and records its key and settings.

Every `checkpoint_interval_seconds`, each tenant whose log grew by entries other than
checkpoint events since its newest checkpoint gets a checkpoint: a C2SP signed note of the
tree's size and root, stored and announced (`LedgerCheckpointSignedV1`, with the runs of topic
partitions its entries came from) in one transaction. An idle log stays quiet: the event of a
checkpoint is itself an entry, which alone does not call for another.

Keys and configuration are entries of the log too. Before a key signs a tenant's log for the
first time, `LedgerKeyAddedV1` goes out, and the key signs only once that event is in the log;
when the ledger's settings differ from those the log last recorded,
`LedgerConfigurationChangedV1` goes out. Replicas are safe: a transaction-scoped advisory lock
per tenant orders checkpointers, and a tree size is signed at most once (primary key).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.reporting.adapters import checkpoints as store
from services.reporting.adapters import ledger, log
from services.reporting.adapters.checkpoints import StoredCheckpoint
from services.reporting.domain.checkpoints import Signer, load_signer, origin_of
from services.reporting.metrics import ReportingMetrics
from services.reporting.settings import ReportingSettings
from services.reporting.verifier import Checkpoint
from shared.db import Connection, all_tenants_transaction, tenant_transaction
from shared.events.catalogue import EventPayload
from shared.events.reporting import (
    LEDGER_SUBJECT,
    LedgerCheckpointSignedV1,
    LedgerConfigurationChangedV1,
    LedgerKeyAddedV1,
)
from shared.metrics import TenantLabel
from shared.outbox import writer

log_ = logging.getLogger(__name__)

ACTOR = "system:ledger"


@dataclass(frozen=True)
class LedgerConfiguration:
    """What the ledger's settings say about every tenant's log."""

    origin: str
    key_name: str
    checkpoint_interval_seconds: float

    @classmethod
    def of(cls, settings: ReportingSettings) -> LedgerConfiguration:
        """The configuration the settings give."""
        return cls(
            settings.ledger_origin,
            settings.ledger_key_label,
            settings.checkpoint_interval_seconds,
        )

    def as_json(self) -> dict[str, Any]:
        """As the log records it (`LedgerConfigurationChangedV1`)."""
        return {
            "origin": self.origin,
            "key_name": self.key_name,
            "checkpoint_interval_seconds": self.checkpoint_interval_seconds,
        }


def signer_of(settings: ReportingSettings) -> Signer:
    """The ledger's signer from its key file; serving refuses to start without one."""
    if not settings.ledger_signing_key_file:
        raise ValueError(
            "REPORTING_LEDGER_SIGNING_KEY_FILE is required: the ledger signs its checkpoints"
            " with its own Ed25519 key (PKCS#8 PEM)"
        )
    return load_signer(settings.ledger_signing_key_file, settings.ledger_key_label)


class Checkpointer:
    """Signs checkpoints of every tenant's log; one per replica, safe together."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        signer: Signer,
        configuration: LedgerConfiguration,
        metrics: ReportingMetrics,
        tenants: TenantLabel,
    ) -> None:
        self.pool = pool
        self.signer = signer
        self.configuration = configuration
        self.metrics = metrics
        self.tenants = tenants
        self._key_registered = False

    async def run_forever(self) -> None:
        """A round every interval (the background task)."""
        while True:
            await self.round("interval")
            await asyncio.sleep(self.configuration.checkpoint_interval_seconds)

    async def register_key(self) -> None:
        """List this key in `ledger_keys` (older keys retired): `GET /ledger/keys` shows it."""
        if self._key_registered:
            return
        async with self.pool.acquire() as conn, conn.transaction():
            await store.use_key(conn, self.signer.key_id, self.signer.verifier_key)
        self._key_registered = True

    async def round(self, trigger: str) -> list[StoredCheckpoint]:
        """One pass over the tenants whose logs are not covered; the checkpoints signed."""
        started = time.perf_counter()
        await self.register_key()
        async with all_tenants_transaction(self.pool) as conn:
            pending = await store.candidates(conn, self.signer.key_id, self.configuration.as_json())
            sizes = await store.sizes(conn)
        signed: list[StoredCheckpoint] = []
        ages: dict[str, float] = {}
        now = datetime.now(UTC)
        for candidate in pending:
            checkpoint, waiting = await self.checkpoint(candidate.tenant_id, trigger=trigger)
            if checkpoint is not None:
                signed.append(checkpoint)
            label = self.tenants(candidate.tenant_id)
            age = (now - (candidate.signed_at or now)).total_seconds() if waiting else 0.0
            ages[label] = max(ages.get(label, 0.0), age)
        self.metrics.checkpoint_duration.observe(time.perf_counter() - started)
        largest: dict[str, int] = {}
        for tenant_id, size in sizes:
            label = self.tenants(tenant_id)
            largest[label] = max(largest.get(label, 0), size)
        for label, size in largest.items():
            self.metrics.tree_size.labels(label).set(size)
            self.metrics.checkpoint_age.labels(label).set(ages.get(label, 0.0))
        return signed

    async def checkpoint(
        self, tenant_id: str, *, trigger: str, on_demand: bool = False
    ) -> tuple[StoredCheckpoint | None, bool]:
        """Sign the tenant's log if it calls for it: (the checkpoint signed, or on demand the
        newest one when nothing is new; whether entries still wait for one)."""
        async with tenant_transaction(self.pool, tenant_id) as conn:
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                f"ledger-checkpoint/{tenant_id}",
            )
            head = await log.read_head(conn, tenant_id)
            if head is None:
                return None, False
            if not head.adopted:
                head = await log.adopt(
                    conn, await log.lock_head(conn, tenant_id), ledger.canonical_of_row
                )
            head = await self._announce(conn, head)
            previous = await store.latest(conn, tenant_id)
            since = previous.tree_size if previous is not None else 0
            if previous is not None and head.size == previous.tree_size:
                return (previous if on_demand else None), False
            if not on_demand and not await store.grew_beyond_checkpoints(conn, tenant_id, since):
                return None, False
            if not await store.holds_key(conn, tenant_id, self.signer.key_id):
                return None, True  # its key_added event is on its way into the log
            checkpoint = await self._sign(conn, head, since)
        if checkpoint is not None:
            self.metrics.checkpoints.labels(trigger).inc()
        return checkpoint, False

    async def _announce(self, conn: Connection, head: log.Head) -> log.Head:
        """Write the key and configuration events the tenant's log has not recorded yet."""
        events: list[EventPayload] = []
        now = datetime.now(UTC)
        if head.key_id != self.signer.key_id:
            events.append(
                LedgerKeyAddedV1(
                    key_id=self.signer.key_id,
                    verifier_key=self.signer.verifier_key,
                    previous_key_id=head.key_id,
                    activated_at=now,
                )
            )
        wanted = self.configuration.as_json()
        recorded: Mapping[str, Any] = head.configuration or {}
        changes = {
            name: {"from": recorded.get(name), "to": value}
            for name, value in wanted.items()
            if recorded.get(name) != value
        }
        if changes:
            events.append(LedgerConfigurationChangedV1(changes=changes))
        if not events:
            return head
        version = await self._publish(conn, head.tenant_id, events)
        await conn.execute(
            "UPDATE ledger_heads SET key_id = $2, configuration = $3 WHERE tenant_id = $1",
            head.tenant_id,
            self.signer.key_id,
            wanted,
        )
        return log.Head(
            head.tenant_id,
            head.size,
            head.frontier,
            head.adopted,
            self.signer.key_id,
            wanted,
            version,
        )

    async def _sign(self, conn: Connection, head: log.Head, since: int) -> StoredCheckpoint | None:
        origin = origin_of(self.configuration.origin, head.tenant_id)
        root = head.root
        note = self.signer.sign(Checkpoint(origin, head.size, root, ()))
        stored = await store.insert(conn, head.tenant_id, head.size, root, note, self.signer.key_id)
        if stored is None:
            return None  # another replica signed this size
        event = LedgerCheckpointSignedV1(
            origin=origin,
            tree_size=head.size,
            root_hash=base64.b64encode(root).decode("ascii"),
            previous_size=since,
            key_id=self.signer.key_id,
            note=note,
            runs=await store.runs(conn, head.tenant_id, since, head.size),
        )
        await self._publish(conn, head.tenant_id, [event])
        return stored

    async def _publish(self, conn: Connection, tenant_id: str, events: list[EventPayload]) -> int:
        """Events about the tenant's log into the outbox, numbered as versions of `ledger`;
        the version after them."""
        version = await conn.fetchval(
            "UPDATE ledger_heads SET version = version + $2 WHERE tenant_id = $1 RETURNING version",
            tenant_id,
            len(events),
        )
        first = version - len(events) + 1
        for offset, payload in enumerate(events):
            await writer.append(
                conn,
                payload,
                subject=LEDGER_SUBJECT,
                tenant_id=tenant_id,
                sequence=first + offset,
                actor=ACTOR,
            )
        return int(version)
