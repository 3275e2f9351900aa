"""Events of access control: token revocations, published by the config service on the
compacted revocations topic."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from shared.events.base import EventPayload, event
from shared.events.topics import AUTH_REVOCATIONS

TOKEN_ID_PATTERN = r"^[\x21-\x7e]{1,128}$"  # noqa: S105 - a pattern, not a secret


@event("itsm.config.token.revoked.v1", topic=AUTH_REVOCATIONS, source="itsm/config")
class TokenRevokedV1(EventPayload):
    """A tenant administrator revoked a token (by its `jti`) for their tenant.

    Every service refuses the token for that tenant from the moment it reads this event.
    The subject (and so the Kafka key of the compacted topic) is `<tenant>/<token id>`.
    """

    token_id: str = Field(pattern=TOKEN_ID_PATTERN)
    reason: str = Field(min_length=1, max_length=500)
    expires_at: datetime | None = Field(
        default=None, description="When the token expires anyway; the entry may be forgotten then."
    )


def revocation_subject(tenant_id: str, token_id: str) -> str:
    """The aggregate id (and Kafka key) of one tenant's revocation of one token."""
    return f"{tenant_id}/{token_id}"
