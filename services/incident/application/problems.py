"""Problem use cases (ISO/IEC 20000-1 8.6.3): each runs in one unit of work with its events.

- Problems are opened by hand (`create_problem`) or from a trend of incidents (a reaction to a
  new incident, `application/trends.py`, with the tenant's `trend_opens_problem`); linking an
  incident sets its `problem_id` through the incident's own `update`
  (`application/links.py`), so the incident gets a version, a history entry and an
  `incident.updated` event like any other change.
- A known error is a problem in state `known_error` (the problem's id is the known error's
  id). `known_error_for` finds the one whose workaround a new incident gets.
- A problem asks for a change with an event (`ProblemChangeRequestedV1`) that the change
  service turns into a request for change; the request id is its idempotency key.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.incident.adapters import problem_changes
from services.incident.adapters.problems import ProblemFilter
from services.incident.application.links import link_incidents
from services.incident.application.reactions import unit_of_work
from services.incident.application.uow import (
    IncidentWork,
    store_new_problem,
    store_problem_change,
)
from services.incident.domain import problem as domain
from services.incident.domain.problem import Problem
from shared.context import RequestContext
from shared.db import tenant_transaction
from shared.errors import NotFound, StaleVersion, invalid_field
from shared.ids import new_id


@dataclass(frozen=True)
class KnownErrorRef:
    """The known error a new incident gets its workaround from (`id`: the problem's)."""

    id: uuid.UUID
    workaround: str


@dataclass(frozen=True)
class NewProblem:
    """Command: open a problem by hand, optionally covering incidents already logged."""

    title: str
    description: str = ""
    ci_id: uuid.UUID | None = None
    service: str | None = None
    incidents: tuple[uuid.UUID, ...] = ()


@dataclass(frozen=True)
class ChangeRequested:
    """What a change request returns: the problem after it, and the request's id."""

    problem: Problem
    request_id: uuid.UUID


def problem_view(problem: Problem) -> dict[str, Any]:
    """The problem as the API shows it (JSON-ready)."""
    view = asdict(problem)
    for name, value in view.items():
        if isinstance(value, datetime):
            view[name] = value.isoformat()
        elif isinstance(value, uuid.UUID):
            view[name] = str(value)
    view["incidents"] = [str(i) for i in problem.incidents]
    view["change_requests"] = [str(r) for r in problem.change_requests]
    view["known_error_id"] = str(problem.known_error_id) if problem.known_error_id else None
    view["reference"] = f"PRB{problem.number}"
    return view


def _reader(tenant_id: str) -> RequestContext:
    # Reads record nothing, so nobody is named as their actor.
    return RequestContext(tenant_id, "reader", "")


async def _locked(uow: IncidentWork, problem_id: uuid.UUID, expected: int | None) -> Problem:
    problem = await uow.problems.get(problem_id, lock=True)
    if problem is None:
        raise NotFound("problem", str(problem_id))
    if expected is not None and expected != problem.version:
        raise StaleVersion("the problem", problem.version, expected)
    return problem


# --- Use cases on a unit of work -----------------------------------------------------------


async def create_problem_in(
    uow: IncidentWork, command: NewProblem, *, now: datetime | None = None
) -> Problem:
    """Open a problem by hand (PRB<n>), linking the incidents named."""
    now = now or datetime.now(UTC)
    if command.ci_id is not None and await uow.projection.ci_by_id(str(command.ci_id)) is None:
        raise invalid_field("ci_id", f"no configuration item {command.ci_id} is known")
    problem_id = new_id()
    number = await uow.numbers.next("problem")
    await link_incidents(uow, problem_id, number, command.incidents, now, field="incidents")
    problem, events = domain.open_problem(
        problem_id=problem_id,
        tenant_id=uow.tenant_id,
        number=number,
        title=command.title,
        description=command.description,
        actor=uow.context.actor,
        now=now,
        ci_id=command.ci_id,
        service=command.service,
        incidents=sorted(command.incidents),  # reads list links made together by id
    )
    await store_new_problem(uow, problem, events)
    return problem


async def transition_problem_in(
    uow: IncidentWork,
    problem_id: uuid.UUID,
    wanted: str,
    *,
    expected_version: int | None,
    root_cause: str | None = None,
    workaround: str | None = None,
    resolution_notes: str | None = None,
    now: datetime | None = None,
) -> Problem:
    """Move a problem (entering known_error publishes the known error)."""
    problem = await _locked(uow, problem_id, expected_version)
    change = domain.transition(
        problem,
        wanted,
        actor=uow.context.actor,
        now=now or datetime.now(UTC),
        root_cause=root_cause,
        workaround=workaround,
        resolution_notes=resolution_notes,
    )
    return await store_problem_change(uow, change, "transitioned")


async def link_incident_in(
    uow: IncidentWork,
    problem_id: uuid.UUID,
    incident_id: uuid.UUID,
    *,
    expected_version: int | None,
    now: datetime | None = None,
) -> Problem:
    """Link an incident to the problem (an incident already linked to it changes nothing)."""
    now = now or datetime.now(UTC)
    problem = await _locked(uow, problem_id, expected_version)
    change = domain.link_incident(problem, incident_id, actor=uow.context.actor, now=now)
    if not change.events:
        return problem
    await link_incidents(uow, problem.id, problem.number, (incident_id,), now, field="incident_id")
    await uow.problems.link(change.problem, (incident_id,))
    return await store_problem_change(uow, change, "incident_linked")


async def publish_known_error_in(
    uow: IncidentWork,
    problem_id: uuid.UUID,
    *,
    root_cause: str | None,
    workaround: str | None,
    expected_version: int | None,
    now: datetime | None = None,
) -> Problem:
    """Publish (or revise) the problem's root cause and workaround as a known error."""
    problem = await _locked(uow, problem_id, expected_version)
    change = domain.publish_known_error(
        problem,
        root_cause=root_cause,
        workaround=workaround,
        actor=uow.context.actor,
        now=now or datetime.now(UTC),
    )
    if not change.events:
        return problem
    return await store_problem_change(uow, change, "known_error_published")


async def request_change_in(
    uow: IncidentWork,
    problem_id: uuid.UUID,
    *,
    title: str,
    description: str,
    ci_ids: tuple[uuid.UUID, ...],
    expected_version: int | None,
    now: datetime | None = None,
) -> ChangeRequested:
    """Ask the change service for a change (an event; its request id is the idempotency key)."""
    problem = await _locked(uow, problem_id, expected_version)
    for ci_id in ci_ids:
        if await uow.projection.ci_by_id(str(ci_id)) is None:
            raise invalid_field("ci_ids", f"no configuration item {ci_id} is known")
    request_id = new_id()
    change = domain.request_change(
        problem,
        request_id=request_id,
        title=title,
        description=description,
        ci_ids=ci_ids,
        actor=uow.context.actor,
        now=now or datetime.now(UTC),
    )
    stored = await store_problem_change(uow, change, "change_requested")
    return ChangeRequested(stored, request_id)


async def problem_in(uow: IncidentWork, problem_id: uuid.UUID) -> Problem:
    """The tenant's problem, or `NotFound`."""
    problem = await uow.problems.get(problem_id)
    if problem is None:
        raise NotFound("problem", str(problem_id))
    return problem


async def problem_history_in(uow: IncidentWork, problem_id: uuid.UUID) -> list[dict[str, Any]]:
    """Every version of a problem, oldest first (`NotFound` for one the tenant does not have)."""
    await problem_in(uow, problem_id)
    return await uow.problems.history(problem_id)


async def known_error_for(
    uow: IncidentWork, ci_id: uuid.UUID | None, services: tuple[str, ...]
) -> KnownErrorRef | None:
    """The newest published known error on the CI, else on one of the services, or None."""
    found = await uow.problems.newest_known_error(ci_id, services)
    return KnownErrorRef(id=found[0], workaround=found[1]) if found else None


# --- Use cases on the pool (the HTTP API's) ---------------------------------------------------


async def create_problem(
    pool: asyncpg.Pool,
    command: NewProblem,
    context: RequestContext,
) -> dict[str, Any]:
    """Open a problem by hand (PRB<n>), linking the incidents named."""
    async with unit_of_work(pool, context) as uow:
        problem = await create_problem_in(uow, command)
    return problem_view(problem)


async def get_problem(pool: asyncpg.Pool, problem_id: uuid.UUID, tenant_id: str) -> Problem:
    """The tenant's problem, or `NotFound`."""
    async with unit_of_work(pool, _reader(tenant_id)) as uow:
        return await problem_in(uow, problem_id)


async def changes_of_problem(
    pool: asyncpg.Pool, problem_id: uuid.UUID, tenant_id: str
) -> list[dict[str, Any]]:
    """The changes answering a problem, as the change service announced them (by number)."""
    async with tenant_transaction(pool, tenant_id, readonly=True) as conn:
        return [c.view() for c in await problem_changes.changes_of(conn, tenant_id, problem_id)]


async def search_problems(
    pool: asyncpg.Pool,
    tenant_id: str,
    where: ProblemFilter,
    *,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Problem]:
    """Problems matching the filter, newest first, after a (created_at, id) position."""
    async with unit_of_work(pool, _reader(tenant_id)) as uow:
        return await uow.problems.search(where, after=after, limit=limit)


async def problem_history(
    pool: asyncpg.Pool, problem_id: uuid.UUID, tenant_id: str
) -> list[dict[str, Any]]:
    """Every version of a problem, oldest first (`NotFound` for one the tenant does not have)."""
    async with unit_of_work(pool, _reader(tenant_id)) as uow:
        return await problem_history_in(uow, problem_id)


async def transition_problem(
    pool: asyncpg.Pool,
    problem_id: uuid.UUID,
    wanted: str,
    context: RequestContext,
    *,
    expected_version: int | None,
    root_cause: str | None = None,
    workaround: str | None = None,
    resolution_notes: str | None = None,
) -> Problem:
    """Move a problem (entering known_error publishes the known error)."""
    async with unit_of_work(pool, context) as uow:
        return await transition_problem_in(
            uow,
            problem_id,
            wanted,
            expected_version=expected_version,
            root_cause=root_cause,
            workaround=workaround,
            resolution_notes=resolution_notes,
        )


async def link_incident(
    pool: asyncpg.Pool,
    problem_id: uuid.UUID,
    incident_id: uuid.UUID,
    context: RequestContext,
    *,
    expected_version: int | None,
) -> Problem:
    """Link an incident to the problem (an incident already linked to it changes nothing)."""
    async with unit_of_work(pool, context) as uow:
        return await link_incident_in(
            uow, problem_id, incident_id, expected_version=expected_version
        )


async def publish_known_error(
    pool: asyncpg.Pool,
    problem_id: uuid.UUID,
    context: RequestContext,
    *,
    root_cause: str | None,
    workaround: str | None,
    expected_version: int | None,
) -> Problem:
    """Publish (or revise) the problem's root cause and workaround as a known error: new
    incidents on its CI or service get the workaround from then on."""
    async with unit_of_work(pool, context) as uow:
        return await publish_known_error_in(
            uow,
            problem_id,
            root_cause=root_cause,
            workaround=workaround,
            expected_version=expected_version,
        )


async def request_change(
    pool: asyncpg.Pool,
    problem_id: uuid.UUID,
    context: RequestContext,
    *,
    title: str,
    description: str,
    ci_ids: tuple[uuid.UUID, ...],
    expected_version: int | None,
) -> ChangeRequested:
    """Ask the change service for a change (an event; its request id is the idempotency key)."""
    async with unit_of_work(pool, context) as uow:
        return await request_change_in(
            uow,
            problem_id,
            title=title,
            description=description,
            ci_ids=ci_ids,
            expected_version=expected_version,
        )
