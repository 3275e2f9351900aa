"""Reporting HTTP API: the gaps found in the ledger, and one record's timeline across services."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field

from services.reporting.adapters import completeness as store
from services.reporting.application.completeness import MAX_ENTITY
from shared.context import RequestContext
from shared.db import tenant_transaction
from shared.http.context import authorize
from shared.http.pagination import DEFAULT_PAGE_SIZE, Cursor, Page, PageSize, cursor_int, page_of
from shared.service import ServiceRuntime, runtime_of

router = APIRouter(tags=["ledger"])
Runtime = Annotated[ServiceRuntime, Depends(runtime_of)]


class LedgerGap(BaseModel):
    """Events of an aggregate the ledger is (or was) missing."""

    gap_id: int
    aggregate: str = Field(description="The subject whose events are missing.")
    kind: Literal["version_gap", "missing_event"]
    missing_versions: list[int] = Field(description="The versions missing when it was found.")
    still_missing: list[int] = Field(description="Those not arrived since (empty: closed).")
    last_seen_version: int | None = Field(description="The version before the gap, if any.")
    seen_version: int = Field(description="The version that revealed the gap.")
    detected_position: int = Field(description="The ledger position of that event.")
    detected_at: datetime
    closed_position: int | None = Field(description="The position of the event that closed it.")
    closed_at: datetime | None


class TimelineEntry(BaseModel):
    """One event of the record's timeline; `data` as the event carried it."""

    position: int
    leaf_index: int | None = Field(
        description="Its index in the tenant's verifiable log (for `GET /ledger/proofs/inclusion`);"
        " null only for a row recorded before the log existed and not adopted yet."
    )
    event_id: uuid.UUID
    type: str
    source: str
    subject: str
    version: int
    time: datetime
    correlation_id: str
    causation_id: str | None
    actor: str
    data: dict[str, Any]
    recorded_at: datetime
    about_entity: bool = Field(
        description="True for the record's own events (its subject), false for events of"
        " other records that name it."
    )


@router.get("/ledger/gaps", response_model=Page[LedgerGap], summary="Gaps found in the ledger")
async def read_gaps(
    context: Annotated[RequestContext, authorize("ledger:read")],
    runtime: Runtime,
    state: Annotated[
        Literal["open", "closed"] | None, Query(description="Only open or only closed gaps.")
    ] = None,
    cursor: Cursor = None,
    limit: PageSize = DEFAULT_PAGE_SIZE,
) -> Page[dict[str, Any]]:
    after = cursor_int(cursor)
    async with tenant_transaction(runtime.pool, context.tenant_id, readonly=True) as conn:
        rows = await store.gaps_page(
            conn, context.tenant_id, state=state, after=after, limit=limit + 1
        )
    return page_of(rows, limit, key=lambda r: [r["gap_id"]])


@router.get(
    "/ledger/timeline/{entity:path}",
    response_model=Page[TimelineEntry],
    summary="Every event of one record across services, in ledger order",
)
async def read_timeline(
    context: Annotated[RequestContext, authorize("ledger:read")],
    runtime: Runtime,
    entity: Annotated[
        str,
        Path(
            min_length=1,
            max_length=MAX_ENTITY,
            description="A record's id (an incident, CI, problem, change, ...) or any subject.",
        ),
    ],
    cursor: Cursor = None,
    limit: PageSize = DEFAULT_PAGE_SIZE,
) -> Page[dict[str, Any]]:
    after = cursor_int(cursor)
    # Ids are indexed in lower case (references_of); other subjects as they are.
    key = entity.lower() if _is_uuid(entity) else entity
    async with tenant_transaction(runtime.pool, context.tenant_id, readonly=True) as conn:
        rows = await store.timeline_page(conn, context.tenant_id, key, after=after, limit=limit + 1)
    for row in rows:
        value = row.pop("message_value")
        if value is not None:
            row["data"] = json.loads(value)
    return page_of(rows, limit, key=lambda r: [r["position"]])


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return len(text) == 36
