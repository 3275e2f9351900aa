"""Who may do what on Kafka: each service's user and the ACLs it needs, derived from the service
registry and the event catalogue, the one place every deployment reads them from (the local
broker's authorizer test, the Strimzi `KafkaUser`s in deploy/k8s/, deploy/kafka/PRODUCTION.md).

A service's user may write only the topics its events go to (its own topic, the revocations for
the config service) and the dead-letter topic when it consumes; it may read only the topics it
consumes and the revocations (every process follows those, without a consumer group), and join
only its own consumer groups. The admin user creates the platform's topics and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from shared.events.catalogue import AUTH_REVOCATIONS, CATALOGUE
from shared.kafka import DEAD_LETTER_TOPIC
from shared.registry import SERVICES, RegisteredService

ADMIN_USER = "itsm-admin"
# The prefix every platform topic starts with: what the admin user may create.
TOPIC_PREFIX = "itsm."

ResourceType = Literal["topic", "group", "cluster"]
PatternType = Literal["literal", "prefixed"]
Operation = Literal["Read", "Write", "Describe", "Create"]


@dataclass(frozen=True)
class KafkaAcl:
    """One ALLOW rule: `user` may do `operations` on the resource (any host)."""

    user: str
    resource_type: ResourceType
    name: str
    operations: tuple[Operation, ...]
    pattern: PatternType = "literal"

    @property
    def principal(self) -> str:
        """The principal as Kafka writes it, `User:<name>`."""
        return f"User:{self.user}"


def kafka_user(service: str) -> str:
    """The SCRAM user of a service (its processes and its relay log in as it)."""
    return f"itsm-{service}"


def writes(entry: RegisteredService) -> tuple[str, ...]:
    """The topics a service's processes write: where its catalogued events go, and the
    dead-letter topic when it has consumers (they park records they cannot apply there)."""
    source = f"itsm/{entry.name}"
    topics = {spec.topic for spec in CATALOGUE.values() if spec.source == source}
    if entry.publishes is not None:
        topics.add(entry.publishes)
    if entry.consumes:
        topics.add(DEAD_LETTER_TOPIC)
    return tuple(sorted(topics))


def reads(entry: RegisteredService) -> tuple[str, ...]:
    """The topics a service's processes read: what its consumers subscribe to, and the token
    revocations, which every process follows from the beginning without a group."""
    return tuple(sorted({*entry.consumes, AUTH_REVOCATIONS}))


def service_acls(entry: RegisteredService) -> list[KafkaAcl]:
    """Every ALLOW rule a service's user needs, and no other."""
    user = kafka_user(entry.name)
    acls = [KafkaAcl(user, "topic", topic, ("Write", "Describe")) for topic in writes(entry)]
    acls += [KafkaAcl(user, "topic", topic, ("Read", "Describe")) for topic in reads(entry)]
    acls += [KafkaAcl(user, "group", group, ("Read",)) for group in entry.consumer_groups]
    return acls


def admin_acls() -> list[KafkaAcl]:
    """The deploy step's user: create and describe the platform's topics, nothing else."""
    return [KafkaAcl(ADMIN_USER, "topic", TOPIC_PREFIX, ("Create", "Describe"), "prefixed")]


def all_acls() -> list[KafkaAcl]:
    """The ACLs of every registered service and of the admin user."""
    return [acl for entry in SERVICES for acl in service_acls(entry)] + admin_acls()
