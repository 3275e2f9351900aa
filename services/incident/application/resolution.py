"""What resolving a record brings with it, as reactions in the resolving transaction: the
caller's satisfaction survey, and the end of a major incident's open outages.

- **Survey.** An incident resolved or a request fulfilled gets one survey (`SurveySentV1`,
  subject `survey/<record id>`, version 1) when the tenant has surveys on (`surveys_enabled`),
  the record names someone to ask (an incident's `caller`, a request's `requester`), and it has
  no survey yet. A reopened incident resolved again keeps its first survey: one per record,
  ever. The survey is open for the tenant's `survey_days` (default 14).
- **Outages.** A major incident resolved while outages marked on it are still open ends them
  at the resolution time (`OutageUpdatedV1`): the service was restored when the incident was
  resolved, as far as the records know; a correction is a `PATCH /outages/{id}` away.
"""

from __future__ import annotations

from services.incident.application.uow import IncidentWork
from services.incident.domain import outage as outages
from services.incident.domain import survey as surveys
from shared.events.catalogue import IncidentTransitionedV1, RequestTransitionedV1, SurveySentV1
from shared.uow import Recorded


async def survey_resolved_incident(uow: IncidentWork, event: Recorded) -> None:
    """Offer the caller of a resolved incident a survey (once per incident)."""
    payload = event.payload
    if not isinstance(payload, IncidentTransitionedV1) or payload.to_state != "resolved":
        return
    incident = uow.latest_incident(event.subject)
    if incident is None or not incident.caller:
        return
    settings = await uow.settings.get()
    if not settings.surveys_enabled:
        return
    survey, sent = surveys.offer(
        tenant_id=uow.tenant_id,
        record="incident",
        record_id=incident.id,
        now=incident.updated_at,
        days=settings.survey_days,
        caller=incident.caller,
        services=incident.services,
        assignment_group=incident.assignment_group,
        assignee=incident.assignee,
    )
    await _offer(uow, survey, sent)


async def survey_fulfilled_request(uow: IncidentWork, event: Recorded) -> None:
    """Offer the requester of a fulfilled request a survey (once per request)."""
    payload = event.payload
    if not isinstance(payload, RequestTransitionedV1) or payload.to_state != "fulfilled":
        return
    request = uow.latest_request(event.subject)
    if request is None or not request.requester:
        return
    settings = await uow.settings.get()
    if not settings.surveys_enabled:
        return
    survey, sent = surveys.offer(
        tenant_id=uow.tenant_id,
        record="request",
        record_id=request.id,
        now=request.updated_at,
        days=settings.survey_days,
        caller=request.requester,
        services=(request.service,) if request.service else (),
        assignment_group=None,
        assignee=request.updated_by,
    )
    await _offer(uow, survey, sent)


async def _offer(uow: IncidentWork, survey: surveys.Survey, sent: SurveySentV1) -> None:
    if not await uow.surveys.insert(survey):
        return  # the record was surveyed before (reopened and resolved again)
    uow.record(survey.subject, 1, [sent])
    if uow.metrics is not None:
        uow.metrics.surveys_sent.labels(survey.record).inc()


async def end_outages_of_resolved_incident(uow: IncidentWork, event: Recorded) -> None:
    """End the open outages marked on a major incident when it is resolved."""
    payload = event.payload
    if not isinstance(payload, IncidentTransitionedV1) or payload.to_state != "resolved":
        return
    incident = uow.latest_incident(event.subject)
    if incident is None or not incident.major:
        return
    resolved_at = incident.resolved_at or incident.updated_at
    for found in await uow.outages.open_of_incident(incident.id):
        ended, updated = outages.ended_by_resolution(found, resolved_at, actor=uow.context.actor)
        await uow.outages.save(ended)
        uow.record(ended.subject, ended.version, [updated])
