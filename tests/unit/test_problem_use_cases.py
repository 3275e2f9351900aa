"""The problem use cases and the trend reaction on a fake unit of work: events, stored state,
typed refusals (no PostgreSQL)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from services.incident.adapters.settings import TenantSettings
from services.incident.application import handlers, problems
from services.incident.application.handlers import LogIncident
from services.incident.domain.problem import Problem, WrongProblemState
from shared.errors import Conflict, NotFound, StaleVersion, ValidationFailed
from shared.events.catalogue import ProblemSuggestedV1
from tests.unit.fakes_incident import NOW, FakeIncidentUnitOfWork, a_ci, a_service, new_metrics

S = timedelta(seconds=1)


async def opened(uow: FakeIncidentUnitOfWork, **fields) -> Problem:
    async with uow:
        return await problems.create_problem_in(
            uow, problems.NewProblem("Disk fills up", **fields), now=NOW
        )


async def published_known_error(uow: FakeIncidentUnitOfWork, **fields) -> Problem:
    """A problem opened, investigated and published as a known error ("restart it")."""
    problem = await opened(uow, **fields)
    async with uow:
        await problems.transition_problem_in(
            uow, problem.id, "investigating", expected_version=1, now=NOW
        )
        return await problems.publish_known_error_in(
            uow,
            problem.id,
            root_cause="a leak",
            workaround="restart it",
            expected_version=2,
            now=NOW + S,
        )


async def incident(uow: FakeIncidentUnitOfWork, **fields):
    async with uow:
        return await handlers.log_incident_in(
            uow, LogIncident("Mail down", "", 2, 2, **fields), now=NOW
        )


async def test_a_problem_opened_by_hand_links_its_incidents_through_their_own_update() -> None:
    uow = FakeIncidentUnitOfWork()
    first = await incident(uow)
    problem = await opened(uow, incidents=(first.id,))
    assert (problem.number, problem.version, problem.incidents) == (1, 1, (first.id,))
    linked = uow.incident_rows.rows[first.id]
    assert (linked.problem_id, linked.version) == (problem.id, 2)
    assert uow.events() == [
        ("IncidentCreatedV1", 1),
        ("IncidentUpdatedV1", 2),
        ("ProblemCreatedV1", 1),
    ]
    assert uow.problem_rows.history_rows == [(problem.id, 1, "created")]


async def test_opening_a_problem_refuses_an_unknown_ci_an_unknown_incident_and_a_taken_one() -> (
    None
):
    uow = FakeIncidentUnitOfWork()
    with pytest.raises(ValidationFailed) as unknown_ci:
        await opened(uow, ci_id=uuid.uuid4())
    with pytest.raises(ValidationFailed) as unknown_incident:
        await opened(uow, incidents=(uuid.uuid4(),))
    taken = await incident(uow)
    await opened(uow, incidents=(taken.id,))
    with pytest.raises(Conflict) as linked_elsewhere:
        await opened(uow, incidents=(taken.id,))
    assert [f.field for f in unknown_ci.value.fields] == ["ci_id"]
    assert [f.field for f in unknown_incident.value.fields] == ["incidents"]
    assert [f.field for f in linked_elsewhere.value.fields] == ["incidents"]
    assert len(uow.problem_rows.rows) == 1


async def test_moving_a_problem_records_its_event_and_refuses_a_stale_version() -> None:
    uow = FakeIncidentUnitOfWork()
    problem = await opened(uow)
    async with uow:
        moved = await problems.transition_problem_in(
            uow, problem.id, "investigating", expected_version=1
        )
    assert (moved.state, moved.version) == ("investigating", 2)
    assert uow.events(problem.id)[-1] == ("ProblemTransitionedV1", 2)
    with pytest.raises(StaleVersion):
        async with uow:
            await problems.transition_problem_in(uow, problem.id, "cancelled", expected_version=1)
    with pytest.raises(NotFound):
        async with uow:
            await problems.transition_problem_in(uow, uuid.uuid4(), "cancelled", expected_version=1)


async def test_linking_an_incident_links_both_sides_once() -> None:
    uow = FakeIncidentUnitOfWork()
    problem = await opened(uow)
    logged = await incident(uow)
    async with uow:
        linked = await problems.link_incident_in(uow, problem.id, logged.id, expected_version=1)
    async with uow:  # again: nothing changes
        again = await problems.link_incident_in(uow, problem.id, logged.id, expected_version=2)
    assert linked.incidents == (logged.id,) and again == linked
    assert uow.problem_rows.links == [(problem.id, logged.id)]
    assert uow.events(problem.id) == [("ProblemCreatedV1", 1), ("ProblemIncidentLinkedV1", 2)]
    assert uow.events(logged.id)[-1] == ("IncidentUpdatedV1", 2)


async def test_a_closed_problem_takes_no_more_incidents() -> None:
    uow = FakeIncidentUnitOfWork()
    problem = await opened(uow)
    async with uow:
        await problems.transition_problem_in(uow, problem.id, "cancelled", expected_version=1)
    logged = await incident(uow)
    with pytest.raises(WrongProblemState):
        async with uow:
            await problems.link_incident_in(uow, problem.id, logged.id, expected_version=2)


async def test_a_published_known_error_is_found_for_its_ci_before_its_service() -> None:
    uow = FakeIncidentUnitOfWork()
    known_ci = a_ci()
    uow.projected.cis[known_ci.id] = known_ci
    ci = uuid.UUID(known_ci.id)
    on_service = await published_known_error(uow, service="svc-mail")
    on_ci = await published_known_error(uow, ci_id=ci)
    assert uow.events(on_ci.id)[-1] == ("KnownErrorPublishedV1", 3)
    async with uow:
        by_ci = await problems.known_error_for(uow, ci, ("svc-mail",))
        by_service = await problems.known_error_for(uow, uuid.uuid4(), ("svc-mail",))
        nothing = await problems.known_error_for(uow, None, ("svc-other",))
    assert by_ci == problems.KnownErrorRef(on_ci.id, "restart it")
    assert by_service == problems.KnownErrorRef(on_service.id, "restart it")
    assert nothing is None


async def test_publishing_the_same_known_error_again_records_nothing() -> None:
    uow = FakeIncidentUnitOfWork()
    problem = await published_known_error(uow)
    before = list(uow.written)
    async with uow:
        same = await problems.publish_known_error_in(
            uow, problem.id, root_cause="a leak", workaround="restart it", expected_version=3
        )
    assert same == problem and uow.written == before


async def test_a_change_request_names_known_cis_only() -> None:
    uow = FakeIncidentUnitOfWork()
    ci = a_ci()
    uow.projected.cis[ci.id] = ci
    problem = await opened(uow)
    with pytest.raises(ValidationFailed) as unknown:
        async with uow:
            await problems.request_change_in(
                uow,
                problem.id,
                title="t",
                description="",
                ci_ids=(uuid.uuid4(),),
                expected_version=1,
            )
    assert [f.field for f in unknown.value.fields] == ["ci_ids"]
    async with uow:
        requested = await problems.request_change_in(
            uow,
            problem.id,
            title="Fix it",
            description="",
            ci_ids=(uuid.UUID(ci.id),),
            expected_version=1,
        )
    assert requested.problem.change_requests == (requested.request_id,)
    assert uow.events(problem.id)[-1] == ("ProblemChangeRequestedV1", 2)


# --- the trend reaction ---------------------------------------------------------------------


async def test_the_third_incident_on_a_ci_suggests_a_problem_once_after_its_created_event() -> None:
    uow = FakeIncidentUnitOfWork(metrics=(metrics := new_metrics()))
    ci = a_ci()
    uow.projected.cis[ci.id] = ci
    logged = [await incident(uow, ci_id=uuid.UUID(ci.id)) for _ in range(4)]
    (suggestion,) = uow.payloads(ProblemSuggestedV1)
    assert suggestion.ci_id == ci.id and suggestion.opened_problem_id is None
    assert sorted(suggestion.incidents) == sorted(str(i.id) for i in logged[:3])
    kinds = [(type(e.payload).__name__, e.subject, e.version) for e in uow.written]
    assert kinds[2:4] == [
        ("IncidentCreatedV1", str(logged[2].id), 1),
        ("ProblemSuggestedV1", f"trend/ci/{ci.id}", 1),
    ]
    assert metrics.problem_suggestions.labels("ci")._value.get() == 1


async def test_a_trend_that_opens_a_problem_links_the_new_incident_and_returns_it_linked() -> None:
    uow = FakeIncidentUnitOfWork(settings=TenantSettings(trend_opens_problem=True))
    service = a_service()
    uow.projected.services[service.id] = service
    first = await incident(uow, services=(service.id,))
    second = await incident(uow, services=(service.id,))
    third = await incident(uow, services=(service.id,))
    (problem,) = uow.problem_rows.rows.values()
    assert (problem.origin, set(problem.incidents)) == ("trend", {first.id, second.id, third.id})
    assert (third.version, third.problem_id) == (2, problem.id)  # answered as stored
    (suggestion,) = uow.payloads(ProblemSuggestedV1)
    assert suggestion.opened_problem_id == str(problem.id)
    # The created event first, then the links, the problem, and the suggestion naming it.
    tail = [type(e.payload).__name__ for e in uow.written][2:]
    assert tail == [
        "IncidentCreatedV1",
        "IncidentUpdatedV1",
        "IncidentUpdatedV1",
        "IncidentUpdatedV1",
        "ProblemCreatedV1",
        "ProblemSuggestedV1",
    ]


async def test_a_problem_and_its_history_are_read_and_a_missing_one_is_not_found() -> None:
    uow = FakeIncidentUnitOfWork()
    problem = await published_known_error(uow)
    async with uow:
        found = await problems.problem_in(uow, problem.id)
        history = await problems.problem_history_in(uow, problem.id)
    assert found == problem
    assert [(h["version"], h["action"]) for h in history] == [
        (1, "created"),
        (2, "transitioned"),
        (3, "known_error_published"),
    ]
    with pytest.raises(NotFound):
        async with uow:
            await problems.problem_history_in(uow, uuid.uuid4())
