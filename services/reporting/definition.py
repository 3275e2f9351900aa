"""The reporting service as the shared runtime runs it."""

from pathlib import Path

from services.reporting.entrypoints.consumers import consumers
from services.reporting.entrypoints.http import router
from services.reporting.metrics import ReportingMetrics
from services.reporting.settings import SERVICE, ReportingSettings
from shared.service import ServiceDefinition

DEFINITION: ServiceDefinition[ReportingSettings, ReportingMetrics] = ServiceDefinition(
    name=SERVICE.name,
    settings_class=ReportingSettings,
    migrations=Path(__file__).parent / "migrations",
    service_metrics=ReportingMetrics,
    routers=[router],
    shared_components=("outbox", "inbox", "idempotency"),
    consumers=consumers,
    description="The ledger of every event, KPIs and service reports (ISO/IEC 20000-1 9.4).",
)
