"""Problem use cases (ISO/IEC 20000-1 8.6.3): each runs in one transaction with its outbox events.

- Problems are opened by hand (`create_problem`) or from a trend of incidents
  (`after_incident_logged`, with the tenant's `trend_opens_problem`); linking an incident sets
  its `problem_id` through the incident's own `update`, so the incident gets a version, a
  history entry and an `incident.updated` event like any other change.
- A known error is a problem in state `known_error` (the problem's id is the known error's
  id). `known_error_for` finds the one whose workaround a new incident gets.
- A problem asks for a change with an event (`ProblemChangeRequestedV1`) that the change
  service turns into a request for change; the request id is its idempotency key.

Two hooks run inside `handlers.record_incident`'s transaction: `known_error_for` (before the
incident is built) and `after_incident_logged` (the trend detector, after it is stored).

This module imports `handlers` as a module (never names from it) because `handlers` calls back
into this one: either may be imported first.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from services.incident.adapters import problems as store
from services.incident.adapters import projections, repository
from services.incident.application import handlers, sla
from services.incident.domain import incident as incident_domain
from services.incident.domain import problem as domain
from services.incident.domain import workflow
from services.incident.domain.incident import Incident
from services.incident.domain.problem import Problem, ProblemChange
from services.incident.metrics import IncidentMetrics
from shared import outbox
from shared.context import RequestContext
from shared.db import Connection, tenant_transaction
from shared.events.catalogue import EventPayload, ProblemSuggestedV1
from shared.events.envelope import MAX_SUBJECT
from shared.http.etags import stale_version
from shared.http.problems import Problem as HttpProblem
from shared.http.problems import not_found
from shared.ids import new_id

# How many incidents a trend suggestion lists (and links, when it opens a problem): the newest.
TREND_SAMPLE = 100


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


def _field_problem(status: int, field: str, detail: str) -> HttpProblem:
    return HttpProblem(
        status,
        "Conflict" if status == 409 else "Unprocessable Content",
        detail,
        errors=[{"in": "body", "field": field, "detail": detail}],
    )


async def _append(
    conn: Connection, problem: Problem, events: list[EventPayload], context: RequestContext
) -> None:
    await outbox.append_many(
        conn,
        [outbox.Pending(e, str(problem.id), problem.version) for e in events],
        tenant_id=problem.tenant_id,
        actor=context.actor,
        correlation_id=context.correlation_id,
    )


async def _store_change(
    conn: Connection, change: ProblemChange, action: str, context: RequestContext
) -> Problem:
    await store.save(conn, change.problem)
    await store.record_history(conn, change.problem, action=action, changes=change.changes)
    await _append(conn, change.problem, change.events, context)
    return change.problem


async def _insert_new(
    conn: Connection, problem: Problem, events: list[EventPayload], context: RequestContext
) -> None:
    await store.insert(conn, problem)
    await store.record_history(conn, problem, action="created", changes={})
    await _append(conn, problem, events, context)


async def _locked(
    conn: Connection, tenant_id: str, problem_id: uuid.UUID, expected: int | None
) -> Problem:
    problem = await store.get(conn, tenant_id, problem_id, lock=True)
    if problem is None:
        raise not_found("problem", str(problem_id))
    if expected is not None and expected != problem.version:
        raise stale_version("the problem", problem.version, expected)
    return problem


async def _link_incidents(
    conn: Connection,
    problem_id: uuid.UUID,
    number: int,
    incident_ids: tuple[uuid.UUID, ...],
    context: RequestContext,
    now: datetime,
    *,
    field: str,
    strict: bool = True,
) -> list[Incident]:
    """Point each incident at problem `problem_id` (PRB`number`) through the incident's own
    update (version, history, `incident.updated`; clocks retargeted if the tenant's matrix has
    moved its priority since).

    `strict` refuses (422/409 naming `field`) an unknown incident, a closed or cancelled one, and
    one linked to another open problem; otherwise those are skipped. Returns the incidents as
    stored, in id order (the order they are locked in).
    """
    tenant = context.tenant_id
    settings = await handlers.tenant_settings(conn, tenant)
    incidents: list[Incident] = []
    for incident_id in sorted(set(incident_ids)):
        incident = await repository.get(conn, tenant, incident_id, lock=True)
        if incident is None:
            if strict:
                raise _field_problem(422, field, f"no incident {incident_id}")
            continue
        other = incident.problem_id
        if other is not None and other != problem_id:
            state = await store.problem_state(conn, tenant, other)
            if state is not None and state not in store.CLOSED:
                if strict:
                    raise _field_problem(
                        409,
                        field,
                        f"incident {incident_id} is linked to open problem {other}",
                    )
                continue
        try:
            change = incident_domain.update(
                incident,
                {"problem_id": problem_id},
                actor=context.actor,
                now=now,
                matrix=settings.matrix,
                reason=f"linked to problem PRB{number}",
            )
        except workflow.IllegalTransition:
            if strict:
                raise _field_problem(
                    409, field, f"incident {incident_id} is {incident.state}: it cannot change"
                ) from None
            continue
        if change is None:
            incidents.append(incident)
            continue
        stored = await handlers.store_change(conn, change, "problem_linked", context)
        if "priority" in change.changes:
            await sla.retarget(
                conn,
                tenant=tenant,
                record="incident",
                record_id=stored.id,
                at=now,
                actor=context.actor,
                priority=stored.priority,
                correlation_id=context.correlation_id,
            )
        incidents.append(stored)
    return incidents


# --- Use cases ------------------------------------------------------------------------------


async def create_problem(
    pool: asyncpg.Pool,
    command: NewProblem,
    context: RequestContext,
) -> dict[str, Any]:
    """Open a problem by hand (PRB<n>), linking the incidents named."""
    now = datetime.now(UTC)
    tenant = context.tenant_id
    async with tenant_transaction(pool, tenant) as conn:
        if command.ci_id is not None and (
            await projections.ci_by_id(conn, tenant, str(command.ci_id)) is None
        ):
            raise _field_problem(422, "ci_id", f"no configuration item {command.ci_id} is known")
        problem_id = new_id()
        number = await repository.next_number(conn, tenant, "problem")
        await _link_incidents(
            conn, problem_id, number, command.incidents, context, now, field="incidents"
        )
        problem, events = domain.open_problem(
            problem_id=problem_id,
            tenant_id=tenant,
            number=number,
            title=command.title,
            description=command.description,
            actor=context.actor,
            now=now,
            ci_id=command.ci_id,
            service=command.service,
            incidents=sorted(command.incidents),  # reads list links made together by id
        )
        await _insert_new(conn, problem, events, context)
    return problem_view(problem)


async def get_problem(pool: asyncpg.Pool, problem_id: uuid.UUID, tenant_id: str) -> Problem:
    """The tenant's problem, or 404."""
    async with tenant_transaction(pool, tenant_id, readonly=True) as conn:
        problem = await store.get(conn, tenant_id, problem_id)
    if problem is None:
        raise not_found("problem", str(problem_id))
    return problem


async def search_problems(
    pool: asyncpg.Pool,
    tenant_id: str,
    where: store.ProblemFilter,
    *,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Problem]:
    """Problems matching the filter, newest first, after a (created_at, id) position."""
    async with tenant_transaction(pool, tenant_id, readonly=True) as conn:
        return await store.search(conn, tenant_id, where, after=after, limit=limit)


async def problem_history(
    pool: asyncpg.Pool, problem_id: uuid.UUID, tenant_id: str
) -> list[dict[str, Any]]:
    """Every version of a problem, oldest first (404 for one the tenant does not have)."""
    async with tenant_transaction(pool, tenant_id, readonly=True) as conn:
        if await store.get(conn, tenant_id, problem_id) is None:
            raise not_found("problem", str(problem_id))
        return await store.history(conn, tenant_id, problem_id)


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
    now = datetime.now(UTC)
    async with tenant_transaction(pool, context.tenant_id) as conn:
        problem = await _locked(conn, context.tenant_id, problem_id, expected_version)
        change = domain.transition(
            problem,
            wanted,
            actor=context.actor,
            now=now,
            root_cause=root_cause,
            workaround=workaround,
            resolution_notes=resolution_notes,
        )
        return await _store_change(conn, change, "transitioned", context)


async def link_incident(
    pool: asyncpg.Pool,
    problem_id: uuid.UUID,
    incident_id: uuid.UUID,
    context: RequestContext,
    *,
    expected_version: int | None,
) -> Problem:
    """Link an incident to the problem (an incident already linked to it changes nothing)."""
    now = datetime.now(UTC)
    async with tenant_transaction(pool, context.tenant_id) as conn:
        problem = await _locked(conn, context.tenant_id, problem_id, expected_version)
        change = domain.link_incident(problem, incident_id, actor=context.actor, now=now)
        if not change.events:
            return problem
        await _link_incidents(
            conn, problem.id, problem.number, (incident_id,), context, now, field="incident_id"
        )
        await store.link(conn, change.problem, (incident_id,))
        return await _store_change(conn, change, "incident_linked", context)


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
    now = datetime.now(UTC)
    async with tenant_transaction(pool, context.tenant_id) as conn:
        problem = await _locked(conn, context.tenant_id, problem_id, expected_version)
        change = domain.publish_known_error(
            problem, root_cause=root_cause, workaround=workaround, actor=context.actor, now=now
        )
        if not change.events:
            return problem
        return await _store_change(conn, change, "known_error_published", context)


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
    now = datetime.now(UTC)
    tenant = context.tenant_id
    async with tenant_transaction(pool, tenant) as conn:
        problem = await _locked(conn, tenant, problem_id, expected_version)
        for ci_id in ci_ids:
            if await projections.ci_by_id(conn, tenant, str(ci_id)) is None:
                raise _field_problem(422, "ci_ids", f"no configuration item {ci_id} is known")
        request_id = new_id()
        change = domain.request_change(
            problem,
            request_id=request_id,
            title=title,
            description=description,
            ci_ids=ci_ids,
            actor=context.actor,
            now=now,
        )
        stored = await _store_change(conn, change, "change_requested", context)
    return ChangeRequested(stored, request_id)


# --- Hooks of record_incident ---------------------------------------------------------------


async def known_error_for(
    conn: Connection, tenant_id: str, ci_id: uuid.UUID | None, services: tuple[str, ...]
) -> KnownErrorRef | None:
    """The newest published known error on the CI, else on one of the services, or None.

    Runs in the transaction that logs an incident, which gets this workaround attached.
    """
    found = await store.newest_known_error(conn, tenant_id, ci_id, services)
    return KnownErrorRef(id=found[0], workaround=found[1]) if found else None


def _stands(last: store.TrendState | None, window_start: datetime) -> bool:
    """Whether a key's last suggestion still stands: younger than the window, or its problem
    still open."""
    return last is not None and (
        last.suggested_at > window_start or last.problem_state not in (None, *store.CLOSED)
    )


def _trend_keys(incident: Incident) -> list[tuple[str, str]]:
    """The (basis, key) pairs an incident counts towards: its CI, then each of its services.

    A key too long for an event subject (`trend/<basis>/<key>`) is not tracked.
    """
    keys = [("ci", str(incident.ci_id))] if incident.ci_id is not None else []
    keys += [("service", s) for s in incident.services]
    return [(b, k) for b, k in keys if len(f"trend/{b}/{k}") <= MAX_SUBJECT]


async def after_incident_logged(
    conn: Connection,
    incident: Incident,
    settings: handlers.TenantSettings,
    context: RequestContext,
    metrics: IncidentMetrics | None,
) -> Incident:
    """The trend detector, in the transaction that logged `incident` (after it is stored).

    For the incident's CI, then each of its services: when the incidents on it created within
    the tenant's window before this one (this one included; cancelled ones and ones explained
    by an open problem or its known error left out) reach the threshold, and the key has no
    standing suggestion (one younger than the window, or whose problem is still open), suggest
    a problem (`ProblemSuggestedV1`, subject `trend/<ci|service>/<id>`) — or, with
    `trend_opens_problem`, open one (origin trend) linking those incidents and name it in the
    suggestion. A service's count leaves out incidents on a CI whose own trend stands: one
    trend, suggested once, on the CI.

    Exactly once per trend: concurrent incidents on a key queue on an advisory lock (so each
    counts what the others committed), and the `problem_trends` row admits one suggestion.
    Cheap: one primary-key read of the keys' trends; only keys without a standing suggestion
    are locked, read again and counted (incidents_ci index for a CI, the services index for a
    service, LIMITed), so an alert storm on a key already suggested costs that one read.

    Returns the incident as now stored: a new version linked to the opened problem when the
    trend opened one (the caller should answer with it), else `incident` itself.
    """
    tenant = incident.tenant_id
    now = incident.created_at
    window_start = now - timedelta(seconds=settings.trend_window_seconds)

    async def quiet(keys: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The keys without a standing suggestion."""
        states = await store.trend_states(conn, tenant, keys) if keys else {}
        return [k for k in keys if not _stands(states.get(k), window_start)]

    keys = await quiet(_trend_keys(incident))
    if not keys:
        return incident
    await store.lock_trends(conn, tenant, keys)
    # Read again under the lock: a transaction that held it may have suggested meanwhile.
    keys = await quiet(keys)
    sample = max(settings.trend_threshold, TREND_SAMPLE)
    current = incident
    for basis, key in keys:
        if basis == "ci":
            trend = await store.recent_on_ci(
                conn, tenant, uuid.UUID(key), since=window_start, limit=sample
            )
        else:
            trend = await store.recent_on_service(
                conn, tenant, key, since=window_start, limit=sample
            )
        if len(trend) < settings.trend_threshold:
            continue
        number = await store.mark_suggested(
            conn, tenant, basis, key, at=now, window_start=window_start, incidents=trend
        )
        if number is None:
            continue
        opened: Problem | None = None
        if settings.trend_opens_problem:
            opened, linked = await _open_from_trend(conn, basis, key, trend, settings, context)
            await store.set_trend_problem(conn, tenant, basis, key, opened.id)
            current = next((i for i in linked if i.id == incident.id), current)
        suggestion = ProblemSuggestedV1(
            ci_id=key if basis == "ci" else None,
            service=key if basis == "service" else None,
            incidents=[str(i) for i in trend],
            window_seconds=settings.trend_window_seconds,
            threshold=settings.trend_threshold,
            opened_problem_id=str(opened.id) if opened else None,
        )
        await outbox.append_many(
            conn,
            [outbox.Pending(suggestion, f"trend/{basis}/{key}", number)],
            tenant_id=tenant,
            actor=context.actor,
            correlation_id=context.correlation_id,
        )
        if metrics is not None:
            metrics.problem_suggestions.labels(basis).inc()
    return current


async def _open_from_trend(
    conn: Connection,
    basis: str,
    key: str,
    incidents: list[uuid.UUID],
    settings: handlers.TenantSettings,
    context: RequestContext,
) -> tuple[Problem, list[Incident]]:
    """Open a problem (origin trend) on the key, linking those of the incidents that can still
    change (a closed one stays out of the links, and in the suggestion)."""
    tenant = context.tenant_id
    now = datetime.now(UTC)
    if basis == "ci":
        ci = await projections.ci_by_id(conn, tenant, key)
        what = f"configuration item {ci.name if ci else key}"
    else:
        service = await projections.service_by_id(conn, tenant, key)
        what = f"service {service.name if service else key}"
    problem_id = new_id()
    number = await repository.next_number(conn, tenant, "problem")
    linked = await _link_incidents(
        conn, problem_id, number, tuple(incidents), context, now, field="incidents", strict=False
    )
    problem, events = domain.open_problem(
        problem_id=problem_id,
        tenant_id=tenant,
        number=number,
        title=f"Recurring incidents on {what}"[:200],
        description=(
            f"{len(incidents)} incidents on {what} within {settings.trend_window_seconds} s"
            f" (threshold {settings.trend_threshold}); opened from the trend."
        ),
        actor=context.actor,
        now=now,
        ci_id=uuid.UUID(key) if basis == "ci" else None,
        service=key if basis == "service" else None,
        origin="trend",
        incidents=[i.id for i in linked],
    )
    await _insert_new(conn, problem, events, context)
    return problem, linked
