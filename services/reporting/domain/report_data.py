"""What a service report is drawn from: the figures the KPI, availability and service-level
parts of the reporting service hand to the report builder.

One vocabulary for all of them, so a report (and the management-review pack) takes its data
through these protocols and never reads another part's tables. Every figure names the ledger
checkpoint it was computed from (`Basis`), so a report can say which entries it stands on.
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

PeriodKind = Literal["day", "week", "month"]
# `category`: the record's classification (incident category, change type, CI class, request
# item, deployment environment).
Dimension = Literal["tenant", "service", "group", "agent", "priority", "category"]
Unit = Literal["count", "seconds", "ratio", "score", "per_day"]
# Which way is better: a target is met when the value is at or above it ("higher") or at or
# below it ("lower"); "none" for figures without a better direction (volumes, backlog).
Better = Literal["higher", "lower", "none"]


@dataclass(frozen=True)
class Basis:
    """The ledger checkpoint figures were computed from (`tree_size` entries, signed root)."""

    tree_size: int
    root_hash: str


@dataclass(frozen=True)
class Period:
    """One calendar period in the tenant's reporting time zone: [start, end)."""

    kind: PeriodKind
    start: date
    label: str  # e.g. "2026-11", "2026-W48", "2026-11-30"


def period_of(kind: PeriodKind, day: date) -> Period:
    """The period of `kind` that contains `day` (weeks start on Monday, ISO-numbered)."""
    if kind == "day":
        return Period("day", day, day.isoformat())
    if kind == "week":
        start = day - timedelta(days=day.weekday())
        year, week, _ = start.isocalendar()
        return Period("week", start, f"{year}-W{week:02d}")
    start = day.replace(day=1)
    return Period("month", start, f"{start.year}-{start.month:02d}")


def period_end(period: Period) -> date:
    """The first day after the period."""
    if period.kind == "day":
        return period.start + timedelta(days=1)
    if period.kind == "week":
        return period.start + timedelta(days=7)
    days = calendar.monthrange(period.start.year, period.start.month)[1]
    return period.start + timedelta(days=days)


def instants_of(period: Period, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The period as [from, to) instants (UTC), its days read in the time zone."""
    start = datetime.combine(period.start, time(0), zone).astimezone(UTC)
    end = datetime.combine(period_end(period), time(0), zone).astimezone(UTC)
    return start, end


@dataclass(frozen=True)
class KpiDefinition:
    """A KPI's documented, versioned definition."""

    id: str  # e.g. "incident.resolve_time.median"
    version: int
    title: str
    unit: Unit
    better: Better
    process: str  # "incident", "request", "problem", "change", "deployment", ...
    description: str


@dataclass(frozen=True)
class KpiPoint:
    """A KPI's value for one period and one dimension value (None: no data in the period)."""

    kpi: str
    version: int
    period: Period
    dimension: Dimension
    dimension_value: str | None  # None for the tenant as a whole
    value: float | None
    count: int  # the records the value is computed from
    target: float | None = None
    breached: bool | None = None  # the value is on the wrong side of its target


@dataclass(frozen=True)
class AvailabilityPoint:
    """A business service's availability in one period, against its SLA policy's target."""

    service: str
    period: Period
    agreed_seconds: float
    downtime_seconds: float  # outages in agreed service time, planned downtime excluded
    planned_downtime_seconds: float  # covered by an approved change's window
    degraded_seconds: float  # degradation, reported apart from outage
    outages: int
    availability: float | None  # 1 - downtime / agreed; None when nothing was agreed
    mtbf_seconds: float | None
    mtrs_seconds: float | None
    target: float | None = None
    breached: bool | None = None


@dataclass(frozen=True)
class SlaTargetResult:
    """Performance against one target of one SLA policy in one period."""

    policy: str
    target: str  # e.g. "P1 resolution"
    period: Period
    met: int
    breached: int
    compliance: float | None  # met / (met + breached)
    objective: float | None  # the share agreed, when the policy has one
    missed: bool


@dataclass(frozen=True)
class ImprovementAction:
    id: str
    title: str
    source: str
    service: str | None
    owner: str | None
    due_date: date | None
    status: str
    outcome: str
    opened_at: datetime
    version: int


@dataclass(frozen=True)
class AuditFinding:
    id: str
    audit: str
    clause: str
    finding: str
    severity: str
    owner: str | None
    corrective_action: str
    due_date: date | None
    status: str
    recorded_at: datetime
    version: int


@dataclass(frozen=True)
class KpiQuery:
    """Which KPIs, for which periods and dimension values."""

    kpis: Sequence[str]
    period: PeriodKind
    start: date  # the first period contains this day
    count: int  # how many consecutive periods (the trend)
    dimension: Dimension = "tenant"
    values: Sequence[str] | None = None  # dimension values wanted; None: all
    services: Sequence[str] | None = None  # restrict to records of these business services
    targets: dict[str, float] = field(default_factory=dict)  # kpi id -> target, from the report
