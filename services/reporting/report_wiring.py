"""Where the service takes a report's figures from: `report_sources(runtime)`, the one place
the KPI reader and the service-level reader are chosen.

A running service's reports read the KPI projection (`application/kpis.KpiProjection`, periods
in `REPORTING_KPI_TIME_ZONE`) and service level management (`application/service_levels.
ServiceLevels`, with the tenant settings' defaults from the service's settings). Tests may hand
in their own readers with `use_report_sources` (test doubles in `tests/unit/fakes_reports.py`).
"""

from __future__ import annotations

from typing import Any
from weakref import WeakKeyDictionary

from services.reporting.application.kpis import KpiProjection
from services.reporting.application.reports import ReportSources
from services.reporting.application.service_levels import ServiceLevels
from services.reporting.entrypoints.http_service_levels import defaults_of
from services.reporting.settings import ReportingSettings

_chosen: WeakKeyDictionary[Any, ReportSources] = WeakKeyDictionary()


def sources_of(settings: ReportingSettings) -> ReportSources:
    """The real readers, configured from the service's settings."""
    return ReportSources(KpiProjection(settings.kpi_zone), ServiceLevels(defaults_of(settings)))


def report_sources(runtime: Any) -> ReportSources:
    """The readers this runtime's reports take their figures through (chosen once per runtime)."""
    chosen = _chosen.get(runtime)
    if chosen is None:
        chosen = _chosen[runtime] = sources_of(runtime.settings)
    return chosen


def use_report_sources(runtime: Any, sources: ReportSources) -> None:
    """Make a runtime's reports take their figures from these readers."""
    _chosen[runtime] = sources
