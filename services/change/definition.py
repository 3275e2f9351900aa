"""The change service as the shared runtime runs it."""

from pathlib import Path

from services.change.entrypoints.consumers import consumers
from services.change.metrics import ChangeMetrics
from services.change.settings import SERVICE, ChangeSettings
from shared.service import ServiceDefinition

DEFINITION: ServiceDefinition[ChangeSettings, ChangeMetrics] = ServiceDefinition(
    name=SERVICE.name,
    settings_class=ChangeSettings,
    migrations=Path(__file__).parent / "migrations",
    service_metrics=ChangeMetrics,
    shared_components=("outbox", "inbox", "idempotency", "cmdb"),
    consumers=consumers,
    description="Change management, release and deployment (ISO/IEC 20000-1 8.5).",
)
