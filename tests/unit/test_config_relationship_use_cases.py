"""Relationship use cases and impact analysis on a fake unit of work."""

from __future__ import annotations

import uuid

import pytest

from services.config.application.relationships import (
    MAX_PATHS,
    AddRelationship,
    add_relationship,
    impact,
    remove_relationship,
)
from shared.errors import NotFound, ValidationFailed
from shared.events.catalogue import (
    RelationshipAddedV1,
    RelationshipRemovedV1,
    ServiceMembershipChangedV1,
)
from tests.unit.fakes_config import ConfigStore, a_ci, unit


async def test_relating_two_cis_stores_it_and_records_relationship_added_as_version_1():
    store = ConfigStore()
    app, host = a_ci(store, "application", name="app"), a_ci(store, name="host")
    row, created = await add_relationship(unit(store), AddRelationship("runs_on", app.id, host.id))
    assert created and store.relationships[row["id"]]["removed_at"] is None
    (event,) = store.events
    assert isinstance(event.payload, RelationshipAddedV1)
    assert (event.subject, event.version) == (str(row["id"]), 1)
    assert event.payload.relationship.source_id == str(app.id)


async def test_a_relationship_in_place_is_answered_with_itself_and_announced_once():
    store = ConfigStore()
    app, host = a_ci(store, "application"), a_ci(store)
    first, _ = await add_relationship(unit(store), AddRelationship("runs_on", app.id, host.id))
    again, created = await add_relationship(
        unit(store), AddRelationship("runs_on", app.id, host.id)
    )
    assert not created and again["id"] == first["id"]
    assert len(store.of_type(RelationshipAddedV1)) == 1


@pytest.mark.parametrize("missing", ["source_id", "target_id"])
async def test_an_end_that_is_unknown_or_retired_is_refused_naming_it(missing: str):
    store = ConfigStore()
    known = a_ci(store)
    retired = a_ci(store, status="retired", name="old")
    for other in (uuid.uuid4(), retired.id):
        ends = (other, known.id) if missing == "source_id" else (known.id, other)
        with pytest.raises(ValidationFailed) as refused:
            await add_relationship(unit(store), AddRelationship("depends_on", *ends))
        assert [f.field for f in refused.value.fields] == [missing]
    assert store.relationships == {} and store.events == []


async def test_a_ci_cannot_relate_to_itself():
    store = ConfigStore()
    ci = a_ci(store)
    with pytest.raises(ValidationFailed) as refused:
        await add_relationship(unit(store), AddRelationship("depends_on", ci.id, ci.id))
    assert [f.field for f in refused.value.fields] == ["target_id"]


async def test_what_provides_a_business_service_supports_it_and_everything_below_too():
    store = ConfigStore()
    service = a_ci(store, "business_service", name="shop")
    app, host = a_ci(store, "application", name="app"), a_ci(store, name="host")
    await add_relationship(unit(store), AddRelationship("runs_on", app.id, host.id))
    assert store.of_type(ServiceMembershipChangedV1) == []  # no service above them yet
    await add_relationship(unit(store), AddRelationship("provides", app.id, service.id))
    changes = {e.ci_id: e.services for e in store.of_type(ServiceMembershipChangedV1)}
    assert changes == {str(app.id): [str(service.id)], str(host.id): [str(service.id)]}
    # Each membership event follows the relationship event that caused it, in one unit.
    assert [type(e.payload) for e in store.events][-3:] == [
        RelationshipAddedV1,
        ServiceMembershipChangedV1,
        ServiceMembershipChangedV1,
    ]


async def test_removing_a_relationship_keeps_it_removed_and_announces_the_lost_services():
    store = ConfigStore()
    service = a_ci(store, "business_service", name="shop")
    app = a_ci(store, "application", name="app")
    row, _ = await add_relationship(unit(store), AddRelationship("provides", app.id, service.id))
    removed = await remove_relationship(unit(store, "bob"), row["id"], "decommissioned")
    assert (removed["removed_by"], store.relationships[row["id"]]["removed_at"]) == (
        "bob",
        removed["removed_at"],
    )
    event = store.events[-2]
    assert isinstance(event.payload, RelationshipRemovedV1)
    assert (event.version, event.payload.reason) == (2, "decommissioned")
    lost = store.events[-1].payload
    assert isinstance(lost, ServiceMembershipChangedV1)
    assert (lost.ci_id, lost.services, lost.previous, lost.sequence) == (
        str(app.id),
        [],
        [str(service.id)],
        2,
    )


async def test_removing_a_relationship_not_in_place_is_not_found():
    store = ConfigStore()
    app, host = a_ci(store, "application"), a_ci(store)
    row, _ = await add_relationship(unit(store), AddRelationship("runs_on", app.id, host.id))
    await remove_relationship(unit(store), row["id"], None)
    with pytest.raises(NotFound):
        await remove_relationship(unit(store), row["id"], None)
    with pytest.raises(NotFound):
        await remove_relationship(unit(store), uuid.uuid4(), None)


async def test_impact_walks_from_a_known_ci_and_writes_nothing():
    store = ConfigStore()
    ci = a_ci(store)
    work = unit(store)
    found = await impact(work, ci.id, direction="downward", depth=3)
    assert work.used.relationships.walked == [(ci.id, "downward", 3)]
    assert found.items == f'[{{"id": "{ci.id}"}}]' and not found.truncated
    assert store.events == [] and MAX_PATHS == 10_000


async def test_impact_of_an_unknown_ci_is_not_found():
    with pytest.raises(NotFound):
        await impact(unit(ConfigStore()), uuid.uuid4(), direction="upward", depth=5)
