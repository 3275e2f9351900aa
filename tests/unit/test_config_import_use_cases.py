"""Starting and finishing a discovery import on a fake unit of work: the run's Idempotency-Key.

The batches between are the bulk path on their own transactions (see the module docstring of
services/config/application/imports.py): tests/integration/test_discovery_import.py covers them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.config.application.imports import (
    Answered,
    _Run,
    finish_import,
    start_import,
)
from shared import idempotency
from shared.events.catalogue import ImportCompletedV1
from tests.unit.fakes_config import ConfigStore, unit


async def started(store: ConfigStore, key: str | None = "k-1", source: str = "vcenter") -> _Run:
    run = await start_import(unit(store), source=source, format_="jsonl", idempotency_key=key)
    assert isinstance(run, _Run)
    return run


async def test_an_import_starts_running_with_the_built_in_and_tenant_classes():
    store = ConfigStore()
    store.classes["rack"] = {"name": "rack", "attribute_schema": {"type": "object"}}
    run = await started(store, key=None)
    assert store.imports[run.id]["status"] == "running"
    assert {"server", "business_service", "rack"} <= set(run.schemas)
    assert run.context.actor == "alice" and store.events == []


async def test_a_completed_import_is_answered_again_for_its_key_and_no_second_run_starts():
    store = ConfigStore()
    run = await started(store)
    await finish_import(unit(store), run, "completed", None)
    again = await start_import(
        unit(store), source="vcenter", format_="jsonl", idempotency_key="k-1"
    )
    assert isinstance(again, Answered) and again.record["id"] == run.id
    assert list(store.imports) == [run.id]


async def test_the_same_key_from_another_caller_starts_an_import_of_its_own():
    store = ConfigStore()
    await started(store)
    theirs = await start_import(
        unit(store, "bob"), source="vcenter", format_="jsonl", idempotency_key="k-1"
    )
    assert isinstance(theirs, _Run) and len(store.imports) == 2


async def test_a_key_whose_import_still_runs_is_refused_as_in_progress():
    store = ConfigStore()
    await started(store)
    with pytest.raises(idempotency.KeyInProgress) as refused:
        await started(store)
    assert refused.value.problem == "import-in-progress"
    assert [(f.field, f.location) for f in refused.value.fields] == [("Idempotency-Key", "header")]
    assert len(store.imports) == 1


@pytest.mark.parametrize(("source", "format_"), [("ipam", "jsonl"), ("vcenter", "csv")])
async def test_a_key_reused_for_another_source_or_format_is_refused(source: str, format_: str):
    store = ConfigStore()
    run = await started(store)
    await finish_import(unit(store), run, "completed", None)
    with pytest.raises(idempotency.KeyReused):
        await start_import(unit(store), source=source, format_=format_, idempotency_key="k-1")  # type: ignore[arg-type]


async def test_a_failed_import_lets_its_key_go_so_a_retry_starts_afresh():
    store = ConfigStore()
    failed = await started(store)
    await finish_import(unit(store), failed, "failed", "the client went away")
    retried = await started(store)
    assert retried.id != failed.id and store.imports[failed.id]["status"] == "failed"


async def test_a_key_older_than_the_retention_is_free_again():
    store = ConfigStore()
    stale = await started(store)
    held = store.imports[stale.id]
    held["started_at"] = datetime.now(UTC) - idempotency.DEFAULT_RETENTION - timedelta(minutes=1)
    fresh = await started(store)
    assert fresh.id != stale.id
    assert (held["idempotency_key"], store.imports[fresh.id]["idempotency_key"]) == (None, "k-1")


async def test_finishing_an_import_records_import_completed_with_its_counts():
    store = ConfigStore()
    run = await started(store)
    store.imports[run.id].update(rows=3, created=2, rejected=1)
    run.progress[0] = 512
    record = await finish_import(unit(store), run, "completed", None)
    assert (record["status"], record["bytes_read"]) == ("completed", 512)
    (event,) = store.events
    assert isinstance(event.payload, ImportCompletedV1)
    assert (event.subject, event.version) == (f"import/{run.id}", 1)
    assert (event.payload.rows, event.payload.outcomes["created"]) == (3, 2)
    assert event.payload.status == "completed" and event.payload.error is None
