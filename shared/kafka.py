"""Kafka plumbing shared by every service: client settings, the idempotent producer, topics."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from shared.events.catalogue import CHANGE_EVENTS, CONFIG_EVENTS, INCIDENT_EVENTS

log = logging.getLogger(__name__)

DEAD_LETTER_TOPIC = "itsm.deadletter"

# Every topic the platform uses and its partition count: the one place to change either.
DEFAULT_PARTITIONS = 6
TOPICS: dict[str, int] = {
    INCIDENT_EVENTS: DEFAULT_PARTITIONS,
    CHANGE_EVENTS: DEFAULT_PARTITIONS,
    CONFIG_EVENTS: DEFAULT_PARTITIONS,
    DEAD_LETTER_TOPIC: DEFAULT_PARTITIONS,
}


def client_config(bootstrap_servers: str, client_id: str) -> dict[str, Any]:
    """Connection settings common to producers, consumers and admin clients."""
    return {"bootstrap_servers": bootstrap_servers, "client_id": client_id}


def create_producer(bootstrap_servers: str, client_id: str) -> AIOKafkaProducer:
    """An idempotent producer that waits for all in-sync replicas (no loss, no reordering)."""
    return AIOKafkaProducer(
        **client_config(bootstrap_servers, client_id),
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        max_batch_size=256 * 1024,
        request_timeout_ms=15_000,
    )


async def ensure_topics(
    bootstrap_servers: str, topics: dict[str, int] | None = None, replication_factor: int = 1
) -> list[str]:
    """Create the platform's topics that do not exist yet; return the names created."""
    wanted = TOPICS if topics is None else topics
    admin = AIOKafkaAdminClient(**client_config(bootstrap_servers, "itsm-admin"))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, num_partitions=partitions, replication_factor=replication_factor)
            for name, partitions in wanted.items()
            if name not in existing
        ]
        if missing:
            # Another process may create one between the listing and now.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
            log.info("created topics", extra={"topics": [t.name for t in missing]})
        return [t.name for t in missing]
    finally:
        await admin.close()


def main() -> None:
    """`python -m shared.kafka create-topics`: create every platform topic that is missing."""
    import argparse
    import asyncio
    import os

    parser = argparse.ArgumentParser(prog="python -m shared.kafka")
    parser.add_argument("command", choices=["create-topics"])
    parser.add_argument("--bootstrap-servers", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    parser.add_argument("--replication-factor", type=int, default=1)
    args = parser.parse_args()
    if not args.bootstrap_servers:
        parser.error("--bootstrap-servers or KAFKA_BOOTSTRAP_SERVERS is required")
    created = asyncio.run(ensure_topics(args.bootstrap_servers, None, args.replication_factor))
    print("created: " + (", ".join(created) or "nothing (all topics exist)"))


if __name__ == "__main__":
    main()
