"""Report definitions, reports (each its own generation job) and their files (plain SQL)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from services.reporting.domain.report_data import PeriodKind
from services.reporting.domain.reports import (
    ReportDefinition,
    ReportSpec,
    ShownKpi,
)
from shared.db import Connection

# --- definitions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredDefinition:
    """A definition with who made and changed it, when."""

    definition: ReportDefinition
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str
    tenant_id: str


_DEFINITION_COLUMNS = (
    "id, tenant_id, version, name, audience, services, period_kind, kpis, trend_periods,"
    " schedule, schedule_time, time_zone, formats, deleted, created_at, created_by, updated_at,"
    " updated_by"
)


def spec_json(spec: ReportSpec) -> dict[str, Any]:
    """A spec as the API and the stored report show it."""
    return {
        "name": spec.name,
        "audience": spec.audience,
        "services": list(spec.services),
        "period": spec.period_kind,
        "kpis": [{"id": k.id, "target": k.target} for k in spec.kpis],
        "trend_periods": spec.trend_periods,
        "formats": list(spec.formats),
        "time_zone": spec.time_zone,
    }


def spec_of(data: dict[str, Any]) -> ReportSpec:
    """The spec `spec_json` wrote."""
    return ReportSpec(
        name=data["name"],
        audience=data["audience"],
        services=tuple(data["services"]),
        period_kind=data["period"],
        kpis=tuple(ShownKpi(k["id"], k.get("target")) for k in data["kpis"]),
        trend_periods=data["trend_periods"],
        formats=tuple(data["formats"]),
        time_zone=data.get("time_zone", "UTC"),
    )


def _definition(row: Any) -> StoredDefinition:
    kpis = json.loads(row["kpis"]) if isinstance(row["kpis"], str) else row["kpis"]
    spec = ReportSpec(
        name=row["name"],
        audience=row["audience"],
        services=tuple(row["services"]),
        period_kind=row["period_kind"],
        kpis=tuple(ShownKpi(k["id"], k.get("target")) for k in kpis),
        trend_periods=row["trend_periods"],
        formats=tuple(row["formats"]),
        time_zone=row["time_zone"],
    )
    return StoredDefinition(
        ReportDefinition(
            id=str(row["id"]),
            version=row["version"],
            spec=spec,
            schedule=row["schedule"],
            schedule_time=row["schedule_time"],
            deleted=row["deleted"],
        ),
        row["created_at"],
        row["created_by"],
        row["updated_at"],
        row["updated_by"],
        row["tenant_id"],
    )


async def insert_definition(
    conn: Connection, tenant_id: str, definition: ReportDefinition, at: datetime, actor: str
) -> StoredDefinition:
    """A new definition (version 1)."""
    spec = definition.spec
    row = await conn.fetchrow(
        "INSERT INTO report_definitions (id, tenant_id, version, name, audience, services,"  # noqa: S608
        " period_kind, kpis, trend_periods, schedule, schedule_time, time_zone, formats,"
        " created_at, created_by, updated_at, updated_by)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10, $11, $12, $13, $14, $15, $14,"
        f" $15) RETURNING {_DEFINITION_COLUMNS}",
        uuid.UUID(definition.id),
        tenant_id,
        definition.version,
        spec.name,
        spec.audience,
        list(spec.services),
        spec.period_kind,
        json.dumps([{"id": k.id, "target": k.target} for k in spec.kpis]),
        spec.trend_periods,
        definition.schedule,
        definition.schedule_time,
        spec.time_zone,
        list(spec.formats),
        at,
        actor,
    )
    assert row is not None
    return _definition(row)


async def update_definition(
    conn: Connection, definition: ReportDefinition, at: datetime, actor: str
) -> StoredDefinition:
    """Write a definition's new version (the caller checked the one it replaces)."""
    spec = definition.spec
    row = await conn.fetchrow(
        "UPDATE report_definitions SET version = $2, name = $3, audience = $4, services = $5,"  # noqa: S608
        " period_kind = $6, kpis = $7::jsonb, trend_periods = $8, schedule = $9,"
        " schedule_time = $10, time_zone = $11, formats = $12, deleted = $13, updated_at = $14,"
        f" updated_by = $15 WHERE id = $1 RETURNING {_DEFINITION_COLUMNS}",
        uuid.UUID(definition.id),
        definition.version,
        spec.name,
        spec.audience,
        list(spec.services),
        spec.period_kind,
        json.dumps([{"id": k.id, "target": k.target} for k in spec.kpis]),
        spec.trend_periods,
        definition.schedule,
        definition.schedule_time,
        spec.time_zone,
        list(spec.formats),
        definition.deleted,
        at,
        actor,
    )
    assert row is not None
    return _definition(row)


async def get_definition(
    conn: Connection, definition_id: uuid.UUID, *, lock: bool = False
) -> StoredDefinition | None:
    """A definition of the transaction's tenant (deleted ones too)."""
    row = await conn.fetchrow(
        f"SELECT {_DEFINITION_COLUMNS} FROM report_definitions WHERE id = $1"  # noqa: S608
        + (" FOR UPDATE" if lock else ""),
        definition_id,
    )
    return None if row is None else _definition(row)


async def list_definitions(
    conn: Connection, after: tuple[datetime, uuid.UUID] | None, limit: int
) -> list[StoredDefinition]:
    """The tenant's definitions not deleted, oldest first, after a (created_at, id) position."""
    rows = await conn.fetch(
        f"SELECT {_DEFINITION_COLUMNS} FROM report_definitions WHERE NOT deleted"  # noqa: S608
        " AND ($1::timestamptz IS NULL OR (created_at, id) > ($1, $2))"
        " ORDER BY created_at, id LIMIT $3",
        None if after is None else after[0],
        None if after is None else after[1],
        limit,
    )
    return [_definition(row) for row in rows]


async def scheduled_definitions(conn: Connection) -> list[StoredDefinition]:
    """Every tenant's scheduled definitions (an all-tenants transaction)."""
    rows = await conn.fetch(
        f"SELECT {_DEFINITION_COLUMNS} FROM report_definitions"  # noqa: S608
        " WHERE schedule <> 'none' AND NOT deleted ORDER BY tenant_id, created_at"
    )
    return [_definition(row) for row in rows]


# --- reports ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredReport:
    """A report as its row holds it (the job and, once done, its formats' hashes)."""

    id: uuid.UUID
    tenant_id: str
    kind: str
    definition_id: uuid.UUID | None
    definition_version: int | None
    spec: dict[str, Any]
    period_kind: PeriodKind
    period_start: date
    period_label: str
    period_from: datetime
    period_to: datetime
    trigger: str
    requested_by: str
    state: str
    steps_done: int
    steps_total: int
    attempts: int
    error: str | None
    tree_size: int | None
    root_hash: str | None
    created_at: datetime
    finished_at: datetime | None
    formats: dict[str, str]

    @property
    def percent(self) -> float:
        """Share of the steps done, 100 once done."""
        if self.state == "done":
            return 100.0
        if self.steps_total <= 0:
            return 0.0
        return round(100.0 * self.steps_done / self.steps_total, 1)


_REPORT_COLUMNS = (
    "id, tenant_id, kind, definition_id, definition_version, spec, period_kind, period_start,"
    " period_label, period_from, period_to, trigger, requested_by, state, steps_done,"
    " steps_total, attempts, error, tree_size, root_hash, created_at, finished_at"
)
_WITH_FORMATS = (
    ", coalesce((SELECT jsonb_object_agg(f.format, f.sha256) FROM report_files f"
    " WHERE f.report_id = reports.id), '{}'::jsonb) AS formats"
)


def _report(row: Any) -> StoredReport:
    values = {name: row[name] for name in _REPORT_COLUMNS.split(", ")}
    for name in ("spec",):
        if isinstance(values[name], str):
            values[name] = json.loads(values[name])
    formats = row["formats"]
    return StoredReport(
        **values, formats=json.loads(formats) if isinstance(formats, str) else formats
    )


async def insert_report(
    conn: Connection,
    report_id: uuid.UUID,
    tenant_id: str,
    *,
    kind: str,
    definition_id: uuid.UUID | None,
    definition_version: int | None,
    spec: dict[str, Any],
    period_kind: str,
    period_start: date,
    period_label: str,
    period_from: datetime,
    period_to: datetime,
    trigger: str,
    requested_by: str,
) -> StoredReport | None:
    """A queued report; None when a scheduled one for that definition and period exists."""
    row = await conn.fetchrow(
        "INSERT INTO reports (id, tenant_id, kind, definition_id, definition_version, spec,"  # noqa: S608
        " period_kind, period_start, period_label, period_from, period_to, trigger,"
        " requested_by) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10, $11, $12, $13)"
        " ON CONFLICT (tenant_id, definition_id, period_kind, period_start)"
        " WHERE trigger = 'schedule' DO NOTHING"
        f" RETURNING {_REPORT_COLUMNS}, '{{}}'::jsonb AS formats",
        report_id,
        tenant_id,
        kind,
        definition_id,
        definition_version,
        json.dumps(spec),
        period_kind,
        period_start,
        period_label,
        period_from,
        period_to,
        trigger,
        requested_by,
    )
    return None if row is None else _report(row)


async def get_report(conn: Connection, report_id: uuid.UUID) -> StoredReport | None:
    """A report of the transaction's tenant."""
    row = await conn.fetchrow(
        f"SELECT {_REPORT_COLUMNS}{_WITH_FORMATS} FROM reports WHERE id = $1",  # noqa: S608
        report_id,
    )
    return None if row is None else _report(row)


async def list_reports(
    conn: Connection,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
    definition_id: uuid.UUID | None = None,
) -> list[StoredReport]:
    """The tenant's reports, newest first, after a (created_at, id) position."""
    rows = await conn.fetch(
        f"SELECT {_REPORT_COLUMNS}{_WITH_FORMATS} FROM reports"  # noqa: S608
        " WHERE ($1::timestamptz IS NULL OR (created_at, id) < ($1, $2))"
        " AND ($4::uuid IS NULL OR definition_id = $4)"
        " ORDER BY created_at DESC, id DESC LIMIT $3",
        None if after is None else after[0],
        None if after is None else after[1],
        limit,
        definition_id,
    )
    return [_report(row) for row in rows]


async def file_of(conn: Connection, report_id: uuid.UUID, format: str) -> tuple[bytes, str] | None:
    """A report's file in one format: (content, media type)."""
    row = await conn.fetchrow(
        "SELECT content, media_type FROM report_files WHERE report_id = $1 AND format = $2",
        report_id,
        format,
    )
    return None if row is None else (bytes(row["content"]), row["media_type"])


async def claimable(conn: Connection, limit: int = 10) -> list[tuple[uuid.UUID, str]]:
    """Reports nobody works on (queued, or running with a lapsed lease), oldest first: (id,
    tenant) (an all-tenants transaction)."""
    rows = await conn.fetch(
        "SELECT id, tenant_id FROM reports WHERE state IN ('queued', 'running')"
        " AND (lease_until IS NULL OR lease_until < clock_timestamp())"
        " ORDER BY created_at LIMIT $1",
        limit,
    )
    return [(row["id"], row["tenant_id"]) for row in rows]


async def claim(
    conn: Connection, report_id: uuid.UUID, lease_seconds: float
) -> StoredReport | None:
    """Take a report to build for `lease_seconds` if nobody holds it."""
    row = await conn.fetchrow(
        "UPDATE reports SET state = 'running', attempts = attempts + 1,"  # noqa: S608
        " lease_until = clock_timestamp() + make_interval(secs => $2)"
        " WHERE id = $1 AND state IN ('queued', 'running')"
        " AND (lease_until IS NULL OR lease_until < clock_timestamp())"
        f" RETURNING {_REPORT_COLUMNS}, '{{}}'::jsonb AS formats",
        report_id,
        lease_seconds,
    )
    return None if row is None else _report(row)


async def progress(
    conn: Connection, report_id: uuid.UUID, done: int, total: int, lease_seconds: float
) -> None:
    """Record the steps done, and extend the lease."""
    await conn.execute(
        "UPDATE reports SET steps_done = $2, steps_total = $3,"
        " lease_until = clock_timestamp() + make_interval(secs => $4) WHERE id = $1",
        report_id,
        done,
        total,
        lease_seconds,
    )


async def release(conn: Connection, report_id: uuid.UUID, error: str) -> None:
    """Give a report back to the queue after a failed attempt."""
    await conn.execute(
        "UPDATE reports SET state = 'queued', lease_until = NULL, error = $2 WHERE id = $1",
        report_id,
        error,
    )


async def fail(conn: Connection, report_id: uuid.UUID, error: str) -> None:
    """Give up on a report."""
    await conn.execute(
        "UPDATE reports SET state = 'failed', lease_until = NULL, error = $2,"
        " finished_at = clock_timestamp() WHERE id = $1",
        report_id,
        error,
    )


async def finish(
    conn: Connection,
    report_id: uuid.UUID,
    tenant_id: str,
    files: dict[str, tuple[bytes, str, str]],
    tree_size: int,
    root_hash: str,
) -> None:
    """Store the formats (content, media type, SHA-256) and mark the report done."""
    await conn.executemany(
        "INSERT INTO report_files (report_id, tenant_id, format, media_type, content, sha256)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (report_id, format) DO UPDATE"
        " SET media_type = EXCLUDED.media_type, content = EXCLUDED.content,"
        " sha256 = EXCLUDED.sha256",
        [
            (report_id, tenant_id, fmt, media, content, digest)
            for fmt, (content, media, digest) in files.items()
        ],
    )
    await conn.execute(
        "UPDATE reports SET state = 'done', lease_until = NULL, error = NULL,"
        " tree_size = $2, root_hash = $3, steps_done = steps_total,"
        " finished_at = clock_timestamp() WHERE id = $1",
        report_id,
        tree_size,
        root_hash,
    )
