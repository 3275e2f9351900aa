"""Revoking a token for a tenant: the record and its event in one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.config.adapters import revocations
from shared import outbox
from shared.context import RequestContext
from shared.db import tenant_transaction
from shared.events.catalogue import TokenRevokedV1, revocation_subject


@dataclass(frozen=True)
class RevokeToken:
    """Command: refuse the token with this id (its `jti`) for the caller's tenant."""

    token_id: str
    reason: str
    expires_at: datetime | None = None


@dataclass(frozen=True)
class Revocation:
    """The stored revocation, and whether this call made it (False: it existed already)."""

    record: dict[str, Any]
    created: bool


async def revoke_token(
    pool: asyncpg.Pool, command: RevokeToken, context: RequestContext
) -> Revocation:
    """Record the revocation and announce it; revoking a revoked token changes nothing."""
    async with tenant_transaction(pool, context.tenant_id) as conn:
        record = await revocations.insert(
            conn,
            context.tenant_id,
            command.token_id,
            reason=command.reason,
            revoked_at=datetime.now(UTC),
            revoked_by=context.actor,
            expires_at=command.expires_at,
        )
        if record is None:
            existing = await revocations.get(conn, context.tenant_id, command.token_id)
            assert existing is not None
            return Revocation(existing, created=False)
        await outbox.append(
            conn,
            TokenRevokedV1(
                token_id=command.token_id, reason=command.reason, expires_at=command.expires_at
            ),
            subject=revocation_subject(context.tenant_id, command.token_id),
            tenant_id=context.tenant_id,
            sequence=1,
            actor=context.actor,
            correlation_id=context.correlation_id,
        )
    return Revocation(record, created=True)
