"""Service level management in PostgreSQL (migration 0008): the projections built from the
ledger (`sl_*`), the tenant's service-level settings, and the improvement actions and audit
findings (the shared record repository over their tables).

Plain, parameterised SQL, always scoped to a tenant (row-level security applies too); the
projection task reads every tenant's newest checkpoint in an all-tenants transaction.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from services.reporting.adapters.checkpoints import NEWEST_CHECKPOINTS
from services.reporting.domain.service_levels import (
    OPEN_ACTION,
    AuditFindingRecord,
    ImprovementActionRecord,
    Outage,
)
from shared.db import Connection
from shared.records.sql import RecordTable

ACTIONS = RecordTable(
    ImprovementActionRecord,
    table="improvement_actions",
    history="improvement_action_history",
    key="action_id",
    kind="improvement_action",
    what="the improvement action",
)
FINDINGS = RecordTable(
    AuditFindingRecord,
    table="audit_findings",
    history="audit_finding_history",
    key="finding_id",
    kind="audit_finding",
    what="the audit finding",
)


# --- progress --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Behind:
    """A tenant whose newest signed checkpoint holds entries the projections have not read."""

    tenant_id: str
    applied: int
    tree_size: int
    root_hash: bytes


async def tenants_behind(conn: Connection) -> list[Behind]:
    """Every tenant whose newest checkpoint is beyond what the projections hold (all tenants)."""
    rows = await conn.fetch(
        # A constant fragment, no input in it.
        "SELECT n.tenant_id, coalesce(p.applied_size, 0) AS applied, n.size, n.root_hash"  # noqa: S608
        f" FROM ({NEWEST_CHECKPOINTS}) n"
        " LEFT JOIN sl_progress p ON p.tenant_id = n.tenant_id"
        " WHERE n.size > coalesce(p.basis_size, 0)"
        " ORDER BY n.tenant_id"
    )
    return [Behind(r["tenant_id"], r["applied"], r["size"], r["root_hash"]) for r in rows]


async def claim(conn: Connection, tenant_id: str) -> int | None:
    """Lock the tenant's progress row for the transaction; how many of its log's entries the
    projections hold (None when another replica holds the row)."""
    await conn.execute(
        "INSERT INTO sl_progress (tenant_id) VALUES ($1) ON CONFLICT DO NOTHING", tenant_id
    )
    value = await conn.fetchval(
        "SELECT applied_size FROM sl_progress WHERE tenant_id = $1 FOR UPDATE SKIP LOCKED",
        tenant_id,
    )
    return None if value is None else int(value)


async def save_progress(
    conn: Connection, tenant_id: str, applied: int, basis: tuple[int, bytes] | None
) -> None:
    """Entries below `applied` are in the projections; `basis`: the checkpoint they now stand
    on (when they reached its size)."""
    await conn.execute(
        "UPDATE sl_progress SET applied_size = $2, updated_at = now(),"
        " basis_size = coalesce($3, basis_size), basis_root = coalesce($4, basis_root)"
        " WHERE tenant_id = $1",
        tenant_id,
        applied,
        basis[0] if basis else None,
        basis[1] if basis else None,
    )


async def basis_of(conn: Connection, tenant_id: str) -> tuple[int, bytes] | None:
    """The checkpoint (size, root) the tenant's projections stand on; None before the first."""
    row = await conn.fetchrow(
        "SELECT basis_size, basis_root FROM sl_progress WHERE tenant_id = $1", tenant_id
    )
    if row is None or row["basis_root"] is None:
        return None
    return int(row["basis_size"]), bytes(row["basis_root"])


async def basis_signed_at(conn: Connection, tenant_id: str) -> datetime | None:
    """When the checkpoint the tenant's projections stand on was signed (None before one)."""
    value = await conn.fetchval(
        "SELECT c.signed_at FROM sl_progress p JOIN ledger_checkpoints c"
        " ON c.tenant_id = p.tenant_id AND c.tree_size = p.basis_size WHERE p.tenant_id = $1",
        tenant_id,
    )
    return value if isinstance(value, datetime) else None


async def projected_tenants(conn: Connection) -> list[str]:
    """Every tenant with projections (all tenants)."""
    return [r["tenant_id"] for r in await conn.fetch("SELECT tenant_id FROM sl_progress")]


async def entries(
    conn: Connection, tenant_id: str, start: int, end: int, types: Sequence[str], limit: int
) -> list[Any]:
    """The tenant's log entries of these types in [start, end), at most `limit`, in log order."""
    return list(
        await conn.fetch(
            "SELECT leaf_index AS position, tenant_id, type, subject, version, time,"
            " message_value, CASE WHEN message_value IS NULL THEN data END AS data"
            " FROM ledger WHERE tenant_id = $1 AND leaf_index >= $2 AND leaf_index < $3"
            " AND type = ANY($4::text[]) ORDER BY leaf_index LIMIT $5",
            tenant_id,
            start,
            end,
            list(types),
            limit,
        )
    )


async def reset(conn: Connection, tenant_id: str | None) -> None:
    """Empty the projections of one tenant or of all (an all-tenants transaction), for a
    rebuild from the ledger. Improvement actions and findings are records, never emptied."""
    for table in (
        "sl_services",
        "sl_policies",
        "sl_outages",
        "sl_changes",
        "sl_ci_services",
        "sl_clock_events",
    ):
        await conn.execute(
            f"DELETE FROM {table} WHERE $1::text IS NULL OR tenant_id = $1",  # noqa: S608
            tenant_id,
        )
    await conn.execute(
        "UPDATE sl_progress SET applied_size = 0, basis_size = 0, basis_root = NULL"
        " WHERE $1::text IS NULL OR tenant_id = $1",
        tenant_id,
    )


async def signed_sizes(conn: Connection, tenant_id: str | None) -> int:
    """The entries of the newest checkpoints of one tenant or all: what a rebuild reads."""
    value = await conn.fetchval(
        "SELECT coalesce(sum(tree_size), 0) FROM (SELECT DISTINCT ON (tenant_id) tree_size"
        " FROM ledger_checkpoints WHERE $1::text IS NULL OR tenant_id = $1"
        " ORDER BY tenant_id, tree_size DESC) c",
        tenant_id,
    )
    return int(value or 0)


# --- projection writes -----------------------------------------------------------------------


async def save_service(conn: Connection, tenant_id: str, data: dict[str, Any]) -> None:
    """A business service as the catalogue now describes it."""
    await conn.execute(
        "INSERT INTO sl_services (tenant_id, service_id, name, status, criticality, sla_policy,"
        " availability_target) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        " ON CONFLICT (tenant_id, service_id) DO UPDATE SET name = excluded.name,"
        " status = excluded.status, criticality = excluded.criticality,"
        " sla_policy = excluded.sla_policy, availability_target = excluded.availability_target",
        tenant_id,
        data["id"],
        data["name"],
        data["status"],
        int(data.get("criticality") or 4),
        data.get("sla_policy"),
        data.get("availability_target"),
    )


async def save_policy(conn: Connection, tenant_id: str, data: dict[str, Any]) -> None:
    """An SLA policy as now defined."""
    objective = data.get("compliance_objective")
    await conn.execute(
        "INSERT INTO sl_policies (tenant_id, name, calendar, services, is_default, targets,"
        " objective, availability_target) VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7, $8)"
        " ON CONFLICT (tenant_id, name) DO UPDATE SET calendar = excluded.calendar,"
        " services = excluded.services, is_default = excluded.is_default,"
        " targets = excluded.targets, objective = excluded.objective,"
        " availability_target = excluded.availability_target",
        tenant_id,
        data["name"],
        json.dumps(data["calendar"]),
        list(data.get("services") or []),
        bool(data.get("default")),
        sorted((data.get("targets") or {}).keys()),
        float(objective) if objective is not None else None,
        data.get("availability_target"),
    )


async def save_outage(
    conn: Connection, tenant_id: str, outage_id: str, outage: dict[str, Any], withdrawn: bool
) -> None:
    """An outage record as it now stands: a row per service it names (those it no longer
    names are removed)."""
    services = sorted(set(outage["services"]))
    await conn.execute(
        "DELETE FROM sl_outages WHERE tenant_id = $1 AND outage_id = $2"
        " AND NOT service = ANY($3::text[])",
        tenant_id,
        outage_id,
        services,
    )
    await conn.execute(
        "INSERT INTO sl_outages (tenant_id, outage_id, service, kind, started_at, ended_at,"
        " incident_id, withdrawn) SELECT $1, $2, s, $4, $5, $6, $7, $8 FROM unnest($3::text[]) s"
        " ON CONFLICT (tenant_id, outage_id, service) DO UPDATE SET kind = excluded.kind,"
        " started_at = excluded.started_at, ended_at = excluded.ended_at,"
        " incident_id = excluded.incident_id, withdrawn = excluded.withdrawn",
        tenant_id,
        outage_id,
        services,
        outage["kind"],
        outage["start"],
        outage.get("end"),
        outage.get("incident_id"),
        withdrawn,
    )


async def save_change(
    conn: Connection,
    tenant_id: str,
    change_id: str,
    *,
    services: Sequence[str] | None = None,
    ci_ids: Sequence[str] | None = None,
    planned_start: datetime | None = None,
    planned_end: datetime | None = None,
    window_given: bool = False,
    approved: bool | None = None,
    state: str | None = None,
) -> None:
    """Create or amend a change's planned window, services, CIs, approval and state."""
    await conn.execute(
        "INSERT INTO sl_changes (tenant_id, change_id, services, ci_ids, planned_start,"
        " planned_end, approved, state) VALUES ($1, $2, coalesce($3, '{}'::text[]),"
        " coalesce($9, '{}'::text[]), $4, $5, coalesce($7, false), coalesce($8, 'new'))"
        " ON CONFLICT (tenant_id, change_id) DO UPDATE SET"
        " services = coalesce($3, sl_changes.services),"
        " ci_ids = coalesce($9, sl_changes.ci_ids),"
        " planned_start = CASE WHEN $6 THEN excluded.planned_start ELSE sl_changes.planned_start"
        " END,"
        " planned_end = CASE WHEN $6 THEN excluded.planned_end ELSE sl_changes.planned_end END,"
        " approved = coalesce($7, sl_changes.approved), state = coalesce($8, sl_changes.state)",
        tenant_id,
        change_id,
        list(services) if services is not None else None,
        planned_start,
        planned_end,
        window_given,
        approved,
        state,
        list(ci_ids) if ci_ids is not None else None,
    )


async def save_ci_services(
    conn: Connection, tenant_id: str, ci_id: str, services: Sequence[str]
) -> None:
    """The business services a CI supports now."""
    await conn.execute(
        "INSERT INTO sl_ci_services (tenant_id, ci_id, services) VALUES ($1, $2, $3)"
        " ON CONFLICT (tenant_id, ci_id) DO UPDATE SET services = excluded.services",
        tenant_id,
        ci_id,
        list(services),
    )


async def change_window(
    conn: Connection, tenant_id: str, change_id: str
) -> tuple[datetime | None, datetime | None]:
    """A change's planned window as projected (None, None when unknown)."""
    row = await conn.fetchrow(
        "SELECT planned_start, planned_end FROM sl_changes WHERE tenant_id = $1 AND change_id = $2",
        tenant_id,
        change_id,
    )
    return (row["planned_start"], row["planned_end"]) if row else (None, None)


async def save_clock_event(
    conn: Connection,
    tenant_id: str,
    leaf_index: int,
    policy: str,
    target: str,
    outcome: str,
    at: datetime,
) -> None:
    """One clock outcome or alert (a repeat of the same entry is kept once)."""
    await conn.execute(
        "INSERT INTO sl_clock_events (tenant_id, leaf_index, policy, target, outcome, at)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        tenant_id,
        leaf_index,
        policy,
        target,
        outcome,
        at,
    )


# --- projection reads ------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceRow:
    """A business service and what its availability is measured against."""

    service_id: str
    name: str
    criticality: int
    availability_target: float | None
    calendar: dict[str, Any] | None
    policy: str | None


_SERVICES = (
    "SELECT s.service_id, s.name, s.criticality, s.availability_target AS own_target,"
    " p.name AS policy, p.calendar, p.availability_target AS policy_target"
    " FROM sl_services s"
    " LEFT JOIN LATERAL (SELECT * FROM sl_policies q WHERE q.tenant_id = s.tenant_id"
    "   AND (q.name = s.sla_policy OR s.service_id = ANY(q.services)"
    "        OR (s.sla_policy IS NULL AND q.is_default))"
    "   ORDER BY q.name = s.sla_policy DESC, s.service_id = ANY(q.services) DESC, q.name"
    "   LIMIT 1) p ON true"
    " WHERE s.tenant_id = $1 AND s.status <> 'retired'"
    " AND ($2::text[] IS NULL OR s.service_id = ANY($2::text[]))"
    " ORDER BY s.criticality, s.name, s.service_id"
)


async def services(
    conn: Connection, tenant_id: str, wanted: Sequence[str] | None
) -> list[ServiceRow]:
    """The tenant's business services (those named, or all not retired), most critical first,
    each with its SLA policy's calendar: the one it names, lists it, or the tenant's default."""
    rows = await conn.fetch(_SERVICES, tenant_id, list(wanted) if wanted is not None else None)
    found = []
    for r in rows:
        target = r["own_target"] if r["own_target"] is not None else r["policy_target"]
        calendar = r["calendar"]
        found.append(
            ServiceRow(
                r["service_id"],
                r["name"],
                r["criticality"],
                float(target) if target is not None else None,
                json.loads(calendar) if isinstance(calendar, str) else calendar,
                r["policy"],
            )
        )
    return found


async def outages(
    conn: Connection, tenant_id: str, service: str, start: datetime, end: datetime
) -> list[Outage]:
    """The service's outage records overlapping [start, end), withdrawn ones included."""
    rows = await conn.fetch(
        "SELECT outage_id, kind, started_at, ended_at, withdrawn FROM sl_outages"
        " WHERE tenant_id = $1 AND service = $2 AND started_at < $4"
        " AND (ended_at IS NULL OR ended_at > $3) ORDER BY started_at",
        tenant_id,
        service,
        start,
        end,
    )
    return [
        Outage(r["outage_id"], r["kind"], r["started_at"], r["ended_at"], r["withdrawn"])
        for r in rows
    ]


async def approved_windows(
    conn: Connection, tenant_id: str, service: str, start: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    """The planned windows of approved changes overlapping [start, end) that name the service,
    or a CI that supports it now."""
    rows = await conn.fetch(
        "SELECT planned_start, planned_end FROM sl_changes c"
        " WHERE tenant_id = $1 AND approved AND planned_start < $4 AND planned_end > $3"
        " AND (services @> ARRAY[$2::text] OR EXISTS (SELECT 1 FROM sl_ci_services m"
        "      WHERE m.tenant_id = c.tenant_id AND m.ci_id = ANY(c.ci_ids)"
        "      AND m.services @> ARRAY[$2::text]))",
        tenant_id,
        service,
        start,
        end,
    )
    return [(r["planned_start"], r["planned_end"]) for r in rows]


@dataclass(frozen=True)
class PolicyRow:
    """A policy's targets and its own compliance objective."""

    name: str
    targets: list[str]
    objective: float | None


async def policies(conn: Connection, tenant_id: str) -> list[PolicyRow]:
    """The tenant's SLA policies."""
    rows = await conn.fetch(
        "SELECT name, targets, objective FROM sl_policies WHERE tenant_id = $1 ORDER BY name",
        tenant_id,
    )
    return [PolicyRow(r["name"], list(r["targets"]), r["objective"]) for r in rows]


async def clock_counts(
    conn: Connection, tenant_id: str, kind: str, time_zone: str, start: datetime, end: datetime
) -> list[tuple[str, str, str, date, int]]:
    """(policy, target, outcome, local first day of the period, count) in [start, end)."""
    rows = await conn.fetch(
        "SELECT policy, target, outcome,"
        " (date_trunc($2, at, $3) AT TIME ZONE $3)::date AS first, count(*) AS n"
        " FROM sl_clock_events WHERE tenant_id = $1 AND at >= $4 AND at < $5"
        " GROUP BY 1, 2, 3, 4",
        tenant_id,
        kind,
        time_zone,
        start,
        end,
    )
    return [(r["policy"], r["target"], r["outcome"], r["first"], r["n"]) for r in rows]


# --- settings --------------------------------------------------------------------------------


async def settings_of(conn: Connection, tenant_id: str) -> dict[str, Any] | None:
    """The tenant's stored service-level settings, None when it uses the defaults."""
    row = await conn.fetchrow("SELECT * FROM sl_settings WHERE tenant_id = $1", tenant_id)
    return dict(row) if row else None


async def save_settings(conn: Connection, values: dict[str, Any]) -> None:
    """Store the tenant's settings (the caller checked the version it replaces)."""
    await conn.execute(
        "INSERT INTO sl_settings (tenant_id, sla_objective, time_zone, improvement_period,"
        " version, updated_at, updated_by) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        " ON CONFLICT (tenant_id) DO UPDATE SET sla_objective = excluded.sla_objective,"
        " time_zone = excluded.time_zone, improvement_period = excluded.improvement_period,"
        " version = excluded.version, updated_at = excluded.updated_at,"
        " updated_by = excluded.updated_by",
        values["tenant_id"],
        values["sla_objective"],
        values["time_zone"],
        values["improvement_period"],
        values["version"],
        values["updated_at"],
        values["updated_by"],
    )


# --- improvement actions ---------------------------------------------------------------------


async def action_by_key(conn: Connection, tenant_id: str, auto_key: str) -> uuid.UUID | None:
    """The action opened automatically for this miss, if any."""
    value = await conn.fetchval(
        "SELECT id FROM improvement_actions WHERE tenant_id = $1 AND auto_key = $2",
        tenant_id,
        auto_key,
    )
    return value if isinstance(value, uuid.UUID) else None


async def all_actions(
    conn: Connection, tenant_id: str, *, open_only: bool
) -> list[ImprovementActionRecord]:
    """The tenant's improvement actions, oldest first (open ones only with `open_only`)."""
    rows = await conn.fetch(
        f"{ACTIONS.select} WHERE r.tenant_id = $1 AND (NOT $2 OR r.state = ANY($3::text[]))"
        " ORDER BY r.created_at, r.id",
        tenant_id,
        open_only,
        list(OPEN_ACTION),
    )
    return [ACTIONS.from_row(r) for r in rows]


async def all_findings(
    conn: Connection, tenant_id: str, *, open_only: bool
) -> list[AuditFindingRecord]:
    """The tenant's audit findings, oldest first (not closed only with `open_only`)."""
    rows = await conn.fetch(
        f"{FINDINGS.select} WHERE r.tenant_id = $1 AND (NOT $2 OR r.state <> 'closed')"
        " ORDER BY r.created_at, r.id",
        tenant_id,
        open_only,
    )
    return [FINDINGS.from_row(r) for r in rows]


async def action_counts(conn: Connection, today: date) -> tuple[int, int]:
    """Open improvement actions of every tenant, and those of them overdue (all tenants)."""
    row = await conn.fetchrow(
        "SELECT count(*) AS open, count(*) FILTER (WHERE due_date < $1) AS overdue"
        " FROM improvement_actions WHERE state = ANY($2::text[])",
        today,
        list(OPEN_ACTION),
    )
    return (int(row["open"]), int(row["overdue"])) if row else (0, 0)
