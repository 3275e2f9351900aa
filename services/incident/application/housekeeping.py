"""Background jobs of the incident service besides the SLA scheduler: closing resolved
incidents after the tenant's `auto_close_days`, and the census behind `itsm_incident_open`.

Both serve every tenant while `incidents` stays visible to one tenant at a time. Auto-close
claims due entries of `auto_close_queue` (ids and due times only) in an all-tenants transaction,
then switches to each entry's tenant in the same transaction to re-read the incident and the
tenant's current settings before closing it: an entry whose incident was reopened or closed
meanwhile is dropped, one whose tenant lengthened `auto_close_days` is postponed. Each incident
is closed by a unit of work of its tenant joining that transaction, in a savepoint of its own.
Claims use `FOR UPDATE SKIP LOCKED`, so every replica may run the job and each incident closes
once. A major incident without its review is not closed automatically (the review must come
first); its entry is postponed by a day and the skip is logged.

The census visits each tenant that has numbered an incident and counts its open incidents by
priority and state (the `incidents_open` partial index); the gauge is the sum over tenants,
with no tenant label, so its series stay within 5 priorities × 3 open states.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from datetime import datetime, timedelta

import asyncpg

from services.incident.application.handlers import move_incident
from services.incident.application.reactions import joining
from services.incident.application.uow import IncidentWork
from services.incident.domain import workflow
from services.incident.metrics import IncidentMetrics
from shared.context import RequestContext
from shared.db import all_tenants_transaction, set_tenant

log = logging.getLogger(__name__)

AUTO_CLOSE_ACTOR = "system:auto-close"
OPEN_STATES = ("new", "in_progress", "on_hold")
REVIEW_PENDING_RETRY = timedelta(days=1)


async def close_due(
    pool: asyncpg.Pool, metrics: IncidentMetrics | None = None, *, batch: int = 200
) -> int:
    """One round: close up to `batch` resolved incidents whose time has come, in one
    transaction. Return how many it closed."""
    closed = 0
    async with all_tenants_transaction(pool) as conn:
        now = await conn.fetchval("SELECT now()")
        assert isinstance(now, datetime)
        due = await conn.fetch(
            "SELECT tenant_id, incident_id FROM auto_close_queue WHERE due_at <= $1"
            " ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED",
            now,
            batch,
        )
        by_tenant: dict[str, list[uuid.UUID]] = {}
        for row in due:
            by_tenant.setdefault(row["tenant_id"], []).append(row["incident_id"])
        for tenant, ids in by_tenant.items():
            await set_tenant(conn, tenant)
            context = RequestContext(tenant, AUTO_CLOSE_ACTOR, str(uuid.uuid4()))
            async with joining(conn, context) as reading:
                days = (await reading.settings.get()).auto_close_days
            for incident_id in ids:
                try:
                    # A savepoint each: one refusal spares the others.
                    async with conn.transaction(), joining(conn, context, metrics) as uow:
                        closed += await close_one(uow, incident_id, days, now)
                except workflow.MajorReviewMissing:
                    log.warning(
                        "a resolved major incident is due to close but has no review;"
                        " not closing it",
                        extra={"tenant_id": tenant, "subject": str(incident_id)},
                    )
                    async with joining(conn, context) as uow:
                        await uow.incidents.queue_auto_close(
                            incident_id, now + REVIEW_PENDING_RETRY
                        )
    return closed


async def close_one(uow: IncidentWork, incident_id: uuid.UUID, days: int, now: datetime) -> int:
    """Close one queued incident if its time has come (1), else requeue or drop its entry (0).
    A major incident without its review is refused (`workflow.MajorReviewMissing`)."""
    incident = await uow.incidents.get(incident_id, lock=True)
    if incident is None or incident.state != "resolved" or incident.resolved_at is None:
        await uow.incidents.unqueue_auto_close(incident_id)
        return 0
    due_at = incident.resolved_at + timedelta(days=days)
    if due_at > now:  # the tenant lengthened its auto-close period since
        await uow.incidents.queue_auto_close(incident_id, due_at)
        return 0
    await move_incident(uow, incident, "closed", now=now, automatic=True)
    await uow.incidents.unqueue_auto_close(incident_id)
    return 1


async def run_auto_close(
    pool: asyncpg.Pool, metrics: IncidentMetrics | None = None, *, interval: float = 60.0
) -> None:
    """Close due incidents every `interval` seconds (and at once while rounds come back full).

    Supervised: an error ends the loop and the process's supervisor restarts it."""
    while True:
        closed = await close_due(pool, metrics)
        if closed:
            log.info("resolved incidents closed automatically", extra={"closed": closed})
        await asyncio.sleep(0 if closed >= 200 else interval)


async def census(pool: asyncpg.Pool) -> Counter[tuple[int, str]]:
    """Open incidents of every tenant by (priority, state), in one read-only transaction."""
    counts: Counter[tuple[int, str]] = Counter()
    async with all_tenants_transaction(pool) as conn:
        tenants = await conn.fetch(
            "SELECT DISTINCT tenant_id FROM record_numbers WHERE kind = 'incident'"
        )
        for row in tenants:
            await set_tenant(conn, row["tenant_id"])
            for found in await conn.fetch(
                "SELECT priority, state, count(*) AS n FROM incidents"
                " WHERE tenant_id = $1 AND state = ANY($2::text[]) GROUP BY priority, state",
                row["tenant_id"],
                list(OPEN_STATES),
            ):
                counts[(found["priority"], found["state"])] += found["n"]
    return counts


def publish_census(metrics: IncidentMetrics, counts: Counter[tuple[int, str]]) -> None:
    """Set the gauge for every priority and open state (zero where there are none)."""
    for priority in range(1, 6):
        for state in OPEN_STATES:
            metrics.incidents_open.labels(f"P{priority}", state).set(counts[(priority, state)])


async def run_census(
    pool: asyncpg.Pool, metrics: IncidentMetrics, *, interval: float = 30.0
) -> None:
    """Refresh the open-incidents gauge every `interval` seconds (supervised)."""
    while True:
        publish_census(metrics, await census(pool))
        await asyncio.sleep(interval)
