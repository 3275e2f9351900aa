"""Calendar feed tokens (pure): a secret URL that lets a calendar client which cannot send an
`Authorization` header read one user's view of the change schedule.

The secret is 32 random bytes, URL-safe base64 without padding (43 characters), shown to its
owner once in the URL `/feeds/{tenant}/schedule/{secret}.ics`. Only its SHA-256 is kept; a
presented secret is hashed and the hashes compared in constant time. A token is read-only, for
the schedule only, with the filters (`service`, `ci`) fixed when it was created; its owner (or a
change manager of the tenant) revokes it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final

from shared.events.catalogue import (
    EventPayload,
    ScheduleFeedTokenCreatedV1,
    ScheduleFeedTokenRevokedV1,
)

SECRET_BYTES: Final = 32
# URL-safe base64 of 32 bytes without its padding.
SECRET_PATTERN: Final = re.compile(r"^[A-Za-z0-9_-]{43}$")
# Active tokens one user may hold in a tenant: enough for every calendar client they use.
MAX_ACTIVE_PER_USER: Final = 20


@dataclass(frozen=True)
class FeedToken:
    """A feed token as stored: never the secret, only its hash."""

    id: uuid.UUID
    tenant_id: str
    user_id: str
    name: str | None
    service: str | None
    ci_ids: tuple[str, ...]
    secret_hash: bytes
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None
    revoked_by: str | None = None
    version: int = 1

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def new_secret() -> str:
    """A fresh secret: 32 bytes from the OS's CSPRNG, URL-safe base64 without padding."""
    return secrets.token_urlsafe(SECRET_BYTES)


def well_formed(secret: str) -> bool:
    """Whether a presented secret could be one of ours (others are refused without a lookup)."""
    return bool(SECRET_PATTERN.match(secret))


def secret_hash(secret: str) -> bytes:
    """The SHA-256 of the secret: what is stored and looked up."""
    return hashlib.sha256(secret.encode("ascii")).digest()


def matches(token: FeedToken, secret: str) -> bool:
    """Whether the secret is the token's, compared in constant time."""
    return hmac.compare_digest(token.secret_hash, secret_hash(secret))


def feed_path(tenant_id: str, secret: str) -> str:
    """The secret URL's path (the tenant is in it: the lookup runs in its transaction)."""
    return f"/feeds/{tenant_id}/schedule/{secret}.ics"


def create_token(
    *,
    tenant_id: str,
    user_id: str,
    name: str | None,
    service: str | None,
    ci_ids: tuple[str, ...],
    now: datetime,
    active_tokens: int,
) -> tuple[FeedToken, str, list[EventPayload]]:
    """A new token for the user, its secret (to show once) and its event (without the secret).

    Raises ValueError when the user already holds `MAX_ACTIVE_PER_USER` active tokens.
    """
    if active_tokens >= MAX_ACTIVE_PER_USER:
        raise ValueError(
            f"at most {MAX_ACTIVE_PER_USER} active feed tokens per user: revoke one first"
        )
    secret = new_secret()
    token = FeedToken(
        id=uuid.uuid4(),
        tenant_id=tenant_id,
        user_id=user_id,
        name=name,
        service=service,
        ci_ids=tuple(dict.fromkeys(ci_ids)),
        secret_hash=secret_hash(secret),
        created_at=now,
    )
    event = ScheduleFeedTokenCreatedV1(
        token_id=str(token.id),
        user_id=user_id,
        name=name,
        service=service,
        ci_ids=list(token.ci_ids),
    )
    return token, secret, [event]


def revoke_token(
    token: FeedToken, *, actor: str, now: datetime
) -> tuple[FeedToken, list[EventPayload]]:
    """The token revoked by the actor (its owner or a change manager); revoking twice does
    nothing and records nothing."""
    if not token.active:
        return token, []
    revoked = replace(token, revoked_at=now, revoked_by=actor, version=token.version + 1)
    event = ScheduleFeedTokenRevokedV1(
        token_id=str(token.id), user_id=token.user_id, revoked_by=actor
    )
    return revoked, [event]
