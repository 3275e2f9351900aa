"""Calendar feed tokens' use cases: create one for the caller (its secret returned once),
list the caller's, revoke one (the caller's own, or any of the tenant's for a change manager),
and authenticate a presented secret for the feed (`domain/feed_tokens.py` says what a token is).

The feed itself is the schedule's (`schedule.schedule`), read with the token's filters.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from services.change.adapters import feed_tokens as store
from services.change.application.uow import ChangeUnitOfWork
from services.change.domain import feed_tokens as domain
from services.change.domain.feed_tokens import FeedToken
from shared.context import RequestContext
from shared.db import tenant_transaction
from shared.errors import Conflict, NotFound


@dataclass(frozen=True)
class CreatedToken:
    """A new token and its secret URL's path: the only time the secret is known."""

    token: FeedToken
    path: str


async def create(
    pool: asyncpg.Pool,
    context: RequestContext,
    *,
    name: str | None,
    service: str | None,
    ci_ids: Sequence[str],
    now: datetime | None = None,
) -> CreatedToken:
    """A feed token for the caller; `Conflict` when they hold the most active tokens allowed."""
    async with ChangeUnitOfWork(pool, context) as uow:
        held = await store.active_count(uow.conn, context.tenant_id, context.actor)
        try:
            token, secret, events = domain.create_token(
                tenant_id=context.tenant_id,
                user_id=context.actor,
                name=name,
                service=service,
                ci_ids=tuple(ci_ids),
                now=now or datetime.now(UTC),
                active_tokens=held,
            )
        except ValueError as exc:
            raise Conflict(str(exc)) from None
        await store.insert(uow.conn, token)
        uow.record(str(token.id), token.version, events)
        await uow.commit()
    return CreatedToken(token, domain.feed_path(context.tenant_id, secret))


async def of_caller(pool: asyncpg.Pool, context: RequestContext) -> list[FeedToken]:
    """The caller's active tokens, newest first."""
    async with tenant_transaction(pool, context.tenant_id, readonly=True) as conn:
        return await store.of_user(conn, context.tenant_id, context.actor)


async def revoke(
    pool: asyncpg.Pool,
    context: RequestContext,
    token_id: uuid.UUID,
    *,
    any_of_tenant: bool,
    now: datetime | None = None,
) -> FeedToken:
    """Revoke a token: the caller's own, or any of the tenant's when `any_of_tenant` (a change
    manager). Another user's token is `NotFound` to anyone else, as a missing one is."""
    async with ChangeUnitOfWork(pool, context) as uow:
        token = await store.locked(uow.conn, context.tenant_id, token_id)
        if token is None or (token.user_id != context.actor and not any_of_tenant):
            raise NotFound("feed token", str(token_id))
        revoked, events = domain.revoke_token(
            token, actor=context.actor, now=now or datetime.now(UTC)
        )
        if events:
            await store.save_revocation(uow.conn, revoked)
            uow.record(str(revoked.id), revoked.version, events)
        await uow.commit()
    return revoked


async def authenticate(
    pool: asyncpg.Pool, tenant_id: str, secret: str, *, now: datetime | None = None
) -> FeedToken | None:
    """The tenant's active token the secret belongs to (its use recorded), or None: unknown,
    malformed, revoked and another tenant's secrets are all alike."""
    if not domain.well_formed(secret):
        return None
    async with tenant_transaction(pool, tenant_id) as conn:
        token = await store.active_by_hash(conn, tenant_id, domain.secret_hash(secret))
        if token is None or not domain.matches(token, secret):
            return None
        await store.touch(conn, tenant_id, token.id, now or datetime.now(UTC))
    return token
