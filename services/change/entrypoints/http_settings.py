"""HTTP API of a tenant's change settings: `GET` and `PUT /change-settings` (If-Match)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import Field

from services.change.adapters.change_records import settings_json
from services.change.application.settings import read_settings, replace_settings
from services.change.domain.records import ChangeSettings
from shared.context import RequestContext
from shared.http import records
from shared.http.context import authorize
from shared.http.etags import IfMatch, etag, if_match_version
from shared.http.models import RequestBody

ReviewOutcome = Literal["successful_with_issues", "failed", "rolled_back"]
RiskLevel = Literal["low", "medium", "high", "very_high"]


def _outcomes() -> list[ReviewOutcome]:
    return ["failed", "rolled_back"]


def _risks() -> list[RiskLevel]:
    return ["high", "very_high"]


router = APIRouter(tags=["change settings"])
Runtime = records.Runtime


class ChangeSettingsBody(RequestBody):
    """Body of PUT /change-settings (every field; a field left out takes its default)."""

    emergency_review_days: int = Field(
        default=5, ge=1, le=90, description="Days after implementation an emergency PIR is due."
    )
    review_outcomes: list[ReviewOutcome] = Field(
        default_factory=_outcomes,
        max_length=3,
        description="Outcomes that need a PIR before closure (failed, rolled_back always do).",
    )
    review_risk_levels: list[RiskLevel] = Field(
        default_factory=_risks,
        max_length=4,
        description="Risk levels that need a PIR before closure.",
    )
    suspicion_window_seconds: int = Field(
        default=86_400,
        ge=60,
        le=90 * 86_400,
        description="How long after implementation a suspected incident counts as evidence.",
    )


class ChangeSettingsOut(ChangeSettingsBody):
    """The settings in force, with their version (0: the defaults, never saved)."""

    version: int


def _response(settings: ChangeSettings) -> JSONResponse:
    body = {**settings_json(settings), "version": settings.version}
    return JSONResponse(body, headers={"ETag": etag(settings.version)})


@router.get(
    "/change-settings",
    response_model=ChangeSettingsOut,
    summary="The tenant's change settings (the defaults until it saves its own)",
)
async def get_change_settings(
    context: Annotated[RequestContext, authorize("change:read")], runtime: Runtime
) -> JSONResponse:
    return _response(await read_settings(runtime.pool, context.tenant_id))


@router.put(
    "/change-settings",
    response_model=ChangeSettingsOut,
    summary='Replace the tenant\'s change settings (If-Match required; "0" the first time)',
)
async def put_change_settings(
    body: ChangeSettingsBody,
    context: Annotated[RequestContext, authorize("change:configure")],
    runtime: Runtime,
    if_match: IfMatch = None,
) -> JSONResponse:
    expected = if_match_version(if_match, required=True)
    assert expected is not None
    settings = ChangeSettings(
        emergency_review_days=body.emergency_review_days,
        review_outcomes=tuple(dict.fromkeys(body.review_outcomes)),
        review_risk_levels=tuple(dict.fromkeys(body.review_risk_levels)),
        suspicion_window_seconds=body.suspicion_window_seconds,
    )
    stored = await replace_settings(runtime.pool, settings, context, expected_version=expected)
    return _response(stored)
