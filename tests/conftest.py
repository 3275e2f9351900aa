"""Fixtures: the real Kafka broker and PostgreSQL server, started once per test session.

Integration, fault and end-to-end tests need them; unit tests never start them. Set
KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL to run against servers of your own instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from services.change.definition import DEFINITION as CHANGE
from services.config.definition import DEFINITION as CONFIG
from services.incident.definition import DEFINITION as INCIDENT
from services.reporting.definition import DEFINITION as REPORTING
from shared.db import migrate
from shared.devstack.kafka import REPO_ROOT
from shared.devstack.platform import Infra, LocalPlatform
from shared.registry import service
from shared.service import ServiceDefinition, ServiceRuntime

# Every service's definition (test_service_registry checks them against shared/registry.py).
DEFINITIONS: dict[str, ServiceDefinition] = {
    d.name: d for d in (INCIDENT, CHANGE, CONFIG, REPORTING)
}
# ITSM_TEST_STATE lets two test sessions run side by side (each wipes its own folder).
STATE_DIR = Path(os.environ.get("ITSM_TEST_STATE") or REPO_ROOT / ".state" / "test")


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def local_platform() -> Iterator[LocalPlatform]:
    """A fresh broker and cluster for this session (or the ones named by the environment)."""
    platform = LocalPlatform(
        STATE_DIR,
        kafka_port=free_port(),
        kafka_controller_port=free_port(),
        postgres_port=free_port(),
    )
    # A session starts clean: stop what a killed earlier run may have left, then wipe its state.
    if platform.postgres is not None:
        platform.postgres.destroy()
    if platform.kafka is not None:
        platform.kafka.stop()
    for sub in ("kafka", "postgres", "logs"):
        shutil.rmtree(STATE_DIR / sub, ignore_errors=True)
    yield platform
    platform.stop()


@pytest.fixture(scope="session")
def infra(local_platform: LocalPlatform) -> Infra:
    """Kafka and PostgreSQL up, roles and schemas provisioned, topics created."""
    infra = local_platform.start_infra()
    # Every reporting service a test starts (in this process or as a child) signs its ledger's
    # checkpoints with the session's key, however the test builds its settings.
    os.environ.setdefault("REPORTING_LEDGER_SIGNING_KEY_FILE", str(infra.ledger_key_file))
    return infra


@pytest.fixture(scope="session")
async def migrated(infra: Infra) -> Infra:
    """Every service's schema migrated, as each service would at start-up."""
    for name, definition in DEFINITIONS.items():
        conn = await asyncpg.connect(infra.service_dsns[name])
        try:
            await migrate(conn, definition.migration_sources())
        finally:
            await conn.close()
    return infra


@pytest.fixture(scope="session")
async def pools(migrated: Infra) -> AsyncIterator[dict[str, asyncpg.Pool]]:
    """A pool per service, each logged in as that service's own role."""
    from shared.db import create_pool

    created = {
        name: await create_pool(
            dsn,
            schema=service(name).schema,
            application_name=f"test-{name}",
            min_size=1,
            max_size=5,
        )
        for name, dsn in migrated.service_dsns.items()
    }
    yield created
    for pool in created.values():
        await pool.close()


@pytest.fixture
async def producer(infra: Infra) -> AsyncIterator[AIOKafkaProducer]:
    """A plain producer on the session's broker, for tests that send events themselves."""
    producer = AIOKafkaProducer(bootstrap_servers=infra.bootstrap_servers)
    await producer.start()
    yield producer
    await producer.stop()


@pytest.fixture
def tenant() -> str:
    """A tenant of its own for each test, so tests never see each other's data."""
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def auth(infra: Infra) -> Callable[..., dict[str, str]]:
    """Headers with a valid bearer token: auth(tenant, *roles, subject=..., tenants=[...])."""
    issuer = infra.keys.issuer()

    def headers(
        tenant: str, *roles: str, subject: str = "tester", **extra: object
    ) -> dict[str, str]:
        tenants = extra.pop("tenants", [tenant])
        token = issuer.mint(subject=subject, tenants=tenants, roles=list(roles), ttl_seconds=600)  # type: ignore[arg-type]
        return {"Authorization": f"Bearer {token}"}

    return headers


@pytest.fixture
def settings_for(migrated: Infra) -> Callable[..., object]:
    """Settings for an in-process service, pointed at the session's broker and database."""

    def make(name: str, **overrides: object) -> object:
        definition = DEFINITIONS[name]
        own: dict[str, object] = {}
        if name == "reporting":  # the ledger's checkpoint signing key
            own["ledger_signing_key_file"] = str(migrated.ledger_key_file)
        return definition.settings_class(  # type: ignore[call-arg]
            database_url=migrated.service_dsns[name],
            kafka_bootstrap_servers=migrated.bootstrap_servers,
            outbox_poll_interval_seconds=0.2,
            auth_jwks_file=migrated.keys.jwks_file,
            **{**own, **overrides},
        )

    return make


@pytest.fixture
async def start_runtime(
    settings_for: Callable[..., object],
) -> AsyncIterator[Callable[..., object]]:
    """Start services in this process; every one started is stopped after the test."""
    started: list[ServiceRuntime] = []

    async def start(
        name: str, definition: ServiceDefinition | None = None, **overrides: object
    ) -> ServiceRuntime:
        runtime = ServiceRuntime(definition or DEFINITIONS[name], settings_for(name, **overrides))  # type: ignore[arg-type]
        await runtime.start()
        started.append(runtime)
        return runtime

    yield start
    for runtime in reversed(started):
        await runtime.stop()


@pytest.fixture
async def service_client(
    start_runtime: Callable[..., object],
) -> AsyncIterator[Callable[..., object]]:
    """`await service_client("config")`: an httpx client on an in-process service app (with
    `.runtime`); the service runs on the session's broker and database until the test ends."""
    import httpx

    from shared.http.app import create_app

    clients: list[httpx.AsyncClient] = []

    async def make(name: str, **overrides: object) -> httpx.AsyncClient:
        runtime: ServiceRuntime = await start_runtime(name, **overrides)  # type: ignore[operator]
        app = create_app(runtime, DEFINITIONS[name].routers)
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=f"http://{name}"
        )
        client.runtime = runtime  # type: ignore[attr-defined]
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark tests by folder so `-m "not integration"` runs the unit tier alone."""
    for item in items:
        parts = Path(str(item.fspath)).parts
        if "integration" in parts or "faults" in parts:
            item.add_marker(pytest.mark.integration)
        if "e2e" in parts:
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.integration)
