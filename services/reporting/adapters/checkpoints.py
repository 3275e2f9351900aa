"""Signed checkpoints, the ledger's signing keys, and what the checkpointer asks of the log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.db import Connection
from shared.events.catalogue import spec_of_class
from shared.events.reporting import (
    LEDGER_SUBJECT,
    LedgerCheckpointSignedV1,
    LedgerKeyAddedV1,
    LedgerRunV1,
)

CHECKPOINT_TYPE = spec_of_class(LedgerCheckpointSignedV1).type
KEY_ADDED_TYPE = spec_of_class(LedgerKeyAddedV1).type


@dataclass(frozen=True)
class StoredCheckpoint:
    """A signed checkpoint as stored."""

    tenant_id: str
    tree_size: int
    root_hash: bytes
    note: str
    key_id: str
    signed_at: datetime


_CHECKPOINT_COLUMNS = "tenant_id, tree_size, root_hash, note, key_id, signed_at"


def _checkpoint(row: Any) -> StoredCheckpoint:
    return StoredCheckpoint(*(row[name] for name in _CHECKPOINT_COLUMNS.split(", ")))


async def latest(conn: Connection, tenant_id: str) -> StoredCheckpoint | None:
    """The tenant's newest checkpoint, None before its first."""
    row = await conn.fetchrow(
        f"SELECT {_CHECKPOINT_COLUMNS} FROM ledger_checkpoints"  # noqa: S608 - constant
        " WHERE tenant_id = $1 ORDER BY tree_size DESC LIMIT 1",
        tenant_id,
    )
    return None if row is None else _checkpoint(row)


async def at_size(conn: Connection, tenant_id: str, tree_size: int) -> StoredCheckpoint | None:
    """The tenant's checkpoint of one tree size, if one was signed."""
    row = await conn.fetchrow(
        f"SELECT {_CHECKPOINT_COLUMNS} FROM ledger_checkpoints"  # noqa: S608 - constant
        " WHERE tenant_id = $1 AND tree_size = $2",
        tenant_id,
        tree_size,
    )
    return None if row is None else _checkpoint(row)


async def all_of(conn: Connection, tenant_id: str) -> list[StoredCheckpoint]:
    """Every checkpoint of the tenant, smallest tree first."""
    rows = await conn.fetch(
        f"SELECT {_CHECKPOINT_COLUMNS} FROM ledger_checkpoints"  # noqa: S608 - constant
        " WHERE tenant_id = $1 ORDER BY tree_size",
        tenant_id,
    )
    return [_checkpoint(row) for row in rows]


async def insert(
    conn: Connection, tenant_id: str, tree_size: int, root_hash: bytes, note: str, key_id: str
) -> StoredCheckpoint | None:
    """Store a checkpoint; None when one of that size exists already (another replica)."""
    row = await conn.fetchrow(
        "INSERT INTO ledger_checkpoints (tenant_id, tree_size, root_hash, note, key_id)"  # noqa: S608
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING"
        f" RETURNING {_CHECKPOINT_COLUMNS}",
        tenant_id,
        tree_size,
        root_hash,
        note,
        key_id,
    )
    return None if row is None else _checkpoint(row)


@dataclass(frozen=True)
class Candidate:
    """A tenant whose log may need a checkpoint: its size, the newest checkpoint's size and
    time (None before the first), and whether its rows from before the log wait."""

    tenant_id: str
    size: int
    checkpointed: int | None
    signed_at: datetime | None
    adopted: bool


# Each tenant's newest checkpoint (tenant_id, size, root_hash): one probe of the primary key per
# log, never a scan of every checkpoint ever signed. The projections' rounds find the tenants
# they are behind on with it (an all-tenants transaction).
NEWEST_CHECKPOINTS = (
    "SELECT h.tenant_id, c.tree_size AS size, c.root_hash FROM ledger_heads h"
    " CROSS JOIN LATERAL (SELECT tree_size, root_hash FROM ledger_checkpoints"
    "  WHERE tenant_id = h.tenant_id ORDER BY tree_size DESC LIMIT 1) c"
)


async def candidates(
    conn: Connection, key_id: str, configuration: dict[str, Any]
) -> list[Candidate]:
    """Every tenant whose log calls for a checkpoint round (an all-tenants transaction): not
    adopted yet, never checkpointed, not told of this key or configuration yet, or holding an
    entry beyond its newest checkpoint that is not a checkpoint's own event.

    A tenant whose log grew only by the event of its own last checkpoint is left out: without
    that, every tenant that ever had a checkpoint cost a transaction every round, forever."""
    rows = await conn.fetch(
        "SELECT h.tenant_id, h.size, c.tree_size, c.signed_at, h.adopted FROM ledger_heads h"
        " LEFT JOIN LATERAL (SELECT tree_size, signed_at FROM ledger_checkpoints"
        "   WHERE tenant_id = h.tenant_id ORDER BY tree_size DESC LIMIT 1) c ON true"
        " WHERE NOT h.adopted OR c.tree_size IS NULL"
        "   OR h.key_id IS DISTINCT FROM $1 OR h.configuration IS DISTINCT FROM $2"
        "   OR (h.size > c.tree_size AND EXISTS (SELECT 1 FROM ledger l"
        "     WHERE l.tenant_id = h.tenant_id AND l.leaf_index >= c.tree_size"
        "     AND l.type <> $3))"
        " ORDER BY h.tenant_id",
        key_id,
        configuration,
        CHECKPOINT_TYPE,
    )
    return [Candidate(*row) for row in rows]


async def sizes(conn: Connection) -> list[tuple[str, int]]:
    """Every tenant's tree size (an all-tenants transaction)."""
    return [(r[0], r[1]) for r in await conn.fetch("SELECT tenant_id, size FROM ledger_heads")]


async def grew_beyond_checkpoints(conn: Connection, tenant_id: str, since: int) -> bool:
    """Whether the log holds an entry at index >= since that is not a checkpoint's event."""
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM ledger WHERE tenant_id = $1 AND leaf_index >= $2"
            " AND type <> $3)",
            tenant_id,
            since,
            CHECKPOINT_TYPE,
        )
    )


async def holds_key(conn: Connection, tenant_id: str, key_id: str) -> bool:
    """Whether the log records that this key signs it (its `key_added` entry is in the log)."""
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM ledger WHERE tenant_id = $1 AND subject = $2"
            " AND type = $3 AND data->>'key_id' = $4 AND leaf_index IS NOT NULL)",
            tenant_id,
            LEDGER_SUBJECT,
            KEY_ADDED_TYPE,
            key_id,
        )
    )


# Consecutive entries of one topic partition, in index order (gaps-and-islands).
_RUNS = """
SELECT topic, partition, count(*) AS count FROM (
    SELECT topic, partition, leaf_index,
           leaf_index - row_number() OVER (PARTITION BY topic, partition ORDER BY leaf_index) AS run
    FROM ledger WHERE tenant_id = $1 AND leaf_index >= $2 AND leaf_index < $3
) entries
GROUP BY topic, partition, run
ORDER BY min(leaf_index)
"""


async def runs(conn: Connection, tenant_id: str, start: int, end: int) -> list[LedgerRunV1]:
    """Where the entries [start, end) came from, as runs of one topic partition each."""
    rows = await conn.fetch(_RUNS, tenant_id, start, end)
    return [LedgerRunV1(topic=r[0], partition=r[1], count=r[2]) for r in rows]


# --- the ledger's signing keys (platform-wide) -------------------------------------------------


@dataclass(frozen=True)
class StoredKey:
    """A signing key the ledger has used."""

    key_id: str
    verifier_key: str
    first_used: datetime
    retired_at: datetime | None


async def use_key(conn: Connection, key_id: str, verifier_key: str) -> None:
    """Record the key that signs from now on; every other key still in use is retired."""
    await conn.execute(
        "INSERT INTO ledger_keys (key_id, verifier_key) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        key_id,
        verifier_key,
    )
    await conn.execute(
        "UPDATE ledger_keys SET retired_at = clock_timestamp()"
        " WHERE key_id <> $1 AND retired_at IS NULL",
        key_id,
    )


async def keys(conn: Connection) -> list[StoredKey]:
    """Every key the ledger has used, oldest first."""
    rows = await conn.fetch(
        "SELECT key_id, verifier_key, first_used, retired_at FROM ledger_keys"
        " ORDER BY first_used, key_id"
    )
    return [StoredKey(*row) for row in rows]
