"""Discovery imports in PostgreSQL: progress, per-row outcomes, and set-based CI writes.

An import writes thousands of rows per batch, so these functions take whole batches and use one
statement each (`unnest` of arrays) instead of one round trip per CI.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from services.config.adapters.cis import COLUMNS, to_ci
from services.config.domain.ci import ConfigurationItem
from services.config.domain.imports import OUTCOMES
from shared.db import Connection

# The CI columns qualified for a join (computed once).
_CI_COLUMNS = ", ".join(f"c.{column.strip()}" for column in COLUMNS.split(","))
_IMPORT_COLUMNS = (
    "id, source, format, status, rows, created, updated, unchanged, drift, rejected,"
    " bytes_read, started_at, started_by, finished_at, error"
)


class RowResult(NamedTuple):
    """The outcome of one input row, as the import report keeps it (a named tuple: there is
    one per input row, and it is cheaper to make than a frozen dataclass)."""

    line: int
    kind: str
    key: str | None
    outcome: str
    reason: str | None = None
    ci_id: uuid.UUID | None = None


@dataclass(frozen=True)
class VersionEntry:
    """A CI version written by an import (attributed to its source).

    `state` is the CI's state as JSON text when the caller has encoded it already (for its
    event).
    """

    ci: ConfigurationItem
    changed: list[str]
    reason: str
    state: str | None = None


# JSON documents are encoded here, as text the statements cast, rather than by the pool's
# jsonb codec as the statement is sent: the caller builds the columns before its transaction.
_JSON = json.JSONEncoder(separators=(",", ":"))


@dataclass(frozen=True)
class CiColumns:
    """CIs as the column arrays that one statement writes, their documents already encoded.

    Built while a batch is decided, so that the batch's transaction waits only for the
    database (see application.imports).
    """

    ids: list[uuid.UUID]
    tenant_ids: list[str]
    classes: list[str]
    names: list[str]
    statuses: list[str]
    owner_teams: list[str | None]
    criticalities: list[int]
    attributes: list[str]
    external_ids: list[str]
    controlled: list[bool]
    versions: list[int]
    created_at: list[datetime]
    updated_at: list[datetime]
    updated_by: list[str]

    @classmethod
    def of(cls, cis: Sequence[ConfigurationItem]) -> CiColumns:
        encode = _JSON.encode
        return cls(
            [c.id for c in cis],
            [c.tenant_id for c in cis],
            [c.ci_class for c in cis],
            [c.name for c in cis],
            [c.status for c in cis],
            [c.owner_team for c in cis],
            [c.criticality for c in cis],
            [encode(c.attributes) for c in cis],
            [encode(c.external_ids) for c in cis],
            [c.controlled for c in cis],
            [c.version for c in cis],
            [c.created_at for c in cis],
            [c.updated_at for c in cis],
            [c.updated_by for c in cis],
        )

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class VersionColumns:
    """CI versions as the column arrays that `record_versions` writes, states encoded."""

    ci_ids: list[uuid.UUID]
    versions: list[int]
    valid_from: list[datetime]
    states: list[str]
    changed: list[str]
    actors: list[str]
    reasons: list[str]

    @classmethod
    def of(cls, entries: Sequence[VersionEntry]) -> VersionColumns:
        encode = _JSON.encode
        return cls(
            [e.ci.id for e in entries],
            [e.ci.version for e in entries],
            [e.ci.updated_at for e in entries],
            [
                encode(e.ci.state().model_dump(mode="json")) if e.state is None else e.state
                for e in entries
            ],
            # Field names (no commas), joined: a list would be read as another array dimension.
            [",".join(e.changed) for e in entries],
            [e.ci.updated_by for e in entries],
            [e.reason for e in entries],
        )

    def __len__(self) -> int:
        return len(self.ci_ids)


async def lock_source(conn: Connection, tenant_id: str, source: str) -> None:
    """Serialise batches of concurrent imports from the same source (until the commit)."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"import/{tenant_id}/{source}"
    )


# The tables an import grows: those its batches read back (the plans of their lookups depend
# on these statistics), and all of them (the membership walk at the end and impact analysis
# read the graph). A table is refreshed once the rows written to it since its last refresh
# make up this share of the rows its statistics know.
READ_BY_BATCHES = ("cis", "ci_external_ids")
GROWN = (*READ_BY_BATCHES, "relationships")
STALE_SHARE = 0.1


async def analyze(
    conn: Connection, written: Mapping[str, int], tables: Sequence[str], *, derived: bool
) -> list[str]:
    """Refresh the planner's statistics of those `tables` an import grew enough; return them.

    Right after a bulk load the statistics still describe the tables as they were (empty, for
    a first import), and the planner picks plans that fit a few rows: a recursive walk over
    300,000 relationships took minutes instead of a fraction of a second. A table counts as
    grown when the rows written to it since it was last refreshed here make up STALE_SHARE of
    the rows its statistics know (autovacuum's rule, applied at once): an ANALYZE samples the
    whole table whatever was written, so a re-import that wrote little does not pay for one.
    With `derived`, the membership table derived from the graph is refreshed along with it.
    """
    candidates = [t for t in tables if written.get(t, 0) > 0]
    if not candidates:
        return []
    known = {
        r["relname"]: r["reltuples"]
        for r in await conn.fetch(
            "SELECT relname, reltuples FROM pg_class WHERE oid = ANY($1::regclass[])",
            candidates,
        )
    }
    stale = [t for t in candidates if known.get(t, -1) < 0 or written[t] >= STALE_SHARE * known[t]]
    if not stale:
        return []
    refreshed = [*stale, "ci_service_membership"] if derived else stale
    # Table names from the constants above, never from input.
    await conn.execute(f"ANALYZE {', '.join(refreshed)}")
    return stale


async def start(
    conn: Connection,
    tenant_id: str,
    import_id: uuid.UUID,
    *,
    source: str,
    format_: str,
    actor: str,
    now: datetime,
    idempotency: tuple[str, str] | None = None,
) -> bool:
    """Record a running import, with its (caller, Idempotency-Key) if any; False if the caller's
    key belongs to another import already (nothing recorded)."""
    caller, key = idempotency if idempotency is not None else (None, None)
    started: bool | None = await conn.fetchval(
        "INSERT INTO imports (tenant_id, id, source, format, status, started_at, started_by,"
        " idempotency_caller, idempotency_key)"
        " VALUES ($1, $2, $3, $4, 'running', $5, $6, $7, $8)"
        " ON CONFLICT (tenant_id, idempotency_caller, idempotency_key)"
        " WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING true",
        tenant_id,
        import_id,
        source,
        format_,
        now,
        actor,
        caller,
        key,
    )
    return bool(started)


async def keyed(conn: Connection, tenant_id: str, caller: str, key: str) -> dict[str, Any] | None:
    """The import holding the caller's Idempotency-Key, if any."""
    row = await conn.fetchrow(
        f"SELECT {_IMPORT_COLUMNS} FROM imports WHERE tenant_id = $1"  # noqa: S608 - constant columns
        " AND idempotency_caller = $2 AND idempotency_key = $3",
        tenant_id,
        caller,
        key,
    )
    return dict(row) if row is not None else None


async def release_key(conn: Connection, tenant_id: str, import_id: uuid.UUID) -> None:
    """Let go of the import's Idempotency-Key: the next request with it starts a new import."""
    await conn.execute(
        "UPDATE imports SET idempotency_caller = NULL, idempotency_key = NULL"
        " WHERE tenant_id = $1 AND id = $2",
        tenant_id,
        import_id,
    )


async def advance(
    conn: Connection,
    tenant_id: str,
    import_id: uuid.UUID,
    counts: dict[str, int],
    bytes_read: int,
) -> None:
    """Add a committed batch's outcomes to the import's progress."""
    await conn.execute(
        "UPDATE imports SET rows = rows + $3, created = created + $4, updated = updated + $5,"
        " unchanged = unchanged + $6, drift = drift + $7, rejected = rejected + $8,"
        " bytes_read = $9 WHERE tenant_id = $1 AND id = $2",
        tenant_id,
        import_id,
        sum(counts.values()),
        *(counts.get(o, 0) for o in OUTCOMES),
        bytes_read,
    )


async def finish(
    conn: Connection,
    tenant_id: str,
    import_id: uuid.UUID,
    *,
    status: str,
    bytes_read: int,
    now: datetime,
    error: str | None,
) -> dict[str, Any]:
    """Mark the import completed or failed; return it."""
    row = await conn.fetchrow(
        f"UPDATE imports SET status = $3, finished_at = $4, error = $5, bytes_read = $6,"  # noqa: S608 - constant columns
        # A failed import lets its Idempotency-Key go: a retry with it runs afresh.
        " idempotency_caller = CASE WHEN $3 = 'failed' THEN NULL ELSE idempotency_caller END,"
        " idempotency_key = CASE WHEN $3 = 'failed' THEN NULL ELSE idempotency_key END"
        f" WHERE tenant_id = $1 AND id = $2 RETURNING {_IMPORT_COLUMNS}",
        tenant_id,
        import_id,
        status,
        now,
        error,
        bytes_read,
    )
    assert row is not None, "the import was started in an earlier transaction"
    return dict(row)


async def get(conn: Connection, tenant_id: str, import_id: uuid.UUID) -> dict[str, Any] | None:
    """An import and its progress."""
    row = await conn.fetchrow(
        f"SELECT {_IMPORT_COLUMNS} FROM imports WHERE tenant_id = $1 AND id = $2",  # noqa: S608 - constant columns
        tenant_id,
        import_id,
    )
    return dict(row) if row else None


async def recent(
    conn: Connection, tenant_id: str, *, before: tuple[datetime, uuid.UUID] | None, limit: int
) -> list[dict[str, Any]]:
    """Imports, newest first, after a (started_at, id) position."""
    rows = await conn.fetch(
        f"SELECT {_IMPORT_COLUMNS} FROM imports WHERE tenant_id = $1"  # noqa: S608 - constant columns
        " AND ($2::timestamptz IS NULL OR (started_at, id) < ($2, $3))"
        " ORDER BY started_at DESC, id DESC LIMIT $4",
        tenant_id,
        before[0] if before else None,
        before[1] if before else None,
        limit,
    )
    return [dict(r) for r in rows]


async def rows(
    conn: Connection,
    tenant_id: str,
    import_id: uuid.UUID,
    *,
    outcome: str | None,
    after_line: int,
    limit: int,
) -> list[dict[str, Any]]:
    """An import's row outcomes in input order, optionally of one outcome."""
    found = await conn.fetch(
        "SELECT line, kind, key, outcome, reason, ci_id FROM import_rows"
        " WHERE tenant_id = $1 AND import_id = $2 AND line > $3"
        " AND ($4::text IS NULL OR outcome = $4) ORDER BY line LIMIT $5",
        tenant_id,
        import_id,
        after_line,
        outcome,
        limit,
    )
    return [dict(r) for r in found]


async def record_rows(
    conn: Connection, tenant_id: str, import_id: uuid.UUID, results: Sequence[RowResult]
) -> None:
    """Keep each row's outcome for the report."""
    if not results:
        return
    await conn.execute(
        "INSERT INTO import_rows (tenant_id, import_id, line, kind, key, outcome, reason, ci_id)"
        " SELECT $1, $2, * FROM unnest($3::int[], $4::text[], $5::text[], $6::text[],"
        " $7::text[], $8::uuid[])",
        tenant_id,
        import_id,
        [r.line for r in results],
        [r.kind for r in results],
        [r.key for r in results],
        [r.outcome for r in results],
        [r.reason for r in results],
        [r.ci_id for r in results],
    )


_BY_EXTERNAL_ID = (
    f"SELECT e.external_id AS _external_id, {_CI_COLUMNS} FROM ci_external_ids e"  # noqa: S608 - constant columns
    " JOIN cis c ON c.tenant_id = e.tenant_id AND c.id = e.ci_id"
    " WHERE e.tenant_id = $1 AND e.source = $2 AND e.external_id = ANY($3::text[])"
)


async def by_external_id(
    conn: Connection, tenant_id: str, source: str, external_ids: Sequence[str], *, lock: bool
) -> dict[str, ConfigurationItem]:
    """The CIs the source knows by these ids; with `lock`, locked until the commit (in id
    order, so that two batches never wait for each other's locks in a cycle)."""
    if not external_ids:
        return {}
    found = await conn.fetch(
        _BY_EXTERNAL_ID + " ORDER BY c.id FOR UPDATE OF c" if lock else _BY_EXTERNAL_ID,
        tenant_id,
        source,
        list(external_ids),
    )
    result: dict[str, ConfigurationItem] = {}
    for row in found:
        values = dict(row)
        external_id = values.pop("_external_id")
        result[external_id] = to_ci(values)
    return result


async def ci_ids(
    conn: Connection, tenant_id: str, source: str, external_ids: Sequence[str]
) -> dict[str, tuple[uuid.UUID, str]]:
    """external id -> (CI id, status) for relationship rows (no lock: CIs are not changed)."""
    if not external_ids:
        return {}
    found = await conn.fetch(
        "SELECT e.external_id, c.id, c.status FROM ci_external_ids e"
        " JOIN cis c ON c.tenant_id = e.tenant_id AND c.id = e.ci_id"
        " WHERE e.tenant_id = $1 AND e.source = $2 AND e.external_id = ANY($3::text[])",
        tenant_id,
        source,
        list(external_ids),
    )
    return {r["external_id"]: (r["id"], r["status"]) for r in found}


async def insert_cis(conn: Connection, cis: CiColumns) -> None:
    """Store new CIs (one statement)."""
    if not cis:
        return
    await conn.execute(
        "INSERT INTO cis (id, tenant_id, class, name, status, owner_team, criticality,"
        " attributes, external_ids, controlled, version, created_at, updated_at, updated_by)"
        " SELECT id, tenant_id, class, name, status, owner_team, criticality, attributes::jsonb,"
        " external_ids::jsonb, controlled, version, created_at, updated_at, updated_by"
        " FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],"
        " $6::text[], $7::smallint[], $8::text[], $9::text[], $10::boolean[], $11::int[],"
        " $12::timestamptz[], $13::timestamptz[], $14::text[])"
        " AS c(id, tenant_id, class, name, status, owner_team, criticality, attributes,"
        " external_ids, controlled, version, created_at, updated_at, updated_by)",
        cis.ids,
        cis.tenant_ids,
        cis.classes,
        cis.names,
        cis.statuses,
        cis.owner_teams,
        cis.criticalities,
        cis.attributes,
        cis.external_ids,
        cis.controlled,
        cis.versions,
        cis.created_at,
        cis.updated_at,
        cis.updated_by,
    )


async def update_cis(
    conn: Connection, tenant_id: str, cis: CiColumns, read_versions: Sequence[int]
) -> int:
    """Store new versions of CIs (one statement); return how many were written.

    Each CI is written only if it is still at the version it was read at: one that another
    writer changed since is left alone, and not counted.
    """
    if not cis:
        return 0
    status = await conn.execute(
        "UPDATE cis SET name = u.name, status = u.status, owner_team = u.owner_team,"
        " criticality = u.criticality, attributes = u.attributes::jsonb, version = u.version,"
        " updated_at = u.updated_at, updated_by = u.updated_by"
        " FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::smallint[],"
        " $7::text[], $8::int[], $9::timestamptz[], $10::text[], $11::int[])"
        " AS u(id, name, status, owner_team, criticality, attributes, version, updated_at,"
        " updated_by, read_version)"
        " WHERE cis.tenant_id = $1 AND cis.id = u.id AND cis.version = u.read_version",
        tenant_id,
        cis.ids,
        cis.names,
        cis.statuses,
        cis.owner_teams,
        cis.criticalities,
        cis.attributes,
        cis.versions,
        cis.updated_at,
        cis.updated_by,
        list(read_versions),
    )
    return int(status.rsplit(" ", 1)[1])


async def record_versions(
    conn: Connection, tenant_id: str, source: str, versions: VersionColumns
) -> None:
    """Keep each written version in the history, attributed to the source."""
    if not versions:
        return
    await conn.execute(
        "INSERT INTO ci_versions (tenant_id, ci_id, version, valid_from, state, changed, actor,"
        " reason, source) SELECT $1, v.ci_id, v.version, v.valid_from, v.state::jsonb,"
        " string_to_array(v.changed, ','), v.actor, v.reason, $2"
        " FROM unnest($3::uuid[], $4::int[], $5::timestamptz[], $6::text[], $7::text[],"
        " $8::text[], $9::text[]) AS v(ci_id, version, valid_from, state, changed, actor, reason)",
        tenant_id,
        source,
        versions.ci_ids,
        versions.versions,
        versions.valid_from,
        versions.states,
        versions.changed,
        versions.actors,
        versions.reasons,
    )


async def claim_external_ids(
    conn: Connection, tenant_id: str, source: str, claims: Sequence[tuple[str, uuid.UUID]]
) -> None:
    """Point (source, external id) at new CIs."""
    if not claims:
        return
    await conn.execute(
        "INSERT INTO ci_external_ids (tenant_id, source, external_id, ci_id)"
        " SELECT $1, $2, * FROM unnest($3::text[], $4::uuid[])",
        tenant_id,
        source,
        [external_id for external_id, _ in claims],
        [ci_id for _, ci_id in claims],
    )


async def add_relationships(
    conn: Connection,
    tenant_id: str,
    wanted: Sequence[tuple[uuid.UUID, str, uuid.UUID, uuid.UUID]],
    *,
    actor: str,
    now: datetime,
) -> set[uuid.UUID]:
    """Add (id, type, source, target) relationships not yet in place; return the ids added
    (of a relationship wanted twice, the first)."""
    if not wanted:
        return set()
    added = await conn.fetch(
        "INSERT INTO relationships (tenant_id, id, type, source_id, target_id, added_at,"
        " added_by) SELECT $1, i, t, s, g, $6, $7"
        " FROM unnest($2::uuid[], $3::text[], $4::uuid[], $5::uuid[]) AS w(i, t, s, g)"
        " ON CONFLICT (tenant_id, source_id, type, target_id) WHERE removed_at IS NULL"
        " DO NOTHING RETURNING id",
        tenant_id,
        [i for i, _, _, _ in wanted],
        [t for _, t, _, _ in wanted],
        [s for _, _, s, _ in wanted],
        [g for _, _, _, g in wanted],
        now,
        actor,
    )
    return {r["id"] for r in added}
