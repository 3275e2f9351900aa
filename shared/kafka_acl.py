"""Who may do what on Kafka: each service's user and the ACLs it needs, derived from the service
registry and the event catalogue, the one place every deployment reads them from (the local
broker's authorizer test, the Strimzi `KafkaUser`s in deploy/k8s/, deploy/kafka/PRODUCTION.md).

A service's user may write only the topics its events go to (its own topic, the revocations for
the config service) and the dead-letter topic when it consumes; it may read only the topics it
consumes and the revocations (every process follows those, without a consumer group), and join
only its own consumer groups. The admin user creates the platform's topics and nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import for_code
from aiokafka.protocol.admin import (
    CreateAclsRequest_v1,
    DeleteAclsRequest_v1,
    DescribeAclsRequest,
)
from aiokafka.protocol.api import Request

from shared.events.catalogue import AUTH_REVOCATIONS, CATALOGUE
from shared.kafka import (
    DEAD_LETTER_TOPIC,
    add_connection_arguments,
    client_config,
    connection_from,
)
from shared.registry import SERVICES, RegisteredService

log = logging.getLogger(__name__)

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


# --------------------------------------------------------------------------- on the wire

# The codes of Kafka's admin protocol (org.apache.kafka.common.resource.ResourceType,
# PatternType and org.apache.kafka.common.acl.AclOperation, AclPermissionType).
_RESOURCE_CODES: dict[ResourceType, int] = {"topic": 2, "group": 3, "cluster": 4}
_PATTERN_CODES: dict[PatternType, int] = {"literal": 3, "prefixed": 4}
_OPERATION_CODES: dict[Operation, int] = {"Read": 3, "Write": 4, "Create": 5, "Describe": 8}
_RESOURCE_NAMES: dict[int, str] = {v: k for k, v in _RESOURCE_CODES.items()}
_PATTERN_NAMES: dict[int, str] = {v: k for k, v in _PATTERN_CODES.items()}
_OPERATION_NAMES: dict[int, str] = {v: k for k, v in _OPERATION_CODES.items()}
_ANY = 1
_ALLOW = 3
_ANY_HOST = "*"


@dataclass(frozen=True, order=True)
class AclBinding:
    """One ACL as the broker stores it: an ALLOW of one operation on one resource pattern."""

    resource_type: int
    name: str
    pattern: int
    principal: str
    host: str
    operation: int
    permission: int

    def describe(self) -> str:
        """A readable form, for logs and the CLI's output."""
        resource = _RESOURCE_NAMES.get(self.resource_type, f"resource-{self.resource_type}")
        pattern = _PATTERN_NAMES.get(self.pattern, f"pattern-{self.pattern}")
        operation = _OPERATION_NAMES.get(self.operation, f"operation-{self.operation}")
        verdict = "ALLOW" if self.permission == _ALLOW else f"permission-{self.permission}"
        return (
            f"{self.principal} {verdict} {operation} on {resource} {self.name!r} ({pattern}) "
            f"from {self.host}"
        )


def bindings(acls: Iterable[KafkaAcl]) -> list[AclBinding]:
    """The broker's form of the rules: one binding per operation, from any host, no duplicates
    (config's two rules on the revocations both allow Describe)."""
    found = {
        AclBinding(
            _RESOURCE_CODES[acl.resource_type],
            acl.name,
            _PATTERN_CODES[acl.pattern],
            acl.principal,
            _ANY_HOST,
            _OPERATION_CODES[operation],
            _ALLOW,
        )
        for acl in acls
        for operation in acl.operations
    }
    return sorted(found)


class _CreateAcls(Request[CreateAclsRequest_v1]):  # type: ignore[misc]  # aiokafka is untyped
    """CreateAcls (API 30) with many creations in one request (aiokafka's sends one)."""

    API_KEY = 30

    def __init__(self, creations: list[AclBinding]) -> None:
        self._creations = creations

    def build(self, request_struct_class: type[CreateAclsRequest_v1]) -> CreateAclsRequest_v1:
        return request_struct_class(
            [
                (b.resource_type, b.name, b.pattern, b.principal, b.host, b.operation, b.permission)
                for b in self._creations
            ]
        )


class _DeleteAcls(Request[DeleteAclsRequest_v1]):  # type: ignore[misc]
    """DeleteAcls (API 31), one exact filter per binding."""

    API_KEY = 31

    def __init__(self, filters: list[AclBinding]) -> None:
        self._filters = filters

    def build(self, request_struct_class: type[DeleteAclsRequest_v1]) -> DeleteAclsRequest_v1:
        return request_struct_class(
            [
                (b.resource_type, b.name, b.pattern, b.principal, b.host, b.operation, b.permission)
                for b in self._filters
            ]
        )


class AclError(RuntimeError):
    """The broker refused to list, create or delete ACLs; the message says what and why."""


def _raise_for(code: int, message: str | None, doing: str) -> None:
    if code:
        error = for_code(code)
        raise AclError(f"{doing}: {error.__name__} ({message or error.description})")


async def _send(client: AIOKafkaClient, request: Request[Any]) -> Any:
    return await client.send(client.get_random_node(), request)


async def _existing(client: AIOKafkaClient) -> list[AclBinding]:
    request = DescribeAclsRequest(
        resource_type=_ANY,
        resource_name=None,  # null: any name
        resource_pattern_type_filter=_ANY,
        principal=None,
        host=None,
        operation=_ANY,
        permission_type=_ANY,
    )
    response = await _send(client, request)
    _raise_for(response.error_code, response.error_message, "listing the ACLs")
    return sorted(
        AclBinding(resource_type, name, pattern, principal, host, operation, permission)
        for resource_type, name, pattern, entries in response.resources
        for principal, host, operation, permission in entries
    )


@dataclass(frozen=True)
class AclChanges:
    """What apply_acls() did: the bindings it created, those it deleted (with `prune`), and
    those of the platform's users it found beyond the wanted ones and left (without it)."""

    created: list[AclBinding]
    deleted: list[AclBinding]
    unexpected: list[AclBinding]


async def apply_acls(
    bootstrap_servers: str,
    acls: Iterable[KafkaAcl] | None = None,
    *,
    security: Mapping[str, Any] | None = None,
    prune: bool = False,
    settle_timeout: float = 30.0,
) -> AclChanges:
    """Make the cluster hold the ACLs (default all_acls()): create the missing bindings; with
    `prune`, delete any other binding of the same users, so they hold exactly these.

    Returns once the broker shows the changes (AclError after `settle_timeout` seconds).
    Idempotent: a second run creates nothing. `security` (see shared.kafka.client_config) must
    log in as a user that may alter the cluster's ACLs (a super user, or Alter on the cluster).
    A broker without an authorizer answers SecurityDisabled, raised as AclError.
    """
    wanted = bindings(all_acls() if acls is None else acls)
    principals = {b.principal for b in wanted}
    client = AIOKafkaClient(**client_config(bootstrap_servers, "itsm-acl-apply", security))
    await client.bootstrap()
    try:
        existing = set(await _existing(client))
        missing = [b for b in wanted if b not in existing]
        others = sorted(b for b in existing if b.principal in principals and b not in wanted)
        if missing:
            response = await _send(client, _CreateAcls(missing))
            for binding, (code, message) in zip(missing, response.creation_responses, strict=True):
                _raise_for(code, message, f"creating {binding.describe()}")
            log.info("created ACLs", extra={"acls": [b.describe() for b in missing]})
        deleted: list[AclBinding] = []
        if prune and others:
            response = await _send(client, _DeleteAcls(others))
            for binding, (code, message, _matched) in zip(
                others, response.filter_responses, strict=True
            ):
                _raise_for(code, message, f"deleting {binding.describe()}")
            deleted = others
            log.info("deleted ACLs", extra={"acls": [b.describe() for b in deleted]})
        if missing or deleted:
            await _until_in_effect(client, set(wanted), set(deleted), settle_timeout)
        return AclChanges(missing, deleted, [] if prune else others)
    finally:
        await client.close()


async def _until_in_effect(
    client: AIOKafkaClient, present: set[AclBinding], absent: set[AclBinding], limit_s: float
) -> None:
    # The controller commits a change before it answers; the broker's authorizer, which
    # DescribeAcls reads, applies it a moment later. A caller that goes on to use the rules (the
    # admin creating topics right after) must not race that.
    deadline = time.monotonic() + limit_s
    while True:
        held = set(await _existing(client))
        if present <= held and not absent & held:
            return
        if time.monotonic() > deadline:
            raise AclError(f"the broker did not show the ACL changes within {limit_s:.0f}s")
        await asyncio.sleep(0.1)


async def current_acls(
    bootstrap_servers: str, *, security: Mapping[str, Any] | None = None
) -> list[AclBinding]:
    """Every ACL binding the cluster holds (the user needs Describe on the cluster)."""
    client = AIOKafkaClient(**client_config(bootstrap_servers, "itsm-acl-list", security))
    await client.bootstrap()
    try:
        return await _existing(client)
    finally:
        await client.close()


# --------------------------------------------------------------------------- documents


def markdown_table() -> str:
    """The ACL table of deploy/kafka/PRODUCTION.md: per user, what it writes, reads, joins."""
    rows = ["| user | topics it writes | topics it reads | consumer groups |", "|---|---|---|---|"]

    def cell(names: Iterable[str]) -> str:
        listed = [f"`{name}`" for name in names]
        return ", ".join(listed) or "—"

    for entry in SERVICES:
        rows.append(
            f"| `{kafka_user(entry.name)}` | {cell(writes(entry))} | {cell(reads(entry))} "
            f"| {cell(entry.consumer_groups)} |"
        )
    rows.append(f"| `{ADMIN_USER}` | — (creates the `{TOPIC_PREFIX}` topics) | — | — |")
    return "\n".join(rows)


def kafka_acls_script(bootstrap: str = "kafka-1.example:9093") -> str:
    """The same ACLs as `kafka-acls.sh` commands, one rule a line, for clusters managed by hand
    (`python -m shared.kafka_acl apply` does the same through the admin protocol)."""
    lines = [
        "acl() { kafka-acls.sh --bootstrap-server "
        f'{bootstrap} --command-config admin.properties --add "$@"; }}',
    ]
    for acl in all_acls():
        resource = {"topic": "--topic", "group": "--group", "cluster": "--cluster"}
        target = (
            resource[acl.resource_type]
            if acl.resource_type == "cluster"
            else f"{resource[acl.resource_type]} {acl.name}"
        )
        operations = " ".join(f"--operation {operation}" for operation in acl.operations)
        pattern = " --resource-pattern-type prefixed" if acl.pattern == "prefixed" else ""
        if not lines[-1].startswith(f"acl --allow-principal {acl.principal} ") and len(lines) > 1:
            lines.append("")
        lines.append(f"acl --allow-principal {acl.principal} {operations} {target}{pattern}")
    return "\n".join(["```sh", *lines, "```"])


def markdown() -> str:
    """PRODUCTION.md's generated ACL block: the table, then the `kafka-acls.sh` commands."""
    return markdown_table() + "\n\n" + kafka_acls_script()


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m shared.kafka_acl print|markdown|apply [--prune]`.

    `print` lists every ALLOW rule, `markdown` renders PRODUCTION.md's table and commands,
    `apply` creates the missing ACLs on a cluster (and with `--prune` deletes the platform
    users' others) as the user of KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD, who must be a
    super user or have Alter on the cluster; the connection as for
    `python -m shared.kafka create-topics`.
    """
    parser = argparse.ArgumentParser(prog="python -m shared.kafka_acl")
    parser.add_argument("command", choices=["print", "markdown", "apply"])
    parser.add_argument(
        "--prune",
        action="store_true",
        help="apply: also delete the platform users' ACLs that are not in the set",
    )
    add_connection_arguments(parser)
    args = parser.parse_args(argv)
    if args.command == "print":
        print("\n".join(binding.describe() for binding in bindings(all_acls())))
        return 0
    if args.command == "markdown":
        print(markdown())
        return 0
    bootstrap, security = connection_from(parser, args)
    try:
        changes = asyncio.run(apply_acls(bootstrap, security=security, prune=args.prune))
    except AclError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for label, found in (("created", changes.created), ("deleted", changes.deleted)):
        print(f"{label}: {len(found)}" + "".join(f"\n  {b.describe()}" for b in found))
    if changes.unexpected:
        print(
            f"left (not in the set; --prune deletes them): {len(changes.unexpected)}"
            + "".join(f"\n  {b.describe()}" for b in changes.unexpected)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
