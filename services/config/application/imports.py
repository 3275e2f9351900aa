"""Discovery import: stream rows in, reconcile them batch by batch, report every row.

Each batch of rows commits on its own (CIs, versions, relationships, events, row outcomes and
the import's progress together), so progress is visible while the import runs and a failure
loses nothing that was already committed. Batches of imports from the same source queue behind
each other. Rows are applied in input order: a relationship row can name CIs from earlier rows
or earlier imports of the same source.

Batches are pipelined: while one batch is written, the next is decided (its CIs read, its rows
reconciled in Python), so that the service and the database work at the same time instead of
taking turns. The next batch reads what is committed and sees the batch being written through
an overlay of the CIs that batch writes. Nothing is locked while a batch is decided: its
writes check that every CI it updates is still at the version it read and that no external
id it claims was claimed meanwhile. If either changed (another writer came between), the
batch is decided again under locks, in its own transaction, and the batch after it too.

An upload that commits as it reads cannot run in the shared Idempotency-Key middleware's one
request transaction, so the import honours the key itself: the run records the caller's key
(per tenant and caller, like the middleware's). A retry of a completed import is answered with
that import (nothing applied again); a retry while it runs gets 409; a failed import lets its
key go when it fails, so its retry runs afresh as a new import. Unlike the middleware, only the
source and format are compared with the first request, not the body (read only as it streams).
Key syntax, retention and the refusals are the shared ones (`shared/idempotency.py`).

Starting and finishing an import are use cases in a unit of work (`start_import`,
`finish_import`). The batches are the bulk path and keep their own transactions: each writes
its CIs, versions, relationships and rows set-based, and its events encoded ahead
(`outbox.encode_many` while the batch before is written, `outbox.insert_encoded` in its
transaction). A unit of work would validate and encode the events at commit, one by one and
on the write path, undoing the pipelining that sets the import's throughput (measured by
`python -m tests.benchmarks.cmdb`).
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
from functools import cached_property
from typing import Any

import asyncpg
from jsonschema.protocols import Validator
from pydantic import TypeAdapter

from services.config.adapters import imports as repository
from services.config.adapters import membership as membership_repository
from services.config.adapters.imports import RowResult, VersionEntry
from services.config.adapters.repositories import PostgresCatalogue
from services.config.application import catalogue, membership, validators
from services.config.application.uow import ConfigUnit, ConfigUnitOfWork
from services.config.domain import classes
from services.config.domain.change_control import ChangeControl, unauthorized_drift
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
from shared import idempotency, outbox
from shared.context import RequestContext
from shared.db import Connection, tenant_transaction
from shared.events.catalogue import (
    CiCreatedV1,
    CiStateV1,
    DriftDetectedV1,
    ImportCompletedV1,
    RelationshipAddedV1,
    RelationshipV1,
)
from shared.ids import new_id
from shared.outbox import encode_data

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
# Rows decided between two yields while the batch before is written: that batch's next
# statement goes out soon after the database answers the last one.
DECIDE_SLICE = 20
# Claims of an Idempotency-Key: one more than a failed import letting it go meanwhile needs.
CLAIM_ATTEMPTS = 3
# How events write times (pydantic's JSON form of a datetime).
_TIME: TypeAdapter[datetime] = TypeAdapter(datetime)


class ImportInterrupted(Exception):
    """The input stream ended abnormally (the client went away, the body was too large)."""


class _Stale(Exception):
    """A batch decided without locks met a CI or external id that changed since it was read."""


@dataclass
class _Run:
    """One import while it runs."""

    id: uuid.UUID
    source: str
    context: RequestContext
    schemas: dict[str, dict[str, Any]]
    # The classes under change control: a difference on their CIs is drift.
    control: ChangeControl = field(default_factory=ChangeControl)
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
                validators.validator_for(schema),
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
    # (index of the row's result, (id, type, source id, target id)) of relationship rows.
    wanted: list[tuple[int, tuple[uuid.UUID, str, uuid.UUID, uuid.UUID]]] = field(
        default_factory=list
    )
    seeds: set[uuid.UUID] = field(default_factory=set)
    drift: int = 0
    written: Counter[str] = field(default_factory=Counter)
    # External id -> the CI's state as this batch writes it (the next batch's overlay).
    touched: dict[str, ConfigurationItem] = field(default_factory=dict)
    # The version each updated CI was read at: it is written only if still at that version.
    read_versions: dict[uuid.UUID, int] = field(default_factory=dict)
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    sealed: _Sealed | None = None

    @cached_property
    def stamp(self) -> str:
        """`now` as events write times (the versions this batch writes are all of `now`)."""
        return _TIME.dump_python(self.now, mode="json")  # type: ignore[no-any-return]


@dataclass(frozen=True)
class _Sealed:
    """What a decided batch's transaction sends, built before it (see _seal)."""

    created: repository.CiColumns
    updated: repository.CiColumns
    read_versions: list[int]
    versions: repository.VersionColumns
    # Its events: first those of its CI rows, then one per wanted relationship, in order.
    events: outbox.Encoded
    ci_events: int


# External id -> CI state that a batch in flight writes, over what the database has committed.
Overlay = dict[str, ConfigurationItem]


async def known_schemas(uow: ConfigUnit) -> dict[str, dict[str, Any]]:
    """Every class the tenant can use now: built-in and its own (in an open unit of work)."""
    own = await uow.cis.tenant_classes()
    return {
        **{name: dict(schema) for name, schema in classes.BUILTIN_CLASSES.items()},
        **{c["name"]: c["attribute_schema"] for c in own},
    }


@dataclass(frozen=True)
class Answered:
    """The completed import an Idempotency-Key was first used for: its record, answered again."""

    record: dict[str, Any]


async def start_import(
    uow: ConfigUnit,
    *,
    source: str,
    format_: Format,
    idempotency_key: str | None = None,
) -> _Run | Answered:
    """Record a running import (visible to GET /imports/{id} from now on).

    With an Idempotency-Key (the caller's, in the tenant) that an earlier import holds: that
    import if it completed (Answered); KeyInProgress while it runs; KeyReused if it imported
    another source or format. A failed import let its key go, so the retry starts afresh (see
    _claim).
    """
    context = uow.context
    run_id = uuid.uuid4()
    async with uow:
        # Read before the run is recorded; a failure rolls the claim back with it.
        schemas = await known_schemas(uow)
        control = await uow.change_control.control()
        if idempotency_key is not None:
            earlier = await _claim(uow, run_id, source, format_, idempotency_key)
            if earlier is not None:
                return Answered(earlier)
        else:
            await uow.imports.start(
                run_id, source=source, format_=format_, actor=context.actor, now=datetime.now(UTC)
            )
    return _Run(run_id, source, context, schemas, control)


async def _claim(
    uow: ConfigUnit, run_id: uuid.UUID, source: str, format_: Format, key: str
) -> dict[str, Any] | None:
    """Start the import holding the caller's key, or return the completed one that holds it.

    A key is held by one import per (tenant, caller): a failed import lets it go when it fails
    (finish_import), and one older than the shared keys' retention gives it up here (a run
    left `running` by a process that died frees its key that way too).
    """
    caller = uow.context.actor
    for _ in range(CLAIM_ATTEMPTS):
        now = datetime.now(UTC)
        started = await uow.imports.start(
            run_id,
            source=source,
            format_=format_,
            actor=caller,
            now=now,
            idempotency=(caller, key),
        )
        if started:
            return None
        earlier = await uow.imports.keyed(caller, key)
        if earlier is None:
            continue  # it failed meanwhile and let the key go
        if earlier["started_at"] < now - idempotency.DEFAULT_RETENTION:
            await uow.imports.release_key(earlier["id"])
            continue
        if (earlier["source"], earlier["format"]) != (source, format_):
            raise idempotency.KeyReused
        if earlier["status"] == "completed":
            return earlier
        break
    raise idempotency.KeyInProgress("an import", "import-in-progress")


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
    try:
        await _pipeline(pool, run, queue, metrics)
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


async def _pipeline(
    pool: asyncpg.Pool,
    run: _Run,
    queue: asyncio.Queue[list[Parsed] | Exception | None],
    metrics: ConfigMetrics | None,
) -> None:
    """Decide each batch while the one before it is written; commit them in input order."""
    writing: asyncio.Task[bool] | None = None  # the batch in flight; True if it was redone
    overlay: Overlay = {}
    batches = 0
    try:
        while (parsed := await queue.get()) is not None:
            if isinstance(parsed, Exception):
                raise parsed
            batch = await _prepare(pool, run, parsed, overlay)
            if writing is not None:
                if await writing:  # decided again: this batch was decided on what was not kept
                    batch = await _prepare(pool, run, parsed, {})
                batches += 1
                if _power_of(batches, ANALYZE_EVERY):
                    await _analyze(pool, run, final=False)
            overlay = batch.touched
            writing = asyncio.create_task(_commit(pool, run, parsed, batch, metrics))
        if writing is not None:
            await writing
    except BaseException as exc:
        # A failure while a batch is in flight: that batch commits or fails on its own first.
        if writing is not None:
            if not writing.done():
                await asyncio.wait([writing])
            if not writing.cancelled() and (error := writing.exception()) not in (None, exc):
                log.warning(
                    "the import batch in flight failed too",
                    exc_info=error,
                    extra={"import_id": str(run.id)},
                )
        raise


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
    await _analyze(pool, run, final=True)
    # What the committed batches changed in the graph, published before the import is done.
    await membership.settle(
        pool,
        run.context.tenant_id,
        actor=run.context.actor,
        correlation_id=run.context.correlation_id,
    )
    return await finish_import(ConfigUnitOfWork(pool, run.context), run, status, error)


async def finish_import(
    uow: ConfigUnit, run: _Run, status: str, error: str | None
) -> dict[str, Any]:
    """Mark the run completed or failed (a failed one lets its key go) and announce it."""
    now = datetime.now(UTC)
    async with uow:
        record = await uow.imports.finish(
            run.id, status=status, bytes_read=run.progress[0], now=now, error=error
        )
        uow.record(
            f"import/{run.id}",
            1,
            [
                ImportCompletedV1(
                    import_id=str(run.id),
                    source=run.source,
                    status="completed" if status == "completed" else "failed",
                    rows=record["rows"],
                    outcomes={o: record[o] for o in OUTCOMES},
                    started_at=record["started_at"],
                    finished_at=now,
                    error=error,
                )
            ],
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


async def _prepare(pool: asyncpg.Pool, run: _Run, parsed: list[Parsed], overlay: Overlay) -> _Batch:
    """Decide a batch on what is committed and the overlay of the batch in flight; no locks."""
    async with tenant_transaction(pool, run.context.tenant_id, readonly=True) as conn:
        known, others = await _lookups(conn, run, parsed, overlay, lock=False)
    return await _reconcile(run, parsed, known, others, yielding=True)


async def _commit(
    pool: asyncpg.Pool,
    run: _Run,
    parsed: list[Parsed],
    batch: _Batch,
    metrics: ConfigMetrics | None,
) -> bool:
    """Write a decided batch in one transaction; return True if it had to be decided again.

    If a CI it updates or an external id it claims changed since it was decided, the
    transaction is rolled back and the batch is decided again holding the CIs' locks.
    """
    tenant = run.context.tenant_id
    redone = False
    try:
        async with tenant_transaction(pool, tenant) as conn:
            await repository.lock_source(conn, tenant, run.source)
            counts = await _write(conn, run, batch)
    except (_Stale, asyncpg.UniqueViolationError) as exc:
        log.info(
            "import batch decided again under locks",
            extra={"import_id": str(run.id), "reason": type(exc).__name__},
        )
        redone = True
        async with tenant_transaction(pool, tenant) as conn:
            await repository.lock_source(conn, tenant, run.source)
            known, others = await _lookups(conn, run, parsed, {}, lock=True)
            batch = await _reconcile(run, parsed, known, others, yielding=False)
            counts = await _write(conn, run, batch)
    run.written.update(batch.written)
    if metrics is not None:
        for outcome, n in counts.items():
            metrics.import_rows.labels(outcome).inc(n)
        metrics.drift_events.inc(batch.drift)
    return redone


async def _lookups(
    conn: Connection, run: _Run, parsed: list[Parsed], overlay: Overlay, *, lock: bool
) -> tuple[dict[str, ConfigurationItem], dict[str, tuple[uuid.UUID, str]]]:
    """The CIs a batch's rows name by external id: those of CI rows in full (locked with
    `lock`), the other ends of relationship rows as (id, status); the overlay over both."""
    tenant, source = run.context.tenant_id, run.source
    ci_keys = {p.row.external_id for p in parsed if isinstance(p.row, CiRow)}
    known = await repository.by_external_id(
        conn, tenant, source, sorted(ci_keys.difference(overlay)), lock=lock
    )
    known.update((key, overlay[key]) for key in ci_keys.intersection(overlay))
    ends = {
        e
        for p in parsed
        if isinstance(p.row, RelationshipRow)
        for e in (p.row.source, p.row.target)
    }
    ends.difference_update(known)
    others = await repository.ci_ids(conn, tenant, source, sorted(ends.difference(overlay)))
    others.update(
        (key, (overlay[key].id, overlay[key].status)) for key in ends.intersection(overlay)
    )
    return known, others


async def _reconcile(
    run: _Run,
    parsed: list[Parsed],
    known: dict[str, ConfigurationItem],
    others: dict[str, tuple[uuid.UUID, str]],
    *,
    yielding: bool,
) -> _Batch:
    """Decide every row's outcome in input order; nothing is written yet.

    With `yielding`, it lets the event loop run every DECIDE_SLICE rows: the batch being
    written meanwhile sends its next statement as soon as the database answers.
    """
    actor = run.context.actor
    batch = _Batch()
    now = batch.now
    for i, p in enumerate(parsed, 1):
        row = p.row
        if row is None:
            batch.results.append(RowResult(p.line, "unknown", p.key, "rejected", p.reason))
        elif isinstance(row, CiRow):
            batch.results.append(_ci_row(run, batch, known, p.line, row, actor, now))
        else:
            batch.results.append(_relationship_row(batch, known, others, p.line, row))
        if yielding and i % DECIDE_SLICE == 0:
            await asyncio.sleep(0)
    batch.sealed = _seal(run, batch)
    return batch


def _seal(run: _Run, batch: _Batch) -> _Sealed:
    """Encode everything the batch's statements carry: JSON documents, column arrays, events
    (those of relationships for every wanted one; the transaction keeps the added ones)."""
    created = list(batch.created.values())
    updated = list(batch.updated.values())
    added = [added_event(*wanted) for _, wanted in batch.wanted]
    return _Sealed(
        created=repository.CiColumns.of(created),
        updated=repository.CiColumns.of(updated),
        read_versions=[batch.read_versions[c.id] for c in updated],
        versions=repository.VersionColumns.of(batch.versions),
        events=outbox.encode_many(
            [*batch.events, *added],
            tenant_id=run.context.tenant_id,
            actor=run.context.actor,
            correlation_id=run.context.correlation_id,
        ),
        ci_events=len(batch.events),
    )


def added_event(rid: uuid.UUID, type_: str, source: uuid.UUID, target: uuid.UUID) -> outbox.Pending:
    """The `relationship.added` event of a relationship an import adds, built as data: its
    fields were validated with the row, and an import builds hundreds of thousands."""
    relationship: dict[str, Any] = {
        "id": str(rid),
        "type": type_,
        "source_id": str(source),
        "target_id": str(target),
    }
    payload = RelationshipAddedV1.model_construct(
        relationship=RelationshipV1.model_construct(**relationship)
    )
    return outbox.Pending(payload, relationship["id"], 1, {"relationship": relationship})


def created_event(ci: ConfigurationItem, source: str, stamp: str) -> tuple[outbox.Pending, str]:
    """The `ci.created` event of a CI an import registers, built as data (its fields were
    validated with the row), and the CI's state as JSON text: encoded once, for the event and
    for the history. `stamp` is the CI's `updated_at` as events write times."""
    state: dict[str, Any] = {
        "id": str(ci.id),
        "ci_class": ci.ci_class,
        "name": ci.name,
        "status": ci.status,
        "owner_team": ci.owner_team,
        "criticality": ci.criticality,
        "attributes": ci.attributes,
        "external_ids": ci.external_ids,
        "controlled": ci.controlled,
        "version": ci.version,
        "updated_at": stamp,
        "updated_by": ci.updated_by,
    }
    text = encode_data(state)
    state["updated_at"] = ci.updated_at
    payload = CiCreatedV1.model_construct(ci=CiStateV1.model_construct(**state), source=source)
    # What encode_data makes of the payload's dump: its keys sorted ("change_id", "ci",
    # "source"); an import is authorised by no change.
    encoded = f'{{"change_id":null,"ci":{text},"source":{encode_data(source)}}}'.encode()
    return outbox.Pending(payload, str(ci.id), ci.version, encoded=encoded), text


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
        ci = register(
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
        )
        known[key] = batch.touched[key] = ci
        batch.created[ci.id] = ci
        batch.claims.append((key, ci.id))
        # Encoded once: the event carries the state that the history keeps.
        event, state = created_event(ci, run.source, batch.stamp)
        batch.versions.append(VersionEntry(ci, ["created"], run.reason, state))
        batch.events.append(event)
        if ci.ci_class == "business_service":
            batch.seeds.add(ci.id)
        return RowResult(line, "ci", key, "created", ci_id=ci.id)

    decision = reconcile(current, row, run.control)
    if decision.outcome == "drift":
        batch.drift += 1
        drift = DriftDetectedV1(
            ci=current.state(),
            source=run.source,
            import_id=str(run.id),
            differences=decision.differences,
        )
        batch.events.append(outbox.Pending(drift, str(current.id), current.version))
        # No change authorises what discovery found: the change service reviews it.
        unauthorized = unauthorized_drift(
            current, decision.differences, source=run.source, import_id=str(run.id)
        )
        batch.events.append(outbox.Pending(unauthorized, str(current.id), current.version))
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
    known[key] = batch.touched[key] = ci
    if ci.id in batch.created:
        batch.created[ci.id] = ci  # created earlier in this batch: insert the latest state
    else:
        batch.updated[ci.id] = ci
        batch.read_versions.setdefault(ci.id, current.version)
    data = outcome.event.model_dump(mode="json")
    batch.versions.append(VersionEntry(ci, outcome.changed, run.reason, encode_data(data["ci"])))
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
    batch.wanted.append((len(batch.results), (new_id(), row.type, ends[0], ends[1])))
    # Settled once the batch is written: created, or unchanged if it was in place.
    return RowResult(line, "relationship", row_key(row), "unchanged")


async def _write(conn: Connection, run: _Run, batch: _Batch) -> Counter[str]:
    """Write the batch set-based, settle relationship outcomes, queue the events, record the
    rows' outcomes and the import's progress; return the outcomes counted. Raises _Stale (or
    the unique violation of an external id claimed meanwhile) if what the batch was decided on
    changed."""
    tenant, actor = run.context.tenant_id, run.context.actor
    sealed = batch.sealed
    assert sealed is not None, "a batch is sealed as it is decided"
    await repository.insert_cis(conn, sealed.created)
    await repository.claim_external_ids(conn, tenant, run.source, batch.claims)
    written = await repository.update_cis(conn, tenant, sealed.updated, sealed.read_versions)
    if written != len(sealed.updated):
        raise _Stale(f"{len(sealed.updated) - written} CIs changed since they were read")
    await repository.record_versions(conn, tenant, run.source, sealed.versions)
    added = await repository.add_relationships(
        conn, tenant, [w for _, w in batch.wanted], actor=actor, now=batch.now
    )
    for table, rows in (
        ("cis", len(sealed.created) + len(sealed.updated)),
        ("ci_external_ids", len(batch.claims)),
        ("relationships", len(added)),
    ):
        if rows:
            batch.written[table] += rows
    events = sealed.events
    if len(added) < len(batch.wanted):  # some were in place already: not announced again
        keep = list(range(sealed.ci_events))
        for j, (_, (rid, _, _, _)) in enumerate(batch.wanted):
            if rid in added:
                keep.append(sealed.ci_events + j)
        events = events.select(keep)
    for index, (rid, type_, source, target) in batch.wanted:
        if rid in added:
            result = batch.results[index]
            batch.results[index] = RowResult(result.line, result.kind, result.key, "created")
            batch.seeds.add(membership.dependency_of(type_, source, target))
    await outbox.insert_encoded(conn, events)
    services = [*batch.created.values(), *batch.updated.values()]
    announced = PostgresCatalogue(conn, tenant)
    announcements = [
        outbox.Pending(event, subject, sequence)
        for subject, sequence, event in [
            await catalogue.business_service_announcement(announced, ci)
            for ci in services
            if ci.ci_class == "business_service"
        ]
    ]
    if announcements:
        await outbox.append_many(
            conn,
            announcements,
            tenant_id=tenant,
            actor=actor,
            correlation_id=run.context.correlation_id,
        )
    # Settled once when the import finishes: one walk instead of one per batch.
    await membership_repository.mark_pending(conn, tenant, sorted(batch.seeds))
    await repository.record_rows(conn, tenant, run.id, batch.results)
    counts = Counter(r.outcome for r in batch.results)
    await repository.advance(conn, tenant, run.id, dict(counts), run.progress[0])
    return counts
