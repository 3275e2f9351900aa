"""The incident service as the shared runtime runs it."""

from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from services.incident.application.sla import run_scheduler
from services.incident.entrypoints import (
    alerts_http,
    problems_http,
    requests_http,
    settings_http,
)
from services.incident.entrypoints.consumers import consumers
from services.incident.entrypoints.http import router
from services.incident.metrics import IncidentMetrics
from services.incident.settings import IncidentSettings
from shared.service import ServiceDefinition, ServiceRuntime


def _background(runtime: ServiceRuntime) -> Sequence[Coroutine[Any, Any, None]]:
    """The SLA scheduler: warnings and breaches as they fall due (safe in every replica)."""
    metrics = runtime.service_metrics
    assert isinstance(metrics, IncidentMetrics)
    return [run_scheduler(runtime.pool, metrics)]


DEFINITION = ServiceDefinition(
    name="incident",
    settings_class=IncidentSettings,
    migrations=Path(__file__).parent / "migrations",
    routers=[
        router,
        requests_http.router,
        problems_http.router,
        alerts_http.router,
        settings_http.router,
    ],
    shared_components=("outbox", "inbox", "idempotency"),
    consumers=consumers,
    background=_background,
    service_metrics=IncidentMetrics,
    description="Incidents, service requests and problems (ISO/IEC 20000-1 8.6).",
)
