"""Service reports (ISO/IEC 20000-1 9.4) and the management-review pack (9.3).

Definitions are versioned records of the tenant (If-Match on every write), each version
announced by `ReportDefinitionSavedV1`. A report is a job: asked for on demand
(`request_report`, `request_management_review`) or queued by the scheduler, then built by the
runner of any replica (a lease; a replica that dies leaves the job to another). Building takes
the figures through the readers (`KpiReader`, `ServiceLevelReader`: constructor arguments of
`ReportBuilder`), renders JSON, CSV, HTML (and a PDF when Chromium is configured), stores every
format with its SHA-256 and writes `ReportGeneratedV1` to the outbox in the same transaction,
so each report is an entry of the tenant's log naming the checkpoint it was computed from.

The scheduler is safe in every replica: a scheduled report is one row per (definition, period)
under a unique index, so whichever replica gets there first queues it and the others insert
nothing; it looks back `catch_up_days`, so the reports due while the service was down are
made when it is back.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import shutil
import tempfile
import time as monotonic
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg

from services.reporting.adapters import reports as store
from services.reporting.adapters.reports import StoredDefinition, StoredReport
from services.reporting.application.report_sources import KpiReader, ServiceLevelReader
from services.reporting.domain import report_render
from services.reporting.domain.report_data import (
    Basis,
    KpiDefinition,
    KpiQuery,
    PeriodKind,
    instants_of,
)
from services.reporting.domain.reports import (
    MAX_TREND,
    MEDIA_TYPES,
    Format,
    ReportContent,
    ReportDefinition,
    ReportKind,
    ReportSpec,
    Schedule,
    ShownKpi,
    parse_period,
    period_due,
    run_instants,
    series_of,
    trend,
    unknown_kpis,
)
from services.reporting.metrics import ReportingMetrics
from shared.context import RequestContext
from shared.db import all_tenants_transaction, tenant_transaction
from shared.errors import FieldError, NotFound, StaleVersion, ValidationFailed, invalid_field
from shared.events.reporting import ReportDefinitionSavedV1, ReportGeneratedV1
from shared.outbox import writer

logger = logging.getLogger(__name__)

SCHEDULER_ACTOR = "system:report-scheduler"
LEASE_SECONDS = 120.0
MAX_ATTEMPTS = 5
# The root hash of an empty log (RFC 9162: the hash of the empty string), for a tenant whose
# log has no checkpoint yet.
EMPTY_ROOT = base64.b64encode(hashlib.sha256(b"").digest()).decode("ascii")


@dataclass(frozen=True)
class ReportSources:
    """The readers a report takes its figures through."""

    kpis: KpiReader
    levels: ServiceLevelReader


Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def definition_subject(definition_id: str) -> str:
    """The aggregate (CloudEvents subject) of a definition's events."""
    return f"report-definition/{definition_id}"


def report_subject(report_id: uuid.UUID) -> str:
    """The aggregate (CloudEvents subject) of a report's event."""
    return f"report/{report_id}"


# --- definitions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DefinitionInput:
    """What a caller sends for a definition (checked by `checked_definition`)."""

    spec: ReportSpec
    schedule: Schedule
    schedule_time: time


def zone_of(name: str, field: str = "time_zone") -> ZoneInfo:
    """The IANA time zone; 422 naming the field when unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise invalid_field(field, f"unknown IANA time zone {name!r}") from None


def checked_definition(given: DefinitionInput, known: Sequence[KpiDefinition]) -> DefinitionInput:
    """The input when its KPIs are known and its time zone exists; 422 naming each bad field."""
    errors = [
        FieldError(f"kpis.{i}.id", f"unknown KPI {given.spec.kpis[i].id!r}")
        for i in unknown_kpis(given.spec.kpis, known)
    ]
    ids = [k.id for k in given.spec.kpis]
    if len(set(ids)) != len(ids):
        errors.append(FieldError("kpis", "a KPI is shown once"))
    if errors:
        raise ValidationFailed(errors)
    zone_of(given.spec.time_zone)
    return given


def definition_json(stored: StoredDefinition) -> dict[str, Any]:
    """A definition as the API shows it (and its event carries)."""
    d = stored.definition
    return {
        "id": d.id,
        "version": d.version,
        **store.spec_json(d.spec),
        "schedule": {"every": d.schedule, "local_time": d.schedule_time.strftime("%H:%M")},
        "deleted": d.deleted,
        "created_at": stored.created_at.isoformat(),
        "created_by": stored.created_by,
        "updated_at": stored.updated_at.isoformat(),
        "updated_by": stored.updated_by,
    }


async def _announce(conn: Any, stored: StoredDefinition, context: RequestContext) -> None:
    await writer.append(
        conn,
        ReportDefinitionSavedV1(
            definition=definition_json(stored), deleted=stored.definition.deleted
        ),
        subject=definition_subject(stored.definition.id),
        tenant_id=context.tenant_id,
        sequence=stored.definition.version,
        actor=context.actor,
        correlation_id=context.correlation_id or None,
    )


async def create_definition(
    pool: asyncpg.Pool,
    context: RequestContext,
    given: DefinitionInput,
    kpis: KpiReader,
    *,
    now: datetime | None = None,
) -> StoredDefinition:
    """A new report definition (version 1), announced."""
    checked = checked_definition(given, kpis.definitions())
    definition = ReportDefinition(
        id=str(uuid.uuid4()),
        version=1,
        spec=checked.spec,
        schedule=checked.schedule,
        schedule_time=checked.schedule_time,
    )
    async with tenant_transaction(pool, context.tenant_id) as conn:
        stored = await store.insert_definition(
            conn, context.tenant_id, definition, now or utc_now(), context.actor
        )
        await _announce(conn, stored, context)
    return stored


async def _current(conn: Any, definition_id: uuid.UUID, expected: int) -> StoredDefinition:
    current = await store.get_definition(conn, definition_id, lock=True)
    if current is None or current.definition.deleted:
        raise NotFound("report definition", str(definition_id))
    if current.definition.version != expected:
        raise StaleVersion("the report definition", current.definition.version, expected)
    return current


async def update_definition(
    pool: asyncpg.Pool,
    context: RequestContext,
    definition_id: uuid.UUID,
    given: DefinitionInput,
    kpis: KpiReader,
    *,
    expected_version: int,
    now: datetime | None = None,
) -> StoredDefinition:
    """Replace a definition if the caller read its current version; announced."""
    checked = checked_definition(given, kpis.definitions())
    async with tenant_transaction(pool, context.tenant_id) as conn:
        current = await _current(conn, definition_id, expected_version)
        definition = replace(
            current.definition,
            version=current.definition.version + 1,
            spec=checked.spec,
            schedule=checked.schedule,
            schedule_time=checked.schedule_time,
        )
        stored = await store.update_definition(conn, definition, now or utc_now(), context.actor)
        await _announce(conn, stored, context)
    return stored


async def delete_definition(
    pool: asyncpg.Pool,
    context: RequestContext,
    definition_id: uuid.UUID,
    *,
    expected_version: int,
    now: datetime | None = None,
) -> StoredDefinition:
    """Retire a definition (a new version marked deleted: its reports stay); announced."""
    async with tenant_transaction(pool, context.tenant_id) as conn:
        current = await _current(conn, definition_id, expected_version)
        definition = replace(
            current.definition, version=current.definition.version + 1, deleted=True
        )
        stored = await store.update_definition(conn, definition, now or utc_now(), context.actor)
        await _announce(conn, stored, context)
    return stored


async def get_definition(
    pool: asyncpg.Pool, tenant_id: str, definition_id: uuid.UUID
) -> StoredDefinition:
    """A definition of the tenant not deleted; 404 otherwise."""
    async with tenant_transaction(pool, tenant_id, readonly=True) as conn:
        found = await store.get_definition(conn, definition_id)
    if found is None or found.definition.deleted:
        raise NotFound("report definition", str(definition_id))
    return found


# --- asking for reports -------------------------------------------------------------------------


async def _queue(
    conn: Any,
    tenant_id: str,
    *,
    kind: ReportKind,
    definition: ReportDefinition | None,
    spec: ReportSpec,
    period_start: date,
    trigger: str,
    requested_by: str,
) -> StoredReport | None:
    try:
        period = parse_period(spec.period_kind, period_start)
    except ValueError as exc:
        raise invalid_field("period_start", str(exc)) from None
    period_from, period_to = instants_of(period, zone_of(spec.time_zone))
    return await store.insert_report(
        conn,
        uuid.uuid4(),
        tenant_id,
        kind=kind,
        definition_id=None if definition is None else uuid.UUID(definition.id),
        definition_version=None if definition is None else definition.version,
        spec=store.spec_json(spec),
        period_kind=period.kind,
        period_start=period.start,
        period_label=period.label,
        period_from=period_from,
        period_to=period_to,
        trigger=trigger,
        requested_by=requested_by,
    )


async def request_report(
    pool: asyncpg.Pool, context: RequestContext, definition_id: uuid.UUID, period_start: date
) -> StoredReport:
    """Queue a report of a definition for the period that starts on `period_start`."""
    async with tenant_transaction(pool, context.tenant_id) as conn:
        found = await store.get_definition(conn, definition_id)
        if found is None or found.definition.deleted:
            raise NotFound(
                "report definition",
                str(definition_id),
                fields=[FieldError("definition_id", "no such definition")],
            )
        report = await _queue(
            conn,
            context.tenant_id,
            kind="service_report",
            definition=found.definition,
            spec=found.definition.spec,
            period_start=period_start,
            trigger="on_demand",
            requested_by=context.actor,
        )
    assert report is not None  # an on-demand report never conflicts
    return report


def review_spec(
    known: Sequence[KpiDefinition],
    period_kind: PeriodKind,
    trend_periods: int,
    time_zone: str,
    formats: Sequence[Format],
) -> ReportSpec:
    """The management-review pack: every KPI of every process, all services."""
    return ReportSpec(
        name="Management review",
        audience="top management",
        services=(),
        period_kind=period_kind,
        kpis=tuple(ShownKpi(d.id) for d in sorted(known, key=lambda d: (d.process, d.id))),
        trend_periods=trend_periods,
        formats=tuple(formats),
        time_zone=time_zone,
    )


async def request_management_review(
    pool: asyncpg.Pool,
    context: RequestContext,
    kpis: KpiReader,
    *,
    period_kind: PeriodKind,
    period_start: date,
    trend_periods: int,
    time_zone: str,
    formats: Sequence[Format],
) -> StoredReport:
    """Queue the management-review pack (ISO/IEC 20000-1 9.3) for a period."""
    zone_of(time_zone)
    spec = review_spec(kpis.definitions(), period_kind, trend_periods, time_zone, formats)
    async with tenant_transaction(pool, context.tenant_id) as conn:
        report = await _queue(
            conn,
            context.tenant_id,
            kind="management_review",
            definition=None,
            spec=spec,
            period_start=period_start,
            trigger="on_demand",
            requested_by=context.actor,
        )
    assert report is not None
    return report


async def report_status(pool: asyncpg.Pool, tenant_id: str, report_id: uuid.UUID) -> StoredReport:
    """A report of the tenant; 404 otherwise."""
    async with tenant_transaction(pool, tenant_id, readonly=True) as conn:
        found = await store.get_report(conn, report_id)
    if found is None:
        raise NotFound("report", str(report_id))
    return found


# --- building -----------------------------------------------------------------------------------


class ReportBuilder:
    """Gathers a report's figures through the readers and arranges them for rendering."""

    def __init__(self, kpis: KpiReader, levels: ServiceLevelReader) -> None:
        self.kpis = kpis
        self.levels = levels

    def _query(self, spec: ReportSpec, start: date, count: int) -> KpiQuery:
        return KpiQuery(
            kpis=[k.id for k in spec.kpis],
            period=spec.period_kind,
            start=start,
            count=count,
            services=list(spec.services) or None,
            targets={k.id: k.target for k in spec.kpis if k.target is not None},
        )

    async def content(
        self,
        conn: Any,
        tenant_id: str,
        *,
        report_id: str,
        kind: ReportKind,
        spec: ReportSpec,
        period_start: date,
        generated_at: datetime,
        definition_id: str | None = None,
        definition_version: int | None = None,
    ) -> ReportContent:
        """One tenant's report: KPIs over the trend, and for a management review (or a report
        naming services) availability, SLA results, improvement actions and audit findings."""
        period = parse_period(spec.period_kind, period_start)
        periods = trend(period, spec.trend_periods)
        query = self._query(spec, periods[0].start, len(periods))
        basis = await self.kpis.basis(conn, tenant_id)
        points = await self.kpis.series(conn, tenant_id, query) if spec.kpis else []
        services = list(spec.services) or None
        review = kind == "management_review"
        availability = (
            await self.levels.availability(
                conn, tenant_id, services, spec.period_kind, periods[0].start, len(periods)
            )
            if review or services
            else []
        )
        sla = (
            await self.levels.sla_results(conn, tenant_id, spec.period_kind, period.start, 1)
            if review or services
            else []
        )
        actions = await self.levels.improvement_actions(conn, tenant_id) if review else []
        findings = await self.levels.audit_findings(conn, tenant_id) if review else []
        period_from, period_to = instants_of(period, zone_of(spec.time_zone))
        return ReportContent(
            kind=kind,
            report_id=report_id,
            title=spec.name,
            audience=spec.audience,
            tenants=(tenant_id,),
            services=spec.services,
            period=period,
            periods=tuple(periods),
            period_from=period_from,
            period_to=period_to,
            time_zone=spec.time_zone,
            generated_at=generated_at,
            bases={tenant_id: basis},
            series=tuple(series_of(self.kpis.definitions(), spec.kpis, periods, points)),
            availability=tuple(availability),
            sla=tuple(sla),
            actions=tuple(actions),
            findings=tuple(findings),
            definition_id=definition_id,
            definition_version=definition_version,
        )

    async def across(
        self,
        conn: Any,
        tenants: Sequence[str],
        bases: dict[str, Basis | None],
        *,
        spec: ReportSpec,
        period_start: date,
        generated_at: datetime,
    ) -> ReportContent:
        """The KPIs of several tenants together (a provider's view): over the union of their
        records, never averaged per tenant."""
        period = parse_period(spec.period_kind, period_start)
        periods = trend(period, spec.trend_periods)
        query = self._query(spec, periods[0].start, len(periods))
        points = await self.kpis.series_across(conn, tenants, query) if spec.kpis else []
        period_from, period_to = instants_of(period, zone_of(spec.time_zone))
        return ReportContent(
            kind="service_report",
            report_id="across:" + ",".join(tenants),
            title=spec.name,
            audience=spec.audience,
            tenants=tuple(tenants),
            services=spec.services,
            period=period,
            periods=tuple(periods),
            period_from=period_from,
            period_to=period_to,
            time_zone=spec.time_zone,
            generated_at=generated_at,
            bases=bases,
            series=tuple(series_of(self.kpis.definitions(), spec.kpis, periods, points)),
            notes=("Aggregated over the records of the tenants named; not stored.",),
        )


def render(content: ReportContent, formats: Sequence[str]) -> dict[str, bytes]:
    """The formats other than PDF (which needs the HTML and a browser)."""
    out: dict[str, bytes] = {}
    if "json" in formats:
        out["json"] = report_render.to_json(content)
    if "csv" in formats:
        out["csv"] = report_render.to_csv(content)
    if "html" in formats or "pdf" in formats:
        out["html"] = report_render.to_html(content)
    return out


class PdfPrinter:
    """Prints an HTML page to PDF with headless Chromium (`chromium --headless --print-to-pdf`)."""

    def __init__(self, chromium: str, timeout_seconds: float = 60.0) -> None:
        self.chromium = chromium
        self.timeout_seconds = timeout_seconds

    @staticmethod
    def found(configured: str | None) -> PdfPrinter | None:
        """A printer for the configured browser, if it exists."""
        if not configured:
            return None
        path = shutil.which(configured)
        return None if path is None else PdfPrinter(path)

    async def print(self, page: bytes) -> bytes:
        """The page as PDF (JavaScript off: the page has none, and needs none)."""
        with tempfile.TemporaryDirectory(prefix="report-pdf-") as scratch:
            source = Path(scratch) / "report.html"
            target = Path(scratch) / "report.pdf"
            source.write_bytes(page)
            process = await asyncio.create_subprocess_exec(
                self.chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-javascript",
                "--no-pdf-header-footer",
                f"--user-data-dir={scratch}/profile",
                f"--print-to-pdf={target}",
                source.as_uri(),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            try:
                _, err = await asyncio.wait_for(process.communicate(), self.timeout_seconds)
            except TimeoutError:
                process.kill()
                await process.wait()
                raise RuntimeError("chromium did not print the report in time") from None
            if process.returncode != 0 or not target.exists():
                raise RuntimeError(
                    f"chromium failed to print: {err.decode(errors='replace')[-500:]}"
                )
            return target.read_bytes()


Progress = Callable[[int, int], Awaitable[None]]


class ReportRunner:
    """Builds queued reports: claims, gathers, renders, stores, announces."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        sources: Callable[[], ReportSources],
        metrics: ReportingMetrics | None = None,
        *,
        printer: PdfPrinter | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.pool = pool
        self.sources = sources
        self.metrics = metrics
        self.printer = printer
        self.clock = clock

    async def run_pending(self) -> int:
        """One pass over the claimable reports; how many finished."""
        async with all_tenants_transaction(self.pool) as conn:
            found = await store.claimable(conn)
        finished = 0
        for report_id, tenant_id in found:
            if await self.run(report_id, tenant_id) is not None:
                finished += 1
        return finished

    async def run(self, report_id: uuid.UUID, tenant_id: str) -> StoredReport | None:
        """Claim and build one report; the finished report, None if held or failed."""
        async with tenant_transaction(self.pool, tenant_id) as conn:
            report = await store.claim(conn, report_id, LEASE_SECONDS)
        if report is None:
            return None
        started = monotonic.perf_counter()
        try:
            built = await self._build(report)
        except Exception as exc:  # a report's failure is recorded, not raised
            logger.exception("report generation failed", extra={"report_id": str(report_id)})
            async with tenant_transaction(self.pool, tenant_id) as conn:
                reason = f"{type(exc).__name__}: {exc}"
                if report.attempts >= MAX_ATTEMPTS:
                    await store.fail(conn, report_id, reason)
                else:
                    await store.release(conn, report_id, reason)
            return None
        if self.metrics is not None:
            self.metrics.reports_generated.labels(report.kind, report.trigger).inc()
            self.metrics.report_duration.labels(report.kind).observe(
                monotonic.perf_counter() - started
            )
        return built

    async def _step(self, report: StoredReport, done: int, total: int) -> None:
        async with tenant_transaction(self.pool, report.tenant_id) as conn:
            await store.progress(conn, report.id, done, total, LEASE_SECONDS)

    async def _build(self, report: StoredReport) -> StoredReport:
        sources = self.sources()
        spec = store.spec_of(report.spec)
        formats = list(spec.formats)
        want_pdf = "pdf" in formats and self.printer is not None
        total = 3 + (1 if want_pdf else 0)
        builder = ReportBuilder(sources.kpis, sources.levels)
        await self._step(report, 0, total)
        async with tenant_transaction(self.pool, report.tenant_id, readonly=True) as conn:
            content = await builder.content(
                conn,
                report.tenant_id,
                report_id=str(report.id),
                kind="management_review"
                if report.kind == "management_review"
                else "service_report",
                spec=spec,
                period_start=report.period_start,
                generated_at=self.clock(),
                definition_id=None if report.definition_id is None else str(report.definition_id),
                definition_version=report.definition_version,
            )
        await self._step(report, 1, total)
        rendered = render(content, formats)
        # The HTML is rendered for the PDF too; it is kept only when asked for.
        page = rendered["html"] if "html" in formats else rendered.pop("html", None)
        await self._step(report, 2, total)
        if want_pdf and self.printer is not None and page is not None:
            rendered["pdf"] = await self.printer.print(page)
            await self._step(report, 3, total)
        files = {
            fmt: (content_bytes, MEDIA_TYPES[fmt], hashlib.sha256(content_bytes).hexdigest())
            for fmt, content_bytes in rendered.items()
        }
        basis = content.bases.get(report.tenant_id)
        tree_size = 0 if basis is None else basis.tree_size
        root_hash = EMPTY_ROOT if basis is None else basis.root_hash
        async with tenant_transaction(self.pool, report.tenant_id) as conn:
            await store.finish(conn, report.id, report.tenant_id, files, tree_size, root_hash)
            await writer.append(
                conn,
                ReportGeneratedV1(
                    report_id=str(report.id),
                    kind=report.kind,
                    definition_id=None
                    if report.definition_id is None
                    else str(report.definition_id),
                    definition_version=report.definition_version,
                    period_from=report.period_from,
                    period_to=report.period_to,
                    trigger=report.trigger,
                    formats={fmt: digest for fmt, (_, _, digest) in files.items()},
                    tree_size=tree_size,
                    root_hash=root_hash,
                ),
                subject=report_subject(report.id),
                tenant_id=report.tenant_id,
                sequence=1,
                actor=report.requested_by,
            )
            finished = await store.get_report(conn, report.id)
        assert finished is not None
        return finished


class ReportScheduler:
    """Queues the scheduled reports that are due (and those missed while the service was down,
    up to `catch_up_days` back): once per (definition, period), whichever replica runs it."""

    def __init__(
        self, pool: asyncpg.Pool, *, clock: Clock = utc_now, catch_up_days: int = 35
    ) -> None:
        self.pool = pool
        self.clock = clock
        self.catch_up_days = catch_up_days

    async def run_once(self) -> int:
        """Queue what is due now; how many reports this call queued."""
        now = self.clock()
        async with all_tenants_transaction(self.pool) as conn:
            definitions = await store.scheduled_definitions(conn)
        queued = 0
        for stored in definitions:
            d = stored.definition
            try:
                zone = ZoneInfo(d.spec.time_zone)
            except (ZoneInfoNotFoundError, ValueError):
                logger.warning("report definition with an unknown time zone", extra={"id": d.id})
                continue
            since = max(stored.created_at, now - timedelta(days=self.catch_up_days))
            due = {
                period_due(d.spec.period_kind, instant, zone).start
                for instant in run_instants(d.schedule, d.schedule_time, zone, since, now)
            }
            if not due:
                continue
            async with tenant_transaction(self.pool, stored.tenant_id) as conn:
                for start in sorted(due):
                    made = await _queue(
                        conn,
                        stored.tenant_id,
                        kind="service_report",
                        definition=d,
                        spec=d.spec,
                        period_start=start,
                        trigger="schedule",
                        requested_by=SCHEDULER_ACTOR,
                    )
                    queued += made is not None
        return queued


class ServiceReports:
    """The background task of every replica: schedule what is due, build what is queued."""

    def __init__(
        self,
        scheduler: ReportScheduler,
        runner: ReportRunner,
        *,
        poll_seconds: float = 1.0,
    ) -> None:
        self.scheduler = scheduler
        self.runner = runner
        self.poll_seconds = poll_seconds

    async def run_forever(self) -> None:
        """Rounds until cancelled; a database hiccup waits for the next round."""
        while True:
            try:
                await self.scheduler.run_once()
                await self.runner.run_pending()
            except (OSError, asyncpg.PostgresError):
                logger.exception("service report round failed; retrying")
            await asyncio.sleep(self.poll_seconds)


def check_trend(value: int, field: str = "trend_periods") -> int:
    """A trend length the API accepts."""
    if not 0 <= value <= MAX_TREND:
        raise invalid_field(field, f"between 0 and {MAX_TREND}")
    return value
