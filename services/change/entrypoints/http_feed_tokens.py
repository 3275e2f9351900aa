"""Calendar feed tokens over HTTP: a secret URL per user and calendar client, for clients that
cannot send an `Authorization` header (Google Calendar, Outlook, Apple Calendar).

- `POST /schedule/feed-tokens` (`schedule:read`): a token for the caller, with the feed's
  filters (`service`, `ci`) and a `name`; the answer holds the secret URL, once.
- `GET /schedule/feed-tokens`: the caller's active tokens (never a secret).
- `DELETE /schedule/feed-tokens/{id}`: revoke the caller's own, or, with
  `change_window:manage`, any of the tenant's.
- `GET /feeds/{tenant}/schedule/{secret}.ics`: no bearer token; the secret authenticates, and
  the answer is what `GET /schedule.ics` serves with the token's filters. Unknown, malformed,
  revoked and other tenants' secrets are one answer: 404 problem+json.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from services.change.application import feed_tokens as use_cases
from services.change.domain.feed_tokens import FeedToken
from services.change.entrypoints.http_schedule import MANAGE, READ, CiId, feed_response
from services.change.metrics import ChangeMetrics
from shared.auth.roles import allowed
from shared.context import RequestContext
from shared.http import records
from shared.http.context import TENANT_PATTERN, authorize
from shared.http.models import RequestBody
from shared.http.problems import HttpProblem

router = APIRouter(tags=["change schedule"])
Runtime = records.Runtime
FEED_PATH = "/feeds/{tenant}/schedule/{secret}.ics"


class NewFeedToken(RequestBody):
    """Body of POST /schedule/feed-tokens: the feed's filters, as `GET /schedule.ics` takes
    them, and a name to recognise the token by."""

    name: str | None = Field(
        default=None, min_length=1, max_length=200, description="E.g. the calendar client."
    )
    service: str | None = Field(
        default=None, min_length=1, max_length=200, description="A business service id."
    )
    ci: list[CiId] = Field(default_factory=list, max_length=1_000, description="CI ids.")


class FeedTokenOut(BaseModel):
    """A feed token as listed: never its secret."""

    id: uuid.UUID
    name: str | None
    service: str | None
    ci: list[str]
    user_id: str
    created_at: datetime
    last_used_at: datetime | None


class CreatedFeedTokenOut(FeedTokenOut):
    """A new token, with its secret URL: shown this once, never again."""

    url: str = Field(
        description="The secret URL's path (`/feeds/{tenant}/schedule/{secret}.ics`) on this"
        " service; whoever holds it reads the schedule as this token's owner."
    )


class FeedTokenList(BaseModel):
    """The caller's active feed tokens, newest first."""

    items: list[FeedTokenOut]


def _metrics(runtime: Any) -> ChangeMetrics | None:
    metrics = runtime.service_metrics
    return metrics if isinstance(metrics, ChangeMetrics) else None


def _view(token: FeedToken) -> dict[str, Any]:
    return {
        "id": token.id,
        "name": token.name,
        "service": token.service,
        "ci": list(token.ci_ids),
        "user_id": token.user_id,
        "created_at": token.created_at,
        "last_used_at": token.last_used_at,
    }


def _no_feed() -> HttpProblem:
    return HttpProblem(404, "Not Found", "there is no calendar feed at this address")


def feed_secret() -> Any:
    """A dependency: the active token whose secret the URL holds, in the tenant the URL names
    (404 otherwise, the same whatever was wrong). It stands where `authorize(permission)`
    stands on other routes."""

    async def dependency(
        request: Request,
        tenant: Annotated[str, Path(pattern=TENANT_PATTERN, description="The tenant.")],
        secret: Annotated[str, Path(description="The feed token's secret.")],
    ) -> FeedToken:
        runtime = request.app.state.runtime
        request.state.subject = "feed-token"
        token = await use_cases.authenticate(runtime.pool, tenant, secret)
        metrics = _metrics(runtime)
        if token is None:
            if metrics is not None:
                metrics.feed_requests.labels("refused").inc()
            raise _no_feed()
        request.state.tenant_id = tenant
        request.state.subject = token.user_id
        return token

    dependency.permission = "feed:secret"  # type: ignore[attr-defined]
    dependency.signed = True  # type: ignore[attr-defined]
    # What any request without the right secret gets, whatever token it carries.
    dependency.refusal = 404  # type: ignore[attr-defined]
    return Depends(dependency)


@router.post(
    "/schedule/feed-tokens",
    status_code=201,
    response_model=CreatedFeedTokenOut,
    summary="Create a calendar feed token for the caller (its secret URL is shown once)",
    responses={409: {"description": "The caller holds the most active tokens allowed"}},
)
async def create_feed_token(
    body: NewFeedToken,
    context: Annotated[RequestContext, authorize(READ)],
    runtime: Runtime,
) -> JSONResponse:
    created = await use_cases.create(
        runtime.pool, context, name=body.name, service=body.service, ci_ids=body.ci
    )
    out = CreatedFeedTokenOut.model_validate({**_view(created.token), "url": created.path})
    return JSONResponse(
        out.model_dump(mode="json"),
        status_code=201,
        headers={
            "Location": f"/schedule/feed-tokens/{created.token.id}",
            "Cache-Control": "no-store",
        },
    )


@router.get(
    "/schedule/feed-tokens",
    response_model=FeedTokenList,
    summary="The caller's calendar feed tokens (never their secrets)",
)
async def list_feed_tokens(
    context: Annotated[RequestContext, authorize(READ)],
    runtime: Runtime,
) -> dict[str, Any]:
    tokens = await use_cases.of_caller(runtime.pool, context)
    return {"items": [_view(t) for t in tokens]}


@router.delete(
    "/schedule/feed-tokens/{token_id}",
    status_code=204,
    response_class=Response,
    summary="Revoke a calendar feed token: the caller's own, or any of the tenant's with"
    " change_window:manage",
)
async def revoke_feed_token(
    token_id: uuid.UUID,
    context: Annotated[RequestContext, authorize(READ)],
    runtime: Runtime,
) -> Response:
    await use_cases.revoke(
        runtime.pool, context, token_id, any_of_tenant=allowed(MANAGE, context.roles)
    )
    return Response(status_code=204)


@router.get(
    FEED_PATH,
    summary="The schedule's iCalendar feed for a feed token's secret URL (no bearer token)",
    response_class=Response,
    responses={
        200: {"content": {"text/calendar": {"schema": {"type": "string"}}}},
        404: {"description": "No active feed token of the tenant has this secret."},
        503: {"description": "The database cannot be reached now; the client retries."},
    },
)
async def get_token_feed(
    token: Annotated[FeedToken, feed_secret()],
    runtime: Runtime,
) -> Response:
    response = await feed_response(
        runtime, token.tenant_id, None, None, token.service, token.ci_ids
    )
    metrics = _metrics(runtime)
    if metrics is not None:
        metrics.feed_requests.labels("served").inc()
    response.headers["Cache-Control"] = "private, no-store"
    return response
