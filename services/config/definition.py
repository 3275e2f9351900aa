"""The config service as the shared runtime runs it."""

from pathlib import Path

from services.config.entrypoints.baselines_http import router as baselines_router
from services.config.entrypoints.catalogue_http import router as catalogue_router
from services.config.entrypoints.cis_http import router as ci_router
from services.config.entrypoints.http import router
from services.config.entrypoints.imports_http import router as imports_router
from services.config.metrics import ConfigMetrics
from services.config.settings import ConfigSettings
from shared.service import ServiceDefinition

DEFINITION = ServiceDefinition(
    name="config",
    settings_class=ConfigSettings,
    migrations=Path(__file__).parent / "migrations",
    routers=[ci_router, catalogue_router, imports_router, baselines_router, router],
    service_metrics=ConfigMetrics,
    shared_components=("outbox", "inbox", "idempotency"),
    description=(
        "Configuration management, service catalogue and SLA policies"
        " (ISO/IEC 20000-1 8.2.6, 8.3.3)."
    ),
)
