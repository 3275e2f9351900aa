"""Deployments, gate settings, tool secrets and webhook deliveries in PostgreSQL.

Plain, parameterised SQL on the caller's tenant transaction (row-level security applies too).
Other parts of the change service read a change's deployments through `deployments_of_change`
(the outcome proposal: their statuses are evidence).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Final

from services.change.adapters.changes import CHANGES
from services.change.domain.change import Change
from shared.db import Connection

DEFAULT_PRODUCTION: Final = ("production", "prod")
DEFAULT_RELEASE_ORDER: Final = ("test", "staging", "production")


@dataclass(frozen=True)
class Deployment:
    """A deployment as stored: what was announced, the gate's decision, and its outcome."""

    tenant_id: str
    id: uuid.UUID
    pipeline: str
    environment: str
    sequence: int
    source: str
    services: tuple[str, ...]
    ci_ids: tuple[uuid.UUID, ...]
    artifacts: list[dict[str, str]]
    commit: str | None
    change_id: uuid.UUID | None
    release_id: uuid.UUID | None
    registered: str | None
    fingerprint: str
    decision: str
    reasons: list[dict[str, Any]]
    decided_at: datetime
    status: str
    status_at: datetime | None
    log_url: str | None
    version: int
    created_at: datetime
    created_by: str
    updated_at: datetime
    external: dict[str, Any] = field(default_factory=dict)


_COLUMNS: Final = [f.name for f in fields(Deployment)]
_SELECT: Final = f"SELECT {', '.join(_COLUMNS)} FROM deployments"  # noqa: S608 (fixed names)


def _of(row: Any) -> Deployment:
    values = dict(row)
    values["services"] = tuple(values["services"] or ())
    values["ci_ids"] = tuple(values["ci_ids"] or ())
    return Deployment(**values)


async def insert(conn: Connection, deployment: Deployment) -> None:
    """Store a newly announced deployment."""
    values = [getattr(deployment, name) for name in _COLUMNS]
    values = [list(v) if isinstance(v, tuple) else v for v in values]
    places = ", ".join(f"${i}" for i in range(1, len(_COLUMNS) + 1))
    await conn.execute(
        f"INSERT INTO deployments ({', '.join(_COLUMNS)}) VALUES ({places})",  # noqa: S608
        *values,
    )


async def save(conn: Connection, deployment: Deployment) -> None:
    """Store the next version of a deployment (decision, status, links) over the one before."""
    status = await conn.execute(
        "UPDATE deployments SET decision = $3, reasons = $4, decided_at = $5, status = $6,"
        " status_at = $7, log_url = $8, change_id = $9, external = $10, version = $11,"
        " updated_at = $12 WHERE tenant_id = $1 AND id = $2 AND version = $11 - 1",
        deployment.tenant_id,
        deployment.id,
        deployment.decision,
        deployment.reasons,
        deployment.decided_at,
        deployment.status,
        deployment.status_at,
        deployment.log_url,
        deployment.change_id,
        deployment.external,
        deployment.version,
        deployment.updated_at,
    )
    assert status == "UPDATE 1", status  # the caller holds the row locked


async def get(
    conn: Connection, tenant_id: str, deployment_id: uuid.UUID, *, lock: bool = False
) -> Deployment | None:
    """The tenant's deployment with this id, or None."""
    row = await conn.fetchrow(
        _SELECT + " WHERE tenant_id = $1 AND id = $2" + (" FOR UPDATE" if lock else ""),
        tenant_id,
        deployment_id,
    )
    return _of(row) if row else None


async def by_key(
    conn: Connection, tenant_id: str, pipeline: str, environment: str, sequence: int
) -> Deployment | None:
    """The deployment announced as (pipeline, environment, sequence), or None."""
    row = await conn.fetchrow(
        _SELECT + " WHERE tenant_id = $1 AND pipeline = $2 AND environment = $3"
        " AND sequence = $4 FOR UPDATE",
        tenant_id,
        pipeline,
        environment,
        sequence,
    )
    return _of(row) if row else None


async def lock_key(
    conn: Connection, tenant_id: str, pipeline: str, environment: str, sequence: int
) -> None:
    """Serialise announcements of one (pipeline, environment, sequence) for the transaction,
    so two concurrent retries make one deployment (and at most one registered change)."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        _lock_name(tenant_id, pipeline, environment, sequence),
    )


def _lock_name(tenant_id: str, pipeline: str, environment: str, sequence: int) -> str:
    return f"deployment\x1f{tenant_id}\x1f{pipeline}\x1f{environment}\x1f{sequence}"


@dataclass(frozen=True)
class GateContext:
    """What `gate_context` reads with the key's lock: the tenant's gate settings and the
    change the announcement names (None when it names none or it does not exist)."""

    settings: GateSettings
    change: Change | None


# `gate_context`'s one statement: the change's columns as `CHANGES` selects them, beside the
# settings and the lock (names that no column of a change takes).
_GATE_CONTEXT: Final = (
    "SELECT pg_advisory_xact_lock(hashtextextended($2, 0)) AS gate_key_locked,"  # noqa: S608 (fixed names)
    " s.production_environments AS gate_production, s.release_environments AS gate_release,"
    " s.version AS gate_version,"
    " c.* FROM (SELECT 1) AS one LEFT JOIN gate_settings AS s ON s.tenant_id = $1"
    f" LEFT JOIN LATERAL ({CHANGES.select} WHERE r.tenant_id = $1 AND r.id = $3) AS c ON true"
)


async def gate_context(
    conn: Connection,
    tenant_id: str,
    pipeline: str,
    environment: str,
    sequence: int,
    *,
    change_id: uuid.UUID | None,
) -> GateContext:
    """`lock_key`, `gate_settings` and the change named, in one round trip: what every
    announcement starts with. (The deployment itself is read after, under the lock.)"""
    row = await conn.fetchrow(
        _GATE_CONTEXT,
        tenant_id,
        _lock_name(tenant_id, pipeline, environment, sequence),
        change_id,
    )
    assert row is not None  # one row, always
    settings = (
        GateSettings()
        if row["gate_production"] is None
        else GateSettings(
            tuple(row["gate_production"]), tuple(row["gate_release"]), row["gate_version"]
        )
    )
    change = None
    if row["id"] is not None:
        change = CHANGES.from_row({name: row[name] for name in CHANGES.fields})
    return GateContext(settings, change)


async def announced_at_commit(
    conn: Connection, tenant_id: str, pipeline: str, environment: str, commit: str | None
) -> Deployment | None:
    """The latest deployment of the pipeline to the environment at this commit that has no
    outcome yet, or None (tools that do not number their deployments report outcomes so)."""
    row = await conn.fetchrow(
        _SELECT + " WHERE tenant_id = $1 AND pipeline = $2 AND environment = $3"
        " AND commit IS NOT DISTINCT FROM $4 AND status = 'announced'"
        " ORDER BY sequence DESC LIMIT 1 FOR UPDATE",
        tenant_id,
        pipeline,
        environment,
        commit,
    )
    return _of(row) if row else None


async def next_sequence(conn: Connection, tenant_id: str, pipeline: str, environment: str) -> int:
    """The next sequence number of a pipeline and environment (for tools that number none)."""
    found: int = await conn.fetchval(
        "SELECT coalesce(max(sequence), 0) + 1 FROM deployments WHERE tenant_id = $1"
        " AND pipeline = $2 AND environment = $3",
        tenant_id,
        pipeline,
        environment,
    )
    return found


async def deployments_of_change(
    conn: Connection, tenant_id: str, change_id: uuid.UUID
) -> list[Deployment]:
    """A change's deployments, oldest first (outcome evidence)."""
    rows = await conn.fetch(
        _SELECT + " WHERE tenant_id = $1 AND change_id = $2 ORDER BY created_at, id",
        tenant_id,
        change_id,
    )
    return [_of(r) for r in rows]


@dataclass(frozen=True)
class GateSettings:
    """Which environments are production, and the order releases are promoted in."""

    production_environments: tuple[str, ...] = DEFAULT_PRODUCTION
    release_environments: tuple[str, ...] = DEFAULT_RELEASE_ORDER
    version: int = 0  # 0: the defaults, never saved

    def as_json(self) -> dict[str, Any]:
        """The settings as `GET /gate-settings` shows them and their event carries them."""
        return {
            "production_environments": list(self.production_environments),
            "release_environments": list(self.release_environments),
        }

    def is_production(self, environment: str) -> bool:
        """Whether the environment is one of the tenant's production ones (case-insensitive)."""
        return environment.lower() in {e.lower() for e in self.production_environments}


async def gate_settings(conn: Connection, tenant_id: str) -> GateSettings:
    """The tenant's gate settings (the defaults until a tenant admin sets them)."""
    row = await conn.fetchrow(
        "SELECT production_environments, release_environments, version FROM gate_settings"
        " WHERE tenant_id = $1",
        tenant_id,
    )
    if row is None:
        return GateSettings()
    return GateSettings(
        tuple(row["production_environments"]), tuple(row["release_environments"]), row["version"]
    )


async def lock_gate_settings(conn: Connection, tenant_id: str) -> None:
    """Serialise the tenant's writers of its gate settings (the first one has no row to lock)."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('gate_settings:' || $1, 0))", tenant_id
    )


async def put_gate_settings(
    conn: Connection, tenant_id: str, settings: GateSettings, *, actor: str, now: datetime
) -> None:
    """Replace the tenant's gate settings with this version of them."""
    await conn.execute(
        "INSERT INTO gate_settings (tenant_id, production_environments, release_environments,"
        " updated_at, updated_by, version) VALUES ($1, $2, $3, $4, $5, $6)"
        " ON CONFLICT (tenant_id) DO UPDATE SET production_environments = $2,"
        " release_environments = $3, updated_at = $4, updated_by = $5, version = $6",
        tenant_id,
        list(settings.production_environments),
        list(settings.release_environments),
        now,
        actor,
        settings.version,
    )


@dataclass(frozen=True)
class ToolSecret:
    """A tool's webhook secret for a tenant (never shown back), and its signature header."""

    secret: str
    signature_header: str | None
    updated_at: datetime
    updated_by: str


async def tool_secret(conn: Connection, tenant_id: str, tool: str) -> ToolSecret | None:
    """The tenant's secret for a tool, or None when none was set."""
    row = await conn.fetchrow(
        "SELECT secret, signature_header, updated_at, updated_by FROM integration_secrets"
        " WHERE tenant_id = $1 AND tool = $2",
        tenant_id,
        tool,
    )
    return ToolSecret(**dict(row)) if row else None


async def put_tool_secret(
    conn: Connection,
    tenant_id: str,
    tool: str,
    secret: str,
    signature_header: str | None,
    *,
    actor: str,
    now: datetime,
) -> None:
    """Set (or replace) the tenant's secret for a tool."""
    await conn.execute(
        "INSERT INTO integration_secrets (tenant_id, tool, secret, signature_header, updated_at,"
        " updated_by) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, tool) DO UPDATE"
        " SET secret = $3, signature_header = $4, updated_at = $5, updated_by = $6",
        tenant_id,
        tool,
        secret,
        signature_header,
        now,
        actor,
    )


async def claim_delivery(
    conn: Connection, tenant_id: str, tool: str, delivery_id: str, now: datetime
) -> uuid.UUID | bool | None:
    """Claim a webhook delivery: True when it is new; otherwise the deployment the first
    delivery touched (None if it touched none)."""
    claimed = await conn.fetchval(
        "INSERT INTO webhook_deliveries (tenant_id, tool, delivery_id, received_at)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true",
        tenant_id,
        tool,
        delivery_id,
        now,
    )
    if claimed:
        return True
    found: uuid.UUID | None = await conn.fetchval(
        "SELECT deployment_id FROM webhook_deliveries WHERE tenant_id = $1 AND tool = $2"
        " AND delivery_id = $3",
        tenant_id,
        tool,
        delivery_id,
    )
    return found


async def delivery_touched(
    conn: Connection, tenant_id: str, tool: str, delivery_id: str, deployment_id: uuid.UUID
) -> None:
    """Remember which deployment a delivery acted on (a redelivery answers with it)."""
    await conn.execute(
        "UPDATE webhook_deliveries SET deployment_id = $4 WHERE tenant_id = $1 AND tool = $2"
        " AND delivery_id = $3",
        tenant_id,
        tool,
        delivery_id,
        deployment_id,
    )
