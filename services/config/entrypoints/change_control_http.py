"""HTTP API of the tenant's change control: `GET` and `PUT /change-control` (If-Match)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from services.config.application.change_control import read_control, replace_control
from services.config.application.uow import ConfigUnitOfWork
from services.config.domain import classes
from services.config.domain.change_control import ChangeControl
from shared.context import RequestContext
from shared.http.context import authorize
from shared.http.etags import IfMatch, etag, if_match_version
from shared.http.models import RequestBody
from shared.service import ServiceRuntime, runtime_of

router = APIRouter(tags=["change control"])
Runtime = Annotated[ServiceRuntime, Depends(runtime_of)]

ClassName = Annotated[str, Field(pattern=classes.CLASS_NAME.pattern)]


class ChangeControlBody(RequestBody):
    """Body of PUT /change-control: the classes whose every CI is under change control."""

    classes: list[ClassName] = Field(
        default_factory=list,
        max_length=500,
        description="CI classes under change control (a single CI is put under control by its"
        " own `controlled` flag).",
    )


class ChangeControlOut(BaseModel):
    """The change-control configuration in force (version 0: never saved, no class)."""

    classes: list[str]
    version: int


def _response(control: ChangeControl) -> JSONResponse:
    body = {"classes": sorted(control.classes), "version": control.version}
    return JSONResponse(body, headers={"ETag": etag(control.version)})


@router.get(
    "/change-control",
    response_model=ChangeControlOut,
    summary="Which CI classes are under change control",
)
async def get_change_control(
    context: Annotated[RequestContext, authorize("ci:read")], runtime: Runtime
) -> JSONResponse:
    return _response(await read_control(ConfigUnitOfWork(runtime.pool, context)))


@router.put(
    "/change-control",
    response_model=ChangeControlOut,
    summary='Replace the classes under change control (If-Match required; "0" the first time)',
)
async def put_change_control(
    body: ChangeControlBody,
    context: Annotated[RequestContext, authorize("change_control:define")],
    runtime: Runtime,
    if_match: IfMatch = None,
) -> JSONResponse:
    expected = if_match_version(if_match, required=True)
    assert expected is not None
    control = await replace_control(
        ConfigUnitOfWork(runtime.pool, context), body.classes, expected_version=expected
    )
    return _response(control)
