"""Benchmark: discovery import and impact analysis on a generated estate, beside raw asyncpg COPY.

`make bench-cmdb` (or `python -m tests.benchmarks.cmdb --cis 100000 --relationships 300000`).
Generates one tenant's estate (business services, applications, databases, VMs, servers,
storage, network devices, locations, in layers), then prints:
- import throughput (rows/s) through the config service's HTTP API (`POST /imports`, streamed by
  the CLI's uploader, one service process and its outbox relay in a process of its own, as
  deployed), beside raw asyncpg `copy_records_to_table` of the same rows into plain tables in
  the same run: the floor of what PostgreSQL takes; and how long after each import the relay
  had every event of it in Kafka (the import's clock stops at its response);
- re-import of the same CIs (every row unchanged, nothing written);
- impact analysis p50/p99 over HTTP (`GET /cis/{id}/impact`, upward) from leaf CIs at depth 5
  and 10, with the mean beside the service's own query-duration histogram (the database's
  share) and the size of the largest answer: p99 is set by the few leaves whose answers run
  to thousands of paths.
Beside each import, the CPU seconds the service, the relay and PostgreSQL spent on it (Linux):
on a machine shared with other work these move less than the wall clock.
Nothing is asserted: read medians and ratios, these machines are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from prometheus_client.parser import text_string_to_metric_families

from services.config.cli import upload
from shared.devstack.kafka import REPO_ROOT
from shared.devstack.platform import Infra, LocalPlatform
from tests.benchmarks.pipeline import percentile

# Share of the estate per class, bottom of the stack first; relationships per CI of the class.
LAYERS: list[tuple[str, float]] = [
    ("location", 0.001),
    ("network_device", 0.02),
    ("storage", 0.024),
    ("server", 0.15),
    ("virtual_machine", 0.6),
    ("database", 0.1),
    ("application", 0.1),
    ("business_service", 0.005),
]


def attributes(ci_class: str, i: int) -> dict[str, Any]:
    """Attributes that satisfy the built-in class schemas."""
    host = f"h{i}"
    by_class: dict[str, dict[str, Any]] = {
        "location": {"site_code": f"DC-{i}", "country": "DE", "kind": "data_center"},
        "network_device": {
            "vendor": "acme",
            "management_ip": f"10.1.{i // 250}.{i % 250 + 1}",
            "role": "switch",
        },
        "storage": {"storage_type": "block", "capacity_gib": 2048},
        "server": {"hostname": host, "environment": "production", "cpu_cores": 32},
        "virtual_machine": {"hostname": host, "environment": "production", "vcpus": 4},
        "database": {"engine": "postgresql", "port": 5432},
        "application": {"environment": "production"},
        "business_service": {"owner": "owner", "customer": "customer", "availability_target": 99.9},
    }
    return by_class[ci_class]


class Estate:
    """A layered estate: each CI depends on CIs of the layers below it."""

    def __init__(self, cis: int, relationships: int, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.by_class: dict[str, list[str]] = {}
        counter = 0
        for ci_class, share in LAYERS:
            n = max(1, round(cis * share))
            self.by_class[ci_class] = [f"{ci_class[:3]}-{counter + k}" for k in range(n)]
            counter += n
        self.total = counter
        self.relationship_target = relationships

    def ci_rows(self) -> Iterator[dict[str, Any]]:
        """One row per CI."""
        for ci_class, ids in self.by_class.items():
            for k, external_id in enumerate(ids):
                yield {
                    "external_id": external_id,
                    "class": ci_class,
                    "name": external_id,
                    "criticality": 1 + k % 4,
                    "attributes": attributes(ci_class, k),
                }

    def relationship_rows(self) -> Iterator[dict[str, Any]]:
        """Layered relationships, bottom up, until the target count (no duplicates)."""
        c = self.by_class
        # (type, dependents, dependencies, per dependent): `a <type> b`, a depends on b.
        plan = [
            ("hosted_on", "server", "location", 1),
            ("connects_to", "server", "network_device", 2),
            ("hosted_on", "virtual_machine", "server", 1),
            ("depends_on", "virtual_machine", "storage", 1),
            ("connects_to", "virtual_machine", "network_device", 1),
            ("runs_on", "database", "virtual_machine", 2),
            ("runs_on", "application", "virtual_machine", 3),
            ("depends_on", "application", "database", 1),
            ("depends_on", "application", "application", 1),
        ]
        made: set[tuple[str, str, str]] = set()
        emitted = 0
        budget = self.relationship_target - len(c["application"])  # `provides` come last
        while emitted < budget:
            progressed = False
            for type_, upper, lower, per in plan:
                for source in c[upper]:
                    for _ in range(per):
                        target = self.rng.choice(c[lower])
                        key = (type_, source, target)
                        if target == source or key in made:
                            continue
                        made.add(key)
                        yield {
                            "kind": "relationship",
                            "type": type_,
                            "source": source,
                            "target": target,
                        }
                        emitted += 1
                        progressed = True
                        if emitted >= budget:
                            break
                    if emitted >= budget:
                        break
                if emitted >= budget:
                    break
            if not progressed:
                break
        # Every application provides one business service: the top of the stack.
        for source in c["application"]:
            target = self.rng.choice(c["business_service"])
            yield {"kind": "relationship", "type": "provides", "source": source, "target": target}

    def leaves(self) -> list[str]:
        """CIs that depend on nothing: where upward impact analysis starts."""
        return [
            *self.by_class["location"],
            *self.by_class["network_device"],
            *self.by_class["storage"],
        ]


def write_jsonl(path: Path, rows: Iterator[dict[str, Any]]) -> int:
    count = 0
    with path.open("w") as handle:
        for row in rows:
            handle.write(json.dumps(row, separators=(",", ":")) + "\n")
            count += 1
    return count


# --- raw asyncpg COPY of the same rows ----------------------------------------------------


async def raw_copy(admin_dsn: str, cis_file: Path, rels_file: Path) -> tuple[float, int]:
    """COPY the same rows into plain tables (no validation, history, events): (seconds, rows)."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(
            "DROP SCHEMA IF EXISTS bench_raw CASCADE; CREATE SCHEMA bench_raw;"
            " CREATE TABLE bench_raw.cis (id uuid PRIMARY KEY, external_id text UNIQUE,"
            " class text, name text, criticality smallint, attributes jsonb);"
            " CREATE TABLE bench_raw.relationships (id uuid PRIMARY KEY, type text,"
            " source text, target text)"
        )
        started = time.perf_counter()
        rows = 0
        for path, table, columns in (
            (cis_file, "cis", ["id", "external_id", "class", "name", "criticality", "attributes"]),
            (rels_file, "relationships", ["id", "type", "source", "target"]),
        ):
            batch: list[tuple[Any, ...]] = []
            with path.open() as handle:
                for line in handle:
                    r = json.loads(line)
                    if table == "cis":
                        batch.append(
                            (
                                uuid.uuid4(),
                                r["external_id"],
                                r["class"],
                                r["name"],
                                r["criticality"],
                                json.dumps(r["attributes"]),
                            )
                        )
                    else:
                        batch.append((uuid.uuid4(), r["type"], r["source"], r["target"]))
                    if len(batch) == 1000:
                        await conn.copy_records_to_table(
                            table, records=batch, columns=columns, schema_name="bench_raw"
                        )
                        rows += len(batch)
                        batch = []
            if batch:
                await conn.copy_records_to_table(
                    table, records=batch, columns=columns, schema_name="bench_raw"
                )
                rows += len(batch)
        return time.perf_counter() - started, rows
    finally:
        await conn.execute("DROP SCHEMA IF EXISTS bench_raw CASCADE")
        await conn.close()


# --- the service ------------------------------------------------------------------------------

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds a process has used so far (0 where /proc is missing)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (PostgreSQL's backends, for its postmaster)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


@dataclass(frozen=True)
class Processes:
    """Whose CPU time the benchmark reports: the service, its outbox relay, PostgreSQL."""

    service: int | None
    relay: int | None
    postmaster: int | None

    def sample(self) -> tuple[float, float, float]:
        """CPU seconds so far: (service, relay, PostgreSQL with every backend alive now)."""
        service = cpu_seconds(self.service) if self.service else 0.0
        relay = cpu_seconds(self.relay) if self.relay else 0.0
        database = 0.0
        if self.postmaster:
            database = sum(cpu_seconds(p) for p in [self.postmaster, *children(self.postmaster)])
        return service, relay, database


@dataclass(frozen=True)
class Timed:
    """One import: wall seconds, its report, and the CPU seconds it cost."""

    seconds: float
    report: dict[str, Any]
    service_cpu: float
    relay_cpu: float
    database_cpu: float

    def cpu(self) -> str:
        return (
            f"CPU: service {self.service_cpu:6.1f} s, relay {self.relay_cpu:6.1f} s,"
            f" PostgreSQL {self.database_cpu:6.1f} s"
        )


async def timed_import(
    url: str, token: str, path: Path, source: str, processes: Processes
) -> Timed:
    before = processes.sample()
    started = time.perf_counter()
    status, body = await upload(url, token, path, source=source, format_="jsonl")
    if status != 201:
        raise RuntimeError(f"import failed: {status} {body}")
    seconds = time.perf_counter() - started
    after = processes.sample()
    return Timed(seconds, body, *(b - a for a, b in zip(before, after, strict=True)))


async def outbox_drained(infra: Infra, limit: float = 300.0) -> float:
    """Seconds until the config service's outbox is empty: every event the import wrote is in
    Kafka (the relay publishes after the commit; an import returns when all is committed)."""
    conn = await asyncpg.connect(infra.service_dsns["config"])
    started = time.perf_counter()
    try:
        while time.perf_counter() - started < limit:
            async with conn.transaction():
                await conn.execute("SELECT set_config('itsm.all_tenants', 'on', true)")
                left = await conn.fetchval("SELECT count(*) FROM config.outbox")
            if not left:
                break
            await asyncio.sleep(0.1)
        return time.perf_counter() - started
    finally:
        await conn.close()


async def impact_latencies(
    url: str, token: str, ids: list[str], depth: int
) -> tuple[list[float], int, int]:
    """Sequential upward impact queries: (seconds each, truncated answers, largest answer bytes)."""
    times: list[float] = []
    truncated = largest = 0
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        headers = {"Authorization": f"Bearer {token}"}
        for ci_id in ids:
            started = time.perf_counter()
            response = await client.get(
                f"/cis/{ci_id}/impact",
                params={"direction": "upward", "depth": depth},
                headers=headers,
            )
            times.append(time.perf_counter() - started)
            response.raise_for_status()
            truncated += bool(response.json().get("truncated"))
            largest = max(largest, len(response.content))
    return times, truncated, largest


async def impact_histogram(url: str) -> tuple[float, float]:
    """(sum, count) of the service's own upward impact query duration histogram."""
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        text = (await client.get("/metrics")).text
    found = {"sum": 0.0, "count": 0.0}
    for family in text_string_to_metric_families(text):
        if family.name != "itsm_config_impact_query_duration_seconds":
            continue
        for sample in family.samples:
            kind = sample.name.rsplit("_", 1)[-1]
            if kind in found and sample.labels.get("direction") == "upward":
                found[kind] = sample.value
    return found["sum"], found["count"]


async def ci_ids_for(infra: Infra, tenant: str, external_ids: list[str]) -> list[str]:
    conn = await asyncpg.connect(infra.service_dsns["config"])
    try:
        async with conn.transaction():
            await conn.execute("SELECT set_config('itsm.tenant_id', $1, true)", tenant)
            rows = await conn.fetch(
                "SELECT ci_id FROM config.ci_external_ids WHERE source = 'bench'"
                " AND external_id = ANY($1::text[])",
                external_ids,
            )
        return [str(r["ci_id"]) for r in rows]
    finally:
        await conn.close()


def ms(values: list[float]) -> str:
    return (
        f"p50 {percentile(values, 50) * 1000:7.1f} ms  p99 {percentile(values, 99) * 1000:7.1f} ms"
    )


async def measure(
    infra: Infra, url: str, args: argparse.Namespace, work: Path, processes: Processes
) -> None:
    tenant = f"t-bench-{uuid.uuid4().hex[:8]}"
    token = infra.keys.issuer().mint(
        subject="bench", tenants=[tenant], roles=["config_manager"], ttl_seconds=4 * 3600
    )
    estate = Estate(args.cis, args.relationships)
    cis_file, rels_file = work / "cis.jsonl", work / "relationships.jsonl"
    n_cis = write_jsonl(cis_file, estate.ci_rows())
    n_rels = write_jsonl(rels_file, estate.relationship_rows())
    print(f"estate: {n_cis:,} CIs, {n_rels:,} relationships in one tenant")

    raw_seconds, raw_rows = await raw_copy(infra.admin_dsn, cis_file, rels_file)
    print(
        f"raw asyncpg COPY      {raw_rows:>9,} rows in {raw_seconds:7.1f} s"
        f"  {raw_rows / raw_seconds:>9,.0f} rows/s"
    )

    cis = await timed_import(url, token, cis_file, "bench", processes)
    cis_lag = await outbox_drained(infra)
    rels = await timed_import(url, token, rels_file, "bench", processes)
    rels_lag = await outbox_drained(infra)
    total = cis.report["rows"] + rels.report["rows"]
    seconds = cis.seconds + rels.seconds
    print(
        f"service import CIs    {cis.report['rows']:>9,} rows in {cis.seconds:7.1f} s"
        f"  {cis.report['rows'] / cis.seconds:>9,.0f} rows/s  {cis.report['outcomes']}"
    )
    print(f"{'':22}{cis.cpu()}; every event in Kafka {cis_lag:.1f} s after the import")
    print(
        f"service import rels   {rels.report['rows']:>9,} rows in {rels.seconds:7.1f} s"
        f"  {rels.report['rows'] / rels.seconds:>9,.0f} rows/s  {rels.report['outcomes']}"
    )
    print(f"{'':22}{rels.cpu()}; every event in Kafka {rels_lag:.1f} s after the import")
    print(
        f"service import total  {total:>9,} rows in {seconds:7.1f} s"
        f"  {total / seconds:>9,.0f} rows/s  (ratio to raw COPY"
        f" {(total / seconds) / (raw_rows / raw_seconds):.2f}; goal >= 5,000 rows/s)"
    )
    again = await timed_import(url, token, cis_file, "bench", processes)
    print(
        f"re-import CIs         {again.report['rows']:>9,} rows in {again.seconds:7.1f} s"
        f"  {again.report['rows'] / again.seconds:>9,.0f} rows/s  unchanged"
        f" {again.report['outcomes']['unchanged']:,}"
    )
    print(f"{'':22}{again.cpu()}")

    rng = random.Random(11)
    leaves = await ci_ids_for(
        infra, tenant, rng.sample(estate.leaves(), min(args.queries, len(estate.leaves())))
    )
    for depth in (5, 10):
        rounds = []
        truncated = largest = 0
        before = await impact_histogram(url)
        for _ in range(args.rounds):
            times, cut, big = await impact_latencies(url, token, leaves, depth)
            rounds.append(times)
            truncated, largest = truncated + cut, max(largest, big)
        after = await impact_histogram(url)
        medians = [statistics.median(r) for r in rounds]
        flat = [t for r in rounds for t in r]
        in_service = (after[0] - before[0]) / max(after[1] - before[1], 1)
        print(
            f"impact upward depth {depth:>2} from {len(leaves)} leaves x {args.rounds}: {ms(flat)}"
            f"  (median of round medians {statistics.median(medians) * 1000:.1f} ms;"
            f" truncated at 10,000 paths: {truncated}; goal p99 < 100 ms)"
        )
        print(
            f"{'':22}mean {statistics.fmean(flat) * 1000:.1f} ms over HTTP, of which"
            f" {in_service * 1000:.1f} ms in the database (the service's own histogram);"
            f" largest answer {largest / 1e6:.2f} MB"
        )


def postmaster_of(platform: LocalPlatform) -> int | None:
    """The pid of the PostgreSQL server the platform started (None for an outside one)."""
    if platform.postgres is None:
        return None
    try:
        return int((platform.postgres.data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cis", type=int, default=100_000)
    parser.add_argument("--relationships", type=int, default=300_000)
    parser.add_argument("--queries", type=int, default=200, help="leaf CIs per impact round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--state-dir", type=Path, default=REPO_ROOT / ".state" / "bench-cmdb")
    args = parser.parse_args()

    platform = LocalPlatform(
        args.state_dir, kafka_port=29192, kafka_controller_port=29193, postgres_port=55452
    )
    if platform.postgres is not None:
        platform.postgres.destroy()
    for sub in ("kafka", "logs", "work"):
        shutil.rmtree(args.state_dir / sub, ignore_errors=True)
    work = args.state_dir / "work"
    work.mkdir(parents=True)
    try:
        infra = platform.start_infra()
        # As deployed: the outbox relay in a process of its own (deploy/, docker-compose.yml).
        config, relay = platform.start_services(
            infra, {"config": 28003}, separate_relays=("config",)
        )
        print(
            f"config service as a separate process at {config.url}, its outbox relay at"
            f" {relay.url}; broker {infra.bootstrap_servers}"
        )
        processes = Processes(config.process.pid, relay.process.pid, postmaster_of(platform))
        asyncio.run(measure(infra, config.url, args, work, processes))
    finally:
        platform.stop()


if __name__ == "__main__":
    main()
