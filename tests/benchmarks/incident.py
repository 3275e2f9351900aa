"""Benchmark: incident creation, an alert storm and SLA breach detection, beside raw baselines.

`make bench-incident` (or `python -m tests.benchmarks.incident`). Starts its own Kafka and
PostgreSQL under `.state/bench-incident` and the incident service as separate processes
(`--replicas`, default 2, as a deployment scales out behind a load balancer), then prints:

- incident creation over HTTP (`POST /incidents`, requests/s, p50/p99 latency at 32 concurrent
  clients), with one replica and then with all of them, beside a raw asyncpg INSERT of the
  same rows (32 connections, one transaction per row) into a plain copy of the incidents table
  in the same run; each with the CPU milliseconds that the service, PostgreSQL, Kafka and the
  load generator spent per creation (on two cores, 2,000 ms of CPU a second is all there is);
- an alert storm: 20,000 alerts in 500 Alertmanager groups, sent as Alertmanager batches them
  (each notification carries new alerts of one group), by 32 concurrent senders, while a probe
  lists incidents every 100 ms: time until every notification was accepted and until every
  resulting event left the outbox, incidents opened, alerts counted by the service against
  alerts sent (lost = the difference), and the probe's latency (is the API still responsive?);
- breach detection: 100,000 open resolution clocks with deadlines spread evenly over an hour,
  started through the SLA engine; for `--sla-minutes` (default 5; 60 for the whole hour) every
  breach event is read off Kafka and its delay (record timestamp minus `due_at`: detection,
  commit and relay together) is reported as p50/p99, with the late ones counted.

Nothing is asserted: read medians and ratios, these machines are noisy. The load generator
(`tests/benchmarks/loadgen.py`, keep-alive HTTP/1.1 on asyncio streams: httpx cost as much
CPU per request as the service) runs in this process and shares the cores with the service,
Kafka and PostgreSQL. `--parts creation,storm,sla` picks what to run.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import os
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer

from services.incident.adapters.projections import PolicySnapshot
from services.incident.application import sla
from services.incident.application.uow import IncidentUnitOfWork
from shared.calendars import CalendarSpec
from shared.context import RequestContext
from shared.db import create_pool
from shared.devstack.kafka import REPO_ROOT
from shared.devstack.platform import Infra, LocalPlatform, ServiceProcess
from shared.events.catalogue import INCIDENT_EVENTS, SlaTargetV1
from shared.provision import DEFAULT_DATABASE, dsn_for_admin_database
from tests.benchmarks.loadgen import CpuMeter, LoadClient, children_of, pid_from_file
from tests.benchmarks.pipeline import percentile
from tests.support import end_offsets, eventually

BREACHED = "itsm.incident.sla.breached.v1"
WARNED = "itsm.incident.sla.warning_reached.v1"


def ms(values: list[float]) -> str:
    return (
        f"p50 {percentile(values, 50) * 1000:7.1f} ms  p99 {percentile(values, 99) * 1000:7.1f} ms"
    )


async def drive(jobs: Iterator[Any], workers: int, work: Callable[[Any], Awaitable[None]]) -> None:
    """Run `work` on every job with `workers` concurrent workers."""

    async def worker() -> None:
        for job in jobs:  # a shared iterator: each job is taken once
            await work(job)

    await asyncio.gather(*(worker() for _ in range(workers)))


# --- incident creation ------------------------------------------------------------------------


def incident_bodies(n: int) -> list[dict[str, Any]]:
    return [
        {
            "title": f"Bench incident {i}",
            "description": "Users report slow responses from the order service.",
            "impact": 1 + i % 3,
            "urgency": 1 + (i // 3) % 3,
            "category": "performance",
            "caller": f"user{i % 97}",
        }
        for i in range(n)
    ]


async def http_creation(
    urls: list[str],
    tokens: list[str],
    bodies: list[dict[str, Any]],
    clients: int,
    meter: CpuMeter,
    *,
    keyed: bool = False,
) -> None:
    """Creations over HTTP; `keyed` sends a fresh `Idempotency-Key` with each, as a client that
    retries safely does (the key is claimed and the answer stored in the creating transaction)."""
    spread = itertools.cycle([{"Authorization": f"Bearer {t}"} for t in tokens])
    keys = itertools.count()
    run = uuid.uuid4().hex[:8]

    def headers() -> dict[str, str]:
        if not keyed:
            return next(spread)
        return {**next(spread), "Idempotency-Key": f"bench-{run}-{next(keys)}"}

    async with LoadClient(urls, clients) as client:
        for body in bodies[:200]:  # warm-up: connections, statement caches, page cache
            reply = await client.post("/incidents", body, headers())
            if reply.status != 201:
                raise RuntimeError(f"warm-up creation failed: {reply.status} {reply.body!r}")
        latencies: list[float] = []
        failures = 0

        async def create(body: dict[str, Any]) -> None:
            nonlocal failures
            started = time.perf_counter()
            try:
                reply = await client.post("/incidents", body, headers())
            except LoadClient.TRANSPORT_ERRORS:  # counted, not fatal: the run reports them
                failures += 1
                return
            latencies.append(time.perf_counter() - started)
            failures += reply.status != 201

        meter.start()
        started = time.perf_counter()
        await drive(iter(bodies), clients, create)
        seconds = time.perf_counter() - started
        meter.stop()
    replicas = f"{len(urls)} replica{'s' if len(urls) > 1 else ''}"
    tenants = f"{len(tokens)} tenant{'s' if len(tokens) > 1 else ''}"
    how = ", Idempotency-Key" if keyed else ""
    print(
        f"HTTP POST /incidents   {len(bodies):>7,} in {seconds:6.1f} s ({replicas}, {tenants}{how})"
        f"  {len(bodies) / seconds:>8,.0f} req/s  {ms(latencies)}  failures {failures}"
        "  (goal >= 1,000/s)"
    )
    print(f"  {meter.per(len(bodies), 'creation')}")


async def raw_inserts(
    admin_dsn: str, bodies: list[dict[str, Any]], clients: int, meter: CpuMeter
) -> None:
    """The same rows INSERTed into a plain copy of the incidents table, one transaction each."""
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(
        "DROP SCHEMA IF EXISTS bench_raw CASCADE; CREATE SCHEMA bench_raw;"
        " CREATE TABLE bench_raw.incidents (LIKE incident.incidents INCLUDING DEFAULTS)"
    )
    pool = await asyncpg.create_pool(admin_dsn, min_size=clients, max_size=clients)
    latencies: list[float] = []
    counter = itertools.count(1)

    async def insert(body: dict[str, Any]) -> None:
        now = datetime.now(UTC)
        started = time.perf_counter()
        await pool.execute(
            "INSERT INTO bench_raw.incidents (tenant_id, id, title, description, impact, urgency,"
            " priority, state, version, created_at, created_by, updated_at, updated_by, number,"
            " caller, category) VALUES ('bench', $1, $2, $3, $4, $5, $6, 'new', 1, $7, 'bench',"
            " $7, 'bench', $8, $9, $10)",
            uuid.uuid4(),
            body["title"],
            body["description"],
            body["impact"],
            body["urgency"],
            body["impact"] + body["urgency"] - 1,
            now,
            next(counter),
            body["caller"],
            body["category"],
        )
        latencies.append(time.perf_counter() - started)

    try:
        meter.start()
        started = time.perf_counter()
        await drive(iter(bodies), clients, insert)
        seconds = time.perf_counter() - started
        meter.stop()
    finally:
        await pool.close()
        await admin.execute("DROP SCHEMA IF EXISTS bench_raw CASCADE")
        await admin.close()
    print(
        f"raw asyncpg INSERT     {len(bodies):>7,} in {seconds:6.1f} s"
        f"  {len(bodies) / seconds:>8,.0f} rows/s {ms(latencies)}"
    )
    print(f"  {meter.per(len(bodies), 'row')}")


# --- the alert storm ---------------------------------------------------------------------------


def storm_notifications(groups: int, alerts: int, per_notification: int) -> list[dict[str, Any]]:
    """Alertmanager webhook bodies: each group's alerts in batches, the groups interleaved."""
    per_group = alerts // groups
    started = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    bodies = []
    for wave in range(0, per_group, per_notification):
        for g in range(groups):
            group_labels = {"alertname": f"StormAlert{g}"}
            batch = []
            for k in range(wave, min(wave + per_notification, per_group)):
                labels = {**group_labels, "instance": f"node-{g}-{k}:9100", "severity": "warning"}
                batch.append(
                    {
                        "status": "firing",
                        "labels": labels,
                        "annotations": {"summary": f"Disk filling up on node-{g}-{k}"},
                        "startsAt": started,
                        "endsAt": "0001-01-01T00:00:00Z",
                        "generatorURL": "http://prometheus.example/graph?g0.expr=up",
                        "fingerprint": hashlib.sha256(f"{g}/{k}".encode()).hexdigest()[:16],
                    }
                )
            bodies.append(
                {
                    "version": "4",
                    "groupKey": '{}:{alertname="StormAlert' + str(g) + '"}',
                    "truncatedAlerts": 0,
                    "status": "firing",
                    "receiver": "itsm",
                    "groupLabels": group_labels,
                    "commonLabels": {**group_labels, "severity": "warning"},
                    "commonAnnotations": {},
                    "externalURL": "http://alertmanager.example",
                    "alerts": batch,
                }
            )
    return bodies


async def outbox_rows(admin: asyncpg.Connection, tenant: str) -> int:
    value = await admin.fetchval(
        "SELECT count(*) FROM incident.outbox WHERE tenant_id = $1", tenant
    )
    return int(value)


async def alert_storm(
    urls: list[str],
    admin_dsn: str,
    tenant: str,
    token: str,
    reader: str,
    args: argparse.Namespace,
    meter: CpuMeter,
) -> None:
    bodies = storm_notifications(args.groups, args.alerts, args.per_notification)
    sent = sum(len(b["alerts"]) for b in bodies)
    probe_latencies: list[float] = []
    failures: dict[int, int] = {}
    done = asyncio.Event()
    headers = {"Authorization": f"Bearer {token}"}
    async with LoadClient(urls, args.clients) as client, LoadClient(urls, 1) as prober_client:

        async def post(body: dict[str, Any]) -> None:
            try:
                reply = await client.post("/integrations/alertmanager", body, headers)
            except LoadClient.TRANSPORT_ERRORS:
                failures[0] = failures.get(0, 0) + 1
                return
            if reply.status >= 300:
                failures[reply.status] = failures.get(reply.status, 0) + 1

        async def probe() -> None:
            read = {"Authorization": f"Bearer {reader}"}
            while not done.is_set():
                started = time.perf_counter()
                reply = await prober_client.get("/incidents?limit=20", read)
                probe_latencies.append(time.perf_counter() - started)
                if reply.status != 200:
                    raise RuntimeError(f"the probe failed: {reply.status} {reply.body!r}")
                await asyncio.sleep(0.1)

        meter.start()
        started = time.perf_counter()
        prober = asyncio.create_task(probe())
        await drive(iter(bodies), args.clients, post)
        accepted = time.perf_counter() - started
        done.set()
        await prober
    admin = await asyncpg.connect(admin_dsn)
    try:
        await eventually(lambda: outbox_rows(admin, tenant), lambda n: n == 0, timeout=900)
        settled = time.perf_counter() - started
        meter.stop()
        groups = await admin.fetchrow(
            "SELECT count(*) AS groups, coalesce(sum(alerts), 0) AS alerts,"
            " coalesce(sum(notifications), 0) AS notifications,"
            " coalesce(sum(incidents_opened), 0) AS opened"
            " FROM incident.alert_groups WHERE tenant_id = $1",
            tenant,
        )
        incidents = await admin.fetchval(
            "SELECT count(*) FROM incident.incidents WHERE tenant_id = $1", tenant
        )
    finally:
        await admin.close()
    assert groups is not None
    counted = int(groups["alerts"])  # sum() of bigint is numeric
    print(
        f"alert storm: {sent:,} alerts in {args.groups} groups, {len(bodies):,} notifications"
        f" of up to {args.per_notification} alerts, {args.clients} senders"
    )
    print(
        f"  all accepted in {accepted:6.1f} s ({len(bodies) / accepted:,.0f} notifications/s,"
        f" {sent / accepted:,.0f} alerts/s); settled (outbox drained) in {settled:6.1f} s"
        "  (goal < 30 s)"
    )
    print(
        f"  incidents opened {incidents:,} (groups {groups['groups']:,}); alerts counted"
        f" {counted:,}, lost {sent - counted:,}; notifications counted"
        f" {int(groups['notifications']):,}; refused {failures or 0}"
    )
    print(
        f"  GET /incidents during the storm ({len(probe_latencies)} probes): {ms(probe_latencies)}"
    )
    print(f"  {meter.per(sent, 'alert')}")


# --- SLA breach detection ----------------------------------------------------------------------


def spread_policies(steps: int) -> list[PolicySnapshot]:
    """One policy per second of the hour: resolution targets 60 s .. 60 s + 1 h."""
    calendar = CalendarSpec.always_open()
    policies = []
    for step in range(steps):
        seconds = 60 + step * 3600 // steps
        target = SlaTargetV1(response_seconds=seconds, resolution_seconds=seconds)
        policies.append(
            PolicySnapshot(
                name=f"bench-{step}",
                version=1,
                targets={p: target for p in ("P1", "P2", "P3", "P4", "P5")},
                calendar_name="always",
                calendar=calendar,
                pause_on=(),
                warning_threshold=0.75,
                default=False,
            )
        )
    return policies


async def start_clocks(infra: Infra, tenant: str, n: int) -> float:
    """n resolution clocks through the SLA engine, deadlines spread evenly over an hour."""
    policies = spread_policies(3600)
    pool = await create_pool(
        infra.service_dsns["incident"],
        schema="incident",
        application_name="bench-sla",
        min_size=4,
        max_size=4,
    )
    started = time.perf_counter()
    try:

        async def chunk(first: int) -> None:
            async with IncidentUnitOfWork(pool, RequestContext(tenant, "bench", "bench")) as uow:
                at = datetime.now(UTC)
                for i in range(first, min(first + 1000, n)):
                    await sla.start_clocks(
                        uow,
                        record="incident",
                        record_id=uuid.uuid4(),
                        policy=policies[i * len(policies) // n],
                        priority=3,
                        at=at,
                        kinds=("resolution",),
                    )

        await drive(iter(range(0, n, 1000)), 4, chunk)
    finally:
        await pool.close()
    return time.perf_counter() - started


async def breach_detection(infra: Infra, tenant: str, args: argparse.Namespace) -> None:
    start = await end_offsets(infra.bootstrap_servers, INCIDENT_EVENTS)
    seconds = await start_clocks(infra, tenant, args.clocks)
    print(
        f"SLA: {args.clocks:,} open resolution clocks started in {seconds:.1f} s, deadlines"
        f" spread over the hour from 60 s; watching breaches for {args.sla_minutes} min"
    )
    consumer = AIOKafkaConsumer(bootstrap_servers=infra.bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    delays: dict[str, list[float]] = {BREACHED: [], WARNED: []}
    late = 0
    try:
        consumer.assign(list(start))
        for partition, offset in start.items():
            consumer.seek(partition, offset)
        deadline = time.monotonic() + args.sla_minutes * 60
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batches.values():
                for record in records:
                    headers = dict(record.headers)
                    kind = headers.get("ce_type", b"").decode()
                    if kind not in delays or headers["ce_tenantid"].decode() != tenant:
                        continue
                    data = json.loads(record.value)
                    due = datetime.fromisoformat(data["due_at"]).timestamp()
                    delays[kind].append(record.timestamp / 1000 - due)
                    late += bool(data["late"])
    finally:
        await consumer.stop()
    for kind, name in ((BREACHED, "breaches"), (WARNED, "warnings")):
        values = delays[kind]
        if not values:
            print(f"  {name}: none seen")
            continue
        print(
            f"  {name:8} {len(values):>6,} seen, detection delay (due -> event on Kafka):"
            f" {ms(values)}  max {max(values) * 1000:7.1f} ms"
            + ("  (goal p99 < 2 s)" if kind == BREACHED else "")
        )
    print(f"  flagged late: {late}")


async def measure(
    infra: Infra, services: list[ServiceProcess], meter: CpuMeter, args: argparse.Namespace
) -> None:
    issuer = infra.keys.issuer()
    urls = [service.url for service in services]
    admin_dsn = dsn_for_admin_database(infra.admin_dsn, DEFAULT_DATABASE)
    if "creation" in args.parts:
        bodies = incident_bodies(args.incidents)
        await raw_inserts(admin_dsn, bodies, args.clients, meter)
        # One replica, then all of them (each run in tenants of its own).
        # Then all of them again, each creation carrying an Idempotency-Key.
        for serving, keyed in [*((n, False) for n in sorted({1, len(urls)})), (len(urls), True)]:
            agents = [
                issuer.mint(
                    subject="bench",
                    tenants=[f"t-bench-{uuid.uuid4().hex[:8]}"],
                    roles=["agent"],
                    ttl_seconds=4 * 3600,
                )
                for _ in range(args.tenants)
            ]
            await http_creation(urls[:serving], agents, bodies, args.clients, meter, keyed=keyed)
    if "storm" in args.parts:
        storm_tenant = f"t-storm-{uuid.uuid4().hex[:8]}"
        integration = issuer.mint(
            subject="alertmanager", tenants=[storm_tenant], roles=["integration"], ttl_seconds=3600
        )
        reader = issuer.mint(
            subject="bench", tenants=[storm_tenant], roles=["agent"], ttl_seconds=3600
        )
        await alert_storm(urls, admin_dsn, storm_tenant, integration, reader, args, meter)
    if "sla" in args.parts:
        await breach_detection(infra, f"t-sla-{uuid.uuid4().hex[:8]}", args)


def cpu_meter(platform: LocalPlatform, services: list[ServiceProcess]) -> CpuMeter:
    """CPU by part: the service replicas, PostgreSQL (server and backends), the Kafka broker."""
    assert platform.postgres is not None and platform.kafka is not None
    postmaster = pid_from_file(platform.postgres.data_dir / "postmaster.pid")
    broker = pid_from_file(platform.kafka.state_dir / "broker.pid")
    return CpuMeter(
        {
            "service": lambda: [s.process.pid for s in services],
            "postgres": lambda: [postmaster, *children_of(postmaster)],
            "kafka": lambda: [broker],
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--incidents", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument(
        "--replicas",
        type=int,
        default=2,
        help="service processes, like replicas behind a load balancer; creation is measured"
        " with one, then with all of them (default 2: one per core of the reference machine)",
    )
    parser.add_argument(
        "--tenants", type=int, default=1, help="spread the creations over this many tenants"
    )
    parser.add_argument("--alerts", type=int, default=20_000)
    parser.add_argument("--groups", type=int, default=500)
    parser.add_argument("--per-notification", type=int, default=10)
    parser.add_argument("--clocks", type=int, default=100_000)
    parser.add_argument("--sla-minutes", type=float, default=5.0)
    parser.add_argument(
        "--parts",
        type=lambda text: set(text.split(",")),
        default={"creation", "storm", "sla"},
        help="comma-separated subset of creation,storm,sla (default: all three)",
    )
    parser.add_argument("--state-dir", type=Path, default=REPO_ROOT / ".state" / "bench-incident")
    args = parser.parse_args()

    platform = LocalPlatform(
        args.state_dir, kafka_port=19392, kafka_controller_port=19393, postgres_port=15472
    )
    if platform.postgres is not None:
        platform.postgres.destroy()
    for sub in ("kafka", "logs"):
        shutil.rmtree(args.state_dir / sub, ignore_errors=True)
    try:
        infra = platform.start_infra()
        services = platform.start_services(infra, {"incident": 18011}, replicas=args.replicas)
        print(
            f"incident service: {len(services)} replica(s) as separate processes at"
            f" {', '.join(s.url for s in services)}; broker {infra.bootstrap_servers};"
            f" {os.cpu_count()} CPU cores shared by all of it and this load generator"
        )
        asyncio.run(measure(infra, services, cpu_meter(platform, services), args))
    finally:
        platform.stop()


if __name__ == "__main__":
    main()
