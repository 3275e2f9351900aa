"""The change schedule's use cases: maintenance and blackout windows, conflicts of a change's
window (or of a hypothetical one) across the CMDB graph, the check that guards scheduling into a
blackout, the schedule of a period, and the next free slot.

For the other parts of the change service (see `change-common`):

- `conflicts(uow, change, hops=1)`: every conflict of the change's planned window, each with
  every CI of the change it involves; when they differ from the ones computed last for the
  change, `itsm.change.conflict_detected.v1` is recorded.
- `check_schedulable(uow, change, override_reason=None)`: `Conflict` (409, naming each blackout
  and every CI it covers) when a blackout covers the window and no emergency override reason is
  given; with one, `itsm.change.blackout_overridden.v1` records the override.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg

from services.change.application.uow import ChangeUnitOfWork, ChangeWork
from services.change.domain import schedule as rules
from services.change.domain import windows as domain
from services.change.domain.change import Change
from services.change.domain.schedule import PlannedWork, ScheduleConflict, Surroundings
from services.change.domain.windows import ChangeWindow, Interval
from services.change.metrics import ChangeMetrics
from shared.context import RequestContext
from shared.errors import Conflict, FieldError, NotFound, invalid_field
from shared.events.catalogue import (
    ChangeBlackoutOverriddenV1,
    ChangeConflictDetectedV1,
    OverriddenBlackoutV1,
    ScheduleConflictV1,
)
from shared.records.record import Changed
from shared.records.sql import Condition

DEFAULT_HOPS = 1
MAX_HOPS = 5
MAX_CIS = 5_000
# The longest period the schedule and its feed show at once.
MAX_PERIOD = timedelta(days=400)
MAX_SCHEDULE_CHANGES = 5_000


@dataclass(frozen=True)
class WindowFields:
    """Command: what defines a window (`time_zone` or `calendar`, or UTC)."""

    name: str
    kind: str
    scope: str
    start: datetime
    duration: timedelta
    description: str = ""
    service: str | None = None
    ci_ids: tuple[str, ...] = ()
    rrule: str | None = None
    exclusions: tuple[date, ...] = ()
    time_zone: str | None = None
    calendar: str | None = None


@dataclass(frozen=True)
class ConflictReport:
    """A change's conflicts, and those among them not in the set computed before."""

    conflicts: list[ScheduleConflict]
    new: list[ScheduleConflict]


@dataclass(frozen=True)
class WindowOccurrences:
    """A window and its occurrences in a period."""

    window: ChangeWindow
    occurrences: list[Interval]


@dataclass(frozen=True)
class ScheduleView:
    """The schedule of a period: changes whose planned window overlaps it, and windows with
    their occurrences in it."""

    start: datetime
    end: datetime
    changes: list[Change]
    windows: list[WindowOccurrences]


def _unit(pool: asyncpg.Pool, context: RequestContext) -> ChangeUnitOfWork:
    return ChangeUnitOfWork(pool, context)


def _reader(tenant_id: str) -> RequestContext:
    # Reads record nothing, so nobody is named as their actor.
    return RequestContext(tenant_id, "reader", "")


# --- windows -------------------------------------------------------------------------------


async def _zone_of(uow: ChangeWork, time_zone: str | None, calendar: str | None) -> str:
    """The window's time zone: the named calendar's, else the IANA zone named, else UTC."""
    if calendar is not None:
        found = await uow.schedule.calendar_zone(calendar)
        if found is None:
            raise invalid_field("calendar", f"no business calendar {calendar!r} is known")
        if time_zone is not None and time_zone != found:
            raise invalid_field("time_zone", f"the calendar {calendar!r} is in {found}")
        return found
    return time_zone or "UTC"


async def _check_scope(uow: ChangeWork, service: str | None, ci_ids: Sequence[str]) -> None:
    if service is not None and not await uow.schedule.service_known(service):
        raise invalid_field("service", f"no business service {service} is known")
    if ci_ids:
        known = await uow.schedule.known_cis(ci_ids)
        unknown = [ci for ci in ci_ids if ci not in known]
        if unknown:
            raise invalid_field("ci_ids", f"no configuration item {', '.join(unknown)} is known")


async def define_window_in(
    uow: ChangeWork, command: WindowFields, *, now: datetime | None = None
) -> ChangeWindow:
    """Define a maintenance or blackout window (WIN<n>)."""
    zone = await _zone_of(uow, command.time_zone, command.calendar)
    window, events = domain.define_window(
        tenant_id=uow.tenant_id,
        number=await uow.schedule.next_window_number(),
        actor=uow.context.actor,
        now=now or datetime.now(UTC),
        name=command.name,
        kind=command.kind,
        scope=command.scope,
        description=command.description,
        service=command.service,
        ci_ids=command.ci_ids,
        start=command.start,
        duration_seconds=int(command.duration.total_seconds()),
        rrule=command.rrule,
        exclusions=command.exclusions,
        time_zone=zone,
        calendar=command.calendar,
    )
    await _check_scope(uow, window.service, window.ci_ids)
    await uow.schedule.insert_window(window)
    await uow.schedule.record_window_history(window, action="defined", changes={})
    uow.record(str(window.id), window.version, events)
    return window


async def _store(uow: ChangeWork, changed: Changed[ChangeWindow], action: str) -> ChangeWindow:
    await uow.schedule.save_window(changed.record)
    await uow.schedule.record_window_history(changed.record, action=action, changes=changed.changes)
    uow.record(str(changed.record.id), changed.record.version, changed.events)
    return changed.record


async def revise_window_in(
    uow: ChangeWork,
    window_id: uuid.UUID,
    values: Mapping[str, Any],
    *,
    expected_version: int | None,
    now: datetime | None = None,
) -> ChangeWindow:
    """Revise an active window's name, scope or timing."""
    window = await uow.schedule.locked_window(window_id, expected_version)
    values = dict(values)
    if "duration" in values:
        values["duration_seconds"] = int(values.pop("duration").total_seconds())
    if "calendar" in values or "time_zone" in values:
        calendar = values.get("calendar", window.calendar if "time_zone" not in values else None)
        values["calendar"] = calendar
        values["time_zone"] = await _zone_of(uow, values.get("time_zone"), calendar)
    changed = domain.revise_window(
        window, values, actor=uow.context.actor, now=now or datetime.now(UTC)
    )
    await _check_scope(uow, changed.record.service, changed.record.ci_ids)
    return await _store(uow, changed, "revised")


async def retire_window_in(
    uow: ChangeWork,
    window_id: uuid.UUID,
    reason: str,
    *,
    expected_version: int | None,
    now: datetime | None = None,
) -> ChangeWindow:
    """Retire a window: it no longer applies (its history stays)."""
    window = await uow.schedule.locked_window(window_id, expected_version)
    changed = domain.retire_window(
        window, reason, actor=uow.context.actor, now=now or datetime.now(UTC)
    )
    return await _store(uow, changed, "retired")


# --- conflicts -----------------------------------------------------------------------------


async def surroundings(uow: ChangeWork, planned: PlannedWork, *, hops: int) -> Surroundings:
    """What surrounds a planned window: the CIs' services and neighbourhood, the changes on
    them or by the implementer, the active windows' occurrences, open major incidents."""
    if not 0 <= hops <= MAX_HOPS:
        raise invalid_field("hops", f"from 0 to {MAX_HOPS}", "query")
    # Two round trips, whatever the number of CIs: the neighbourhood, services, changes and
    # major incidents together (`Schedule.around`), then the active windows.
    found = await uow.schedule.around(
        planned.ci_ids,
        hops,
        planned.start,
        planned.end,
        services=planned.services,
        implementer=planned.implementer,
    )
    windows = await uow.schedule.active_windows()
    occurring = [(w, w.occurrences(planned.start, planned.end)) for w in windows]
    return Surroundings(
        services=found.services,
        near=found.near,
        changes=found.changes,
        windows=occurring,
        major_incidents=found.major_incidents,
    )


async def conflicts_of_window(
    uow: ChangeWork, planned: PlannedWork, *, hops: int = DEFAULT_HOPS
) -> list[ScheduleConflict]:
    """Every conflict of a planned window (a change's, or a hypothetical one)."""
    if planned.end <= planned.start:
        raise invalid_field("end", "must be after start")
    if len(planned.ci_ids) > MAX_CIS:
        raise invalid_field("ci_ids", f"at most {MAX_CIS} CIs")
    return rules.detect(planned, await surroundings(uow, planned, hops=hops))


def _planned(change: Change) -> PlannedWork | None:
    if change.planned_start is None or change.planned_end is None:
        return None
    return PlannedWork(
        start=change.planned_start,
        end=change.planned_end,
        ci_ids=tuple(str(ci) for ci in change.affected_cis),
        implementer=change.implementer,
        change_id=change.id,
        services=tuple(change.business_services),
    )


def _wire(conflict: ScheduleConflict) -> dict[str, Any]:
    return {**asdict(conflict), "ci_ids": list(conflict.ci_ids)}


async def conflict_report(
    uow: ChangeWork, change: Change, *, hops: int = DEFAULT_HOPS, now: datetime | None = None
) -> ConflictReport:
    """The change's conflicts; when they differ from the ones computed last, keep them and
    record `itsm.change.conflict_detected.v1`. A change without a planned window has none."""
    planned = _planned(change)
    found = [] if planned is None else await conflicts_of_window(uow, planned, hops=hops)
    wire = [_wire(c) for c in found]
    fingerprint = rules.fingerprint(found)
    last = await uow.schedule.last_conflicts(change.id)
    if last is not None and last[0] == fingerprint:
        return ConflictReport(found, [])
    if last is None and not found:
        return ConflictReport(found, [])  # nothing before, nothing now: nothing to announce
    before = {
        rules.fingerprint([ScheduleConflict(**{**c, "ci_ids": tuple(c["ci_ids"])})])
        for c in (last[1] if last else [])
    }
    new = [c for c in found if rules.fingerprint([c]) not in before]
    kept = await uow.schedule.keep_conflicts(change.id, fingerprint, wire, now or datetime.now(UTC))
    if kept:
        uow.record(
            str(change.id),
            change.version,
            [
                ChangeConflictDetectedV1(
                    change_id=str(change.id),
                    planned_start=change.planned_start,
                    planned_end=change.planned_end,
                    hops=hops,
                    conflicts=[ScheduleConflictV1.model_validate(c) for c in wire],
                    fingerprint=fingerprint,
                )
            ],
        )
    return ConflictReport(found, new if kept else [])


async def conflicts(
    uow: ChangeWork, change: Change, *, hops: int = DEFAULT_HOPS
) -> list[ScheduleConflict]:
    """Every conflict of the change's planned window, each with every CI of the change it
    involves (an event when they differ from the ones computed last)."""
    return (await conflict_report(uow, change, hops=hops)).conflicts


async def inside_maintenance_window(uow: ChangeWork, change: Change) -> bool | None:
    """For the risk score: False when an affected CI's planned work falls outside the
    maintenance windows that cover it, True when maintenance windows cover the CIs and the work
    is inside them, None when that cannot be said (no planned window, no CIs, or no
    maintenance window covering any of them)."""
    planned = _planned(change)
    if planned is None or not planned.ci_ids:
        return None
    around = await surroundings(uow, planned, hops=0)
    found = rules.detect(planned, around)
    if any(c.kind == "maintenance_window" for c in found):
        return False
    covered = any(
        window.covers(ci, around.services.get(ci, ()))
        for window, _ in around.windows
        if window.kind == "maintenance"
        for ci in planned.ci_ids
    )
    return True if covered else None


async def major_incidents_open(uow: ChangeWork, change: Change) -> int | None:
    """For the risk score: how many major incidents are open on the change's CIs, the business
    services they support or the ones the change names (the incident projection); None when it
    has neither CIs nor services."""
    ci_ids = [str(ci) for ci in change.affected_cis]
    services = await uow.schedule.services_of(ci_ids) if ci_ids else {}
    names = sorted(
        {name for each in services.values() for name in each} | {*change.business_services}
    )
    if not ci_ids and not names:
        return None
    return len(await uow.schedule.major_incidents(names, ci_ids))


async def check_schedulable(
    uow: ChangeWork, change: Change, *, override_reason: str | None = None
) -> None:
    """Refuse (409 naming each blackout and every CI it covers) to schedule a change into a
    blackout without an emergency override reason; record the override when there is one."""
    planned = _planned(change)
    if planned is None:
        return
    hits = rules.blackouts(await conflicts_of_window(uow, planned, hops=0))
    if not hits:
        return
    named = [
        {"window_id": c.other_id, "reference": c.other_reference, "ci_ids": list(c.ci_ids)}
        for c in hits
    ]
    reason = (override_reason or "").strip()
    if not reason:
        raise Conflict(
            "a blackout covers the change's window: "
            + "; ".join(f"{c.other_reference} covers {', '.join(c.ci_ids)}" for c in hits)
            + " (an emergency override needs a reason)",
            # Named as callers send it (`POST /changes`, `POST /changes/{id}/approvals`, a CAB
            # meeting's decision): `override_reason` is no field of theirs.
            fields=[FieldError("blackout_override_reason", "needed to schedule into a blackout")],
            extensions={"blackouts": named},
        )
    uow.record(
        str(change.id),
        change.version,
        [
            ChangeBlackoutOverriddenV1(
                change_id=str(change.id),
                reason=reason,
                blackouts=[
                    OverriddenBlackoutV1(
                        window_id=str(c.other_id),
                        name=c.other_reference or "",
                        ci_ids=list(c.ci_ids),
                    )
                    for c in hits
                ],
            )
        ],
    )


# --- the schedule and the next free slot ---------------------------------------------------


def _period(start: datetime, end: datetime) -> None:
    if end <= start:
        raise invalid_field("to", "must be after from", "query")
    if end - start > MAX_PERIOD:
        raise invalid_field("to", f"a period of at most {MAX_PERIOD.days} days", "query")


async def schedule_in(
    uow: ChangeWork,
    start: datetime,
    end: datetime,
    *,
    service: str | None = None,
    ci_ids: Sequence[str] = (),
    states: Sequence[str] = (),
) -> ScheduleView:
    """Changes and windows in a period, on a business service's CIs or these CIs (all without)."""
    _period(start, end)
    cis = list(ci_ids)
    if service is not None:
        cis += await uow.schedule.cis_of_service(service)
    changes = await uow.schedule.changes_in(
        start, end, ci_ids=cis, states=states, limit=MAX_SCHEDULE_CHANGES
    )
    services = await uow.schedule.services_of(cis) if cis else {}
    shown = []
    for window in await uow.schedule.active_windows():
        if cis and not any(window.covers(ci, services.get(ci, ())) for ci in cis):
            continue
        occurring = window.occurrences(start, end)
        if occurring:
            shown.append(WindowOccurrences(window, occurring))
    return ScheduleView(start, end, changes, shown)


async def next_free_slot_in(
    uow: ChangeWork,
    ci_ids: Sequence[str],
    duration: timedelta,
    after: datetime,
) -> Interval | None:
    """The first slot of `duration` (on the 15-minute grid) in the next 90 days after `after`
    with no conflict for these CIs: inside their maintenance windows when they have any,
    outside blackouts covering them, with no change overlapping on them."""
    if not ci_ids:
        raise invalid_field("ci", "name at least one CI", "query")
    if not timedelta(minutes=1) <= duration <= timedelta(days=31):
        raise invalid_field("duration", "from one minute to 31 days", "query")
    end = after + rules.SEARCH_HORIZON
    services = await uow.schedule.services_of(ci_ids)
    busy: list[Interval] = [
        (c.start, c.end)
        for c in await uow.schedule.booked_changes(after, end, ci_ids=ci_ids, implementer=None)
    ]
    allowed: dict[str, list[Interval]] = {}
    for window in await uow.schedule.active_windows():
        covered = [ci for ci in ci_ids if window.covers(ci, services.get(ci, ()))]
        if not covered:
            continue
        occurring = window.occurrences(after, end)
        if window.kind == "blackout":
            busy += occurring
        else:
            for ci in covered:
                allowed.setdefault(ci, []).extend(occurring)
    return rules.next_free_slot(
        after=after, duration=duration, busy=busy, allowed=list(allowed.values())
    )


# --- entry points on a pool ----------------------------------------------------------------


async def define_window(
    pool: asyncpg.Pool, command: WindowFields, context: RequestContext
) -> ChangeWindow:
    """Define a window in a unit of work of its own."""
    async with _unit(pool, context) as uow:
        window = await define_window_in(uow, command)
        await uow.commit()
    return window


async def revise_window(
    pool: asyncpg.Pool,
    window_id: uuid.UUID,
    values: Mapping[str, Any],
    context: RequestContext,
    *,
    expected_version: int | None,
) -> ChangeWindow:
    """Revise a window in a unit of work of its own."""
    async with _unit(pool, context) as uow:
        window = await revise_window_in(uow, window_id, values, expected_version=expected_version)
        await uow.commit()
    return window


async def retire_window(
    pool: asyncpg.Pool,
    window_id: uuid.UUID,
    reason: str,
    context: RequestContext,
    *,
    expected_version: int | None,
) -> ChangeWindow:
    """Retire a window in a unit of work of its own."""
    async with _unit(pool, context) as uow:
        window = await retire_window_in(uow, window_id, reason, expected_version=expected_version)
        await uow.commit()
    return window


async def get_window(pool: asyncpg.Pool, window_id: uuid.UUID, tenant_id: str) -> ChangeWindow:
    """The window, or `NotFound`."""
    async with _unit(pool, _reader(tenant_id)) as uow:
        window = await uow.schedule.window(window_id)
    if window is None:
        raise NotFound("change_window", str(window_id))
    return window


async def window_history(
    pool: asyncpg.Pool, window_id: uuid.UUID, tenant_id: str
) -> list[dict[str, Any]]:
    """Every version of a window (`NotFound` for none)."""
    async with _unit(pool, _reader(tenant_id)) as uow:
        if await uow.schedule.window(window_id) is None:
            raise NotFound("change_window", str(window_id))
        return await uow.schedule.window_history(window_id)


async def search_windows(
    pool: asyncpg.Pool,
    tenant_id: str,
    where: Sequence[Condition],
    *,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[ChangeWindow]:
    """Windows matching the conditions, newest first."""
    async with _unit(pool, _reader(tenant_id)) as uow:
        return await uow.schedule.search_windows(where, after=after, limit=limit)


async def change_conflicts(
    pool: asyncpg.Pool,
    change_id: uuid.UUID,
    context: RequestContext,
    *,
    hops: int,
    metrics: ChangeMetrics | None = None,
) -> tuple[Change, list[ScheduleConflict]]:
    """A change's conflicts (the event and the count when they differ from the last)."""
    async with _unit(pool, context) as uow:
        change = await uow.changes.get(change_id)
        if change is None:
            raise NotFound("change", str(change_id))
        report = await conflict_report(uow, change, hops=hops)
        await uow.commit()
    if metrics is not None:
        for conflict in report.new:
            metrics.conflicts.labels(conflict.kind).inc()
    return change, report.conflicts


async def hypothetical_conflicts(
    pool: asyncpg.Pool, planned: PlannedWork, tenant_id: str, *, hops: int
) -> list[ScheduleConflict]:
    """The conflicts a window would have (nothing is recorded)."""
    async with _unit(pool, _reader(tenant_id)) as uow:
        return await conflicts_of_window(uow, planned, hops=hops)


async def schedule(
    pool: asyncpg.Pool,
    tenant_id: str,
    start: datetime,
    end: datetime,
    *,
    service: str | None = None,
    ci_ids: Sequence[str] = (),
    states: Sequence[str] = (),
) -> ScheduleView:
    """The schedule of a period."""
    async with _unit(pool, _reader(tenant_id)) as uow:
        return await schedule_in(uow, start, end, service=service, ci_ids=ci_ids, states=states)


async def next_free_slot(
    pool: asyncpg.Pool,
    tenant_id: str,
    ci_ids: Sequence[str],
    duration: timedelta,
    after: datetime,
) -> Interval | None:
    """The next free slot for these CIs."""
    async with _unit(pool, _reader(tenant_id)) as uow:
        return await next_free_slot_in(uow, ci_ids, duration, after)
