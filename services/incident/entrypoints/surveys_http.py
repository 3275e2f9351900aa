"""Satisfaction surveys over HTTP.

- `GET /surveys/{token}` and `POST /surveys/{token}`: **no bearer token**; the signed,
  expiring token in the link is the only credential (`survey_token()` stands where
  `authorize(permission)` stands on other routes, and the role-matrix test holds it to that).
  GET shows a small HTML form (no script; JSON with `Accept: application/json`); POST takes the
  answer form-encoded (the form) or as JSON: `score` 1-5, `comment` up to 2000 characters. A
  token that does not verify, or leads to no survey, is 404; an expired survey 410; a second
  answer 409; all problem+json.
- `GET /incidents/{id}/survey`, `GET /requests/{id}/survey`: the record's survey and its link
  (`url`, built on `INCIDENT_PUBLIC_BASE_URL`) for the agent to hand to the caller.
- `GET /surveys`: the tenant's survey results (`survey:read`).
"""

from __future__ import annotations

import html
import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field, ValidationError

from services.incident.adapters.surveys import SurveyFilter
from services.incident.application import surveys as use_cases
from services.incident.application.surveys import SurveyLinks, survey_view
from services.incident.domain import survey as domain
from services.incident.domain.survey import SurveyToken
from services.incident.entrypoints.common import metrics_of
from services.incident.settings import IncidentSettings
from shared.context import RequestContext
from shared.errors import FieldError, ValidationFailed
from shared.http import records
from shared.http.context import authorize
from shared.http.models import RequestBody
from shared.http.pagination import PageSize
from shared.nul import NUL
from shared.service import ServiceRuntime

router = APIRouter(tags=["surveys"])
Runtime = records.Runtime
SURVEY_LINK_PATH = "/surveys/{token}"
# The answer to a survey link: never cached, never sent on as a Referer, never framed.
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self';"
        " frame-ancestors 'none'; base-uri 'none'"
    ),
}
_FORM = "application/x-www-form-urlencoded"


def utc_now() -> datetime:
    """The time survey links are judged at (a dependency, so tests can set the clock)."""
    return datetime.now(UTC)


Now = Annotated[datetime, Depends(utc_now)]


def links_of(runtime: ServiceRuntime) -> SurveyLinks:
    """The key that signs survey links and the base URL they are built on."""
    settings = runtime.settings
    if not isinstance(settings, IncidentSettings) or settings.survey_key is None:
        return SurveyLinks(None)
    return SurveyLinks(settings.survey_key.get_secret_value(), settings.public_base_url)


def survey_token() -> Any:
    """A dependency: the claims of the link's token, verified with the survey key (404
    otherwise, the same whatever was wrong). It stands where `authorize(permission)` stands on
    other routes: the token is the credential, and no bearer token opens these routes."""

    async def dependency(
        request: Request,
        token: Annotated[
            str, Path(max_length=domain.MAX_TOKEN_LENGTH, description="The link's token.")
        ],
    ) -> SurveyToken:
        runtime = request.app.state.runtime
        request.state.subject = use_cases.SURVEY_ACTOR
        links = links_of(runtime)
        key = domain.usable_key(links.key)
        claims = domain.verify(token, key) if key is not None else None
        if claims is None:
            metrics = metrics_of(runtime)
            if metrics is not None:
                metrics.survey_refusals.labels("invalid").inc()
            raise domain.no_survey()
        request.state.tenant_id = claims.tenant_id
        return claims

    dependency.permission = "survey:token"  # type: ignore[attr-defined]
    dependency.signed = True  # type: ignore[attr-defined]
    # What any request without a valid token gets, whatever bearer token it carries.
    dependency.refusal = 404  # type: ignore[attr-defined]
    return Depends(dependency)


Claims = Annotated[SurveyToken, survey_token()]


class SurveyAnswer(RequestBody):
    """The caller's answer: a score from 1 (very dissatisfied) to 5 (very satisfied)."""

    score: int = Field(ge=1, le=5)
    comment: str = Field(default="", max_length=domain.MAX_COMMENT)


class SurveyPrompt(BaseModel):
    """What a survey link asks about (JSON form of the page)."""

    record: Literal["incident", "request"]
    reference: str | None = Field(description="INC<n> or REQ<n>.")
    title: str | None
    expires_at: datetime
    scores: list[int] = Field(description="The scores accepted: 1 (worst) to 5 (best).")


class SurveyAnswered(BaseModel):
    """The answer as stored."""

    record: Literal["incident", "request"]
    score: int
    comment: str
    answered_at: datetime


class SurveyOut(BaseModel):
    """A survey as agents see it (never its token)."""

    record: Literal["incident", "request"]
    record_id: uuid.UUID
    caller: str | None
    services: list[str]
    assignment_group: str | None
    assignee: str | None
    sent_at: datetime
    expires_at: datetime
    state: Literal["open", "answered", "expired"]
    score: int | None
    comment: str | None
    answered_at: datetime | None


class SurveyLinkOut(SurveyOut):
    """The record's survey and the link to hand to the caller."""

    url: str | None = Field(
        description="The survey link (on INCIDENT_PUBLIC_BASE_URL); None once it no longer"
        " takes an answer. Whoever holds it answers for the caller: send it to the caller only."
    )


class SurveyPage(BaseModel):
    """One page of surveys, newest first."""

    items: list[SurveyOut]
    next_cursor: str | None = None


_REFUSALS: dict[int | str, dict[str, Any]] = {
    404: {"description": "The link's token does not verify or leads to no survey."},
    409: {"description": "The survey has already been answered."},
    410: {"description": "The survey has expired."},
    503: {"description": "The database cannot be reached now; retry later."},
}


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "").lower()
    return "application/json" in accept and "text/html" not in accept


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    document = (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n"
        "<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:2rem auto;"
        "padding:0 1rem;line-height:1.5}fieldset{border:1px solid #767676;padding:1rem}"
        "label{display:block;margin:.25rem 0}textarea{width:100%;min-height:6rem}"
        "button{margin-top:1rem;padding:.5rem 1.5rem;font-size:1rem}</style>\n"
        f"</head>\n<body>\n<main>\n{body}</main>\n</body>\n</html>\n"
    )
    return HTMLResponse(document, status_code=status, headers=_PAGE_HEADERS)


_SCORES = {
    5: "Very satisfied",
    4: "Satisfied",
    3: "Neither satisfied nor dissatisfied",
    2: "Dissatisfied",
    1: "Very dissatisfied",
}


def _form(prompt: dict[str, Any]) -> HTMLResponse:
    about = " ".join(
        html.escape(part) for part in (prompt.get("reference"), prompt.get("title")) if part
    )
    kind = "incident" if prompt["record"] == "incident" else "request"
    choices = "".join(
        f'<label><input type="radio" name="score" value="{score}" required> {score} –'
        f" {html.escape(text)}</label>\n"
        for score, text in _SCORES.items()
    )
    body = (
        "<h1>How did we do?</h1>\n"
        f"<p>Your {kind} {about} has been resolved. Please tell us how satisfied you are.</p>\n"
        '<form method="post">\n<fieldset>\n'
        f"<legend>How satisfied are you with how your {kind} was handled?</legend>\n"
        f"{choices}</fieldset>\n"
        '<label for="comment">Anything you would like to tell us (optional)</label>\n'
        f'<textarea id="comment" name="comment" maxlength="{domain.MAX_COMMENT}"></textarea>\n'
        '<button type="submit">Send</button>\n</form>\n'
        f"<p><small>You can answer until {html.escape(prompt['expires_at'])}.</small></p>\n"
    )
    return _page("How did we do?", body)


@router.get(
    SURVEY_LINK_PATH,
    summary="A survey link: the form to answer it (no bearer token: the link's token)",
    response_class=HTMLResponse,
    responses={
        200: {
            "description": "The survey form (HTML, no script); JSON with "
            "`Accept: application/json`.",
            "content": {
                "text/html": {"schema": {"type": "string"}},
                "application/json": {"schema": SurveyPrompt.model_json_schema()},
            },
        },
        **_REFUSALS,
    },
)
async def open_survey(request: Request, claims: Claims, runtime: Runtime, now: Now) -> Response:
    prompt = await use_cases.open_survey(runtime.pool, claims, now=now, metrics=metrics_of(runtime))
    if _wants_json(request):
        shown = SurveyPrompt.model_validate({**prompt, "scores": [1, 2, 3, 4, 5]})
        return JSONResponse(shown.model_dump(mode="json"), headers=_PAGE_HEADERS)
    return _form(prompt)


def _answer_errors(error: ValidationError) -> ValidationFailed:
    fields = [
        FieldError(".".join(str(p) for p in e["loc"]) or "body", e["msg"]) for e in error.errors()
    ]
    return ValidationFailed(fields)


async def _read_answer(request: Request) -> SurveyAnswer:
    """The answer, form-encoded or JSON; 422 naming the field for anything else."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await request.body()
    try:
        if media == _FORM:
            text = raw.decode("utf-8")
            values: dict[str, Any] = dict(parse_qsl(text, keep_blank_values=True))
            nul = [k for k, v in values.items() if NUL in k or NUL in v]
            if nul:
                raise ValidationFailed(
                    [FieldError(k.replace(NUL, "\\u0000"), "contains U+0000") for k in nul]
                )
            score = values.get("score")
            if isinstance(score, str) and score.strip().isdigit():
                values["score"] = int(score.strip())
            return SurveyAnswer.model_validate(values)
        if media in ("", "application/json"):
            return SurveyAnswer.model_validate(json.loads(raw or b"null"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValidationFailed([FieldError("body", "not a form or JSON in UTF-8")]) from None
    except ValidationError as error:
        raise _answer_errors(error) from None
    raise ValidationFailed(
        [FieldError("Content-Type", f"send {_FORM} or application/json", "header")]
    )


@router.post(
    SURVEY_LINK_PATH,
    summary="Answer a survey (no bearer token: the link's token); once",
    response_class=HTMLResponse,
    responses={
        200: {
            "description": "Thanks (HTML for a form post, the stored answer for JSON).",
            "content": {
                "text/html": {"schema": {"type": "string"}},
                "application/json": {"schema": SurveyAnswered.model_json_schema()},
            },
        },
        **_REFUSALS,
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": SurveyAnswer.model_json_schema()},
                _FORM: {"schema": SurveyAnswer.model_json_schema()},
            },
        }
    },
)
async def answer_survey(request: Request, claims: Claims, runtime: Runtime, now: Now) -> Response:
    answer = await _read_answer(request)
    answered = await use_cases.answer_survey(
        runtime.pool,
        claims,
        answer.score,
        answer.comment,
        now=now,
        metrics=metrics_of(runtime),
    )
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == _FORM and not _wants_json(request):
        return _page("Thank you", "<h1>Thank you</h1>\n<p>Your answer has been recorded.</p>\n")
    shown = SurveyAnswered(
        record=answered.record,
        score=answered.score or 0,
        comment=answered.comment or "",
        answered_at=answered.answered_at or now,
    )
    return JSONResponse(shown.model_dump(mode="json"), headers=_PAGE_HEADERS)


async def _link(
    runtime: ServiceRuntime,
    context: RequestContext,
    record: Literal["incident", "request"],
    record_id: uuid.UUID,
) -> JSONResponse:
    shown = await use_cases.link_of(runtime.pool, context, record, record_id, links_of(runtime))
    out = SurveyLinkOut.model_validate(shown).model_dump(mode="json")
    return JSONResponse(out, headers={"Cache-Control": "no-store"})


_LINK_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "The record does not exist or has no survey."},
    409: {"description": "Survey links are not configured (INCIDENT_SURVEY_KEY)."},
}


@router.get(
    "/incidents/{incident_id}/survey",
    response_model=SurveyLinkOut,
    summary="The incident's satisfaction survey and the link to hand to the caller",
    responses=_LINK_RESPONSES,
)
async def incident_survey(
    incident_id: uuid.UUID,
    context: Annotated[RequestContext, authorize("incident:update")],
    runtime: Runtime,
) -> JSONResponse:
    return await _link(runtime, context, "incident", incident_id)


@router.get(
    "/requests/{request_id}/survey",
    response_model=SurveyLinkOut,
    summary="The request's satisfaction survey and the link to hand to the requester",
    responses=_LINK_RESPONSES,
)
async def request_survey(
    request_id: uuid.UUID,
    context: Annotated[RequestContext, authorize("request:fulfil")],
    runtime: Runtime,
) -> JSONResponse:
    return await _link(runtime, context, "request", request_id)


@router.get("/surveys", response_model=SurveyPage, summary="Survey results, newest first")
async def list_surveys(
    context: Annotated[RequestContext, authorize("survey:read")],
    runtime: Runtime,
    now: Now,
    limit: PageSize = 50,
    cursor: str | None = None,
    record: Literal["incident", "request"] | None = None,
    record_id: uuid.UUID | None = None,
    score: Annotated[list[Annotated[int, Field(ge=1, le=5)]] | None, Query()] = None,
    answered: bool | None = None,
    service: str | None = None,
    assignment_group: str | None = None,
    assignee: str | None = None,
) -> dict[str, Any]:
    after = records.after_cursor(cursor)
    where = SurveyFilter(
        record=record,
        record_id=record_id,
        scores=tuple(score or ()),
        answered=answered,
        service=service,
        assignment_group=assignment_group,
        assignee=assignee,
    )
    found = await use_cases.list_surveys(runtime.pool, context, where, after=after, limit=limit + 1)
    page = found[:limit]
    last = (page[-1].sent_at, page[-1].record_id) if len(found) > limit else None
    return {
        "items": [survey_view(s, now=now) for s in page],
        "next_cursor": records.cursor_of(last),
    }
