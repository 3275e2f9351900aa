"""Creating and comparing baselines on a fake unit of work (the history queries themselves are
SQL, covered by tests/integration/test_baselines.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.config.application.baselines import (
    CreateBaseline,
    DiffPosition,
    create_baseline,
    diff,
)
from shared.errors import Conflict, NotFound, ValidationFailed
from shared.events.catalogue import BaselineCreatedV1
from tests.unit.fakes_config import ConfigStore, a_ci, unit


async def test_a_baseline_stores_its_counts_and_records_baseline_created():
    store = ConfigStore()
    a_ci(store), a_ci(store, name="b"), a_ci(store, name="gone", status="retired")
    work = unit(store, "auditor")
    baseline = await create_baseline(work, CreateBaseline("q1", "end of quarter", None))
    assert (baseline["cis"], baseline["relationships"], baseline["created_by"]) == (2, 0, "auditor")
    assert baseline["at"] == baseline["created_at"]  # no instant given: now
    assert store.baselines["q1"] == baseline
    assert work.used.baselines.prepared
    (event,) = store.events
    assert isinstance(event.payload, BaselineCreatedV1)
    assert (event.subject, event.version, event.payload.cis) == ("baseline/q1", 1, 2)


async def test_a_baseline_of_an_earlier_instant_keeps_that_instant():
    store = ConfigStore()
    earlier = datetime.now(UTC) - timedelta(days=3)
    baseline = await create_baseline(unit(store), CreateBaseline("before", "", earlier))
    assert baseline["at"] == earlier


async def test_a_name_taken_is_a_conflict_naming_name_and_the_first_stays():
    store = ConfigStore()
    first = await create_baseline(unit(store), CreateBaseline("q1", "first", None))
    with pytest.raises(Conflict) as refused:
        await create_baseline(unit(store), CreateBaseline("q1", "second", None))
    assert [f.field for f in refused.value.fields] == ["name"]
    assert store.baselines == {"q1": first} and len(store.events) == 1


@pytest.mark.parametrize(
    ("name", "at", "field"),
    [
        ("now", None, "name"),
        ("later", datetime.now(UTC) + timedelta(days=1), "at"),
    ],
)
async def test_the_reserved_name_and_a_future_instant_are_refused_naming_the_field(
    name: str, at: datetime | None, field: str
):
    store = ConfigStore()
    with pytest.raises(ValidationFailed) as refused:
        await create_baseline(unit(store), CreateBaseline(name, "", at))
    assert [f.field for f in refused.value.fields] == [field]
    assert store.baselines == {} and store.events == []


def ci_change(change: str = "changed") -> dict[str, object]:
    state = {"ci_class": "server", "name": "host"}
    return {
        "id": uuid.uuid4(),
        "change": change,
        "fields": {"name": {"from": "a", "to": "b"}} if change == "changed" else None,
        "before": None if change == "added" else state,
        "after": None if change == "removed" else state,
    }


def relationship_change(change: str = "added") -> dict[str, object]:
    return {"id": uuid.uuid4(), "change": change}


async def baselines_at(store: ConfigStore, **instants: datetime) -> None:
    for name, at in instants.items():
        await create_baseline(unit(store), CreateBaseline(name, "", at))


async def test_a_diff_runs_from_the_earlier_instant_to_the_later_whichever_is_named_first():
    store = ConfigStore()
    now = datetime.now(UTC)
    await baselines_at(store, old=now - timedelta(days=2), new=now - timedelta(days=1))
    found = await diff(unit(store), "new", "old", position=DiffPosition("cis", None), limit=10)
    assert (found["from"]["name"], found["to"]["name"]) == ("old", "new")
    assert found["next"] is None and store.events[2:] == []


async def test_a_page_lists_cis_first_then_fills_up_with_relationships():
    store = ConfigStore()
    await baselines_at(store, q1=datetime.now(UTC) - timedelta(days=1))
    store.ci_changes = [ci_change("added"), ci_change()]
    store.relationship_changes = [relationship_change() for _ in range(3)]
    found = await diff(unit(store), "q1", "now", position=DiffPosition("cis", None), limit=4)
    assert found["summary"] == {"cis": {"added": 1, "changed": 1}, "relationships": {"added": 3}}
    assert {c["change"]: c["fields"] for c in found["cis"]} == {
        "added": {},
        "changed": {"name": {"from": "a", "to": "b"}},
    }
    assert [c["id"] for c in found["cis"]] == sorted(c["id"] for c in store.ci_changes)
    assert len(found["relationships"]) == 2
    following = found["next"]
    assert (
        following.section == "relationships" and following.after == found["relationships"][-1]["id"]
    )
    # Every page compares with the instant `now` was on the first page.
    assert following.now == found["to"]["at"]
    rest = await diff(unit(store), "q1", "now", position=following, limit=4)
    assert rest["cis"] == [] and len(rest["relationships"]) == 1 and rest["next"] is None
    assert rest["to"]["at"] == found["to"]["at"]


async def test_a_page_full_of_cis_points_at_the_next_ci_then_at_the_relationships():
    store = ConfigStore()
    await baselines_at(store, q1=datetime.now(UTC) - timedelta(days=1))
    store.ci_changes = [ci_change() for _ in range(3)]
    store.relationship_changes = [relationship_change("removed")]
    first = await diff(unit(store), "q1", "now", position=DiffPosition("cis", None), limit=2)
    assert (first["next"].section, first["next"].after) == ("cis", first["cis"][-1]["id"])
    second = await diff(unit(store), "q1", "now", position=first["next"], limit=1)
    assert len(second["cis"]) == 1 and second["next"].section == "relationships"
    third = await diff(unit(store), "q1", "now", position=second["next"], limit=1)
    assert [r["change"] for r in third["relationships"]] == ["removed"] and third["next"] is None


@pytest.mark.parametrize(("name", "against"), [("nope", "now"), ("q1", "nope")])
async def test_an_unknown_baseline_on_either_side_is_not_found_naming_it(name: str, against: str):
    store = ConfigStore()
    await baselines_at(store, q1=datetime.now(UTC) - timedelta(days=1))
    with pytest.raises(NotFound) as missing:
        await diff(unit(store), name, against, position=DiffPosition("cis", None), limit=10)
    assert missing.value.ident == "nope"
