"""Reading the verifiable log: checkpoints, entries and RFC 9162 proofs, with the rules on
which tree sizes a caller may name.

A tree size in a proof request may be any size the tenant's log has reached (0 < size <= the
current size; every complete subtree is stored, so any size's proof is a few nodes): the signed
checkpoint sizes are the ones a caller can check a root against, and proofs to them are what an
auditor asks for, but a size between them is no secret. Without a size, the newest signed
checkpoint's is used.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from typing import Any

from services.reporting.adapters import checkpoints as store
from services.reporting.adapters import ledger, log
from services.reporting.adapters.checkpoints import StoredCheckpoint
from shared.db import Connection
from shared.errors import NotFound, invalid_field

# The most entries one `GET /ledger/entries` returns.
MAX_ENTRIES = 1000


def b64(raw: bytes) -> str:
    """Standard base64 with padding, as the C2SP formats and the export bundle use."""
    return base64.b64encode(raw).decode("ascii")


async def _current_size(conn: Connection, tenant_id: str) -> int:
    head = await log.read_head(conn, tenant_id)
    return 0 if head is None else head.size


async def newest_checkpoint(conn: Connection, tenant_id: str) -> StoredCheckpoint:
    """The tenant's newest signed checkpoint; 404 before its first."""
    checkpoint = await store.latest(conn, tenant_id)
    if checkpoint is None:
        raise NotFound("checkpoint", "of this tenant's log (none is signed yet)")
    return checkpoint


async def _tree_size(
    conn: Connection, tenant_id: str, given: int | None, field: str, *, smallest: int = 1
) -> int:
    """A tree size a proof may name: given (checked), or the newest checkpoint's."""
    if given is None:
        return (await newest_checkpoint(conn, tenant_id)).tree_size
    current = await _current_size(conn, tenant_id)
    if given > current:
        raise invalid_field(
            field, f"the log has {current} entries: {given} is beyond its size", "query"
        )
    if given < smallest:
        raise invalid_field(field, f"must be at least {smallest}", "query")
    return given


async def _signed_note(conn: Connection, tenant_id: str, size: int) -> str | None:
    checkpoint = await store.at_size(conn, tenant_id, size)
    return None if checkpoint is None else checkpoint.note


async def inclusion(
    conn: Connection,
    tenant_id: str,
    *,
    index: int | None,
    event_id: uuid.UUID | None,
    tree_size: int | None,
) -> dict[str, Any]:
    """The inclusion proof of an entry (by index or event id) in a tree size."""
    if index is not None and event_id is not None:
        raise invalid_field("event_id", "give the entry's index or its event_id, not both", "query")
    if index is None and event_id is None:
        raise invalid_field("index", "give the entry's index or its event_id", "query")
    size = await _tree_size(conn, tenant_id, tree_size, "tree_size")
    if event_id is not None:
        found = await log.leaf_of_event(conn, tenant_id, event_id)
        if found is None:
            raise NotFound("event", str(event_id))
        index, leaf = found
        if index >= size:
            raise invalid_field(
                "tree_size",
                f"the event is entry {index}, not in a tree of {size} entries",
                "query",
            )
    else:
        assert index is not None
        if index >= size:
            raise invalid_field("index", f"the tree of size {size} has no entry {index}", "query")
        nodes = await log.nodes(conn, tenant_id, [(0, index)])
        leaf = nodes[(0, index)]
    proof = await log.inclusion_proof(conn, tenant_id, index, size)
    return {
        "index": index,
        "tree_size": size,
        "leaf_hash": b64(leaf),
        "proof": [b64(node) for node in proof],
        "root_hash": b64(await log.root_at(conn, tenant_id, size)),
        "checkpoint": await _signed_note(conn, tenant_id, size),
    }


async def consistency(
    conn: Connection, tenant_id: str, *, first: int, second: int | None
) -> dict[str, Any]:
    """The consistency proof between two tree sizes (first <= second <= the log's size)."""
    size = await _tree_size(conn, tenant_id, second, "second")
    if first > size:
        raise invalid_field(
            "first", f"must not exceed second ({size}): a later tree is not a prefix", "query"
        )
    proof = await log.consistency_proof(conn, tenant_id, first, size)
    return {
        "first": first,
        "second": size,
        "proof": [b64(node) for node in proof],
        "first_root": b64(await log.root_at(conn, tenant_id, first)),
        "second_root": b64(await log.root_at(conn, tenant_id, size)),
        "first_checkpoint": await _signed_note(conn, tenant_id, first),
        "second_checkpoint": await _signed_note(conn, tenant_id, size),
    }


@dataclass(frozen=True)
class EntryPage:
    """Entries [start, end) of the log and its size now."""

    tree_size: int
    entries: list[dict[str, Any]]


async def entries(conn: Connection, tenant_id: str, start: int, end: int | None) -> EntryPage:
    """Up to MAX_ENTRIES entries from `start`, each with its canonical bytes."""
    size = await _current_size(conn, tenant_id)
    if start > size:
        raise invalid_field("start", f"the log has {size} entries", "query")
    stop = min(size, start + MAX_ENTRIES if end is None else end, start + MAX_ENTRIES)
    if end is not None and end < start:
        raise invalid_field("end", "must not be below start", "query")
    rows = await log.entries(conn, tenant_id, start, stop)
    return EntryPage(
        size,
        [
            {
                "index": row["leaf_index"],
                "event_id": row["event_id"],
                "type": row["type"],
                "subject": row["subject"],
                "entry": b64(ledger.canonical_of_row(row)),
            }
            for row in rows
        ],
    )
