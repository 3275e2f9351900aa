"""Row-level security: a query that forgets its tenant filter sees one tenant, or nothing."""

import uuid

import asyncpg
import pytest

from services.incident.application.handlers import LogIncident, record_incident
from services.reporting.adapters import ledger
from shared import outbox
from shared.context import RequestContext
from shared.db import all_tenants_transaction, set_tenant, tenant_transaction
from shared.events.catalogue import IncidentCreatedV1
from shared.events.envelope import new_envelope
from tests.support import ledger_received

# Tables of the installation rather than of a tenant: each service's applied migrations, and the
# reporting service's ledger signing keys (public halves, no tenant's data; each tenant's own log
# records every key it is signed with as an entry of its own, `itsm.reporting.ledger.key_added.v1`).
INSTALLATION_TABLES = ["schema_migrations", "ledger_keys"]
PAYLOAD = IncidentCreatedV1(title="t", description="", impact=3, urgency=3, priority=5, state="new")


async def log(pool, tenant, title="Mail down"):
    context = RequestContext(tenant, "tester", str(uuid.uuid4()))
    async with tenant_transaction(pool, tenant) as conn:
        return await record_incident(conn, LogIncident(title, "", 2, 2), context)


@pytest.fixture
def two_tenants():
    return f"t-{uuid.uuid4().hex[:12]}", f"t-{uuid.uuid4().hex[:12]}"


async def test_a_query_without_a_tenant_filter_returns_only_the_transactions_tenant(
    pools, two_tenants
):
    a, b = two_tenants
    mine = await log(pools["incident"], a)
    await log(pools["incident"], b)
    async with tenant_transaction(pools["incident"], a) as conn:
        rows = await conn.fetch("SELECT id, tenant_id FROM incidents")  # no WHERE on purpose
        outbox_rows = await conn.fetch("SELECT tenant_id FROM outbox")
    assert {r["tenant_id"] for r in rows} == {a}
    assert mine.id in {r["id"] for r in rows}
    assert {r["tenant_id"] for r in outbox_rows} <= {a}


async def test_a_query_with_no_tenant_set_returns_nothing(pools, two_tenants):
    a, _ = two_tenants
    await log(pools["incident"], a)
    assert await pools["incident"].fetchval("SELECT count(*) FROM incidents") == 0
    assert await pools["incident"].fetchval("SELECT count(*) FROM idempotency_keys") == 0


async def test_filtering_by_another_tenant_inside_a_tenants_transaction_returns_nothing(
    pools, two_tenants
):
    a, b = two_tenants
    theirs = await log(pools["incident"], b)
    async with tenant_transaction(pools["incident"], a) as conn:
        found = await conn.fetchval(
            "SELECT count(*) FROM incidents WHERE tenant_id = $1 AND id = $2", b, theirs.id
        )
    assert found == 0


async def test_writing_a_row_for_another_tenant_is_refused_by_the_database(pools, two_tenants):
    a, b = two_tenants
    context = RequestContext(b, "intruder", "c")
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
        async with tenant_transaction(pools["incident"], a) as conn:
            await record_incident(conn, LogIncident("Forged", "", 1, 1), context)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
        async with tenant_transaction(pools["incident"], a) as conn:
            await outbox.append(conn, PAYLOAD, subject="s", tenant_id=b, sequence=1, actor="x")


async def test_updating_or_deleting_another_tenants_rows_touches_nothing(pools, two_tenants):
    a, b = two_tenants
    theirs = await log(pools["incident"], b, title="Theirs")
    async with tenant_transaction(pools["incident"], a) as conn:
        updated = await conn.execute("UPDATE incidents SET title = 'hijacked'")
        deleted = await conn.execute("DELETE FROM incidents WHERE id = $1", theirs.id)
    assert (updated, deleted) == ("UPDATE 0", "DELETE 0")
    async with tenant_transaction(pools["incident"], b) as conn:
        assert await conn.fetchval("SELECT title FROM incidents WHERE id = $1", theirs.id) == (
            "Theirs"
        )


async def test_the_all_tenants_setting_opens_platform_tables_but_never_domain_tables(
    pools, two_tenants
):
    a, b = two_tenants
    await log(pools["incident"], a)
    await log(pools["incident"], b)
    async with all_tenants_transaction(pools["incident"]) as conn:
        domain = await conn.fetchval(
            "SELECT count(*) FROM incidents WHERE tenant_id = ANY($1)", [a, b]
        )
        platform = await conn.fetch(
            "SELECT DISTINCT tenant_id FROM outbox WHERE tenant_id = ANY($1)", [a, b]
        )
    assert domain == 0
    # The relay may already have published (and deleted) some rows; it sees every tenant's.
    assert {r["tenant_id"] for r in platform} <= {a, b}


async def test_the_reporting_ledger_is_isolated_the_same_way(pools, two_tenants):
    a, b = two_tenants
    async with pools["reporting"].acquire() as conn, conn.transaction():
        for offset, tenant in enumerate((a, b)):
            await set_tenant(conn, tenant)
            envelope = new_envelope(
                source="itsm/incident",
                type="itsm.incident.updated.v1",
                subject=str(uuid.uuid4()),
                tenantid=tenant,
                itsmversion=1,
                actor="x",
                data={"changes": {}, "priority": 3, "state": "in_progress"},
            )
            # Written as the ledger consumer writes it: its place in the tenant's log with it.
            await ledger.append_many(conn, [ledger_received(envelope, offset)])
    async with tenant_transaction(pools["reporting"], a) as conn:
        seen = await conn.fetch("SELECT tenant_id FROM ledger")
    assert {r["tenant_id"] for r in seen} == {a}
    assert await pools["reporting"].fetchval("SELECT count(*) FROM ledger") == 0


async def test_every_table_that_holds_a_tenant_column_forces_row_level_security(pools):
    for name, pool in pools.items():
        rows = await pool.fetch(
            """
            SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
                   (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid) AS policies
            FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')
              AND EXISTS (SELECT 1 FROM pg_attribute a
                          WHERE a.attrelid = c.oid AND a.attname = 'tenant_id'
                            AND NOT a.attisdropped)
            """,
            name,
        )
        for row in rows:
            assert row["relrowsecurity"] and row["relforcerowsecurity"], (name, row["relname"])
            assert row["policies"] >= 1, (name, row["relname"])
        tenantless = await pool.fetch(
            """
            SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND c.relname <> ALL($2::text[])
              AND NOT EXISTS (SELECT 1 FROM pg_attribute a
                              WHERE a.attrelid = c.oid AND a.attname = 'tenant_id'
                                AND NOT a.attisdropped)
            """,
            name,
            INSTALLATION_TABLES,
        )
        assert [r["relname"] for r in tenantless] == [], f"{name}: every table carries its tenant"


async def test_a_connection_back_in_the_pool_keeps_no_tenant_and_no_all_tenants_setting(
    migrated, two_tenants
):
    """The pool skips asyncpg's session reset (`shared.db._keep_clean_session`): this is why
    that is safe. One connection, so the second transaction gets the first one's session."""
    from shared.db import ALL_TENANTS_SETTING, TENANT_SETTING, create_pool

    a, _ = two_tenants
    pool = await create_pool(
        migrated.service_dsns["incident"],
        schema="incident",
        application_name="test-reset",
        min_size=1,
        max_size=1,
    )
    try:
        async with tenant_transaction(pool, a) as conn:
            first = conn.get_server_pid()
            await conn.execute("SELECT pg_advisory_xact_lock(42)")
        async with all_tenants_transaction(pool) as conn:
            pass
        with pytest.raises(RuntimeError):  # a failed transaction is rolled back, not kept
            async with tenant_transaction(pool, a) as conn:
                raise RuntimeError("boom")
        async with pool.acquire() as conn:
            assert conn.get_server_pid() == first  # the same session all along
            assert not conn.is_in_transaction()
            settings = await conn.fetchrow(
                "SELECT current_setting($1, true) AS tenant, current_setting($2, true) AS every,"
                " (SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid()"
                "  AND locktype = 'advisory') AS locks",
                TENANT_SETTING,
                ALL_TENANTS_SETTING,
            )
            assert settings["tenant"] in (None, "")
            assert settings["every"] in (None, "")
            assert settings["locks"] == 0
            assert await conn.fetchval("SELECT count(*) FROM incidents") == 0
    finally:
        await pool.close()
