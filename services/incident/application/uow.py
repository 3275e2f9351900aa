"""The incident service's unit of work: its repositories, and how a record's change is stored.

A use case opens one (`reactions.unit_of_work`), reads and writes through the repositories it
gives (`uow.incidents`, `uow.requests`, `uow.problems`, `uow.trends`, `uow.clocks`,
`uow.projection`, `uow.changes`, `uow.settings`, `uow.alert_groups`, `uow.numbers`,
`uow.surveys`, `uow.outages`), and
records the events of its aggregates with `uow.record` (`store_new` and `store_change` below
do it together with the row and its history). The unit of work writes them to the outbox once,
at commit, after the service's reactions (`application/reactions.py`).

Each repository is a `Protocol`: `IncidentUnitOfWork` implements them over the adapter modules
on its one connection; a unit test gives in-memory ones (`tests/unit/fakes_incident.py`).
Every repository is scoped to the unit of work's tenant.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

import asyncpg

from services.incident.adapters import alerts as alert_store
from services.incident.adapters import changes as change_store
from services.incident.adapters import outages as outage_store
from services.incident.adapters import problems as problem_store
from services.incident.adapters import projections, repository
from services.incident.adapters import requests as request_store
from services.incident.adapters import settings as settings_store
from services.incident.adapters import sla as clock_store
from services.incident.adapters import surveys as survey_store
from services.incident.adapters.alerts import AlertGroup, Claimed
from services.incident.adapters.changes import ImplementedChange
from services.incident.adapters.outages import OutageFilter
from services.incident.adapters.problems import ProblemFilter, TrendState
from services.incident.adapters.projections import PolicySnapshot, ProjectedCi, ProjectedService
from services.incident.adapters.repository import IncidentFilter
from services.incident.adapters.requests import RequestFilter
from services.incident.adapters.settings import TenantSettings
from services.incident.adapters.sla import ClockRow
from services.incident.adapters.surveys import SurveyFilter
from services.incident.domain.incident import Change, Incident
from services.incident.domain.outage import Outage
from services.incident.domain.problem import Problem, ProblemChange
from services.incident.domain.request import Change as RequestChange
from services.incident.domain.request import ServiceRequest
from services.incident.domain.survey import Survey
from services.incident.domain.workflow import Approval
from services.incident.metrics import IncidentMetrics
from shared.context import RequestContext
from shared.db import Connection
from shared.events.catalogue import EventPayload, RecordKind
from shared.records.record import VersionedRecord
from shared.uow import OnTransaction, PostgresUnitOfWork, Reactions, TransactionStore, UnitOfWork

# --- what a use case may ask of each repository ----------------------------------------------


class Incidents(Protocol):
    """The tenant's incidents, their history, work notes and auto-close queue."""

    async def get(self, incident_id: uuid.UUID, *, lock: bool = False) -> Incident | None: ...
    async def insert(self, incident: Incident) -> None: ...
    async def save(self, incident: Incident) -> None: ...
    async def record_history(
        self, incident: Incident, *, action: str, changes: dict[str, Any]
    ) -> None: ...
    async def add_work_note(
        self, incident_id: uuid.UUID, *, author: str, note: str, at: datetime
    ) -> dict[str, Any]: ...
    async def queue_auto_close(self, incident_id: uuid.UUID, due_at: datetime) -> None: ...
    async def unqueue_auto_close(self, incident_id: uuid.UUID) -> None: ...
    async def history(self, incident_id: uuid.UUID) -> list[dict[str, Any]]: ...
    async def search(
        self, where: IncidentFilter, *, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[Incident]: ...


class Requests(Protocol):
    """The tenant's service requests, their history and approvals."""

    async def get(self, request_id: uuid.UUID, *, lock: bool = False) -> ServiceRequest | None: ...
    async def insert(self, request: ServiceRequest) -> None: ...
    async def save(self, request: ServiceRequest) -> None: ...
    async def record_history(
        self, request: ServiceRequest, *, action: str, changes: dict[str, Any]
    ) -> None: ...
    async def add_approval(self, request: ServiceRequest, approval: Approval) -> None: ...
    async def approvals(
        self, request_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, list[Approval]]: ...
    async def history(self, request_id: uuid.UUID) -> list[dict[str, Any]]: ...
    async def search(
        self, where: RequestFilter, *, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[ServiceRequest]: ...


class Problems(Protocol):
    """The tenant's problems (known errors among them) and their history."""

    async def get(self, problem_id: uuid.UUID, *, lock: bool = False) -> Problem | None: ...
    async def insert(self, problem: Problem) -> None: ...
    async def save(self, problem: Problem) -> None: ...
    async def link(self, problem: Problem, incidents: tuple[uuid.UUID, ...]) -> None: ...
    async def state_of(self, problem_id: uuid.UUID) -> str | None: ...
    async def record_history(
        self, problem: Problem, *, action: str, changes: dict[str, Any]
    ) -> None: ...
    async def history(self, problem_id: uuid.UUID) -> list[dict[str, Any]]: ...
    async def search(
        self, where: ProblemFilter, *, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[Problem]: ...
    async def newest_known_error(
        self, ci_id: uuid.UUID | None, services: tuple[str, ...]
    ) -> tuple[uuid.UUID, str] | None: ...


class Trends(Protocol):
    """Incident trends per CI or service, and the suggestions made of them."""

    async def lock(self, keys: list[tuple[str, str]]) -> None: ...
    async def states(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], TrendState]: ...
    async def recent_on_ci(
        self, ci_id: uuid.UUID, *, since: datetime, limit: int
    ) -> list[uuid.UUID]: ...
    async def recent_on_service(
        self, service: str, *, since: datetime, limit: int
    ) -> list[uuid.UUID]: ...
    async def mark_suggested(
        self,
        basis: str,
        key: str,
        *,
        at: datetime,
        window_start: datetime,
        incidents: list[uuid.UUID],
    ) -> int | None: ...
    async def set_problem(self, basis: str, key: str, problem_id: uuid.UUID) -> None: ...


class Clocks(Protocol):
    """The SLA clocks of the tenant's incidents and requests."""

    async def load(
        self, record: RecordKind, record_id: str, *, for_update: bool = False
    ) -> list[ClockRow]: ...
    async def insert(self, rows: Sequence[ClockRow]) -> None: ...
    async def save(self, rows: Sequence[ClockRow]) -> None: ...


class Projection(Protocol):
    """This service's projection of the config service's CIs, services and SLA policies."""

    async def ci_by_id(self, ci_id: str) -> ProjectedCi | None: ...
    async def ci_by_name(self, name: str) -> ProjectedCi | None: ...
    async def ci_by_external_id(self, source: str, external_id: str) -> ProjectedCi | None: ...
    async def service_by_id(self, service_id: str) -> ProjectedService | None: ...
    async def service_by_name(self, name: str) -> ProjectedService | None: ...
    async def services_of_ci(self, ci_id: str) -> list[str]: ...
    async def policy_for(self, services: Sequence[str]) -> PolicySnapshot | None: ...


class Changes(Protocol):
    """Changes on CIs, as the config service (CI writes) and the change service (implemented)
    announced them."""

    async def lock_ci(self, ci_id: uuid.UUID, *, shared: bool) -> None: ...
    async def recent_change(
        self, ci_id: uuid.UUID, at: datetime, window_seconds: int
    ) -> ImplementedChange | None: ...
    async def record(
        self, change: ImplementedChange, title: str | None, outcome: str | None, now: datetime
    ) -> tuple[ImplementedChange | None, ImplementedChange]: ...
    async def implemented_at(self, change_id: str) -> datetime | None: ...
    async def incidents_suspecting(
        self,
        change: ImplementedChange,
        window_seconds: int,
        *,
        known: ImplementedChange | None = None,
    ) -> list[uuid.UUID]: ...


class Settings(Protocol):
    """The tenant's incident settings."""

    async def get(self) -> TenantSettings: ...
    async def lock(self) -> None: ...
    async def write(self, settings: TenantSettings, *, at: datetime, actor: str) -> None: ...


class AlertGroups(Protocol):
    """Alert groups (source, dedup key) and the incident each one has."""

    async def claim(self, source: str, dedup_key: str, *, at: datetime) -> Claimed: ...
    async def forget(self, source: str, dedup_key: str) -> None: ...
    async def record(
        self,
        group: AlertGroup,
        *,
        incident_id: uuid.UUID,
        opened: bool,
        alerts: int,
        deduplicated: int,
        action: str,
        outcome: str,
        at: datetime,
    ) -> None: ...


class Numbers(Protocol):
    """Per-tenant record numbers (INC, REQ, PRB) taken inside the transaction."""

    async def next(self, kind: str) -> int: ...


class Surveys(Protocol):
    """The satisfaction surveys of the tenant's resolved incidents and fulfilled requests."""

    async def get(
        self, record: RecordKind, record_id: uuid.UUID, *, lock: bool = False
    ) -> Survey | None: ...
    async def insert(self, survey: Survey) -> bool: ...
    async def save_answer(self, survey: Survey) -> None: ...
    async def search(
        self, where: SurveyFilter, *, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[Survey]: ...


class Outages(Protocol):
    """The tenant's outage records."""

    async def get(self, outage_id: uuid.UUID, *, lock: bool = False) -> Outage | None: ...
    async def open_of_incident(self, incident_id: uuid.UUID) -> list[Outage]: ...
    async def insert(self, outage: Outage) -> None: ...
    async def save(self, outage: Outage) -> None: ...
    async def search(
        self, where: OutageFilter, *, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[Outage]: ...


class IncidentWork(UnitOfWork):
    """What the incident use cases work on: the repositories (real or fake) and the metrics."""

    incidents: Incidents
    requests: Requests
    problems: Problems
    trends: Trends
    clocks: Clocks
    projection: Projection
    changes: Changes
    settings: Settings
    alert_groups: AlertGroups
    numbers: Numbers
    surveys: Surveys
    outages: Outages
    metrics: IncidentMetrics | None
    # The records as this unit of work last stored them, by event subject (their id): what a
    # reaction reads of the record whose event it reacts to, and what a use case answers with
    # once the reactions have run.
    latest: dict[str, Incident | Problem | ServiceRequest]

    def latest_incident(self, incident_id: uuid.UUID | str) -> Incident | None:
        """The incident as this unit of work stored it last, if it stored it."""
        found = self.latest.get(str(incident_id))
        return found if isinstance(found, Incident) else None

    def latest_request(self, request_id: uuid.UUID | str) -> ServiceRequest | None:
        """The request as this unit of work stored it last, if it stored it."""
        found = self.latest.get(str(request_id))
        return found if isinstance(found, ServiceRequest) else None


# --- storing a record's change: row, history, events -----------------------------------------


R = TypeVar("R", Incident, Problem, ServiceRequest)
R_contra = TypeVar("R_contra", bound=VersionedRecord, contravariant=True)


class RecordStore(Protocol[R_contra]):
    """What storing any of the three records needs of its repository."""

    async def insert(self, record: R_contra, /) -> None: ...
    async def save(self, record: R_contra, /) -> None: ...
    async def record_history(
        self, record: R_contra, /, *, action: str, changes: dict[str, Any]
    ) -> None: ...


async def _store(
    uow: IncidentWork,
    store: RecordStore[R],
    record: R,
    events: Sequence[EventPayload],
    *,
    action: str,
    changes: dict[str, Any] | None,
) -> R:
    """A record's new row (`changes` None) or its saved change, its history entry, its events."""
    if changes is None:
        await store.insert(record)
    else:
        await store.save(record)
    await store.record_history(record, action=action, changes=changes or {})
    uow.latest[str(record.id)] = record
    uow.record(str(record.id), record.version, events)
    return record


async def store_new_incident(
    uow: IncidentWork, incident: Incident, events: Sequence[EventPayload]
) -> None:
    """A new incident, its first history entry, and its events."""
    await _store(uow, uow.incidents, incident, events, action="created", changes=None)


async def store_change(uow: IncidentWork, change: Change, action: str) -> Incident:
    """An incident's change: the row, its history entry, and its events."""
    return await _store(
        uow, uow.incidents, change.incident, change.events, action=action, changes=change.changes
    )


async def store_new_problem(
    uow: IncidentWork, problem: Problem, events: Sequence[EventPayload]
) -> None:
    """A new problem, its first history entry, and its events."""
    await _store(uow, uow.problems, problem, events, action="created", changes=None)


async def store_problem_change(uow: IncidentWork, change: ProblemChange, action: str) -> Problem:
    """A problem's change: the row, its history entry, and its events."""
    return await _store(
        uow, uow.problems, change.problem, change.events, action=action, changes=change.changes
    )


async def store_new_request(
    uow: IncidentWork, request: ServiceRequest, events: Sequence[EventPayload]
) -> None:
    """A new service request, its first history entry, and its events."""
    await _store(uow, uow.requests, request, events, action="submitted", changes=None)


async def store_request_change(
    uow: IncidentWork, change: RequestChange, action: str
) -> ServiceRequest:
    """A request's change: the row, its history entry, its approval if any, and its events."""
    request = await _store(
        uow, uow.requests, change.request, change.events, action=action, changes=change.changes
    )
    if change.approval is not None:
        await uow.requests.add_approval(request, change.approval)
    return request


# --- the real repositories: the adapter modules on the unit of work's connection ----------------


class _Incidents(TransactionStore):
    async def get(self, incident_id: uuid.UUID, *, lock: bool = False) -> Incident | None:
        return await repository.get(self._conn, self._tenant, incident_id, lock=lock)

    async def insert(self, incident: Incident) -> None:
        await repository.insert(self._conn, incident)

    async def save(self, incident: Incident) -> None:
        await repository.save(self._conn, incident)

    async def record_history(
        self, incident: Incident, *, action: str, changes: dict[str, Any]
    ) -> None:
        await repository.record_history(self._conn, incident, action=action, changes=changes)

    async def add_work_note(
        self, incident_id: uuid.UUID, *, author: str, note: str, at: datetime
    ) -> dict[str, Any]:
        return await repository.add_work_note(
            self._conn, self._tenant, incident_id, author=author, note=note, at=at
        )

    async def queue_auto_close(self, incident_id: uuid.UUID, due_at: datetime) -> None:
        await repository.queue_auto_close(self._conn, self._tenant, incident_id, due_at)

    async def unqueue_auto_close(self, incident_id: uuid.UUID) -> None:
        await repository.unqueue_auto_close(self._conn, self._tenant, incident_id)

    async def history(self, incident_id: uuid.UUID) -> list[dict[str, Any]]:
        return await repository.history(self._conn, self._tenant, incident_id)

    async def search(
        self, where: IncidentFilter, *, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[Incident]:
        return await repository.search(self._conn, self._tenant, where, after=after, limit=limit)


class _Requests(TransactionStore):
    async def get(self, request_id: uuid.UUID, *, lock: bool = False) -> ServiceRequest | None:
        return await request_store.get(self._conn, self._tenant, request_id, lock=lock)

    async def insert(self, request: ServiceRequest) -> None:
        await request_store.insert(self._conn, request)

    async def save(self, request: ServiceRequest) -> None:
        await request_store.save(self._conn, request)

    async def record_history(
        self, request: ServiceRequest, *, action: str, changes: dict[str, Any]
    ) -> None:
        await request_store.record_history(self._conn, request, action=action, changes=changes)

    async def add_approval(self, request: ServiceRequest, approval: Approval) -> None:
        await request_store.add_approval(self._conn, request, approval)

    async def approvals(self, request_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[Approval]]:
        return await request_store.approvals(self._conn, self._tenant, request_ids)

    async def history(self, request_id: uuid.UUID) -> list[dict[str, Any]]:
        return await request_store.history(self._conn, self._tenant, request_id)

    async def search(
        self, where: RequestFilter, *, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[ServiceRequest]:
        return await request_store.search(self._conn, self._tenant, where, after=after, limit=limit)


class _Problems(TransactionStore):
    async def get(self, problem_id: uuid.UUID, *, lock: bool = False) -> Problem | None:
        return await problem_store.get(self._conn, self._tenant, problem_id, lock=lock)

    async def insert(self, problem: Problem) -> None:
        await problem_store.insert(self._conn, problem)

    async def save(self, problem: Problem) -> None:
        await problem_store.save(self._conn, problem)

    async def link(self, problem: Problem, incidents: tuple[uuid.UUID, ...]) -> None:
        await problem_store.link(self._conn, problem, incidents)

    async def state_of(self, problem_id: uuid.UUID) -> str | None:
        return await problem_store.problem_state(self._conn, self._tenant, problem_id)

    async def record_history(
        self, problem: Problem, *, action: str, changes: dict[str, Any]
    ) -> None:
        await problem_store.record_history(self._conn, problem, action=action, changes=changes)

    async def history(self, problem_id: uuid.UUID) -> list[dict[str, Any]]:
        return await problem_store.history(self._conn, self._tenant, problem_id)

    async def search(
        self, where: ProblemFilter, *, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[Problem]:
        return await problem_store.search(self._conn, self._tenant, where, after=after, limit=limit)

    async def newest_known_error(
        self, ci_id: uuid.UUID | None, services: tuple[str, ...]
    ) -> tuple[uuid.UUID, str] | None:
        return await problem_store.newest_known_error(self._conn, self._tenant, ci_id, services)


class _Trends(TransactionStore):
    async def lock(self, keys: list[tuple[str, str]]) -> None:
        await problem_store.lock_trends(self._conn, self._tenant, keys)

    async def states(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], TrendState]:
        return await problem_store.trend_states(self._conn, self._tenant, keys)

    async def recent_on_ci(
        self, ci_id: uuid.UUID, *, since: datetime, limit: int
    ) -> list[uuid.UUID]:
        return await problem_store.recent_on_ci(
            self._conn, self._tenant, ci_id, since=since, limit=limit
        )

    async def recent_on_service(
        self, service: str, *, since: datetime, limit: int
    ) -> list[uuid.UUID]:
        return await problem_store.recent_on_service(
            self._conn, self._tenant, service, since=since, limit=limit
        )

    async def mark_suggested(
        self,
        basis: str,
        key: str,
        *,
        at: datetime,
        window_start: datetime,
        incidents: list[uuid.UUID],
    ) -> int | None:
        return await problem_store.mark_suggested(
            self._conn,
            self._tenant,
            basis,
            key,
            at=at,
            window_start=window_start,
            incidents=incidents,
        )

    async def set_problem(self, basis: str, key: str, problem_id: uuid.UUID) -> None:
        await problem_store.set_trend_problem(self._conn, self._tenant, basis, key, problem_id)


class _Clocks(TransactionStore):
    async def load(
        self, record: RecordKind, record_id: str, *, for_update: bool = False
    ) -> list[ClockRow]:
        found = await clock_store.load(
            self._conn, self._tenant, record, record_id, for_update=for_update
        )
        return [clock_store.row_from(r) for r in found]

    async def insert(self, rows: Sequence[ClockRow]) -> None:
        await clock_store.insert(self._conn, rows)

    async def save(self, rows: Sequence[ClockRow]) -> None:
        await clock_store.save(self._conn, rows)


class _Projection(TransactionStore):
    def __init__(self, uow: OnTransaction) -> None:
        super().__init__(uow)
        # The policy of a set of services, once per unit of work: a use case and the reaction
        # that starts the record's clocks ask for the same one.
        self._policies: dict[tuple[str, ...], PolicySnapshot | None] = {}

    async def ci_by_id(self, ci_id: str) -> ProjectedCi | None:
        return await projections.ci_by_id(self._conn, self._tenant, ci_id)

    async def ci_by_name(self, name: str) -> ProjectedCi | None:
        return await projections.ci_by_name(self._conn, self._tenant, name)

    async def ci_by_external_id(self, source: str, external_id: str) -> ProjectedCi | None:
        return await projections.ci_by_external_id(self._conn, self._tenant, source, external_id)

    async def service_by_id(self, service_id: str) -> ProjectedService | None:
        return await projections.service_by_id(self._conn, self._tenant, service_id)

    async def service_by_name(self, name: str) -> ProjectedService | None:
        return await projections.service_by_name(self._conn, self._tenant, name)

    async def services_of_ci(self, ci_id: str) -> list[str]:
        return await projections.services_of_ci(self._conn, self._tenant, ci_id)

    async def policy_for(self, services: Sequence[str]) -> PolicySnapshot | None:
        key = tuple(services)
        if key not in self._policies:
            self._policies[key] = await projections.policy_for(self._conn, self._tenant, key)
        return self._policies[key]


class _Changes(TransactionStore):
    async def lock_ci(self, ci_id: uuid.UUID, *, shared: bool) -> None:
        await change_store.lock_ci(self._conn, self._tenant, ci_id, shared=shared)

    async def recent_change(
        self, ci_id: uuid.UUID, at: datetime, window_seconds: int
    ) -> ImplementedChange | None:
        return await change_store.recent_change(self._conn, self._tenant, ci_id, at, window_seconds)

    async def record(
        self, change: ImplementedChange, title: str | None, outcome: str | None, now: datetime
    ) -> tuple[ImplementedChange | None, ImplementedChange]:
        return await change_store.record(self._conn, self._tenant, change, title, outcome, now)

    async def implemented_at(self, change_id: str) -> datetime | None:
        return await change_store.implemented_at(self._conn, self._tenant, change_id)

    async def incidents_suspecting(
        self,
        change: ImplementedChange,
        window_seconds: int,
        *,
        known: ImplementedChange | None = None,
    ) -> list[uuid.UUID]:
        return await change_store.incidents_suspecting(
            self._conn, self._tenant, change, window_seconds, known=known
        )


class _Settings(TransactionStore):
    # Read once per unit of work: every use case and reaction in it sees the same settings.
    _read: TenantSettings | None = None

    async def get(self) -> TenantSettings:
        if self._read is None:
            self._read = await settings_store.read(self._conn, self._tenant)
        return self._read

    async def lock(self) -> None:
        await settings_store.lock(self._conn, self._tenant)

    async def write(self, settings: TenantSettings, *, at: datetime, actor: str) -> None:
        await settings_store.write(self._conn, self._tenant, settings, at=at, actor=actor)
        self._read = None


class _AlertGroups(TransactionStore):
    async def claim(self, source: str, dedup_key: str, *, at: datetime) -> Claimed:
        return await alert_store.claim(self._conn, self._tenant, source, dedup_key, at=at)

    async def forget(self, source: str, dedup_key: str) -> None:
        await alert_store.forget(self._conn, self._tenant, source, dedup_key)

    async def record(
        self,
        group: AlertGroup,
        *,
        incident_id: uuid.UUID,
        opened: bool,
        alerts: int,
        deduplicated: int,
        action: str,
        outcome: str,
        at: datetime,
    ) -> None:
        await alert_store.record(
            self._conn,
            group,
            incident_id=incident_id,
            opened=opened,
            alerts=alerts,
            deduplicated=deduplicated,
            action=action,
            outcome=outcome,
            at=at,
        )


class _Numbers(TransactionStore):
    async def next(self, kind: str) -> int:
        return await repository.next_number(self._conn, self._tenant, kind)


class _Surveys(TransactionStore):
    async def get(
        self, record: RecordKind, record_id: uuid.UUID, *, lock: bool = False
    ) -> Survey | None:
        return await survey_store.get(self._conn, self._tenant, record, record_id, lock=lock)

    async def insert(self, survey: Survey) -> bool:
        return await survey_store.insert(self._conn, survey)

    async def save_answer(self, survey: Survey) -> None:
        await survey_store.save_answer(self._conn, survey)

    async def search(
        self, where: SurveyFilter, *, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[Survey]:
        return await survey_store.search(self._conn, self._tenant, where, after=after, limit=limit)


class _Outages(TransactionStore):
    async def get(self, outage_id: uuid.UUID, *, lock: bool = False) -> Outage | None:
        return await outage_store.get(self._conn, self._tenant, outage_id, lock=lock)

    async def open_of_incident(self, incident_id: uuid.UUID) -> list[Outage]:
        return await outage_store.open_of_incident(self._conn, self._tenant, incident_id)

    async def insert(self, outage: Outage) -> None:
        await outage_store.insert(self._conn, outage)

    async def save(self, outage: Outage) -> None:
        await outage_store.save(self._conn, outage)

    async def search(
        self, where: OutageFilter, *, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[Outage]:
        return await outage_store.search(self._conn, self._tenant, where, after=after, limit=limit)


class IncidentUnitOfWork(PostgresUnitOfWork, IncidentWork):
    """The incident service's unit of work on PostgreSQL.

    On a pool, it is one tenant transaction (`PostgresUnitOfWork`). `joining(conn, ...)` runs
    one inside a transaction the caller already holds (a consumer's, a background job's): it
    writes its events at the end of its block and leaves the commit, or the rollback, to the
    caller.
    """

    def __init__(
        self,
        pool: asyncpg.Pool | None,
        context: RequestContext,
        reactions: Reactions[Any] | None = None,
        *,
        metrics: IncidentMetrics | None = None,
        connection: Connection | None = None,
    ) -> None:
        super().__init__(pool, context, reactions)  # type: ignore[arg-type]
        self._joined = connection
        self.metrics = metrics
        self.latest = {}
        self.incidents = _Incidents(self)
        self.requests = _Requests(self)
        self.problems = _Problems(self)
        self.trends = _Trends(self)
        self.clocks = _Clocks(self)
        self.projection = _Projection(self)
        self.changes = _Changes(self)
        self.settings = _Settings(self)
        self.alert_groups = _AlertGroups(self)
        self.numbers = _Numbers(self)
        self.surveys = _Surveys(self)
        self.outages = _Outages(self)

    @classmethod
    def joining(
        cls,
        conn: Connection,
        context: RequestContext,
        reactions: Reactions[Any] | None = None,
        *,
        metrics: IncidentMetrics | None = None,
    ) -> Self:
        """A unit of work inside the caller's transaction on `conn` (whose tenant it must set)."""
        return cls(None, context, reactions, metrics=metrics, connection=conn)

    @property
    def conn(self) -> Connection:
        """The transaction's connection."""
        if self._joined is not None:
            return self._joined
        return super().conn

    async def __aenter__(self) -> Self:
        if self._joined is not None:
            return self
        return await super().__aenter__()

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._joined is None:
            await super().__aexit__(kind, exc, tb)
        elif kind is None and not self._committed:
            await self.commit()


__all__ = [
    "AlertGroups",
    "Changes",
    "Clocks",
    "IncidentUnitOfWork",
    "IncidentWork",
    "Incidents",
    "Numbers",
    "Outages",
    "Problems",
    "Projection",
    "Requests",
    "Settings",
    "Surveys",
    "TenantSettings",
    "Trends",
    "store_change",
    "store_new_incident",
    "store_new_problem",
    "store_new_request",
    "store_problem_change",
    "store_request_change",
]
