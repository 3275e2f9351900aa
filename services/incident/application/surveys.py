"""Satisfaction surveys: the link agents hand to the caller, what the link shows, its one answer,
and the results.

A survey is offered by the resolving transaction itself (`application/resolution.py`). Its link
is `<public base URL>/surveys/<token>`, the token signed with the service's survey key
(`domain/survey.py`) and made again whenever an agent asks for it, never stored. Reading and
answering by token need no login: the token names the tenant, whose transaction (row-level
security) the survey is then read in. An answer is `SurveyAnsweredV1` (version 2), through the
outbox in the transaction that stores it; a second answer is 409, an expired survey 410, and a
token that does not verify, or verifies but leads to no survey, is 404 whatever was wrong.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.incident.adapters.surveys import SurveyFilter
from services.incident.application.reactions import unit_of_work
from services.incident.application.uow import IncidentWork
from services.incident.domain import survey as domain
from services.incident.domain.survey import Survey, SurveyToken
from services.incident.metrics import IncidentMetrics
from shared.context import RequestContext
from shared.errors import Conflict, DomainError, Gone, NotFound
from shared.events.catalogue import RecordKind

SURVEY_ACTOR = "survey:caller"


@dataclass(frozen=True)
class SurveyLinks:
    """How links are made: the key that signs them (None: no links) and the base URL."""

    key: str | None
    base_url: str | None = None

    def path(self, token: str) -> str:
        return f"/surveys/{token}"

    def url(self, token: str) -> str:
        base = (self.base_url or "").rstrip("/")
        return base + self.path(token)


def survey_view(survey: Survey, *, now: datetime) -> dict[str, Any]:
    """A survey as agents see it (never its token)."""
    return {
        "record": survey.record,
        "record_id": str(survey.record_id),
        "caller": survey.caller,
        "services": list(survey.services),
        "assignment_group": survey.assignment_group,
        "assignee": survey.assignee,
        "sent_at": survey.sent_at.isoformat(),
        "expires_at": survey.expires_at.isoformat(),
        "state": domain.state_of(survey, now),
        "score": survey.score,
        "comment": survey.comment,
        "answered_at": survey.answered_at.isoformat() if survey.answered_at else None,
    }


async def link_of(
    pool: asyncpg.Pool,
    context: RequestContext,
    record: RecordKind,
    record_id: uuid.UUID,
    links: SurveyLinks,
    *,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The record's survey with the link to hand to the caller (`url`; None when it no longer
    takes an answer). `NotFound` when the record has none; `Conflict` when no survey key is
    configured."""
    now = now or datetime.now(UTC)
    async with unit_of_work(pool, context) as uow:
        survey = await uow.surveys.get(record, record_id)
    if survey is None:
        raise NotFound(f"a survey of {record}", str(record_id))
    view = survey_view(survey, now=now)
    key = domain.usable_key(links.key)
    if key is None:
        raise Conflict("survey links are not configured on this service (INCIDENT_SURVEY_KEY)")
    taking_answers = not (survey.answered or survey.expired(now))
    view["url"] = links.url(domain.sign(survey.token_claims(), key)) if taking_answers else None
    return view


async def _subject_of(uow: IncidentWork, survey: Survey) -> dict[str, Any]:
    """What the caller is asked about: the record's reference and title."""
    if survey.record == "incident":
        incident = await uow.incidents.get(survey.record_id)
        if incident is not None:
            return {"reference": incident.reference, "title": incident.title}
    else:
        request = await uow.requests.get(survey.record_id)
        if request is not None:
            return {"reference": request.reference, "title": request.title}
    return {"reference": None, "title": None}


def _count_refusal(metrics: IncidentMetrics | None, error: DomainError) -> None:
    if metrics is None:
        return
    reason = (
        "expired" if isinstance(error, Gone) else "answered" if isinstance(error, Conflict) else ""
    )
    metrics.survey_refusals.labels(reason or "invalid").inc()


async def open_survey(
    pool: asyncpg.Pool,
    claims: SurveyToken,
    *,
    now: datetime,
    metrics: IncidentMetrics | None = None,
) -> dict[str, Any]:
    """What a verified link shows: the record asked about and until when it takes an answer.
    `NotFound` for a token that leads nowhere, `Gone` once expired, `Conflict` once answered."""
    try:
        context = RequestContext(claims.tenant_id, SURVEY_ACTOR, str(uuid.uuid4()))
        async with unit_of_work(pool, context) as uow:
            survey = await uow.surveys.get(claims.record, claims.record_id)
            if survey is None or survey.token_claims() != claims:
                raise domain.no_survey()
            if survey.expired(now):
                raise Gone("the survey has expired")
            if survey.answered:
                raise Conflict("the survey has already been answered")
            about = await _subject_of(uow, survey)
    except (NotFound, Gone, Conflict) as refused:
        _count_refusal(metrics, refused)
        raise
    return {
        "tenant_id": survey.tenant_id,
        "record": survey.record,
        **about,
        "expires_at": survey.expires_at.isoformat(),
    }


async def answer_survey(
    pool: asyncpg.Pool,
    claims: SurveyToken,
    score: int,
    comment: str,
    *,
    now: datetime,
    metrics: IncidentMetrics | None = None,
) -> Survey:
    """Store the caller's answer and announce it (`SurveyAnsweredV1`, version 2); the same
    refusals as `open_survey`, and 422 naming `score` or `comment`."""
    try:
        context = RequestContext(claims.tenant_id, SURVEY_ACTOR, str(uuid.uuid4()))
        async with unit_of_work(pool, context, metrics) as uow:
            survey = await uow.surveys.get(claims.record, claims.record_id, lock=True)
            if survey is None:
                raise domain.no_survey()
            answered, event = domain.answer(survey, claims, score, comment, now=now)
            await uow.surveys.save_answer(answered)
            uow.record(answered.subject, 2, [event])
    except (NotFound, Gone, Conflict) as refused:
        _count_refusal(metrics, refused)
        raise
    if metrics is not None:
        metrics.surveys_answered.labels(answered.record, str(answered.score)).inc()
    return answered


async def list_surveys(
    pool: asyncpg.Pool,
    context: RequestContext,
    where: SurveyFilter,
    *,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Survey]:
    """The tenant's surveys, newest first (up to `limit`)."""
    async with unit_of_work(pool, context) as uow:
        return await uow.surveys.search(where, after=after, limit=limit)
