"""The config service as the shared runtime runs it."""

from pathlib import Path

from services.config.application.census import census_loop
from services.config.application.membership import sweep_loop
from services.config.entrypoints.baselines_http import router as baselines_router
from services.config.entrypoints.catalogue_http import router as catalogue_router
from services.config.entrypoints.change_control_http import router as change_control_router
from services.config.entrypoints.cis_http import router as ci_router
from services.config.entrypoints.consumers import consumers
from services.config.entrypoints.http import router
from services.config.entrypoints.imports_http import router as imports_router
from services.config.metrics import ConfigMetrics
from services.config.settings import SERVICE, ConfigSettings
from shared.service import ServiceDefinition, ServiceRuntime
from shared.supervision import BackgroundTask


def _background(runtime: ServiceRuntime[ConfigSettings, ConfigMetrics]) -> list[BackgroundTask]:
    settings = runtime.settings
    metrics = runtime.service_metrics
    pool, tenants = runtime.pool, runtime.metrics.tenant
    interval = settings.census_interval_seconds
    return [
        BackgroundTask("ci-census", lambda: census_loop(pool, metrics, tenants, interval)),
        BackgroundTask(
            "membership-sweep", lambda: sweep_loop(pool, settings.membership_sweep_seconds)
        ),
    ]


DEFINITION = ServiceDefinition(
    name=SERVICE.name,
    settings_class=ConfigSettings,
    migrations=Path(__file__).parent / "migrations",
    routers=[
        ci_router,
        catalogue_router,
        imports_router,
        baselines_router,
        change_control_router,
        router,
    ],
    service_metrics=ConfigMetrics,
    shared_components=("outbox", "inbox", "idempotency"),
    background=_background,
    consumers=consumers,
    description=(
        "Configuration management, service catalogue and SLA policies"
        " (ISO/IEC 20000-1 8.2.6, 8.3.3)."
    ),
)
