"""The platform's topics: created as declared, and a refusal by the broker is an error."""

import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from shared.events.catalogue import AUTH_REVOCATIONS
from shared.kafka import TOPICS, ensure_topics


async def test_every_platform_topic_exists_with_its_partitions_and_configs(infra):
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_topics(list(TOPICS))
        partitions = {t["topic"]: len(t["partitions"]) for t in described}
        [config] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, AUTH_REVOCATIONS)]
        )
    finally:
        await admin.close()
    assert partitions == TOPICS
    entries = {c[0]: c[1] for c in config.resources[0][4]}
    assert entries["cleanup.policy"] == "compact"


async def test_a_topic_the_broker_refuses_to_create_is_an_error_not_silence(infra):
    with pytest.raises(RuntimeError, match="could not create topics"):
        await ensure_topics(infra.bootstrap_servers, {f"itsm.test-{uuid.uuid4().hex}": 0})
