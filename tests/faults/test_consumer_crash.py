"""A consumer killed between its database commit and its offset commit applies nothing twice."""

import asyncio
import os
import sys

from aiokafka import AIOKafkaProducer

from shared.devstack.kafka import REPO_ROOT
from tests.support import eventually, fetchval_as, incident_event, sample_value, send_event


async def test_a_consumer_killed_after_its_database_commit_does_not_apply_the_event_twice(
    infra, pools, tenant, start_runtime
):
    event = incident_event(tenant, title="Printer on fire", impact=3, urgency=1)
    producer = AIOKafkaProducer(bootstrap_servers=infra.bootstrap_servers)
    await producer.start()
    try:
        await send_event(producer, event)
    finally:
        await producer.stop()

    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        **infra.service_env("reporting", http_port=0),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(REPO_ROOT / "tests" / "faults" / "crashing_ledger_consumer.py"),
        env=env,
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=150)
    assert process.returncode == 137, output.decode()[-3000:]

    count = "SELECT count(*) FROM ledger WHERE event_id = $1"
    assert await fetchval_as(pools["reporting"], event.tenantid, count, event.id) == 1

    # The offset was never committed: a restarted consumer receives the event again ...
    reporting = await start_runtime("reporting")

    async def duplicates():
        return sample_value(
            reporting.registry, "itsm_inbox_duplicates_total", {"consumer": "reporting-ledger"}
        )

    await eventually(duplicates, lambda n: n >= 1, timeout=60)
    # ... and its inbox drops it: still one ledger row.
    assert await fetchval_as(pools["reporting"], event.tenantid, count, event.id) == 1
