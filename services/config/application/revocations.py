"""Revoking a token for a tenant: the record and its event in one unit of work."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.config.application.uow import ConfigUnit
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


async def revoke_token(uow: ConfigUnit, command: RevokeToken) -> Revocation:
    """Record the revocation and announce it; revoking a revoked token changes nothing."""
    context = uow.context
    async with uow:
        record = await uow.revocations.insert(
            command.token_id,
            reason=command.reason,
            revoked_at=datetime.now(UTC),
            revoked_by=context.actor,
            expires_at=command.expires_at,
        )
        if record is None:
            existing = await uow.revocations.get(command.token_id)
            assert existing is not None
            return Revocation(existing, created=False)
        uow.record(
            revocation_subject(context.tenant_id, command.token_id),
            1,
            [
                TokenRevokedV1(
                    token_id=command.token_id, reason=command.reason, expires_at=command.expires_at
                )
            ],
        )
    return Revocation(record, created=True)
