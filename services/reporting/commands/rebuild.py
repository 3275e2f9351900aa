"""`python -m services.reporting rebuild [--tenant T] [--check | --into-empty]`: every tenant's
verifiable log rebuilt from Kafka.

Reads every topic the ledger consumes from the earliest offset (a plain consumer, no group),
keeps the records the ledger accepts (a catalogued CloudEvent whose data fits its model, an
id the log does not hold yet) and orders each tenant's entries as its signed checkpoints say:
a `LedgerCheckpointSignedV1` lists, in order, the runs of topic partitions its entries came
from, so following the checkpoints in size order gives the same entries, the same canonical
bytes (`verifier.canonical_of_record`), the same leaves and the same root at every checkpoint
size. Each root is compared with the event's and with its signed note, whose signature is
checked with the key the log itself recorded (`LedgerKeyAddedV1`).

Entries after a tenant's newest checkpoint have no order fixed yet: they are counted (and
appended by `--into-empty` in record timestamp order), never compared.

- no option: rebuild and check against the signed checkpoints; exit 1 naming what differs.
- `--check`: also compare with the stored ledger: its leaves, index by index (the first
  differing index is reported), and its stored checkpoints' roots.
- `--into-empty`: fill an empty ledger (a database lost, restored from Kafka): rows, tree, the
  inbox of the ledger consumer, checkpoints, keys and each tenant's head; then every stored
  checkpoint is verified against the rebuilt tree.

Progress (records read of the partitions' end offsets) is drawn on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import sys
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from services.reporting.adapters import ledger, log
from services.reporting.commands import command_pool
from services.reporting.domain import merkle
from services.reporting.entrypoints.consumers import LEDGER_CONSUMER, LEDGER_TOPICS
from services.reporting.settings import ReportingSettings
from services.reporting.verifier import (
    VerificationError,
    VerifierKey,
    canonical_of_record,
    leaf_hash,
    open_note,
    parse_checkpoint,
    root_of,
)
from shared.db import Connection, all_tenants_transaction, set_tenant
from shared.events.binding import DecodeError, from_kafka, parse_payload
from shared.events.reporting import (
    LEDGER_SUBJECT,
    LedgerCheckpointSignedV1,
    LedgerConfigurationChangedV1,
    LedgerKeyAddedV1,
)
from shared.inbox import ReceivedEvent
from shared.kafka import kafka_options
from shared.progress import ProgressBar

# Rows written per transaction by --into-empty.
WRITE_CHUNK = 2000
# How long to ask the broker for a topic's partitions before calling it missing (seconds).
METADATA_TIMEOUT = 30.0
Partition = tuple[str, int]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's options."""
    parser.add_argument(
        "--tenant", action="append", help="Only this tenant's log (may be given again)."
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--check",
        action="store_true",
        help="Compare with the stored ledger: leaves index by index, and stored checkpoints.",
    )
    mode.add_argument(
        "--into-empty",
        action="store_true",
        help="Fill an empty ledger from Kafka, then verify its checkpoints against it.",
    )


async def run(args: argparse.Namespace, settings: ReportingSettings) -> int:
    """Rebuild, then check or fill; 0 when everything agrees, 1 otherwise."""
    records = await read_topics(kafka_options(settings), LEDGER_TOPICS, sys.stderr)
    logs = rebuild(records, only=args.tenant)
    out = sys.stdout
    failed = report_signed(logs, out)
    for missing in sorted(set(args.tenant or ()) - {t.tenant_id for t in logs}):
        failed = True
        out.write(f"tenant {missing}: FAILED: no event of this tenant is on Kafka\n")
    if not (args.check or args.into_empty):
        return 1 if failed else 0
    pool = await command_pool(settings, "rebuild")
    try:
        if args.check:
            failed |= await check_stored(pool, logs, out, only=args.tenant)
        else:
            if failed:
                out.write("not filling the ledger: the log rebuilt from Kafka is not consistent\n")
                return 1
            failed |= await fill_empty(pool, logs, out, sys.stderr)
    finally:
        await pool.close()
    return 1 if failed else 0


# --- reading Kafka -----------------------------------------------------------------------------


async def read_topics(
    options: Mapping[str, Any], topics: Sequence[str], progress: TextIO | None
) -> dict[Partition, list[ConsumerRecord[bytes, bytes]]]:
    """Every record of the topics up to their end offsets now, per partition in offset order."""
    consumer = AIOKafkaConsumer(
        **options, enable_auto_commit=False, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        partitions: list[TopicPartition] = []
        for topic in topics:
            partitions += [TopicPartition(topic, p) for p in await _partitions_of(consumer, topic)]
        consumer.assign(partitions)
        begin = await consumer.beginning_offsets(partitions)
        end = await consumer.end_offsets(partitions)
        for tp in partitions:  # each position set now, not a lazy reset that may lose a race
            consumer.seek(tp, begin[tp])
        total = sum(end[tp] - begin[tp] for tp in partitions)
        bar = ProgressBar(total, progress, unit="records")
        read: dict[Partition, list[ConsumerRecord[bytes, bytes]]] = {
            (tp.topic, tp.partition): [] for tp in partitions
        }
        left = {tp for tp in partitions if end[tp] > begin[tp]}
        done = 0
        while left:
            batch = await consumer.getmany(*left, timeout_ms=500)
            for tp, records in batch.items():
                wanted = [r for r in records if r.offset < end[tp]]
                read[(tp.topic, tp.partition)].extend(wanted)
                done += len(wanted)
                if not wanted or wanted[-1].offset >= end[tp] - 1:
                    left.discard(tp)
                    consumer.pause(tp)
            for tp in list(left):  # compacted or transactional gaps: the position says
                if await consumer.position(tp) >= end[tp]:
                    left.discard(tp)
            bar.update(done)
        bar.update(done, final=True)
        return read
    finally:
        await consumer.stop()


async def _partitions_of(consumer: AIOKafkaConsumer, topic: str) -> list[int]:
    """The topic's partitions, asking the broker again while its metadata is not there yet (a
    busy broker may answer the first request late): a topic that cannot be found is an error,
    never an empty log."""
    deadline = asyncio.get_running_loop().time() + METADATA_TIMEOUT
    while True:
        found = consumer.partitions_for_topic(topic)
        if found:
            return sorted(found)
        if asyncio.get_running_loop().time() >= deadline:
            raise RuntimeError(f"the broker lists no partitions of {topic}: is it provisioned?")
        await consumer._client.force_metadata_update()
        if not consumer.partitions_for_topic(topic):
            await asyncio.sleep(0.2)  # a retry's pace, not a wait for a result


# --- rebuilding the logs -----------------------------------------------------------------------


@dataclass
class RebuiltCheckpoint:
    """A checkpoint as its event announced it, and the rebuilt log's root at its size."""

    tree_size: int
    root: bytes
    note: str
    key_id: str
    event: ReceivedEvent


@dataclass
class TenantLog:
    """One tenant's log as Kafka rebuilds it."""

    tenant_id: str
    entries: list[ReceivedEvent] = field(default_factory=list)
    leaves: list[bytes] = field(default_factory=list)
    checkpoints: list[RebuiltCheckpoint] = field(default_factory=list)
    # Index of the first entry after the newest checkpoint (entries beyond: order not fixed).
    ordered: int = 0
    problems: list[str] = field(default_factory=list)
    keys: dict[str, VerifierKey] = field(default_factory=dict)


def accepted(
    records: Mapping[Partition, Sequence[ConsumerRecord[bytes, bytes]]],
) -> dict[str, dict[Partition, list[ReceivedEvent]]]:
    """The records the ledger would accept, per tenant and partition, in offset order."""
    out: dict[str, dict[Partition, list[ReceivedEvent]]] = {}
    for partition, found in records.items():
        for record in found:
            try:
                envelope = from_kafka(record.value, record.headers)
                payload = parse_payload(envelope)
            except DecodeError:
                continue  # dead-lettered by the ledger's consumer: not an entry
            tenant = out.setdefault(envelope.tenantid, {})
            tenant.setdefault(partition, []).append(ReceivedEvent(envelope, payload, record))
    return out


def rebuild(
    records: Mapping[Partition, Sequence[ConsumerRecord[bytes, bytes]]],
    *,
    only: Sequence[str] | None,
) -> list[TenantLog]:
    """Every tenant's log (or one), in tenant order."""
    return [
        rebuild_tenant(tenant, queues)
        for tenant, queues in sorted(accepted(records).items())
        if not only or tenant in only
    ]


def rebuild_tenant(
    tenant_id: str, queues: Mapping[Partition, Sequence[ReceivedEvent]]
) -> TenantLog:
    """One tenant's entries in the order its checkpoints' runs give, then the rest."""
    result = TenantLog(tenant_id)
    pending = {partition: deque(events) for partition, events in queues.items()}
    held: set[Any] = set()
    announced: dict[int, ReceivedEvent] = {}
    for events in queues.values():
        for event in events:
            if isinstance(event.payload, LedgerCheckpointSignedV1):
                announced.setdefault(event.payload.tree_size, event)
    frontier: list[bytes] = []

    def take(event: ReceivedEvent) -> None:
        nonlocal frontier
        entry = canonical_of_record(event.record.headers, event.record.value)
        leaf = leaf_hash(entry)
        _, frontier = merkle.append(frontier, len(result.leaves), [leaf])
        held.add(event.envelope.id)
        result.entries.append(event)
        result.leaves.append(leaf)
        if isinstance(event.payload, LedgerKeyAddedV1):
            result.keys[event.payload.key_id] = VerifierKey.parse(event.payload.verifier_key)

    for size in sorted(announced):
        signed = announced[size]
        payload = signed.payload
        assert isinstance(payload, LedgerCheckpointSignedV1)
        if payload.previous_size != len(result.leaves):
            result.problems.append(
                f"the checkpoint at size {size} follows size {payload.previous_size}, but the"
                f" log rebuilt so far has {len(result.leaves)} entries"
            )
            break
        for run in payload.runs:
            queue = pending.get((run.topic, run.partition), deque())
            for _ in range(run.count):
                while queue and queue[0].envelope.id in held:
                    queue.popleft()  # a repeat the ledger's inbox skipped
                if not queue:
                    result.problems.append(
                        f"the checkpoint at size {size} takes {run.count} entries from"
                        f" {run.topic}/{run.partition}, which has fewer left"
                    )
                    break
                take(queue.popleft())
            if result.problems:
                break
        if result.problems:
            break
        if len(result.leaves) != size:
            result.problems.append(
                f"the checkpoint at size {size}: its runs give {len(result.leaves)} entries"
            )
            break
        root = merkle.root_of_frontier(frontier, len(result.leaves))
        result.checkpoints.append(
            RebuiltCheckpoint(size, root, payload.note, payload.key_id, signed)
        )
        problem = _signed_problem(result, payload, root)
        if problem:
            result.problems.append(problem)
            break
        result.ordered = len(result.leaves)
    # The rest: no checkpoint fixes their order yet (record time, then where they were read).
    rest = sorted(
        (event for queue in pending.values() for event in queue),
        key=lambda e: (e.record.timestamp, e.record.topic, e.record.partition, e.record.offset),
    )
    for event in rest:
        if event.envelope.id not in held:
            take(event)
    return result


def _signed_problem(log_: TenantLog, payload: LedgerCheckpointSignedV1, root: bytes) -> str | None:
    """What is wrong between a rebuilt root and its signed checkpoint (None: they agree)."""
    size = payload.tree_size
    if base64.b64encode(root).decode("ascii") != payload.root_hash:
        return (
            f"the root at size {size} is {base64.b64encode(root).decode()}, the checkpoint"
            f" event says {payload.root_hash}"
        )
    key = log_.keys.get(payload.key_id)
    if key is None:
        return f"the checkpoint at size {size} is signed by key {payload.key_id}, not in the log"
    try:
        checkpoint = parse_checkpoint(open_note(payload.note, [key]))
    except VerificationError as exc:
        return f"the signed note at size {size}: {exc}"
    if checkpoint.size != size or checkpoint.root != root or checkpoint.origin != payload.origin:
        return f"the signed note at size {size} does not say the rebuilt size and root"
    return None


def report_signed(logs: Iterable[TenantLog], out: TextIO) -> bool:
    """One line per tenant; whether any log disagrees with its signed checkpoints."""
    failed = False
    for tenant in logs:
        tail = len(tenant.leaves) - tenant.ordered
        if tenant.problems:
            failed = True
            out.write(f"tenant {tenant.tenant_id}: FAILED: {tenant.problems[0]}\n")
            continue
        out.write(
            f"tenant {tenant.tenant_id}: {len(tenant.leaves)} entries rebuilt,"
            f" {len(tenant.checkpoints)} signed checkpoints agree"
            f" (up to size {tenant.ordered}); {tail} after the newest checkpoint\n"
        )
    return failed


# --- comparing with the stored ledger ----------------------------------------------------------


async def check_stored(
    pool: asyncpg.Pool, logs: Sequence[TenantLog], out: TextIO, *, only: Sequence[str] | None
) -> bool:
    """Compare each rebuilt log with the stored one; whether anything differs."""
    failed = False
    async with all_tenants_transaction(pool) as conn:
        stored_tenants = {
            r["tenant_id"]
            for r in await conn.fetch("SELECT tenant_id FROM ledger_heads WHERE size > 0")
        }
    rebuilt = {t.tenant_id: t for t in logs}
    for tenant_id in sorted(stored_tenants | set(rebuilt)):
        if only and tenant_id not in only:
            continue
        tenant = rebuilt.get(tenant_id, TenantLog(tenant_id))
        async with pool.acquire() as conn, conn.transaction(readonly=True):
            await set_tenant(conn, tenant_id)
            problem = await _compare(conn, tenant)
        if problem:
            failed = True
            out.write(f"tenant {tenant_id}: DIFFERS: {problem}\n")
        else:
            out.write(f"tenant {tenant_id}: the stored ledger agrees up to size {tenant.ordered}\n")
    return failed


async def _compare(conn: Connection, tenant: TenantLog) -> str | None:
    """The first difference between a stored log and its rebuild (None: they agree)."""
    index = 0
    async for row in conn.cursor(
        "SELECT leaf_index, leaf_hash, event_id FROM ledger WHERE tenant_id = $1"
        " AND leaf_index < $2 ORDER BY leaf_index",
        tenant.tenant_id,
        tenant.ordered,
        prefetch=5000,
    ):
        if row["leaf_index"] != index:
            return f"first differing index {index}: the stored log has no entry there"
        if row["leaf_hash"] != tenant.leaves[index]:
            return (
                f"first differing index {index}: stored event {row['event_id']}, Kafka gives"
                f" event {tenant.entries[index].envelope.id} (leaves differ)"
            )
        index += 1
    if index < tenant.ordered:
        return f"first differing index {index}: the stored log ends at size {index}"
    roots = {c.tree_size: c.root for c in tenant.checkpoints}
    for row in await conn.fetch(
        "SELECT tree_size, root_hash FROM ledger_checkpoints WHERE tenant_id = $1"
        " ORDER BY tree_size",
        tenant.tenant_id,
    ):
        size = row["tree_size"]
        if size > tenant.ordered:
            # Its event was not on Kafka when the records were read: beyond the order the
            # checkpoints fix, the rebuild's order is a guess, so there is nothing to compare.
            continue
        root = roots.get(size) or root_of(tenant.leaves[:size])
        if root != bytes(row["root_hash"]):
            return f"the stored checkpoint at size {size} has another root than the rebuild"
    return None


# --- filling an empty ledger -------------------------------------------------------------------


async def fill_empty(
    pool: asyncpg.Pool, logs: Sequence[TenantLog], out: TextIO, progress: TextIO | None
) -> bool:
    """Write the rebuilt logs into an empty ledger, then verify its checkpoints; whether
    anything failed (a ledger that is not empty is left alone)."""
    async with all_tenants_transaction(pool) as conn:
        rows = await conn.fetchval("SELECT count(*) FROM ledger")
        heads = await conn.fetchval("SELECT count(*) FROM ledger_heads")
    if rows or heads:
        out.write(f"the ledger is not empty ({rows} rows): --into-empty fills an empty one\n")
        return True
    bar = ProgressBar(sum(len(t.entries) for t in logs), progress, unit="entries")
    written = 0
    failed = False
    for tenant in logs:
        for start in range(0, len(tenant.entries), WRITE_CHUNK):
            chunk = tenant.entries[start : start + WRITE_CHUNK]
            async with pool.acquire() as conn, conn.transaction():
                await set_tenant(conn, tenant.tenant_id)
                await _write(conn, chunk)
            written += len(chunk)
            bar.update(written)
        async with pool.acquire() as conn, conn.transaction():
            await set_tenant(conn, tenant.tenant_id)
            await _restore_metadata(conn, tenant)
            problem = await _verify_checkpoints(conn, tenant)
        if problem:
            failed = True
            out.write(f"tenant {tenant.tenant_id}: FAILED after filling: {problem}\n")
        else:
            out.write(
                f"tenant {tenant.tenant_id}: {len(tenant.entries)} entries written,"
                f" {len(tenant.checkpoints)} stored checkpoints verify against them\n"
            )
    bar.update(written, final=True)
    return failed


async def _write(conn: Connection, chunk: Sequence[ReceivedEvent]) -> None:
    """Rows and tree as the ledger's consumer writes them, and its inbox: restarted, the
    consumer skips what the ledger holds again."""
    await conn.execute(
        "INSERT INTO inbox (consumer, event_id, tenant_id, event_type)"
        " SELECT $1, * FROM unnest($2::uuid[], $3::text[], $4::text[]) ON CONFLICT DO NOTHING",
        LEDGER_CONSUMER,
        [e.envelope.id for e in chunk],
        [e.envelope.tenantid for e in chunk],
        [e.envelope.type for e in chunk],
    )
    await ledger.append_many(conn, chunk)


async def _restore_metadata(conn: Connection, tenant: TenantLog) -> None:
    """The tenant's checkpoints, the keys that signed them, and what its head remembers (its
    key, configuration and the number of the ledger's own events), from the log's events."""
    for checkpoint in tenant.checkpoints:
        await conn.execute(
            "INSERT INTO ledger_checkpoints (tenant_id, tree_size, root_hash, note, key_id,"
            " signed_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            tenant.tenant_id,
            checkpoint.tree_size,
            checkpoint.root,
            checkpoint.note,
            checkpoint.key_id,
            checkpoint.event.envelope.time,
        )
    key_id: str | None = None
    configuration: dict[str, Any] = {}
    version = 0
    for event in tenant.entries:
        payload = event.payload
        if event.envelope.subject == LEDGER_SUBJECT:
            version = max(version, event.envelope.itsmversion)
        if isinstance(payload, LedgerKeyAddedV1):
            key_id = payload.key_id
            await conn.execute(
                "INSERT INTO ledger_keys (key_id, verifier_key, first_used)"
                " VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                payload.key_id,
                payload.verifier_key,
                payload.activated_at,
            )
            if payload.previous_key_id is not None:
                await conn.execute(
                    "UPDATE ledger_keys SET retired_at = $2"
                    " WHERE key_id = $1 AND retired_at IS NULL",
                    payload.previous_key_id,
                    payload.activated_at,
                )
        elif isinstance(payload, LedgerConfigurationChangedV1):
            configuration.update(
                {name: change.get("to") for name, change in payload.changes.items()}
            )
    await conn.execute(
        "UPDATE ledger_heads SET key_id = $2, configuration = $3, version = $4"
        " WHERE tenant_id = $1",
        tenant.tenant_id,
        key_id,
        configuration or None,
        version,
    )


async def _verify_checkpoints(conn: Connection, tenant: TenantLog) -> str | None:
    """Every stored checkpoint's root against the tree just written (None: all agree)."""
    for row in await conn.fetch(
        "SELECT tree_size, root_hash FROM ledger_checkpoints WHERE tenant_id = $1",
        tenant.tenant_id,
    ):
        if await log.root_at(conn, tenant.tenant_id, row["tree_size"]) != bytes(row["root_hash"]):
            return f"the checkpoint at size {row['tree_size']} does not match the stored tree"
    return None
