"""Config service HTTP API: CI classes and configuration items with their history."""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, get_args

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from services.config.adapters import cis as repository
from services.config.adapters import listing
from services.config.adapters import relationships as relationships_repository
from services.config.application.cis import (
    DefineClass,
    ModifyCi,
    RegisterCi,
    define_class,
    modify_ci,
    register_ci,
)
from services.config.application.relationships import (
    MAX_DEPTH,
    MAX_PATHS,
    AddRelationship,
    add_relationship,
    impact,
    remove_relationship,
)
from services.config.application.uow import ConfigUnitOfWork
from services.config.domain import classes
from services.config.domain.ci import ConfigurationItem
from services.config.metrics import ConfigMetrics
from shared.context import RequestContext
from shared.db import tenant_transaction
from shared.errors import FieldError, NotFound, ValidationFailed, invalid_field
from shared.events.catalogue import CiStatus, RelationshipType
from shared.http.context import authorize
from shared.http.etags import IfMatch, etag, if_match_version
from shared.http.models import RequestBody
from shared.http.pagination import (
    DEFAULT_PAGE_SIZE,
    Cursor,
    Page,
    PageSize,
    cursor_int,
    decode_cursor,
    invalid_cursor,
    page_of,
)
from shared.http.types import Timestamp
from shared.service import ServiceRuntime, runtime_of

router = APIRouter(tags=["configuration items"])
Runtime = Annotated[ServiceRuntime, Depends(runtime_of)]

CLASS_NAME = classes.CLASS_NAME.pattern
SOURCE_NAME = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
Status = CiStatus
ExternalIds = dict[
    Annotated[str, Field(pattern=SOURCE_NAME)], Annotated[str, Field(min_length=1, max_length=200)]
]


class ClassDefinition(RequestBody):
    """Body of PUT /ci-classes/{name}."""

    description: str = Field(default="", max_length=2000)
    attribute_schema: dict[str, Any] = Field(description="JSON Schema (2020-12) of `attributes`.")


class CiClassOut(BaseModel):
    """A CI class and the JSON Schema its CIs' attributes follow."""

    name: str
    description: str
    attribute_schema: dict[str, Any]
    builtin: bool
    version: int


class NewCi(RequestBody):
    """Body of POST /cis."""

    model_config = ConfigDict(populate_by_name=False)

    ci_class: str = Field(alias="class", pattern=CLASS_NAME)
    name: str = Field(min_length=1, max_length=200)
    status: Status = "active"
    owner_team: str | None = Field(default=None, max_length=200)
    criticality: int = Field(default=3, ge=1, le=4, description="1 = most critical")
    attributes: dict[str, Any] = Field(default_factory=dict)
    external_ids: ExternalIds = Field(
        default_factory=dict, description='Id per discovery source, e.g. {"vcenter": "vm-42"}.'
    )
    controlled: bool = Field(
        default=False, description="Under change control (so is every CI of a controlled class)."
    )
    change_id: uuid.UUID | None = Field(
        default=None, description="The change, in implement, that authorises the registration."
    )


class CiChanges(RequestBody):
    """Body of PATCH /cis/{id}: the fields to change (attributes are replaced as a whole)."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    status: Status | None = None
    owner_team: str | None = Field(default=None, max_length=200)
    criticality: int | None = Field(default=None, ge=1, le=4)
    attributes: dict[str, Any] | None = None
    external_ids: ExternalIds | None = None
    controlled: bool | None = None
    reason: str | None = Field(default=None, max_length=2000)
    change_ref: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="A free-text reference (e.g. another tool's ticket), kept in the history.",
    )
    change_id: uuid.UUID | None = Field(
        default=None,
        description="The change, in implement and listing this CI, that authorises the"
        " modification; a CI under change control modified without one is reported as an"
        " unauthorized change.",
    )


class CiOut(BaseModel):
    """A configuration item."""

    model_config = ConfigDict(populate_by_name=True)

    id: uuid.UUID
    ci_class: str = Field(serialization_alias="class")
    name: str
    status: Status
    owner_team: str | None
    criticality: int
    attributes: dict[str, Any]
    external_ids: dict[str, str]
    controlled: bool
    version: int
    updated_at: datetime
    updated_by: str


class CiVersionOut(BaseModel):
    """One entry of a CI's history."""

    version: int
    at: datetime
    actor: str
    changed: list[str]
    reason: str | None
    change_ref: str | None
    change_id: uuid.UUID | None = Field(description="The change that authorised this version.")
    source: str | None
    state: dict[str, Any]


def _ci_response(ci: ConfigurationItem | dict[str, Any], status: int = 200) -> JSONResponse:
    data = ci.state().model_dump(mode="json") if isinstance(ci, ConfigurationItem) else ci
    body = CiOut.model_validate(data).model_dump(mode="json", by_alias=True)
    headers = {"ETag": etag(body["version"]), "Location": f"/cis/{body['id']}"}
    return JSONResponse(body, status_code=status, headers=headers)


def _expected_version(if_match: str | None) -> int:
    version = if_match_version(if_match, required=True)
    assert version is not None
    return version


@router.get(
    "/ci-classes", response_model=list[CiClassOut], summary="Built-in and tenant CI classes"
)
async def list_classes(
    context: Annotated[RequestContext, authorize("ci:read")], runtime: Runtime
) -> list[dict[str, Any]]:
    builtin = [
        {
            "name": c.name,
            "description": c.description,
            "attribute_schema": c.schema,
            "builtin": True,
            "version": c.version,
        }
        for c in (classes.builtin_class(n) for n in sorted(classes.BUILTIN_CLASSES))
    ]
    async with tenant_transaction(runtime.pool, context.tenant_id, readonly=True) as conn:
        own = await repository.tenant_classes(conn, context.tenant_id)
    return builtin + [{**c, "builtin": False} for c in own]


@router.put(
    "/ci-classes/{name}",
    response_model=CiClassOut,
    summary="Define or redefine a tenant CI class and its attribute schema",
    responses={
        201: {"model": CiClassOut, "description": "Defined: its first version"},
        409: {"description": "The name is a built-in class's"},
    },
)
async def put_class(
    name: Annotated[str, Path(pattern=CLASS_NAME)],
    body: ClassDefinition,
    context: Annotated[RequestContext, authorize("ci_class:define")],
    runtime: Runtime,
) -> JSONResponse:
    version = await define_class(
        ConfigUnitOfWork(runtime.pool, context),
        DefineClass(name, body.description, body.attribute_schema),
    )
    out = {**body.model_dump(), "name": name, "builtin": False, "version": version}
    return JSONResponse(out, status_code=201 if version == 1 else 200)


@router.post(
    "/cis",
    status_code=201,
    response_model=CiOut,
    summary="Register a configuration item",
    responses={
        409: {
            "description": "Another CI already has one of these external ids, or the change"
            " named by `change_id` is not in implement"
        }
    },
)
async def create_ci(
    body: NewCi,
    context: Annotated[RequestContext, authorize("ci:write")],
    runtime: Runtime,
) -> JSONResponse:
    ci = await register_ci(ConfigUnitOfWork(runtime.pool, context), RegisterCi(**body.model_dump()))
    return _ci_response(ci, 201)


_STATUSES = frozenset(get_args(CiStatus))


def _id_cursor(cursor: str | None) -> uuid.UUID | None:
    if not cursor:
        return None
    value = decode_cursor(cursor, 1)[0]
    try:
        return uuid.UUID(value)
    except (TypeError, ValueError, AttributeError):
        raise invalid_cursor() from None


def _external_id(value: str) -> tuple[str, str]:
    source, sep, external = value.partition(":")
    if not sep or not re.match(SOURCE_NAME, source) or not 1 <= len(external) <= 200:
        raise invalid_field("external_id", "expected <source>:<id>, e.g. vcenter:vm-42", "query")
    return source, external


@router.get(
    "/cis",
    response_model=Page[CiOut],
    summary="The tenant's configuration items, filtered, in id order",
)
async def list_cis(
    context: Annotated[RequestContext, authorize("ci:read")],
    runtime: Runtime,
    ci_class: Annotated[str | None, Query(alias="class", pattern=CLASS_NAME)] = None,
    status: Annotated[
        list[str] | None, Query(description="Repeat for any of several statuses.")
    ] = None,
    owner_team: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    criticality: Annotated[int | None, Query(ge=1, le=4)] = None,
    name: Annotated[
        str | None, Query(min_length=1, max_length=200, description="Name prefix, any case.")
    ] = None,
    q: Annotated[
        str | None, Query(min_length=1, max_length=200, description="Part of the name, any case.")
    ] = None,
    external_id: Annotated[
        str | None, Query(max_length=300, description="`<source>:<id>`, e.g. `vcenter:vm-42`.")
    ] = None,
    cursor: Cursor = None,
    limit: PageSize = DEFAULT_PAGE_SIZE,
) -> Page[dict[str, Any]]:
    unknown = sorted({s for s in status or () if s not in _STATUSES})
    if unknown:
        raise ValidationFailed(
            [FieldError("status", f"not a CI status: {s!r}", "query") for s in unknown]
        )
    where = listing.CiFilter(
        ci_class=ci_class,
        statuses=list(status or ()),
        owner_team=owner_team,
        criticality=criticality,
        name_prefix=name,
        name_contains=q,
        external_id=_external_id(external_id) if external_id is not None else None,
    )
    after = _id_cursor(cursor)
    async with tenant_transaction(runtime.pool, context.tenant_id, readonly=True) as conn:
        rows = await listing.page(conn, context.tenant_id, where, after=after, limit=limit + 1)
    return page_of(rows, limit, key=lambda r: [str(r["id"])])


@router.get("/cis/{ci_id}", response_model=CiOut, summary="A configuration item, now or as it was")
async def read_ci(
    ci_id: uuid.UUID,
    context: Annotated[RequestContext, authorize("ci:read")],
    runtime: Runtime,
    as_of: Annotated[
        Timestamp | None, Query(description="The CI as it was at this instant.")
    ] = None,
) -> JSONResponse:
    async with tenant_transaction(runtime.pool, context.tenant_id, readonly=True) as conn:
        if as_of is None:
            ci = await repository.get(conn, context.tenant_id, ci_id)
            if ci is not None:
                return _ci_response(ci)
        else:
            state = await repository.state_as_of(conn, context.tenant_id, ci_id, as_of)
            if state is not None:
                return _ci_response(state)
    raise NotFound("configuration item", str(ci_id))


@router.patch(
    "/cis/{ci_id}",
    response_model=CiOut,
    summary="Modify a configuration item",
    responses={
        409: {
            "description": "A status move the lifecycle does not allow, an external id"
            " another CI has, or a `change_id` whose change is not in implement or does not"
            " list this CI"
        }
    },
)
async def patch_ci(
    ci_id: uuid.UUID,
    body: CiChanges,
    context: Annotated[RequestContext, authorize("ci:write")],
    runtime: Runtime,
    if_match: IfMatch = None,
) -> JSONResponse:
    expected = _expected_version(if_match)
    fields = body.model_dump(exclude_unset=True)
    reason, change_ref = fields.pop("reason", None), fields.pop("change_ref", None)
    change_id = fields.pop("change_id", None)
    nulls = [f for f, v in fields.items() if v is None and f != "owner_team"]
    if nulls:
        raise ValidationFailed([FieldError(f, "may not be null") for f in nulls])
    ci = await modify_ci(
        ConfigUnitOfWork(runtime.pool, context),
        ModifyCi(ci_id, expected, fields, reason, change_ref, change_id),
    )
    return _ci_response(ci)


@router.get(
    "/cis/{ci_id}/history",
    response_model=Page[CiVersionOut],
    summary="Every version of a configuration item: who, when, what changed, why",
)
async def read_history(
    ci_id: uuid.UUID,
    context: Annotated[RequestContext, authorize("ci:read")],
    runtime: Runtime,
    cursor: Cursor = None,
    limit: PageSize = DEFAULT_PAGE_SIZE,
) -> Page[dict[str, Any]]:
    after = cursor_int(cursor)
    async with tenant_transaction(runtime.pool, context.tenant_id, readonly=True) as conn:
        rows = await repository.history(
            conn, context.tenant_id, ci_id, after=after, limit=limit + 1
        )
        if not rows and after == 0 and await repository.get(conn, context.tenant_id, ci_id) is None:
            raise NotFound("configuration item", str(ci_id))
    return page_of(rows, limit, key=lambda r: [r["version"]])


class NewRelationship(RequestBody):
    """Body of POST /relationships: `source` <type> `target`."""

    type: RelationshipType
    source_id: uuid.UUID
    target_id: uuid.UUID


class RelationshipOut(BaseModel):
    """A relationship, in place (removed_at null) or removed."""

    id: uuid.UUID
    type: RelationshipType
    source_id: uuid.UUID
    target_id: uuid.UUID
    added_at: datetime
    added_by: str
    removed_at: datetime | None
    removed_by: str | None


class ImpactItem(BaseModel):
    """A CI reached by the walk, at its shortest depth, with every path (CI ids from the origin)."""

    model_config = ConfigDict(populate_by_name=True)

    id: uuid.UUID
    ci_class: str = Field(alias="class", serialization_alias="class")
    name: str
    criticality: int
    status: Status
    depth: int
    paths: list[list[uuid.UUID]]


class ImpactOut(BaseModel):
    """Impact analysis of one CI."""

    ci_id: uuid.UUID
    direction: Literal["upward", "downward"]
    depth: int
    truncated: bool = Field(description=f"More than {MAX_PATHS} paths: only the first are shown.")
    items: list[ImpactItem]
    business_services: list[ImpactItem]


@router.post(
    "/relationships",
    status_code=201,
    response_model=RelationshipOut,
    summary="Relate two CIs (200 with the existing one if already in place)",
    responses={
        200: {"model": RelationshipOut, "description": "Already in place: the existing one"}
    },
)
async def create_relationship(
    body: NewRelationship,
    context: Annotated[RequestContext, authorize("ci:write")],
    runtime: Runtime,
) -> JSONResponse:
    row, created = await add_relationship(
        ConfigUnitOfWork(runtime.pool, context),
        AddRelationship(body.type, body.source_id, body.target_id),
    )
    out = RelationshipOut.model_validate(row).model_dump(mode="json")
    return JSONResponse(out, status_code=201 if created else 200)


@router.delete(
    "/relationships/{relationship_id}",
    response_model=RelationshipOut,
    summary="Remove a relationship (it stays in the history)",
)
async def delete_relationship(
    relationship_id: uuid.UUID,
    context: Annotated[RequestContext, authorize("ci:write")],
    runtime: Runtime,
    reason: Annotated[str | None, Query(max_length=2000)] = None,
) -> dict[str, Any]:
    return await remove_relationship(
        ConfigUnitOfWork(runtime.pool, context), relationship_id, reason
    )


@router.get(
    "/cis/{ci_id}/relationships",
    response_model=list[RelationshipOut],
    summary="Every relationship of a CI, in place or removed",
)
async def read_relationships(
    ci_id: uuid.UUID,
    context: Annotated[RequestContext, authorize("ci:read")],
    runtime: Runtime,
) -> list[dict[str, Any]]:
    async with tenant_transaction(runtime.pool, context.tenant_id, readonly=True) as conn:
        if await repository.get(conn, context.tenant_id, ci_id) is None:
            raise NotFound("configuration item", str(ci_id))
        return await relationships_repository.of_ci(conn, context.tenant_id, ci_id)


@router.get(
    "/cis/{ci_id}/impact",
    response_model=ImpactOut,
    summary="What depends on a CI, up to the business services (or, downward, what it needs)",
)
async def read_impact(
    ci_id: uuid.UUID,
    context: Annotated[RequestContext, authorize("ci:read")],
    runtime: Runtime,
    direction: Literal["upward", "downward"] = "upward",
    depth: Annotated[int, Query(ge=1, le=MAX_DEPTH)] = 5,
) -> Response:
    found = await impact(
        ConfigUnitOfWork(runtime.pool, context), ci_id, direction=direction, depth=depth
    )
    metrics = runtime.service_metrics
    assert isinstance(metrics, ConfigMetrics)
    metrics.impact_duration.labels(direction).observe(found.seconds)
    # The database built the items; wrap them without parsing (answers can be megabytes).
    head = json.dumps(
        {"ci_id": str(ci_id), "direction": direction, "depth": depth, "truncated": found.truncated}
    )
    body = f'{head[:-1]}, "items": {found.items}, "business_services": {found.business_services}}}'
    return Response(body.encode(), media_type="application/json")
