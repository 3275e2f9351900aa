"""Benchmark: deployment gate decisions at 32 concurrent pipelines, beside `/health/live`.

`make bench-gate` (or `python -m tests.benchmarks.change_gate`). Starts its own Kafka and
PostgreSQL under `.state/bench-gate` and the change service as a separate process, stores one
scheduled change (its window open now, on 20 CIs) per tenant, then prints:

- `POST /deployments` latency p50/p99 and throughput at `--clients` (default 32) concurrent
  pipelines, each announcing its own runs to production against that change: every request
  takes the idempotency lock, reads the tenant's settings and the change, decides, and writes
  the deployment and its `gate_decided` event to the outbox in one transaction (goal p99 <
  50 ms);
- `GET /health/live` at the same concurrency in the same run: the floor of what a request to
  this process costs on this machine (HTTP, middleware, event loop), to read the gate beside;
- the CPU milliseconds the service, PostgreSQL and Kafka spent per decision.

Nothing is asserted: read medians and ratios, these machines are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shutil
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from services.change.application.uow import ChangeUnitOfWork, store_change, store_new_change
from services.change.domain import change as changes
from shared.context import RequestContext
from shared.db import create_pool
from shared.devstack.kafka import REPO_ROOT
from shared.devstack.platform import Infra, LocalPlatform, ServiceProcess
from shared.registry import service
from tests.benchmarks.incident import cpu_meter, drive, ms
from tests.benchmarks.loadgen import CpuMeter, LoadClient

DIGEST = "sha256:" + "ab" * 32


async def scheduled_change(infra: Infra, tenant: str, cis: list[uuid.UUID]) -> uuid.UUID:
    """A normal change moved to `scheduled` with its window open for the next hours."""
    pool = await create_pool(
        infra.service_dsns["change"],
        schema=service("change").schema,
        application_name="bench-gate",
        min_size=1,
        max_size=1,
    )
    try:
        now = datetime.now(UTC)
        async with ChangeUnitOfWork(pool, RequestContext(tenant, "bench", "")) as uow:
            change, events = changes.open_change(
                tenant_id=tenant,
                number=await uow.changes.next_number(),
                type="normal",
                title="Release payroll",
                description="",
                justification="benchmark",
                requester="bench",
                actor="bench",
                now=now,
                planned_start=now - timedelta(minutes=5),
                planned_end=now + timedelta(hours=6),
                affected_cis=tuple(cis),
            )
            await store_new_change(uow, change, events)
            for state in ("assess", "authorize", "scheduled"):
                moved = changes.transition(change, state, actor="bench", now=now)
                change = await store_change(uow, moved, state)
        return change.id
    finally:
        await pool.close()


async def latencies(
    client: LoadClient, jobs: list[Any], clients: int, call: Any
) -> tuple[list[float], float, int]:
    """Each job's latency, the wall time, and failures, at `clients` concurrent callers."""
    measured: list[float] = []
    failures = 0

    async def one(job: Any) -> None:
        nonlocal failures
        started = time.perf_counter()
        try:
            ok = await call(job)
        except LoadClient.TRANSPORT_ERRORS:
            failures += 1
            return
        measured.append(time.perf_counter() - started)
        failures += not ok

    started = time.perf_counter()
    await drive(iter(jobs), clients, one)
    return measured, time.perf_counter() - started, failures


async def measure(
    infra: Infra, services: list[ServiceProcess], meter: CpuMeter, args: argparse.Namespace
) -> None:
    tenant = f"t-gate-{uuid.uuid4().hex[:8]}"
    cis = [uuid.uuid4() for _ in range(20)]
    change_id = await scheduled_change(infra, tenant, cis)
    token = infra.keys.issuer().mint(
        subject="pipeline", tenants=[tenant], roles=["integration"], ttl_seconds=3600
    )
    headers = {"Authorization": f"Bearer {token}"}
    sequence = itertools.count(1)

    def body(pipeline: int) -> dict[str, Any]:
        return {
            "pipeline": f"pipeline-{pipeline}",
            "environment": "production",
            "sequence": next(sequence),
            "ci_ids": [str(c) for c in cis[:5]],
            "artifacts": [{"name": "payroll", "version": "1.4.2", "digest": DIGEST}],
            "commit": "47efb7196c2a1a2fd3f52f2c59f0e2dd3d0e4d54",
            "change_id": str(change_id),
        }

    async with LoadClient([s.url for s in services], args.clients) as client:
        decisions: dict[str, int] = {}

        async def announce(pipeline: int) -> bool:
            reply = await client.post("/deployments", body(pipeline), headers)
            if reply.status == 201:
                result = reply.json()["decision"]
                decisions[result] = decisions.get(result, 0) + 1
            return reply.status == 201

        async def live(_: int) -> bool:
            reply = await client.get("/health/live")
            return reply.status == 200

        for i in range(100):  # warm-up: connections, statement caches
            await announce(i % args.clients)
        jobs = [i % args.clients for i in range(args.decisions)]
        meter.start()
        gate, seconds, failed = await latencies(client, jobs, args.clients, announce)
        meter.stop()
        health, health_seconds, health_failed = await latencies(
            client, list(range(args.decisions)), args.clients, live
        )
    print(
        f"POST /deployments  {args.decisions:>6,} at {args.clients} pipelines in {seconds:5.1f} s"
        f"  {args.decisions / seconds:>7,.0f} req/s  {ms(gate)}  failures {failed}"
        f"  decisions {decisions}  (goal p99 < 50 ms)"
    )
    print(f"  {meter.per(args.decisions, 'decision')}")
    print(
        f"GET /health/live   {args.decisions:>6,} at {args.clients} clients   in"
        f" {health_seconds:5.1f} s  {args.decisions / health_seconds:>7,.0f} req/s  {ms(health)}"
        f"  failures {health_failed}  (the floor, same run)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--decisions", type=int, default=5_000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--state-dir", type=Path, default=REPO_ROOT / ".state" / "bench-gate")
    args = parser.parse_args()
    platform = LocalPlatform(
        args.state_dir, kafka_port=19492, kafka_controller_port=19493, postgres_port=15572
    )
    if platform.postgres is not None:
        platform.postgres.destroy()
    for sub in ("kafka", "logs"):
        shutil.rmtree(args.state_dir / sub, ignore_errors=True)
    try:
        infra = platform.start_infra()
        services = platform.start_services(infra, {"change": 18021}, replicas=1)
        print(
            f"change service: one process at {services[0].url}; broker {infra.bootstrap_servers};"
            f" {os.cpu_count()} CPU cores shared by all of it and this load generator"
        )
        asyncio.run(measure(infra, services, cpu_meter(platform, services), args))
    finally:
        platform.stop()


if __name__ == "__main__":
    main()
