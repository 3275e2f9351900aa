"""Service level management: projections from the ledger, availability and SLA performance,
improvement actions (opened automatically when a target is missed) and audit findings.

Projections. One background task reads each tenant's log in order, from where it stopped up to
the tenant's newest signed checkpoint (never beyond: the figures stand on a checkpoint, the
`Basis` a report names), and keeps what availability and SLA performance are computed from:
business services, SLA policies (with their calendars), outages, changes with planned windows,
and SLA clock outcomes and alerts. A tenant's round holds its progress row's lock, so every
replica may run the task. The projections are rebuilt from the ledger by emptying them
(`service-levels-rebuild`).

Review. A second task, every `service_level_review_seconds`, looks at each tenant's previous
period (its `improvement_period`, a month by default) and at the period in progress: a missed SLA
target of a closed period, an availability below target in a closed period, or an availability
already certain to end below target opens ONE improvement action per (policy, target, period)
or (service, period), announced as `ImprovementActionOpenedV1` through the outbox; and it sets
the metrics (availability per service, open and overdue actions).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Generic, TextIO, TypeVar

import asyncpg
from pydantic import ValidationError

from services.reporting.adapters import service_levels as store
from services.reporting.application.completeness import row_of
from services.reporting.application.report_sources import ServiceLevelReader
from services.reporting.domain import service_levels as domain
from services.reporting.domain.report_data import (
    AuditFinding,
    AvailabilityPoint,
    Basis,
    ImprovementAction,
    PeriodKind,
    SlaTargetResult,
    period_of,
)
from services.reporting.domain.service_levels import (
    AuditFindingRecord,
    ImprovementActionRecord,
    PeriodSpan,
    ServiceTerms,
)
from services.reporting.metrics import ReportingMetrics
from shared import outbox
from shared.calendars import CalendarSpec
from shared.context import RequestContext
from shared.db import Connection, all_tenants_transaction, tenant_transaction
from shared.errors import NotFound, StaleVersion, invalid_field
from shared.events.catalogue import EventPayload
from shared.events.change import (
    ChangeAuthorizedV1,
    ChangeCreatedV1,
    ChangeTransitionedV1,
    ChangeUpdatedV1,
)
from shared.events.config import (
    BusinessServiceDefinedV1,
    ServiceMembershipChangedV1,
    SlaPolicyDefinedV1,
)
from shared.events.incident import (
    OutageRecordedV1,
    OutageUpdatedV1,
    SlaBreachedV1,
    SlaClockStoppedV1,
    SlaWarningReachedV1,
)
from shared.events.reporting import (
    AuditFindingRecordedV1,
    AuditFindingUpdatedV1,
    AuditFindingV1,
    ImprovementActionOpenedV1,
    ImprovementActionUpdatedV1,
    ImprovementActionV1,
)
from shared.progress import ProgressBar
from shared.records.record import Changes, VersionedRecord, apply_change
from shared.records.sql import RecordTable
from shared.records.workflow import StateMachine
from shared.supervision import PerTenant

log = logging.getLogger(__name__)

ACTOR = "system:service-levels"
BATCH = 2000
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The wall clock (tests inject their own)."""
    return datetime.now(UTC)


# --- settings ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Defaults:
    """The service-wide defaults of a tenant's service-level settings."""

    sla_objective: float = 0.95
    time_zone: str = "UTC"
    improvement_period: PeriodKind = "month"
    improvement_due_days: int = 30
    availability_metric_services: int = 20


@dataclass(frozen=True)
class TenantSettings:
    """A tenant's service-level settings (version 0: the defaults, never stored)."""

    sla_objective: float
    time_zone: str
    improvement_period: PeriodKind
    version: int
    updated_at: datetime | None = None
    updated_by: str | None = None


async def tenant_settings(conn: Connection, tenant_id: str, defaults: Defaults) -> TenantSettings:
    """The tenant's settings, or the defaults."""
    row = await store.settings_of(conn, tenant_id)
    if row is None:
        return TenantSettings(
            defaults.sla_objective, defaults.time_zone, defaults.improvement_period, 0
        )
    return TenantSettings(
        row["sla_objective"],
        row["time_zone"],
        row["improvement_period"],
        row["version"],
        row["updated_at"],
        row["updated_by"],
    )


async def save_tenant_settings(
    pool: asyncpg.Pool,
    context: RequestContext,
    values: Mapping[str, Any],
    expected: int,
    defaults: Defaults,
    now: datetime,
) -> TenantSettings:
    """Replace the tenant's settings, when it read the current version (`expected`)."""
    async with tenant_transaction(pool, context.tenant_id) as conn:
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext('sl_settings:' || $1))", context.tenant_id
        )
        current = await tenant_settings(conn, context.tenant_id, defaults)
        if current.version != expected:
            raise StaleVersion("the service-level settings", current.version, expected)
        stored = {
            "tenant_id": context.tenant_id,
            "sla_objective": values.get("sla_objective", current.sla_objective),
            "time_zone": values.get("time_zone", current.time_zone),
            "improvement_period": values.get("improvement_period", current.improvement_period),
            "version": current.version + 1,
            "updated_at": now,
            "updated_by": context.actor,
        }
        await store.save_settings(conn, stored)
    return TenantSettings(
        stored["sla_objective"],
        stored["time_zone"],
        stored["improvement_period"],
        stored["version"],
        now,
        context.actor,
    )


# --- projections -------------------------------------------------------------------------------


def _model(model: type[EventPayload], data: Any) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError:
        # The ledger accepted it, so it fitted its model then; a later model may refuse it.
        log.warning("a ledger entry no longer fits its model", extra={"model": model.__name__})
        return None


# The entries the projections fold in (`apply_entry`); the ledger's other entries are skipped
# in the query.
PROJECTED_TYPES = (
    "itsm.config.business_service.defined.v1",
    "itsm.config.sla_policy.defined.v1",
    "itsm.config.service_membership.changed.v1",
    "itsm.incident.outage.recorded.v1",
    "itsm.incident.outage.updated.v1",
    "itsm.incident.sla.clock_stopped.v1",
    "itsm.incident.sla.breached.v1",
    "itsm.incident.sla.warning_reached.v1",
    "itsm.change.created.v1",
    "itsm.change.updated.v1",
    "itsm.change.authorized.v1",
    "itsm.change.transitioned.v1",
)
_WINDOW_FIELDS = ("planned_start", "planned_end")
_UNAPPROVED_STATES = frozenset({"new", "assess", "authorize", "cancelled"})


async def apply_entry(conn: Connection, tenant_id: str, row: Any) -> None:
    """Fold one ledger entry into the projections (entries of other types change nothing)."""
    kind, data = row.type, row.data
    if kind == "itsm.config.business_service.defined.v1":
        if _model(BusinessServiceDefinedV1, data) is not None:
            await store.save_service(conn, tenant_id, data)
    elif kind == "itsm.config.sla_policy.defined.v1":
        if _model(SlaPolicyDefinedV1, data) is not None:
            await store.save_policy(conn, tenant_id, data)
    elif kind in ("itsm.incident.outage.recorded.v1", "itsm.incident.outage.updated.v1"):
        model = OutageRecordedV1 if kind.endswith("recorded.v1") else OutageUpdatedV1
        event = _model(model, data)
        if event is not None:
            outage = event.outage.model_dump()
            withdrawn = bool(getattr(event, "withdrawn", False))
            await store.save_outage(conn, tenant_id, row.subject, outage, withdrawn)
    elif kind == "itsm.incident.sla.clock_stopped.v1":
        stopped = _model(SlaClockStoppedV1, data)
        if stopped is not None:
            clock = stopped.clock
            target = domain.target_name(clock.priority, clock.kind)
            await store.save_clock_event(
                conn,
                tenant_id,
                row.position,
                clock.policy,
                target,
                stopped.result,
                stopped.stopped_at,
            )
    elif kind in ("itsm.incident.sla.breached.v1", "itsm.incident.sla.warning_reached.v1"):
        alert = _model(SlaBreachedV1 if "breached" in kind else SlaWarningReachedV1, data)
        if alert is not None:
            clock = alert.clock
            await store.save_clock_event(
                conn,
                tenant_id,
                row.position,
                clock.policy,
                domain.target_name(clock.priority, clock.kind),
                "breach" if "breached" in kind else "warning",
                alert.due_at,
            )
    elif kind == "itsm.config.service_membership.changed.v1":
        membership = _model(ServiceMembershipChangedV1, data)
        if membership is not None:
            await store.save_ci_services(conn, tenant_id, membership.ci_id, membership.services)
    elif kind.startswith("itsm.change."):
        await _apply_change(conn, tenant_id, kind, data)


async def _apply_change(conn: Connection, tenant_id: str, kind: str, data: Any) -> None:
    if kind == "itsm.change.created.v1":
        created = _model(ChangeCreatedV1, data)
        if created is not None:
            await store.save_change(
                conn,
                tenant_id,
                created.change_id,
                services=created.business_services,
                ci_ids=created.ci_ids,
                planned_start=created.planned_start,
                planned_end=created.planned_end,
                window_given=True,
            )
    elif kind == "itsm.change.updated.v1":
        updated = _model(ChangeUpdatedV1, data)
        if updated is None:
            return
        changes = updated.changes
        window = {k: changes[k].get("to") for k in _WINDOW_FIELDS if k in changes}
        start, end = await store.change_window(conn, tenant_id, updated.change_id)
        services = changes.get("business_services", {}).get("to")
        cis = changes.get("affected_cis", {}).get("to")
        await store.save_change(
            conn,
            tenant_id,
            updated.change_id,
            services=[str(s) for s in services] if isinstance(services, list) else None,
            ci_ids=[str(c) for c in cis] if isinstance(cis, list) else None,
            planned_start=_instant(window["planned_start"]) if "planned_start" in window else start,
            planned_end=_instant(window["planned_end"]) if "planned_end" in window else end,
            window_given=bool(window),
            approved=False if updated.approvals_voided else None,
        )
    elif kind == "itsm.change.authorized.v1":
        authorized = _model(ChangeAuthorizedV1, data)
        if authorized is not None:
            await store.save_change(conn, tenant_id, authorized.change_id, approved=True)
    elif kind == "itsm.change.transitioned.v1":
        moved = _model(ChangeTransitionedV1, data)
        if moved is not None:
            approved: bool | None = None
            if moved.to_state in _UNAPPROVED_STATES:
                approved = False
            elif moved.to_state == "scheduled":
                approved = True  # authorized, or a standard change (pre-authorized)
            await store.save_change(
                conn, tenant_id, moved.change_id, approved=approved, state=moved.to_state
            )


def _instant(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


async def project_tenant(pool: asyncpg.Pool, behind: store.Behind, *, batch: int = BATCH) -> int:
    """Fold up to `batch` of the tenant's entries below its newest checkpoint into the
    projections, in one transaction; the number read (0 when another replica holds it)."""
    async with tenant_transaction(pool, behind.tenant_id) as conn:
        applied = await store.claim(conn, behind.tenant_id)
        if applied is None:
            return 0
        records = await store.entries(
            conn, behind.tenant_id, applied, behind.tree_size, PROJECTED_TYPES, batch
        )
        for record in records:
            await apply_entry(conn, behind.tenant_id, row_of(record))
        # Fewer than asked: no entry of these types is left below the checkpoint.
        full = len(records) == batch
        reached = records[-1]["position"] + 1 if full else max(applied, behind.tree_size)
        basis = (behind.tree_size, behind.root_hash) if reached >= behind.tree_size else None
        await store.save_progress(conn, behind.tenant_id, reached, basis)
    return len(records)


async def project_round(
    pool: asyncpg.Pool, *, batch: int = BATCH, tenants_apart: PerTenant | None = None
) -> int:
    """One round over every tenant behind its newest checkpoint (a tenant that fails is logged
    and counted, and the others go on); entries read."""
    apart = tenants_apart or PerTenant("service-level-projections")
    async with all_tenants_transaction(pool) as conn:
        behind = await store.tenants_behind(conn)
    read = 0
    for tenant in behind:

        async def project(tenant: store.Behind = tenant) -> int:
            return await project_tenant(pool, tenant, batch=batch)

        read += await apart.run(tenant.tenant_id, project)
    return read


async def rebuild(
    pool: asyncpg.Pool, tenant_id: str | None = None, progress: TextIO | None = None
) -> int:
    """Empty the projections (of one tenant, or all) and fold the ledger into them again, up to
    each tenant's newest checkpoint, drawing a progress bar; the entries read. Run it with the
    service stopped, or expect the running task to share the work (it is safe, not faster)."""
    async with all_tenants_transaction(pool) as conn:
        await store.reset(conn, tenant_id)
        total = await store.signed_sizes(conn, tenant_id)
    bar = ProgressBar(total, progress, unit="entries")
    done = 0
    while True:
        async with all_tenants_transaction(pool) as conn:
            behind = [
                b
                for b in await store.tenants_behind(conn)
                if tenant_id is None or b.tenant_id == tenant_id
            ]
        read = 0
        for tenant in behind:
            read += await project_tenant(pool, tenant)
            bar.update(min(done + read, total))
        done += read
        if not read:
            break
    bar.update(done, final=True)
    return done


async def run_projections(
    pool: asyncpg.Pool, metrics: ReportingMetrics | None = None, *, interval: float = 1.0
) -> None:
    """Keep the projections up to each tenant's newest checkpoint (supervised; every replica;
    one tenant's failure does not hold up the others)."""
    apart = PerTenant(
        "service-level-projections",
        metrics.projection_failures if metrics is not None else None,
    )
    while True:
        read = await project_round(pool, tenants_apart=apart)
        await asyncio.sleep(0 if read >= BATCH else interval)


# --- figures -----------------------------------------------------------------------------------


def _terms(service: store.ServiceRow) -> ServiceTerms:
    calendar = CalendarSpec.model_validate(service.calendar) if service.calendar else None
    target = service.availability_target / 100 if service.availability_target is not None else None
    return ServiceTerms(calendar, target)


def _base_of(basis: tuple[int, bytes] | None) -> Basis | None:
    return None if basis is None else Basis(basis[0], base64.b64encode(basis[1]).decode())


class ServiceLevels:
    """Availability, SLA results, improvement actions and audit findings of a tenant: the
    `ServiceLevelReader` a service report takes its figures through."""

    def __init__(self, defaults: Defaults | None = None, clock: Clock = utc_now) -> None:
        self.defaults = defaults or Defaults()
        self.clock = clock

    async def basis(self, conn: Connection, tenant: str) -> Basis | None:
        """The checkpoint the tenant's figures stand on."""
        return _base_of(await store.basis_of(conn, tenant))

    async def spans(
        self, conn: Connection, tenant: str, period: PeriodKind, start: date | None, count: int
    ) -> list[PeriodSpan]:
        """The periods asked for, in the tenant's time zone; without a start, the `count`
        periods up to the one in progress."""
        settings = await tenant_settings(conn, tenant, self.defaults)
        if start is None:
            current = domain.span_at(period, self.clock(), settings.time_zone)
            first = current.period.start
            for _ in range(count - 1):
                first = period_of(period, first - timedelta(days=1)).start
            start = first
        return domain.spans(period, start, count, settings.time_zone)

    async def availability(
        self,
        conn: Connection,
        tenant: str,
        services: Sequence[str] | None,
        period: PeriodKind,
        start: date,
        count: int,
    ) -> list[AvailabilityPoint]:
        """Each service's availability in each period."""
        return await self.availability_in(
            conn, tenant, services, await self.spans(conn, tenant, period, start, count)
        )

    async def availability_in(
        self,
        conn: Connection,
        tenant: str,
        services: Sequence[str] | None,
        spans: Sequence[PeriodSpan],
    ) -> list[AvailabilityPoint]:
        """Each service's availability in each of these periods."""
        now = self.clock()
        points = []
        for service in await store.services(conn, tenant, services):
            terms = _terms(service)
            start, end = spans[0].start, spans[-1].end
            outages = await store.outages(conn, tenant, service.service_id, start, end)
            planned = await store.approved_windows(conn, tenant, service.service_id, start, end)
            points += [
                domain.availability_of(service.service_id, span, terms, outages, planned, now)
                for span in spans
            ]
        return points

    async def sla_results(
        self, conn: Connection, tenant: str, period: PeriodKind, start: date, count: int
    ) -> list[SlaTargetResult]:
        """Performance against every target of every policy in each period."""
        spans = await self.spans(conn, tenant, period, start, count)
        return [r for r, _ in await self.sla_performance(conn, tenant, spans)]

    async def sla_performance(
        self, conn: Connection, tenant: str, spans: Sequence[PeriodSpan]
    ) -> list[tuple[SlaTargetResult, dict[str, int]]]:
        """Each target's result per period, with the breaches and warnings that fired in it."""
        settings = await tenant_settings(conn, tenant, self.defaults)
        kind = spans[0].period.kind
        counts = await store.clock_counts(
            conn, tenant, kind, settings.time_zone, spans[0].start, spans[-1].end
        )
        outcomes: dict[tuple[str, str, str], tuple[int, int]] = {}
        alerts: dict[tuple[str, str, str], dict[str, int]] = {}
        for policy, target, outcome, first, n in counts:
            key = (policy, target, period_of(kind, first).label)
            if outcome in ("met", "breached"):
                met, breached = outcomes.get(key, (0, 0))
                outcomes[key] = (met + n, breached) if outcome == "met" else (met, breached + n)
            else:
                alerts.setdefault(key, {"breaches": 0, "warnings": 0})[
                    "breaches" if outcome == "breach" else "warnings"
                ] += n
        terms = [
            domain.PolicyTerms(p.name, domain.policy_target_names(p.targets), p.objective)
            for p in await store.policies(conn, tenant)
        ]
        found = []
        for span in spans:
            for result in domain.sla_results(terms, outcomes, span, settings.sla_objective):
                key = (result.policy, result.target, span.period.label)
                found.append((result, alerts.get(key, {"breaches": 0, "warnings": 0})))
        return found

    async def improvement_actions(
        self, conn: Connection, tenant: str, *, open_only: bool = False
    ) -> list[ImprovementAction]:
        """The tenant's improvement actions (open ones only with `open_only`)."""
        return [
            action_figure(a) for a in await store.all_actions(conn, tenant, open_only=open_only)
        ]

    async def audit_findings(
        self, conn: Connection, tenant: str, *, open_only: bool = False
    ) -> list[AuditFinding]:
        """The tenant's internal-audit findings (not closed only with `open_only`)."""
        return [
            finding_figure(f) for f in await store.all_findings(conn, tenant, open_only=open_only)
        ]


def action_figure(action: ImprovementActionRecord) -> ImprovementAction:
    """An action as a report shows it."""
    return ImprovementAction(
        id=str(action.id),
        title=action.title,
        source=action.source,
        service=action.service,
        owner=action.owner,
        due_date=action.due_date,
        status=action.state,
        outcome=action.outcome,
        opened_at=action.created_at,
        version=action.version,
    )


def finding_figure(finding: AuditFindingRecord) -> AuditFinding:
    """A finding as a report shows it."""
    return AuditFinding(
        id=str(finding.id),
        audit=finding.audit,
        clause=finding.clause,
        finding=finding.finding,
        severity=finding.severity,
        owner=finding.owner,
        corrective_action=finding.corrective_action,
        due_date=finding.due_date,
        status=finding.state,
        recorded_at=finding.created_at,
        version=finding.version,
    )


# --- improvement actions -----------------------------------------------------------------------


def action_subject(action_id: uuid.UUID) -> str:
    """The aggregate (CloudEvents subject) of an action's events."""
    return f"improvement/{action_id}"


def finding_subject(finding_id: uuid.UUID) -> str:
    """The aggregate (CloudEvents subject) of a finding's events."""
    return f"audit-finding/{finding_id}"


def action_payload(action: ImprovementActionRecord) -> ImprovementActionV1:
    """The action as its events carry it."""
    return ImprovementActionV1(
        title=action.title,
        source=action.source,
        service=action.service,
        policy=action.policy,
        target=action.target,
        period=action.period,
        finding_id=str(action.finding_id) if action.finding_id else None,
        owner=action.owner,
        due_date=action.due_date,
        status=action.state,
        outcome=action.outcome,
    )


def finding_payload(finding: AuditFindingRecord) -> AuditFindingV1:
    """The finding as its events carry it."""
    return AuditFindingV1(
        audit=finding.audit,
        clause=finding.clause,
        finding=finding.finding,
        severity=finding.severity,
        owner=finding.owner,
        corrective_action=finding.corrective_action,
        due_date=finding.due_date,
        status=finding.state,
    )


def _as_status(changes: Changes) -> Changes:
    """`state` is `status` in the API and the events."""
    return {("status" if k == "state" else k): v for k, v in changes.items()}


async def open_action(
    conn: Connection,
    tenant_id: str,
    actor: str,
    now: datetime,
    fields: Mapping[str, Any],
    *,
    correlation_id: str | None = None,
    metrics: ReportingMetrics | None = None,
) -> ImprovementActionRecord:
    """Open an action in the caller's transaction: stored, its history's first row, its event."""
    action = ImprovementActionRecord.first(
        tenant_id=tenant_id, state="open", actor=actor, now=now, **fields
    )
    await ACTIONS_TABLE.insert(conn, action)
    await ACTIONS_TABLE.record_history(conn, action, action="opened", changes={})
    await outbox.append(
        conn,
        ImprovementActionOpenedV1(action=action_payload(action)),
        subject=action_subject(action.id),
        tenant_id=tenant_id,
        sequence=1,
        actor=actor,
        correlation_id=correlation_id,
    )
    if metrics is not None:
        metrics.improvement_opened.labels(action.source).inc()
    return action


ACTIONS_TABLE = store.ACTIONS
FINDINGS_TABLE = store.FINDINGS


async def create_action(
    pool: asyncpg.Pool,
    context: RequestContext,
    fields: Mapping[str, Any],
    now: datetime,
    metrics: ReportingMetrics | None = None,
) -> ImprovementActionRecord:
    """Open an action by hand (source `manual`, or `audit_finding` with the finding's id)."""
    domain.refuse_blank(fields, ("title",))
    async with tenant_transaction(pool, context.tenant_id) as conn:
        finding_id = fields.get("finding_id")
        if (
            finding_id is not None
            and await FINDINGS_TABLE.get(conn, context.tenant_id, finding_id) is None
        ):
            raise invalid_field("finding_id", "no such audit finding")
        return await open_action(
            conn,
            context.tenant_id,
            context.actor,
            now,
            {"source": "audit_finding" if finding_id else "manual", **fields},
            correlation_id=context.correlation_id,
            metrics=metrics,
        )


async def update_action(
    pool: asyncpg.Pool,
    context: RequestContext,
    action_id: uuid.UUID,
    values: Mapping[str, Any],
    expected: int,
    now: datetime,
    metrics: ReportingMetrics | None = None,
) -> ImprovementActionRecord:
    """Change an action's fields and status (If-Match: `expected`); done needs an outcome."""
    domain.refuse_blank(values, ("title",))
    after = await _update_tracked(
        pool,
        context,
        TrackedKind(
            ACTIONS_TABLE,
            domain.ACTIONS,
            domain.OPEN_ACTION,
            "the action is {state}: it changes no more",
            "outcome",
            lambda record, shown: ImprovementActionUpdatedV1(
                action=action_payload(record), changes=shown
            ),
            action_subject,
        ),
        action_id,
        values,
        expected,
        now,
    )
    if metrics is not None and after.state not in domain.OPEN_ACTION:
        metrics.improvement_closed.labels(after.state).inc()
    return after


async def get_action(
    pool: asyncpg.Pool, tenant_id: str, action_id: uuid.UUID
) -> ImprovementActionRecord:
    """The action, or `NotFound`."""
    async with tenant_transaction(pool, tenant_id, readonly=True) as conn:
        action = await ACTIONS_TABLE.get(conn, tenant_id, action_id)
    if action is None:
        raise NotFound("improvement_action", str(action_id))
    return action


# --- audit findings ----------------------------------------------------------------------------


async def record_finding(
    pool: asyncpg.Pool, context: RequestContext, fields: Mapping[str, Any], now: datetime
) -> AuditFindingRecord:
    """Record an internal-audit finding and announce it."""
    domain.refuse_blank(fields, ("audit", "clause", "finding"))
    finding = AuditFindingRecord.first(
        tenant_id=context.tenant_id, state="open", actor=context.actor, now=now, **fields
    )
    async with tenant_transaction(pool, context.tenant_id) as conn:
        await FINDINGS_TABLE.insert(conn, finding)
        await FINDINGS_TABLE.record_history(conn, finding, action="recorded", changes={})
        await outbox.append(
            conn,
            AuditFindingRecordedV1(finding=finding_payload(finding)),
            subject=finding_subject(finding.id),
            tenant_id=context.tenant_id,
            sequence=1,
            actor=context.actor,
            correlation_id=context.correlation_id,
        )
    return finding


async def update_finding(
    pool: asyncpg.Pool,
    context: RequestContext,
    finding_id: uuid.UUID,
    values: Mapping[str, Any],
    expected: int,
    now: datetime,
) -> AuditFindingRecord:
    """Change a finding's fields and status (If-Match); closing needs a corrective action."""
    domain.refuse_blank(values, ("audit", "clause", "finding"))
    return await _update_tracked(
        pool,
        context,
        TrackedKind(
            FINDINGS_TABLE,
            domain.FINDINGS,
            domain.OPEN_FINDING,
            "the finding is {state}: it changes no more",
            "corrective_action",
            lambda record, shown: AuditFindingUpdatedV1(
                finding=finding_payload(record), changes=shown
            ),
            finding_subject,
        ),
        finding_id,
        values,
        expected,
        now,
    )


T = TypeVar("T", bound=VersionedRecord)


@dataclass(frozen=True)
class TrackedKind(Generic[T]):
    """What differs between the records tracked until closed (improvement actions, audit
    findings): their table, state machine and open states, the message once closed, the field a
    move needs, and their update event and subject."""

    table: RecordTable[T]
    machine: StateMachine[Any]
    open_states: tuple[str, ...]
    closed: str
    needs: str
    event: Callable[[T, Changes], EventPayload]
    subject: Callable[[uuid.UUID], str]


async def _update_tracked(
    pool: asyncpg.Pool,
    context: RequestContext,
    kind: TrackedKind[T],
    record_id: uuid.UUID,
    values: Mapping[str, Any],
    expected: int,
    now: datetime,
) -> T:
    """Change a tracked record's fields and status under If-Match: a closed one changes no
    more, a move is checked against the state machine with the field it needs, and the new
    version is saved with its history row and its event in one transaction."""
    values = dict(values)
    async with tenant_transaction(pool, context.tenant_id) as conn:
        record = await kind.table.locked(conn, context.tenant_id, record_id, expected)
        state = record.state
        if state not in kind.open_states:
            raise invalid_field("status", kind.closed.format(state=state))
        wanted = values.pop("status", None)
        if wanted is not None and wanted != state:
            detail = values.get(kind.needs, getattr(record, kind.needs))
            domain.check_status_details(kind.machine, state, wanted, {kind.needs: detail or None})
            values["state"] = wanted
        after, changes = apply_change(record, values, actor=context.actor, now=now)
        if not changes:
            return record
        await kind.table.save(conn, after)
        shown = _as_status(changes)
        await kind.table.record_history(conn, after, action="updated", changes=shown)
        await outbox.append(
            conn,
            kind.event(after, shown),
            subject=kind.subject(after.id),
            tenant_id=context.tenant_id,
            sequence=after.version,
            actor=context.actor,
            correlation_id=context.correlation_id,
        )
    return after


async def get_finding(
    pool: asyncpg.Pool, tenant_id: str, finding_id: uuid.UUID
) -> AuditFindingRecord:
    """The finding, or `NotFound`."""
    async with tenant_transaction(pool, tenant_id, readonly=True) as conn:
        finding = await FINDINGS_TABLE.get(conn, tenant_id, finding_id)
    if finding is None:
        raise NotFound("audit_finding", str(finding_id))
    return finding


async def action_for_finding(
    pool: asyncpg.Pool,
    context: RequestContext,
    finding_id: uuid.UUID,
    fields: Mapping[str, Any],
    now: datetime,
    metrics: ReportingMetrics | None = None,
) -> ImprovementActionRecord:
    """Open an improvement action from a finding: its owner and due date unless given."""
    finding = await get_finding(pool, context.tenant_id, finding_id)
    chosen = {
        "title": fields.get("title") or f"Clause {finding.clause}: {finding.audit}"[:200],
        "owner": fields.get("owner", finding.owner),
        "due_date": fields.get("due_date", finding.due_date),
        "service": fields.get("service"),
        "finding_id": finding.id,
    }
    return await create_action(pool, context, chosen, now, metrics)


# --- review: improvement actions for missed targets, metrics -------------------------------------


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.2f} %"


async def _open_once(
    conn: Connection,
    tenant_id: str,
    key: str,
    fields: dict[str, Any],
    now: datetime,
    metrics: ReportingMetrics | None,
) -> ImprovementActionRecord | None:
    if await store.action_by_key(conn, tenant_id, key) is not None:
        return None
    return await open_action(
        conn, tenant_id, ACTOR, now, {**fields, "auto_key": key}, metrics=metrics
    )


async def review_tenant(
    pool: asyncpg.Pool,
    levels: ServiceLevels,
    tenant_id: str,
    metrics: ReportingMetrics | None = None,
) -> list[ImprovementActionRecord]:
    """Open the improvement actions the tenant's missed targets call for (once each); the
    actions opened. Holds the tenant's progress row, so one replica reviews a tenant at once."""
    now = levels.clock()
    opened: list[ImprovementActionRecord] = []
    async with tenant_transaction(pool, tenant_id) as conn:
        if await store.claim(conn, tenant_id) is None:
            return []
        settings = await tenant_settings(conn, tenant_id, levels.defaults)
        kind = settings.improvement_period
        current = domain.span_at(kind, now, settings.time_zone)
        previous = domain.span_at(kind, current.start - timedelta(seconds=1), settings.time_zone)
        due = (now + timedelta(days=levels.defaults.improvement_due_days)).date()
        # A closed period is judged once the figures stand on a checkpoint signed after it
        # ended: events of its last minutes are in by then (a late one can still open the
        # action in a later round, as long as this period is the previous one).
        signed = await store.basis_signed_at(conn, tenant_id)
        closed = signed is not None and signed >= previous.end
        sla = await levels.sla_performance(conn, tenant_id, [previous]) if closed else []
        for result, _ in sla:
            if not result.missed:
                continue
            action = await _open_once(
                conn,
                tenant_id,
                domain.auto_key_sla(result.policy, result.target, result.period.label),
                {
                    "title": (
                        f"{result.target} of {result.policy} missed in {result.period.label}:"
                        f" {_percent(result.compliance)} against {_percent(result.objective)}"
                    )[:200],
                    "source": "sla_target_missed",
                    "policy": result.policy,
                    "target": result.target,
                    "period": result.period.label,
                    "due_date": due,
                },
                now,
                metrics,
            )
            opened += [action] if action else []
        services = await store.services(conn, tenant_id, None)
        judged = [(previous, False)] if closed else []
        for span, certain_only in [*judged, (current, True)]:
            points = await levels.availability_in(conn, tenant_id, None, [span])
            for service, point in zip(services, points, strict=True):
                terms = _terms(service)
                missed = (
                    domain.missed_for_certain(point, terms, span)
                    if certain_only
                    else bool(point.breached)
                )
                if not missed:
                    continue
                action = await _open_once(
                    conn,
                    tenant_id,
                    domain.auto_key_availability(service.service_id, span.period.label),
                    {
                        "title": (
                            f"Availability of {service.name} below target in"
                            f" {span.period.label}: {_percent(point.availability)} against"
                            f" {_percent(terms.target)}"
                        )[:200],
                        "source": "availability_target_missed",
                        "service": service.service_id,
                        "policy": service.policy,
                        "target": domain.AVAILABILITY_TARGET,
                        "period": span.period.label,
                        "due_date": due,
                    },
                    now,
                    metrics,
                )
                opened += [action] if action else []
    return opened


async def review_round(
    pool: asyncpg.Pool,
    levels: ServiceLevels,
    metrics: ReportingMetrics | None = None,
    tenants_apart: PerTenant | None = None,
) -> int:
    """Review every tenant (a tenant that fails is logged and counted, and the others go on);
    set the gauges; the number of actions opened."""
    apart = tenants_apart or PerTenant("service-level-review")
    async with all_tenants_transaction(pool) as conn:
        tenants = await store.projected_tenants(conn)
    opened = 0
    for tenant in tenants:

        async def review(tenant: str = tenant) -> int:
            return len(await review_tenant(pool, levels, tenant, metrics))

        opened += await apart.run(tenant, review)
    if metrics is not None:
        await set_gauges(pool, levels, tenants, metrics)
    return opened


async def set_gauges(
    pool: asyncpg.Pool, levels: ServiceLevels, tenants: Sequence[str], metrics: ReportingMetrics
) -> None:
    """Availability of the most critical services in the periods in progress (at most
    `availability_metric_services` series per period), and the open and overdue actions."""
    now = levels.clock()
    async with all_tenants_transaction(pool) as conn:
        open_count, overdue = await store.action_counts(conn, now.date())
    metrics.improvement_actions.labels("open").set(open_count)
    metrics.improvement_actions.labels("overdue").set(overdue)
    shown: list[tuple[int, str, str, PeriodKind, float]] = []
    for tenant in tenants:
        async with tenant_transaction(pool, tenant, readonly=True) as conn:
            settings = await tenant_settings(conn, tenant, levels.defaults)
            for kind in ("day", "week", "month"):
                span = domain.span_at(kind, now, settings.time_zone)
                services = await store.services(conn, tenant, None)
                limit = levels.defaults.availability_metric_services
                chosen = services[:limit]
                points = await levels.availability_in(
                    conn, tenant, [s.service_id for s in chosen], [span]
                )
                for service, point in zip(chosen, points, strict=True):
                    if point.availability is not None:
                        shown.append(
                            (
                                service.criticality,
                                service.name,
                                service.service_id,
                                kind,
                                point.availability,
                            )
                        )
    metrics.availability.clear()
    limit = levels.defaults.availability_metric_services
    for kind in ("day", "week", "month"):
        of_kind = sorted(s for s in shown if s[3] == kind)[:limit]
        for _, name, _, _, value in of_kind:
            metrics.availability.labels(name, kind).set(value)


async def run_review(
    pool: asyncpg.Pool,
    levels: ServiceLevels,
    metrics: ReportingMetrics | None = None,
    *,
    interval: float = 60.0,
) -> None:
    """Review every `interval` seconds (supervised; every replica: a tenant's review holds its
    progress row)."""
    apart = PerTenant(
        "service-level-review", metrics.projection_failures if metrics is not None else None
    )
    while True:
        await review_round(pool, levels, metrics, apart)
        await asyncio.sleep(interval)


def as_reader(levels: ServiceLevels) -> ServiceLevelReader:
    """`ServiceLevels` as the report builder takes it (checked by mypy against the protocol)."""
    return levels
