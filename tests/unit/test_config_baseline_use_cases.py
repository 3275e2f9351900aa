"""Creating a baseline on a fake unit of work.

`diff` is a read over the history in SQL (no unit of work, nothing recorded): it is covered by
tests/integration/test_baselines.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.config.application.baselines import CreateBaseline, create_baseline
from shared.errors import Conflict, ValidationFailed
from shared.events.catalogue import BaselineCreatedV1
from tests.unit.fakes_config import ConfigStore, FakeBaselines, a_ci, unit


async def test_a_baseline_stores_its_counts_and_records_baseline_created():
    store = ConfigStore()
    a_ci(store), a_ci(store, name="b"), a_ci(store, name="gone", status="retired")
    work = unit(store, "auditor")
    baseline = await create_baseline(work, CreateBaseline("q1", "end of quarter", None))
    assert (baseline["cis"], baseline["relationships"], baseline["created_by"]) == (2, 0, "auditor")
    assert baseline["at"] == baseline["created_at"]  # no instant given: now
    assert store.baselines["q1"] == baseline
    assert isinstance(work.baselines, FakeBaselines) and work.baselines.prepared
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
