"""HTTP API of a tenant's incident settings: `GET` and `PUT /incident-settings` (If-Match)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from services.incident.application.tenant_settings import (
    IncidentSettingsBody,
    read_settings,
    replace_settings,
    settings_view,
)
from shared.context import RequestContext
from shared.http.context import authorize
from shared.http.etags import IfMatch, etag, if_match_version
from shared.service import ServiceRuntime, runtime_of

router = APIRouter(tags=["incident settings"])
Runtime = Annotated[ServiceRuntime, Depends(runtime_of)]


class IncidentSettingsOut(IncidentSettingsBody):
    """The settings in force, with their version (0: the defaults, never saved)."""

    version: int


def _response(view: dict[str, Any]) -> JSONResponse:
    return JSONResponse(view, headers={"ETag": etag(view["version"])})


@router.get(
    "/incident-settings",
    response_model=IncidentSettingsOut,
    summary="The tenant's incident settings (the defaults until it saves its own)",
)
async def get_settings(
    context: Annotated[RequestContext, authorize("incident:read")], runtime: Runtime
) -> JSONResponse:
    return _response(settings_view(await read_settings(runtime.pool, context.tenant_id)))


@router.put(
    "/incident-settings",
    response_model=IncidentSettingsOut,
    summary='Replace the tenant\'s incident settings (If-Match required; "0" the first time)',
)
async def put_settings(
    body: IncidentSettingsBody,
    context: Annotated[RequestContext, authorize("incident:configure")],
    runtime: Runtime,
    if_match: IfMatch = None,
) -> JSONResponse:
    expected = if_match_version(if_match, required=True)
    assert expected is not None
    stored = await replace_settings(runtime.pool, body, context, expected_version=expected)
    return _response(settings_view(stored))
