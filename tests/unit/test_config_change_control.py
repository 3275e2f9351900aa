"""Configuration items under change control (issue 19): the rules of `domain/change_control.py`
and the CI use cases on a fake unit of work: which CIs are controlled, which `change_id`
authorises a write, and what is announced as an unauthorized change."""

from __future__ import annotations

import uuid

import pytest

from services.config.application.change_control import replace_control
from services.config.application.cis import ModifyCi, RegisterCi, modify_ci, register_ci
from services.config.domain.change_control import (
    ChangeControl,
    ProjectedChange,
    check_authorising_change,
    under_control,
)
from services.config.domain.imports import CiRow, reconcile
from shared.errors import Conflict, StaleVersion, ValidationFailed
from shared.events.catalogue import (
    ChangeControlDefinedV1,
    CiCreatedV1,
    CiUpdatedV1,
    UnauthorizedChangeDetectedV1,
)
from tests.unit.fakes_config import ConfigStore, a_ci, unit

SERVER = {"hostname": "web-1", "environment": "production"}


def a_change(store: ConfigStore, state: str = "implement", *cis: uuid.UUID) -> ProjectedChange:
    change = ProjectedChange(uuid.uuid4(), 42, state, frozenset(cis))
    store.changes[change.id] = change
    return change


def refused_fields(error: pytest.ExceptionInfo[Exception]) -> list[str]:
    refused = error.value
    assert isinstance(refused, ValidationFailed | Conflict)
    return [f.field for f in refused.fields]


# --- the rules ---------------------------------------------------------------------------------


def test_a_ci_is_under_control_by_its_own_flag_or_by_its_class():
    store = ConfigStore()
    flagged = a_ci(store, controlled=True)
    plain = a_ci(store)
    database = a_ci(store, "database")
    by_class = ChangeControl(frozenset({"database"}), 1)
    assert under_control(flagged, ChangeControl())
    assert not under_control(plain, ChangeControl())
    assert not under_control(plain, by_class)
    assert under_control(database, by_class)


def test_an_unknown_change_is_refused_with_422_naming_change_id():
    with pytest.raises(ValidationFailed) as refused:
        check_authorising_change(uuid.uuid4(), None, uuid.uuid4())
    assert refused_fields(refused) == ["change_id"]
    assert "no change" in refused.value.fields[0].detail


@pytest.mark.parametrize("state", ["new", "assess", "authorize", "scheduled", "review", "closed"])
def test_a_change_not_in_implement_is_refused_with_409_naming_change_id_and_its_state(state):
    ci_id = uuid.uuid4()
    change = ProjectedChange(uuid.uuid4(), 7, state, frozenset({ci_id}))
    with pytest.raises(Conflict) as refused:
        check_authorising_change(change.id, change, ci_id)
    assert refused_fields(refused) == ["change_id"]
    assert f"CHG7 is in {state}" in refused.value.fields[0].detail


def test_a_change_that_does_not_list_the_ci_is_refused_with_409_naming_change_id():
    change = ProjectedChange(uuid.uuid4(), 7, "implement", frozenset({uuid.uuid4()}))
    with pytest.raises(Conflict) as refused:
        check_authorising_change(change.id, change, uuid.uuid4())
    assert refused_fields(refused) == ["change_id"]
    assert "does not list this configuration item" in refused.value.fields[0].detail


def test_a_change_in_implement_that_lists_the_ci_authorises_it_and_any_new_ci():
    ci_id = uuid.uuid4()
    change = ProjectedChange(uuid.uuid4(), 7, "implement", frozenset({ci_id}))
    check_authorising_change(change.id, change, ci_id)
    check_authorising_change(change.id, change, None)


def test_discovery_finds_drift_on_a_ci_whose_class_is_under_control():
    store = ConfigStore()
    ci = a_ci(store, attributes=SERVER)
    found = CiRow.model_validate(
        {"external_id": "h1", "class": "server", "name": "web-one", "attributes": {}}
    )
    assert reconcile(ci, found).outcome == "updated"
    assert reconcile(ci, found, ChangeControl(frozenset({"server"}), 1)).outcome == "drift"


# --- the use cases -----------------------------------------------------------------------------


async def test_a_write_under_a_valid_change_records_the_change_in_the_history_and_the_event():
    store = ConfigStore()
    ci = a_ci(store, attributes=SERVER, controlled=True)
    change = a_change(store, "implement", ci.id)
    await modify_ci(unit(store), ModifyCi(ci.id, 1, {"name": "web-2"}, None, None, change.id))
    assert store.versions[-1]["change_id"] == change.id
    (event,) = [e.payload for e in store.events]
    assert isinstance(event, CiUpdatedV1) and event.change_id == str(change.id)


async def test_a_write_under_a_change_not_in_implement_is_refused_and_changes_nothing():
    store = ConfigStore()
    ci = a_ci(store, attributes=SERVER, controlled=True)
    change = a_change(store, "scheduled", ci.id)
    with pytest.raises(Conflict) as refused:
        await modify_ci(unit(store), ModifyCi(ci.id, 1, {"name": "x"}, None, None, change.id))
    assert refused_fields(refused) == ["change_id"]
    assert store.cis[ci.id] == ci and store.events == []


async def test_a_controlled_ci_modified_without_a_change_is_modified_and_announced_unauthorized():
    store = ConfigStore()
    ci = a_ci(store, attributes=SERVER, controlled=True)
    changed = await modify_ci(
        unit(store, "mallory"), ModifyCi(ci.id, 1, {"criticality": 1}, None, "TICKET-9")
    )
    assert changed.version == 2
    updated, unauthorized = [e.payload for e in store.events]
    assert isinstance(updated, CiUpdatedV1) and updated.change_id is None
    assert isinstance(unauthorized, UnauthorizedChangeDetectedV1)
    assert unauthorized.found_by == "ci_modified" and unauthorized.by == "mallory"
    assert unauthorized.changes == {"criticality": {"from": 3, "to": 1}}
    assert unauthorized.ci.version == 2
    assert [e.subject for e in store.events] == [str(ci.id), str(ci.id)]


async def test_releasing_a_ci_from_control_without_a_change_is_itself_unauthorized():
    store = ConfigStore()
    ci = a_ci(store, attributes=SERVER, controlled=True)
    await modify_ci(unit(store), ModifyCi(ci.id, 1, {"controlled": False}, None, None))
    assert len(store.of_type(UnauthorizedChangeDetectedV1)) == 1


async def test_a_ci_of_a_controlled_class_modified_without_a_change_is_announced_unauthorized():
    store = ConfigStore()
    ci = a_ci(store, attributes=SERVER)
    await modify_ci(unit(store), ModifyCi(ci.id, 1, {"name": "a"}, None, None))
    assert store.of_type(UnauthorizedChangeDetectedV1) == []
    await replace_control(unit(store), ["server"], expected_version=0)
    await modify_ci(unit(store), ModifyCi(ci.id, 2, {"name": "b"}, None, None))
    assert len(store.of_type(UnauthorizedChangeDetectedV1)) == 1


async def test_a_ci_not_under_control_modified_without_a_change_announces_nothing_unauthorized():
    store = ConfigStore()
    ci = a_ci(store, attributes=SERVER)
    await modify_ci(unit(store), ModifyCi(ci.id, 1, {"name": "x"}, None, None))
    assert store.of_type(UnauthorizedChangeDetectedV1) == []


async def test_registering_a_ci_under_a_change_records_it_and_refuses_a_change_not_in_implement():
    store = ConfigStore()
    base = RegisterCi("server", "web-9", "active", None, 3, SERVER, {}, True)
    change = a_change(store, "implement")
    ci = await register_ci(unit(store), RegisterCi(**{**vars(base), "change_id": change.id}))
    assert store.versions[-1]["change_id"] == change.id
    assert store.of_type(CiCreatedV1)[0].change_id == str(change.id)
    planned = a_change(store, "authorize")
    with pytest.raises(Conflict):
        await register_ci(unit(store), RegisterCi(**{**vars(base), "change_id": planned.id}))
    assert list(store.cis) == [ci.id]


async def test_the_change_control_configuration_is_versioned_checked_and_announced():
    store = ConfigStore()
    control = await replace_control(
        unit(store), ["server", "database", "server"], expected_version=0
    )
    assert control == ChangeControl(frozenset({"server", "database"}), 1)
    (event,) = store.of_type(ChangeControlDefinedV1)
    assert (event.classes, event.version) == (["database", "server"], 1)
    with pytest.raises(StaleVersion):
        await replace_control(unit(store), [], expected_version=0)
    with pytest.raises(ValidationFailed) as refused:
        await replace_control(unit(store), ["no_such_class"], expected_version=1)
    assert refused_fields(refused) == ["classes"]
    assert store.control.version == 1
