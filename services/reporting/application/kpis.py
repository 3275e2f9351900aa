"""KPIs kept up to date from the ledger, read by the API and the report builder.

The KPI task (every `kpi_interval_seconds`, in every replica) finds the tenants whose newest
signed checkpoint is beyond their folded size and folds each one's entries up to that
checkpoint, in log order, in one transaction: the facts touched, then the progress row that
names the checkpoint. So the projection always stands exactly on a checkpoint, and every figure
names it (`basis`). A replica holding a tenant's progress row makes the others skip the tenant
(`FOR UPDATE SKIP LOCKED`); the rebuild command holds it while it resets and folds again
(in memory: from nothing, each fact written once when the log is folded), in one transaction,
so readers keep seeing the old figures and their basis until it commits.

`KpiProjection` implements `report_sources.KpiReader`: the figures are computed by the domain's
`evaluate` from the facts of the periods asked, read in one statement with their basis.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import date, datetime
from itertools import islice
from zoneinfo import ZoneInfo

import asyncpg

from services.reporting.adapters import checkpoints as checkpoint_store
from services.reporting.adapters import kpis as store
from services.reporting.application.report_sources import KpiReader
from services.reporting.domain import kpis
from services.reporting.domain.report_data import (
    Basis,
    KpiDefinition,
    KpiPoint,
    KpiQuery,
    PeriodKind,
    period_of,
)
from services.reporting.metrics import ReportingMetrics
from shared.db import Connection, all_tenants_transaction, set_tenant, tenant_transaction
from shared.supervision import PerTenant

log = logging.getLogger(__name__)

# Ledger entries read and folded per statement round inside a tenant's transaction.
CHUNK = 5000

# Called with the entries folded so far (a command's progress bar).
OnProgress = Callable[[int], Awaitable[None] | None]


async def fold_tenant(
    conn: Connection,
    tenant_id: str,
    *,
    reset: bool = False,
    on_progress: OnProgress | None = None,
) -> int | None:
    """Inside a transaction set to the tenant: fold its entries up to its newest signed
    checkpoint (from the start when `reset`). The entries folded; None when another process
    holds the tenant."""
    progress = await store.lock_progress(conn, tenant_id)
    if progress is None:
        return None
    await store.plan_for_parameters(conn)
    if reset:
        await store.reset(conn, tenant_id)
        progress = store.Progress(0, None, 0.0)
    checkpoint = await checkpoint_store.latest(conn, tenant_id)
    if checkpoint is None or checkpoint.tree_size <= progress.tree_size:
        return 0
    if reset:
        done, as_of = await _fold_afresh(conn, tenant_id, checkpoint.tree_size, on_progress)
        await store.save_progress(
            conn, tenant_id, store.Progress(checkpoint.tree_size, checkpoint.root_hash, as_of)
        )
        return done
    as_of = progress.as_of
    done = 0
    for start in range(progress.tree_size, checkpoint.tree_size, CHUNK):
        end = min(start + CHUNK, checkpoint.tree_size)
        events = await store.events(conn, tenant_id, start, end)
        if len(events) != end - start:
            raise RuntimeError(f"the log of {tenant_id} lacks entries in [{start}, {end})")
        keys = {key for event in events for key in kpis.touches(event)}
        facts = await store.load(conn, tenant_id, keys)
        changed: set[kpis.Key] = set()
        for event in events:
            changed.update(kpis.fold(facts, event))
            as_of = max(as_of, event.time.timestamp())
        await store.save(conn, tenant_id, [facts[key] for key in changed])
        done += len(events)
        if on_progress is not None:
            shown = on_progress(done)
            if shown is not None:
                await shown
    await store.save_progress(
        conn, tenant_id, store.Progress(checkpoint.tree_size, checkpoint.root_hash, as_of)
    )
    return done


# A rebuild keeps at most this many facts in memory (about 2.5 KB each in Python: ~250 MB);
# beyond it, the changed ones are written and the least recently touched half dropped.
REBUILD_FACTS_IN_MEMORY = 100_000


async def _fold_afresh(
    conn: Connection, tenant_id: str, size: int, on_progress: OnProgress | None
) -> tuple[int, float]:
    """A rebuild's fold (the tenant's facts just deleted): every entry below `size` folded with
    the facts kept in memory across chunks, each changed fact written when the log is folded
    (plain inserts: nothing is there to replace) or when memory is full. Storing and re-reading
    the facts every chunk left a dead row version per rewrite in the rebuild's one transaction.
    Folding from stored facts equals folding the whole log (`kpis.fold_all`), so the facts
    dropped from memory are read again if a later entry touches them. The entries folded and
    the newest event time."""
    facts: dict[kpis.Key, kpis.Fact] = {}  # in order of last touch
    changed: set[kpis.Key] = set()
    stored: set[kpis.Key] = set()
    as_of = 0.0
    done = 0
    for start in range(0, size, CHUNK):
        end = min(start + CHUNK, size)
        events = await store.events(conn, tenant_id, start, end)
        if len(events) != end - start:
            raise RuntimeError(f"the log of {tenant_id} lacks entries in [{start}, {end})")
        keys = {key for event in events for key in kpis.touches(event)}
        facts.update(
            await store.load(conn, tenant_id, (k for k in keys - facts.keys() if k in stored))
        )
        for key in keys & facts.keys():
            facts[key] = facts.pop(key)
        for event in events:
            changed.update(kpis.fold(facts, event))
            as_of = max(as_of, event.time.timestamp())
        if len(facts) > REBUILD_FACTS_IN_MEMORY:
            await _write(conn, tenant_id, facts, changed, stored)
            for key in list(islice(facts, len(facts) - REBUILD_FACTS_IN_MEMORY // 2)):
                del facts[key]
        done += len(events)
        if on_progress is not None:
            shown = on_progress(done)
            if shown is not None:
                await shown
    await _write(conn, tenant_id, facts, changed, stored)
    return done, as_of


async def _write(
    conn: Connection,
    tenant_id: str,
    facts: dict[kpis.Key, kpis.Fact],
    changed: set[kpis.Key],
    stored: set[kpis.Key],
) -> None:
    """Write the changed facts (inserted when new to the table, else replaced)."""
    await store.insert_new(conn, tenant_id, [facts[k] for k in changed if k not in stored])
    await store.save(conn, tenant_id, [facts[k] for k in changed if k in stored])
    stored.update(changed)
    changed.clear()


async def fold_round(
    pool: asyncpg.Pool,
    metrics: ReportingMetrics | None = None,
    tenants_apart: PerTenant | None = None,
) -> int:
    """One round of the task: every tenant behind its newest checkpoint is caught up (one
    transaction each; a tenant that fails is logged and counted, and the others go on). The
    entries folded."""
    apart = tenants_apart or PerTenant("kpi-projection")
    async with all_tenants_transaction(pool) as conn:
        tenants = await store.behind(conn)
    folded = 0
    for tenant_id, _ in tenants:

        async def fold(tenant_id: str = tenant_id) -> int | None:
            async with tenant_transaction(pool, tenant_id) as conn:
                return await fold_tenant(conn, tenant_id)

        folded += await apart.run(tenant_id, fold)
    if metrics is not None and folded:
        metrics.kpi_entries.inc(folded)
    return folded


async def run_kpis(
    pool: asyncpg.Pool, metrics: ReportingMetrics | None = None, *, interval: float = 2.0
) -> None:
    """Fold new checkpoints every `interval` seconds. Supervised: an error ends the loop and
    the supervisor restarts it; safe in every replica."""
    apart = PerTenant(
        "kpi-projection", metrics.projection_failures if metrics is not None else None
    )
    while True:
        await fold_round(pool, metrics, apart)
        await asyncio.sleep(interval)


async def rebuild(
    pool: asyncpg.Pool,
    tenants: Sequence[str] | None,
    on_progress: Callable[[int, int], Awaitable[None] | None] | None = None,
) -> dict[str, int]:
    """Reset and fold again each tenant's facts from its log (every tenant with a checkpoint,
    or those named), each in one transaction: readers see the old figures until it commits.
    The entries folded per tenant."""
    async with all_tenants_transaction(pool) as conn:
        known = dict(await store.tenants_with_checkpoints(conn))
    chosen = list(tenants) if tenants else sorted(known)
    total = sum(known.get(t, 0) for t in chosen)
    before = 0
    folded: dict[str, int] = {}
    for tenant_id in chosen:

        def progress(done: int, base: int = before) -> Awaitable[None] | None:
            return None if on_progress is None else on_progress(base + done, total)

        async with tenant_transaction(pool, tenant_id) as conn:
            # Wait for a task's round holding the tenant, rather than skip it.
            await conn.execute(
                "INSERT INTO kpi_progress (tenant_id) VALUES ($1) ON CONFLICT DO NOTHING",
                tenant_id,
            )
            await conn.execute(
                "SELECT 1 FROM kpi_progress WHERE tenant_id = $1 FOR UPDATE", tenant_id
            )
            count = await fold_tenant(conn, tenant_id, reset=True, on_progress=progress)
        folded[tenant_id] = count or 0
        before += known.get(tenant_id, 0)
    return folded


class KpiProjection:
    """The KPI figures of the projection (`report_sources.KpiReader`)."""

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone

    def definitions(self) -> Sequence[KpiDefinition]:
        return kpis.DEFINITIONS

    def _range(self, query: KpiQuery) -> tuple[float, float]:
        spans = kpis.periods(query.period, query.start, query.count)
        return kpis.bounds(spans[0], self.zone)[0], kpis.bounds(spans[-1], self.zone)[1]

    async def _snapshot(self, conn: Connection, tenant: str, query: KpiQuery) -> store.Snapshot:
        start, end = self._range(query)
        return await store.snapshot(
            conn, tenant, sorted(kpis.kinds_of(query.kpis)), start, end, query.services
        )

    def _evaluate(self, facts: list[kpis.Fact], as_of: float, query: KpiQuery) -> list[KpiPoint]:
        return kpis.evaluate(
            facts,
            query.kpis,
            query.period,
            query.start,
            query.count,
            zone=self.zone,
            as_of=as_of,
            dimension=query.dimension,
            values=query.values,
            services=query.services,
            targets=query.targets,
        )

    async def series(self, conn: Connection, tenant: str, query: KpiQuery) -> list[KpiPoint]:
        snapshot = await self._snapshot(conn, tenant, query)
        as_of = snapshot.progress.as_of if snapshot.progress else 0.0
        return self._evaluate(snapshot.facts, as_of, query)

    async def series_with_basis(
        self, conn: Connection, tenant: str, query: KpiQuery
    ) -> tuple[list[KpiPoint], Basis | None]:
        """The points and the checkpoint they were computed from (one snapshot)."""
        snapshot = await self._snapshot(conn, tenant, query)
        as_of = snapshot.progress.as_of if snapshot.progress else 0.0
        return self._evaluate(snapshot.facts, as_of, query), store.basis_of(snapshot.progress)

    async def basis(self, conn: Connection, tenant: str) -> Basis | None:
        row = await conn.fetchrow(
            "SELECT tree_size, root_hash, as_of FROM kpi_progress WHERE tenant_id = $1", tenant
        )
        if row is None:
            return None
        return store.basis_of(store.Progress(row["tree_size"], row["root_hash"], row["as_of"]))

    async def series_across(
        self, conn: Connection, tenants: Sequence[str], query: KpiQuery
    ) -> list[KpiPoint]:
        points, _ = await self.series_across_with_bases(conn, tenants, query)
        return points

    async def series_across_with_bases(
        self, conn: Connection, tenants: Sequence[str], query: KpiQuery
    ) -> tuple[list[KpiPoint], dict[str, Basis | None]]:
        """The KPIs over the union of the tenants' records (the connection is switched to each
        tenant in turn: row-level security shows one at a time), and each tenant's basis."""
        facts: list[kpis.Fact] = []
        bases: dict[str, Basis | None] = {}
        as_of = 0.0
        for tenant in tenants:
            await set_tenant(conn, tenant)
            snapshot = await self._snapshot(conn, tenant, query)
            facts.extend(snapshot.facts)
            bases[tenant] = store.basis_of(snapshot.progress)
            if snapshot.progress is not None:
                as_of = max(as_of, snapshot.progress.as_of)
        return self._evaluate(facts, as_of, query), bases


def reader_of(zone: ZoneInfo) -> KpiReader:
    """The KPI reader the report builder takes (`report_sources.KpiReader`)."""
    return KpiProjection(zone)


# --- Prometheus -------------------------------------------------------------------------------

PERIOD_KINDS: tuple[PeriodKind, ...] = ("day", "week", "month")
_PRIORITY_KINDS = frozenset({"incident", "request"})


def metric_samples(
    facts: list[kpis.Fact], as_of: float, today: date, zone: ZoneInfo, top_services: int
) -> dict[tuple[str, str, str, str], float]:
    """The gauge's samples for the current day, week and month: (kpi, period, service,
    priority) -> value. Every KPI for the whole (service and priority empty), per service for
    the `top_services` services with the most records of the month, per priority for the
    incident and request KPIs. Empty values (no data) are left out."""
    ids = [d.id for d in kpis.DEFINITIONS]
    month = period_of("month", today)
    lo, hi = kpis.bounds(month, zone)
    counts: dict[str, int] = {}
    for fact in facts:
        if fact.last_at() >= lo and fact.first_at() < hi:
            for service in fact.services:
                counts[service] = counts.get(service, 0) + 1
    services = sorted(counts, key=lambda s: (-counts[s], s))[:top_services]
    priority_ids = [i for i in ids if kpis.BY_ID[i].measure.kind in _PRIORITY_KINDS]
    samples: dict[tuple[str, str, str, str], float] = {}
    for kind in PERIOD_KINDS:

        def run(kpi_ids: list[str], dimension: str, values: list[str] | None) -> list[KpiPoint]:
            return kpis.evaluate(
                facts,
                kpi_ids,
                kind,  # noqa: B023 - used at once
                today,
                1,
                zone=zone,
                as_of=as_of,
                dimension=dimension,
                values=values,
            )

        for point in run(ids, "tenant", None):
            if point.value is not None:
                samples[(point.kpi, kind, "", "")] = point.value
        if services:
            for point in run(ids, "service", services):
                if point.value is not None and point.dimension_value is not None:
                    samples[(point.kpi, kind, point.dimension_value, "")] = point.value
        for point in run(priority_ids, "priority", None):
            if point.value is not None and point.dimension_value is not None:
                samples[(point.kpi, kind, "", point.dimension_value)] = point.value
    return samples


async def publish_metrics(
    pool: asyncpg.Pool,
    metrics: ReportingMetrics,
    zone: ZoneInfo,
    top_services: int,
    tenants: Iterable[str] = (),
    now: float | None = None,
) -> int:
    """Compute the current periods' KPIs over every tenant's facts and replace the gauge's
    samples with them (labels gone from the top services disappear); and, for the tenants
    METRICS_TENANTS lists (`tenants`), each one's own figures in the per-tenant gauge. The
    samples set."""
    instant = time.time() if now is None else now
    today = datetime.fromtimestamp(instant, zone).date()
    month = period_of("month", today)
    week = period_of("week", today)
    start = min(kpis.bounds(month, zone)[0], kpis.bounds(week, zone)[0])
    end = max(kpis.bounds(month, zone)[1], kpis.bounds(week, zone)[1])
    kinds = sorted({k.measure.kind for k in kpis.KPIS})
    async with all_tenants_transaction(pool) as conn:
        facts, as_of = await store.all_facts(conn, kinds, start, end)
    samples = metric_samples(facts, as_of, today, zone, top_services)
    metrics.kpi_value.clear()
    for labels, value in samples.items():
        metrics.kpi_value.labels(*labels).set(value)
    own: dict[tuple[str, str, str], float] = {}
    for tenant in sorted(tenants):
        async with tenant_transaction(pool, tenant, readonly=True) as conn:
            snapshot = await store.snapshot(conn, tenant, kinds, start, end, None)
        if snapshot.progress is None:
            continue
        mine = metric_samples(snapshot.facts, snapshot.progress.as_of, today, zone, 0)
        for (kpi, period, service, priority), value in mine.items():
            if service == "" and priority == "":
                own[(tenant, kpi, period)] = value
    metrics.kpi_tenant_value.clear()
    for labels3, value in own.items():
        metrics.kpi_tenant_value.labels(*labels3).set(value)
    return len(samples) + len(own)


async def run_kpi_metrics(
    pool: asyncpg.Pool,
    metrics: ReportingMetrics,
    zone: ZoneInfo,
    top_services: int,
    tenants: Iterable[str] = (),
    *,
    interval: float,
) -> None:
    """Refresh the KPI gauges every `interval` seconds (supervised)."""
    while True:
        await publish_metrics(pool, metrics, zone, top_services, tenants)
        await asyncio.sleep(interval)
