"""Satisfaction surveys without a database: the link's token (signing, verification, expiry,
tampering) and the survey offered and answered on the in-memory unit of work."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from services.incident.adapters.settings import TenantSettings
from services.incident.application import handlers, requests
from services.incident.application.handlers import LogIncident
from services.incident.application.requests import SubmitRequest
from services.incident.domain import survey as domain
from services.incident.domain.survey import SurveyToken
from shared.errors import Conflict, Gone, NotFound, ValidationFailed
from shared.events.catalogue import SurveyAnsweredV1, SurveySentV1
from tests.unit.fakes_incident import NOW, TENANT, FakeIncidentUnitOfWork, new_metrics

KEY = "k" * 40
OTHER_KEY = "o" * 40
S = timedelta(seconds=1)
CLAIMS = SurveyToken(TENANT, "incident", uuid.uuid4(), datetime(2026, 3, 16, 9, 0, tzinfo=UTC))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --- the token ---------------------------------------------------------------------------------


def test_a_signed_token_verifies_to_the_claims_it_was_made_of():
    token = domain.sign(CLAIMS, KEY)
    assert domain.verify(token, KEY) == CLAIMS
    assert len(token) < domain.MAX_TOKEN_LENGTH
    # URL-safe as it is: no escaping needed in a link.
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


def test_a_token_signed_with_another_key_does_not_verify():
    assert domain.verify(domain.sign(CLAIMS, OTHER_KEY), KEY) is None


def test_a_token_whose_payload_was_changed_does_not_verify():
    payload, mac = domain.sign(CLAIMS, KEY).split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    for field, value in (("t", "other-tenant"), ("r", str(uuid.uuid4())), ("e", body["e"] + 86400)):
        forged = _b64(json.dumps({**body, field: value}, separators=(",", ":")).encode())
        assert domain.verify(f"{forged}.{mac}", KEY) is None, field


def test_a_token_whose_mac_was_changed_does_not_verify():
    payload, mac = domain.sign(CLAIMS, KEY).split(".")
    flipped = ("A" if mac[0] != "A" else "B") + mac[1:]
    assert domain.verify(f"{payload}.{flipped}", KEY) is None


@pytest.mark.parametrize(
    "token",
    ["", ".", "x", "a.b.c", "not base64!.x", "%00.x", "a" * 600, "eyJ.", ".abc"],
)
def test_malformed_tokens_do_not_verify(token):
    assert domain.verify(token, KEY) is None


def test_a_validly_signed_payload_that_is_not_ours_does_not_verify():
    # Signed with the right key over something this service never makes (a leaked or reused
    # key): refused, not an error.
    for body in ({"t": "UPPER", "k": "incident", "r": str(uuid.uuid4()), "e": 1}, {"x": 1}):
        payload = _b64(json.dumps(body).encode())
        mac = _b64(domain._mac(KEY, payload))
        assert domain.verify(f"{payload}.{mac}", KEY) is None


def test_a_key_shorter_than_32_characters_makes_no_links():
    assert domain.usable_key("short") is None
    assert domain.usable_key(None) is None
    assert domain.usable_key(KEY) == KEY


# --- offered on resolution ---------------------------------------------------------------------


async def resolved_incident(uow, *, caller="carol", at=NOW + 10 * S):
    async with uow:
        incident = await handlers.log_incident_in(
            uow,
            LogIncident(
                "VPN down",
                "",
                2,
                2,
                caller=caller,
                services=("svc-vpn",),
                assignment_group="network",
                assignee="nina",
            ),
            now=NOW,
        )
    async with uow:
        locked = await handlers.locked_incident(uow, incident.id, None)
        return await handlers.move_incident(
            uow,
            locked,
            "resolved",
            now=at,
            resolution_code="solved_permanently",
            resolution_notes="fixed",
        )


async def test_resolving_an_incident_offers_its_caller_a_survey_in_the_same_transaction():
    uow = FakeIncidentUnitOfWork(settings=TenantSettings(survey_days=7), metrics=new_metrics())
    incident = await resolved_incident(uow)
    assert uow.events(f"survey/{incident.id}") == [("SurveySentV1", 1)]
    [sent] = uow.payloads(SurveySentV1)
    assert (sent.record, sent.record_id, sent.caller) == ("incident", str(incident.id), "carol")
    assert (sent.services, sent.assignment_group, sent.assignee) == (["svc-vpn"], "network", "nina")
    assert sent.expires_at == NOW + 10 * S + timedelta(days=7)
    stored = uow.survey_rows.rows[("incident", incident.id)]
    assert stored.expires_at == sent.expires_at and not stored.answered
    assert uow.metrics is not None
    assert uow.metrics.surveys_sent.labels("incident")._value.get() == 1


async def test_a_reopened_incident_resolved_again_keeps_its_first_survey():
    uow = FakeIncidentUnitOfWork()
    incident = await resolved_incident(uow)
    async with uow:
        locked = await handlers.locked_incident(uow, incident.id, None)
        reopened = await handlers.move_incident(uow, locked, "in_progress", now=NOW + 20 * S)
        await handlers.move_incident(
            uow,
            reopened,
            "resolved",
            now=NOW + 30 * S,
            resolution_code="solved_permanently",
            resolution_notes="fixed again",
        )
    assert len(uow.payloads(SurveySentV1)) == 1
    assert uow.survey_rows.rows[("incident", incident.id)].sent_at == NOW + 10 * S


async def test_no_survey_without_a_caller_or_when_the_tenant_switched_surveys_off():
    no_caller = FakeIncidentUnitOfWork()
    await resolved_incident(no_caller, caller=None)
    switched_off = FakeIncidentUnitOfWork(settings=TenantSettings(surveys_enabled=False))
    await resolved_incident(switched_off)
    assert no_caller.payloads(SurveySentV1) == switched_off.payloads(SurveySentV1) == []
    assert no_caller.survey_rows.rows == switched_off.survey_rows.rows == {}


async def test_fulfilling_a_request_offers_its_requester_a_survey():
    uow = FakeIncidentUnitOfWork()
    async with uow:
        request = await requests.submit_request_in(
            uow, SubmitRequest("New laptop", requested_for="rob"), now=NOW
        )
    async with uow:
        await requests.transition_request_in(
            uow, request.id, "in_fulfilment", expected_version=1, now=NOW + S
        )
        await requests.transition_request_in(
            uow, request.id, "fulfilled", expected_version=2, notes="delivered", now=NOW + 2 * S
        )
    [sent] = uow.payloads(SurveySentV1)
    assert (sent.record, sent.record_id, sent.caller) == ("request", str(request.id), "rob")
    assert uow.events(f"survey/{request.id}") == [("SurveySentV1", 1)]


# --- answered ----------------------------------------------------------------------------------


def a_survey(**changes):
    survey, _ = domain.offer(
        tenant_id=TENANT,
        record="incident",
        record_id=uuid.uuid4(),
        now=NOW,
        days=14,
        caller="carol",
        services=("svc-vpn",),
        assignment_group="network",
        assignee="nina",
    )
    return replace(survey, **changes)


def test_an_answer_is_stored_once_and_announced_with_the_records_grouping():
    survey = a_survey()
    answered, event = domain.answer(survey, survey.token_claims(), 4, "  quick fix  ", now=NOW + S)
    assert (answered.score, answered.comment, answered.answered_at) == (4, "quick fix", NOW + S)
    assert isinstance(event, SurveyAnsweredV1)
    assert (event.score, event.comment, event.services) == (4, "quick fix", ["svc-vpn"])
    assert (event.assignment_group, event.assignee) == ("network", "nina")
    with pytest.raises(Conflict):
        domain.answer(answered, survey.token_claims(), 5, "", now=NOW + 2 * S)


def test_an_answer_after_the_expiry_is_gone_and_one_before_is_taken():
    survey = a_survey()
    with pytest.raises(Gone):
        domain.answer(survey, survey.token_claims(), 3, "", now=survey.expires_at)
    answered, _ = domain.answer(survey, survey.token_claims(), 3, "", now=survey.expires_at - S)
    assert answered.answered


def test_a_token_for_another_expiry_of_the_same_record_leads_to_no_survey():
    survey = a_survey()
    older = replace(survey.token_claims(), expires_at=survey.expires_at - timedelta(days=1))
    with pytest.raises(NotFound):
        domain.answer(survey, older, 3, "", now=NOW)


@pytest.mark.parametrize(
    ("score", "comment", "field"),
    [(0, "", "score"), (6, "", "score"), (True, "", "score"), (3, "x" * 2001, "comment")],
)
def test_a_score_outside_1_to_5_or_a_long_comment_is_refused_naming_the_field(
    score, comment, field
):
    survey = a_survey()
    with pytest.raises(ValidationFailed) as refused:
        domain.answer(survey, survey.token_claims(), score, comment, now=NOW)
    assert [f.field for f in refused.value.fields] == [field]
