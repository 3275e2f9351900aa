"""Benchmark: what grows with what. Replicas, relays and consumers on the real Kafka and PostgreSQL.

`make bench-scaling` (or `python -m tests.benchmarks.scaling`). The figures behind
`docs/scaling.md`. On its own Kafka and PostgreSQL (under `$ITSM_TEST_STATE/bench-scaling`, or
`.state/bench-scaling`), it prints, beside baselines measured in the same run:

- baselines: raw asyncpg INSERTs of incident rows (one transaction each) and raw aiokafka
  produce -> consume of records shaped like the platform's events;
- end to end, HTTP `POST /incidents` -> outbox -> relay -> Kafka -> reporting ledger, with 1 and
  2 replicas of the incident service and 1 and 2 outbox relays (separate processes, as deployed),
  the median of a few rounds each: events/s into the ledger, requests/s, and the CPU
  milliseconds per event of every part (incident replicas, relays, the reporting service,
  PostgreSQL split by the role its backends log in as, Kafka, this load generator);
- ledger ingestion over a backlog (events produced to `itsm.incident.events` for several
  tenants while the consumers wait) with 1 and 2 replicas of the reporting service in its one
  consumer group, with CPU per event.

The machine it was written on has two cores shared by everything, so more processes mostly
share the same CPU: read the CPU per event, which is what a bigger machine or cluster divides
among its cores. Nothing is asserted; the machines are noisy, so read medians and ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from shared.db import create_pool
from shared.devstack.kafka import REPO_ROOT
from shared.devstack.platform import Infra, LocalPlatform, ServiceProcess
from shared.events.catalogue import INCIDENT_EVENTS
from shared.kafka import create_producer
from shared.provision import DEFAULT_DATABASE, dsn_for_admin_database
from shared.registry import service as registered
from tests.benchmarks.incident import incident_bodies, raw_inserts
from tests.benchmarks.ledger import SERVICE_ENV as LEDGER_ENV
from tests.benchmarks.ledger import Variants, produce, template
from tests.benchmarks.loadgen import (
    _TICKS,
    CpuMeter,
    LoadClient,
    _cpu_seconds,
    children_of,
    pid_from_file,
)
from tests.benchmarks.pipeline import ensure_raw_topic, raw_run
from tests.support import fetch_as, fetchval_as

INCIDENT_PORT = 18401
RELAY_SECOND_PORT = INCIDENT_PORT + 50  # a second relay's service port (its own port +100)
REPORTING_PORT = 18404
[LEDGER_GROUP] = registered("reporting").consumer_groups


def _title(pid: int) -> str:
    """A PostgreSQL backend's process title: `postgres: <role> <database> <host> <activity>`."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _backends_of(postmaster: int, role: str | None) -> Callable[[], list[int]]:
    """The pids of the backends logged in as `role` (None: every other process of the server)."""
    services = {"incident", "reporting", "change", "config"}

    def pids() -> list[int]:
        found = []
        for pid in children_of(postmaster):
            words = _title(pid).split()
            who = words[1] if len(words) > 1 and words[0] == "postgres:" else ""
            if (role is None and who not in services) or who == role:
                found.append(pid)
        return found if role is not None else [postmaster, *found]

    return pids


def _thread_cpu(pid: int, tid: int) -> float:
    """User + system CPU of one thread so far (0 once it is gone). Not /proc/<tid>/stat, which
    answers the whole process's times for any thread id."""
    try:
        fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _threads_of(pid: int, *, compiler: bool) -> Callable[[], list[int]]:
    """A JVM's threads: the JIT compiler's (`compiler`) or all the others. A young broker spends
    much of its CPU compiling (C2 had 14 of a broker's first 35 CPU seconds here), which a
    long-running one has done: kept apart, the rest is what an event costs a warm broker."""

    def tids() -> list[int]:
        found = []
        try:
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            return []
        for task in tasks:
            try:
                name = (task / "comm").read_text()
            except OSError:
                continue
            if name.startswith(("C1 Compiler", "C2 Compiler")) == compiler:
                found.append(int(task.name))
        return found

    return tids


class Meter(CpuMeter):
    """CpuMeter whose groups named in `threads` list thread ids of that process, not pids."""

    def __init__(self, groups: Mapping[str, Callable[[], list[int]]], threads: dict[str, int]):
        super().__init__(groups)
        self.threads = threads

    def _sample(self) -> dict[str, dict[int, float]]:
        sample = {}
        for name, ids in self.groups.items():
            owner = self.threads.get(name)
            sample[name] = {
                i: _thread_cpu(owner, i) if owner is not None else _cpu_seconds(i) for i in ids()
            }
        return sample


@dataclass
class Parts:
    """The processes of one measured configuration."""

    incident: list[ServiceProcess]
    relays: list[ServiceProcess]
    reporting: list[ServiceProcess]

    def all(self) -> list[ServiceProcess]:
        return [*self.incident, *self.relays, *self.reporting]


def meter_for(platform: LocalPlatform, parts: Parts) -> CpuMeter:
    """CPU by part; PostgreSQL's backends are told apart by the role they log in as (the
    incident service and its relays log in as `incident`, the reporting service as `reporting`)."""
    assert platform.postgres is not None and platform.kafka is not None
    postmaster = pid_from_file(platform.postgres.data_dir / "postmaster.pid")
    broker = pid_from_file(platform.kafka.state_dir / "broker.pid")
    return Meter(
        {
            "incident": lambda: [s.process.pid for s in parts.incident],
            "relay": lambda: [s.process.pid for s in parts.relays],
            "reporting": lambda: [s.process.pid for s in parts.reporting],
            "pg incident": _backends_of(postmaster, "incident"),
            "pg reporting": _backends_of(postmaster, "reporting"),
            "pg other": _backends_of(postmaster, None),
            "kafka": _threads_of(broker, compiler=False),
            "kafka JIT": _threads_of(broker, compiler=True),
        },
        threads={"kafka": broker, "kafka JIT": broker},
    )


def stop_all(platform: LocalPlatform, processes: list[ServiceProcess]) -> None:
    for process in processes:
        process.stop()
        if process in platform.services:
            platform.services.remove(process)


# --- waiting for the ledger, without guessing how many events a request makes -----------------


class LagProbe:
    """The incident outbox's rows and the ledger group's lag on the incident topic, over one
    admin client, one consumer and one database connection kept for the run (opening them per
    probe would make the broker and this process busier than what is measured)."""

    def __init__(self, admin_dsn: str, bootstrap: str) -> None:
        self.admin_dsn = admin_dsn
        self.admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self.db: asyncpg.Connection | None = None

    async def __aenter__(self) -> LagProbe:
        await self.admin.start()
        await self.consumer.start()
        self.db = await asyncpg.connect(self.admin_dsn)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()
        await self.admin.close()
        if self.db is not None:
            await self.db.close()

    async def group_lag(self, group: str, topic: str) -> int:
        """Records on `topic` that `group` has not committed yet (-1: it has committed none)."""
        committed = await self.admin.list_consumer_group_offsets(group)
        partitions = [tp for tp in committed if tp.topic == topic]
        if not partitions:
            return -1
        ends = await self.consumer.end_offsets(partitions)
        return sum(ends[tp] - committed[tp].offset for tp in partitions)

    async def settled(self, timeout: float) -> None:
        """Until the incident outbox is empty and the ledger's group has committed everything
        published: then every event written so far is in the ledger (the group commits offsets
        only after the rows)."""
        assert self.db is not None
        deadline = time.monotonic() + timeout
        while True:
            outbox = int(await self.db.fetchval("SELECT count(*) FROM incident.outbox"))
            if outbox == 0 and await self.group_lag(LEDGER_GROUP, INCIDENT_EVENTS) == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"not settled after {timeout:.0f}s (outbox {outbox})")
            await asyncio.sleep(0.2)


async def ledger_span(
    reporting: asyncpg.Pool, tenants: list[str]
) -> tuple[int, datetime, datetime]:
    """How many entries the tenants' logs have, the first and the last recording time."""
    count, first, last = 0, None, None
    for tenant in tenants:
        [row] = await fetch_as(
            reporting,
            tenant,
            "SELECT count(*), min(recorded_at), max(recorded_at) FROM ledger WHERE tenant_id = $1",
            tenant,
        )
        count += int(row[0])
        if row[1] is not None:
            first = row[1] if first is None else min(first, row[1])
            last = row[2] if last is None else max(last, row[2])
    if first is None or last is None:
        raise RuntimeError(f"no ledger entries for {tenants}")
    return count, first, last


# --- end to end --------------------------------------------------------------------------------


@dataclass
class Round:
    events: int
    requests: int
    events_per_s: float
    requests_per_s: float
    seconds: float  # the measured window: first request to everything settled
    cpu_ms: dict[str, float]  # per event

    def marginal(self, idle: dict[str, float]) -> dict[str, float]:
        """CPU ms per event less what each part spends idle (`idle`: CPU s per second). The
        broker's compiler and this process are left as they are: the JIT compiles in bursts,
        and this process's idle is the probing, not a part of the platform."""
        return {
            name: ms
            if name in ("kafka JIT", "load generator")
            else ms - idle.get(name, 0.0) * self.seconds / self.events * 1000
            for name, ms in self.cpu_ms.items()
        }


async def e2e_round(
    infra: Infra,
    probe: LagProbe,
    reporting: asyncpg.Pool,
    meter: CpuMeter,
    urls: list[str],
    requests: int,
    clients: int,
) -> Round:
    """One tenant's `requests` creations over HTTP, timed until their last event is in the
    ledger; CPU from the first request until everything settled."""
    tenant = f"t-scale-{uuid.uuid4().hex[:8]}"
    token = infra.keys.issuer().mint(
        subject="bench", tenants=[tenant], roles=["agent"], ttl_seconds=3600
    )
    headers = {"Authorization": f"Bearer {token}"}
    bodies = iter(incident_bodies(requests))
    failures = 0
    async with LoadClient(urls, clients) as client:

        async def worker() -> None:
            nonlocal failures
            for body in bodies:
                reply = await client.post("/incidents", body, headers)
                failures += reply.status != 201

        meter.start()
        started = time.time()
        await asyncio.gather(*(worker() for _ in range(clients)))
        answered = time.time()
    await probe.settled(300)
    spent = meter.stop()
    seconds = time.time() - started
    if failures:
        print(f"    {failures} of {requests} creations failed", flush=True)
    count, _first, last = await ledger_span(reporting, [tenant])
    return Round(
        events=count,
        requests=requests,
        events_per_s=count / (last.timestamp() - started),
        requests_per_s=requests / (answered - started),
        seconds=seconds,
        cpu_ms={name: seconds / count * 1000 for name, seconds in spent.items()},
    )


async def idle_cpu(meter: CpuMeter, seconds: float) -> dict[str, float]:
    """CPU seconds per second that each part spends with no load (consumers polling, the
    broker's and the database's own housekeeping, checkpoint and gauge loops)."""
    meter.start()
    await asyncio.sleep(seconds)  # a measuring window, not a wait for something to happen
    return {name: spent / seconds for name, spent in meter.stop().items()}


async def settled_idle(
    meter: CpuMeter, seconds: float, *, least: int = 2, windows: int = 10
) -> dict[str, float]:
    """Idle CPU once it stops falling: the projections and the completeness task catch up on
    what came before for a while, which is not what an idle tenant costs. Windows of `seconds`
    until one is within 20 % of the one before, `least` of them at least and `windows` at most;
    prints their totals."""
    totals: list[float] = []
    rates: dict[str, float] = {}
    for _ in range(windows):
        rates = await idle_cpu(meter, seconds)
        totals.append(sum(v for k, v in rates.items() if k != "load generator"))
        if len(totals) >= least and totals[-1] >= 0.8 * totals[-2]:
            break
    shown = ", ".join(f"{t * 1000:.0f}" for t in totals)
    print(f"    idle CPU ms per second, window by window: {shown}")
    return rates


def cpu_line(cpu_ms: dict[str, float]) -> str:
    parts = ", ".join(f"{name} {ms:.3f}" for name, ms in cpu_ms.items())
    return f"{parts}; all {sum(cpu_ms.values()):.3f}"


def median_marginal(rounds: list[Round], idle: dict[str, float]) -> dict[str, float]:
    marginal = [r.marginal(idle) for r in rounds]
    return {name: statistics.median(m[name] for m in marginal) for name in marginal[0]}


def median_cpu(rounds: list[Round]) -> dict[str, float]:
    return {name: statistics.median(r.cpu_ms[name] for r in rounds) for name in rounds[0].cpu_ms}


async def end_to_end(
    platform: LocalPlatform, infra: Infra, reporting_pool: asyncpg.Pool, args: argparse.Namespace
) -> tuple[dict[tuple[int, int], list[Round]], dict[tuple[int, int], dict[str, float]]]:
    admin_dsn = dsn_for_admin_database(infra.admin_dsn, DEFAULT_DATABASE)
    async with LagProbe(admin_dsn, infra.bootstrap_servers) as probe:
        reporting = platform.start_services(
            infra, {"reporting": REPORTING_PORT}, extra_env=LEDGER_ENV
        )
        results: dict[tuple[int, int], list[Round]] = {}
        idles: dict[tuple[int, int], dict[str, float]] = {}
        try:
            for replicas, relays in args.configs:
                incident = platform.start_services(
                    infra,
                    {"incident": INCIDENT_PORT},
                    replicas=replicas,
                    separate_relays=["incident"],
                )
                extra = []
                if relays == 2:
                    extra.append(platform.start_relay(infra, "incident", RELAY_SECOND_PORT))
                parts = Parts(
                    incident=[s for s in incident if not s.name.endswith("-relay")],
                    relays=[s for s in incident if s.name.endswith("-relay")] + extra,
                    reporting=reporting,
                )
                urls = [s.url for s in parts.incident]
                meter = meter_for(platform, parts)
                try:
                    # Warm up: connections, statement caches, the group's assignment.
                    await e2e_round(infra, probe, reporting_pool, meter, urls, 300, args.clients)
                    idle = await idle_cpu(meter, args.idle)
                    idles[(replicas, relays)] = idle
                    print(
                        f"  {replicas} replica(s), {relays} relay(s), idle for {args.idle:.0f} s:"
                        f" CPU ms per second: {cpu_line({k: v * 1000 for k, v in idle.items()})}",
                        flush=True,
                    )
                    rounds = []
                    for r in range(args.rounds):
                        result = await e2e_round(
                            infra, probe, reporting_pool, meter, urls, args.requests, args.clients
                        )
                        rounds.append(result)
                        print(
                            f"  {replicas} replica(s), {relays} relay(s), round {r + 1}:"
                            f" {result.events_per_s:7.0f} events/s into the ledger"
                            f" ({result.events} events from {result.requests} requests,"
                            f" {result.requests_per_s:6.0f} req/s answered)\n"
                            f"    CPU ms per event: {cpu_line(result.cpu_ms)}",
                            flush=True,
                        )
                    results[(replicas, relays)] = rounds
                finally:
                    stop_all(platform, parts.incident + parts.relays)
        finally:
            stop_all(platform, reporting)
        return results, idles


# --- ledger ingestion over a backlog -----------------------------------------------------------


async def group_members(bootstrap: str, group: str) -> tuple[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [description] = await admin.describe_consumer_groups([group])
        # aiokafka answers the protocol's response: (error, group, state, protocol type,
        # protocol, members, ...) per group.
        _error, _name, state, _ptype, _protocol, members, *_ = description.groups[0]
        return state, len(members)
    finally:
        await admin.close()


@dataclass
class Ingest:
    recording: float  # events/s from the first row to the last
    wall: float  # events/s from the first record produced to the last row
    cpu_ms: dict[str, float]  # per event
    lock_waits: float  # share of samples with a reporting backend waiting on a lock
    assignments: int  # partition assignments logged by the replicas while measured


async def ingestion(
    platform: LocalPlatform,
    infra: Infra,
    reporting_pool: asyncpg.Pool,
    replicas: int,
    backlog: int,
    tenants: int,
) -> Ingest:
    """Start `replicas` reporting services, wait until the group is stable with all of them,
    then produce a backlog for `tenants` tenants at once and time its recording. Samples how
    often a reporting backend waits on a lock (each batch locks its tenants' tree heads until it
    commits) and counts the rebalances the replicas log meanwhile."""
    services = platform.start_services(
        infra, {"reporting": REPORTING_PORT}, replicas=replicas, extra_env=LEDGER_ENV
    )
    parts = Parts(incident=[], relays=[], reporting=services)
    meter = meter_for(platform, parts)
    admin = await asyncpg.connect(dsn_for_admin_database(infra.admin_dsn, DEFAULT_DATABASE))
    try:
        deadline = time.monotonic() + 120
        while (await group_members(infra.bootstrap_servers, LEDGER_GROUP)) != ("Stable", replicas):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{LEDGER_GROUP} never stable with {replicas} members")
            await asyncio.sleep(0.2)
        names = [f"t-backlog-{uuid.uuid4().hex[:8]}" for _ in range(tenants)]
        logged = {s.log_path: s.log_path.stat().st_size for s in services}
        meter.start()
        began = time.time()
        for name in names:
            await produce(infra.bootstrap_servers, name, backlog // tenants)
        expected = (backlog // tenants) * tenants
        deadline = time.monotonic() + 600
        samples = waiting = 0
        while (await ledger_span_count(reporting_pool, names)) < expected:
            if time.monotonic() > deadline:
                raise RuntimeError("the backlog was not recorded in 600 s")
            samples += 1
            waiting += bool(
                await admin.fetchval(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE usename = 'reporting' AND wait_event_type = 'Lock'"
                )
            )
            await asyncio.sleep(0.1)
        spent = meter.stop()
        count, first, last = await ledger_span(reporting_pool, names)
        assignments = 0
        for path, size in logged.items():
            with path.open("rb") as log:
                log.seek(size)
                assignments += log.read().count(b"assigned to partitions")
        return Ingest(
            recording=count / max((last - first).total_seconds(), 1e-6),
            wall=count / (last.timestamp() - began),
            cpu_ms={name: seconds / count * 1000 for name, seconds in spent.items()},
            lock_waits=waiting / max(samples, 1),
            assignments=assignments,
        )
    finally:
        await admin.close()
        stop_all(platform, services)


async def many_tenants(
    platform: LocalPlatform,
    infra: Infra,
    reporting_pool: asyncpg.Pool,
    tenants: int,
    checkpoint_seconds: float,
) -> None:
    """What a tenant costs the reporting service by being there: its idle CPU with the tenants
    so far, then `tenants` new tenants each given one event (each a log, a first checkpoint and
    the projections' rounds), the CPU until all of them are checkpointed, and the idle CPU
    again with them all present."""
    env = {**LEDGER_ENV, "REPORTING_CHECKPOINT_INTERVAL_SECONDS": str(checkpoint_seconds)}
    [service] = platform.start_services(infra, {"reporting": REPORTING_PORT}, extra_env=env)
    meter = meter_for(platform, Parts(incident=[], relays=[], reporting=[service]))
    # Windows of a checkpoint interval at least, so that each holds the checkpointer's rounds.
    idle = max(checkpoint_seconds, 3.0)
    admin = await asyncpg.connect(dsn_for_admin_database(infra.admin_dsn, DEFAULT_DATABASE))
    try:
        before = await settled_idle(meter, idle, least=2)
        commits_before = await commits_per_second(admin, 3 * idle)
        known = int(await admin.fetchval("SELECT count(*) FROM reporting.ledger_heads"))
        names = [f"t-many-{uuid.uuid4().hex[:8]}" for _ in range(tenants)]
        meter.start()
        began = time.time()
        await produce_one_each(infra.bootstrap_servers, names)
        deadline = time.monotonic() + 600
        checkpointed = 0
        while checkpointed < tenants:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{checkpointed}/{tenants} new tenants checkpointed in 600 s")
            await asyncio.sleep(0.2)
            checkpointed = int(
                await admin.fetchval(
                    "SELECT count(DISTINCT tenant_id) FROM reporting.ledger_checkpoints"
                    " WHERE tenant_id = ANY($1::text[])",
                    names,
                )
            )
        spent = meter.stop()
        took = time.time() - began
        after = await settled_idle(meter, idle, least=3)
        commits_after = await commits_per_second(admin, 3 * idle)
    finally:
        await admin.close()
        stop_all(platform, [service])
    service_ms = {k: v / tenants * 1000 for k, v in spent.items() if v}
    print(
        f"  {tenants:,} new tenants (beside {known:,}), one event each, all checkpointed in"
        f" {took:.1f} s; CPU ms per new tenant: {cpu_line(service_ms)}"
    )
    for label, rates in (("before", before), ("after", after)):
        print(
            f"  idle {label}, CPU ms per second:"
            f" {cpu_line({k: v * 1000 for k, v in rates.items() if k != 'load generator'})}"
        )
    print(
        f"  transactions committed a second while idle: {commits_before:.0f} before,"
        f" {commits_after:.0f} after (the whole database; each backend reports every second or so)"
    )


async def storage(infra: Infra) -> None:
    """Bytes per ledger entry of the reporting schema's largest tables (with their indexes and
    TOAST), for sizing the database: a ledger entry is kept for as long as the evidence is."""
    admin = await asyncpg.connect(dsn_for_admin_database(infra.admin_dsn, DEFAULT_DATABASE))
    try:
        entries = int(await admin.fetchval("SELECT count(*) FROM reporting.ledger"))
        rows = await admin.fetch(
            "SELECT c.relname, pg_total_relation_size(c.oid) AS bytes FROM pg_class c"
            " WHERE c.relnamespace = 'reporting'::regnamespace AND c.relkind = 'r'"
            " ORDER BY bytes DESC LIMIT 6"
        )
    finally:
        await admin.close()
    if not entries:
        print("  the ledger is empty: no storage figure")
        return
    parts = ", ".join(f"{r['relname']} {r['bytes'] / entries:,.0f}" for r in rows)
    total = sum(r["bytes"] for r in rows) / entries
    print(f"  {entries:,} ledger entries; bytes per entry: {parts}; these {total:,.0f}")


async def commits_per_second(admin: asyncpg.Connection, seconds: float) -> float:
    """Transactions committed a second in the platform's database over a window."""
    query = "SELECT xact_commit FROM pg_stat_database WHERE datname = $1"
    first = int(await admin.fetchval(query, DEFAULT_DATABASE))
    await asyncio.sleep(seconds)  # a measuring window
    await admin.execute("SELECT pg_stat_clear_snapshot()")
    return (int(await admin.fetchval(query, DEFAULT_DATABASE)) - first) / seconds


async def produce_one_each(bootstrap: str, tenants: list[str]) -> None:
    """One incident event for each tenant on the incident topic."""
    producer = create_producer(bootstrap, "bench-scaling-tenants")
    await producer.start()
    try:
        pending = []
        for tenant in tenants:
            envelope, value, headers = Variants(template(tenant)).make()
            key = envelope.subject.encode()
            pending.append(await producer.send(INCIDENT_EVENTS, value, key=key, headers=headers))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def ledger_span_count(reporting: asyncpg.Pool, tenants: list[str]) -> int:
    total = 0
    for tenant in tenants:
        query = "SELECT count(*) FROM ledger WHERE tenant_id = $1"
        total += int(await fetchval_as(reporting, tenant, query, tenant))
    return total


# --- baselines ---------------------------------------------------------------------------------


async def baselines(platform: LocalPlatform, infra: Infra, args: argparse.Namespace) -> None:
    meter = meter_for(platform, Parts([], [], []))
    admin_dsn = dsn_for_admin_database(infra.admin_dsn, DEFAULT_DATABASE)
    # raw_inserts prints its rows/s and the CPU per row ("pg other": the admin role's backends).
    await raw_inserts(admin_dsn, incident_bodies(args.requests), args.clients, meter)
    await ensure_raw_topic(infra.bootstrap_servers)
    await raw_run(infra.bootstrap_servers, 500, None)  # warm-up
    rates = []
    for _ in range(args.rounds):
        meter.start()
        rate, _latencies = await raw_run(infra.bootstrap_servers, args.backlog, None)
        spent = meter.stop()
        rates.append(rate)
    print(
        f"raw aiokafka produce->consume {args.backlog:,} records, median of {args.rounds}:"
        f" {statistics.median(rates):8.0f} records/s"
        f" (rounds {' / '.join(f'{r:.0f}' for r in rates)})\n"
        f"  CPU ms per record (last round): kafka {spent['kafka'] / args.backlog * 1000:.3f},"
        f" client {spent['load generator'] / args.backlog * 1000:.3f}",
        flush=True,
    )


# --- the run -----------------------------------------------------------------------------------


async def measure(platform: LocalPlatform, infra: Infra, args: argparse.Namespace) -> None:
    # The incident service's migrations make the table the raw INSERT baseline copies.
    first = platform.start_services(infra, {"incident": INCIDENT_PORT})
    stop_all(platform, first)
    print("baselines", flush=True)
    await baselines(platform, infra, args)

    reporting = await create_pool(
        infra.service_dsns["reporting"], schema="reporting", application_name="bench", max_size=2
    )
    try:
        print(
            f"\nend to end: HTTP POST /incidents ({args.clients} clients) -> outbox -> relay ->"
            f" Kafka -> ledger, {args.requests:,} requests a round",
            flush=True,
        )
        e2e, idles = await end_to_end(platform, infra, reporting, args)
        print(
            f"\nledger ingestion over a backlog of {args.backlog:,} events, {args.tenants} tenants"
        )
        ingest: dict[int, list[Ingest]] = {}
        for replicas in (1, 2):
            for r in range(args.ingest_rounds):
                result = await ingestion(
                    platform, infra, reporting, replicas, args.backlog, args.tenants
                )
                ingest.setdefault(replicas, []).append(result)
                print(
                    f"  {replicas} consumer replica(s), round {r + 1}: {result.recording:7.0f}"
                    f" events/s recording ({result.wall:7.0f} from the first produce);"
                    f" a backend waiting on a lock in {result.lock_waits:.0%} of samples;"
                    f" {result.assignments} partition assignment(s) logged\n"
                    f"    CPU ms per event: {cpu_line(result.cpu_ms)}",
                    flush=True,
                )
        print("\nstorage")
        await storage(infra)
        if args.many_tenants:
            print(f"\nmany tenants: the reporting service with {args.many_tenants:,} more")
            await many_tenants(
                platform, infra, reporting, args.many_tenants, args.tenant_checkpoint_seconds
            )
    finally:
        await reporting.close()

    print("\nsummary (medians)")
    for (replicas, relays), rounds in e2e.items():
        print(
            f"  end to end, {replicas} incident replica(s), {relays} relay(s):"
            f" {statistics.median(r.events_per_s for r in rounds):7.0f} events/s,"
            f" {statistics.median(r.requests_per_s for r in rounds):6.0f} req/s,"
            f" {statistics.median(r.events / r.requests for r in rounds):.2f} events/request\n"
            f"    CPU ms per event: {cpu_line(median_cpu(rounds))}\n"
            "    less each part's idle CPU over the round:"
            f" {cpu_line(median_marginal(rounds, idles[(replicas, relays)]))}"
        )
    for replicas, results in ingest.items():
        cpu = {
            name: statistics.median(r.cpu_ms[name] for r in results) for name in results[0].cpu_ms
        }
        print(
            f"  ledger ingestion, {replicas} consumer replica(s):"
            f" {statistics.median(r.recording for r in results):7.0f} events/s\n"
            f"    CPU ms per event: {cpu_line(cpu)}"
        )
    print(f"  load average at the end: {os.getloadavg()[0]:.1f} (cores: {os.cpu_count()})")


def configs(text: str) -> list[tuple[int, int]]:
    """`1x1,1x2,2x1,2x2`: incident replicas x relays (empty: no end-to-end phase)."""
    return [(int(a), int(b)) for a, b in (item.split("x") for item in text.split(",") if item)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=1000, help="creations per e2e round")
    parser.add_argument("--clients", type=int, default=16, help="concurrent HTTP connections")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--configs", type=configs, default=configs("1x1,1x2,2x1,2x2"), help="replicas x relays"
    )
    parser.add_argument("--idle", type=float, default=3.0, help="seconds of idle CPU measured")
    parser.add_argument("--backlog", type=int, default=20_000, help="events for ingestion")
    parser.add_argument("--tenants", type=int, default=6, help="tenants the backlog spreads over")
    parser.add_argument("--ingest-rounds", type=int, default=2)
    parser.add_argument(
        "--many-tenants", type=int, default=1000, help="new tenants of the last phase (0: skip)"
    )
    parser.add_argument(
        "--tenant-checkpoint-seconds",
        type=float,
        default=5.0,
        help="the reporting service's checkpoint interval in the many-tenants phase (default:"
        " the service's own default; the other phases use 1 s, as make bench-ledger does)",
    )
    state = os.environ.get("ITSM_TEST_STATE")
    default_state = (
        Path(state) / "bench-scaling" if state else REPO_ROOT / ".state" / "bench-scaling"
    )
    parser.add_argument("--state-dir", type=Path, default=default_state)
    args = parser.parse_args()

    platform = LocalPlatform(
        args.state_dir, kafka_port=19592, kafka_controller_port=19593, postgres_port=15672
    )
    # Each run starts from empty servers, so that runs compare.
    if platform.postgres is not None:
        platform.postgres.destroy()
    for sub in ("kafka", "logs"):
        shutil.rmtree(args.state_dir / sub, ignore_errors=True)
    started = time.monotonic()
    try:
        infra = platform.start_infra()
        print(
            f"broker {infra.bootstrap_servers}; every service and relay a process of its own;"
            f" {os.cpu_count()} cores shared by all of it and this load generator;"
            f" load average {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        asyncio.run(measure(platform, infra, args))
    finally:
        platform.stop()
    print(f"run took {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
