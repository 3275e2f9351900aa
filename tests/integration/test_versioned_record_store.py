"""The SQL part of the versioned-record building block (shared/records/sql.py) on the real
PostgreSQL: numbers, insert/get, save over exactly the version before, history rows, and the
keyset search, through the problems table (arrays and a computed field) of the incident
service."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.incident.adapters.problems import PROBLEMS
from services.incident.domain import problem as domain
from shared.db import tenant_transaction
from shared.errors import NotFound, StaleVersion
from shared.records.sql import Condition

pytestmark = pytest.mark.integration

T0 = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)


def opened(tenant: str, number: int, at: datetime, title: str = "disk") -> domain.Problem:
    problem, _ = domain.open_problem(
        tenant_id=tenant, number=number, title=title, description="", actor="pm", now=at
    )
    return problem


async def test_numbers_count_up_per_tenant_and_kind(pools, tenant):
    pool = pools["incident"]
    other = f"{tenant}-b"
    async with tenant_transaction(pool, tenant) as conn:
        first = [await PROBLEMS.next_number(conn, tenant) for _ in range(3)]
    async with tenant_transaction(pool, other) as conn:
        theirs = await PROBLEMS.next_number(conn, other)
    assert first == [1, 2, 3]
    assert theirs == 1


async def test_a_record_reads_back_as_it_was_stored_arrays_and_computed_fields_included(
    pools, tenant
):
    problem = opened(tenant, 1, T0)
    change = domain.request_change(
        problem, request_id=uuid.uuid4(), title="swap", description="", actor="pm", now=T0
    )
    async with tenant_transaction(pools["incident"], tenant) as conn:
        await PROBLEMS.insert(conn, problem)
        await PROBLEMS.save(conn, change.record)
        stored = await PROBLEMS.get(conn, tenant, problem.id)
        missing = await PROBLEMS.get(conn, f"{tenant}-b", problem.id)
    assert stored == change.record
    assert stored is not None and stored.change_requests == change.record.change_requests
    assert stored.incidents == ()
    assert missing is None


async def test_a_save_that_skips_a_version_is_refused_and_writes_nothing(pools, tenant):
    problem = opened(tenant, 1, T0)
    moved = domain.transition(problem, "investigating", actor="pm", now=T0).record
    skipped = domain.transition(moved, "cancelled", actor="pm", now=T0).record  # version 3
    async with tenant_transaction(pools["incident"], tenant) as conn:
        await PROBLEMS.insert(conn, problem)
    with pytest.raises(StaleVersion) as refused:
        async with tenant_transaction(pools["incident"], tenant) as conn:
            await PROBLEMS.save(conn, skipped)
    assert (refused.value.current, refused.value.expected) == (1, 2)
    async with tenant_transaction(pools["incident"], tenant) as conn:
        assert (await PROBLEMS.get(conn, tenant, problem.id)) == problem


async def test_locked_is_not_found_for_an_unknown_id_and_stale_for_an_older_version(pools, tenant):
    problem = opened(tenant, 1, T0)
    async with tenant_transaction(pools["incident"], tenant) as conn:
        await PROBLEMS.insert(conn, problem)
        assert await PROBLEMS.locked(conn, tenant, problem.id, 1) == problem
        assert await PROBLEMS.locked(conn, tenant, problem.id, None) == problem
        with pytest.raises(StaleVersion) as stale:
            await PROBLEMS.locked(conn, tenant, problem.id, 0)
        with pytest.raises(NotFound):
            await PROBLEMS.locked(conn, tenant, uuid.uuid4(), None)
    assert stale.value.current == 1


async def test_history_keeps_one_row_per_version_oldest_first(pools, tenant):
    problem = opened(tenant, 1, T0)
    change = domain.transition(problem, "investigating", actor="kim", now=T0 + timedelta(1))
    async with tenant_transaction(pools["incident"], tenant) as conn:
        await PROBLEMS.insert(conn, problem)
        await PROBLEMS.record_history(conn, problem, action="created", changes={})
        await PROBLEMS.save(conn, change.record)
        await PROBLEMS.record_history(
            conn, change.record, action="transitioned", changes=change.changes
        )
        rows = await PROBLEMS.history(conn, tenant, problem.id)
    assert [(r["version"], r["actor"], r["action"]) for r in rows] == [
        (1, "pm", "created"),
        (2, "kim", "transitioned"),
    ]
    assert rows[1]["changes"] == {"state": {"from": "new", "to": "investigating"}}


async def test_search_pages_newest_first_after_a_position_without_overlap(pools, tenant):
    made = [opened(tenant, n, T0 + timedelta(minutes=n), f"p{n}") for n in range(1, 6)]
    async with tenant_transaction(pools["incident"], tenant) as conn:
        for problem in made:
            await PROBLEMS.insert(conn, problem)
        first = await PROBLEMS.search(conn, tenant, [], after=None, limit=2)
        last = first[-1]
        second = await PROBLEMS.search(conn, tenant, [], after=(last.created_at, last.id), limit=10)
        titled = await PROBLEMS.search(
            conn, tenant, [Condition("r.title = ANY({p})", ["p2", "p4"])], after=None, limit=10
        )
    assert [p.number for p in first] == [5, 4]
    assert [p.number for p in second] == [3, 2, 1]
    assert [p.number for p in titled] == [4, 2]
