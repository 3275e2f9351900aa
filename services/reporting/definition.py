"""The reporting service as the shared runtime runs it."""

from collections.abc import Sequence
from pathlib import Path

from services.reporting.application.checkpoints import (
    Checkpointer,
    LedgerConfiguration,
    signer_of,
)
from services.reporting.application.completeness import run_completeness
from services.reporting.application.evidence import ExportRunner
from services.reporting.application.kpis import run_kpi_metrics, run_kpis
from services.reporting.application.reports import (
    PdfPrinter,
    ReportRunner,
    ReportScheduler,
    ServiceReports,
)
from services.reporting.application.selfcheck import SelfCheck
from services.reporting.application.service_levels import (
    ServiceLevels,
    run_projections,
    run_review,
)
from services.reporting.entrypoints import (
    http_evidence,
    http_kpis,
    http_log,
    http_reports,
    http_service_levels,
    http_timeline,
)
from services.reporting.entrypoints.consumers import consumers
from services.reporting.entrypoints.http import router
from services.reporting.metrics import ReportingMetrics
from services.reporting.report_wiring import report_sources
from services.reporting.settings import SERVICE, ReportingSettings
from shared.service import ServiceDefinition, ServiceRuntime
from shared.supervision import BackgroundTask


def _background(
    runtime: ServiceRuntime[ReportingSettings, ReportingMetrics],
) -> Sequence[BackgroundTask]:
    """The checkpointer (signs each tenant's log as it grows), the self-check (verifies new
    entries against the newest checkpoints), the completeness task (gaps, the timeline's
    index), the evidence export runner (takes queued export jobs, and those whose worker
    died), service level management's projections (from the ledger, up to each tenant's
    newest checkpoint) and review (improvement actions for missed targets, availability
    gauges), the KPI projection (folds each new checkpoint's entries) and the KPI gauge, and the
    service reports (queues scheduled reports once per definition and period, builds queued
    ones); all are safe in every replica. Serving needs the ledger's
    signing key: without it, start-up fails here."""
    settings = runtime.settings
    checkpointer = Checkpointer(
        runtime.pool,
        signer_of(settings),
        LedgerConfiguration.of(settings),
        runtime.service_metrics,
        runtime.metrics.tenant,
    )
    exports = ExportRunner(
        runtime.pool,
        Checkpointer(
            runtime.pool,
            signer_of(settings),
            LedgerConfiguration.of(settings),
            runtime.service_metrics,
            runtime.metrics.tenant,
        ),
        settings.ledger_origin,
    )
    service_reports = ServiceReports(
        ReportScheduler(runtime.pool, catch_up_days=settings.report_catch_up_days),
        ReportRunner(
            runtime.pool,
            lambda: report_sources(runtime),
            runtime.service_metrics,
            printer=PdfPrinter.found(settings.report_chromium),
        ),
        poll_seconds=settings.report_poll_seconds,
    )
    selfcheck = SelfCheck(runtime.pool, runtime.service_metrics, settings.verify_interval_seconds)
    return [
        BackgroundTask("ledger-checkpointer", checkpointer.run_forever),
        BackgroundTask("ledger-selfcheck", selfcheck.run_forever),
        BackgroundTask(
            "ledger-completeness",
            lambda: run_completeness(
                runtime.pool,
                runtime.service_metrics,
                interval=settings.completeness_interval_seconds,
            ),
        ),
        BackgroundTask("evidence-exports", exports.run_forever),
        BackgroundTask("service-reports", service_reports.run_forever),
        BackgroundTask(
            "service-level-projections",
            lambda: run_projections(
                runtime.pool,
                runtime.service_metrics,
                interval=settings.service_level_interval_seconds,
            ),
        ),
        BackgroundTask(
            "service-level-review",
            lambda: run_review(
                runtime.pool,
                ServiceLevels(http_service_levels.defaults_of(settings)),
                runtime.service_metrics,
                interval=settings.service_level_review_seconds,
            ),
        ),
        BackgroundTask(
            "kpi-projection",
            lambda: run_kpis(
                runtime.pool, runtime.service_metrics, interval=settings.kpi_interval_seconds
            ),
        ),
        BackgroundTask(
            "kpi-metrics",
            lambda: run_kpi_metrics(
                runtime.pool,
                runtime.service_metrics,
                settings.kpi_zone,
                settings.kpi_metrics_services,
                runtime.metrics.tenant.listed,
                interval=settings.kpi_metrics_interval_seconds,
            ),
        ),
    ]


DEFINITION: ServiceDefinition[ReportingSettings, ReportingMetrics] = ServiceDefinition(
    name=SERVICE.name,
    settings_class=ReportingSettings,
    migrations=Path(__file__).parent / "migrations",
    service_metrics=ReportingMetrics,
    routers=[
        router,
        http_log.router,
        http_timeline.router,
        http_evidence.router,
        http_reports.router,
        http_service_levels.router,
        http_kpis.router,
    ],
    shared_components=("outbox", "inbox", "idempotency"),
    consumers=consumers,
    background=_background,
    description="The ledger of every event, KPIs and service reports (ISO/IEC 20000-1 9.4).",
)
