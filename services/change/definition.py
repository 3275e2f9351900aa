"""The change service as the shared runtime runs it."""

from collections.abc import Sequence
from pathlib import Path

from services.change.application.approvals import run_escalations
from services.change.application.census import census_loop
from services.change.entrypoints import (
    http_cab,
    http_deployments,
    http_feed_tokens,
    http_releases,
    http_webhooks,
)
from services.change.entrypoints.consumers import consumers
from services.change.entrypoints.http_changes import router as changes_router
from services.change.entrypoints.http_schedule import router as schedule_router
from services.change.entrypoints.http_settings import router as settings_router
from services.change.entrypoints.http_templates import router as templates_router
from services.change.metrics import ChangeMetrics
from services.change.settings import SERVICE, ChangeSettings
from shared.service import ServiceDefinition, ServiceRuntime
from shared.supervision import BackgroundTask


def _background(
    runtime: ServiceRuntime[ChangeSettings, ChangeMetrics],
) -> Sequence[BackgroundTask]:
    """The change census gauge, and the escalation of overdue approval steps (never an
    approval); both safe in every replica."""
    pool, metrics, tenants = runtime.pool, runtime.service_metrics, runtime.metrics.tenant
    census_every = runtime.settings.census_interval_seconds
    interval = runtime.settings.approval_escalation_interval_seconds
    return [
        BackgroundTask("change-census", lambda: census_loop(pool, metrics, tenants, census_every)),
        BackgroundTask(
            "approval-escalation", lambda: run_escalations(pool, metrics, interval=interval)
        ),
    ]


DEFINITION: ServiceDefinition[ChangeSettings, ChangeMetrics] = ServiceDefinition(
    name=SERVICE.name,
    settings_class=ChangeSettings,
    migrations=Path(__file__).parent / "migrations",
    routers=[
        changes_router,
        templates_router,
        settings_router,
        http_cab.router,
        schedule_router,
        http_feed_tokens.router,
        http_deployments.router,
        http_webhooks.router,
        http_releases.router,
    ],
    service_metrics=ChangeMetrics,
    shared_components=("outbox", "inbox", "idempotency", "cmdb"),
    consumers=consumers,
    background=_background,
    description="Change management, release and deployment (ISO/IEC 20000-1 8.5).",
)
