"""The verifiable log in PostgreSQL: leaves on the ledger rows, complete subtrees, heads.

Each tenant's log is an RFC 9162 tree over its ledger rows in the order they were stored
(`leaf_index` 0..n-1). A row's leaf is SHA-256(0x00 || its canonical bytes), the bytes defined
once in `services.reporting.verifier` and computed from the stored message. `ledger_nodes`
keeps every complete subtree above the leaves; `ledger_heads` the size and right frontier,
which is all an append needs, locked by every append of the tenant so that indexes are dense.

Rows stored before the log existed (migration 0004) join it once, in position order, before
any newer row of their tenant (`adopt`, given how to compute a row's canonical bytes:
`ledger.canonical_of_row`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from services.reporting.domain import merkle
from services.reporting.verifier import fold, leaf_hash
from shared.db import Connection

# How many pre-log rows `adopt` reads at a time: bounded memory whatever the table's size.
ADOPT_CHUNK = 5000


@dataclass(frozen=True)
class Head:
    """A tenant's tree as its head row holds it."""

    tenant_id: str
    size: int
    frontier: list[bytes]
    adopted: bool
    key_id: str | None
    configuration: dict[str, Any] | None
    version: int

    @property
    def root(self) -> bytes:
        """MTH of the whole tree."""
        return merkle.root_of_frontier(self.frontier, self.size)


_HEAD_COLUMNS = "tenant_id, size, frontier, adopted, key_id, configuration, version"


def _head(row: asyncpg.Record) -> Head:
    return Head(
        tenant_id=row["tenant_id"],
        size=row["size"],
        frontier=list(row["frontier"]),
        adopted=row["adopted"],
        key_id=row["key_id"],
        configuration=row["configuration"],
        version=row["version"],
    )


_LOCK_HEAD = (
    "INSERT INTO ledger_heads AS h (tenant_id) VALUES ($1) ON CONFLICT (tenant_id)"  # noqa: S608
    f" DO UPDATE SET updated_at = clock_timestamp() RETURNING {_HEAD_COLUMNS}"
)


async def lock_head(conn: Connection, tenant_id: str) -> Head:
    """The tenant's head, created if new, locked until the transaction ends (appends and
    adoption of one tenant take turns on it)."""
    row = await conn.fetchrow(
        _LOCK_HEAD,
        tenant_id,
    )
    assert row is not None
    return _head(row)


async def read_head(conn: Connection, tenant_id: str) -> Head | None:
    """The tenant's head as committed (no lock); None before its first entry."""
    row = await conn.fetchrow(
        f"SELECT {_HEAD_COLUMNS} FROM ledger_heads WHERE tenant_id = $1",  # noqa: S608
        tenant_id,
    )
    return None if row is None else _head(row)


@dataclass(frozen=True)
class Appended:
    """What an append adds to a tenant's log: the new leaves' indexes and hashes, the new
    complete subtrees above them, and the head after them."""

    first_index: int
    leaves: list[bytes]
    nodes: list[tuple[int, int, bytes]]  # level >= 1
    size: int
    frontier: list[bytes]


def extend(head: Head, entries: Iterable[bytes]) -> Appended:
    """The leaves and nodes that appending these canonical entries to the tree adds."""
    leaves = [leaf_hash(entry) for entry in entries]
    completed, frontier = merkle.append(head.frontier, head.size, leaves)
    nodes = [node for node in completed if node[0] > 0]
    return Appended(head.size, leaves, nodes, head.size + len(leaves), frontier)


# The nodes and the head of one append, in one statement after the rows.
_SAVE_TREE = """
WITH nodes AS (
    INSERT INTO ledger_nodes (tenant_id, level, index, hash)
    SELECT $1, * FROM unnest($2::smallint[], $3::bigint[], $4::bytea[])
)
UPDATE ledger_heads SET size = $5, frontier = $6, updated_at = clock_timestamp()
WHERE tenant_id = $1
"""


async def save_tree(conn: Connection, tenant_id: str, appended: Appended) -> None:
    """Store an append's new nodes and move the head (the rows carry their leaves)."""
    await conn.execute(
        _SAVE_TREE,
        tenant_id,
        [level for level, _, _ in appended.nodes],
        [index for _, index, _ in appended.nodes],
        [node for _, _, node in appended.nodes],
        appended.size,
        appended.frontier,
    )


# --- rows stored before the log: adopted once, in position order ------------------------------

_UNADOPTED = (
    "SELECT position, event_id, type, source, subject, version, time, correlation_id,"
    " causation_id, actor, tenant_id, message_headers, message_value,"
    " CASE WHEN message_value IS NULL THEN data END AS data"
    " FROM ledger WHERE tenant_id = $1 AND leaf_hash IS NULL ORDER BY position LIMIT $2"
)

_ADOPT = (
    "UPDATE ledger SET leaf_index = u.i, leaf_hash = u.h"
    " FROM unnest($2::bigint[], $3::bigint[], $4::bytea[]) AS u(p, i, h)"
    " WHERE ledger.tenant_id = $1 AND ledger.position = u.p"
)


async def adopt(conn: Connection, head: Head, canonical: Callable[[asyncpg.Record], bytes]) -> Head:
    """Give the tenant's rows stored before the log their places in it (in position order),
    with the head locked; the head after them. Does nothing once done."""
    if head.adopted:
        return head
    while True:
        rows = await conn.fetch(_UNADOPTED, head.tenant_id, ADOPT_CHUNK)
        if not rows:
            break
        appended = extend(head, (canonical(row) for row in rows))
        await conn.execute(
            _ADOPT,
            head.tenant_id,
            [row["position"] for row in rows],
            list(range(appended.first_index, appended.size)),
            appended.leaves,
        )
        await save_tree(conn, head.tenant_id, appended)
        head = Head(
            head.tenant_id,
            appended.size,
            appended.frontier,
            False,
            head.key_id,
            head.configuration,
            head.version,
        )
    await conn.execute(
        "UPDATE ledger_heads SET adopted = true WHERE tenant_id = $1", head.tenant_id
    )
    return Head(
        head.tenant_id,
        head.size,
        head.frontier,
        True,
        head.key_id,
        head.configuration,
        head.version,
    )


async def tenants_to_adopt(conn: Connection) -> list[str]:
    """Tenants whose rows from before the log wait for adoption (an all-tenants transaction)."""
    rows = await conn.fetch("SELECT tenant_id FROM ledger_heads WHERE NOT adopted ORDER BY 1")
    return [row["tenant_id"] for row in rows]


# --- reading the tree --------------------------------------------------------------------------

_NODES = """
SELECT n.level, n.index, n.hash
FROM unnest($2::smallint[], $3::bigint[]) AS u(level, index)
JOIN ledger_nodes n ON n.tenant_id = $1 AND n.level = u.level AND n.index = u.index
UNION ALL
SELECT 0, l.leaf_index, l.leaf_hash
FROM unnest($4::bigint[]) AS u(index)
JOIN ledger l ON l.tenant_id = $1 AND l.leaf_index = u.index
"""


async def nodes(
    conn: Connection, tenant_id: str, refs: Sequence[merkle.NodeRef]
) -> dict[merkle.NodeRef, bytes]:
    """The hashes of complete subtrees (level 0: leaves), in one indexed query."""
    upper = [ref for ref in refs if ref[0] > 0]
    rows = await conn.fetch(
        _NODES,
        tenant_id,
        [level for level, _ in upper],
        [index for _, index in upper],
        [index for level, index in refs if level == 0],
    )
    return {(row[0], row[1]): row[2] for row in rows}


async def root_at(conn: Connection, tenant_id: str, size: int) -> bytes:
    """MTH of the tenant's tree at a size it has reached."""
    refs = merkle.frontier_nodes(size)
    found = await nodes(conn, tenant_id, refs)
    return fold([found[ref] for ref in refs])


async def inclusion_proof(conn: Connection, tenant_id: str, index: int, size: int) -> list[bytes]:
    """PATH(index, D[size]) from the stored nodes (size at most the tree's)."""
    return merkle.inclusion_proof(
        index, size, await nodes(conn, tenant_id, merkle.inclusion_nodes(index, size))
    )


async def consistency_proof(
    conn: Connection, tenant_id: str, first: int, second: int
) -> list[bytes]:
    """PROOF(first, D[second]) from the stored nodes (second at most the tree's size)."""
    return merkle.consistency_proof(
        first, second, await nodes(conn, tenant_id, merkle.consistency_nodes(first, second))
    )


async def leaf_of_event(
    conn: Connection, tenant_id: str, event_id: Any
) -> tuple[int, bytes] | None:
    """The index and leaf hash of an event in its tenant's log; None if it is not there."""
    row = await conn.fetchrow(
        "SELECT leaf_index, leaf_hash FROM ledger WHERE tenant_id = $1 AND event_id = $2"
        " AND leaf_index IS NOT NULL",
        tenant_id,
        event_id,
    )
    return None if row is None else (row[0], row[1])


_ENTRY_COLUMNS = (
    "leaf_index, leaf_hash, position, event_id, type, source, subject, version, time,"
    " correlation_id,"
    " causation_id, actor, tenant_id, topic, partition, message_headers, message_value,"
    " CASE WHEN message_value IS NULL THEN data END AS data"
)


async def entries(conn: Connection, tenant_id: str, start: int, end: int) -> list[asyncpg.Record]:
    """The rows at indexes [start, end) of the tenant's log, in index order."""
    return await conn.fetch(
        f"SELECT {_ENTRY_COLUMNS} FROM ledger"  # noqa: S608 - constant column list
        " WHERE tenant_id = $1 AND leaf_index >= $2 AND leaf_index < $3 ORDER BY leaf_index",
        tenant_id,
        start,
        end,
    )
