"""A service stops cleanly however soon after starting: no connection is left behind."""

import asyncio

import pytest

from shared.service import ServiceRuntime
from tests.conftest import DEFINITIONS


@pytest.mark.parametrize("name", ["incident", "reporting"])
async def test_a_service_stopped_right_after_it_started_releases_every_connection(
    settings_for, name
):
    # The relay and consumers may be cancelled mid-way through their first step; pool.close()
    # then waits forever for any connection they forgot to release.
    for _ in range(10):
        runtime = ServiceRuntime(DEFINITIONS[name], settings_for(name))
        await runtime.start()
        await asyncio.wait_for(runtime.stop(), timeout=30)
