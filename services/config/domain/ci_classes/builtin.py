"""The built-in CI classes every tenant has, and `CiClass`, a class with its schema.

Their schemas forbid attributes they do not define (`additionalProperties: false`), so a typo
such as `hostnme` is a 422 naming it instead of an attribute silently stored and never found
again. A tenant that needs more attributes defines a class of its own whose schema starts from
a copy of the built-in one; built-in names are reserved.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType
from typing import Any

from services.config.domain.ci_classes.schema_rules import DIALECT, schema_fingerprint

CLASS_NAME = re.compile(r"^[a-z][a-z0-9_]{1,62}$")
BUILTIN_VERSION = 1


def _text(max_length: int = 200, description: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": max_length}
    if description:
        schema["description"] = description
    return schema


def _enum(values: Sequence[str], description: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "enum": list(values)}
    if description:
        schema["description"] = description
    return schema


def _ip_address(description: str) -> dict[str, Any]:
    return {
        "type": "string",
        "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}],
        "description": description,
    }


def _ip_addresses() -> dict[str, Any]:
    return {
        "type": "array",
        "items": _ip_address("an IPv4 or IPv6 address"),
        "uniqueItems": True,
        "maxItems": 64,
        "description": "the addresses it answers on",
    }


def _hostname() -> dict[str, Any]:
    label = "[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    return {
        "type": "string",
        "maxLength": 253,
        "pattern": f"^{label}(\\.{label})*$",
        "description": "host name or fully qualified domain name (RFC 1123)",
    }


def _environment() -> dict[str, Any]:
    return _enum(("production", "staging", "test", "development"))


def _class(
    description: str, required: Sequence[str], properties: Mapping[str, Any]
) -> dict[str, Any]:
    assert set(required) <= set(properties)
    return {
        "$schema": DIALECT,
        "description": description,
        "type": "object",
        "required": list(required),
        "properties": dict(properties),
        "additionalProperties": False,
    }


_BUILTINS: dict[str, dict[str, Any]] = {
    "business_service": _class(
        "A service the provider delivers to a customer, with its availability target",
        ["owner", "customer", "availability_target"],
        {
            "owner": _text(description="team or person accountable for the service"),
            "customer": _text(description="the customer the service is delivered to"),
            "availability_target": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 100,
                "description": "agreed availability in percent, e.g. 99.9",
            },
            "service_hours": _text(description="when the service is provided, e.g. 24x7"),
            "description": _text(2000),
            "support_email": {"type": "string", "format": "email"},
            "documentation_url": {"type": "string", "format": "uri"},
        },
    ),
    "application": _class(
        "Software that provides or supports a business service",
        ["environment"],
        {
            "vendor": _text(),
            "version": _text(64),
            "environment": _environment(),
            "repository_url": {"type": "string", "format": "uri"},
            "support_email": {"type": "string", "format": "email"},
        },
    ),
    "database": _class(
        "A database instance",
        ["engine", "port"],
        {
            "engine": _enum(
                (
                    "postgresql",
                    "mysql",
                    "mariadb",
                    "oracle",
                    "sqlserver",
                    "db2",
                    "mongodb",
                    "redis",
                    "cassandra",
                    "elasticsearch",
                    "other",
                )
            ),
            "version": _text(64),
            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
            "instance_name": _text(128),
            "environment": _environment(),
        },
    ),
    "server": _class(
        "A physical server",
        ["hostname", "environment"],
        {
            "hostname": _hostname(),
            "ip_addresses": _ip_addresses(),
            "os": _text(100, "operating system, e.g. Ubuntu"),
            "os_version": _text(64),
            "cpu_cores": {"type": "integer", "minimum": 1},
            "memory_gib": {"type": "number", "exclusiveMinimum": 0},
            "serial_number": _text(100),
            "environment": _environment(),
        },
    ),
    "virtual_machine": _class(
        "A virtual machine on a hypervisor or in a cloud",
        ["hostname", "environment"],
        {
            "hostname": _hostname(),
            "ip_addresses": _ip_addresses(),
            "os": _text(100, "operating system, e.g. Ubuntu"),
            "os_version": _text(64),
            "vcpus": {"type": "integer", "minimum": 1},
            "memory_gib": {"type": "number", "exclusiveMinimum": 0},
            "hypervisor": _enum(("vmware", "hyper_v", "kvm", "xen", "nutanix_ahv", "other")),
            "environment": _environment(),
        },
    ),
    "container_workload": _class(
        "A workload of containers on a cluster, e.g. a Kubernetes deployment",
        ["cluster", "namespace", "image"],
        {
            "cluster": _text(),
            "namespace": {
                "type": "string",
                "maxLength": 63,
                "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
                "description": "Kubernetes namespace (an RFC 1123 label)",
            },
            "image": _text(512, "image reference, e.g. registry.example/app:1.4.2"),
            "replicas": {"type": "integer", "minimum": 0},
            "kind": _enum(("deployment", "statefulset", "daemonset", "job", "cronjob", "other")),
            "environment": _environment(),
        },
    ),
    "network_device": _class(
        "A router, switch, firewall, load balancer or other network device",
        ["vendor", "management_ip", "role"],
        {
            "vendor": _text(),
            "model": _text(),
            "management_ip": _ip_address("the address it is managed on"),
            "role": _enum(
                (
                    "router",
                    "switch",
                    "firewall",
                    "load_balancer",
                    "wireless_controller",
                    "access_point",
                    "other",
                )
            ),
            "firmware_version": _text(64),
            "serial_number": _text(100),
        },
    ),
    "storage": _class(
        "A storage system or volume",
        ["storage_type", "capacity_gib"],
        {
            "storage_type": _enum(("block", "file", "object")),
            "vendor": _text(),
            "model": _text(),
            "capacity_gib": {"type": "number", "exclusiveMinimum": 0},
            "protocol": _enum(("fc", "iscsi", "nvme_of", "nfs", "smb", "s3", "other")),
            "environment": _environment(),
        },
    ),
    "cloud_resource": _class(
        "A resource of a public cloud provider",
        ["provider", "region", "resource_type", "account_id"],
        {
            "provider": _enum(("aws", "azure", "gcp", "other")),
            "region": _text(64, "e.g. eu-west-1, westeurope, europe-west1"),
            "resource_type": _text(description="e.g. AWS::RDS::DBInstance"),
            "account_id": _text(128, "AWS account, Azure subscription or GCP project"),
            "resource_id": _text(2048, "the provider's id of it, e.g. an ARN"),
            "tags": {
                "type": "object",
                "maxProperties": 50,
                "propertyNames": {"minLength": 1, "maxLength": 128},
                "additionalProperties": {"type": "string", "maxLength": 256},
            },
            "environment": _environment(),
        },
    ),
    "location": _class(
        "A site: data centre, office or colocation",
        ["site_code", "country"],
        {
            "site_code": {
                "type": "string",
                "pattern": "^[A-Z0-9][A-Z0-9-]{1,15}$",
                "description": "short upper-case code, e.g. FRA-2",
            },
            "kind": _enum(("data_center", "office", "colocation", "other")),
            "address": _text(500),
            "city": _text(100),
            "country": {
                "type": "string",
                "pattern": "^[A-Z]{2}$",
                "description": "ISO 3166-1 alpha-2 code, e.g. DE",
            },
            "time_zone": _text(64, "IANA time zone, e.g. Europe/Berlin"),
        },
    ),
}

# Schemas of the built-in classes by name. Shared by every caller: treat them as read-only.
BUILTIN_CLASSES: Mapping[str, dict[str, Any]] = MappingProxyType(_BUILTINS)


@dataclass(frozen=True)
class CiClass:
    """A CI class: a name and the schema of its CIs' attributes. Treat `schema` as read-only."""

    name: str
    schema: dict[str, Any]
    builtin: bool = False
    version: int = 1
    description: str = ""

    def __post_init__(self) -> None:
        if not CLASS_NAME.match(self.name):
            raise ValueError(f"class name {self.name!r} does not match {CLASS_NAME.pattern}")
        if self.version < 1:
            raise ValueError(f"class version must be at least 1, not {self.version}")

    @cached_property
    def fingerprint(self) -> str:
        """The schema's content hash, computed once: the key of its compiled validator."""
        return schema_fingerprint(self.schema)


def builtin_class(name: str) -> CiClass:
    """The built-in class of that name (KeyError if there is none)."""
    schema = BUILTIN_CLASSES[name]
    return CiClass(name, schema, True, BUILTIN_VERSION, schema["description"])


def is_valid_class_name(name: str) -> bool:
    """Whether `name` may name a class: lower-case letters, digits and `_`, 2–63 long."""
    return bool(CLASS_NAME.match(name))
