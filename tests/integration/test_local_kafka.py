"""The project's own Kafka broker (shared.devstack.kafka): a real Kafka 4.x from Maven's jars.

Each test starts a private broker on free ports in a temporary state directory.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from shared.devstack.kafka import LocalKafka

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ports() -> tuple[int, int]:
    port = _free_port()
    controller_port = _free_port()
    while controller_port == port:
        controller_port = _free_port()
    return port, controller_port


async def _create_topic(options: dict[str, str], topic: str, partitions: int = 3) -> None:
    admin = AIOKafkaAdminClient(**options)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=1)]
        )
    finally:
        await admin.close()


async def _round_trip(options: dict[str, str], topic: str, payload: bytes) -> bytes:
    producer = AIOKafkaProducer(**options, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(topic, payload, key=b"k")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        **options,
        group_id=f"g-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), timeout=60)
        await consumer.commit()
    finally:
        await consumer.stop()
    assert record.value is not None
    return record.value


async def _topics(options: dict[str, str]) -> list[str]:
    admin = AIOKafkaAdminClient(**options)
    await admin.start()
    try:
        return list(await admin.list_topics())
    finally:
        await admin.close()


async def _can_connect(options: dict[str, str]) -> bool:
    # A refused client either fails authentication or, speaking no SASL to a SASL listener,
    # is disconnected before its metadata request is answered.
    admin = AIOKafkaAdminClient(**options, request_timeout_ms=5000)
    try:
        await asyncio.wait_for(admin.start(), timeout=20)
        await asyncio.wait_for(admin.list_topics(), timeout=20)
    except Exception:
        return False
    else:
        return True
    finally:
        await admin.close()


def test_local_broker_round_trips_a_message(tmp_path: Path) -> None:
    port, controller_port = _ports()
    broker = LocalKafka(tmp_path / "kafka", port=port, controller_port=controller_port)
    broker.start()
    try:
        assert broker.is_running()
        assert broker.bootstrap_servers == f"127.0.0.1:{port}"
        assert broker.security_protocol == "PLAINTEXT"
        options = broker.client_options()
        asyncio.run(_create_topic(options, "devstack.round-trip"))
        assert asyncio.run(_round_trip(options, "devstack.round-trip", b"hello")) == b"hello"
        # Topics are only ever created on purpose.
        assert "devstack.never-declared" not in asyncio.run(_topics(options))
    finally:
        broker.stop()
    assert not broker.is_running()
    assert (tmp_path / "kafka" / "logs" / "server.log").stat().st_size > 0


def test_local_broker_restarts_after_being_killed_and_keeps_its_topics(tmp_path: Path) -> None:
    port, controller_port = _ports()
    state_dir = tmp_path / "kafka"
    broker = LocalKafka(state_dir, port=port, controller_port=controller_port)
    with broker:
        asyncio.run(_create_topic(broker.client_options(), "devstack.survivor"))
        broker.kill()
        assert not broker.is_running()
    meta = (state_dir / "data" / "meta.properties").read_text()

    # Same state on other ports: storage is reused (not reformatted) and the topic survives.
    port, controller_port = _ports()
    with LocalKafka(state_dir, port=port, controller_port=controller_port) as again:
        assert "devstack.survivor" in asyncio.run(_topics(again.client_options()))
    assert (state_dir / "data" / "meta.properties").read_text() == meta


def test_local_broker_with_scram_users_admits_only_authenticated_clients(tmp_path: Path) -> None:
    port, controller_port = _ports()
    users = {"itsm-app": "app-secret-1", "itsm-ops": "ops-secret-2"}
    with LocalKafka(
        tmp_path / "kafka", port=port, controller_port=controller_port, scram_users=users
    ) as broker:
        assert broker.security_protocol == "SASL_PLAINTEXT"
        assert broker.sasl_mechanism == "SCRAM-SHA-512"
        assert broker.credentials == ("itsm-app", "app-secret-1")
        sasl = {
            "bootstrap_servers": broker.bootstrap_servers,
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "SCRAM-SHA-512",
        }
        ops = {**sasl, "sasl_plain_username": "itsm-ops", "sasl_plain_password": "ops-secret-2"}
        asyncio.run(_create_topic(ops, "devstack.secured", partitions=1))
        assert asyncio.run(_round_trip(ops, "devstack.secured", b"signed")) == b"signed"

        wrong = {**ops, "sasl_plain_password": "not-the-password"}
        assert not asyncio.run(_can_connect(wrong))
        plaintext = {"bootstrap_servers": broker.bootstrap_servers}
        assert not asyncio.run(_can_connect(plaintext))
        assert asyncio.run(_can_connect(broker.client_options()))
