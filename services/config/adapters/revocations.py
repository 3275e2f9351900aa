"""Token revocations in PostgreSQL: plain, parameterised SQL, always scoped to a tenant."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.db import Connection

_COLUMNS = "token_id, reason, revoked_at, revoked_by, expires_at"


async def insert(
    conn: Connection,
    tenant_id: str,
    token_id: str,
    *,
    reason: str,
    revoked_at: datetime,
    revoked_by: str,
    expires_at: datetime | None,
) -> dict[str, Any] | None:
    """Record a revocation; None when the token was already revoked for the tenant."""
    row = await conn.fetchrow(
        "INSERT INTO token_revocations"  # noqa: S608 - constant column list
        " (tenant_id, token_id, reason, revoked_at, revoked_by, expires_at)"
        f" VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING {_COLUMNS}",
        tenant_id,
        token_id,
        reason,
        revoked_at,
        revoked_by,
        expires_at,
    )
    return dict(row) if row else None


async def get(conn: Connection, tenant_id: str, token_id: str) -> dict[str, Any] | None:
    """The tenant's revocation of a token, or None."""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM token_revocations"  # noqa: S608 - constant column list
        " WHERE tenant_id = $1 AND token_id = $2",
        tenant_id,
        token_id,
    )
    return dict(row) if row else None


async def page(
    conn: Connection, tenant_id: str, *, after: tuple[datetime, str] | None, limit: int
) -> list[dict[str, Any]]:
    """Up to `limit` of the tenant's revocations after a (revoked_at, token_id), oldest first."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM token_revocations"  # noqa: S608 - constant column list
        " WHERE tenant_id = $1"
        " AND ($2::timestamptz IS NULL OR (revoked_at, token_id) > ($2, $3::text))"
        " ORDER BY revoked_at, token_id LIMIT $4",
        tenant_id,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
    return [dict(r) for r in rows]
