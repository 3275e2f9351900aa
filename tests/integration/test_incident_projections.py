"""The incident service's projection of the config service's events, on the real broker and
database: CIs, service membership, business services (the shared CMDB projection), calendars
and SLA policies, and the SLA policy that applies to work on a set of services."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaProducer

from services.incident.adapters import projections
from services.incident.entrypoints.consumers import (
    CMDB_PROJECTION_CONSUMER,
    CONFIG_PROJECTION_CONSUMER,
    apply_calendars_and_policies,
)
from shared.calendars import CalendarSpec
from shared.cmdb import reads as cmdb_reads
from shared.cmdb.consumer import apply as apply_cmdb
from shared.db import tenant_transaction
from shared.events.binding import parse_payload
from shared.events.catalogue import (
    CONFIG_EVENTS,
    CalendarDefinedV1,
    CiStateV1,
    SlaPolicyDefinedV1,
    SlaTargetV1,
)
from shared.events.envelope import new_envelope
from shared.inbox import ReceivedEvent
from tests.integration.test_impact_analysis import ci, relate
from tests.integration.test_service_catalogue import (
    OFFICE,
    business_service,
    put_calendar,
    put_policy,
)
from tests.support import eventually, fetch_as, fetchval_as, sample_value, send_event

SECONDS = {
    "P1": (900, 14_400),
    "P2": (1_800, 28_800),
    "P3": (7_200, 86_400),
    "P4": (28_800, 288_000),
    "P5": (86_400, 576_000),
}
PROJECTION_TABLES = (
    "cmdb_cis",
    "cmdb_ci_external_ids",
    "cmdb_ci_services",
    "cmdb_business_services",
    "cmdb_relationships",
    "proj_calendars",
    "proj_sla_policies",
)
CONSUMERS = [CMDB_PROJECTION_CONSUMER, CONFIG_PROJECTION_CONSUMER]


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


async def read(pool, tenant, query, *args):
    """Run one projection read as the tenant."""
    async with tenant_transaction(pool, tenant, readonly=True) as conn:
        return await query(conn, tenant, *args)


def config_event(tenant, type_, subject, data, *, sequence=1, time=None):
    return new_envelope(
        source="itsm/config",
        type=f"itsm.config.{type_}.v1",
        subject=subject,
        tenantid=tenant,
        itsmversion=sequence,
        actor="tester",
        data=data,
        time=time,
    )


def ci_state(ci_id, version, *, name="db-1", status="active", external_ids=None, at=None):
    return CiStateV1(
        id=ci_id,
        ci_class="database",
        name=name,
        status=status,
        owner_team="dba",
        criticality=2,
        attributes={},
        external_ids=external_ids or {},
        controlled=False,
        version=version,
        updated_at=at or datetime.now(UTC),
        updated_by="tester",
    ).model_dump(mode="json")


def policy(name, *, version=1, services=(), default=False, p1=(900, 14_400), timezone="UTC"):
    targets = {**SECONDS, "P1": p1}
    return SlaPolicyDefinedV1(
        name=name,
        targets={
            p: SlaTargetV1(response_seconds=r, resolution_seconds=s)
            for p, (r, s) in targets.items()
        },
        calendar_name="always",
        calendar=CalendarSpec.always_open(timezone).model_dump(),
        pause_on=["awaiting_customer"],
        warning_threshold=0.75,
        services=list(services),
        default=default,
        version=version,
    )


async def define(pools, tenant, *policies, at=None):
    """Store policies in the projection as the consumer would (adapter writes, no broker)."""
    async with tenant_transaction(pools["incident"], tenant) as conn:
        for p in policies:
            await projections.upsert_policy(conn, tenant, p, at or datetime.now(UTC))


async def applied(pools, tenant, event_id):
    """Whether a projection consumer (CMDB or SLA) has taken the event (the inbox holds it)."""
    found = await fetchval_as(
        pools["incident"],
        tenant,
        "SELECT count(*) FROM inbox WHERE consumer = ANY($1::text[]) AND event_id = $2",
        CONSUMERS,
        event_id,
    )
    return found == 1


# --- End to end: the config service's API in, the incident service's projection out ---------


async def test_what_the_config_service_defines_appears_in_the_incident_services_projection(
    config, incident, manager, tenant
):
    pool = incident.runtime.pool
    payroll = await business_service(config, manager, name="Payroll")
    app = await ci(config, manager, "application", "payroll-app")
    response = await config.post(
        "/cis",
        json={
            "class": "database",
            "name": "payroll-db",
            "criticality": 2,
            "attributes": {"engine": "postgresql", "port": 5432},
            "external_ids": {"vcenter": "vm-42"},
        },
        headers=manager,
    )
    assert response.status_code == 201, response.text
    db = response.json()["id"]
    await relate(config, manager, app, "provides", payroll)
    await relate(config, manager, app, "depends_on", db)
    await put_calendar(config, manager, expect=201)
    await put_policy(config, manager, name="gold", services=[payroll], expect=201)
    await put_policy(config, manager, name="standard", default=True, expect=201)

    found = await eventually(
        lambda: read(pool, tenant, projections.ci_by_name, "payroll-db"),
        lambda c: c is not None,
    )
    assert (found.id, found.ci_class, found.status, found.criticality, found.version) == (
        db,
        "database",
        "active",
        2,
        1,
    )
    assert found.external_ids == {"vcenter": "vm-42"}
    by_external = await read(pool, tenant, projections.ci_by_external_id, "vcenter", "vm-42")
    assert by_external is not None and by_external.id == db
    assert await read(pool, tenant, projections.ci_by_external_id, "other", "vm-42") is None
    assert await eventually(
        lambda: read(pool, tenant, projections.services_of_ci, db), lambda s: s == [payroll]
    )
    # The service's own membership is another aggregate (another partition): no order with db's.
    assert await eventually(
        lambda: read(pool, tenant, projections.services_of_ci, payroll), lambda s: s == [payroll]
    )

    service = await eventually(
        lambda: read(pool, tenant, projections.service_by_name, "PAYROLL"),
        lambda s: s is not None and s.sla_policy == "gold",
    )
    assert (service.id, service.name, service.owner, service.customer) == (
        payroll,
        "Payroll",
        "payments-team",
        "Retail",
    )
    calendar = await eventually(
        lambda: read(pool, tenant, projections.calendar_by_name, "office"),
        lambda c: c is not None,
    )
    assert calendar.spec == CalendarSpec.model_validate(OFFICE)

    gold = await eventually(
        lambda: read(pool, tenant, projections.policy_for, [payroll]),
        lambda p: p is not None and p.name == "gold",
    )
    assert gold.targets["P1"] == SlaTargetV1(response_seconds=900, resolution_seconds=14_400)
    assert set(gold.targets) == {"P1", "P2", "P3", "P4", "P5"}
    assert (gold.calendar_name, gold.calendar) == ("office", CalendarSpec.model_validate(OFFICE))
    assert (gold.pause_on, gold.warning_threshold, gold.default) == (
        ("awaiting_customer",),
        0.75,
        False,
    )
    standard = await eventually(
        lambda: read(pool, tenant, projections.policy_for, []),
        lambda p: p is not None,
    )
    assert (standard.name, standard.default) == ("standard", True)

    # A change and a retirement reach the projection too.
    response = await config.patch(
        f"/cis/{db}",
        json={"name": "payroll-db-2", "reason": "renamed"},
        headers={**manager, "If-Match": '"1"'},
    )
    assert response.status_code == 200, response.text
    renamed = await eventually(
        lambda: read(pool, tenant, projections.ci_by_id, db), lambda c: c.version == 2
    )
    assert renamed.name == "payroll-db-2"
    response = await config.patch(
        f"/cis/{app}",
        json={"status": "retired", "reason": "decommissioned"},
        headers={**manager, "If-Match": '"1"'},
    )
    assert response.status_code == 200, response.text
    retired = await eventually(
        lambda: read(pool, tenant, projections.ci_by_id, app), lambda c: c.status == "retired"
    )
    assert retired.version == 2
    # A retired CI supports nothing and passes nothing on.
    await eventually(lambda: read(pool, tenant, projections.services_of_ci, db), lambda s: s == [])
    assert await read(pool, tenant, projections.services_of_ci, app) == []


async def test_a_redefined_calendar_republishes_its_policies_and_the_projection_follows(
    config, incident, manager, tenant
):
    pool = incident.runtime.pool
    payroll = await business_service(config, manager, name="Payroll")
    await put_calendar(config, manager, expect=201)
    await put_policy(config, manager, name="gold", services=[payroll], expect=201)
    await eventually(
        lambda: read(pool, tenant, projections.policy_for, [payroll]), lambda p: p is not None
    )
    utc = {**OFFICE, "timezone": "UTC"}
    await put_calendar(config, manager, calendar=utc, expect=200)
    moved = await eventually(
        lambda: read(pool, tenant, projections.policy_for, [payroll]),
        lambda p: p.calendar.timezone == "UTC",
    )
    assert moved.version == 2


# --- Order, repetition and other event types -------------------------------------------------


async def test_an_older_version_arriving_late_is_ignored(
    start_runtime, pools, raw_producer, tenant
):
    await start_runtime("incident")
    ci_id = str(uuid.uuid4())
    newer = config_event(
        tenant,
        "ci.updated",
        ci_id,
        {"ci": ci_state(ci_id, 2, name="db-new", external_ids={"aws": "i-2"}), "changed": []},
        sequence=2,
    )
    older = config_event(
        tenant,
        "ci.created",
        ci_id,
        {"ci": ci_state(ci_id, 1, name="db-old", external_ids={"aws": "i-1"})},
    )
    await send_event(raw_producer, newer, CONFIG_EVENTS)
    await send_event(raw_producer, older, CONFIG_EVENTS)
    # The same event again (a redelivery) is dropped by the inbox.
    await send_event(raw_producer, newer, CONFIG_EVENTS)
    await eventually(lambda: applied(pools, tenant, older.id), bool)

    pool = pools["incident"]
    kept = await read(pool, tenant, projections.ci_by_id, ci_id)
    assert (kept.name, kept.version, kept.external_ids) == ("db-new", 2, {"aws": "i-2"})
    assert await read(pool, tenant, projections.ci_by_name, "db-old") is None
    assert await read(pool, tenant, projections.ci_by_external_id, "aws", "i-1") is None
    assert (await read(pool, tenant, projections.ci_by_external_id, "aws", "i-2")).id == ci_id


async def test_config_events_with_the_version_in_the_old_sequence_attribute_still_apply(
    start_runtime, pools, raw_producer, tenant
):
    # During the move from `sequence` to `itsmversion`, events of both forms are on the topic.
    runtime = await start_runtime("incident")
    ci_id = str(uuid.uuid4())
    created = config_event(tenant, "ci.created", ci_id, {"ci": ci_state(ci_id, 1, name="db-a")})
    updated = config_event(
        tenant,
        "ci.updated",
        ci_id,
        {"ci": ci_state(ci_id, 2, name="db-b"), "changed": ["name"]},
        sequence=2,
    )
    await send_event(raw_producer, created, CONFIG_EVENTS, legacy_version=True)
    await send_event(raw_producer, updated, CONFIG_EVENTS)
    await eventually(lambda: applied(pools, tenant, updated.id), bool)

    assert await applied(pools, tenant, created.id)
    kept = await read(pools["incident"], tenant, projections.ci_by_id, ci_id)
    assert (kept.name, kept.version) == ("db-b", 2)
    dead = sample_value(
        runtime.registry, "itsm_dead_lettered_total", {"consumer": CMDB_PROJECTION_CONSUMER}
    )
    assert dead == 0


async def test_stale_membership_service_calendar_and_policy_events_are_ignored(
    start_runtime, pools, raw_producer, tenant
):
    await start_runtime("incident")
    ci_id, service_id = str(uuid.uuid4()), str(uuid.uuid4())
    membership = f"membership/{ci_id}"
    events = [
        config_event(
            tenant,
            "service_membership.changed",
            membership,
            {"ci_id": ci_id, "services": [service_id], "previous": [], "sequence": 2},
            sequence=2,
        ),
        config_event(
            tenant,
            "service_membership.changed",
            membership,
            {"ci_id": ci_id, "services": [], "previous": [], "sequence": 1},
        ),
    ]
    service = {
        "id": service_id,
        "status": "active",
        "criticality": 1,
        "owner": "cfo",
        "sla_policy": "gold",
    }
    events += [
        config_event(
            tenant,
            "business_service.defined",
            f"business-service/{service_id}",
            {**service, "name": "Payroll", "version": 2},
            sequence=2,
        ),
        config_event(
            tenant,
            "business_service.defined",
            f"business-service/{service_id}",
            {**service, "name": "Old payroll", "sla_policy": None, "version": 1},
        ),
    ]
    spec = CalendarSpec.always_open().model_dump(mode="json")
    events += [
        config_event(
            tenant,
            "calendar.defined",
            "calendar/always",
            {"name": "always", "calendar": spec, "version": 2},
            sequence=2,
        ),
        config_event(
            tenant,
            "calendar.defined",
            "calendar/always",
            {"name": "always", "calendar": {**spec, "timezone": "Europe/Paris"}, "version": 1},
        ),
    ]
    gold_2 = policy("gold", version=2, services=[service_id], p1=(600, 3_600))
    gold_1 = policy("gold", version=1, services=[], p1=(900, 14_400))
    events += [
        config_event(
            tenant, "sla_policy.defined", "sla-policy/gold", p.model_dump(mode="json"), sequence=n
        )
        for p, n in ((gold_2, 2), (gold_1, 1))
    ]
    for event in events:
        await send_event(raw_producer, event, CONFIG_EVENTS)
    for event in events:
        await eventually(lambda e=event: applied(pools, tenant, e.id), bool)

    pool = pools["incident"]
    assert await read(pool, tenant, projections.services_of_ci, ci_id) == [service_id]
    found = await read(pool, tenant, projections.service_by_id, service_id)
    assert (found.name, found.sla_policy, found.version) == ("Payroll", "gold", 2)
    assert await read(pool, tenant, projections.service_by_name, "old payroll") is None
    calendar = await read(pool, tenant, projections.calendar_by_name, "always")
    assert (calendar.version, calendar.spec.timezone) == (2, "UTC")
    gold = await read(pool, tenant, projections.policy_for, [service_id])
    assert (gold.name, gold.version, gold.targets["P1"].resolution_seconds) == ("gold", 2, 3_600)


async def test_other_config_event_types_are_skipped_not_dead_lettered(
    start_runtime, pools, raw_producer, tenant
):
    runtime = await start_runtime("incident")
    key = str(uuid.uuid4())
    ci_class = config_event(
        tenant,
        "ci_class.defined",
        key,
        {"name": "router", "description": "", "attribute_schema": {}, "version": 1},
    )
    # Same key, so the same partition: once the CI is in, the class was read before it.
    after = config_event(tenant, "ci.created", key, {"ci": ci_state(key, 1, name="marker")})
    await send_event(raw_producer, ci_class, CONFIG_EVENTS)
    await send_event(raw_producer, after, CONFIG_EVENTS)
    await eventually(lambda: applied(pools, tenant, after.id), bool)

    assert not await applied(pools, tenant, ci_class.id)
    for consumer in CONSUMERS:
        labels = {"consumer": consumer}
        assert sample_value(runtime.registry, "itsm_dead_lettered_total", labels) == 0
    assert (await read(pools["incident"], tenant, projections.ci_by_id, key)).name == "marker"


# --- Which SLA policy applies ----------------------------------------------------------------


async def test_a_covered_service_gets_its_policy_and_an_uncovered_one_the_default(pools, tenant):
    payroll, billing, other = "svc-payroll", "svc-billing", "svc-other"
    await define(
        pools,
        tenant,
        policy("gold", services=[payroll]),
        policy("silver", services=[billing], p1=(1_800, 28_800)),
        policy("standard", default=True, p1=(3_600, 86_400)),
    )
    pool = pools["incident"]
    assert (await read(pool, tenant, projections.policy_for, [payroll])).name == "gold"
    assert (await read(pool, tenant, projections.policy_for, [other, billing])).name == "silver"
    fallback = await read(pool, tenant, projections.policy_for, [other])
    assert (fallback.name, fallback.default) == ("standard", True)
    assert (await read(pool, tenant, projections.policy_for, [])).name == "standard"


async def test_work_on_services_of_several_policies_gets_the_tightest_p1_resolution(pools, tenant):
    await define(
        pools,
        tenant,
        policy("bronze", services=["a"], p1=(900, 28_800)),
        policy("gold", services=["b"], p1=(1_800, 14_400)),
        policy("gold-too", services=["c"], p1=(600, 14_400)),
        policy("standard", default=True, p1=(60, 600)),
    )
    pool = pools["incident"]
    assert (await read(pool, tenant, projections.policy_for, ["a", "b"])).name == "gold"
    # Equal P1 resolution: the tighter P1 response decides; a covering policy beats the default
    # however tight the default is.
    assert (await read(pool, tenant, projections.policy_for, ["a", "b", "c"])).name == "gold-too"


async def test_without_a_covering_policy_or_a_default_no_policy_applies(pools, tenant):
    pool = pools["incident"]
    assert await read(pool, tenant, projections.policy_for, ["svc"]) is None
    await define(pools, tenant, policy("gold", services=["elsewhere"]))
    assert await read(pool, tenant, projections.policy_for, ["svc"]) is None
    assert await read(pool, tenant, projections.policy_for, []) is None


async def test_while_the_default_moves_the_most_recently_defined_default_applies(pools, tenant):
    now = datetime.now(UTC)
    await define(pools, tenant, policy("old-default", default=True), at=now - timedelta(hours=1))
    await define(pools, tenant, policy("new-default", default=True), at=now)
    assert (await read(pools["incident"], tenant, projections.policy_for, [])).name == (
        "new-default"
    )


async def test_another_tenants_policies_and_cis_never_apply(
    start_runtime, pools, raw_producer, tenant
):
    await start_runtime("incident")
    other = f"{tenant}-other"
    service_id = str(uuid.uuid4())
    ci_id = str(uuid.uuid4())
    theirs = [
        config_event(
            other,
            "sla_policy.defined",
            "sla-policy/theirs",
            policy("theirs", services=[service_id]).model_dump(mode="json"),
        ),
        config_event(
            other,
            "sla_policy.defined",
            "sla-policy/their-default",
            policy("their-default", default=True).model_dump(mode="json"),
        ),
        config_event(
            other,
            "ci.created",
            ci_id,
            {"ci": ci_state(ci_id, 1, name="their-db", external_ids={"aws": "x"})},
        ),
        config_event(
            other,
            "service_membership.changed",
            f"membership/{ci_id}",
            {"ci_id": ci_id, "services": [service_id], "previous": [], "sequence": 1},
        ),
    ]
    for event in theirs:
        await send_event(raw_producer, event, CONFIG_EVENTS)
    for event in theirs:
        await eventually(lambda e=event: applied(pools, other, e.id), bool)

    pool = pools["incident"]
    assert (await read(pool, other, projections.policy_for, [service_id])).name == "theirs"
    assert await read(pool, tenant, projections.policy_for, [service_id]) is None
    assert await read(pool, tenant, projections.policy_for, []) is None
    assert await read(pool, tenant, projections.ci_by_id, ci_id) is None
    assert await read(pool, tenant, projections.ci_by_name, "their-db") is None
    assert await read(pool, tenant, projections.ci_by_external_id, "aws", "x") is None
    assert await read(pool, tenant, projections.services_of_ci, ci_id) == []
    # Asking for the other tenant by name inside this tenant's transaction shows nothing either.
    async with tenant_transaction(pool, tenant, readonly=True) as conn:
        assert await projections.policy_for(conn, other, [service_id]) is None


async def test_a_batch_applied_at_once_has_the_effect_of_its_events_one_by_one(pools, tenant):
    """A batch handler given the whole batch (the normal path) and given one event at a time
    (the path of a batch that failed) leaves the same projection, whatever the order of
    versions in the batch."""
    ci_id, service_id = str(uuid.uuid4()), str(uuid.uuid4())
    at = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

    def batch(tenant_id):
        def event(type_, subject, data, n=1):
            envelope = config_event(tenant_id, type_, subject, data, sequence=n, time=at)
            return ReceivedEvent(envelope, parse_payload(envelope), None)

        membership = f"membership/{ci_id}"
        relationship = {
            "id": "rel-1",
            "type": "runs_on",
            "source_id": ci_id,
            "target_id": service_id,
        }
        return [
            event("ci.created", ci_id, {"ci": ci_state(ci_id, 1, external_ids={"a": "1"}, at=at)}),
            event(
                "ci.retired",
                ci_id,
                {"ci": ci_state(ci_id, 3, status="retired", external_ids={"b": "3"}, at=at)},
                3,
            ),
            event("ci.updated", ci_id, {"ci": ci_state(ci_id, 2, at=at), "changed": ["name"]}, 2),
            event(
                "service_membership.changed",
                membership,
                {"ci_id": ci_id, "services": [service_id], "previous": [], "sequence": 1},
            ),
            event(
                "service_membership.changed",
                membership,
                {"ci_id": ci_id, "services": [], "previous": [service_id], "sequence": 3},
                3,
            ),
            event(
                "service_membership.changed",
                membership,
                {"ci_id": ci_id, "services": ["x"], "previous": [service_id], "sequence": 2},
                2,
            ),
            event(
                "relationship.removed",
                "rel-1",
                {"relationship": relationship, "reason": "gone"},
                2,
            ),
            event("relationship.added", "rel-1", {"relationship": relationship}),
            event(
                "sla_policy.defined",
                "sla-policy/gold",
                policy("gold", version=2, default=True).model_dump(mode="json"),
                2,
            ),
            event(
                "sla_policy.defined",
                "sla-policy/gold",
                policy("gold", services=[service_id]).model_dump(mode="json"),
            ),
            event(
                "business_service.defined",
                f"business-service/{service_id}",
                {
                    "id": service_id,
                    "name": "Payroll",
                    "status": "active",
                    "criticality": 1,
                    "version": 1,
                },
            ),
            event(
                "calendar.defined",
                "calendar/always",
                {
                    "name": "always",
                    "calendar": CalendarSpec.always_open().model_dump(mode="json"),
                    "version": 1,
                },
            ),
        ]

    one_by_one = f"{tenant}-one-by-one"
    pool = pools["incident"]

    def handler(event):
        sla = isinstance(event.payload, CalendarDefinedV1 | SlaPolicyDefinedV1)
        return apply_calendars_and_policies if sla else apply_cmdb

    async with tenant_transaction(pool, tenant) as conn:
        events = batch(tenant)
        await apply_cmdb(conn, [e for e in events if handler(e) is apply_cmdb])
        await apply_calendars_and_policies(
            conn, [e for e in events if handler(e) is apply_calendars_and_policies]
        )
    async with tenant_transaction(pool, one_by_one) as conn:
        for event in batch(one_by_one):
            await handler(event)(conn, [event])

    async def state(tenant_id):
        tables = {}
        for table in PROJECTION_TABLES:
            rows = await fetch_as(pool, tenant_id, f"SELECT * FROM {table}")
            tables[table] = sorted(
                sorted((k, str(v)) for k, v in dict(r).items() if k != "tenant_id") for r in rows
            )
        return tables

    bulk, single = await state(tenant), await state(one_by_one)
    assert bulk == single
    kept = await read(pool, tenant, projections.ci_by_id, ci_id)
    assert (kept.version, kept.status, kept.external_ids) == (3, "retired", {"b": "3"})
    assert await read(pool, tenant, projections.services_of_ci, ci_id) == []
    assert await read(pool, tenant, cmdb_reads.relationships_of, ci_id) == []
    gold = await read(pool, tenant, projections.policy_by_name, "gold")
    assert (gold.version, gold.default) == (2, True)
