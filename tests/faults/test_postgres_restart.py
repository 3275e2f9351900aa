"""Relays, consumers and background tasks carry on by themselves when PostgreSQL crashes.

These tests run a PostgreSQL cluster of their own (the session's broker is shared), so that
killing it disturbs no other test.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import asyncpg
import pytest

from services.config.definition import DEFINITION as CONFIG
from services.incident.definition import DEFINITION as INCIDENT
from shared import outbox
from shared.db import tenant_transaction
from shared.devstack.kafka import REPO_ROOT
from shared.devstack.platform import Infra, LocalPlatform
from shared.devstack.postgres import LocalPostgres
from shared.events.catalogue import IncidentCreatedV1
from shared.service import RelayRuntime, ServiceRuntime, migrate_only
from tests.support import end_offsets, eventually, published_so_far, read_topic

PAYLOAD = IncidentCreatedV1(
    title="Disk full", description="", impact=2, urgency=2, priority=3, state="new"
)
STATE = Path(os.environ.get("ITSM_TEST_STATE") or REPO_ROOT / ".state" / "test") / "pg-restart"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def private_platform(infra: Infra) -> tuple[LocalPlatform, Infra]:
    """A PostgreSQL cluster for this module only, provisioned like the session's."""
    shutil.rmtree(STATE, ignore_errors=True)
    platform = LocalPlatform(
        STATE,
        postgres_port=free_port(),
        environ={"KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap_servers},
    )
    yield platform, platform.start_infra()
    assert platform.postgres is not None
    platform.postgres.destroy()


def settings(name: str, private: Infra, **overrides: object) -> object:
    definition = {"incident": INCIDENT, "config": CONFIG}[name]
    return definition.settings_class(  # type: ignore[call-arg]
        database_url=private.service_dsns[name],
        kafka_bootstrap_servers=private.bootstrap_servers,
        auth_jwks_file=private.keys.jwks_file,
        outbox_poll_interval_seconds=0.2,
        outbox_metrics_interval_seconds=0.5,
        background_max_backoff_seconds=2.0,
        background_grace_seconds=5.0,
        **overrides,
    )


@pytest.fixture
async def runtimes(
    private_platform: tuple[LocalPlatform, Infra], caplog: pytest.LogCaptureFixture
) -> AsyncIterator[dict[str, object]]:
    """The incident relay (as a process of its own runs it) started before anything migrated;
    the test adds the config service (relay embedded)."""
    _, private = private_platform
    caplog.set_level(logging.INFO)
    started: dict[str, object] = {}
    relay = RelayRuntime(INCIDENT, settings("incident", private))  # type: ignore[arg-type]
    await relay.start()
    started["incident-relay"] = relay
    try:
        yield started
    finally:
        for runtime in reversed(started.values()):
            await runtime.stop()  # type: ignore[attr-defined]


def kill_postmaster(postgres: LocalPostgres) -> None:
    """SIGKILL the postmaster, as a crash would; its backends notice and exit."""
    pid = int((postgres.data_dir / "postmaster.pid").read_text().split()[0])
    os.kill(pid, signal.SIGKILL)


def stop_immediately(postgres: LocalPostgres) -> None:
    """`pg_ctl stop -m immediate`: every process quits at once, no checkpoint."""
    postgres._run_as_owner(
        [str(postgres.bindir / "pg_ctl"), "-D", str(postgres.data_dir), "-m", "immediate", "stop"]
    )


async def restart(postgres: LocalPostgres) -> None:
    """Start the cluster again, as an orchestrator would (the crashed one may linger briefly)."""
    deadline = time.monotonic() + 60
    # An orchestrator restarts a process once it has exited; until then "start" is a no-op.
    while await asyncio.to_thread(postgres.is_running):
        assert time.monotonic() < deadline, "the crashed PostgreSQL did not exit"
        await asyncio.sleep(0.2)
    while True:
        try:
            await asyncio.to_thread(postgres.start)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


T = TypeVar("T")


async def while_database_returns(attempt: Callable[[], Awaitable[T]]) -> T:
    """`attempt`, retried while the database is still coming back (or the pool still meets
    connections the crash broke), for up to 60 s."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return await attempt()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def write_event(pool: asyncpg.Pool, tenant: str, subject: str) -> str:
    """One committed outbox row."""

    async def write() -> str:
        async with tenant_transaction(pool, tenant) as conn:
            envelope = await outbox.append(
                conn, PAYLOAD, subject=subject, tenant_id=tenant, sequence=1, actor="test"
            )
        return str(envelope.id)

    return await while_database_returns(write)


async def drained(bootstrap: str, pool: asyncpg.Pool, tenant: str) -> dict:
    """The topic's end offsets once the tenant's rows left this outbox."""
    return await while_database_returns(
        lambda: published_so_far(bootstrap, "itsm.incident.events", pool, tenant)
    )


async def backlog(runtime: RelayRuntime | ServiceRuntime) -> float | None:
    return runtime.registry.get_sample_value("itsm_outbox_backlog")


async def published(bootstrap: str, start: dict, ids: set[str]) -> None:
    """Wait until every id is on the topic."""

    def seen(records: list) -> bool:
        found = {dict(r.headers).get("ce_id", b"").decode() for r in records}
        return ids <= found

    await read_topic(bootstrap, start, until=seen, timeout=60)


async def test_relays_wait_for_migrations_and_publish_again_after_postgresql_crashes(
    private_platform, runtimes, tenant, caplog
):
    platform, private = private_platform
    postgres = platform.postgres
    assert postgres is not None
    relay: RelayRuntime = runtimes["incident-relay"]  # type: ignore[assignment]

    # Started before the service migrated: it waits, says so once at INFO, and logs no error.
    await eventually(relay.readiness, lambda c: c["relay"] == "waiting for migrations")
    # The incident service itself is not started (its consumers would join the session's
    # consumer groups); its migrations are applied as `python -m services.incident migrate` does.
    await migrate_only(INCIDENT, settings("incident", private))  # type: ignore[arg-type]
    config = ServiceRuntime(CONFIG, settings("config", private))  # type: ignore[arg-type]
    await config.start()
    runtimes["config"] = config
    await eventually(relay.readiness, lambda c: all(v == "ok" for v in c.values()))
    waits = [r for r in caplog.records if "waiting for the service to apply" in r.getMessage()]
    assert [r.levelno for r in waits] == [logging.INFO]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text

    bootstrap = private.bootstrap_servers
    assert relay._pool is not None
    # One event in each schema's outbox (both of the incident topic: the payload decides the
    # topic); each schema's rows are published by its own relay only.
    pools = {"incident": relay._pool, "config": config.pool}
    for crash in (kill_postmaster, stop_immediately):
        start = await end_offsets(bootstrap, "itsm.incident.events")
        before = {await write_event(pool, tenant, "before") for pool in pools.values()}
        await published(bootstrap, start, before)
        # Acknowledged and forgotten by both relays: the crash cannot make them send these again.
        for pool in pools.values():
            await drained(bootstrap, pool, tenant)

        crash(postgres)
        await restart(postgres)
        back_at = time.monotonic()
        after = {await write_event(pool, tenant, "after") for pool in pools.values()}
        # The deadline is `published`'s poll limit; how long it took is printed, not asserted.
        await published(bootstrap, start, after)
        recovered_in = time.monotonic() - back_at
        print(f"{crash.__name__}: events published {recovered_in:.1f} s after PostgreSQL was back")

        # Each event exactly once: read up to what the relays had published once both outboxes
        # were empty (duplicates included), and count.
        for pool in pools.values():
            end = await drained(bootstrap, pool, tenant)
        records = await read_topic(bootstrap, start, to=end, timeout=60)
        sent = Counter(dict(r.headers).get("ce_id", b"").decode() for r in records)
        assert {i: sent[i] for i in before | after} == dict.fromkeys(before | after, 1)

        # Nothing stays down: every runtime reports ready, background tasks included.
        for runtime in (relay, config):
            await eventually(
                runtime.readiness, lambda c: all(v == "ok" for v in c.values()), timeout=60
            )
        # The backlog gauges read the table again: nothing waits.
        for runtime in (relay, config):
            await eventually(lambda r=runtime: backlog(r), lambda n: n == 0)
