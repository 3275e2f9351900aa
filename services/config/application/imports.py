"""Discovery import: stream rows in, reconcile them batch by batch, report every row.

Each batch of rows commits on its own (CIs, versions, relationships, events, row outcomes and
the import's progress together), so progress is visible while the import runs and a failure
loses nothing that was already committed. Batches of imports from the same source queue behind
each other. Rows are applied in input order: a relationship row can name CIs from earlier rows
or earlier imports of the same source.
"""

from __future__ import annotations

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
# Batches after which the tables' statistics are refreshed (1, 4, 16, ... and at the end).
ANALYZE_EVERY = 4


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
    validators: dict[str, Validator] = field(default_factory=dict)

    def attribute_problem(self, ci_class: str, attributes: dict[str, Any]) -> str | None:
        """The first way the attributes break their class schema, or None."""
        validator = self.validators.get(ci_class)
        if validator is None:
            validator = self.validators[ci_class] = classes.validator_for(
                self.schemas.get(ci_class, {})
            )
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
    batch: list[Parsed] = []
    number = 0
    batches = 0
    try:
        async for raw in lines(chunks, run.progress):
            number += 1
            parsed = parse(number, raw)
            if parsed is not None:
                batch.append(parsed)
            if len(batch) >= BATCH_ROWS:
                await _apply(pool, run, batch, metrics)
                batch = []
                batches += 1
                if _power_of(batches, ANALYZE_EVERY):
                    await _analyze(pool, run)
        if batch:
            await _apply(pool, run, batch, metrics)
    except ImportInterrupted as exc:
        await _finish(pool, run, "failed", str(exc))
        raise
    except Exception as exc:
        log.exception("import failed", extra={"import_id": str(run.id)})
        await _finish(pool, run, "failed", f"{type(exc).__name__} after {number} lines")
        raise
    return await _finish(pool, run, "completed", None)


async def _finish(pool: asyncpg.Pool, run: _Run, status: str, error: str | None) -> dict[str, Any]:
    tenant = run.context.tenant_id
    await _analyze(pool, run)
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


async def _analyze(pool: asyncpg.Pool, run: _Run) -> None:
    async with tenant_transaction(pool, run.context.tenant_id) as conn:
        await repository.analyze(conn)


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
        batch.versions.append(VersionEntry(ci, ["created"], run.reason))
        batch.events.append(outbox.Pending(event, str(ci.id), ci.version))
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
    batch.versions.append(VersionEntry(ci, outcome.changed, run.reason))
    batch.events.append(outbox.Pending(outcome.event, str(ci.id), ci.version))
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
