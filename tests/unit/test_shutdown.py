"""Shutdown is bounded: a step that hangs is given up (and named in the log), the rest goes on."""

import asyncio
import logging
from types import SimpleNamespace

from shared import service
from shared.service import ServiceRuntime


def runtime_stub():
    return SimpleNamespace(definition=SimpleNamespace(name="unit"))


async def test_a_shutdown_step_that_hangs_is_abandoned_after_the_step_limit(monkeypatch, caplog):
    monkeypatch.setattr(service, "STOP_STEP_SECONDS", 0.1)
    caplog.set_level(logging.WARNING, logger="shared.service")
    finished = await ServiceRuntime._bounded(runtime_stub(), "stuck step", asyncio.sleep(60))
    assert finished is False
    [record] = caplog.records
    assert record.step == "stuck step"


async def test_a_cancelled_task_and_a_failing_step_count_as_finished(monkeypatch, caplog):
    monkeypatch.setattr(service, "STOP_STEP_SECONDS", 1.0)
    caplog.set_level(logging.WARNING, logger="shared.service")
    task = asyncio.create_task(asyncio.sleep(60))
    task.cancel()
    assert await ServiceRuntime._bounded(runtime_stub(), "loop", task) is True

    async def broken():
        raise ConnectionError("broker gone")

    assert await ServiceRuntime._bounded(runtime_stub(), "producer", broken()) is True
    assert [r.step for r in caplog.records] == ["producer"]
