"""The service request use cases on a fake unit of work: events, clocks, visibility, typed
refusals (no PostgreSQL)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from services.incident.adapters.requests import RequestFilter
from services.incident.application import requests
from services.incident.application.requests import SubmitRequest
from services.incident.domain.request import SelfApproval, ServiceRequest
from shared.errors import NotFound, StaleVersion, ValidationFailed
from tests.unit.fakes_incident import NOW, FakeIncidentUnitOfWork, a_service, gold_policy

S = timedelta(seconds=1)
AGENT = frozenset({"agent"})
REQUESTER = frozenset({"requester"})


async def submitted(uow: FakeIncidentUnitOfWork, **fields) -> ServiceRequest:
    async with uow:
        return await requests.submit_request_in(uow, SubmitRequest("New laptop", **fields), now=NOW)


async def test_a_request_without_approval_is_stored_with_its_clocks_running() -> None:
    uow = FakeIncidentUnitOfWork()
    uow.projected.policy = gold_policy()
    request = await submitted(uow)
    assert (request.state, request.version, request.number) == ("submitted", 1, 1)
    assert uow.events(request.id) == [("RequestSubmittedV1", 1)]
    clocks = uow.clock_rows.of("request", request.id)
    assert {k: c.clock.state for k, c in clocks.items()} == {
        "response": "running",
        "resolution": "running",
    }


async def test_a_request_that_needs_approval_goes_on_to_await_it_with_its_clocks_paused() -> None:
    # The clocks start as a reaction to the submitted event, before the request is routed:
    # the routing's hold must find them (a policy that pauses while awaiting approval).
    uow = FakeIncidentUnitOfWork()
    uow.projected.policy = gold_policy()
    request = await submitted(uow, approvers=("bob",))
    assert (request.state, request.version) == ("awaiting_approval", 2)
    assert uow.events(request.id) == [("RequestSubmittedV1", 1), ("RequestTransitionedV1", 2)]
    clocks = uow.clock_rows.of("request", request.id)
    assert {c.clock.state for c in clocks.values()} == {"paused"}
    assert {c.hold_reason for c in clocks.values()} == {"awaiting_approval"}


async def test_a_request_naming_an_unknown_service_or_its_requester_as_approver_is_refused() -> (
    None
):
    uow = FakeIncidentUnitOfWork()
    with pytest.raises(ValidationFailed) as unknown:
        await submitted(uow, service="payroll")
    with pytest.raises(ValidationFailed) as self_approval:
        await submitted(uow, approvers=("alice",))
    assert [f.field for f in unknown.value.fields] == ["service"]
    assert [f.field for f in self_approval.value.fields] == ["approvers"]
    assert uow.written == [] and uow.request_rows.rows == {}


async def test_a_service_is_found_by_name_and_stored_by_id() -> None:
    uow = FakeIncidentUnitOfWork()
    service = a_service("payroll")
    uow.projected.services[service.id] = service
    request = await submitted(uow, service="payroll")
    assert request.service == service.id


async def test_fulfilling_stops_both_clocks_after_the_move() -> None:
    uow = FakeIncidentUnitOfWork()
    uow.projected.policy = gold_policy()
    request = await submitted(uow)
    uow.acting_as("agent-1", AGENT)
    async with uow:
        await requests.transition_request_in(
            uow, request.id, "in_fulfilment", expected_version=1, now=NOW + S
        )
        _, done, _ = await requests.transition_request_in(
            uow, request.id, "fulfilled", expected_version=2, notes="delivered", now=NOW + 2 * S
        )
    assert done.state == "fulfilled"
    assert [t for t, _ in uow.events()][1:] == [
        "RequestTransitionedV1",
        "SlaClockStoppedV1",
        "RequestTransitionedV1",
        "SlaClockStoppedV1",
        "SurveySentV1",  # the requester's satisfaction survey, in the same transaction
    ]


async def test_a_move_on_a_stale_version_is_refused() -> None:
    uow = FakeIncidentUnitOfWork()
    request = await submitted(uow)
    with pytest.raises(StaleVersion):
        async with uow:
            await requests.transition_request_in(uow, request.id, "cancelled", expected_version=5)
    assert uow.events(request.id) == [("RequestSubmittedV1", 1)]


async def test_an_approval_moves_the_request_to_fulfilment_and_resumes_its_clocks() -> None:
    uow = FakeIncidentUnitOfWork()
    uow.projected.policy = gold_policy()
    request = await submitted(uow, approvers=("bob",))
    uow.acting_as("bob", frozenset({"change_manager"}))
    async with uow:
        decided, decisions = await requests.decide_request_in(
            uow, request.id, "approved", expected_version=2, now=NOW + 10 * S
        )
    assert (decided.state, decided.version) == ("in_fulfilment", 3)
    assert [(d.approver, d.decision) for d in decisions] == [("bob", "approved")]
    clocks = uow.clock_rows.of("request", request.id)
    assert clocks["response"].clock.state == "stopped"
    assert clocks["resolution"].clock.state == "running"


async def test_the_requester_may_not_approve_their_own_request() -> None:
    uow = FakeIncidentUnitOfWork()
    request = await submitted(uow, requested_for="carol", approvers=("bob",))
    uow.acting_as("carol", REQUESTER)
    with pytest.raises(SelfApproval):
        async with uow:
            await requests.decide_request_in(uow, request.id, "approved", expected_version=2)


async def test_a_requester_sees_their_own_requests_only_and_others_are_not_found() -> None:
    uow = FakeIncidentUnitOfWork()
    mine = await submitted(uow.acting_as("carol", REQUESTER))
    theirs = await submitted(uow.acting_as("dave", REQUESTER))
    uow.acting_as("carol", REQUESTER)
    async with uow:
        view = await requests.get_request_in(uow, mine.id)
        page = await requests.search_requests_in(uow, RequestFilter(), after=None, limit=10)
    assert view["id"] == str(mine.id)
    assert [item["id"] for item in page.items] == [str(mine.id)]
    with pytest.raises(NotFound):
        async with uow:
            await requests.get_request_in(uow, theirs.id)
    uow.acting_as("agent-1", AGENT)
    async with uow:
        every = await requests.search_requests_in(uow, RequestFilter(), after=None, limit=1)
    assert len(every.items) == 1 and every.last is not None  # one more page follows
    with pytest.raises(NotFound):
        async with uow:
            await requests.get_request_in(uow, uuid.uuid4())


async def test_a_requests_history_and_clocks_are_read_for_those_who_may_see_it() -> None:
    uow = FakeIncidentUnitOfWork()
    uow.projected.policy = gold_policy()
    request = await submitted(uow.acting_as("carol", REQUESTER), approvers=("bob",))
    async with uow:
        history = await requests.request_history_in(uow, request.id)
        clocks = await requests.request_clocks_in(uow, request.id, at=NOW + 60 * S)
    assert [(h["version"], h["action"]) for h in history] == [(1, "submitted"), (2, "transitioned")]
    assert [(c["kind"], c["state"], c["elapsed_seconds"]) for c in clocks] == [
        ("response", "paused", 0),
        ("resolution", "paused", 0),
    ]
    uow.acting_as("dave", REQUESTER)
    with pytest.raises(NotFound):
        async with uow:
            await requests.request_history_in(uow, request.id)
    with pytest.raises(NotFound):
        async with uow:
            await requests.request_clocks_in(uow, request.id)
