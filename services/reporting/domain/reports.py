"""Service reports (ISO/IEC 20000-1 9.4, 9.3): what a report definition says, the calendar
periods a report covers, when a schedule makes a report, and the content a report is rendered
from. Pure: no I/O; the figures come in through `report_data`'s types.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from services.reporting.domain.report_data import (
    AuditFinding,
    AvailabilityPoint,
    Basis,
    ImprovementAction,
    KpiDefinition,
    KpiPoint,
    Period,
    PeriodKind,
    SlaTargetResult,
    period_of,
)

PERIOD_KINDS: tuple[PeriodKind, ...] = ("day", "week", "month")
Schedule = Literal["none", "daily", "weekly", "monthly"]
SCHEDULES: tuple[Schedule, ...] = ("none", "daily", "weekly", "monthly")
Format = Literal["json", "csv", "html", "pdf"]
FORMATS: tuple[Format, ...] = ("json", "csv", "html", "pdf")
ReportKind = Literal["service_report", "management_review"]
MEDIA_TYPES: dict[str, str] = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "html": "text/html; charset=utf-8",
    "pdf": "application/pdf",
}
MAX_TREND = 36


# --- periods ------------------------------------------------------------------------------------


def shift(period: Period, n: int) -> Period:
    """The period `n` periods later (earlier when negative)."""
    if period.kind == "day":
        return period_of("day", period.start + timedelta(days=n))
    if period.kind == "week":
        return period_of("week", period.start + timedelta(weeks=n))
    months = period.start.year * 12 + period.start.month - 1 + n
    return period_of("month", date(months // 12, months % 12 + 1, 1))


def trend(period: Period, previous: int) -> list[Period]:
    """The `previous` periods before `period`, then `period` itself, oldest first."""
    return [shift(period, n) for n in range(-previous, 1)]


def parse_period(kind: PeriodKind, start: date) -> Period:
    """The period of `kind` starting on `start`; ValueError when `start` does not begin one."""
    period = period_of(kind, start)
    if period.start != start:
        raise ValueError(f"a {kind} starts on {period.start.isoformat()}, not {start.isoformat()}")
    return period


# --- schedules ----------------------------------------------------------------------------------


def _runs_on(schedule: Schedule, day: date) -> bool:
    if schedule == "daily":
        return True
    if schedule == "weekly":
        return day.weekday() == 0
    if schedule == "monthly":
        return day.day == 1
    return False


def run_instants(
    schedule: Schedule, at: time, zone: ZoneInfo, after: datetime, until: datetime
) -> list[datetime]:
    """The instants in (after, until] at which the schedule runs (at `at`, local time)."""
    if schedule == "none" or until <= after:
        return []
    found: list[datetime] = []
    day = after.astimezone(zone).date()
    last = until.astimezone(zone).date()
    while day <= last:
        if _runs_on(schedule, day):
            instant = datetime.combine(day, at, zone).astimezone(UTC)
            if after < instant <= until:
                found.append(instant)
        day += timedelta(days=1)
    return found


def period_due(kind: PeriodKind, run_at: datetime, zone: ZoneInfo) -> Period:
    """The period a scheduled run reports on: the newest one that has ended at `run_at`."""
    return shift(period_of(kind, run_at.astimezone(zone).date()), -1)


# --- definitions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShownKpi:
    """A KPI a report shows, with the target the report draws for it (None: the KPI's own)."""

    id: str
    target: float | None = None


@dataclass(frozen=True)
class ReportSpec:
    """What a report shows: a definition's content, or a management review's."""

    name: str
    audience: str
    services: tuple[str, ...]
    period_kind: PeriodKind
    kpis: tuple[ShownKpi, ...]
    trend_periods: int
    formats: tuple[Format, ...]
    time_zone: str = "UTC"


@dataclass(frozen=True)
class ReportDefinition:
    """A tenant's report definition as stored (versioned)."""

    id: str
    version: int
    spec: ReportSpec
    schedule: Schedule
    schedule_time: time
    deleted: bool = False


def unknown_kpis(kpis: Sequence[ShownKpi], known: Sequence[KpiDefinition]) -> list[int]:
    """The positions of the KPIs no definition describes."""
    ids = {d.id for d in known}
    return [i for i, kpi in enumerate(kpis) if kpi.id not in ids]


# --- content ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KpiSeries:
    """One KPI over the report's periods (a value or None per period), with its target."""

    definition: KpiDefinition
    dimension_value: str | None
    points: tuple[KpiPoint | None, ...]  # one per period of the report, oldest first
    target: float | None

    def values(self) -> list[float | None]:
        return [None if p is None else p.value for p in self.points]

    def breaches(self) -> list[bool]:
        return [breached(self.definition, p, self.target) for p in self.points]


def breached(definition: KpiDefinition, point: KpiPoint | None, target: float | None) -> bool:
    """Whether a point is on the wrong side of its target (the reader's word when it gives one)."""
    if point is None or point.value is None:
        return False
    if point.breached is not None and (target is None or target == point.target):
        return point.breached
    if target is None or definition.better == "none":
        return False
    return point.value < target if definition.better == "higher" else point.value > target


def series_of(
    definitions: Sequence[KpiDefinition],
    shown: Sequence[ShownKpi],
    periods: Sequence[Period],
    points: Sequence[KpiPoint],
) -> list[KpiSeries]:
    """The points arranged per KPI (in the order shown) and dimension value, one per period."""
    by_id = {d.id: d for d in definitions}
    index = {p.start: i for i, p in enumerate(periods)}
    grouped: dict[tuple[str, str | None], list[KpiPoint | None]] = {}
    order: list[tuple[str, str | None]] = []
    wanted = {k.id for k in shown}
    for point in points:
        if point.kpi not in wanted or point.period.start not in index:
            continue
        key = (point.kpi, point.dimension_value)
        if key not in grouped:
            grouped[key] = [None] * len(periods)
            order.append(key)
        grouped[key][index[point.period.start]] = point
    series: list[KpiSeries] = []
    for kpi in shown:
        definition = by_id.get(kpi.id)
        if definition is None:
            continue
        keys = sorted((k for k in order if k[0] == kpi.id), key=lambda k: k[1] or "")
        if not keys:
            keys = [(kpi.id, None)]
            grouped[keys[0]] = [None] * len(periods)
        for key in keys:
            given = [p.target for p in grouped[key] if p is not None and p.target is not None]
            target = kpi.target if kpi.target is not None else (given[-1] if given else None)
            series.append(KpiSeries(definition, key[1], tuple(grouped[key]), target))
    return series


@dataclass(frozen=True)
class ReportContent:
    """Everything a report shows, ready to render (JSON, CSV, HTML)."""

    kind: ReportKind
    report_id: str
    title: str
    audience: str
    tenants: tuple[str, ...]
    services: tuple[str, ...]
    period: Period
    periods: tuple[Period, ...]
    period_from: datetime
    period_to: datetime
    time_zone: str
    generated_at: datetime
    bases: dict[str, Basis | None]
    series: tuple[KpiSeries, ...]
    availability: tuple[AvailabilityPoint, ...] = ()
    sla: tuple[SlaTargetResult, ...] = ()
    actions: tuple[ImprovementAction, ...] = ()
    findings: tuple[AuditFinding, ...] = ()
    definition_id: str | None = None
    definition_version: int | None = None
    notes: tuple[str, ...] = field(default=())
