"""shared/kafka_acl.py gives each service's Kafka user exactly what its code uses: its own
topics to write, its subscriptions and the revocations to read, its own consumer groups."""

from pathlib import Path

import pytest

from shared.devstack.kafka import LocalKafka
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
    bindings,
    kafka_acls_script,
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


def test_the_broker_form_is_one_allow_per_operation_from_any_host_without_duplicates():
    found = bindings(all_acls())
    assert len(found) == len(set(found))
    assert all(b.permission == 3 and b.host == "*" for b in found)  # ALLOW, any host
    # config's write and read rules on the revocations both allow Describe: one binding (as
    # reporting's on its own topic).
    config_revocations = [
        b for b in found if b.principal == "User:itsm-config" and b.name == AUTH_REVOCATIONS
    ]
    assert sorted(b.describe().split()[2] for b in config_revocations) == [
        "Describe",
        "Read",
        "Write",
    ]
    rules = {
        (a.principal, a.resource_type, a.name, a.pattern, op)
        for a in all_acls()
        for op in a.operations
    }
    assert len(found) == len(rules)


def test_the_kafka_acls_commands_grant_each_rule_once():
    lines = [line for line in kafka_acls_script().splitlines() if line.startswith("acl --")]
    assert len(lines) == len(all_acls())
    assert (
        "acl --allow-principal User:itsm-admin --operation Create --operation Describe "
        "--topic itsm. --resource-pattern-type prefixed"
    ) in lines


def test_a_broker_with_acls_has_an_authorizer_and_only_its_own_user_as_super_user(tmp_path):
    broker = LocalKafka(tmp_path, scram_users={"itsm-broker": "b", "itsm-admin": "a"}, acls=True)
    broker._write_properties()
    props = dict(
        line.split("=", 1)
        for line in broker.properties_file.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert props["authorizer.class.name"].endswith(".StandardAuthorizer")
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == "User:itsm-broker"
    # No PLAINTEXT listener: its principal, User:ANONYMOUS, would have to be a super user.
    assert "PLAINTEXT:PLAINTEXT" not in props["listener.security.protocol.map"]
    assert "CONTROLLER:SASL_PLAINTEXT" in props["listener.security.protocol.map"]
    assert props["sasl.mechanism.controller.protocol"] == "PLAIN"


def test_acls_need_scram_users():
    with pytest.raises(ValueError, match="scram_users"):
        LocalKafka(Path("unused"), acls=True)
