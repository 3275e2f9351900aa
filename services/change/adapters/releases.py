"""Releases in PostgreSQL: the shared record repository over `releases`, and each release's
deployments to its environments (`release_deployments`, one row each, rollbacks included)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from services.change.domain.releases import EnvironmentDeployment, Release
from shared.db import Connection
from shared.records.sql import RecordTable

RELEASES = RecordTable(
    Release,
    table="releases",
    history="release_history",
    key="release_id",
    kind="release",
    what="the release",
    arrays=("environments", "changes"),
)


async def get(conn: Connection, tenant_id: str, release_id: uuid.UUID) -> Release | None:
    """The tenant's release, or None."""
    return await RELEASES.get(conn, tenant_id, release_id)


async def deployments(
    conn: Connection, tenant_id: str, release_id: uuid.UUID
) -> list[dict[str, Any]]:
    """A release's deployments, oldest first."""
    rows = await conn.fetch(
        "SELECT seq, environment, status, digests, evidence, log_url, deployment_id, at, actor"
        " FROM release_deployments WHERE tenant_id = $1 AND release_id = $2 ORDER BY seq",
        tenant_id,
        release_id,
    )
    return [dict(r) for r in rows]


def as_history(rows: list[dict[str, Any]]) -> list[EnvironmentDeployment]:
    """Stored deployments as the promotion check reads them."""
    return [EnvironmentDeployment(r["environment"], r["status"], r["digests"]) for r in rows]


async def add_deployment(
    conn: Connection,
    release: Release,
    *,
    environment: str,
    status: str,
    digests: dict[str, str],
    evidence: list[str],
    log_url: str | None,
    deployment_id: uuid.UUID | None,
    at: datetime,
    actor: str,
) -> None:
    """Keep one deployment of the release (the caller holds the release locked)."""
    await conn.execute(
        "INSERT INTO release_deployments (tenant_id, release_id, seq, environment, status,"
        " digests, evidence, log_url, deployment_id, at, actor) VALUES ($1, $2, (SELECT"
        " coalesce(max(seq), 0) + 1 FROM release_deployments WHERE tenant_id = $1 AND"
        " release_id = $2), $3, $4, $5, $6, $7, $8, $9, $10)",
        release.tenant_id,
        release.id,
        environment,
        status,
        digests,
        evidence,
        log_url,
        deployment_id,
        at,
        actor,
    )
