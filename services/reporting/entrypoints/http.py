"""Reporting HTTP API: the ledger, read in order."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field, computed_field

from services.reporting.adapters import ledger
from shared.context import RequestContext
from shared.db import tenant_transaction
from shared.events.envelope import TYPE_PATTERN
from shared.http.context import authorize
from shared.http.pagination import DEFAULT_PAGE_SIZE, Cursor, Page, PageSize, cursor_int, page_of
from shared.service import ServiceRuntime, runtime_of

router = APIRouter(tags=["ledger"])
Runtime = Annotated[ServiceRuntime, Depends(runtime_of)]


class LedgerEntry(BaseModel):
    """One recorded event; `data` as the event carried it (decoded from the stored message)."""

    position: int
    event_id: uuid.UUID
    type: str
    source: str
    subject: str
    version: int = Field(description="The subject's version after the event (`itsmversion`).")
    time: datetime
    correlation_id: str
    causation_id: str | None
    actor: str
    data: dict[str, Any]
    recorded_at: datetime

    # Marked deprecated in the schema only: pydantic's `deprecated` warns on every response.
    @computed_field(  # type: ignore[prop-decorator]
        description="Deprecated: the same as `version`, for clients written before it.",
        json_schema_extra={"deprecated": True},
    )
    @property
    def sequence(self) -> int:
        return self.version


@router.get("/ledger", response_model=Page[LedgerEntry], summary="The tenant's recorded events")
async def read_ledger(
    context: Annotated[RequestContext, authorize("ledger:read")],
    runtime: Runtime,
    subject: Annotated[
        str | None, Query(min_length=1, max_length=200, description="Aggregate id")
    ] = None,
    type: Annotated[str | None, Query(pattern=TYPE_PATTERN, description="Event type")] = None,
    cursor: Cursor = None,
    limit: PageSize = DEFAULT_PAGE_SIZE,
) -> Page[dict[str, Any]]:
    after = cursor_int(cursor)
    async with tenant_transaction(runtime.pool, context.tenant_id, readonly=True) as conn:
        rows = await ledger.page(
            conn,
            context.tenant_id,
            subject=subject,
            event_type=type,
            after=after,
            limit=limit + 1,
        )
    return page_of(rows, limit, key=lambda r: [r["position"]])
