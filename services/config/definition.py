"""The config service as the shared runtime runs it."""

from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from services.config.application.census import census_loop
from services.config.application.membership import sweep_loop
from services.config.entrypoints.baselines_http import router as baselines_router
from services.config.entrypoints.catalogue_http import router as catalogue_router
from services.config.entrypoints.cis_http import router as ci_router
from services.config.entrypoints.http import router
from services.config.entrypoints.imports_http import router as imports_router
from services.config.metrics import ConfigMetrics
from services.config.settings import ConfigSettings
from shared.service import ServiceDefinition, ServiceRuntime


def _background(runtime: ServiceRuntime) -> list[Coroutine[Any, Any, None]]:
    settings = runtime.settings
    assert isinstance(settings, ConfigSettings)
    assert isinstance(runtime.service_metrics, ConfigMetrics)
    interval = settings.census_interval_seconds
    census = census_loop(runtime.pool, runtime.service_metrics, runtime.metrics.tenant, interval)
    sweep = sweep_loop(runtime.pool, settings.membership_sweep_seconds)
    return [census, sweep]


DEFINITION = ServiceDefinition(
    name="config",
    settings_class=ConfigSettings,
    migrations=Path(__file__).parent / "migrations",
    routers=[ci_router, catalogue_router, imports_router, baselines_router, router],
    service_metrics=ConfigMetrics,
    shared_components=("outbox", "inbox", "idempotency"),
    background=_background,
    description=(
        "Configuration management, service catalogue and SLA policies"
        " (ISO/IEC 20000-1 8.2.6, 8.3.3)."
    ),
)
