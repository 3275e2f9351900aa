"""Evidence export jobs and the reads an export makes of the ledger (plain SQL)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.reporting.adapters import ledger
from services.reporting.domain.clauses import LoggedEvent
from shared.db import Connection


@dataclass(frozen=True)
class ExportJob:
    """An export job as its row holds it."""

    id: uuid.UUID
    tenant_id: str
    period_from: datetime
    period_to: datetime
    clauses: list[str]
    requested_by: str
    state: str
    first_index: int | None
    tree_size: int | None
    previous_size: int | None
    period_first: int | None
    period_last: int | None
    entries_done: int
    entries_total: int
    attempts: int
    error: str | None
    archive_sha256: str | None
    created_at: datetime
    finished_at: datetime | None

    @property
    def percent(self) -> float:
        """Share of the entries written, 100 once done."""
        if self.state == "done":
            return 100.0
        if self.entries_total <= 0:
            return 0.0
        return round(100.0 * self.entries_done / self.entries_total, 1)


_COLUMNS = (
    "id, tenant_id, period_from, period_to, clauses, requested_by, state, first_index,"
    " tree_size, previous_size, period_first, period_last, entries_done, entries_total,"
    " attempts, error, archive_sha256, created_at, finished_at"
)


def _job(row: Any) -> ExportJob:
    return ExportJob(**{name: row[name] for name in _COLUMNS.split(", ")})


async def insert(
    conn: Connection,
    job_id: uuid.UUID,
    tenant_id: str,
    period_from: datetime,
    period_to: datetime,
    clauses: Sequence[str],
    requested_by: str,
) -> ExportJob:
    """A new queued job."""
    row = await conn.fetchrow(
        "INSERT INTO evidence_exports (id, tenant_id, period_from, period_to, clauses,"  # noqa: S608
        f" requested_by) VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_COLUMNS}",
        job_id,
        tenant_id,
        period_from,
        period_to,
        list(clauses),
        requested_by,
    )
    assert row is not None
    return _job(row)


async def get(conn: Connection, job_id: uuid.UUID) -> ExportJob | None:
    """A job of the transaction's tenant."""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM evidence_exports WHERE id = $1",  # noqa: S608
        job_id,
    )
    return None if row is None else _job(row)


async def archive_of(conn: Connection, job_id: uuid.UUID) -> bytes | None:
    """A finished job's archive."""
    value = await conn.fetchval("SELECT archive FROM evidence_exports WHERE id = $1", job_id)
    return None if value is None else bytes(value)


async def claimable(conn: Connection, limit: int = 10) -> list[tuple[uuid.UUID, str]]:
    """Jobs nobody works on (queued, or running with a lapsed lease): (id, tenant), oldest
    first (an all-tenants transaction)."""
    rows = await conn.fetch(
        "SELECT id, tenant_id FROM evidence_exports WHERE state IN ('queued', 'running')"
        " AND (lease_until IS NULL OR lease_until < clock_timestamp())"
        " ORDER BY created_at LIMIT $1",
        limit,
    )
    return [(row["id"], row["tenant_id"]) for row in rows]


async def claim(conn: Connection, job_id: uuid.UUID, lease_seconds: float) -> ExportJob | None:
    """Take a job for `lease_seconds` if nobody holds it; None when another worker does."""
    row = await conn.fetchrow(
        "UPDATE evidence_exports SET state = 'running', attempts = attempts + 1,"  # noqa: S608
        " lease_until = clock_timestamp() + make_interval(secs => $2)"
        " WHERE id = $1 AND state IN ('queued', 'running')"
        " AND (lease_until IS NULL OR lease_until < clock_timestamp())"
        f" RETURNING {_COLUMNS}",
        job_id,
        lease_seconds,
    )
    return None if row is None else _job(row)


async def save_plan(
    conn: Connection,
    job_id: uuid.UUID,
    *,
    first_index: int,
    tree_size: int,
    previous_size: int | None,
    period_first: int | None,
    period_last: int | None,
) -> None:
    """Fix the job's plan once chosen: a resumed job builds the same archive."""
    await conn.execute(
        "UPDATE evidence_exports SET first_index = $2, tree_size = $3, previous_size = $4,"
        " period_first = $5, period_last = $6, entries_total = $3::bigint - $2::bigint"
        " WHERE id = $1",
        job_id,
        first_index,
        tree_size,
        previous_size,
        period_first,
        period_last,
    )


async def progress(
    conn: Connection, job_id: uuid.UUID, entries_done: int, lease_seconds: float
) -> None:
    """Record progress and extend the lease."""
    await conn.execute(
        "UPDATE evidence_exports SET entries_done = $2,"
        " lease_until = clock_timestamp() + make_interval(secs => $3) WHERE id = $1",
        job_id,
        entries_done,
        lease_seconds,
    )


async def finish(conn: Connection, job_id: uuid.UUID, archive: bytes, sha256: str) -> None:
    """The job is done: its archive stored."""
    await conn.execute(
        "UPDATE evidence_exports SET state = 'done', archive = $2, archive_sha256 = $3,"
        " entries_done = entries_total, lease_until = NULL, finished_at = clock_timestamp()"
        " WHERE id = $1",
        job_id,
        archive,
        sha256,
    )


async def fail(conn: Connection, job_id: uuid.UUID, error: str) -> None:
    """The job failed for good, with the reason."""
    await conn.execute(
        "UPDATE evidence_exports SET state = 'failed', error = $2, lease_until = NULL,"
        " finished_at = clock_timestamp() WHERE id = $1",
        job_id,
        error[:2000],
    )


async def release(conn: Connection, job_id: uuid.UUID, note: str, *, counted: bool = True) -> None:
    """Give a job back to be tried again: it failed for now (`counted` towards its attempts),
    or it waits for a checkpoint (not counted: waiting is no failure)."""
    await conn.execute(
        "UPDATE evidence_exports SET lease_until = clock_timestamp() + interval '1 second',"
        " error = $2, attempts = attempts - CASE WHEN $3 THEN 0 ELSE 1 END WHERE id = $1",
        job_id,
        note[:2000],
        counted,
    )


async def previous_export_size(
    conn: Connection, tenant_id: str, job_id: uuid.UUID, tree_size: int
) -> int | None:
    """The checkpoint size of the tenant's newest finished export that this one can prove it
    extends (its size at most ours)."""
    value = await conn.fetchval(
        "SELECT tree_size FROM evidence_exports WHERE tenant_id = $1 AND state = 'done'"
        " AND id <> $2 AND tree_size <= $3 ORDER BY finished_at DESC, tree_size DESC LIMIT 1",
        tenant_id,
        job_id,
        tree_size,
    )
    return None if value is None else int(value)


async def period_indexes(
    conn: Connection, tenant_id: str, period_from: datetime, period_to: datetime
) -> tuple[int | None, int | None]:
    """The smallest and largest log index of the tenant's events whose time is in the period."""
    row = await conn.fetchrow(
        "SELECT min(leaf_index), max(leaf_index) FROM ledger WHERE tenant_id = $1"
        " AND time >= $2 AND time < $3 AND leaf_index IS NOT NULL",
        tenant_id,
        period_from,
        period_to,
    )
    assert row is not None
    return row[0], row[1]


async def covering_checkpoint_size(conn: Connection, tenant_id: str, beyond: int) -> int | None:
    """The smallest signed checkpoint size above `beyond` (it holds entry `beyond`)."""
    value = await conn.fetchval(
        "SELECT min(tree_size) FROM ledger_checkpoints WHERE tenant_id = $1 AND tree_size > $2",
        tenant_id,
        beyond,
    )
    return None if value is None else int(value)


def data_of(row: Any) -> dict[str, Any]:
    """An event's data as it carried it: decoded from the stored message (rows from before
    messages were kept hold it in `data`)."""
    value = row["message_value"]
    if value is None:
        data = row["data"]
        return dict(json.loads(data) if isinstance(data, str) else data)
    decoded = json.loads(bytes(value))
    return dict(decoded) if isinstance(decoded, dict) else {"value": decoded}


def logged_event(row: Any) -> LoggedEvent:
    """A ledger row as the clause builders read it."""
    return LoggedEvent(
        leaf_index=row["leaf_index"],
        event_id=str(row["event_id"]),
        type=row["type"],
        subject=row["subject"],
        version=row["version"],
        time=row["time"],
        actor=row["actor"],
        data=data_of(row),
    )


_EVENT_COLUMNS = (
    "leaf_index, event_id, type, subject, version, time, actor, message_value,"
    " CASE WHEN message_value IS NULL THEN data END AS data"
)


async def events_of_subjects(
    conn: Connection, tenant_id: str, subjects: Sequence[str], below: int
) -> list[LoggedEvent]:
    """Every event of these records with an index below `below`, in log order (timelines)."""
    rows = await conn.fetch(
        f"SELECT {_EVENT_COLUMNS} FROM ledger WHERE tenant_id = $1"  # noqa: S608 - constant
        " AND subject = ANY($2::text[]) AND leaf_index < $3 ORDER BY leaf_index",
        tenant_id,
        list(subjects),
        below,
    )
    return [logged_event(row) for row in rows]


async def events_in(
    conn: Connection,
    tenant_id: str,
    below: int,
    period_from: datetime | None,
    period_to: datetime | None,
) -> list[LoggedEvent]:
    """The tenant's events with an index below `below`, optionally of a period, in log order."""
    rows = await conn.fetch(
        f"SELECT {_EVENT_COLUMNS} FROM ledger WHERE tenant_id = $1"  # noqa: S608 - constant
        " AND leaf_index < $2 AND ($3::timestamptz IS NULL OR time >= $3)"
        " AND ($4::timestamptz IS NULL OR time < $4) ORDER BY leaf_index",
        tenant_id,
        below,
        period_from,
        period_to,
    )
    return [logged_event(row) for row in rows]


# Re-exported for the export: the canonical bytes of a stored row.
canonical_of_row = ledger.canonical_of_row
