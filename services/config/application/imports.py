"""Discovery import: stream rows in, reconcile them batch by batch, report every row.

Each batch of rows commits on its own (CIs, versions, relationships, events, row outcomes and
the import's progress together), so progress is visible while the import runs and a failure
loses nothing that was already committed. Batches of imports from the same source queue behind
each other. Rows are applied in input order: a relationship row can name CIs from earlier rows
or earlier imports of the same source.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from jsonschema.protocols import Validator

from services.config.adapters import cis as cis_repository
from services.config.adapters import imports as repository
from services.config.adapters import membership as membership_repository
from services.config.adapters.imports import RowResult, VersionEntry
from services.config.application import catalogue, membership
from services.config.application.relationships import wire
from services.config.domain import classes
from services.config.domain.ci import ConfigurationItem, modify, register
from services.config.domain.imports import (
    OUTCOMES,
    CiRow,
    CsvRows,
    Format,
    Parsed,
    RelationshipRow,
    lines,
    parse_jsonl_line,
    reconcile,
    row_key,
)
from services.config.metrics import ConfigMetrics
from shared import outbox
from shared.db import Connection, tenant_transaction
from shared.events.catalogue import DriftDetectedV1, ImportCompletedV1, RelationshipAddedV1
from shared.http.context import RequestContext

log = logging.getLogger(__name__)

BATCH_ROWS = 1000
# Batches after which the tables' statistics are refreshed (1, 4, 16, ... and at the end), for
# the tables the import wrote enough of (see adapters.imports.analyze).
ANALYZE_EVERY = 4
# Parsed batches waiting for their turn while one is applied: reading and parsing the next
# rows overlaps the database's work on the current ones, and memory stays bounded.
READ_AHEAD = 1
# Lines parsed between two yields to the event loop: the batch being applied resumes as soon
# as the database answers instead of waiting for the reader to finish a whole chunk.
READ_SLICE = 100


class ImportInterrupted(Exception):
    """The input stream ended abnormally (the client went away, the body was too large)."""


@dataclass
class _Run:
    """One import while it runs."""

    id: uuid.UUID
    source: str
    context: RequestContext
    schemas: dict[str, dict[str, Any]]
    progress: list[int] = field(default_factory=lambda: [0])
    # Per class: its compiled validator and its quick check (see classes.quick_check).
    validators: dict[str, tuple[Validator, classes.QuickCheck | None]] = field(default_factory=dict)
    lines: int = 0
    # Rows written per table since its statistics were last refreshed by this import.
    written: Counter[str] = field(default_factory=Counter)

    def attribute_problem(self, ci_class: str, attributes: dict[str, Any]) -> str | None:
        """The first way the attributes break their class schema, or None."""
        checks = self.validators.get(ci_class)
        if checks is None:
            schema = self.schemas.get(ci_class, {})
            checks = self.validators[ci_class] = (
                classes.validator_for(schema),
                classes.quick_check(schema),
            )
        validator, quick = checks
        if quick is not None and quick(attributes):
            return None
        problems = classes.validate_with(validator, attributes)
        if not problems:
            return None
        first = classes.problem_errors(problems)[0]
        return f"{first['field']}: {first['detail']}"

    @property
    def reason(self) -> str:
        return f"discovery import {self.id} from {self.source}"


@dataclass
class _Batch:
    """What one batch writes, gathered while its rows are reconciled in order."""

    results: list[RowResult] = field(default_factory=list)
    created: dict[uuid.UUID, ConfigurationItem] = field(default_factory=dict)
    updated: dict[uuid.UUID, ConfigurationItem] = field(default_factory=dict)
    versions: list[VersionEntry] = field(default_factory=list)
    claims: list[tuple[str, uuid.UUID]] = field(default_factory=list)
    events: list[outbox.Pending] = field(default_factory=list)
    wanted: list[tuple[int, tuple[str, uuid.UUID, uuid.UUID]]] = field(default_factory=list)
    seeds: set[uuid.UUID] = field(default_factory=set)
    drift: int = 0
    written: Counter[str] = field(default_factory=Counter)


async def known_schemas(pool: asyncpg.Pool, tenant_id: str) -> dict[str, dict[str, Any]]:
    """Every class the tenant can use now: built-in and its own."""
    async with tenant_transaction(pool, tenant_id, readonly=True) as conn:
        own = await cis_repository.tenant_classes(conn, tenant_id)
    return {
        **{name: dict(schema) for name, schema in classes.BUILTIN_CLASSES.items()},
        **{c["name"]: c["attribute_schema"] for c in own},
    }


async def start_import(
    pool: asyncpg.Pool, *, source: str, format_: Format, context: RequestContext
) -> _Run:
    """Record a running import (visible to GET /imports/{id} from now on)."""
    run = _Run(uuid.uuid4(), source, context, await known_schemas(pool, context.tenant_id))
    async with tenant_transaction(pool, context.tenant_id) as conn:
        await repository.start(
            conn,
            context.tenant_id,
            run.id,
            source=source,
            format_=format_,
            actor=context.actor,
            now=datetime.now(UTC),
        )
    return run


async def run_import(
    pool: asyncpg.Pool,
    run: _Run,
    *,
    format_: Format,
    chunks: AsyncIterator[bytes],
    metrics: ConfigMetrics | None = None,
) -> dict[str, Any]:
    """Read the whole stream, apply it batch by batch, finish the import; return its record.

    A stream that breaks off marks the import failed (what was committed stays) and raises
    ImportInterrupted; any other error marks it failed and propagates.
    """
    parse: Callable[[int, bytes], Parsed | None]
    parse = CsvRows(run.schemas).parse if format_ == "csv" else parse_jsonl_line
    queue: asyncio.Queue[list[Parsed] | Exception | None] = asyncio.Queue(READ_AHEAD)
    reader = asyncio.create_task(_read(chunks, parse, run, queue))
    batches = 0
    try:
        while (batch := await queue.get()) is not None:
            if isinstance(batch, Exception):
                raise batch
            await _apply(pool, run, batch, metrics)
            batches += 1
            if _power_of(batches, ANALYZE_EVERY):
                await _analyze(pool, run, final=False)
    except ImportInterrupted as exc:
        await _finish(pool, run, "failed", str(exc))
        raise
    except Exception as exc:
        log.exception("import failed", extra={"import_id": str(run.id)})
        await _finish(pool, run, "failed", f"{type(exc).__name__} after {run.lines} lines")
        raise
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    return await _finish(pool, run, "completed", None)


async def _read(
    chunks: AsyncIterator[bytes],
    parse: Callable[[int, bytes], Parsed | None],
    run: _Run,
    queue: asyncio.Queue[list[Parsed] | Exception | None],
) -> None:
    """Split and parse the stream into batches for run_import; then None, or the error."""
    batch: list[Parsed] = []
    try:
        async for raw in lines(chunks, run.progress):
            run.lines += 1
            parsed = parse(run.lines, raw)
            if parsed is not None:
                batch.append(parsed)
            if len(batch) >= BATCH_ROWS:
                await queue.put(batch)
                batch = []
            elif run.lines % READ_SLICE == 0:
                await asyncio.sleep(0)
        if batch:
            await queue.put(batch)
    except Exception as exc:  # handed over: run_import decides what it means for the import
        await queue.put(exc)
    else:
        await queue.put(None)


async def _finish(pool: asyncpg.Pool, run: _Run, status: str, error: str | None) -> dict[str, Any]:
    tenant = run.context.tenant_id
    await _analyze(pool, run, final=True)
    # What the committed batches changed in the graph, published before the import is done.
    await membership.settle(
        pool, tenant, actor=run.context.actor, correlation_id=run.context.correlation_id
    )
    now = datetime.now(UTC)
    async with tenant_transaction(pool, tenant) as conn:
        record = await repository.finish(
            conn, tenant, run.id, status=status, bytes_read=run.progress[0], now=now, error=error
        )
        await outbox.append(
            conn,
            ImportCompletedV1(
                import_id=str(run.id),
                source=run.source,
                status="completed" if status == "completed" else "failed",
                rows=record["rows"],
                outcomes={o: record[o] for o in OUTCOMES},
                started_at=record["started_at"],
                finished_at=now,
                error=error,
            ),
            subject=f"import/{run.id}",
            tenant_id=tenant,
            sequence=1,
            actor=run.context.actor,
            correlation_id=run.context.correlation_id,
        )
    return record


def _power_of(n: int, base: int) -> bool:
    while n % base == 0:
        n //= base
    return n == 1


async def _analyze(pool: asyncpg.Pool, run: _Run, *, final: bool) -> None:
    """Refresh statistics the import made stale: while it runs, of the tables its batches read
    back; at the end, of everything it grew (before the membership walk reads the graph)."""
    if not run.written:
        return  # nothing written since the last time: nothing to refresh (a re-import)
    tables = repository.GROWN if final else repository.READ_BY_BATCHES
    async with tenant_transaction(pool, run.context.tenant_id) as conn:
        refreshed = await repository.analyze(conn, run.written, tables, derived=final)
    for table in refreshed:
        run.written.pop(table, None)


async def _apply(
    pool: asyncpg.Pool, run: _Run, parsed: list[Parsed], metrics: ConfigMetrics | None
) -> None:
    tenant = run.context.tenant_id
    async with tenant_transaction(pool, tenant) as conn:
        await repository.lock_source(conn, tenant, run.source)
        batch = await _reconcile(conn, run, parsed)
        await _write(conn, run, batch)
        counts = Counter(r.outcome for r in batch.results)
        await repository.record_rows(conn, tenant, run.id, batch.results)
        await repository.advance(conn, tenant, run.id, dict(counts), run.progress[0])
    run.written.update(batch.written)
    if metrics is not None:
        for outcome, n in counts.items():
            metrics.import_rows.labels(outcome).inc(n)
        metrics.drift_events.inc(batch.drift)


async def _reconcile(conn: Connection, run: _Run, parsed: list[Parsed]) -> _Batch:
    """Decide every row's outcome in input order; nothing is written yet."""
    tenant, source, actor = run.context.tenant_id, run.source, run.context.actor
    now = datetime.now(UTC)
    ci_keys = sorted({p.row.external_id for p in parsed if isinstance(p.row, CiRow)})
    known = await repository.by_external_id(conn, tenant, source, ci_keys)
    ends = {
        e
        for p in parsed
        if isinstance(p.row, RelationshipRow)
        for e in (p.row.source, p.row.target)
    }
    others = await repository.ci_ids(conn, tenant, source, sorted(ends - set(known)))
    batch = _Batch()
    for p in parsed:
        row = p.row
        if row is None:
            batch.results.append(RowResult(p.line, "unknown", p.key, "rejected", p.reason))
        elif isinstance(row, CiRow):
            batch.results.append(_ci_row(run, batch, known, p.line, row, actor, now))
        else:
            batch.results.append(_relationship_row(batch, known, others, p.line, row))
    return batch


def _ci_row(
    run: _Run,
    batch: _Batch,
    known: dict[str, ConfigurationItem],
    line: int,
    row: CiRow,
    actor: str,
    now: datetime,
) -> RowResult:
    key = row.external_id
    current = known.get(key)
    if current is None:
        if row.ci_class not in run.schemas:
            return RowResult(
                line, "ci", key, "rejected", f"class: no CI class named {row.ci_class!r}"
            )
        problem = run.attribute_problem(row.ci_class, row.attributes or {})
        if problem:
            return RowResult(line, "ci", key, "rejected", problem)
        ci, event = register(
            tenant_id=run.context.tenant_id,
            ci_class=row.ci_class,
            name=row.name,
            status=row.status or "active",
            owner_team=row.owner_team,
            criticality=row.criticality or 3,
            attributes=row.attributes or {},
            external_ids={run.source: key},
            controlled=False,
            actor=actor,
            now=now,
            source=run.source,
        )
        known[key] = ci
        batch.created[ci.id] = ci
        batch.claims.append((key, ci.id))
        # Dumped once: the event carries the state that the history keeps.
        data = event.model_dump(mode="json")
        batch.versions.append(VersionEntry(ci, ["created"], run.reason, data["ci"]))
        batch.events.append(outbox.Pending(event, str(ci.id), ci.version, data))
        if ci.ci_class == "business_service":
            batch.seeds.add(ci.id)
        return RowResult(line, "ci", key, "created", ci_id=ci.id)

    decision = reconcile(current, row)
    if decision.outcome == "drift":
        batch.drift += 1
        drift = DriftDetectedV1(
            ci=current.state(),
            source=run.source,
            import_id=str(run.id),
            differences=decision.differences,
        )
        batch.events.append(outbox.Pending(drift, str(current.id), current.version))
        detail = "controlled CI differs: " + ", ".join(decision.differences)
        return RowResult(line, "ci", key, "drift", detail, current.id)
    if decision.outcome != "updated":
        return RowResult(line, "ci", key, decision.outcome, decision.reason, current.id)
    if "attributes" in decision.changes:
        problem = run.attribute_problem(current.ci_class, decision.changes["attributes"])
        if problem:
            return RowResult(line, "ci", key, "rejected", problem, current.id)
    outcome = modify(
        current, decision.changes, actor=actor, now=now, reason=run.reason, source=run.source
    )
    assert outcome.event is not None
    ci = outcome.ci
    known[key] = ci
    if ci.id in batch.created:
        batch.created[ci.id] = ci  # created earlier in this batch: insert the latest state
    else:
        batch.updated[ci.id] = ci
    data = outcome.event.model_dump(mode="json")
    batch.versions.append(VersionEntry(ci, outcome.changed, run.reason, data["ci"]))
    batch.events.append(outbox.Pending(outcome.event, str(ci.id), ci.version, data))
    if ci.status == "retired":
        batch.seeds.add(ci.id)
    return RowResult(line, "ci", key, "updated", ci_id=ci.id)


def _relationship_row(
    batch: _Batch,
    known: dict[str, ConfigurationItem],
    others: dict[str, tuple[uuid.UUID, str]],
    line: int,
    row: RelationshipRow,
) -> RowResult:
    ends: list[uuid.UUID] = []
    for field_name, external_id in (("source", row.source), ("target", row.target)):
        ci = known.get(external_id)
        found = (ci.id, ci.status) if ci is not None else others.get(external_id)
        if found is None:
            reason = f"{field_name}: no CI with external id {external_id!r} from this source"
            return RowResult(line, "relationship", row_key(row), "rejected", reason)
        if found[1] == "retired":
            reason = f"{field_name}: the CI with external id {external_id!r} is retired"
            return RowResult(line, "relationship", row_key(row), "rejected", reason)
        ends.append(found[0])
    if ends[0] == ends[1]:
        return RowResult(
            line, "relationship", row_key(row), "rejected", "target: the same CI as source"
        )
    batch.wanted.append((len(batch.results), (row.type, ends[0], ends[1])))
    # Settled once the batch is written: created, or unchanged if it was in place.
    return RowResult(line, "relationship", row_key(row), "unchanged")


async def _write(conn: Connection, run: _Run, batch: _Batch) -> None:
    """Write the batch set-based, settle relationship outcomes, queue the events."""
    tenant, actor = run.context.tenant_id, run.context.actor
    await repository.insert_cis(conn, list(batch.created.values()))
    await repository.claim_external_ids(conn, tenant, run.source, batch.claims)
    await repository.update_cis(conn, list(batch.updated.values()))
    await repository.record_versions(conn, tenant, run.source, batch.versions)
    added = await repository.add_relationships(
        conn, tenant, [w for _, w in batch.wanted], actor=actor, now=datetime.now(UTC)
    )
    for table, rows in (
        ("cis", len(batch.created) + len(batch.updated)),
        ("ci_external_ids", len(batch.claims)),
        ("relationships", len(added)),
    ):
        if rows:
            batch.written[table] += rows
    fresh = {(r["type"], r["source_id"], r["target_id"]): r for r in added}
    for index, wanted in batch.wanted:
        row = fresh.pop(wanted, None)
        if row is None:
            continue
        result = batch.results[index]
        batch.results[index] = RowResult(result.line, result.kind, result.key, "created")
        batch.events.append(
            outbox.Pending(RelationshipAddedV1(relationship=wire(row)), str(row["id"]), 1)
        )
        batch.seeds.add(membership.dependency_of(row["type"], row["source_id"], row["target_id"]))
    await outbox.append_many(
        conn, batch.events, tenant_id=tenant, actor=actor, correlation_id=run.context.correlation_id
    )
    services = [*batch.created.values(), *batch.updated.values()]
    for ci in (c for c in services if c.ci_class == "business_service"):
        await catalogue.announce_business_service(
            conn, ci, actor=actor, correlation_id=run.context.correlation_id
        )
    # Settled once when the import finishes: one walk instead of one per batch.
    await membership_repository.mark_pending(conn, tenant, sorted(batch.seeds))
