"""The ledger's self-check: each tenant's new entries against its newest signed checkpoint.

Every `verify_interval_seconds`, for each tenant whose newest checkpoint is newer than the last
one this process verified: the signature is checked, the new entries' canonical bytes are
recomputed from the stored messages, their leaves must be the stored ones, and appended to the
stored frontier of the last verified size (whose root must be that checkpoint's) they must give
the new checkpoint's root. That costs the new entries only. The first checkpoint a process sees
of a tenant is checked against the stored tree (signature, root of its frontier); the full
history is the `verify` command's work.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import asyncpg

from services.reporting.adapters import checkpoints as store
from services.reporting.adapters import ledger, log
from services.reporting.domain import merkle
from services.reporting.metrics import ReportingMetrics
from services.reporting.verifier import (
    VerificationError,
    VerifierKey,
    fold,
    leaf_hash,
    open_note,
    parse_checkpoint,
)
from shared.db import all_tenants_transaction, tenant_transaction

log_ = logging.getLogger(__name__)

# Entries read per query while checking: bounded memory on a large catch-up.
CHUNK = 5000


@dataclass(frozen=True)
class Verified:
    """The newest checkpoint of a tenant this process has verified."""

    size: int
    root: bytes


class SelfCheck:
    """Verifies what each tenant's log added since the last verified checkpoint."""

    def __init__(self, pool: asyncpg.Pool, metrics: ReportingMetrics, interval: float) -> None:
        self.pool = pool
        self.metrics = metrics
        self.interval = interval
        self.verified: dict[str, Verified] = {}

    async def run_forever(self) -> None:
        """A round every interval (the background task)."""
        while True:
            await self.round()
            await asyncio.sleep(self.interval)

    async def round(self) -> list[tuple[str, VerificationError]]:
        """Check every tenant with a checkpoint not verified yet; the (tenant, failure) found."""
        async with all_tenants_transaction(self.pool) as conn:
            rows = await conn.fetch(
                "SELECT tenant_id, max(tree_size) FROM ledger_checkpoints GROUP BY tenant_id"
            )
            key_rows = await store.keys(conn)
        keys = [VerifierKey.parse(k.verifier_key) for k in key_rows]
        failures: list[tuple[str, VerificationError]] = []
        for tenant_id, newest in rows:
            done = self.verified.get(tenant_id)
            if done is not None and done.size >= newest:
                continue
            try:
                self.verified[tenant_id] = await self.check(tenant_id, keys, done)
            except VerificationError as exc:
                log_.error(
                    "the ledger does not match its signed checkpoint",
                    extra={"tenant": tenant_id, "index": exc.index, "reason": str(exc)},
                )
                self.metrics.verifications.labels("failed").inc()
                self.metrics.verification_failures.inc()
                failures.append((tenant_id, exc))
                continue
            self.metrics.verifications.labels("ok").inc()
        return failures

    async def check(
        self, tenant_id: str, keys: list[VerifierKey], done: Verified | None
    ) -> Verified:
        """Verify the tenant's newest checkpoint from the last verified one (or from the stored
        tree, the first time); raises VerificationError naming the first bad index."""
        async with tenant_transaction(self.pool, tenant_id, readonly=True) as conn:
            stored = await store.latest(conn, tenant_id)
            assert stored is not None
            checkpoint = parse_checkpoint(open_note(stored.note, keys))
            if checkpoint.size != stored.tree_size or checkpoint.root != stored.root_hash:
                raise VerificationError("the stored checkpoint is not the note it keeps")
            start = done.size if done is not None else checkpoint.size
            refs = merkle.frontier_nodes(start)
            found = await log.nodes(conn, tenant_id, refs)
            if any(ref not in found for ref in refs):
                raise VerificationError(f"nodes of the tree of size {start} are missing")
            frontier = [found[ref] for ref in refs]
            expected_root = done.root if done is not None else checkpoint.root
            if fold(frontier) != expected_root:
                raise VerificationError(
                    f"the stored tree of size {start} does not have its signed root"
                )
            size = start
            while size < checkpoint.size:
                rows = await log.entries(conn, tenant_id, size, min(size + CHUNK, checkpoint.size))
                if not rows:
                    raise VerificationError("the log ends before its checkpoint", size)
                leaves = []
                for offset, row in enumerate(rows):
                    if row["leaf_index"] != size + offset:
                        raise VerificationError("an entry of the log is missing", size + offset)
                    leaf = leaf_hash(ledger.canonical_of_row(row))
                    if leaf != row["leaf_hash"]:
                        raise VerificationError(
                            "an entry does not hash to its leaf", row["leaf_index"]
                        )
                    leaves.append(leaf)
                _, frontier = merkle.append(frontier, size, leaves)
                size += len(leaves)
            if fold(frontier) != checkpoint.root:
                raise VerificationError(
                    f"the entries {start}..{checkpoint.size - 1} do not give the signed root",
                    start,
                )
        return Verified(checkpoint.size, checkpoint.root)
