"""Each service's Kafka user may do what the code needs and nothing else, on a real broker.

A private broker of the project's own (shared.devstack.kafka) with SCRAM users and KRaft's
StandardAuthorizer (`allow.everyone.if.no.acl.found=false`), on free ports under the session's
state folder. The ACLs are applied by `python -m shared.kafka_acl apply` as the broker's own
user, then the topics are made by `python -m shared.kafka create-topics` as `itsm-admin`, as a
deployment does. Each user then produces, consumes and joins groups exactly as far as
shared.kafka_acl says; the last test runs the whole platform with ACLs on.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaError,
    TopicAuthorizationFailedError,
    for_code,
)
from aiokafka.protocol.fetch import FetchRequest

from shared.devstack.kafka import REPO_ROOT, LocalKafka
from shared.devstack.platform import BROKER_USER, LocalPlatform
from shared.devstack.postgres import LocalPostgres
from shared.events.catalogue import AUTH_REVOCATIONS, CHANGE_EVENTS, REPORTING_EVENTS
from shared.kafka import TOPICS, client_config, create_producer, security_options
from shared.kafka_acl import (
    ADMIN_USER,
    KafkaAcl,
    all_acls,
    apply_acls,
    bindings,
    current_acls,
    kafka_user,
    reads,
    writes,
)
from shared.registry import PUBLISHING_SERVICES, SERVICE_NAMES, SERVICES, service
from tests.conftest import STATE_DIR, free_port
from tests.support import eventually, refusal

pytestmark = pytest.mark.integration

# A refused client must fail within this, never hang: past it, the test fails as a hang.
REFUSAL_LIMIT_S = 30.0
# The broker's own login (the only super user) comes first; then the admin and the services.
USERS = {
    user: secrets.token_urlsafe(16)
    for user in (BROKER_USER, ADMIN_USER, *(kafka_user(name) for name in SERVICE_NAMES))
}
NEW = {"title": "VPN drops every hour", "description": "since ACLs", "impact": 2, "urgency": 1}


def _as(user: str) -> dict[str, Any]:
    return security_options("SASL_PLAINTEXT", username=user, password=USERS[user])


def _cli(broker: LocalKafka, user: str, *command: str) -> subprocess.CompletedProcess[str]:
    """`python -m <command>` logged in as `user` through the KAFKA_* variables, as deployed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    env.update(
        PYTHONPATH=str(REPO_ROOT),
        KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap_servers,
        KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
        KAFKA_SASL_USERNAME=user,
        KAFKA_SASL_PASSWORD=USERS[user],
    )
    return subprocess.run(
        [sys.executable, "-m", *command],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def acl_kafka() -> Iterator[LocalKafka]:
    """A broker that allows nothing no ACL allows, with the platform's ACLs and topics."""
    state = STATE_DIR / "kafka-acls"
    LocalKafka(state).stop()  # one a killed earlier run left behind
    shutil.rmtree(state, ignore_errors=True)
    broker = LocalKafka(
        state, port=free_port(), controller_port=free_port(), scram_users=USERS, acls=True
    )
    broker.start()
    try:
        applied = _cli(broker, BROKER_USER, "shared.kafka_acl", "apply")
        assert applied.returncode == 0, applied.stdout + applied.stderr
        assert f"created: {len(bindings(all_acls()))}" in applied.stdout, applied.stdout
        created = _cli(broker, ADMIN_USER, "shared.kafka", "create-topics")
        assert created.returncode == 0, created.stdout + created.stderr
        assert all(topic in created.stdout for topic in TOPICS), created.stdout
        yield broker
    finally:
        broker.stop()


async def _refusal(attempt: Callable[[], Awaitable[object]]) -> KafkaError:
    """The Kafka error `attempt()` is refused with; success or a hang fails the test."""
    return await refusal(attempt, KafkaError, REFUSAL_LIMIT_S, "allowed, but no ACL allows it")


async def _produce(broker: LocalKafka, user: str, topic: str) -> None:
    producer = create_producer(broker.bootstrap_servers, f"test-{user}", security=_as(user))
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"acl-test", key=f"acl/{uuid.uuid4()}".encode())
    finally:
        await producer.stop()


def _consumer(broker: LocalKafka, user: str, *topics: str, **options: Any) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        *topics,
        **client_config(broker.bootstrap_servers, f"test-{user}", _as(user)),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **options,
    )


async def _topics_read(consumer: AIOKafkaConsumer, wanted: set[str]) -> set[str]:
    """The topics of `wanted` the consumer got a record of (at least one each, or it fails)."""
    seen: set[str] = set()

    async def read() -> set[str]:
        batch = await consumer.getmany(timeout_ms=200)
        seen.update(tp.topic for tp, records in batch.items() if records)
        return seen

    return await eventually(read, lambda got: wanted <= got, timeout=60)


@pytest.fixture(scope="module")
async def every_topic_has_a_record(acl_kafka: LocalKafka) -> None:
    """One record on every topic, written by a user allowed to, for the readers to find."""
    for entry in SERVICES:
        for topic in writes(entry):
            await _produce(acl_kafka, kafka_user(entry.name), topic)


async def test_apply_creates_exactly_the_acls_of_the_registry_and_a_second_run_creates_none(
    acl_kafka,
):
    assert await current_acls(acl_kafka.bootstrap_servers, security=_as(BROKER_USER)) == (
        bindings(all_acls())
    )
    again = await apply_acls(acl_kafka.bootstrap_servers, security=_as(BROKER_USER))
    assert (again.created, again.deleted, again.unexpected) == ([], [], [])


async def test_apply_lists_a_platform_users_acl_that_left_the_set_and_prune_deletes_it(acl_kafka):
    bootstrap, login = acl_kafka.bootstrap_servers, _as(BROKER_USER)
    stray = KafkaAcl("itsm-incident", "group", "a-removed-consumer", ("Read",))
    assert (await apply_acls(bootstrap, [stray], security=login)).created == bindings([stray])

    kept = await apply_acls(bootstrap, security=login)
    assert (kept.created, kept.deleted, kept.unexpected) == ([], [], bindings([stray]))
    pruned = await apply_acls(bootstrap, security=login, prune=True)
    assert (pruned.created, pruned.deleted, pruned.unexpected) == ([], bindings([stray]), [])
    assert await current_acls(bootstrap, security=login) == bindings(all_acls())


@pytest.mark.parametrize("entry", SERVICES, ids=lambda e: e.name)
async def test_a_service_user_produces_to_every_topic_it_writes(acl_kafka, entry):
    for topic in writes(entry):
        await _produce(acl_kafka, kafka_user(entry.name), topic)


@pytest.mark.parametrize("entry", SERVICES, ids=lambda e: e.name)
async def test_a_service_user_consumes_every_topic_it_reads_in_each_of_its_groups(
    acl_kafka, every_topic_has_a_record, entry
):
    user = kafka_user(entry.name)
    for group in entry.consumer_groups:
        consumer = _consumer(acl_kafka, user, *entry.consumes, group_id=group)
        await consumer.start()
        try:
            assert await _topics_read(consumer, set(entry.consumes)) >= set(entry.consumes)
            await consumer.commit()  # the group's offsets: Read on the group
        finally:
            await consumer.stop()
    # Every process (reporting's too) follows the revocations without a group, from the start.
    assert AUTH_REVOCATIONS in reads(entry)
    follower = _consumer(acl_kafka, user, AUTH_REVOCATIONS, group_id=None)
    await follower.start()
    try:
        await _topics_read(follower, {AUTH_REVOCATIONS})
    finally:
        await follower.stop()


async def test_writing_another_services_topic_is_refused(acl_kafka):
    refused = await _refusal(lambda: _produce(acl_kafka, "itsm-incident", CHANGE_EVENTS))
    assert isinstance(refused, TopicAuthorizationFailedError), repr(refused)


async def _fetch_error(broker: LocalKafka, user: str, topic: str) -> type[Exception] | None:
    """What the broker answers `user` fetching partition 0 of `topic` from the start: the error
    class, or None when it serves the records. (An aiokafka consumer, told the topic is not
    authorized by the metadata, never sends the fetch and only logs.)"""
    client = AIOKafkaClient(**client_config(broker.bootstrap_servers, f"test-{user}", _as(user)))
    await client.bootstrap()
    try:
        [node] = client.cluster.brokers()
        request = FetchRequest(500, 1, 1 << 20, 0, [(topic, [(0, 0, 1 << 20)])])
        response = await client.send(node.nodeId, request)
        [(name, [(partition, code, *_)])] = response.topics
        assert (name, partition) == (topic, 0)
        return None if code == 0 else for_code(code)
    finally:
        await client.close()


async def test_reading_a_topic_the_service_does_not_consume_is_refused(acl_kafka):
    # The incident service reads change events, not the reporting service's.
    assert CHANGE_EVENTS in reads(service("incident"))
    assert REPORTING_EVENTS not in reads(service("incident"))
    assert await _fetch_error(acl_kafka, "itsm-incident", CHANGE_EVENTS) is None
    refused = await _fetch_error(acl_kafka, "itsm-incident", REPORTING_EVENTS)
    assert refused is TopicAuthorizationFailedError


async def test_joining_another_services_consumer_group_is_refused(acl_kafka):
    # A topic the incident service may read, in the reporting service's group.
    assert CHANGE_EVENTS in reads(service("incident"))
    consumer = _consumer(acl_kafka, "itsm-incident", CHANGE_EVENTS, group_id="reporting-ledger")

    async def join_and_read() -> None:
        await consumer.start()
        while True:
            await consumer.getmany(timeout_ms=1000)

    try:
        refused = await _refusal(join_and_read)
    finally:
        await consumer.stop()
    assert isinstance(refused, GroupAuthorizationFailedError), repr(refused)


async def _create_topic(broker: LocalKafka, user: str, topic: str) -> int:
    """The broker's error code for `user` creating `topic` (0: created)."""
    admin = AIOKafkaAdminClient(**client_config(broker.bootstrap_servers, "test-admin", _as(user)))
    await admin.start()
    try:
        response = await admin.create_topics([NewTopic(topic, 1, 1)])
        [(name, code, *_)] = response.topic_errors
        assert name == topic
        return int(code)
    finally:
        await admin.close()


async def test_a_service_user_may_not_create_topics(acl_kafka):
    code = await _create_topic(acl_kafka, "itsm-incident", f"itsm.acl-test-{uuid.uuid4().hex}")
    assert code == TopicAuthorizationFailedError.errno


async def test_the_admin_user_creates_platform_topics_and_no_others(acl_kafka):
    assert await _create_topic(acl_kafka, ADMIN_USER, f"itsm.acl-test-{uuid.uuid4().hex}") == 0
    refused = await _create_topic(acl_kafka, ADMIN_USER, f"other.acl-test-{uuid.uuid4().hex}")
    assert refused == TopicAuthorizationFailedError.errno


@pytest.fixture(scope="module")
def acl_platform() -> Iterator[tuple[LocalPlatform, Any]]:
    """The whole platform on a broker and a PostgreSQL of its own with ACLs on: its users, the
    ACLs applied by the devstack, the topics made by `itsm-admin`; every service and the outbox
    relays of the publishing ones as processes. Its own database, not the session's: its
    reporting service signs with a key of its own and would otherwise list that key as the
    current one, and sign other tests' tenants with it."""
    state = STATE_DIR / "acl-platform"
    LocalKafka(state / "kafka").stop()
    LocalPostgres(state / "postgres").destroy()
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    environ = {
        k: v
        for k, v in os.environ.items()
        if "KAFKA_" not in k and k != "DATABASE_URL" and not k.startswith("REPORTING_LEDGER_")
    }
    platform = LocalPlatform(
        state,
        kafka_port=free_port(),
        kafka_controller_port=free_port(),
        postgres_port=free_port(),
        environ=environ,
        kafka_acls=True,
    )
    try:
        infra = platform.start_infra()
        ports = {name: free_port() for name in SERVICE_NAMES}
        platform.start_services(infra, ports, separate_relays=PUBLISHING_SERVICES)
        yield platform, infra
    finally:
        platform.stop()


async def test_the_whole_platform_runs_with_acls_on_and_an_incident_reaches_the_ledger(
    acl_platform, tenant
):
    platform, infra = acl_platform
    urls = {process.name: process.url for process in platform.services}
    # Every service and relay is ready (start_services waited for it), and the ACLs are exactly
    # the set, applied by the devstack as its broker user.
    assert set(urls) == {*SERVICE_NAMES, *(f"{name}-relay" for name in PUBLISHING_SERVICES)}
    assert platform.kafka is not None
    users = platform.kafka.scram_users or {}
    broker_login = security_options(
        "SASL_PLAINTEXT", username=BROKER_USER, password=users[BROKER_USER]
    )
    assert await current_acls(infra.bootstrap_servers, security=broker_login) == bindings(
        all_acls()
    )

    issuer = infra.keys.issuer()

    def auth(*roles: str) -> dict[str, str]:
        token = issuer.mint(
            subject="acl-test", tenants=[tenant], roles=list(roles), ttl_seconds=600
        )
        return {"Authorization": f"Bearer {token}"}

    async with httpx.AsyncClient(timeout=10) as client:
        created = await client.post(
            f"{urls['incident']}/incidents", json=NEW, headers=auth("agent")
        )
        assert created.status_code == 201, created.text
        subject = created.json()["id"]

        async def ledger() -> list[dict[str, Any]]:
            response = await client.get(
                f"{urls['reporting']}/ledger", params={"subject": subject}, headers=auth("auditor")
            )
            assert response.status_code == 200, response.text
            items: list[dict[str, Any]] = response.json()["items"]
            return items

        [entry] = await eventually(ledger, lambda items: len(items) >= 1, timeout=60)
    assert entry["type"] == "itsm.incident.created.v1"
    # Every consumer group of every service has joined (a refused one never does) ...
    wanted = {group for entry in SERVICES for group in entry.consumer_groups}

    async def groups() -> set[str]:
        admin = AIOKafkaAdminClient(
            **client_config(infra.bootstrap_servers, "test-groups", broker_login)
        )
        await admin.start()
        try:
            return {group for group, *_ in await admin.list_consumer_groups()}
        finally:
            await admin.close()

    await eventually(groups, lambda found: wanted <= found, timeout=60)
    # ... and no process met a refusal on the way (a group, a topic or the dead letters).
    for process in platform.services:
        log = await asyncio.to_thread(Path(process.log_path).read_text, errors="replace")
        assert "AuthorizationFailed" not in log, f"{process.name}: {log[-3000:]}"
