"""The change census gauge (`itsm_changes`): changes by type and state (and tenant, where
configured), on a timer.

Not a use case: a platform job that reads the trigger-kept counts of every tenant at once
(`change_census`, `all_tenants_transaction`), writes nothing and records no event, so it needs
no unit of work.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

import asyncpg

from services.change.metrics import ChangeMetrics
from shared.db import all_tenants_transaction
from shared.metrics import TenantLabel


async def refresh(pool: asyncpg.Pool, metrics: ChangeMetrics, tenants: TenantLabel) -> None:
    """Read the counts the trigger keeps (`change_census`) and replace the gauge's values."""
    async with all_tenants_transaction(pool) as conn:
        rows = await conn.fetch(
            "SELECT tenant_id, type, state, count FROM change_census WHERE count > 0"
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
