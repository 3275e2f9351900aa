"""Calendar feed tokens in PostgreSQL (`schedule_feed_tokens`): only the secret's hash is
stored. Plain, parameterised SQL in the tenant's transaction (row-level security applies too)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from services.change.domain.feed_tokens import FeedToken
from shared.db import Connection, stored_instant

_SELECT = (
    "SELECT id, tenant_id, user_id, name, service, ci_ids, secret_hash, created_at,"
    " last_used_at, revoked_at, revoked_by, version FROM schedule_feed_tokens"
)
# `last_used_at` is written at most this often per token (clients poll; the row stays cold).
TOUCH_EVERY = timedelta(minutes=1)


def _token(row: Any) -> FeedToken:
    return FeedToken(
        id=row["id"],
        tenant_id=row["tenant_id"],
        user_id=row["user_id"],
        name=row["name"],
        service=row["service"],
        ci_ids=tuple(row["ci_ids"]),
        secret_hash=bytes(row["secret_hash"]),
        created_at=stored_instant(row["created_at"]),
        last_used_at=row["last_used_at"],
        revoked_at=row["revoked_at"],
        revoked_by=row["revoked_by"],
        version=row["version"],
    )


async def insert(conn: Connection, token: FeedToken) -> None:
    await conn.execute(
        "INSERT INTO schedule_feed_tokens (id, tenant_id, user_id, name, service, ci_ids,"
        " secret_hash, created_at, version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        token.id,
        token.tenant_id,
        token.user_id,
        token.name,
        token.service,
        list(token.ci_ids),
        token.secret_hash,
        token.created_at,
        token.version,
    )


async def active_count(conn: Connection, tenant_id: str, user_id: str) -> int:
    found: int = await conn.fetchval(
        "SELECT count(*) FROM schedule_feed_tokens"
        " WHERE tenant_id = $1 AND user_id = $2 AND revoked_at IS NULL",
        tenant_id,
        user_id,
    )
    return found


async def of_user(conn: Connection, tenant_id: str, user_id: str) -> list[FeedToken]:
    """The user's active tokens, newest first."""
    rows = await conn.fetch(
        f"{_SELECT} WHERE tenant_id = $1 AND user_id = $2 AND revoked_at IS NULL"
        " ORDER BY created_at DESC, id",
        tenant_id,
        user_id,
    )
    return [_token(r) for r in rows]


async def locked(conn: Connection, tenant_id: str, token_id: uuid.UUID) -> FeedToken | None:
    row = await conn.fetchrow(
        f"{_SELECT} WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
        tenant_id,
        token_id,
    )
    return _token(row) if row is not None else None


async def save_revocation(conn: Connection, token: FeedToken) -> None:
    await conn.execute(
        "UPDATE schedule_feed_tokens SET revoked_at = $3, revoked_by = $4, version = $5"
        " WHERE tenant_id = $1 AND id = $2",
        token.tenant_id,
        token.id,
        token.revoked_at,
        token.revoked_by,
        token.version,
    )


async def active_by_hash(conn: Connection, tenant_id: str, digest: bytes) -> FeedToken | None:
    """The tenant's active token whose secret hashes to `digest`, if any."""
    row = await conn.fetchrow(
        f"{_SELECT} WHERE tenant_id = $1 AND secret_hash = $2 AND revoked_at IS NULL",
        tenant_id,
        digest,
    )
    return _token(row) if row is not None else None


async def touch(conn: Connection, tenant_id: str, token_id: uuid.UUID, now: datetime) -> None:
    """Record a use (at most once per TOUCH_EVERY)."""
    await conn.execute(
        "UPDATE schedule_feed_tokens SET last_used_at = $3"
        " WHERE tenant_id = $1 AND id = $2 AND (last_used_at IS NULL OR last_used_at < $4)",
        tenant_id,
        token_id,
        now,
        now - TOUCH_EVERY,
    )
