"""An in-memory unit of work for the incident use cases: every repository a dict, the events a list.

`FakeIncidentUnitOfWork` implements the repository protocols of
`services/incident/application/uow.py` as plainly as the SQL they stand for, with the
service's real reactions (clocks, trends) unless told otherwise. A test drives a use case in
`async with uow:` and asserts on `uow.written` (the events, in order, as the outbox would get
them), the repositories' contents, and the typed error of a refusal.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry

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
from services.incident.application.reactions import INCIDENT_REACTIONS
from services.incident.application.uow import IncidentWork
from services.incident.domain.incident import Incident
from services.incident.domain.outage import Outage
from services.incident.domain.problem import Problem
from services.incident.domain.request import ServiceRequest
from services.incident.domain.survey import Survey
from services.incident.domain.workflow import Approval
from services.incident.metrics import IncidentMetrics
from shared.calendars import CalendarSpec
from shared.context import RequestContext
from shared.events.catalogue import EventPayload, RecordKind, SlaTargetV1
from shared.uow import Reactions, Recorded

TENANT = "tenant-a"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def context(actor: str = "alice", roles: frozenset[str] = frozenset()) -> RequestContext:
    return RequestContext(TENANT, actor, "corr-1", roles)


def gold_policy(name: str = "gold", **changes: Any) -> PolicySnapshot:
    """A 24x7 policy: P3 answered in 300 s and resolved in 3600 s."""
    policy = PolicySnapshot(
        name=name,
        version=1,
        targets={
            "P1": SlaTargetV1(response_seconds=60, resolution_seconds=1200),
            "P2": SlaTargetV1(response_seconds=120, resolution_seconds=1800),
            "P3": SlaTargetV1(response_seconds=300, resolution_seconds=3600),
            "P4": SlaTargetV1(response_seconds=600, resolution_seconds=7200),
            "P5": SlaTargetV1(response_seconds=900, resolution_seconds=14400),
        },
        calendar_name="24x7",
        calendar=CalendarSpec.always_open(),
        pause_on=("awaiting_customer", "awaiting_approval"),
        warning_threshold=0.75,
        default=True,
    )
    return replace(policy, **changes)


def a_ci(name: str = "db-1", ci_id: str | None = None, **external: str) -> ProjectedCi:
    return ProjectedCi(
        id=ci_id or str(uuid.uuid4()),
        ci_class="server",
        name=name,
        status="operational",
        owner_team=None,
        criticality=2,
        external_ids=external,
        version=1,
        updated_at=NOW,
    )


def a_service(name: str = "checkout", service_id: str | None = None) -> ProjectedService:
    return ProjectedService(
        id=service_id or f"svc-{name}",
        name=name,
        status="live",
        criticality=2,
        owner=None,
        customer=None,
        availability_target=None,
        sla_policy=None,
        version=1,
    )


class FakeIncidents:
    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, Incident] = {}
        self.history_rows: list[tuple[uuid.UUID, int, str, dict[str, Any]]] = []
        self.notes: list[tuple[uuid.UUID, str, str]] = []
        self.auto_close: dict[uuid.UUID, datetime] = {}
        self.locked: list[uuid.UUID] = []

    async def get(self, incident_id: uuid.UUID, *, lock: bool = False) -> Incident | None:
        if lock:
            self.locked.append(incident_id)
        return self.rows.get(incident_id)

    async def insert(self, incident: Incident) -> None:
        assert incident.id not in self.rows, "inserted twice"
        self.rows[incident.id] = incident

    async def save(self, incident: Incident) -> None:
        assert self.rows[incident.id].version == incident.version - 1, "a version skipped"
        self.rows[incident.id] = incident

    async def record_history(
        self, incident: Incident, *, action: str, changes: dict[str, Any]
    ) -> None:
        self.history_rows.append((incident.id, incident.version, action, changes))

    async def add_work_note(
        self, incident_id: uuid.UUID, *, author: str, note: str, at: datetime
    ) -> dict[str, Any]:
        self.notes.append((incident_id, author, note))
        return {"author": author, "note": note, "at": at.isoformat()}

    async def queue_auto_close(self, incident_id: uuid.UUID, due_at: datetime) -> None:
        self.auto_close[incident_id] = due_at

    async def unqueue_auto_close(self, incident_id: uuid.UUID) -> None:
        self.auto_close.pop(incident_id, None)

    async def history(self, incident_id: uuid.UUID) -> list[dict[str, Any]]:
        return [
            {"version": v, "action": a, "changes": c}
            for i, v, a, c in self.history_rows
            if i == incident_id
        ]

    async def search(
        self, where: IncidentFilter, *, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[Incident]:
        return sorted(self.rows.values(), key=lambda i: (i.created_at, i.id), reverse=True)[:limit]


class FakeRequests:
    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, ServiceRequest] = {}
        self.history_rows: list[tuple[uuid.UUID, int, str]] = []
        self.decisions: dict[uuid.UUID, list[Approval]] = defaultdict(list)

    async def get(self, request_id: uuid.UUID, *, lock: bool = False) -> ServiceRequest | None:
        return self.rows.get(request_id)

    async def insert(self, request: ServiceRequest) -> None:
        self.rows[request.id] = request

    async def save(self, request: ServiceRequest) -> None:
        self.rows[request.id] = request

    async def record_history(
        self, request: ServiceRequest, *, action: str, changes: dict[str, Any]
    ) -> None:
        self.history_rows.append((request.id, request.version, action))

    async def add_approval(self, request: ServiceRequest, approval: Approval) -> None:
        self.decisions[request.id].append(approval)

    async def approvals(self, request_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[Approval]]:
        return {i: list(self.decisions.get(i, [])) for i in request_ids}

    async def history(self, request_id: uuid.UUID) -> list[dict[str, Any]]:
        return [{"version": v, "action": a} for i, v, a in self.history_rows if i == request_id]

    async def search(
        self, where: RequestFilter, *, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[ServiceRequest]:
        found = [
            r for r in self.rows.values() if where.involving is None or r.involves(where.involving)
        ]
        return sorted(found, key=lambda r: (r.created_at, r.id), reverse=True)[:limit]


class FakeProblems:
    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, Problem] = {}
        self.history_rows: list[tuple[uuid.UUID, int, str]] = []
        self.links: list[tuple[uuid.UUID, uuid.UUID]] = []

    async def get(self, problem_id: uuid.UUID, *, lock: bool = False) -> Problem | None:
        return self.rows.get(problem_id)

    async def insert(self, problem: Problem) -> None:
        self.rows[problem.id] = problem

    async def save(self, problem: Problem) -> None:
        self.rows[problem.id] = problem

    async def link(self, problem: Problem, incidents: tuple[uuid.UUID, ...]) -> None:
        self.links.extend((problem.id, i) for i in incidents)

    async def state_of(self, problem_id: uuid.UUID) -> str | None:
        found = self.rows.get(problem_id)
        return found.state if found else None

    async def record_history(
        self, problem: Problem, *, action: str, changes: dict[str, Any]
    ) -> None:
        self.history_rows.append((problem.id, problem.version, action))

    async def history(self, problem_id: uuid.UUID) -> list[dict[str, Any]]:
        return [{"version": v, "action": a} for i, v, a in self.history_rows if i == problem_id]

    async def search(
        self, where: ProblemFilter, *, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[Problem]:
        return sorted(self.rows.values(), key=lambda p: (p.created_at, p.id), reverse=True)[:limit]

    async def newest_known_error(
        self, ci_id: uuid.UUID | None, services: tuple[str, ...]
    ) -> tuple[uuid.UUID, str] | None:
        known = sorted(
            (p for p in self.rows.values() if p.state == "known_error" and p.workaround),
            key=lambda p: p.updated_at,
            reverse=True,
        )
        for matches in (
            lambda p: ci_id is not None and p.ci_id == ci_id,
            lambda p: p.service is not None and p.service in services,
        ):
            for problem in known:
                if matches(problem):
                    assert problem.workaround is not None
                    return problem.id, problem.workaround
        return None


class FakeTrends:
    """Counts the incidents of `FakeIncidents` (not cancelled, not explained by a problem)."""

    def __init__(self, incidents: FakeIncidents, problems: FakeProblems) -> None:
        self._incidents = incidents
        self._problems = problems
        self.rows: dict[tuple[str, str], tuple[int, datetime, uuid.UUID | None]] = {}
        self.locked: list[tuple[str, str]] = []

    async def lock(self, keys: list[tuple[str, str]]) -> None:
        self.locked.extend(keys)

    async def states(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], TrendState]:
        found = {}
        for key in keys:
            if key in self.rows:
                count, at, problem_id = self.rows[key]
                state = await self._problems.state_of(problem_id) if problem_id else None
                found[key] = TrendState(count, at, state)
        return found

    def _counted(self, since: datetime, limit: int, on: Any) -> list[uuid.UUID]:
        found = [
            i
            for i in self._incidents.rows.values()
            if on(i) and i.created_at > since and i.state != "cancelled" and i.problem_id is None
        ]
        found.sort(key=lambda i: i.created_at, reverse=True)
        return [i.id for i in found[:limit]]

    async def recent_on_ci(
        self, ci_id: uuid.UUID, *, since: datetime, limit: int
    ) -> list[uuid.UUID]:
        return self._counted(since, limit, lambda i: i.ci_id == ci_id)

    async def recent_on_service(
        self, service: str, *, since: datetime, limit: int
    ) -> list[uuid.UUID]:
        return self._counted(since, limit, lambda i: service in i.services)

    async def mark_suggested(
        self,
        basis: str,
        key: str,
        *,
        at: datetime,
        window_start: datetime,
        incidents: list[uuid.UUID],
    ) -> int | None:
        count, last, _ = self.rows.get((basis, key), (0, datetime.min.replace(tzinfo=UTC), None))
        if last > window_start:
            return None
        self.rows[basis, key] = (count + 1, at, None)
        return count + 1

    async def set_problem(self, basis: str, key: str, problem_id: uuid.UUID) -> None:
        count, at, _ = self.rows[basis, key]
        self.rows[basis, key] = (count, at, problem_id)


class FakeClocks:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], dict[str, ClockRow]] = defaultdict(dict)

    async def load(
        self, record: RecordKind, record_id: str, *, for_update: bool = False
    ) -> list[ClockRow]:
        found = self.rows.get((record, record_id), {})
        return [found[k] for k in ("response", "resolution") if k in found]

    async def insert(self, rows: Sequence[ClockRow]) -> None:
        for row in rows:
            self.rows[row.record, row.record_id].setdefault(row.kind, row)

    async def save(self, rows: Sequence[ClockRow]) -> None:
        for row in rows:
            self.rows[row.record, row.record_id][row.kind] = row

    def of(self, record: str, record_id: uuid.UUID) -> dict[str, ClockRow]:
        """A record's clocks by kind (what a test asserts on)."""
        return dict(self.rows.get((record, str(record_id)), {}))


@dataclass
class FakeProjection:
    cis: dict[str, ProjectedCi] = field(default_factory=dict)
    services: dict[str, ProjectedService] = field(default_factory=dict)
    ci_services: dict[str, list[str]] = field(default_factory=dict)
    # The policy of every set of services (a test wanting more detail sets `by_service`).
    policy: PolicySnapshot | None = None
    by_service: dict[str, PolicySnapshot] = field(default_factory=dict)

    async def ci_by_id(self, ci_id: str) -> ProjectedCi | None:
        return self.cis.get(ci_id)

    async def ci_by_name(self, name: str) -> ProjectedCi | None:
        return next((c for c in self.cis.values() if c.name == name), None)

    async def ci_by_external_id(self, source: str, external_id: str) -> ProjectedCi | None:
        return next(
            (c for c in self.cis.values() if c.external_ids.get(source) == external_id), None
        )

    async def service_by_id(self, service_id: str) -> ProjectedService | None:
        return self.services.get(service_id)

    async def service_by_name(self, name: str) -> ProjectedService | None:
        return next((s for s in self.services.values() if s.name == name), None)

    async def services_of_ci(self, ci_id: str) -> list[str]:
        return list(self.ci_services.get(ci_id, []))

    async def policy_for(self, services: Sequence[str]) -> PolicySnapshot | None:
        for service in services:
            if service in self.by_service:
                return self.by_service[service]
        return self.policy


class FakeChanges:
    def __init__(self, incidents: FakeIncidents) -> None:
        self._incidents = incidents
        self.recorded: dict[tuple[str, uuid.UUID], ImplementedChange] = {}
        self.locks: list[tuple[uuid.UUID, bool]] = []

    async def lock_ci(self, ci_id: uuid.UUID, *, shared: bool) -> None:
        self.locks.append((ci_id, shared))

    async def recent_change(
        self, ci_id: uuid.UUID, at: datetime, window_seconds: int
    ) -> ImplementedChange | None:
        found = [
            c
            for c in self.recorded.values()
            if c.ci_id == ci_id
            and c.since <= at
            and c.implemented_at >= at - timedelta(seconds=window_seconds)
        ]
        return max(found, key=lambda c: c.implemented_at, default=None)

    async def record(
        self, change: ImplementedChange, title: str | None, outcome: str | None, now: datetime
    ) -> tuple[ImplementedChange | None, ImplementedChange]:
        key = (change.change_id, change.ci_id)
        before = self.recorded.get(key)
        after = change.spanning(before or change)
        self.recorded[key] = after
        return before, after

    async def implemented_at(self, change_id: str) -> datetime | None:
        return max(
            (c.implemented_at for c in self.recorded.values() if c.change_id == change_id),
            default=None,
        )

    async def incidents_suspecting(
        self,
        change: ImplementedChange,
        window_seconds: int,
        *,
        known: ImplementedChange | None = None,
    ) -> list[uuid.UUID]:
        start, end = change.suspects(window_seconds)
        seen = known.suspects(window_seconds) if known is not None else None
        return [
            i.id
            for i in sorted(self._incidents.rows.values(), key=lambda i: (i.created_at, i.id))
            if i.ci_id == change.ci_id
            and start <= i.created_at <= end
            and not (seen is not None and seen[0] <= i.created_at <= seen[1])
            and i.state not in ("closed", "cancelled")
        ]


class FakeSettings:
    def __init__(self, settings: TenantSettings | None = None) -> None:
        self.current = settings or TenantSettings()
        self.writes: list[tuple[TenantSettings, str]] = []
        self.locked = False

    async def get(self) -> TenantSettings:
        return self.current

    async def lock(self) -> None:
        self.locked = True

    async def write(self, settings: TenantSettings, *, at: datetime, actor: str) -> None:
        self.current = settings
        self.writes.append((settings, actor))


class FakeAlertGroups:
    def __init__(self) -> None:
        self.groups: dict[tuple[str, str], AlertGroup] = {}

    async def claim(self, source: str, dedup_key: str, *, at: datetime) -> Claimed:
        created = (source, dedup_key) not in self.groups
        if created:
            self.groups[source, dedup_key] = AlertGroup(
                TENANT, source, dedup_key, None, 0, 0, 0, 0, at, at, None, None
            )
        return Claimed(self.groups[source, dedup_key], created)

    async def forget(self, source: str, dedup_key: str) -> None:
        del self.groups[source, dedup_key]

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
        self.groups[group.source, group.dedup_key] = replace(
            group,
            incident_id=incident_id,
            incidents_opened=group.incidents_opened + opened,
            notifications=group.notifications + 1,
            alerts=group.alerts + alerts,
            deduplicated=group.deduplicated + deduplicated,
            last_received_at=at,
            last_action=action,
            last_outcome=outcome,
        )


class FakeNumbers:
    def __init__(self) -> None:
        self.taken: dict[str, int] = defaultdict(int)

    async def next(self, kind: str) -> int:
        self.taken[kind] += 1
        return self.taken[kind]


class FakeSurveys:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, uuid.UUID], Survey] = {}

    async def get(
        self, record: RecordKind, record_id: uuid.UUID, *, lock: bool = False
    ) -> Survey | None:
        return self.rows.get((record, record_id))

    async def insert(self, survey: Survey) -> bool:
        key = (survey.record, survey.record_id)
        if key in self.rows:
            return False
        self.rows[key] = survey
        return True

    async def save_answer(self, survey: Survey) -> None:
        assert not self.rows[(survey.record, survey.record_id)].answered
        self.rows[(survey.record, survey.record_id)] = survey

    async def search(
        self, where: SurveyFilter, *, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[Survey]:
        found = sorted(self.rows.values(), key=lambda s: (s.sent_at, s.record_id), reverse=True)
        found = [
            s
            for s in found
            if (where.record is None or s.record == where.record)
            and (where.record_id is None or s.record_id == where.record_id)
            and (not where.scores or s.score in where.scores)
            and (where.answered is None or s.answered == where.answered)
            and (after is None or (s.sent_at, s.record_id) < after)
        ]
        return found[:limit]


class FakeOutages:
    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, Outage] = {}

    async def get(self, outage_id: uuid.UUID, *, lock: bool = False) -> Outage | None:
        return self.rows.get(outage_id)

    async def open_of_incident(self, incident_id: uuid.UUID) -> list[Outage]:
        return sorted(
            (o for o in self.rows.values() if o.incident_id == incident_id and o.open),
            key=lambda o: (o.start, o.id),
        )

    async def insert(self, outage: Outage) -> None:
        assert outage.id not in self.rows
        self.rows[outage.id] = outage

    async def save(self, outage: Outage) -> None:
        assert self.rows[outage.id].version == outage.version - 1
        self.rows[outage.id] = outage

    async def search(
        self, where: OutageFilter, *, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[Outage]:
        found = sorted(self.rows.values(), key=lambda o: (o.start, o.id), reverse=True)
        found = [
            o
            for o in found
            if (where.kind is None or o.kind == where.kind)
            and (where.incident_id is None or o.incident_id == where.incident_id)
            and (where.open is None or o.open == where.open)
            and (after is None or (o.start, o.id) < after)
        ]
        return found[:limit]


class FakeIncidentUnitOfWork(IncidentWork):
    """The incident unit of work in memory. Its repositories outlive a block, so one instance
    can run several use cases in turn (`async with uow:` each); `written` gathers every
    committed event and `rolled_back` counts the blocks that failed."""

    def __init__(
        self,
        ctx: RequestContext | None = None,
        reactions: Reactions[Any] | None = INCIDENT_REACTIONS,
        *,
        settings: TenantSettings | None = None,
        metrics: IncidentMetrics | None = None,
    ) -> None:
        super().__init__(ctx or context(), reactions)
        self.metrics = metrics
        self.latest = {}
        self.incidents = self.incident_rows = FakeIncidents()
        self.requests = self.request_rows = FakeRequests()
        self.problems = self.problem_rows = FakeProblems()
        self.trends = self.trend_rows = FakeTrends(self.incident_rows, self.problem_rows)
        self.clocks = self.clock_rows = FakeClocks()
        self.projection = self.projected = FakeProjection()
        self.changes = self.change_rows = FakeChanges(self.incident_rows)
        self.settings = self.settings_row = FakeSettings(settings)
        self.alert_groups = self.alert_rows = FakeAlertGroups()
        self.numbers = FakeNumbers()
        self.surveys = self.survey_rows = FakeSurveys()
        self.outages = self.outage_rows = FakeOutages()
        self.written: list[Recorded] = []
        self.rolled_back = 0

    def acting_as(self, actor: str, roles: frozenset[str] = frozenset()) -> FakeIncidentUnitOfWork:
        """The next use case runs for another caller (the repositories stay)."""
        self.context = context(actor, roles)
        return self

    async def __aenter__(self) -> FakeIncidentUnitOfWork:
        # A new block: a new transaction with nothing recorded yet.
        self._recorded = []
        self._reacted = 0
        self._committed = False
        return self

    async def _write_events(self, events: Sequence[Recorded]) -> None:
        self.written.extend(events)

    async def _commit(self) -> None:
        return None

    async def _rollback(self) -> None:
        self.rolled_back += 1

    def events(self, subject: object | None = None) -> list[tuple[str, int]]:
        """(event type, version) of the written events, of one subject if given."""
        return [
            (type(e.payload).__name__, e.version)
            for e in self.written
            if subject is None or e.subject == str(subject)
        ]

    def payloads(self, kind: type[EventPayload]) -> list[Any]:
        """The written payloads of one class, in order."""
        return [e.payload for e in self.written if isinstance(e.payload, kind)]


def new_metrics() -> IncidentMetrics:
    return IncidentMetrics(CollectorRegistry())
