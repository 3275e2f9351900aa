"""The derived service-membership fact: which business services each CI supports, as events."""

import uuid

import pytest

from shared.events.binding import from_kafka
from shared.events.catalogue import CONFIG_EVENTS
from tests.integration.test_impact_analysis import ci, relate
from tests.support import end_offsets, fetch_as, published_so_far, read_topic

MEMBERSHIP = "itsm.config.service_membership.changed.v1"


@pytest.fixture
async def config(service_client):
    return await service_client("config")


@pytest.fixture
def manager(auth, tenant):
    return auth(tenant, "config_manager")


async def supported(config, tenant):
    """ci id -> the services it supports, as the service recorded them."""
    rows = await fetch_as(
        config.runtime.pool, tenant, "SELECT ci_id, services FROM ci_service_membership"
    )
    return {str(r["ci_id"]): sorted(str(s) for s in r["services"]) for r in rows}


async def membership_events(config, infra, tenant, start, count):
    def mine(records):
        events = [from_kafka(r.value, r.headers) for r in records]
        return [e for e in events if e.tenantid == tenant and e.type == MEMBERSHIP]

    bootstrap = infra.bootstrap_servers
    end = await published_so_far(bootstrap, CONFIG_EVENTS, config.runtime.pool, tenant)
    records = await read_topic(bootstrap, start, until=lambda rs: len(mine(rs)) >= count, to=end)
    return mine(records)


async def test_a_chain_below_a_service_supports_it_and_each_change_is_published_once(
    config, manager, tenant, infra
):
    start = await end_offsets(infra.bootstrap_servers, CONFIG_EVENTS)
    payroll = await ci(config, manager, "business_service", "Payroll")
    app = await ci(config, manager, "application", "payroll-app")
    db = await ci(config, manager, "database", "payroll-db")
    server = await ci(config, manager, "server", "srv-1")
    await relate(config, manager, db, "runs_on", server)
    await relate(config, manager, app, "depends_on", db)
    assert await supported(config, tenant) == {payroll: [payroll]}

    await relate(config, manager, app, "provides", payroll)
    assert await supported(config, tenant) == {
        payroll: [payroll],
        app: [payroll],
        db: [payroll],
        server: [payroll],
    }
    # The same relationship again changes nothing and publishes nothing.
    await relate(config, manager, app, "provides", payroll)

    events = await membership_events(config, infra, tenant, start, 4)
    assert len(events) == 4
    by_ci = {e.data["ci_id"]: e for e in events}
    assert by_ci[payroll].data["services"] == [payroll]
    assert by_ci[payroll].data["previous"] == []
    for one in (app, db, server):
        assert by_ci[one].data == {
            "ci_id": one,
            "services": [payroll],
            "previous": [],
            "sequence": 1,
        }
        assert by_ci[one].subject == f"membership/{one}"


async def test_a_shared_dependency_supports_every_service_above_it_until_a_path_goes(
    config, manager, tenant
):
    payroll = await ci(config, manager, "business_service", "Payroll")
    billing = await ci(config, manager, "business_service", "Billing")
    payroll_app = await ci(config, manager, "application", "payroll-app")
    billing_app = await ci(config, manager, "application", "billing-app")
    db = await ci(config, manager, "database", "shared-db")
    await relate(config, manager, payroll_app, "provides", payroll)
    await relate(config, manager, billing_app, "part_of", billing)
    await relate(config, manager, payroll_app, "depends_on", db)
    link = await relate(config, manager, billing_app, "depends_on", db)
    assert (await supported(config, tenant))[db] == sorted([payroll, billing])

    response = await config.delete(
        f"/relationships/{link}", params={"reason": "moved"}, headers=manager
    )
    assert response.status_code == 200, response.text
    state = await supported(config, tenant)
    assert state[db] == [payroll]
    assert state[billing_app] == [billing]
    sequence = await fetch_as(
        config.runtime.pool,
        tenant,
        "SELECT sequence FROM ci_service_membership WHERE ci_id = $1",
        db,
    )
    assert sequence[0]["sequence"] == 3  # payroll, then both, then payroll again


async def test_a_retired_ci_supports_nothing_and_passes_nothing_on(config, manager, tenant):
    payroll = await ci(config, manager, "business_service", "Payroll")
    app = await ci(config, manager, "application", "payroll-app")
    db = await ci(config, manager, "database", "payroll-db")
    await relate(config, manager, app, "provides", payroll)
    await relate(config, manager, app, "depends_on", db)
    assert (await supported(config, tenant))[db] == [payroll]

    response = await config.patch(
        f"/cis/{app}",
        json={"status": "retired", "reason": "decommissioned"},
        headers={**manager, "If-Match": '"1"'},
    )
    assert response.status_code == 200, response.text
    state = await supported(config, tenant)
    assert state[app] == []
    assert state[db] == []
    assert state[payroll] == [payroll]


async def test_a_dependency_cycle_ends_the_walk_and_supports_the_service_once(
    config, manager, tenant
):
    payroll = await ci(config, manager, "business_service", "Payroll")
    a = await ci(config, manager, "application", "a")
    b = await ci(config, manager, "application", "b")
    await relate(config, manager, a, "depends_on", b)
    await relate(config, manager, b, "depends_on", a)
    await relate(config, manager, a, "provides", payroll)
    state = await supported(config, tenant)
    assert state[a] == [payroll]
    assert state[b] == [payroll]


async def test_membership_is_computed_within_the_tenant_only(config, manager, auth, tenant):
    other = f"{tenant}-other"
    theirs = auth(other, "config_manager")
    payroll = await ci(config, manager, "business_service", "Payroll")
    app = await ci(config, manager, "application", "payroll-app")
    await relate(config, manager, app, "provides", payroll)
    await ci(config, theirs, "business_service", "Theirs")
    assert set(await supported(config, tenant)) == {payroll, app}
    assert app not in await supported(config, other)


async def test_a_large_import_settles_membership_once_with_the_same_result_as_single_changes(
    config, manager, tenant
):
    import json

    rows = [
        {
            "external_id": "svc",
            "class": "business_service",
            "name": "Payroll",
            "attributes": {"owner": "cfo", "customer": "finance", "availability_target": 99.9},
        },
        {
            "external_id": "app",
            "class": "application",
            "name": "app",
            "attributes": {"environment": "production"},
        },
    ]
    rows += [
        {
            "external_id": f"vm{i}",
            "class": "virtual_machine",
            "name": f"vm{i}",
            "attributes": {"hostname": f"vm{i}", "environment": "production"},
        }
        for i in range(250)
    ]
    rows.append({"kind": "relationship", "type": "provides", "source": "app", "target": "svc"})
    rows += [
        {"kind": "relationship", "type": "runs_on", "source": "app", "target": f"vm{i}"}
        for i in range(250)
    ]
    body = "".join(json.dumps(r) + "\n" for r in rows).encode()
    response = await config.post(
        "/imports",
        params={"source": "scan"},
        content=body,
        headers={**manager, "Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 201, response.text
    state = await supported(config, tenant)
    [service] = [ci for ci, services in state.items() if services == [ci]]
    assert len(state) == 252
    assert all(services == [service] for services in state.values())
    assert await fetch_as(config.runtime.pool, tenant, "SELECT * FROM membership_pending") == []

    # A later single change walks from its seed only and agrees with the full walk.
    [vm_row] = await fetch_as(config.runtime.pool, tenant, "SELECT id FROM cis WHERE name = 'vm7'")
    vm = str(vm_row["id"])
    assert state[vm] == [service]
    relationships = (await config.get(f"/cis/{vm}/relationships", headers=manager)).json()
    [link] = [r["id"] for r in relationships if r["removed_at"] is None]
    removed = await config.delete(f"/relationships/{link}", headers=manager)
    assert removed.status_code == 200
    assert (await supported(config, tenant))[vm] == []


async def test_marks_left_by_an_interrupted_bulk_write_are_settled_later(config, manager, tenant):
    from services.config.adapters import membership as adapter
    from services.config.application.membership import settle
    from shared.db import tenant_transaction

    payroll = await ci(config, manager, "business_service", "Payroll")
    app = await ci(config, manager, "application", "app")
    pool = config.runtime.pool
    # As if an import had committed a relationship and crashed before settling it.
    async with tenant_transaction(pool, tenant) as conn:
        await conn.execute(
            "INSERT INTO relationships (tenant_id, id, type, source_id, target_id, added_at,"
            " added_by) VALUES ($1, gen_random_uuid(), 'provides', $2, $3, now(), 'import')",
            tenant,
            uuid.UUID(app),
            uuid.UUID(payroll),
        )
        await adapter.mark_pending(conn, tenant, [uuid.UUID(app)])
    assert app not in await supported(config, tenant)
    assert await settle(pool, tenant, actor="system:membership", correlation_id=None) == 1
    assert (await supported(config, tenant))[app] == [payroll]
    assert await settle(pool, tenant, actor="system:membership", correlation_id=None) == 0
