"""The change census gauge (`itsm_changes`): changes by type and state (and tenant, where
configured), on a timer.

Not a use case: a platform job that counts every tenant's changes at once
(`all_tenants_transaction`), writes nothing and records no event, so it needs no unit of work.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

import asyncpg

from services.change.metrics import ChangeMetrics
from shared.db import all_tenants_transaction
from shared.metrics import TenantLabel


async def refresh(pool: asyncpg.Pool, metrics: ChangeMetrics, tenants: TenantLabel) -> None:
    """Count the changes by tenant, type and state and replace the gauge's values."""
    async with all_tenants_transaction(pool) as conn:
        rows = await conn.fetch(
            "SELECT tenant_id, type, state, count(*) AS count FROM changes"
            " GROUP BY tenant_id, type, state"
        )
    totals: dict[tuple[str, str, str], int] = defaultdict(int)
    for row in rows:
        totals[(row["type"], row["state"], tenants(row["tenant_id"]))] += row["count"]
    metrics.changes.clear()
    for labels, count in totals.items():
        metrics.changes.labels(*labels).set(count)


async def census_loop(
    pool: asyncpg.Pool, metrics: ChangeMetrics, tenants: TenantLabel, interval: float
) -> None:
    """Refresh the census every `interval` seconds until cancelled (supervised)."""
    while True:
        await refresh(pool, metrics, tenants)
        await asyncio.sleep(interval)
