"""The kill -9 fault harness: the whole platform as processes under the devstack's supervisor,
a bounded HTTP load with the retries a real client makes, SIGKILLs at random moments, and a
verdict on what came out.

PostgreSQL, Kafka, the four services (OUTBOX_RELAY=separate) and the outbox relays of the
three that publish run on free loopback ports in a state folder of their own. While clients
create and update incidents and configuration items, the harness kills one part at a time
(a service, a relay, the broker, PostgreSQL) and waits until the supervisor has it running again
and every service and relay answers /health/ready with 200. Afterwards it checks that every
acknowledged write exists exactly once, that the outboxes drained, that every event reached
Kafka and the reporting ledger, and that each aggregate's versions are gap-free and in order.

At cluster shape (`--brokers 3 --replicas 2 --relays 2`) Kafka is a three-node KRaft cluster
(replication 3, min.insync.replicas 2), every service runs two replicas and every publishing
service two relays, each a supervised part of its own (`incident-2`, `incident-relay-2`,
`kafka-1`..`kafka-3`); the clients spread their writes over the replicas, a kill hits one
replica, relay or broker, and a broker is killed only once the cluster has every replica of
every partition in sync again (so two brokers are never down at once).

`python -m tests.faults.harness --kills 24` (`make chaos`) runs a long one and prints a report.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import signal
import socket
import statistics
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.db import create_pool, tenant_transaction
from shared.devstack.kafka import REPO_ROOT
from shared.devstack.kafka_cluster import LocalKafkaCluster
from shared.devstack.platform import Infra, LocalPlatform, SupervisedService
from shared.devstack.supervisor import Supervisor
from shared.events.catalogue import CONFIG_EVENTS, INCIDENT_EVENTS, REPORTING_EVENTS
from shared.http.etags import etag
from shared.http.idempotency import REPLAYED_HEADER
from shared.registry import PUBLISHING_SERVICES, SERVICE_NAMES
from shared.settings import RELAY_PORT_OFFSET

KINDS = ("service", "relay", "broker", "postgres")
# The topics whose events the ledger records in this run: the load's (incident, config) and the
# ledger's own (its keys, configuration and checkpoints, published by the reporting relay).
KAFKA_TOPICS = (INCIDENT_EVENTS, CONFIG_EVENTS, REPORTING_EVENTS)
# The parts a kill of each kind may hit (each replica of these, at cluster shape).
TARGETS = {
    "service": ("incident", "config", "reporting"),
    "relay": ("incident-relay", "config-relay"),
    "broker": ("kafka",),
    "postgres": ("postgres",),
}
# Where the aggregate version is read from each Kafka record: our CloudEvents extension
# `itsmversion` (header ce_itsmversion), or `sequence` for records written before it (finding 15).
VERSION_HEADERS = ("ce_itsmversion", "ce_sequence")
RETRYABLE = frozenset({429, 500, 502, 503, 504})


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


_EPHEMERAL = _ephemeral_range()
_PORTS = random.SystemRandom()
# Ports handed out in this process: the platform binds them only later, one part at a time.
_HANDED_OUT: set[int] = set()


def _listening_port() -> int:
    """A port below the system's ephemeral range: one picked by bind(0) lies inside it, and
    while a killed part is down any outgoing connection of the others' (this run makes
    thousands) may take its port, and the part cannot listen there again."""
    low = 10_000 if _EPHEMERAL[0] > 12_000 else 1024
    high = _EPHEMERAL[0] - 1 if _EPHEMERAL[0] > 12_000 else 65535 - RELAY_PORT_OFFSET - 8
    return _PORTS.randrange(low, high)


def _free_port_pair(width: int = 1) -> int:
    """A port p with p .. p + width - 1 and the same past RELAY_PORT_OFFSET all free (a
    service's replicas and its relays), and none handed out before."""
    for _ in range(500):
        port = _listening_port()
        wanted = [p + off for p in range(port, port + width) for off in (0, RELAY_PORT_OFFSET)]
        if max(wanted) >= _EPHEMERAL[0] or any(p in _HANDED_OUT for p in wanted):
            continue
        if all(_port_free(p) for p in wanted):
            _HANDED_OUT.update(wanted)
            return port
    raise RuntimeError("no free block of ports found")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_port() -> int:
    for _ in range(500):
        port = _listening_port()
        if port not in _HANDED_OUT and _port_free(port):
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("no free port found")


# --------------------------------------------------------------------------- results


@dataclass
class Kill:
    """One SIGKILL and how long the platform took to recover from it."""

    kind: str
    part: str
    pid: int
    at: float
    # The same moment on the wall clock (events carry wall-clock times).
    wall: float = 0.0
    # Seconds until the supervisor had the part running (ready) again.
    part_back: float | None = None
    # Seconds until every service and relay answered /health/ready with 200 again.
    all_ready: float | None = None
    # A cluster's broker: seconds until every partition had all its replicas in sync again.
    in_sync: float | None = None
    # What the parts that were still not ready at the limit said.
    not_ready: dict[str, str] = field(default_factory=dict)


@dataclass
class Ack:
    """An acknowledged aggregate: its unique name, id and the version the client last saw."""

    kind: str  # "incident" | "ci"
    name: str
    id: str
    version: int
    key: str


@dataclass
class LoadStats:
    """What the clients did."""

    creates: int = 0
    updates: int = 0
    retries: int = 0
    gave_up: int = 0
    replayed: int = 0
    conflicts_resolved: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    # Acknowledged creates and updates by the replica that answered (its base URL's name).
    by_replica: Counter[str] = field(default_factory=Counter)


@dataclass
class Verdict:
    """Everything checked after the run; every list/dict empty means it held."""

    duplicated: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    outbox_left: dict[str, int] = field(default_factory=dict)
    kafka_wrong: dict[str, list[int]] = field(default_factory=dict)
    ledger_wrong: dict[str, list[int]] = field(default_factory=dict)
    ledger_not_on_kafka: list[str] = field(default_factory=list)
    kafka_not_in_ledger: list[str] = field(default_factory=list)
    unrecovered: list[str] = field(default_factory=list)
    # Counts for the report.
    aggregates: int = 0
    events_on_kafka: int = 0
    republished: int = 0
    ledger_rows: int = 0
    publish_delays: list[float] = field(default_factory=list)
    # When each of those events was written (epoch seconds), in the same order.
    written_at: list[float] = field(default_factory=list)


@dataclass
class Report:
    """A whole run."""

    seed: int
    kills: list[Kill]
    load: LoadStats
    verdict: Verdict
    acks: list[Ack]
    restarts: dict[str, int]
    unplanned_exits: list[str]
    seconds: float
    shape: str = "1 broker, 1 replica per service, 1 relay per publishing service"

    def text(self) -> str:
        """The human-readable report `make chaos` prints."""
        v = self.verdict
        lines = [
            f"fault run: seed {self.seed}, {len(self.kills)} kills, {self.seconds:.0f}s",
            f"shape: {self.shape}",
            "kills (part, pid, part running again, all ready again[, partitions in sync again]):",
        ]
        for k in self.kills:
            lines.append(
                f"  {k.kind:<8} {k.part:<18} pid {k.pid:<7} back {_s(k.part_back)}"
                f"  all ready {_s(k.all_ready)}"
                + (f"  in sync {_s(k.in_sync)}" if k.kind == "broker" and k.in_sync else "")
            )
        by_kind: dict[str, list[float]] = defaultdict(list)
        for k in self.kills:
            if k.all_ready is not None:
                by_kind[k.kind].append(k.all_ready)
        lines.append("recovery (kill -> every service and relay ready), per kind of part:")
        for kind in KINDS:
            times = by_kind.get(kind)
            if times:
                lines.append(
                    f"  {kind:<8} n={len(times):<3} mean {statistics.mean(times):5.1f}s"
                    f"  max {max(times):5.1f}s"
                )
        in_sync = [k.in_sync for k in self.kills if k.in_sync is not None]
        if in_sync:
            lines.append(
                f"  broker kill -> every partition's replicas in sync: mean "
                f"{statistics.mean(in_sync):5.1f}s  max {max(in_sync):5.1f}s"
            )
        lines.append(f"restarts by the supervisor: {dict(sorted(self.restarts.items()))}")
        if self.unplanned_exits:
            lines.append(f"exits nobody caused: {self.unplanned_exits}")
        load = self.load
        lines.append(
            f"load: {load.creates} creates, {load.updates} updates acknowledged; "
            f"{load.retries} retries, {load.replayed} idempotent replays, "
            f"{load.conflicts_resolved} updates confirmed by re-reading, {load.gave_up} gave up; "
            f"answers {dict(sorted(load.statuses.items()))}"
        )
        if len(load.by_replica) > 2:
            per_replica = dict(sorted(load.by_replica.items()))
            lines.append(f"acknowledged writes per replica: {per_replica}")
        lines.append(
            f"events: {v.aggregates} aggregates, {v.events_on_kafka} distinct events on Kafka "
            f"({v.republished} re-published duplicates), {v.ledger_rows} ledger rows"
        )
        if v.publish_delays:
            delays = sorted(v.publish_delays)
            lines.append(
                f"publish delay (event time -> Kafka record time): p50 {_pct(delays, 50):.3f}s"
                f"  p99 {_pct(delays, 99):.3f}s  max {delays[-1]:.3f}s"
            )
            for kind, during in self.delays_during_outages().items():
                during.sort()
                lines.append(
                    f"  the {len(during)} written while a {kind} was down or recovering:"
                    f" p50 {_pct(during, 50):.3f}s  p99 {_pct(during, 99):.3f}s"
                    f"  max {during[-1]:.3f}s"
                )
        problems = failures(self)
        lines.append("verdict: " + ("all checks held" if not problems else "FAILED"))
        lines.extend(f"  {p}" for p in problems)
        return "\n".join(lines)

    def delays_during_outages(self) -> dict[str, list[float]]:
        """Publish delays of the events written while a part of each kind was down (from its
        kill until every part was ready again, or its partitions in sync for a broker)."""
        found: dict[str, list[float]] = defaultdict(list)
        v = self.verdict
        for kill in self.kills:
            recovered = kill.in_sync if kill.in_sync is not None else kill.all_ready
            if recovered is None:
                continue
            start, end = kill.wall, kill.wall + recovered
            found[kill.kind] += [
                delay
                for written, delay in zip(v.written_at, v.publish_delays, strict=True)
                if start <= written <= end
            ]
        return {kind: delays for kind, delays in found.items() if delays}


def _s(value: float | None) -> str:
    return "never" if value is None else f"{value:5.1f}s"


def _pct(ordered: Sequence[float], p: float) -> float:
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def failures(report: Report) -> list[str]:
    """Each check that did not hold, in words."""
    v = report.verdict
    found = []
    for label, value in (
        ("acknowledged writes stored more than once", v.duplicated),
        ("acknowledged writes not stored", v.missing),
        ("acknowledged updates not in the database", v.stale),
        ("outbox rows left", v.outbox_left),
        ("aggregates whose versions on Kafka are not 1..n in order", v.kafka_wrong),
        ("aggregates whose versions in the ledger are not 1..n in order", v.ledger_wrong),
        ("ledger events that are not on Kafka", v.ledger_not_on_kafka),
        ("events on Kafka missing from the ledger", v.kafka_not_in_ledger),
        ("parts that did not recover", v.unrecovered),
    ):
        if value:
            found.append(f"{label}: {_short(value)}")
    return found


def assert_nothing_lost_or_doubled(report: Report) -> None:
    """The fault tier's invariants, as test assertions that print the report when one fails:
    every part recovered, the load was real, every acknowledged write is stored once, the
    outboxes drained, and every committed event is on Kafka and in the ledger once, in order."""
    verdict = report.verdict
    assert not verdict.unrecovered, report.text()
    assert all(k.all_ready is not None for k in report.kills), report.text()
    assert report.load.creates >= 20 and report.load.updates >= 5, report.text()
    assert not verdict.duplicated and not verdict.missing and not verdict.stale, report.text()
    assert not verdict.outbox_left, report.text()
    assert not verdict.kafka_wrong, report.text()
    assert not verdict.ledger_wrong and not verdict.ledger_not_on_kafka, report.text()
    assert not verdict.kafka_not_in_ledger, report.text()
    assert verdict.events_on_kafka >= report.load.creates + report.load.updates, report.text()
    assert failures(report) == []


def _short(value: object, limit: int = 600) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + " ..."


# --------------------------------------------------------------------------- the platform


class FaultPlatform:
    """The platform as supervised processes on free ports, in a state folder of its own:
    `brokers` Kafka nodes (1, or a cluster of 3+), `replicas` processes of every service and
    `relays` relays of every publishing service."""

    def __init__(self, state_dir: Path, brokers: int = 1, replicas: int = 1, relays: int = 1):
        self.state_dir = state_dir.resolve()
        self.replicas = replicas
        self.relays = relays
        # Servers named by the environment cannot be killed: this platform starts its own.
        environ = {
            k: v
            for k, v in os.environ.items()
            if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL")
        }
        self.platform = LocalPlatform(
            self.state_dir,
            kafka_port=_free_port(),
            kafka_controller_port=_free_port(),
            postgres_port=_free_port(),
            environ=environ,
            kafka_brokers=brokers,
            kafka_node_ports=[(_free_port(), _free_port()) for _ in range(brokers)]
            if brokers > 1
            else None,
        )
        self.reports: list[str] = []
        self.supervisor = Supervisor(report=self._report)
        self.infra: Infra | None = None
        self.services: list[SupervisedService] = []

    def _report(self, message: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {message}"
        self.reports.append(line)
        print(f"[supervisor] {line}", flush=True)

    def start(self) -> None:
        """Wipe what an earlier run left, then start every part and wait until all are ready."""
        if self.platform.postgres is not None:
            self.platform.postgres.destroy()
        if self.platform.kafka is not None:
            self.platform.kafka.stop()
        shutil.rmtree(self.state_dir, ignore_errors=True)
        width = max(self.replicas, self.relays)
        ports = {name: _free_port_pair(width) for name in SERVICE_NAMES}
        self.infra, self.services = self.platform.supervise(
            self.supervisor,
            ports,
            separate_relays=PUBLISHING_SERVICES,
            timeout=300.0,
            replicas=self.replicas,
            relays=self.relays,
        )

    @property
    def shape(self) -> str:
        """What runs, in words, for the report."""
        kafka = self.platform.kafka
        brokers = len(kafka.nodes) if isinstance(kafka, LocalKafkaCluster) else 1
        return (
            f"{brokers} broker{'s' if brokers > 1 else ''}, {self.replicas} "
            f"replica{'s' if self.replicas > 1 else ''} per service, {self.relays} "
            f"relay{'s' if self.relays > 1 else ''} per publishing service"
        )

    @property
    def is_cluster(self) -> bool:
        """Whether Kafka is a cluster of several nodes."""
        return isinstance(self.platform.kafka, LocalKafkaCluster)

    def targets(self, kind: str) -> list[str]:
        """The supervised parts a kill of this kind may hit: each replica of a service or relay
        that TARGETS names, each node of a Kafka cluster."""
        if kind == "broker" and self.is_cluster:
            return [n for n in self.supervisor.names if n.startswith("kafka-")]
        return [
            n
            for n in self.supervisor.names
            if any(n == base or _replica_of(n, base) for base in TARGETS[kind])
        ]

    def replica_urls(self, name: str) -> list[str]:
        """Base URLs of every replica of a service, first replica first."""
        return [s.url for s in self.services if s.name == name or _replica_of(s.name, name)]

    def stop(self) -> None:
        """Stop every part (the supervisor stops them in reverse order)."""
        self.supervisor.stop()

    def url(self, name: str) -> str:
        """Base URL of a service or relay."""
        return next(s.url for s in self.services if s.name == name)

    def log_tails(self, lines: int = 15) -> str:
        """The end of every service's and relay's log, for a failure message."""
        out = []
        for service in self.services:
            try:
                text = service.log_path.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                text = ["(no log)"]
            out.append(f"--- {service.name} ({service.log_path})\n" + "\n".join(text))
        return "\n".join(out)


def _replica_of(label: str, base: str) -> bool:
    """Whether a part's label names a further replica of `base` (`incident-2` of `incident`)."""
    head, _, number = label.rpartition("-")
    return head == base and number.isdigit()


@contextmanager
def running_platform(
    state_dir: Path, brokers: int = 1, replicas: int = 1, relays: int = 1
) -> Iterator[FaultPlatform]:
    """A started FaultPlatform, stopped on exit."""
    platform = FaultPlatform(state_dir, brokers, replicas, relays)
    try:
        platform.start()
        yield platform
    finally:
        platform.stop()


# --------------------------------------------------------------------------- the client


class GaveUp(Exception):
    """An operation that did not succeed before its deadline."""


class Client:
    """Creates and updates over HTTP and retries as a real client does: on connection errors,
    timeouts, 429 and 5xx, with the same Idempotency-Key, backing off up to a deadline."""

    def __init__(self, http: httpx.AsyncClient, token: str, stats: LoadStats, deadline: float):
        self.http = http
        self.headers = {"Authorization": f"Bearer {token}"}
        self.stats = stats
        self.deadline = deadline

    async def send(self, method: str, url: str, **kwargs: Any) -> tuple[httpx.Response, int]:
        """The first answer that is not worth retrying, and how many attempts it took."""
        headers = {**self.headers, **kwargs.pop("headers", {})}
        give_up_at = time.monotonic() + self.deadline
        delay = 0.1
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self.http.request(method, url, headers=headers, **kwargs)
                self.stats.statuses[str(response.status_code)] += 1
                if response.status_code not in RETRYABLE:
                    return response, attempt
                reason = str(response.status_code)
            except httpx.TransportError as exc:
                self.stats.statuses[type(exc).__name__] += 1
                reason = type(exc).__name__
            if time.monotonic() + delay > give_up_at:
                self.stats.gave_up += 1
                raise GaveUp(f"{method} {url}: last {reason} after {attempt} attempts")
            self.stats.retries += 1
            await asyncio.sleep(delay)  # backoff between retries, not a clock
            delay = min(2.0, delay * 2)

    async def create_incident(self, base: str, key: str) -> Ack:
        """POST /incidents with an Idempotency-Key, retried with the same key."""
        title = f"fault {key}"
        body = {"title": title, "impact": 2, "urgency": 2, "description": "v1"}
        response, _ = await self.send(
            "POST", f"{base}/incidents", json=body, headers={"Idempotency-Key": key}
        )
        if response.status_code != 201:
            raise AssertionError(
                f"POST /incidents answered {response.status_code}: {response.text}"
            )
        if response.headers.get(REPLAYED_HEADER) == "true":
            self.stats.replayed += 1
        created = response.json()
        self.stats.creates += 1
        return Ack("incident", title, created["id"], created["version"], key)

    async def create_ci(self, base: str, key: str) -> Ack:
        """POST /cis with an Idempotency-Key and an external id: a retry that finds the external
        id taken (409) looks the CI up by it, as a discovery client would."""
        name = f"fault-{key}"
        body = {
            "class": "server",
            "name": name,
            "criticality": 3,
            "attributes": {"hostname": name, "environment": "production"},
            "external_ids": {"faults": key},
        }
        response, attempts = await self.send(
            "POST", f"{base}/cis", json=body, headers={"Idempotency-Key": key}
        )
        if response.status_code == 409 and attempts > 1:
            found, _ = await self.send(
                "GET", f"{base}/cis", params={"external_id": f"faults:{key}"}
            )
            items = found.json()["items"] if found.status_code == 200 else []
            if len(items) != 1:
                raise AssertionError(f"CI {key}: 409 on retry, lookup found {found.text}")
            self.stats.conflicts_resolved += 1
            self.stats.creates += 1
            return Ack("ci", name, items[0]["id"], items[0]["version"], key)
        if response.status_code != 201:
            raise AssertionError(f"POST /cis answered {response.status_code}: {response.text}")
        if response.headers.get(REPLAYED_HEADER) == "true":
            self.stats.replayed += 1
        created = response.json()
        self.stats.creates += 1
        return Ack("ci", name, created["id"], created["version"], key)

    async def update(self, base: str, ack: Ack) -> None:
        """PATCH with If-Match; a 412 after a retry is resolved by reading the aggregate back:
        if it carries this update's marker at the next version, the first attempt went through."""
        marker = f"m-{uuid.uuid4().hex[:12]}"
        path, field_name = (
            (f"/incidents/{ack.id}", "description")
            if ack.kind == "incident"
            else (f"/cis/{ack.id}", "owner_team")
        )
        response, attempts = await self.send(
            "PATCH",
            f"{base}{path}",
            json={field_name: marker},
            headers={"If-Match": etag(ack.version)},
        )
        if response.status_code == 412 and attempts > 1:
            current, _ = await self.send("GET", f"{base}{path}")
            body = current.json()
            if current.status_code == 200 and body.get(field_name) == marker:
                self.stats.conflicts_resolved += 1
                response = current
            else:
                raise AssertionError(f"{path}: 412 on retry and not applied: {current.text}")
        if response.status_code != 200:
            raise AssertionError(f"PATCH {path} answered {response.status_code}: {response.text}")
        version = response.json()["version"]
        if version != ack.version + 1:
            raise AssertionError(f"{path}: version {ack.version} -> {version} for one update")
        ack.version = version
        self.stats.updates += 1


# --------------------------------------------------------------------------- the run


@dataclass
class Plan:
    """What to do: the kinds of part to kill in order, and the load's size."""

    kills: list[str]
    seed: int
    # The platform's shape: Kafka nodes, processes per service, relays per publishing service.
    brokers: int = 1
    replicas: int = 1
    relays: int = 1
    workers: int = 4
    # Each worker's mean pause between writes: about workers / pace writes a second, enough to
    # meet every outage without loading a small machine so much that recovery slows down.
    pace: float = 0.5
    # Each kill waits a random time from this range after the previous recovery.
    pause: tuple[float, float] = (1.0, 4.0)
    # Writes after the last recovery, so that load runs across every recovery.
    tail_writes: int = 20
    # A JVM restart alone took 50 s on a 2-core machine at load 23; the report shows the times.
    recovery_limit: float = 120.0
    settle_limit: float = 120.0


async def _not_ready(platform: FaultPlatform, http: httpx.AsyncClient) -> dict[str, str]:
    """Each part that is not running or whose /health/ready is not 200, and what it said."""
    found = {
        name: "not running"
        for name in platform.supervisor.names
        if not platform.supervisor.is_running(name)
    }
    for service in platform.services:
        if service.name in found:
            continue
        try:
            response = await http.get(f"{service.url}/health/ready", timeout=3.0)
        except httpx.TransportError as exc:
            found[service.name] = type(exc).__name__
            continue
        if response.status_code != 200:
            found[service.name] = f"{response.status_code} {response.text[:300]}"
    return found


async def _poll(
    condition: Callable[[], Awaitable[bool]], limit: float, interval: float = 0.25
) -> float | None:
    """Seconds until the condition held, or None if it did not within the limit."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if await condition():
            return time.monotonic() - start
        await asyncio.sleep(interval)
    return None


async def _out_of_sync(infra: Infra) -> list[str]:
    """Each partition (the platform's and Kafka's internal ones) with a replica out of sync."""
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.bootstrap_servers, request_timeout_ms=5000)
    try:
        await admin.start()
        topics = await admin.describe_topics()
    except Exception as exc:  # a cluster in the middle of an election: not in sync yet
        return [f"metadata: {exc!r}"]
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    return [
        f"{topic['topic']}[{p['partition']}] isr {sorted(p['isr'])} of {sorted(p['replicas'])}"
        for topic in topics
        for p in topic["partitions"]
        if p["error_code"] or set(p["isr"]) != set(p["replicas"])
    ]


async def _kill_and_recover(
    platform: FaultPlatform,
    http: httpx.AsyncClient,
    kind: str,
    rng: random.Random,
    limit: float,
    spare: Collection[str] = (),
) -> Kill:
    """Kill one part of the kind (not one of `spare` if another is left) and time its return."""
    targets = platform.targets(kind)
    part = rng.choice([t for t in targets if t not in spare] or targets)
    pid = platform.supervisor.pid(part)
    if pid is None:
        raise AssertionError(f"{part} is not running before its kill")
    events_before = len(platform.supervisor.events())
    at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    print(f"[faults] {time.strftime('%H:%M:%S')} kill -9 {part} (pid {pid})", flush=True)
    kill = Kill(kind, part, pid, at, wall=time.time())

    async def part_back() -> bool:
        fresh = [e for e in platform.supervisor.events()[events_before:] if e.part == part]
        return any(e.kind == "started" for e in fresh) and platform.supervisor.is_running(part)

    kill.part_back = await _poll(part_back, limit)
    if kill.part_back is not None:
        remaining = limit - kill.part_back

        async def ready() -> bool:
            kill.not_ready = await _not_ready(platform, http)
            return not kill.not_ready

        settled = await _poll(ready, max(remaining, 1.0))
        kill.all_ready = None if settled is None else kill.part_back + settled
    if kind == "broker" and platform.is_cluster and kill.all_ready is not None:
        # The next broker kill waits for this: with a partition's replicas not all in sync, a
        # second dead broker could leave it below min.insync.replicas, or leaderless.
        infra = platform.infra
        assert infra is not None
        lagging: list[str] = []

        async def in_sync() -> bool:
            nonlocal lagging
            lagging = await _out_of_sync(infra)
            return not lagging

        caught_up = await _poll(in_sync, limit, interval=0.5)
        kill.in_sync = None if caught_up is None else time.monotonic() - at
        if caught_up is None:
            kill.all_ready = None
            kill.not_ready = {"partitions out of sync": "; ".join(lagging[:5])}
    print(
        f"[faults] {part} back after {_s(kill.part_back)}, all ready after {_s(kill.all_ready)}"
        + (f", in sync after {_s(kill.in_sync)}" if kill.in_sync is not None else ""),
        flush=True,
    )
    return kill


async def _drive(
    platform: FaultPlatform, plan: Plan, token: str
) -> tuple[list[Kill], LoadStats, list[Ack]]:
    rng = random.Random(plan.seed)
    stats = LoadStats()
    acks: list[Ack] = []
    busy: set[str] = set()
    kills: list[Kill] = []
    faults_done = asyncio.Event()
    writes_after = 0
    # Every replica of each service; the clients take turns, as a load balancer would.
    urls = {"incident": platform.replica_urls("incident"), "ci": platform.replica_urls("config")}
    turns = Counter[str]()

    def pick(kind: str) -> str:
        turns[kind] += 1
        return urls[kind][turns[kind] % len(urls[kind])]

    replica_names = {s.url: s.name for s in platform.services}

    async with httpx.AsyncClient(timeout=10.0) as http:
        client = Client(http, token, stats, deadline=plan.recovery_limit + 60.0)

        async def worker(index: int) -> None:
            nonlocal writes_after
            wrng = random.Random(plan.seed * 1000 + index)
            while not (faults_done.is_set() and writes_after >= plan.tail_writes):
                roll = wrng.random()
                free = [a for a in acks if a.id not in busy]
                try:
                    if roll < 0.4 or not free:
                        kind = "incident" if wrng.random() < 0.5 else "ci"
                        key = str(uuid.UUID(int=wrng.getrandbits(128)))
                        base = pick(kind)
                        if kind == "incident":
                            ack = await client.create_incident(base, key)
                        else:
                            ack = await client.create_ci(base, key)
                        acks.append(ack)
                        stats.by_replica[replica_names[base]] += 1
                    else:
                        ack = wrng.choice(free)
                        busy.add(ack.id)
                        base = pick(ack.kind)
                        await client.update(base, ack)
                        stats.by_replica[replica_names[base]] += 1
                        # One that gave up stays busy: whether it applied is unknown, so its
                        # version is, and it is not updated again (the verdict reads the DB).
                        busy.discard(ack.id)
                except GaveUp as exc:
                    print(f"[faults] client gave up: {exc}", flush=True)
                if faults_done.is_set():
                    writes_after += 1
                # Load shaping (a paced client), not a clock: a random pause between writes.
                await asyncio.sleep(wrng.uniform(0, 2 * plan.pace))

        async def faults() -> None:
            try:
                for kind in plan.kills:
                    # The fault schedule: a seeded random pause, then the next kill.
                    await asyncio.sleep(rng.uniform(*plan.pause))
                    # A broker kill hits another node than the last one did.
                    spare = [k.part for k in kills if k.kind == kind][-1:]
                    kill = await _kill_and_recover(
                        platform, http, kind, rng, plan.recovery_limit, spare
                    )
                    kills.append(kill)
                    if kill.all_ready is None:
                        break  # the platform did not recover: the verdict says so
            finally:
                faults_done.set()

        workers = [asyncio.create_task(worker(i)) for i in range(plan.workers)]
        await faults()
        # Bounded: the workers stop after tail_writes more writes, each within its deadline.
        await asyncio.gather(*workers)
    return kills, stats, acks


def _version(headers: Sequence[tuple[str, bytes]]) -> int:
    values = dict(headers)
    for name in VERSION_HEADERS:
        if name in values:
            return int(values[name].decode())
    raise AssertionError(f"no aggregate version among {sorted(values)}")


def _in_order(versions: list[int], expected: int) -> bool:
    return versions == list(range(1, expected + 1))


async def _verify(platform: FaultPlatform, tenant: str, acks: list[Ack], limit: float) -> Verdict:
    infra = platform.infra
    assert infra is not None
    verdict = Verdict()
    pools = {
        name: await create_pool(
            infra.service_dsns[name], schema=name, application_name="faults", min_size=1, max_size=2
        )
        for name in ("incident", "config", "reporting")
    }
    try:
        return await _verify_with(pools, infra, tenant, acks, limit, verdict)
    finally:
        for pool in pools.values():
            await pool.close()


async def _fetch(pool: asyncpg.Pool, tenant: str, query: str) -> list[Any]:
    async with tenant_transaction(pool, tenant, readonly=True) as conn:
        return list(await conn.fetch(query))


async def _verify_with(
    pools: dict[str, asyncpg.Pool],
    infra: Infra,
    tenant: str,
    acks: list[Ack],
    limit: float,
    verdict: Verdict,
) -> Verdict:
    # 1. Every acknowledged write exists exactly once, at least at the version acknowledged.
    stored: dict[str, dict[str, list[tuple[str, int]]]] = {"incident": {}, "ci": {}}
    for kind, pool, query in (
        ("incident", pools["incident"], "SELECT title AS name, id, version FROM incidents"),
        ("ci", pools["config"], "SELECT name, id, version FROM cis"),
    ):
        for row in await _fetch(pool, tenant, query):
            stored[kind].setdefault(row["name"], []).append((str(row["id"]), row["version"]))
    for kind in stored:
        verdict.duplicated += [n for n, rows in stored[kind].items() if len(rows) > 1]
    for ack in acks:
        rows = stored[ack.kind].get(ack.name, [])
        if not rows:
            verdict.missing.append(f"{ack.kind} {ack.name}")
        elif rows[0][0] != ack.id or rows[0][1] < ack.version:
            verdict.stale.append(f"{ack.kind} {ack.id}: acknowledged v{ack.version}, {rows}")
    # Every aggregate in the database, acknowledged or not: its events must all flow.
    expected = {
        (topic, rows[0][0]): rows[0][1]
        for kind, topic in (("incident", INCIDENT_EVENTS), ("ci", CONFIG_EVENTS))
        for rows in stored[kind].values()
    }
    verdict.aggregates = len(expected)

    # 2. The outboxes drain.
    async def outboxes_empty() -> bool:
        verdict.outbox_left = {}
        for name in ("incident", "config", "reporting"):
            count = (await _fetch(pools[name], tenant, "SELECT count(*) AS n FROM outbox"))[0]["n"]
            if count:
                verdict.outbox_left[name] = count
        return not verdict.outbox_left

    await _poll(outboxes_empty, limit, interval=0.5)

    # 3. Every event is on Kafka, each aggregate's versions 1..n in order (re-published
    # duplicates, which at-least-once delivery allows, are counted and skipped).
    consumer = AIOKafkaConsumer(bootstrap_servers=infra.bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    seen: dict[tuple[str, str], list[int]] = defaultdict(list)
    event_ids: set[str] = set()
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in KAFKA_TOPICS
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = [
                TopicPartition(topic, p)
                for topic in KAFKA_TOPICS
                for p in sorted(consumer.partitions_for_topic(topic) or ())
            ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)

        def complete() -> bool:
            return all(_in_order(seen.get(k, []), v) for k, v in expected.items())

        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for tp, records in batch.items():
                for record in records:
                    values = dict(record.headers)
                    if values.get("ce_tenantid", b"").decode() != tenant:
                        continue
                    event_id = values["ce_id"].decode()
                    if event_id in event_ids:
                        verdict.republished += 1
                        continue
                    event_ids.add(event_id)
                    if tp.topic == REPORTING_EVENTS:
                        continue  # the ledger's own events: on Kafka is all that is checked
                    subject = values["ce_subject"].decode()
                    seen[(tp.topic, subject)].append(_version(record.headers))
                    written = datetime.fromisoformat(values["ce_time"].decode())
                    verdict.publish_delays.append(record.timestamp / 1000 - written.timestamp())
                    verdict.written_at.append(written.timestamp())
            positions = [await consumer.position(tp) for tp in ends]
            caught_up = all(pos >= end for pos, end in zip(positions, ends.values(), strict=True))
            if caught_up and complete():
                break
            if caught_up:
                ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    verdict.events_on_kafka = len(event_ids)
    verdict.kafka_wrong = {
        f"{topic} {subject} (db v{v})": seen.get((topic, subject), [])
        for (topic, subject), v in expected.items()
        if not _in_order(seen.get((topic, subject), []), v)
    }

    # 4. The ledger holds every event exactly once (event_id is unique there), each aggregate's
    # versions 1..n in the order it recorded them, and nothing Kafka does not carry.
    ledger_query = "SELECT event_id, topic, subject, version FROM ledger ORDER BY position"

    async def ledger_complete() -> bool:
        rows = await _fetch(pools["reporting"], tenant, ledger_query)
        recorded: dict[tuple[str, str], list[int]] = defaultdict(list)
        for row in rows:
            recorded[(row["topic"], row["subject"])].append(row["version"])
        verdict.ledger_rows = len(rows)
        in_ledger = {str(r["event_id"]) for r in rows}
        verdict.ledger_not_on_kafka = sorted(in_ledger - event_ids)
        verdict.kafka_not_in_ledger = sorted(event_ids - in_ledger)
        verdict.ledger_wrong = {
            f"{topic} {subject} (db v{v})": recorded.get((topic, subject), [])
            for (topic, subject), v in expected.items()
            if not _in_order(recorded.get((topic, subject), []), v)
        }
        return not verdict.ledger_wrong and not verdict.kafka_not_in_ledger

    await _poll(ledger_complete, limit, interval=0.5)
    return verdict


def run_faults(state_dir: Path, plan: Plan) -> Report:
    """Start the platform, drive load while killing parts as planned, stop, and judge."""
    began = time.monotonic()
    print(f"[faults] seed {plan.seed}; kills planned: {', '.join(plan.kills)}", flush=True)
    with running_platform(state_dir, plan.brokers, plan.replicas, plan.relays) as platform:
        infra = platform.infra
        assert infra is not None
        tenant = f"faults-{uuid.UUID(int=random.Random(plan.seed).getrandbits(128)).hex[:10]}"
        token = infra.keys.issuer().mint(
            subject="fault-client",
            tenants=[tenant],
            roles=["agent", "config_manager"],
            ttl_seconds=3600,
        )
        kills, stats, acks = asyncio.run(_drive(platform, plan, token))
        # A platform that did not recover will not drain either: judge it without the wait.
        recovered = all(k.all_ready is not None for k in kills)
        settle = plan.settle_limit if recovered else 15.0
        verdict = asyncio.run(_verify(platform, tenant, acks, settle))
        for kill in kills:
            if kill.all_ready is None:
                verdict.unrecovered.append(
                    f"{kill.part} (killed pid {kill.pid}): part back {_s(kill.part_back)}, "
                    f"not all ready within {plan.recovery_limit:.0f}s: {kill.not_ready}"
                )
        killed = Counter(k.part for k in kills)
        restarts = {n: platform.supervisor.restarts(n) for n in platform.supervisor.names}
        exits = Counter(e.part for e in platform.supervisor.events() if e.kind == "exited")
        unplanned = [
            f"{part} x{count - killed[part]}"
            for part, count in sorted(exits.items())
            if count > killed[part]
        ]
        report = Report(
            seed=plan.seed,
            kills=kills,
            load=stats,
            verdict=verdict,
            acks=acks,
            restarts={k: v for k, v in restarts.items() if v},
            unplanned_exits=unplanned,
            seconds=time.monotonic() - began,
            shape=platform.shape,
        )
        if failures(report):
            print(platform.log_tails(), flush=True)
            print("\n".join(platform.reports), flush=True)
    return report


def schedule(count: int, rng: random.Random, kinds: Sequence[str] = KINDS) -> list[str]:
    """`count` kills covering every kind of part named, in a random order."""
    kinds = list(kinds) * (count // len(kinds)) + list(kinds)[: count % len(kinds)]
    rng.shuffle(kinds)
    return kinds


def main(argv: Sequence[str] | None = None) -> int:
    """`make chaos`: a long fault run and its report; non-zero exit if any check failed."""
    parser = argparse.ArgumentParser(prog="python -m tests.faults.harness")
    parser.add_argument("--kills", type=int, default=24)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--kinds", nargs="+", choices=KINDS, default=list(KINDS), help="kinds of part to kill"
    )
    parser.add_argument(
        "--brokers", type=int, default=1, help="Kafka nodes: 1, or a KRaft cluster of 3 or more"
    )
    parser.add_argument("--replicas", type=int, default=1, help="processes per service")
    parser.add_argument("--relays", type=int, default=1, help="relays per publishing service")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="default: $ITSM_TEST_STATE/chaos (chaos-cluster with --brokers > 1)",
    )
    args = parser.parse_args(argv)
    if args.brokers == 2:
        parser.error("--brokers: 1, or 3 or more (a quorum that survives a dead node)")
    state_dir = args.state_dir or (
        Path(os.environ.get("ITSM_TEST_STATE") or REPO_ROOT / ".state" / "test")
        / ("chaos-cluster" if args.brokers > 1 else "chaos")
    )
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    kills = schedule(args.kills, random.Random(seed), args.kinds)
    plan = Plan(
        kills=kills,
        seed=seed,
        tail_writes=40,
        brokers=args.brokers,
        replicas=args.replicas,
        relays=args.relays,
    )
    report = run_faults(state_dir, plan)
    print("\n" + report.text(), flush=True)
    return 1 if failures(report) else 0


if __name__ == "__main__":
    sys.exit(main())
