"""The verifiable log on the real broker and database: dense indexes per tenant, leaves and
complete subtrees that match the stored messages, rows from before the log adopted first."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from services.reporting.adapters import log
from services.reporting.adapters.ledger import canonical_of_row, encode_headers
from services.reporting.domain import merkle
from services.reporting.verifier import complete_subtrees, leaf_hash, root_of
from shared.db import tenant_transaction
from shared.events.catalogue import INCIDENT_EVENTS
from tests.support import eventually, fetch_as, incident_event, send_event

_ROWS = (
    "SELECT position, leaf_index, leaf_hash, event_id, type, source, subject, version, time,"
    " correlation_id, causation_id, actor, tenant_id, message_headers, message_value,"
    " CASE WHEN message_value IS NULL THEN data END AS data FROM ledger ORDER BY position"
)


async def log_rows(pools, tenant):
    return await fetch_as(pools["reporting"], tenant, _ROWS)


async def assert_log_matches_rows(pools, tenant, expected: int) -> list[bytes]:
    """Indexes 0..n-1 in storage order, each leaf the hash of the row's canonical bytes, every
    complete subtree stored with its hash, and the head's root the tree's root."""
    rows = await log_rows(pools, tenant)
    assert len(rows) == expected
    assert [r["leaf_index"] for r in rows] == list(range(expected))
    leaves = [leaf_hash(canonical_of_row(r)) for r in rows]
    assert [r["leaf_hash"] for r in rows] == leaves
    async with tenant_transaction(pools["reporting"], tenant) as conn:
        head = await log.read_head(conn, tenant)
        stored = {
            (r["level"], r["index"]): r["hash"]
            for r in await conn.fetch("SELECT level, index, hash FROM ledger_nodes")
        }
    assert head is not None
    assert head.size == expected
    assert head.root == root_of(leaves)
    wanted = {
        (level, index): root_of(leaves[index << level : (index + 1) << level])
        for level in range(1, expected.bit_length())
        for index in range(expected >> level)
    }
    assert stored == wanted
    return leaves


async def test_two_tenants_interleaved_get_dense_indexes_in_storage_order_with_two_replicas(
    start_runtime, pools, producer
):
    # The checkpointers' first round finds no log; their next is an hour away: only the
    # incidents enter these logs.
    await start_runtime("reporting", checkpoint_interval_seconds=3600)
    await start_runtime("reporting", checkpoint_interval_seconds=3600)
    tenants = [f"t-{uuid.uuid4().hex[:12]}" for _ in range(2)]
    for n in range(24):
        # Subjects are the Kafka keys: the events spread over the partitions, so both
        # replicas' batches hold both tenants.
        await send_event(producer, incident_event(tenants[n % 2]), INCIDENT_EVENTS)

    for tenant in tenants:
        await eventually(lambda t=tenant: log_rows(pools, t), lambda rows: len(rows) == 12)
        await assert_log_matches_rows(pools, tenant, 12)


async def test_rows_stored_before_the_log_join_it_first_in_position_order(
    start_runtime, pools, producer, tenant
):
    # Rows as migrations 0001-0003 left them: some without a message (before 0003), one with.
    old = [incident_event(tenant, title=f"old {n}") for n in range(3)]
    pool = pools["reporting"]
    async with tenant_transaction(pool, tenant) as conn:
        # As the migration found them: written before the log, so without their leaves (the
        # service's role owns the table; the trigger is off only inside this transaction).
        await conn.execute("ALTER TABLE ledger DISABLE TRIGGER ledger_row_is_complete")
        for n, envelope in enumerate(old):
            with_message = n == 2
            await conn.execute(
                "INSERT INTO ledger (tenant_id, event_id, type, source, subject, version, time,"
                " correlation_id, causation_id, actor, data, topic, partition, kafka_offset,"
                " message_value, message_headers)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, $9, $10, $11, 0, $12, $13, $14)",
                tenant,
                envelope.id,
                envelope.type,
                envelope.source,
                envelope.subject,
                envelope.itsmversion,
                envelope.time,
                envelope.correlationid,
                envelope.actor,
                envelope.data,
                INCIDENT_EVENTS,
                n,
                b'{"title": "old 2"}' if with_message else None,
                encode_headers([("ce_id", str(envelope.id).encode())]) if with_message else None,
            )
        await conn.execute("ALTER TABLE ledger ENABLE TRIGGER ledger_row_is_complete")
        await conn.execute(
            "INSERT INTO ledger_heads (tenant_id, adopted) VALUES ($1, false)", tenant
        )

    # Its first round adopts the old rows (or the first append does, whichever comes first)
    # and records the key and configuration; its next round is an hour away.
    await start_runtime("reporting", checkpoint_interval_seconds=3600)
    new = incident_event(tenant, title="new")
    await send_event(producer, new, INCIDENT_EVENTS)

    rows = await eventually(lambda: log_rows(pools, tenant), lambda rows: len(rows) == 6)
    assert [r["event_id"] for r in rows[:3]] == [e.id for e in old]
    assert new.id in [r["event_id"] for r in rows[3:]]
    await assert_log_matches_rows(pools, tenant, 6)
    # The row from before messages: its bytes are rebuilt from its attributes and data.
    assert b'"tenantid":"' + tenant.encode() in canonical_of_row(rows[0])
    assert rows[0]["time"] <= datetime.now(UTC)


async def test_a_stored_row_cannot_be_changed_except_by_adopting_it_once(pools, tenant):
    pool = pools["reporting"]
    with pytest.raises(Exception, match="append-only"):
        async with tenant_transaction(pool, tenant) as conn:
            await conn.execute(
                "UPDATE ledger SET leaf_hash = $1 WHERE tenant_id = $2", bytes(32), tenant
            )
            await conn.execute("INSERT INTO ledger_nodes VALUES ($1, 1, 0, $2)", tenant, bytes(32))
            await conn.execute("DELETE FROM ledger_nodes WHERE tenant_id = $1", tenant)


def test_the_frontier_of_a_size_is_its_complete_subtrees():
    assert merkle.frontier_nodes(13) == complete_subtrees(0, 13) == [(3, 0), (2, 2), (0, 12)]
