"""Services log in to Kafka with their own SCRAM-SHA-512 user; clients without one are refused.

A private broker of the project's own (shared.devstack.kafka) with SCRAM users created when its
storage is formatted, on free ports; the services run in this process against the session's
PostgreSQL, configured through the same settings as in production.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaConnectionError

from shared.devstack.kafka import REPO_ROOT, LocalKafka
from shared.events.catalogue import INCIDENT_EVENTS
from shared.http.app import create_app
from shared.kafka import TOPICS, client_config, security_options
from shared.service import ServiceRuntime
from tests.conftest import DEFINITIONS
from tests.support import eventually, header, refusal

pytestmark = pytest.mark.integration

# A refused client must fail within this, never hang: past it, the test fails as a hang.
REFUSAL_LIMIT_S = 30.0
USERS = {
    # The first user is also the broker's own inter-broker login.
    "itsm-admin": secrets.token_urlsafe(16),
    "itsm-incident": secrets.token_urlsafe(16),
    "itsm-reporting": secrets.token_urlsafe(16),
}
NEW = {
    "title": "VPN drops every hour",
    "description": "since the upgrade",
    "impact": 2,
    "urgency": 1,
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as(user: str, password: str | None = None) -> dict[str, object]:
    return security_options(
        "SASL_PLAINTEXT", username=user, password=USERS[user] if password is None else password
    )


@pytest.fixture(scope="module")
def scram_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A broker that admits only SCRAM users, with the platform's topics made by the CLI."""
    port = _free_port()
    controller_port = _free_port()
    while controller_port == port:
        controller_port = _free_port()
    broker = LocalKafka(
        tmp_path_factory.mktemp("scram-kafka"),
        port=port,
        controller_port=controller_port,
        scram_users=USERS,
    )
    broker.start()
    try:
        # The deploy step, as docker-compose's kafka-init runs it: the admin user from the
        # environment, the password never on the command line.
        env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
        env.update(
            PYTHONPATH=str(REPO_ROOT),
            KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap_servers,
            KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
            KAFKA_SASL_USERNAME="itsm-admin",
            KAFKA_SASL_PASSWORD=USERS["itsm-admin"],
        )
        result = subprocess.run(
            [sys.executable, "-m", "shared.kafka", "create-topics"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert all(topic in result.stdout for topic in TOPICS), result.stdout
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def scram_settings(migrated, scram_kafka) -> Callable[..., object]:
    """A service's settings pointed at the SCRAM broker, logging in as `itsm-<service>`."""

    def make(name: str, **overrides: object) -> object:
        values: dict[str, object] = {
            "database_url": migrated.service_dsns[name],
            "auth_jwks_file": migrated.keys.jwks_file,
            "outbox_poll_interval_seconds": 0.2,
            "kafka_bootstrap_servers": scram_kafka.bootstrap_servers,
            "kafka_security_protocol": "SASL_PLAINTEXT",
            "kafka_sasl_mechanism": "SCRAM-SHA-512",
            "kafka_sasl_username": f"itsm-{name}",
            "kafka_sasl_password": USERS[f"itsm-{name}"],
        }
        values.update(overrides)
        return DEFINITIONS[name].settings_class(**values)

    return make


@pytest.fixture
async def scram_runtime(scram_settings) -> AsyncIterator[Callable[..., object]]:
    """Start services on the SCRAM broker; every one started is stopped after the test."""
    started: list[ServiceRuntime] = []

    async def start(name: str) -> ServiceRuntime:
        runtime = ServiceRuntime(DEFINITIONS[name], scram_settings(name))
        await runtime.start()
        started.append(runtime)
        return runtime

    yield start
    for runtime in reversed(started):
        await runtime.stop()


def _client(runtime: ServiceRuntime) -> httpx.AsyncClient:
    app = create_app(runtime, DEFINITIONS[runtime.definition.name].routers)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service")


async def _refusal(start: Callable[[], Awaitable[object]]) -> KafkaConnectionError:
    """The error `start()` is refused with; a hang (no answer in REFUSAL_LIMIT_S) fails."""
    return await refusal(
        start, KafkaConnectionError, REFUSAL_LIMIT_S, "connected without valid credentials"
    )


async def _records_with_key(bootstrap: str, security: dict[str, object], topic: str, key: bytes):
    """Every record of the topic with this key, read from the start (fails after 30 s)."""
    # No group: every partition is assigned, read from the beginning.
    consumer = AIOKafkaConsumer(
        topic,
        **client_config(bootstrap, f"test-reader-{uuid.uuid4().hex[:8]}", security),
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            found = [r for records in batch.values() for r in records if r.key == key]
            if found:
                return found
        raise AssertionError(f"no record with key {key!r} on {topic} within 30 s")
    finally:
        await consumer.stop()


async def test_a_service_logged_in_with_its_scram_user_is_ready_and_publishes_its_events(
    scram_kafka, scram_runtime, auth, tenant
):
    incident = await scram_runtime("incident")
    assert await incident.readiness() == {
        "database": "ok",
        "migrations": "ok",
        "kafka": "ok",
        "background": "ok",
    }

    async with _client(incident) as api:
        created = await api.post("/incidents", json=NEW, headers=auth(tenant, "agent"))
    assert created.status_code == 201, created.text
    body = created.json()

    # The outbox relay published it with the service's credentials; another user reads it.
    [record] = await _records_with_key(
        scram_kafka.bootstrap_servers, _as("itsm-admin"), INCIDENT_EVENTS, body["id"].encode()
    )
    assert header(record, "ce_type") == "itsm.incident.created.v1"
    assert header(record, "ce_tenantid") == tenant


async def test_a_consuming_service_reads_the_topics_with_its_own_scram_user(
    scram_runtime, auth, tenant
):
    incident = await scram_runtime("incident")
    reporting = await scram_runtime("reporting")
    assert (await reporting.readiness())["kafka"] == "ok"

    async with _client(incident) as incident_api, _client(reporting) as reporting_api:
        created = await incident_api.post("/incidents", json=NEW, headers=auth(tenant, "agent"))
        assert created.status_code == 201, created.text
        subject = created.json()["id"]

        async def ledger() -> list[dict[str, object]]:
            response = await reporting_api.get(
                "/ledger", params={"subject": subject}, headers=auth(tenant, "auditor")
            )
            assert response.status_code == 200, response.text
            items: list[dict[str, object]] = response.json()["items"]
            return items

        [entry] = await eventually(ledger, lambda items: len(items) >= 1)
    assert entry["type"] == "itsm.incident.created.v1"


@pytest.mark.parametrize(
    ("login", "overrides", "broker_says"),
    [
        (
            "no credentials",
            {
                "kafka_security_protocol": "PLAINTEXT",
                "kafka_sasl_username": None,
                "kafka_sasl_password": None,
            },
            "closed",
        ),
        (
            "a wrong password",
            {"kafka_sasl_password": USERS["itsm-admin"]},  # another user's password
            "SaslAuthenticationFailed",
        ),
    ],
)
async def test_a_service_without_valid_credentials_is_refused_at_start_without_hanging(
    scram_settings, caplog, login, overrides, broker_says
):
    runtime = ServiceRuntime(DEFINITIONS["incident"], scram_settings("incident", **overrides))
    caplog.set_level(logging.WARNING, logger="aiokafka")
    try:
        refused = await _refusal(runtime.start)
    finally:
        await asyncio.wait_for(runtime.stop(), timeout=30)
    assert "Unable to bootstrap" in str(refused), refused
    assert broker_says in caplog.text, (login, caplog.text)


@pytest.mark.parametrize(
    ("login", "security"),
    [
        ("no credentials", security_options("PLAINTEXT")),
        ("a wrong password", _as("itsm-incident", password="not-the-password")),
        ("an unknown user", _as("itsm-admin") | {"sasl_plain_username": "mallory"}),
    ],
)
async def test_a_plain_kafka_client_without_valid_credentials_is_refused(
    scram_kafka, login, security
):
    consumer = AIOKafkaConsumer(
        INCIDENT_EVENTS,
        **client_config(scram_kafka.bootstrap_servers, "test-intruder", security),
        group_id=f"intruder-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
    )
    try:
        await _refusal(consumer.start)
    finally:
        await consumer.stop()
