"""The reporting service as the shared runtime runs it."""

from collections.abc import Sequence
from pathlib import Path

from services.reporting.application.completeness import run_completeness
from services.reporting.entrypoints import http_timeline
from services.reporting.entrypoints.consumers import consumers
from services.reporting.entrypoints.http import router
from services.reporting.metrics import ReportingMetrics
from services.reporting.settings import SERVICE, ReportingSettings
from shared.service import ServiceDefinition, ServiceRuntime
from shared.supervision import BackgroundTask


def _background(
    runtime: ServiceRuntime[ReportingSettings, ReportingMetrics],
) -> Sequence[BackgroundTask]:
    """The completeness task (gaps, and the timeline's index); safe in every replica."""
    pool = runtime.pool
    metrics = runtime.service_metrics
    interval = runtime.settings.completeness_interval_seconds
    return [
        BackgroundTask(
            "ledger-completeness", lambda: run_completeness(pool, metrics, interval=interval)
        ),
    ]


DEFINITION: ServiceDefinition[ReportingSettings, ReportingMetrics] = ServiceDefinition(
    name=SERVICE.name,
    settings_class=ReportingSettings,
    migrations=Path(__file__).parent / "migrations",
    service_metrics=ReportingMetrics,
    routers=[router, http_timeline.router],
    shared_components=("outbox", "inbox", "idempotency"),
    consumers=consumers,
    background=_background,
    description="The ledger of every event, KPIs and service reports (ISO/IEC 20000-1 9.4).",
)
