"""Recomputing service membership inside a use case's unit of work (`membership.refresh`).

`settle` (after an import, and the sweeper's) is the bulk path on its own transaction: it is
covered by tests/integration/test_service_membership.py and test_discovery_import.py.
"""

from __future__ import annotations

import uuid

from services.config.application import membership
from shared.events.catalogue import ServiceMembershipChangedV1
from tests.unit.fakes_config import ConfigStore, a_ci, unit


def provides(store: ConfigStore, source: uuid.UUID, target: uuid.UUID) -> None:
    store.relationships[uuid.uuid4()] = {
        "type": "provides",
        "source_id": source,
        "target_id": target,
        "removed_at": None,
    }


async def test_a_set_that_changed_is_stored_and_recorded_with_the_next_sequence():
    store = ConfigStore()
    service, app = a_ci(store, "business_service"), a_ci(store, "application")
    provides(store, app.id, service.id)
    store.membership[app.id] = ([], 4)
    work = unit(store)
    async with work:
        assert await membership.refresh(work, [app.id]) == 1
    assert work.used.membership.locked
    assert store.membership[app.id] == ([str(service.id)], 5)
    (event,) = store.events
    assert isinstance(event.payload, ServiceMembershipChangedV1)
    assert (event.subject, event.version) == (membership.subject(app.id), 5)
    assert (event.payload.services, event.payload.previous) == ([str(service.id)], [])


async def test_an_unchanged_set_is_neither_stored_again_nor_announced():
    store = ConfigStore()
    service, app = a_ci(store, "business_service"), a_ci(store, "application")
    provides(store, app.id, service.id)
    store.membership[app.id] = ([str(service.id)], 2)
    work = unit(store)
    async with work:
        assert await membership.refresh(work, [app.id]) == 0
    assert store.membership[app.id] == ([str(service.id)], 2) and store.events == []


async def test_no_seeds_change_nothing_and_take_no_lock():
    store = ConfigStore()
    work = unit(store)
    async with work:
        assert await membership.refresh(work, []) == 0
    assert not work.used.membership.locked


def test_the_dependency_side_of_a_relationship_is_where_membership_changes():
    a, b = uuid.uuid4(), uuid.uuid4()
    assert membership.dependency_of("depends_on", a, b) == b
    assert membership.dependency_of("provides", a, b) == a
