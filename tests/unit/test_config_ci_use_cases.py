"""CI use cases on a fake unit of work: what they store, what they announce, what they refuse."""

from __future__ import annotations

import uuid

import pytest

from services.config.application.cis import (
    DefineClass,
    ModifyCi,
    RegisterCi,
    define_class,
    modify_ci,
    register_ci,
)
from shared.errors import (
    Conflict,
    NotFound,
    StaleVersion,
    ValidationFailed,
)
from shared.events.catalogue import (
    BusinessServiceDefinedV1,
    CiClassDefinedV1,
    CiCreatedV1,
    CiRetiredV1,
    CiUpdatedV1,
    ServiceMembershipChangedV1,
)
from tests.unit.fakes_config import ConfigStore, a_ci, unit

SERVER = {"hostname": "web-1", "environment": "production"}
SERVICE = {"owner": "ops", "customer": "shop", "availability_target": 99.9}


def command(**overrides: object) -> RegisterCi:
    fields: dict[str, object] = {
        "ci_class": "server",
        "name": "web-1",
        "status": "active",
        "owner_team": "platform",
        "criticality": 2,
        "attributes": SERVER,
        "external_ids": {},
        "controlled": False,
    }
    return RegisterCi(**(fields | overrides))  # type: ignore[arg-type]


def field_names(error: pytest.ExceptionInfo[Exception]) -> list[str]:
    refused = error.value
    assert isinstance(refused, ValidationFailed | Conflict)
    return [f.field for f in refused.fields]


async def test_registering_a_ci_stores_version_1_and_records_ci_created_under_its_id() -> None:
    store = ConfigStore()
    ci = await register_ci(unit(store), command())
    assert store.cis[ci.id] == ci and ci.version == 1 and ci.updated_by == "alice"
    assert [(v["version"], v["changed"]) for v in store.versions] == [(1, ["created"])]
    (event,) = store.events
    assert isinstance(event.payload, CiCreatedV1)
    assert (event.subject, event.version, event.payload.ci.name) == (str(ci.id), 1, "web-1")


async def test_attributes_breaking_the_class_schema_are_refused_naming_each_with_its_pointer():
    store = ConfigStore()
    with pytest.raises(ValidationFailed) as refused:
        await register_ci(unit(store), command(attributes={"hostname": "web-1", "port": 1}))
    assert field_names(refused) == ["attributes.environment", "attributes.port"]
    pointers = [f.pointer for f in refused.value.fields]
    assert pointers == ["#/attributes/environment", "#/attributes/port"]
    assert store.cis == {} and store.events == [] and store.rollbacks == 1


async def test_an_unknown_class_is_refused_naming_class():
    store = ConfigStore()
    with pytest.raises(ValidationFailed) as refused:
        await register_ci(unit(store), command(ci_class="rack", attributes={}))
    assert field_names(refused) == ["class"]


async def test_a_tenant_class_validates_the_attributes_of_its_cis():
    store = ConfigStore()
    schema = {"type": "object", "properties": {"slots": {"type": "integer"}}}
    await define_class(unit(store), DefineClass("rack", "", schema))
    ci = await register_ci(unit(store), command(ci_class="rack", attributes={"slots": 42}))
    assert store.cis[ci.id].attributes == {"slots": 42}
    with pytest.raises(ValidationFailed):
        await register_ci(unit(store), command(ci_class="rack", attributes={"slots": "many"}))


async def test_an_external_id_another_ci_has_is_a_conflict_naming_its_source_and_nothing_stays():
    store = ConfigStore()
    first = await register_ci(unit(store), command(external_ids={"vcenter": "vm-1"}))
    with pytest.raises(Conflict) as refused:
        await register_ci(unit(store), command(name="web-2", external_ids={"vcenter": "vm-1"}))
    assert field_names(refused) == ["external_ids.vcenter"]
    assert list(store.cis) == [first.id] and len(store.events) == 1


async def test_a_business_service_announces_its_entry_and_supports_itself_in_order():
    store = ConfigStore()
    ci = await register_ci(
        unit(store), command(ci_class="business_service", name="shop", attributes=SERVICE)
    )
    kinds = [type(e.payload) for e in store.events]
    assert kinds == [CiCreatedV1, BusinessServiceDefinedV1, ServiceMembershipChangedV1]
    entry = store.events[1]
    assert (entry.subject, entry.version) == (f"business-service/{ci.id}", 1)
    membership = store.events[2]
    assert membership.payload.services == [str(ci.id)]  # type: ignore[attr-defined]
    assert (membership.subject, membership.version) == (f"membership/{ci.id}", 1)


async def test_modifying_a_ci_records_a_new_version_with_what_changed_and_why():
    store = ConfigStore()
    ci = a_ci(store, attributes=SERVER)
    changed = await modify_ci(
        unit(store, "bob"), ModifyCi(ci.id, 1, {"name": "web-9"}, "renamed", None)
    )
    assert (changed.version, changed.name, changed.updated_by) == (2, "web-9", "bob")
    assert store.cis[ci.id] == changed
    (event,) = store.events
    assert isinstance(event.payload, CiUpdatedV1)
    assert (event.payload.changed, event.payload.reason, event.version) == (["name"], "renamed", 2)


async def test_the_same_values_again_make_no_version_and_no_event():
    store = ConfigStore()
    ci = a_ci(store, attributes=SERVER)
    same = await modify_ci(unit(store), ModifyCi(ci.id, 1, {"name": ci.name}, None, None))
    assert same == ci and store.events == [] and store.versions == []


async def test_modifying_an_unknown_ci_is_not_found():
    with pytest.raises(NotFound):
        await modify_ci(unit(ConfigStore()), ModifyCi(uuid.uuid4(), 1, {"name": "x"}, None, None))


async def test_a_stale_version_is_refused_with_the_current_one():
    store = ConfigStore()
    ci = a_ci(store, attributes=SERVER)
    with pytest.raises(StaleVersion) as refused:
        await modify_ci(unit(store), ModifyCi(ci.id, 7, {"name": "x"}, None, None))
    assert (refused.value.current, refused.value.expected) == (1, 7)
    assert store.cis[ci.id] == ci


async def test_a_retired_ci_cannot_be_modified_a_conflict_naming_status():
    store = ConfigStore()
    ci = a_ci(store, status="retired", attributes=SERVER)
    with pytest.raises(Conflict) as refused:
        await modify_ci(unit(store), ModifyCi(ci.id, 1, {"name": "x"}, None, None))
    assert field_names(refused) == ["status"]


async def test_retiring_a_ci_announces_it_and_drops_it_from_its_services():
    store = ConfigStore()
    service = await register_ci(
        unit(store), command(ci_class="business_service", name="shop", attributes=SERVICE)
    )
    host = a_ci(store, attributes=SERVER)
    store.relationships[uuid.uuid4()] = {
        "type": "provides",
        "source_id": host.id,
        "target_id": service.id,
        "removed_at": None,
    }
    store.membership[host.id] = ([str(service.id)], 1)
    store.events.clear()
    await modify_ci(unit(store), ModifyCi(host.id, 1, {"status": "retired"}, "gone", None))
    retired, membership = store.events
    assert isinstance(retired.payload, CiRetiredV1) and retired.payload.reason == "gone"
    assert isinstance(membership.payload, ServiceMembershipChangedV1)
    assert (membership.payload.services, membership.payload.previous) == ([], [str(service.id)])
    assert membership.version == 2


async def test_defining_a_class_twice_records_versions_1_and_2():
    store = ConfigStore()
    schema = {"type": "object"}
    assert await define_class(unit(store), DefineClass("rack", "one", schema)) == 1
    assert await define_class(unit(store), DefineClass("rack", "two", schema)) == 2
    events = [(e.subject, e.version) for e in store.events]
    assert events == [("ci-class/rack", 1), ("ci-class/rack", 2)]
    assert all(isinstance(e.payload, CiClassDefinedV1) for e in store.events)


async def test_a_built_in_class_name_is_a_conflict_naming_the_path_parameter():
    with pytest.raises(Conflict) as refused:
        await define_class(unit(ConfigStore()), DefineClass("server", "", {"type": "object"}))
    assert [(f.field, f.location) for f in refused.value.fields] == [("name", "path")]


async def test_an_unacceptable_class_schema_is_refused_naming_the_place():
    store = ConfigStore()
    with pytest.raises(ValidationFailed) as refused:
        await define_class(unit(store), DefineClass("rack", "", {"type": "string"}))
    assert field_names(refused)[0].startswith("attribute_schema")
    assert store.classes == {} and store.events == []
