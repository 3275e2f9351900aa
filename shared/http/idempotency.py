"""Idempotency-Key for POSTs that create: a retried request gets the first response, not a twin."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

import asyncpg
from fastapi import Header

from shared.db import Connection, all_tenants_transaction
from shared.http.problems import PROBLEM_BASE, Problem

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="A unique printable string; a retry with it returns the first result.",
    ),
]

REPLAYED_HEADER = "Idempotent-Replayed"
DEFAULT_RETENTION = timedelta(hours=24)


@dataclass(frozen=True)
class StoredResponse:
    """The response first given for a key."""

    status: int
    body: Any


def request_fingerprint(method: str, path: str, body: Any) -> str:
    """A stable hash of what was asked, to refuse a key reused for a different request."""
    canonical = json.dumps([method.upper(), path, body], sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def claim(
    conn: Connection, tenant_id: str, key: str | None, fingerprint: str
) -> StoredResponse | None:
    """Inside the creating transaction: claim the key (None) or return its stored response.

    A concurrent request with the same key waits on the row lock until the first one commits,
    then sees its response: two retries racing never create two objects.
    """
    if key is None:
        return None
    claimed = await conn.fetchval(
        "INSERT INTO idempotency_keys (tenant_id, key, request_hash) VALUES ($1, $2, $3)"
        " ON CONFLICT DO NOTHING RETURNING true",
        tenant_id,
        key,
        fingerprint,
    )
    if claimed:
        return None
    row = await conn.fetchrow(
        "SELECT request_hash, response_status, response_body FROM idempotency_keys"
        " WHERE tenant_id = $1 AND key = $2",
        tenant_id,
        key,
    )
    assert row is not None
    if row["request_hash"] != fingerprint:
        raise Problem(
            422,
            "Idempotency-Key reused",
            "this Idempotency-Key was already used for a different request",
            type_=PROBLEM_BASE + "idempotency-key-reused",
            errors=[{"in": "header", "field": "Idempotency-Key", "detail": "reused"}],
        )
    return StoredResponse(row["response_status"], row["response_body"])


async def remember(
    conn: Connection, tenant_id: str, key: str | None, status: int, body: Any
) -> None:
    """Store the response for a claimed key, in the same transaction as the creation."""
    if key is None:
        return
    await conn.execute(
        "UPDATE idempotency_keys SET response_status = $3, response_body = $4"
        " WHERE tenant_id = $1 AND key = $2",
        tenant_id,
        key,
        status,
        body,
    )


async def purge_expired(pool: asyncpg.Pool, retention: timedelta = DEFAULT_RETENTION) -> int:
    """Forget keys older than the retention period; return how many."""
    async with all_tenants_transaction(pool) as conn:
        result: str = await conn.execute(
            "DELETE FROM idempotency_keys WHERE created_at < now() - $1::interval", retention
        )
    return int(result.split()[-1])
