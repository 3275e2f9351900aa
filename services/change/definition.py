"""The change service as the shared runtime runs it."""

from collections.abc import Sequence
from pathlib import Path

from services.change.application.approvals import run_escalations
from services.change.entrypoints import http_cab
from services.change.entrypoints.consumers import consumers
from services.change.metrics import ChangeMetrics
from services.change.settings import SERVICE, ChangeSettings
from shared.service import ServiceDefinition, ServiceRuntime
from shared.supervision import BackgroundTask


def _background(
    runtime: ServiceRuntime[ChangeSettings, ChangeMetrics],
) -> Sequence[BackgroundTask]:
    """The escalation of overdue approval steps (never an approval); safe in every replica."""
    pool, metrics = runtime.pool, runtime.service_metrics
    interval = runtime.settings.approval_escalation_interval_seconds
    return [
        BackgroundTask(
            "approval-escalation", lambda: run_escalations(pool, metrics, interval=interval)
        ),
    ]


DEFINITION: ServiceDefinition[ChangeSettings, ChangeMetrics] = ServiceDefinition(
    name=SERVICE.name,
    settings_class=ChangeSettings,
    migrations=Path(__file__).parent / "migrations",
    service_metrics=ChangeMetrics,
    routers=[http_cab.router],
    shared_components=("outbox", "inbox", "idempotency", "cmdb"),
    consumers=consumers,
    background=_background,
    description="Change management, release and deployment (ISO/IEC 20000-1 8.5).",
)
