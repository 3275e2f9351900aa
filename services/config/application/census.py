"""The CI census gauge: CIs by class and status (and tenant, where configured), on a timer.

Not a use case: a platform job that reads the trigger-kept counts of every tenant at once
(`all_tenants_transaction`), writes nothing and records no event, so it needs no unit of work.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

import asyncpg

from services.config.domain import classes
from services.config.metrics import ConfigMetrics
from shared.db import all_tenants_transaction
from shared.metrics import TenantLabel

log = logging.getLogger(__name__)

CUSTOM = "custom"  # tenant-defined classes share one label value: their names are unbounded


async def refresh(pool: asyncpg.Pool, metrics: ConfigMetrics, tenants: TenantLabel) -> None:
    """Read the counts the triggers keep (`ci_census`) and replace the gauge's values."""
    async with all_tenants_transaction(pool) as conn:
        rows = await conn.fetch("SELECT tenant_id, class, status, count FROM ci_census")
    totals: dict[tuple[str, str, str], int] = defaultdict(int)
    for row in rows:
        ci_class = row["class"] if row["class"] in classes.BUILTIN_CLASSES else CUSTOM
        totals[(ci_class, row["status"], tenants(row["tenant_id"]))] += row["count"]
    metrics.cis.clear()
    for labels, count in totals.items():
        metrics.cis.labels(*labels).set(count)


async def census_loop(
    pool: asyncpg.Pool, metrics: ConfigMetrics, tenants: TenantLabel, interval: float
) -> None:
    """Refresh the census every `interval` seconds until cancelled (supervised: an error ends
    the loop and the supervisor restarts it)."""
    while True:
        await refresh(pool, metrics, tenants)
        await asyncio.sleep(interval)
