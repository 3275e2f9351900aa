"""shared/kafka_acl.py gives each service's Kafka user exactly what its code uses: its own
topics to write, its subscriptions and the revocations to read, its own consumer groups."""

import pytest

from shared.events.catalogue import (
    AUTH_REVOCATIONS,
    CHANGE_EVENTS,
    CONFIG_EVENTS,
    INCIDENT_EVENTS,
    REPORTING_EVENTS,
)
from shared.kafka import DEAD_LETTER_TOPIC, TOPICS
from shared.kafka_acl import (
    ADMIN_USER,
    admin_acls,
    all_acls,
    kafka_user,
    reads,
    service_acls,
    writes,
)
from shared.registry import SERVICE_NAMES, SERVICES, service


def test_the_config_service_writes_its_events_the_revocations_and_dead_letters():
    assert writes(service("config")) == tuple(
        sorted((CONFIG_EVENTS, AUTH_REVOCATIONS, DEAD_LETTER_TOPIC))
    )


def test_no_service_may_write_another_services_topic():
    for entry in SERVICES:
        others = {e.publishes for e in SERVICES if e is not entry}
        assert not set(writes(entry)) & others, entry.name


def test_every_service_reads_the_revocations_and_what_it_consumes_and_nothing_else():
    assert reads(service("incident")) == tuple(
        sorted((CONFIG_EVENTS, CHANGE_EVENTS, AUTH_REVOCATIONS))
    )
    assert set(reads(service("reporting"))) == {
        INCIDENT_EVENTS,
        CHANGE_EVENTS,
        CONFIG_EVENTS,
        REPORTING_EVENTS,
        AUTH_REVOCATIONS,
    }


@pytest.mark.parametrize("entry", SERVICES, ids=SERVICE_NAMES)
def test_a_services_acls_name_only_its_own_user_its_groups_and_platform_topics(entry):
    acls = service_acls(entry)
    assert {acl.user for acl in acls} == {kafka_user(entry.name)}
    groups = {acl.name for acl in acls if acl.resource_type == "group"}
    assert groups == set(entry.consumer_groups)
    topics = {acl.name for acl in acls if acl.resource_type == "topic"}
    assert topics <= set(TOPICS)
    assert all(acl.pattern == "literal" for acl in acls)


def test_the_admin_may_only_create_and_describe_platform_topics():
    [acl] = admin_acls()
    assert acl.user == ADMIN_USER and acl.principal == "User:itsm-admin"
    assert (acl.resource_type, acl.name, acl.pattern) == ("topic", "itsm.", "prefixed")
    assert set(acl.operations) == {"Create", "Describe"}
    assert len(all_acls()) == sum(len(service_acls(e)) for e in SERVICES) + 1
