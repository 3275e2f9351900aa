"""Config service HTTP API: baselines."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from services.config.adapters import baselines as repository
from services.config.application.baselines import (
    NOW,
    CreateBaseline,
    DiffPosition,
    create_baseline,
    diff,
)
from services.config.application.uow import ConfigUnitOfWork
from shared.context import RequestContext
from shared.db import tenant_transaction
from shared.errors import NotFound
from shared.events.catalogue import RelationshipType
from shared.http.context import authorize
from shared.http.models import RequestBody
from shared.http.pagination import (
    DEFAULT_PAGE_SIZE,
    Cursor,
    Page,
    PageSize,
    cursor_instant,
    decode_cursor,
    encode_cursor,
    invalid_cursor,
    page_of,
)
from shared.http.types import Timestamp
from shared.service import ServiceRuntime, runtime_of

router = APIRouter(tags=["baselines"])
Runtime = Annotated[ServiceRuntime, Depends(runtime_of)]

BASELINE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$"


class NewBaseline(RequestBody):
    """Body of POST /baselines."""

    name: str = Field(pattern=BASELINE_NAME, description=f"Unique in the tenant; not {NOW!r}.")
    description: str = Field(default="", max_length=2000)
    at: Timestamp | None = Field(default=None, description="The instant named; default now.")


class BaselineOut(BaseModel):
    """A named instant of the CMDB, with what was in place then."""

    name: str
    description: str
    at: datetime
    cis: int = Field(description="CIs not retired at `at`.")
    relationships: int = Field(description="Relationships in place at `at`.")
    created_at: datetime
    created_by: str


class DiffInstant(BaseModel):
    """One side of a diff: a baseline's name (or `now`) and its instant."""

    name: str
    at: datetime


class FieldChange(BaseModel):
    """A field's value at the earlier instant and at the later one."""

    model_config = ConfigDict(populate_by_name=True)

    from_: Any = Field(alias="from")
    to: Any


class CiChange(BaseModel):
    """A CI added, removed (retired or gone) or changed between the two instants."""

    model_config = ConfigDict(populate_by_name=True)

    id: uuid.UUID
    ci_class: str = Field(serialization_alias="class")
    name: str
    change: Literal["added", "removed", "changed"]
    fields: dict[str, FieldChange] = Field(
        description="Changed CIs: per field (`name`, ..., `attributes.<key>`) from and to."
    )
    from_: dict[str, Any] | None = Field(
        alias="from", description="The CI at the earlier instant (null: it did not exist)."
    )
    to: dict[str, Any] | None = Field(description="The CI at the later instant.")


class RelationshipChange(BaseModel):
    """A relationship put in place or removed between the two instants."""

    id: uuid.UUID
    type: RelationshipType
    source_id: uuid.UUID
    target_id: uuid.UUID
    change: Literal["added", "removed"]
    at: datetime
    by: str | None


class CiSummary(BaseModel):
    """How many CIs were added, removed and changed."""

    added: int
    removed: int
    changed: int


class RelationshipSummary(BaseModel):
    """How many relationships were added and removed."""

    added: int
    removed: int


class DiffSummary(BaseModel):
    """Counts over the whole diff, whichever page this is."""

    cis: CiSummary
    relationships: RelationshipSummary


class DiffOut(BaseModel):
    """The CMDB compared from the earlier instant to the later one, a page of items at a time."""

    model_config = ConfigDict(populate_by_name=True)

    from_: DiffInstant = Field(alias="from", description="The earlier instant.")
    to: DiffInstant = Field(description="The later instant.")
    summary: DiffSummary
    cis: list[CiChange] = Field(description="By CI id; all of them come before relationships.")
    relationships: list[RelationshipChange] = Field(description="By relationship id.")
    next_cursor: str | None = None


def _baseline_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    if not cursor:
        return None
    at, name = decode_cursor(cursor, 2)
    try:
        return cursor_instant(at), str(name)
    except (TypeError, ValueError):
        raise invalid_cursor() from None


def _diff_position(cursor: str | None) -> DiffPosition:
    if not cursor:
        return DiffPosition("cis", None)
    section, after, now = decode_cursor(cursor, 3)
    if section not in ("cis", "relationships"):
        raise invalid_cursor()
    try:
        return DiffPosition(
            section,
            None if after is None else uuid.UUID(after),
            None if now is None else cursor_instant(now),
        )
    except (TypeError, ValueError, AttributeError):
        raise invalid_cursor() from None


def _diff_cursor(position: DiffPosition | None) -> str | None:
    if position is None:
        return None
    after = None if position.after is None else str(position.after)
    now = None if position.now is None else position.now.isoformat()
    return encode_cursor([position.section, after, now])


@router.post(
    "/baselines",
    status_code=201,
    response_model=BaselineOut,
    summary="Name the CMDB as it is now, or as it was at an earlier instant",
    responses={409: {"description": "A baseline of that name exists: baselines are immutable"}},
)
async def post_baseline(
    body: NewBaseline,
    context: Annotated[RequestContext, authorize("baseline:create")],
    runtime: Runtime,
) -> JSONResponse:
    baseline = await create_baseline(
        ConfigUnitOfWork(runtime.pool, context),
        CreateBaseline(body.name, body.description, body.at),
    )
    out = BaselineOut.model_validate(baseline).model_dump(mode="json")
    return JSONResponse(out, status_code=201, headers={"Location": f"/baselines/{body.name}"})


@router.get("/baselines", response_model=Page[BaselineOut], summary="Baselines, oldest first")
async def list_baselines(
    context: Annotated[RequestContext, authorize("ci:read")],
    runtime: Runtime,
    cursor: Cursor = None,
    limit: PageSize = DEFAULT_PAGE_SIZE,
) -> Page[dict[str, Any]]:
    after = _baseline_cursor(cursor)
    async with tenant_transaction(runtime.pool, context.tenant_id, readonly=True) as conn:
        rows = await repository.page(conn, context.tenant_id, after=after, limit=limit + 1)
    return page_of(rows, limit, key=lambda r: [r["at"].isoformat(), r["name"]])


@router.get("/baselines/{name}", response_model=BaselineOut, summary="A baseline")
async def read_baseline(
    name: Annotated[str, Path(max_length=100)],
    context: Annotated[RequestContext, authorize("ci:read")],
    runtime: Runtime,
) -> dict[str, Any]:
    async with tenant_transaction(runtime.pool, context.tenant_id, readonly=True) as conn:
        baseline = await repository.get(conn, context.tenant_id, name)
    if baseline is None:
        raise NotFound("baseline", name)
    return baseline


@router.get(
    "/baselines/{name}/diff",
    response_model=DiffOut,
    summary="What changed between a baseline and another baseline or now",
)
async def read_diff(
    name: Annotated[str, Path(max_length=100)],
    context: Annotated[RequestContext, authorize("ci:read")],
    runtime: Runtime,
    against: Annotated[
        str, Query(min_length=1, max_length=100, description=f"A baseline's name, or {NOW!r}.")
    ] = NOW,
    cursor: Cursor = None,
    limit: PageSize = DEFAULT_PAGE_SIZE,
) -> dict[str, Any]:
    found = await diff(
        ConfigUnitOfWork(runtime.pool, context),
        name,
        against,
        position=_diff_position(cursor),
        limit=limit,
    )
    found["next_cursor"] = _diff_cursor(found.pop("next"))
    return found
