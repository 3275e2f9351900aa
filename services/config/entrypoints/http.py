"""Config service HTTP API. For now: tenant administration of access (token revocation)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from services.config.adapters import revocations
from services.config.application.revocations import RevokeToken, revoke_token
from services.config.application.uow import ConfigUnitOfWork
from shared.context import RequestContext
from shared.db import tenant_transaction
from shared.events.catalogue import TOKEN_ID_PATTERN
from shared.http.context import authorize
from shared.http.models import RequestBody
from shared.http.pagination import (
    DEFAULT_PAGE_SIZE,
    Cursor,
    Page,
    PageSize,
    cursor_instant,
    decode_cursor,
    invalid_cursor,
    page_of,
)
from shared.http.types import Timestamp
from shared.service import ServiceRuntime, runtime_of

router = APIRouter(tags=["access"])
Runtime = Annotated[ServiceRuntime, Depends(runtime_of)]


class NewRevocation(RequestBody):
    """Body of POST /token-revocations."""

    token_id: str = Field(
        pattern=TOKEN_ID_PATTERN, description="The token's `jti` (printed by `token create`)."
    )
    reason: str = Field(min_length=1, max_length=500)
    expires_at: Timestamp | None = Field(
        default=None, description="The token's expiry, if known: the entry can be forgotten then."
    )


class RevocationOut(BaseModel):
    """A revoked token of the tenant."""

    token_id: str
    reason: str
    revoked_at: datetime
    revoked_by: str
    expires_at: datetime | None


@router.post(
    "/token-revocations",
    status_code=201,
    response_model=RevocationOut,
    summary="Revoke a token for this tenant (every service refuses it within seconds)",
    responses={200: {"model": RevocationOut, "description": "The token was already revoked."}},
)
async def create_revocation(
    body: NewRevocation,
    context: Annotated[RequestContext, authorize("token:revoke")],
    runtime: Runtime,
) -> JSONResponse:
    revocation = await revoke_token(
        ConfigUnitOfWork(runtime.pool, context),
        RevokeToken(body.token_id, body.reason, body.expires_at),
    )
    out = RevocationOut.model_validate(revocation.record).model_dump(mode="json")
    return JSONResponse(out, status_code=201 if revocation.created else 200)


@router.get(
    "/token-revocations",
    response_model=Page[RevocationOut],
    summary="The tenant's revoked tokens, oldest first",
)
async def list_revocations(
    context: Annotated[RequestContext, authorize("token:read")],
    runtime: Runtime,
    cursor: Cursor = None,
    limit: PageSize = DEFAULT_PAGE_SIZE,
) -> Page[dict[str, Any]]:
    after = None
    if cursor:
        revoked_at, token_id = decode_cursor(cursor, 2)
        try:
            after = (cursor_instant(revoked_at), str(token_id))
        except ValueError:
            raise invalid_cursor() from None
    async with tenant_transaction(runtime.pool, context.tenant_id, readonly=True) as conn:
        rows = await revocations.page(conn, context.tenant_id, after=after, limit=limit + 1)
    return page_of(rows, limit, key=lambda r: [r["revoked_at"].isoformat(), r["token_id"]])
