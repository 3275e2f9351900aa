"""The incident service as the shared runtime runs it."""

from collections.abc import Sequence
from pathlib import Path

from services.incident.application.housekeeping import run_auto_close, run_census
from services.incident.application.sla import run_scheduler
from services.incident.entrypoints import (
    alerts_http,
    outages_http,
    problems_http,
    requests_http,
    settings_http,
    surveys_http,
)
from services.incident.entrypoints.consumers import consumers
from services.incident.entrypoints.http import router
from services.incident.metrics import IncidentMetrics
from services.incident.settings import SERVICE, IncidentSettings
from shared.service import ServiceDefinition, ServiceRuntime
from shared.supervision import BackgroundTask


def _background(
    runtime: ServiceRuntime[IncidentSettings, IncidentMetrics],
) -> Sequence[BackgroundTask]:
    """The SLA scheduler (warnings and breaches as they fall due), auto-close and the census of
    open incidents; each is safe in every replica."""
    metrics = runtime.service_metrics
    settings = runtime.settings
    pool = runtime.pool
    return [
        BackgroundTask("sla-scheduler", lambda: run_scheduler(pool, metrics)),
        BackgroundTask(
            "auto-close",
            lambda: run_auto_close(pool, metrics, interval=settings.auto_close_interval_seconds),
        ),
        BackgroundTask(
            "incident-census",
            lambda: run_census(pool, metrics, interval=settings.census_interval_seconds),
        ),
    ]


DEFINITION = ServiceDefinition(
    name=SERVICE.name,
    settings_class=IncidentSettings,
    migrations=Path(__file__).parent / "migrations",
    routers=[
        router,
        requests_http.router,
        problems_http.router,
        alerts_http.router,
        settings_http.router,
        surveys_http.router,
        outages_http.router,
    ],
    shared_components=("outbox", "inbox", "idempotency", "cmdb"),
    consumers=consumers,
    background=_background,
    service_metrics=IncidentMetrics,
    description="Incidents, service requests and problems (ISO/IEC 20000-1 8.6).",
)
