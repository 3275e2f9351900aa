"""The shared CMDB graph projection on the real broker and database, as the incident service
keeps it: relationships projected from the config service's events, impact walks upstream and
downstream, cycles, tenants, versions out of order, and an upgrade from the incident service's
own tables."""

import shutil
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from services.incident.adapters import projections
from services.incident.definition import DEFINITION as INCIDENT
from services.incident.entrypoints.consumers import CMDB_PROJECTION_CONSUMER
from shared.cmdb import reads, walks, writes
from shared.db import MigrationSource, create_pool, migrate, shared_source, tenant_transaction
from shared.events.catalogue import CONFIG_EVENTS, CiStateV1, RelationshipV1
from shared.provision import dsn_for_admin_database
from tests.integration.test_impact_analysis import ci, relate
from tests.integration.test_incident_projections import ci_state, config_event, policy
from tests.support import eventually, fetchval_as, send_event


@pytest.fixture
async def config(service_client):
    return await service_client("config")


@pytest.fixture
async def incident(service_client):
    return await service_client("incident")


@pytest.fixture
def manager(auth, tenant):
    return auth(tenant, "config_manager")


@pytest.fixture
async def raw_producer(infra):
    producer = AIOKafkaProducer(bootstrap_servers=infra.bootstrap_servers)
    await producer.start()
    yield producer
    await producer.stop()


async def walk(pool, tenant, ci_id, direction, depth, **options):
    async with tenant_transaction(pool, tenant, readonly=True) as conn:
        return await walks.walk(conn, tenant, ci_id, direction=direction, depth=depth, **options)


def reached(impact):
    """{name or id: (depth, path, via)} of a walk's items."""
    return {(i.name or i.id): (i.depth, i.path, i.via) for i in impact.items}


async def relationships(pool, tenant, *edges):
    """Write relationships `(source, type, target)` straight into the projection."""
    states = [
        writes.RelationshipState(
            RelationshipV1(id=f"r-{n}", type=t, source_id=s, target_id=d), False, 1
        )
        for n, (s, t, d) in enumerate(edges)
    ]
    async with tenant_transaction(pool, tenant) as conn:
        await writes.upsert_relationships(conn, tenant, states)


async def applied(pools, tenant, event_id):
    found = await fetchval_as(
        pools["incident"],
        tenant,
        "SELECT count(*) FROM inbox WHERE consumer = $1 AND event_id = $2",
        CMDB_PROJECTION_CONSUMER,
        event_id,
    )
    return found == 1


def relationship_event(tenant, rel_id, source, type_, target, *, removed=False):
    body = {"id": rel_id, "type": type_, "source_id": source, "target_id": target}
    if removed:
        return config_event(
            tenant, "relationship.removed", rel_id, {"relationship": body}, sequence=2
        )
    return config_event(tenant, "relationship.added", rel_id, {"relationship": body})


async def test_the_config_services_relationships_are_projected_and_walked_two_levels_each_way(
    config, incident, manager, tenant
):
    pool = incident.runtime.pool
    payroll = await ci(config, manager, "business_service", "Payroll", 1)
    billing = await ci(config, manager, "business_service", "Billing", 2)
    payroll_app = await ci(config, manager, "application", "payroll-app")
    billing_app = await ci(config, manager, "application", "billing-app")
    db = await ci(config, manager, "database", "payroll-db")
    server = await ci(config, manager, "server", "srv-1")
    await relate(config, manager, payroll_app, "provides", payroll)
    await relate(config, manager, billing_app, "provides", billing)
    await relate(config, manager, payroll_app, "depends_on", db)
    await relate(config, manager, billing_app, "depends_on", db)
    hosting = await relate(config, manager, db, "runs_on", server)

    # Upstream: what depends on the database, two relationships away.
    up = await eventually(
        lambda: walk(pool, tenant, db, "upstream", 2), lambda w: len(w.items) == 4
    )
    assert reached(up) == {
        "billing-app": (1, (db, billing_app), "depends_on"),
        "payroll-app": (1, (db, payroll_app), "depends_on"),
        "Payroll": (2, (db, payroll_app, payroll), "provides"),
        "Billing": (2, (db, billing_app, billing), "provides"),
    }
    assert not up.truncated
    assert [s.name for s in up.business_services()] == ["Payroll", "Billing"]  # criticality
    # Downstream: what the application depends on, two relationships away.
    await eventually(
        lambda: walk(pool, tenant, payroll_app, "downstream", 2), lambda w: len(w.items) == 2
    )
    down = await walk(pool, tenant, payroll_app, "downstream", 2)
    assert reached(down) == {
        "payroll-db": (1, (payroll_app, db), "depends_on"),
        "srv-1": (2, (payroll_app, db, server), "runs_on"),
    }
    # The depth bounds the walk: one level up from the server is the database only.
    assert list(reached(await walk(pool, tenant, server, "upstream", 1))) == ["payroll-db"]
    assert [r.type for r in await read(pool, tenant, reads.relationships_of, server)] == ["runs_on"]

    response = await config.delete(f"/relationships/{hosting}", headers=manager)
    assert response.status_code in (200, 204), response.text
    gone = await eventually(
        lambda: walk(pool, tenant, server, "upstream", 5), lambda w: w.items == ()
    )
    assert gone.items == ()
    assert await read(pool, tenant, reads.relationships_of, server) == []


async def read(pool, tenant, query, *args):
    async with tenant_transaction(pool, tenant, readonly=True) as conn:
        return await query(conn, tenant, *args)


async def test_a_walk_around_a_cycle_ends_and_reaches_each_ci_once_at_its_shortest_depth(
    pools, tenant
):
    pool = pools["incident"]
    # a -> b -> c -> a, and a shortcut a -> c.
    await relationships(
        pool,
        tenant,
        ("a", "depends_on", "b"),
        ("b", "depends_on", "c"),
        ("c", "depends_on", "a"),
        ("a", "connects_to", "c"),
    )
    down = await walk(pool, tenant, "a", "downstream", walks.MAX_DEPTH)
    assert reached(down) == {
        "b": (1, ("a", "b"), "depends_on"),
        "c": (1, ("a", "c"), "connects_to"),
    }
    up = await walk(pool, tenant, "a", "upstream", walks.MAX_DEPTH)
    assert reached(up) == {
        "c": (1, ("a", "c"), "depends_on"),
        "b": (2, ("a", "c", "b"), "depends_on"),
    }
    # The CIs' own events have not arrived: the walk still reaches them, by id.
    assert all(i.name is None and i.ci_class is None for i in down.items)


async def test_a_walk_stops_at_its_path_limit_and_says_so(pools, tenant):
    pool = pools["incident"]
    await relationships(pool, tenant, *[("hub", "depends_on", f"leaf-{n}") for n in range(5)])
    whole = await walk(pool, tenant, "hub", "downstream", 1)
    assert (len(whole.items), whole.truncated) == (5, False)
    cut = await walk(pool, tenant, "hub", "downstream", 1, max_paths=2)
    assert (len(cut.items), cut.truncated) == (2, True)
    with pytest.raises(ValueError, match="depth"):
        await walk(pool, tenant, "hub", "downstream", walks.MAX_DEPTH + 1)


async def test_another_tenants_graph_is_invisible(start_runtime, pools, raw_producer, tenant):
    await start_runtime("incident")
    other = f"{tenant}-other"
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    theirs = [
        config_event(other, "ci.created", a, {"ci": ci_state(a, 1, name="their-app")}),
        relationship_event(other, str(uuid.uuid4()), a, "depends_on", b),
    ]
    for event in theirs:
        await send_event(raw_producer, event, CONFIG_EVENTS)
    for event in theirs:
        await eventually(lambda e=event: applied(pools, other, e.id), bool)

    pool = pools["incident"]
    assert list(reached(await walk(pool, other, a, "downstream", 1))) == [b]
    assert (await walk(pool, tenant, a, "downstream", 1)).items == ()
    assert await read(pool, tenant, reads.relationships_of, a) == []
    # Naming the other tenant inside this tenant's transaction shows nothing either.
    async with tenant_transaction(pool, tenant, readonly=True) as conn:
        assert (await walks.walk(conn, other, a, direction="downstream", depth=1)).items == ()
        assert await reads.ci_by_id(conn, other, a) is None


async def test_a_late_added_event_does_not_bring_back_a_removed_relationship(
    start_runtime, pools, raw_producer, tenant
):
    await start_runtime("incident")
    source, target = str(uuid.uuid4()), str(uuid.uuid4())
    rel_id = str(uuid.uuid4())
    removed = relationship_event(tenant, rel_id, source, "runs_on", target, removed=True)
    added = relationship_event(tenant, rel_id, source, "runs_on", target)
    kept = relationship_event(tenant, str(uuid.uuid4()), source, "connects_to", target)
    for event in (removed, added, kept):  # one key each: the removal is read first
        await send_event(raw_producer, event, CONFIG_EVENTS)
    for event in (removed, added, kept):
        await eventually(lambda e=event: applied(pools, tenant, e.id), bool)

    pool = pools["incident"]
    assert [r.type for r in await read(pool, tenant, reads.relationships_of, source)] == [
        "connects_to"
    ]
    assert reached(await walk(pool, tenant, source, "downstream", 1)) == {
        target: (1, (source, target), "connects_to")
    }


# --- Upgrade: an incident service that kept its own CI tables -----------------------------


@pytest.fixture
async def old_incident_schema(infra, tmp_path):
    """A schema of the incident role migrated as the incident service was before the shared
    CMDB projection (its migrations up to 0009, no `cmdb` component); dropped afterwards."""
    schema = f"upgrade_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(dsn_for_admin_database(infra.admin_dsn, "itsm"))
    await admin.execute(f"CREATE SCHEMA {schema} AUTHORIZATION incident")
    old = tmp_path / "incident"
    old.mkdir()
    for path in sorted(INCIDENT.migrations.glob("*.sql")):
        if int(path.name[:4]) <= 9:
            shutil.copy(path, old / path.name)
    pool = await create_pool(
        infra.service_dsns["incident"], schema=schema, application_name="test-upgrade", max_size=2
    )
    old_sources = [
        *(shared_source(c) for c in ("outbox", "inbox", "idempotency")),
        MigrationSource("incident", old),
    ]
    async with pool.acquire() as conn:
        await migrate(conn, old_sources)
    try:
        yield pool
    finally:
        await pool.close()
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()


async def test_an_incident_service_upgraded_with_rows_in_its_old_tables_keeps_them(
    old_incident_schema, tenant
):
    pool = old_incident_schema
    at = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    async with tenant_transaction(pool, tenant) as conn:
        await conn.execute(
            "INSERT INTO proj_cis (tenant_id, id, ci_class, name, status, owner_team,"
            " criticality, external_ids, version, updated_at)"
            " VALUES ($1, 'db-1', 'database', 'payroll-db', 'active', 'dba', 2, $2, 3, $3)",
            tenant,
            {"vcenter": "vm-42"},
            at,
        )
        await conn.execute(
            "INSERT INTO proj_ci_external_ids VALUES ($1, 'db-1', 'vcenter', 'vm-42')", tenant
        )
        await conn.execute(
            "INSERT INTO proj_ci_services VALUES ($1, 'db-1', ARRAY['svc-1'], 4)", tenant
        )
        await conn.execute(
            "INSERT INTO proj_business_services (tenant_id, id, name, status, criticality,"
            " owner, customer, availability_target, sla_policy, version)"
            " VALUES ($1, 'svc-1', 'Payroll', 'active', 1, 'cfo', 'finance', 99.9, 'gold', 2)",
            tenant,
        )
        await projections.upsert_policy(conn, tenant, policy("gold", services=["svc-1"]), at)

    async with pool.acquire() as conn:
        applied_now = await migrate(conn, INCIDENT.migration_sources())
        # The upgrade applies the CMDB graph and the projection's move, then what came after.
        assert applied_now[:2] == ["cmdb/0001_cmdb_graph", "incident/0010_cmdb_projection"]
        assert all(name.startswith("incident/") for name in applied_now[2:])
        assert await conn.fetchval("SELECT to_regclass('proj_cis')") is None
        forced = await conn.fetch(
            "SELECT relname FROM pg_class WHERE relname LIKE 'cmdb%' AND relkind = 'r'"
            " AND relforcerowsecurity AND relnamespace = current_schema()::regnamespace"
        )
        assert len(forced) == 5  # row-level security forced again on every table

    ci_row = await read(pool, tenant, projections.ci_by_id, "db-1")
    assert (ci_row.name, ci_row.version, ci_row.updated_at) == ("payroll-db", 3, at)
    assert (await read(pool, tenant, projections.ci_by_external_id, "vcenter", "vm-42")).id == (
        "db-1"
    )
    services = await read(pool, tenant, projections.services_of_ci, "db-1")
    assert services == ["svc-1"]
    service = await read(pool, tenant, projections.service_by_name, "payroll")
    assert (service.id, service.sla_policy, service.version) == ("svc-1", "gold", 2)
    assert (await read(pool, tenant, projections.policy_for, services)).name == "gold"
    # An older event read again by the new consumer group changes nothing.
    async with tenant_transaction(pool, tenant) as conn:
        stale = CiStateV1.model_validate(ci_state("db-1", 1, name="old-name"))
        assert await writes.upsert_cis(conn, tenant, [stale]) == 0
    assert (await read(pool, tenant, projections.ci_by_id, "db-1")).name == "payroll-db"
    assert await read(pool, f"{tenant}-other", projections.ci_by_id, "db-1") is None
