"""Record numbers (INC42, REQ7, PRB3) taken outside the creating transaction, in groups.

A number taken inside the creating transaction (`repository.next_number`) holds the tenant's
counter row locked until that transaction commits, so a tenant's creations commit one after
another: at 32 concurrent creations, throughput is one commit at a time. `allocate` instead
takes numbers in a short transaction of its own, and takes them for every caller waiting at
that moment at once (like a group commit): one caller alone gets one number; 32 callers
arriving together share one round trip and one commit.

Numbers stay unique per tenant and kind (the counter row is the only source) and increase in
the order they were handed out, but a create that fails after taking its number (a refused
body, a replayed idempotency key, a crash) leaves a gap. Nobody relies on numbers being
gap-free: they are for people to say "INC42" on the phone; the audit trail is the history and
the ledger.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

import asyncpg

from shared.db import tenant_transaction


class NumberAllocator:
    """Hands out record numbers per (tenant, kind), one database round trip per group."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._waiting: defaultdict[tuple[str, str], list[asyncio.Future[int]]] = defaultdict(list)
        self._serving: dict[tuple[str, str], asyncio.Task[None]] = {}

    async def next(self, tenant_id: str, kind: str) -> int:
        """The tenant's next number of a kind."""
        key = (tenant_id, kind)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting[key].append(future)
        if key not in self._serving:
            self._serving[key] = asyncio.create_task(self._serve(key))
        return await future

    async def _serve(self, key: tuple[str, str]) -> None:
        try:
            while waiters := self._waiting.pop(key, None):
                try:
                    first = await self._take(key, len(waiters))
                except BaseException as exc:
                    for waiter in waiters:
                        if not waiter.done():
                            waiter.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for offset, waiter in enumerate(waiters):
                    if not waiter.done():  # a caller that gave up leaves a gap
                        waiter.set_result(first + offset)
        finally:
            del self._serving[key]

    async def _take(self, key: tuple[str, str], count: int) -> int:
        tenant_id, kind = key
        async with tenant_transaction(self.pool, tenant_id) as conn:
            last = await conn.fetchval(
                "INSERT INTO record_numbers (tenant_id, kind, last) VALUES ($1, $2, $3)"
                " ON CONFLICT (tenant_id, kind) DO UPDATE SET last = record_numbers.last + $3"
                " RETURNING last",
                tenant_id,
                kind,
                count,
            )
        assert isinstance(last, int)
        return last - count + 1


# One allocator per pool (pools take no weak references): closed pools are dropped when a new
# pool first asks, so a process that makes many pools (the tests) keeps only live ones.
_allocators: dict[int, NumberAllocator] = {}


async def allocate(pool: asyncpg.Pool, tenant_id: str, kind: str) -> int:
    """The tenant's next number of a kind, from the pool's allocator."""
    allocator = _allocators.get(id(pool))
    if allocator is None or allocator.pool is not pool:
        for key, other in list(_allocators.items()):
            if other.pool.is_closing():
                del _allocators[key]
        allocator = _allocators[id(pool)] = NumberAllocator(pool)
    return await allocator.next(tenant_id, kind)
