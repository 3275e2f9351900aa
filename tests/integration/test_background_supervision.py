"""Background tasks run under one supervisor: a task that stays down shows in readiness and,
past a limit, ends the process; the outbox backlog gauge never depends on the relay loop."""

import asyncio
import dataclasses
import os
import sys

from prometheus_client import CollectorRegistry

from shared import outbox
from shared.db import all_tenants_transaction, tenant_transaction
from shared.devstack.kafka import REPO_ROOT
from shared.events.catalogue import IncidentCreatedV1
from shared.kafka import create_producer
from shared.metrics import PlatformMetrics
from shared.outbox import OutboxRelay
from shared.service import EXIT_GAVE_UP, start_relay
from shared.supervision import BackgroundTask, SupervisionMetrics, SupervisionPolicy, Supervisor
from tests.conftest import DEFINITIONS
from tests.support import eventually, sample_value

PAYLOAD = IncidentCreatedV1(
    title="Disk full", description="", impact=2, urgency=2, priority=3, state="new"
)


async def test_the_backlog_gauge_keeps_counting_while_the_relay_loop_is_down(
    infra, pools, settings_for, tenant, monkeypatch
):
    async def relay_loop_dies(self) -> None:
        raise ConnectionRefusedError("broker gone")

    monkeypatch.setattr(OutboxRelay, "run", relay_loop_dies)
    metrics = PlatformMetrics(CollectorRegistry())
    supervisor = Supervisor(
        "incident", SupervisionMetrics(metrics.registry), SupervisionPolicy(first_backoff=0.05)
    )
    producer = create_producer(infra.bootstrap_servers, "test-relay-down")
    await producer.start()
    settings = settings_for("incident", outbox_metrics_interval_seconds=0.2)
    pool = pools["incident"]
    start_relay("incident", settings, pool, producer, metrics, supervisor)
    try:
        await eventually(
            lambda: asyncio.sleep(0, sample_value(metrics.registry, "itsm_outbox_backlog")),
            lambda n: n is not None,
        )
        async with tenant_transaction(pool, tenant) as conn:
            for sequence in (1, 2, 3):
                await outbox.append(
                    conn, PAYLOAD, subject="s", tenant_id=tenant, sequence=sequence, actor="t"
                )

        async def gauge_and_rows() -> tuple[float | None, int, int]:
            # The gauge counts the whole outbox, which other tests' leftovers may also move:
            # it must show what the table holds, this test's three rows among them.
            async with all_tenants_transaction(pool) as conn:
                rows = await conn.fetchval("SELECT count(*) FROM outbox")
                mine = await conn.fetchval(
                    "SELECT count(*) FROM outbox WHERE tenant_id = $1", tenant
                )
            return sample_value(metrics.registry, "itsm_outbox_backlog"), rows, mine

        await eventually(gauge_and_rows, lambda g: g[0] == g[1] and g[2] == 3)
        failures = sample_value(
            metrics.registry, "itsm_background_task_failures_total", {"task": "outbox-relay"}
        )
        assert failures >= 1
    finally:
        await supervisor.stop()
        await producer.stop()
        async with all_tenants_transaction(pool) as conn:
            await conn.execute("DELETE FROM outbox WHERE tenant_id = $1", tenant)


async def test_readiness_names_a_background_task_that_stays_down(start_runtime):
    async def always_failing() -> None:
        raise ConnectionRefusedError("the dependency this loop needs is gone")

    definition = dataclasses.replace(
        DEFINITIONS["change"],
        background=lambda _: [BackgroundTask("always-failing", always_failing)],
    )
    runtime = await start_runtime(
        "change",
        definition,
        background_grace_seconds=0.5,
        background_max_backoff_seconds=0.1,
    )
    checks = await eventually(runtime.readiness, lambda c: c["background"] != "ok", timeout=30)
    assert checks["background"].startswith("down: always-failing for ")
    assert "ConnectionRefusedError" in checks["background"]
    assert checks["database"] == "ok" and checks["kafka"] == "ok"


async def test_a_service_whose_background_task_stays_down_exits_non_zero(infra):
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        **infra.service_env("change", http_port=0),
        "CHANGE_BACKGROUND_MAX_BACKOFF_SECONDS": "0.2",
        "CHANGE_BACKGROUND_GRACE_SECONDS": "0.5",
        "CHANGE_BACKGROUND_FATAL_SECONDS": "2",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(REPO_ROOT / "tests" / "faults" / "failing_background_service.py"),
        env=env,
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout=90)
    finally:
        if process.returncode is None:
            process.kill()
    text = output.decode()
    assert process.returncode == EXIT_GAVE_UP, text[-3000:]
    assert "always-failing has been failing for" in text
