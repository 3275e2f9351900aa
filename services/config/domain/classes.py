"""CI classes: the JSON Schema (Draft 2020-12) that the `attributes` of every CI of a class obey.

Two kinds of class:

- **Built-in** classes (`BUILTIN_CLASSES`): the ten every tenant has. Their schemas forbid
  attributes they do not define (`additionalProperties: false`), so a typo such as `hostnme`
  is a 422 naming it instead of an attribute silently stored and never found again. A tenant
  that needs more attributes defines a class of its own (for example `linux_server`) whose
  schema starts from a copy of the built-in one; built-in names are reserved.
- **Tenant** classes: any schema that `validate_class_schema` accepts. A tenant writes a schema
  once and every CI it imports is validated against it, so the rules keep each validation
  cheap and offline: an object schema, only local `$ref`s (`#/...`, resolving inside the
  schema, never recursive; nothing is ever fetched), bounded size, property count, nesting and
  `$ref` expansion, only the formats checked here (others would pass silently), and `pattern`s
  that compile in Python (which runs them), use no syntax that ECMA-262 (which JSON Schema
  specifies) lacks, and do not repeat an ambiguous group without bound, the shape that makes
  backtracking explode (a heuristic: it catches the classic shapes, it proves nothing).

`validate_attributes` reports every problem of a CI's attributes as a field path under
`attributes.` and a message, in a stable order; `problem_errors` turns them into the `errors`
of a problem+json body. Compiled validators are cached by the schema's content (its
fingerprint), not by class name and version: two tenants may each have a `rack` class at
version 1 with different schemas.
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import json
import math
import numbers
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import cached_property
from types import MappingProxyType
from typing import Any, NamedTuple, TypeVar
from urllib.parse import quote, unquote, urlsplit

from jsonschema import Draft202012Validator, FormatChecker, SchemaError, ValidationError
from jsonschema.protocols import Validator
from referencing import Registry
from referencing.jsonschema import SchemaRegistry

CLASS_NAME = re.compile(r"^[a-z][a-z0-9_]{1,62}$")
BUILTIN_VERSION = 1
DIALECT = "https://json-schema.org/draft/2020-12/schema"

ATTRIBUTES_FIELD = "attributes"  # where a CI's attributes sit in request bodies
SCHEMA_FIELD = "attribute_schema"  # where a class's schema sits in request bodies

# Limits on tenant schemas: each keeps a single validation cheap (see the module docstring).
MAX_SCHEMA_BYTES = 64 * 1024
MAX_PROPERTIES = 200
MAX_SCHEMA_DEPTH = 10  # subschemas below the top one, `$ref`s counted as if written inline
MAX_EXPANDED_SUBSCHEMAS = 2_000  # subschemas once every `$ref` is expanded
MAX_PATTERN_LENGTH = 500
MAX_JSON_DEPTH = 64  # any JSON nesting (enum values too); guards the recursive checks after it

CACHE_SIZE = 512


# --- formats -----------------------------------------------------------------------------------
# Our own checkers, so that what is checked does not depend on which optional packages happen
# to be installed: without them jsonschema silently passes `date-time` and `uri`.

FORMAT_CHECKER = FormatChecker(formats=())
_NO_FORMATS = FormatChecker(formats=())

_DATE_TIME = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}:\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$", re.ASCII
)
_UUID = re.compile(r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$", re.ASCII)
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s<>\"{}|\\^`]*$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s.][^@\s]*$")


@FORMAT_CHECKER.checks("ipv4")
def _is_ipv4(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return True


@FORMAT_CHECKER.checks("ipv6")
def _is_ipv6(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        address = ipaddress.IPv6Address(value)
    except ValueError:
        return False
    return address.scope_id is None  # a zone (`%eth0`) only means something on one host


@FORMAT_CHECKER.checks("date-time")
def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    match = _DATE_TIME.match(value)
    if not match:
        return False
    day, time, _, offset = match.groups()
    try:  # the ranges of every part (any number of fraction digits is fine: left out here)
        datetime.fromisoformat(f"{day}T{time}{'+00:00' if offset in 'Zz' else offset}")
    except ValueError:
        return False
    return True


@FORMAT_CHECKER.checks("date")
def _is_date(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _DATE.match(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


@FORMAT_CHECKER.checks("email")
def _is_email(value: object) -> bool:
    return not isinstance(value, str) or bool(_EMAIL.match(value))


@FORMAT_CHECKER.checks("uri")
def _is_uri(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _URI.match(value):
        return False
    try:
        urlsplit(value)
    except ValueError:  # e.g. an unbalanced `[` in the host
        return False
    return True


@FORMAT_CHECKER.checks("uuid")
def _is_uuid(value: object) -> bool:
    return not isinstance(value, str) or bool(_UUID.match(value))


FORMATS: Mapping[str, str] = MappingProxyType(
    {
        "date": "a date (YYYY-MM-DD)",
        "date-time": "an RFC 3339 date-time such as 2025-01-31T09:00:00Z",
        "email": "an email address",
        "ipv4": "an IPv4 address",
        "ipv6": "an IPv6 address",
        "uri": "an absolute URI",
        "uuid": "a UUID",
    }
)
assert set(FORMATS) == set(FORMAT_CHECKER.checkers)


# --- built-in classes --------------------------------------------------------------------------


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


# --- classes and problems ----------------------------------------------------------------------


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

    def validate(self, attributes: Mapping[str, Any]) -> list[AttributeProblem]:
        """`validate_attributes` for this class, without re-hashing its schema each time."""
        return validate_with(_VALIDATORS.get(self.fingerprint, self.schema), attributes)


def builtin_class(name: str) -> CiClass:
    """The built-in class of that name (KeyError if there is none)."""
    schema = BUILTIN_CLASSES[name]
    return CiClass(name, schema, True, BUILTIN_VERSION, schema["description"])


def is_valid_class_name(name: str) -> bool:
    """Whether `name` may name a class: lower-case letters, digits and `_`, 2–63 long."""
    return bool(CLASS_NAME.match(name))


Path = tuple[str | int, ...]


@dataclass(frozen=True)
class FieldProblem:
    """Something wrong at one place of a request body: a dotted `field` and a message."""

    field: str
    detail: str
    path: Path = ()  # the same place as tokens, for a JSON pointer (names may contain dots)

    @property
    def pointer(self) -> str:
        """The place as a JSON pointer in URI fragment form, e.g. `#/attributes/port`."""
        tokens = (str(t).replace("~", "~0").replace("/", "~1") for t in self.path)
        return "#/" + "/".join(quote(t, safe="!$&'()*+,;=:@-._~") for t in tokens)


@dataclass(frozen=True)
class AttributeProblem(FieldProblem):
    """An attribute of a CI that breaks its class schema (`field` starts with `attributes`)."""


@dataclass(frozen=True)
class SchemaProblem(FieldProblem):
    """A part of a class schema the service refuses (`field` starts with `attribute_schema`)."""


P = TypeVar("P", bound=FieldProblem)


def _problem_at(cls: type[P], path: Path, detail: str) -> P:
    return cls(".".join(str(t) for t in path), detail, path)


class ClassSchemaError(ValueError):
    """A class schema refused: `problems` as readable lines, `schema_problems` with their places."""

    def __init__(self, problems: Sequence[SchemaProblem]) -> None:
        self.schema_problems = tuple(problems)
        self.problems = [f"{p.field}: {p.detail}" for p in self.schema_problems]
        super().__init__("; ".join(self.problems))


def problem_errors(problems: Iterable[FieldProblem]) -> list[dict[str, str]]:
    """The `errors` of a 422 problem+json body, in the shape `shared.http.problems` renders."""
    return [
        {"in": "body", "field": p.field, "detail": p.detail, "pointer": p.pointer} for p in problems
    ]


# --- tenant schemas ----------------------------------------------------------------------------

# Keywords whose value is a subschema, a list of them, or an object of them (Draft 2020-12).
_ONE_SUBSCHEMA = (
    "not",
    "if",
    "then",
    "else",
    "items",
    "contains",
    "additionalProperties",
    "unevaluatedProperties",
    "unevaluatedItems",
    "propertyNames",
    "contentSchema",
)
_LIST_OF_SUBSCHEMAS = ("allOf", "anyOf", "oneOf", "prefixItems")
_OBJECT_OF_SUBSCHEMAS = ("properties", "patternProperties", "dependentSchemas", "$defs")
_REFERENCES = ("$ref", "$dynamicRef")


def validate_class_schema(schema: dict[str, Any]) -> None:
    """Accept a tenant's attribute schema, or raise ClassSchemaError with every reason."""
    problems = _json_problems(schema)
    if not problems:
        size = len(_canonical(schema).encode())
        if size > MAX_SCHEMA_BYTES:
            problems.append(
                _problem_at(
                    SchemaProblem,
                    (SCHEMA_FIELD,),
                    f"is {size} bytes long; at most {MAX_SCHEMA_BYTES} are allowed",
                )
            )
    if problems:  # the other checks assume a small JSON object
        raise ClassSchemaError(problems)

    try:
        # No format checks against the meta-schema: `pattern`s are checked below, better worded.
        Draft202012Validator.check_schema(schema, format_checker=_NO_FORMATS)
    except SchemaError as exc:
        where = (SCHEMA_FIELD, *exc.absolute_path)
        detail = f"is not valid JSON Schema: {_show(exc.message, 200)}"
        problems.append(_problem_at(SchemaProblem, where, detail))

    if schema.get("type") != "object":
        problems.append(
            _problem_at(
                SchemaProblem, (SCHEMA_FIELD, "type"), 'must be "object": attributes are an object'
            )
        )
    dialect = schema.get("$schema", DIALECT)
    if not isinstance(dialect, str) or dialect.rstrip("#") != DIALECT:
        problems.append(
            _problem_at(SchemaProblem, (SCHEMA_FIELD, "$schema"), f"must be {DIALECT} when given")
        )

    walk = _Walk(schema)
    problems.extend(walk.problems)
    if walk.property_count > MAX_PROPERTIES:
        problems.append(
            _problem_at(
                SchemaProblem,
                (SCHEMA_FIELD,),
                f"defines {walk.property_count} properties; at most {MAX_PROPERTIES} are allowed",
            )
        )
    if not walk.problems:  # references all resolve: measure the schema with them expanded
        problems.extend(walk.expansion_problems())
    if problems:
        raise ClassSchemaError(problems)


def _json_problems(schema: object) -> list[SchemaProblem]:
    """Whether the schema is JSON data of bounded nesting (iteratively: no recursion limit)."""
    if not isinstance(schema, dict):
        return [_problem_at(SchemaProblem, (SCHEMA_FIELD,), "must be a JSON object")]
    stack: list[tuple[object, Path]] = [(schema, (SCHEMA_FIELD,))]
    while stack:
        value, path = stack.pop()
        if len(path) > MAX_JSON_DEPTH:
            return [
                _problem_at(SchemaProblem, (SCHEMA_FIELD,), f"nests deeper than {MAX_JSON_DEPTH}")
            ]
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    return [_problem_at(SchemaProblem, path, "has a key that is not a string")]
                stack.append((item, (*path, key)))
        elif isinstance(value, list):
            stack.extend((item, (*path, i)) for i, item in enumerate(value))
        elif isinstance(value, float) and not math.isfinite(value):
            return [_problem_at(SchemaProblem, path, "is not a finite number")]
        elif not (value is None or isinstance(value, str | int | float | bool)):
            return [_problem_at(SchemaProblem, path, "is not JSON")]
    return []


class _Walk:
    """One pass over every subschema: references, patterns, formats, `$id`s, property count."""

    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.problems: list[SchemaProblem] = []
        self.property_count = 0
        # Schema locations (JSON pointer tokens from the root) and where each leads: its
        # subschemas (True: one level deeper) and its `$ref` target (False: as if inline).
        self.edges: dict[Path, list[tuple[Path, bool]]] = {}
        pending: list[Path] = [()]
        while pending:
            location = pending.pop()
            if location in self.edges:
                continue
            node = self._node_at(location)
            self.edges[location] = self._visit(node, location) if isinstance(node, dict) else []
            pending.extend(target for target, _ in self.edges[location])

    def _node_at(self, location: Path) -> Any:
        node: Any = self.root
        for token in location:
            node = node[token]
        return node

    def _problem(self, location: Path, detail: str) -> None:
        self.problems.append(_problem_at(SchemaProblem, (SCHEMA_FIELD, *location), detail))

    def _visit(self, node: dict[str, Any], location: Path) -> list[tuple[Path, bool]]:
        edges: list[tuple[Path, bool]] = []
        for keyword in _ONE_SUBSCHEMA:
            if isinstance(node.get(keyword), dict | bool):
                edges.append(((*location, keyword), True))
        for keyword in _LIST_OF_SUBSCHEMAS:
            if isinstance(node.get(keyword), list):
                edges.extend(((*location, keyword, i), True) for i in range(len(node[keyword])))
        for keyword in _OBJECT_OF_SUBSCHEMAS:
            if isinstance(node.get(keyword), dict):
                edges.extend(((*location, keyword, name), True) for name in node[keyword])

        if isinstance(node.get("properties"), dict):
            self.property_count += len(node["properties"])
        if location:
            for keyword in ("$id", "$schema"):
                if keyword in node:
                    self._problem((*location, keyword), "is only allowed at the top of the schema")
        for keyword in _REFERENCES:
            if keyword in node:
                target = self._reference(node[keyword], (*location, keyword))
                if target is not None:
                    edges.append((target, False))
        if isinstance(node.get("pattern"), str):
            for detail in _regex_problems(node["pattern"]):
                self._problem((*location, "pattern"), detail)
        if isinstance(node.get("patternProperties"), dict):
            for pattern in node["patternProperties"]:
                for detail in _regex_problems(pattern):
                    self._problem((*location, "patternProperties", pattern), detail)
        fmt = node.get("format")
        if isinstance(fmt, str) and fmt not in FORMATS:
            self._problem(
                (*location, "format"),
                f"{fmt!r} is not a format checked here; use one of {', '.join(sorted(FORMATS))}",
            )
        return edges

    def _reference(self, ref: object, location: Path) -> Path | None:
        """The location a local reference points at, or None (with a problem) if it is not."""
        if not isinstance(ref, str) or not (ref == "#" or ref.startswith("#/")):
            self._problem(
                location,
                "must be a local reference such as #/$defs/name: schemas are never fetched",
            )
            return None
        target: Path = ()
        node: Any = self.root
        for raw in ref[2:].split("/") if ref != "#" else []:
            token = unquote(raw).replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and token in node:
                node, target = node[token], (*target, token)
            elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
                node, target = node[int(token)], (*target, int(token))
            else:
                self._problem(location, f"{ref} points at nothing in this schema")
                return None
        if not isinstance(node, dict | bool):
            self._problem(location, f"{ref} does not point at a schema")
            return None
        return target

    @staticmethod
    def _last_reference(stack: Sequence[tuple[Path, Any, Path | None]]) -> Path:
        for entry in reversed(stack):
            referrer: Path | None = entry[2]
            if referrer is not None:
                return referrer
        raise AssertionError("a cycle without a $ref")

    def expansion_problems(self) -> list[SchemaProblem]:
        """Recursive references, and depth and size with every `$ref` expanded (iterative DFS)."""
        on_path: set[Path] = set()
        depth: dict[Path, int] = {}
        count: dict[Path, int] = {}
        problems: list[SchemaProblem] = []
        # (location, its edges still to follow, the schema whose `$ref` led here or None)
        stack: list[tuple[Path, Iterator[tuple[Path, bool]], Path | None]] = [
            ((), iter(self.edges[()]), None)
        ]
        on_path.add(())
        while stack:
            location, edges, _ = stack[-1]
            for target, deeper in edges:
                if target in on_path:
                    # A cycle always goes through a `$ref`: blame the last one on the way.
                    culprit = location if not deeper else self._last_reference(stack)
                    node = self._node_at(culprit)
                    keyword = "$ref" if isinstance(node, dict) and "$ref" in node else "$dynamicRef"
                    problems.append(
                        _problem_at(
                            SchemaProblem,
                            (SCHEMA_FIELD, *culprit, keyword),
                            "makes the schema recursive, which is not allowed",
                        )
                    )
                elif target not in depth:
                    on_path.add(target)
                    stack.append((target, iter(self.edges[target]), None if deeper else location))
                    break
            else:
                stack.pop()
                on_path.discard(location)
                done = [(t, deeper) for t, deeper in self.edges[location] if t in depth]
                depth[location] = max((depth[t] + deeper for t, deeper in done), default=0)
                count[location] = min(
                    1 + sum(count[t] for t, _ in done), MAX_EXPANDED_SUBSCHEMAS + 1
                )
        if problems:
            return list(dict.fromkeys(problems))
        if depth[()] > MAX_SCHEMA_DEPTH:
            problems.append(
                _problem_at(
                    SchemaProblem,
                    (SCHEMA_FIELD,),
                    f"nests subschemas {depth[()]} levels deep (with $refs expanded); "
                    f"at most {MAX_SCHEMA_DEPTH} are allowed",
                )
            )
        if count[()] > MAX_EXPANDED_SUBSCHEMAS:
            problems.append(
                _problem_at(
                    SchemaProblem,
                    (SCHEMA_FIELD,),
                    f"expands to more than {MAX_EXPANDED_SUBSCHEMAS} subschemas "
                    "once its $refs are followed",
                )
            )
        return problems


_QUANTIFIER = re.compile(r"\*|\+|\?|\{(\d*)(,(\d*))?\}")
_ONCE, _VARIES, _UNBOUNDED = 0, 1, 2  # how many times a quantifier lets its atom match


def _regex_problems(pattern: str) -> list[str]:
    """Why a `pattern` is refused: not valid in Python or ECMA-262, or prone to backtracking."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        return [f"is longer than {MAX_PATTERN_LENGTH} characters"]
    try:
        re.compile(pattern)
    except re.error as exc:
        return [f"is not a valid regular expression: {exc}"]
    python_only, nested = _scan_regex(pattern)
    problems = []
    if python_only:
        problems.append(f"uses {python_only}, which ECMA-262 regular expressions do not have")
    if nested:
        problems.append(
            "repeats without bound a group that can match the same text in several ways, "
            "e.g. (a+)+, which can take exponential time to fail"
        )
    return problems


class _Group:
    """What the current alternative of an open group holds, while `_scan_regex` reads it."""

    def __init__(self, lookaround: bool = False) -> None:
        self.lookaround = lookaround
        self.fixed = False  # an atom that must match exactly once, e.g. the `-` of (-[a-z]+)
        self.varies = False  # an atom that may match a varying number of times
        self.ambiguous = False  # some alternative holds only varying atoms, e.g. (a+) or (\s*\w+)

    def atom(self, times: int, ambiguous_inside: bool = False) -> None:
        if times == _ONCE and not ambiguous_inside:
            self.fixed = True
        else:
            self.varies = True

    def end_alternative(self) -> None:
        self.ambiguous = self.ambiguous or (self.varies and not self.fixed)
        self.fixed = self.varies = False


def _scan_regex(pattern: str) -> tuple[str | None, bool]:
    """(Python-only syntax found, ambiguous group repeated without bound found).

    For a pattern that compiles. A heuristic, not a proof of linear time: it refuses the
    classic shapes (a+)+, (a*)*, (\\s*\\w+)*, ([a-z]+|[0-9]+)+ and lets (-[a-z]+)* through,
    because there every repetition must start with a `-`.
    """
    python_only: str | None = None
    groups = [_Group()]
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        if char == "\\":
            escaped = pattern[i + 1 : i + 2]
            if escaped in ("A", "Z"):
                python_only = python_only or f"\\{escaped}"
            i += 2
            if escaped in ("A", "Z", "b", "B"):  # zero-width
                continue
            times, i = _quantifier_at(pattern, i)
            groups[-1].atom(times)
        elif char == "[":
            times, i = _quantifier_at(pattern, _end_of_class(pattern, i))
            groups[-1].atom(times)
        elif char == "(":
            lookaround = False
            if pattern.startswith("(?", i):
                flag = pattern[i + 2 : i + 3]
                if flag in ("P", "#") or (flag and flag in "aiLmsux"):
                    python_only = python_only or f"the group syntax (?{flag}"
                lookaround = flag in ("=", "!") or pattern[i + 2 : i + 4] in ("<=", "<!")
                i += 2
            else:
                i += 1
            groups.append(_Group(lookaround))
        elif char == ")" and len(groups) > 1:
            group = groups.pop()
            group.end_alternative()
            times, i = _quantifier_at(pattern, i + 1)
            if times == _UNBOUNDED and group.ambiguous:
                return python_only, True
            if not group.lookaround:
                groups[-1].atom(times, group.ambiguous)
        elif char == "|":
            groups[-1].end_alternative()
            i += 1
        elif char in "^$":
            i += 1
        else:
            times, i = _quantifier_at(pattern, i + 1)
            groups[-1].atom(times)
    return python_only, False


def _quantifier_at(pattern: str, i: int) -> tuple[int, int]:
    """How often the quantifier at `i` lets its atom match, and the index after it."""
    match = _QUANTIFIER.match(pattern, i)
    if not match:
        return _ONCE, i
    text, least, comma, most = match.group(0), match.group(1), match.group(2), match.group(3)
    if text in ("*", "+") or (comma is not None and not most):
        times = _UNBOUNDED
    elif text == "?" or (comma is not None and most != least):
        times = _VARIES
    else:
        times = _ONCE  # {n}, {n,n}
    end = match.end()
    if pattern[end : end + 1] in ("?", "+"):  # lazy or possessive
        end += 1
    return times, end


def _end_of_class(pattern: str, i: int) -> int:
    """The index after the character class that opens at `i`."""
    i += 1
    if pattern[i : i + 1] == "^":
        i += 1
    if pattern[i : i + 1] == "]":  # a leading `]` is a literal
        i += 1
    while i < len(pattern) and pattern[i] != "]":
        i += 2 if pattern[i] == "\\" else 1
    return i + 1


# --- validators and their cache ----------------------------------------------------------------


def _canonical(schema: Mapping[str, Any]) -> str:
    return json.dumps(
        schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def schema_fingerprint(schema: Mapping[str, Any]) -> str:
    """The SHA-256 of the schema's canonical JSON: equal content, equal fingerprint."""
    return hashlib.sha256(_canonical(schema).encode()).hexdigest()


# An empty registry: a `$ref` the schema cannot resolve itself fails, it is never retrieved.
# (Without a registry jsonschema 4.x would still fetch remote references, with a warning.)
_NO_RETRIEVAL: SchemaRegistry = Registry()


class ValidatorCacheInfo(NamedTuple):
    hits: int
    misses: int
    size: int
    maxsize: int


class _ValidatorCache:
    """Compiled validators by schema fingerprint, least recently used evicted first."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._validators: OrderedDict[str, Validator] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, fingerprint: str, schema: dict[str, Any]) -> Validator:
        with self._lock:
            validator = self._validators.get(fingerprint)
            if validator is not None:
                self._validators.move_to_end(fingerprint)
                self.hits += 1
                return validator
        # Only accepted schemas are compiled: no remote `$ref`, nothing expensive to evaluate.
        validate_class_schema(schema)
        validator = Draft202012Validator(
            copy.deepcopy(schema),  # the caller's dict may change later; the cache must not
            format_checker=FORMAT_CHECKER,
            registry=_NO_RETRIEVAL,
        )
        with self._lock:
            self.misses += 1
            self._validators[fingerprint] = validator
            while len(self._validators) > self.maxsize:
                self._validators.popitem(last=False)
        return validator

    def info(self) -> ValidatorCacheInfo:
        with self._lock:
            return ValidatorCacheInfo(self.hits, self.misses, len(self._validators), self.maxsize)


_VALIDATORS = _ValidatorCache(CACHE_SIZE)


def validator_for(schema: dict[str, Any]) -> Validator:
    """The compiled validator of an acceptable schema (cached); ClassSchemaError otherwise."""
    try:
        fingerprint = schema_fingerprint(schema)
    except (TypeError, ValueError, RecursionError):
        validate_class_schema(schema)  # names what is wrong
        raise
    return _VALIDATORS.get(fingerprint, schema)


def validator_cache_info() -> ValidatorCacheInfo:
    """Hits, misses and size of the compiled-validator cache."""
    return _VALIDATORS.info()


# --- attributes --------------------------------------------------------------------------------


def validate_attributes(
    schema: dict[str, Any], attributes: Mapping[str, Any]
) -> list[AttributeProblem]:
    """Every way `attributes` break `schema`, ordered by place then message; [] if none."""
    return validate_with(validator_for(schema), attributes)


def validate_with(validator: Validator, attributes: Mapping[str, Any]) -> list[AttributeProblem]:
    """`validate_attributes` with a validator already in hand (bulk work: no lookup per CI)."""
    found: dict[tuple[Path, str], None] = {}  # ordered set: one problem per place and message
    for error in validator.iter_errors(attributes):
        for path, detail in _explain(error, validator.schema, attributes):
            found[((ATTRIBUTES_FIELD, *path), detail)] = None
    ordered = sorted(found, key=lambda item: (_sort_key(item[0]), item[1]))
    return [_problem_at(AttributeProblem, path, detail) for path, detail in ordered]


def _sort_key(path: Path) -> tuple[tuple[int, int, str], ...]:
    # Array indices in numeric order (2 before 10), before names at the same level.
    return tuple((0, t, "") if isinstance(t, int) else (1, 0, t) for t in path)


def _explain(error: ValidationError, schema: Any, attributes: Any) -> Iterator[tuple[Path, str]]:
    """Where inside the attributes an error is, and what it means for a person."""
    path: Path = tuple(error.absolute_path)
    keyword, instance = error.validator, error.instance
    value: Any = error.validator_value
    if keyword == "required" and isinstance(instance, dict):
        # One place per missing property: the property the client has to add.
        for name in value:
            if name not in instance:
                yield (*path, name), "is required"
    elif keyword == "dependentRequired" and isinstance(instance, dict):
        for name, needed in value.items():
            for other in needed:
                if name in instance and other not in instance:
                    yield (*path, other), f"is required when {name} is given"
    elif keyword == "additionalProperties" and value is False and isinstance(instance, dict):
        for name in _undefined_properties(error.schema, instance):
            yield (*path, name), "is not defined by the class schema"
    elif len(error.schema_path) >= 2 and list(error.schema_path)[-2] == "propertyNames":
        yield (*path, str(instance)), f"is not an allowed name: {_detail(error)}"
    elif keyword is None and list(error.schema_path)[-1:] == ["properties"]:
        # A property whose schema is `false`: jsonschema leaves its name out of the error's path
        # (and schema path), so find it from the `properties` it came from.
        forbidden = _forbidden_properties(schema, error.schema_path, _value_at(attributes, path))
        for name in forbidden:
            yield (*path, name), "is not allowed"
        if not forbidden:
            yield path, "has an attribute that is not allowed"
    else:
        yield path, _detail(error)


def _value_at(value: Any, path: Path) -> Any:
    for token in path:
        value = value[token]
    return value


def _forbidden_properties(schema: Any, schema_path: Iterable[Any], instance: Any) -> list[str]:
    node = schema
    for token in schema_path:
        try:
            node = node[token]
        except (KeyError, IndexError, TypeError):
            return []  # the path went through a `$ref`, which schema paths leave out
    if not isinstance(node, dict) or not isinstance(instance, dict):
        return []
    return [name for name, subschema in node.items() if subschema is False and name in instance]


def _undefined_properties(schema: Any, instance: Mapping[str, Any]) -> list[str]:
    defined = schema.get("properties", {}) if isinstance(schema, dict) else {}
    patterns = schema.get("patternProperties", {}) if isinstance(schema, dict) else {}
    return [
        name
        for name in instance
        if name not in defined and not any(re.search(p, name) for p in patterns)
    ]


_TYPES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "an object",
    "array": "an array",
    "null": "null",
}


def _show(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _detail(error: ValidationError) -> str:
    """A message that names the rule and never echoes a whole (possibly large) value back."""
    keyword = error.validator
    value: Any = error.validator_value
    match keyword:
        case "type":
            kinds = [value] if isinstance(value, str) else list(value)
            return "must be " + " or ".join(_TYPES.get(k, k) for k in kinds)
        case "enum":
            if len(value) <= 12:
                return "must be one of: " + ", ".join(_show(v) for v in value)
            return f"must be one of the {len(value)} allowed values"
        case "const":
            return f"must be {_show(json.dumps(value))}"
        case "format":
            return f"must be {FORMATS.get(value, value)}"
        case "pattern":
            return f"must match the pattern {value}"
        case "minLength":
            return "must not be empty" if value == 1 else f"must be at least {value} characters"
        case "maxLength":
            return f"must be at most {value} characters"
        case "minimum":
            return f"must be at least {value}"
        case "maximum":
            return f"must be at most {value}"
        case "exclusiveMinimum":
            return f"must be greater than {value}"
        case "exclusiveMaximum":
            return f"must be less than {value}"
        case "multipleOf":
            return f"must be a multiple of {value}"
        case "minItems":
            return f"must have at least {value} items"
        case "maxItems":
            return f"must have at most {value} items"
        case "uniqueItems":
            return "must not contain the same item twice"
        case "minProperties":
            return f"must have at least {value} entries"
        case "maxProperties":
            return f"must have at most {value} entries"
        case "required":
            return "must have " + ", ".join(value)
        case "contains" | "minContains" | "maxContains":
            return "does not contain the required number of matching items"
        case "anyOf" | "oneOf":
            here = list(dict.fromkeys(_detail(e) for e in error.context or () if not e.path))
            if keyword == "oneOf" and not error.context:
                return "matches more than one of the allowed forms"
            if here and all(d.startswith("must be ") for d in here):
                return "must be " + " or ".join(d.removeprefix("must be ") for d in here)
            return "matches none of the allowed forms" + (": " + "; ".join(here) if here else "")
        case "not":
            return "matches a form that is not allowed"
        case None:  # a `false` subschema
            return "is not allowed"
    return _show(error.message, 200)


# --- a quick yes for the common case -------------------------------------------------------------
# Bulk work (a discovery import validates every new or changed CI) spends most of its time in
# the general validator, which builds an error iterator, descends with path bookkeeping and
# resolves every keyword per value. Most attributes are valid, so `quick_check` compiles a schema
# into plain predicates that can only say "valid": when one says no, `validate_with` runs and
# words the problems as always. It knows the keywords built-in and typical tenant schemas use,
# each applied exactly as Draft 2020-12 and the jsonschema package apply it; a schema with any
# other keyword gets no quick check at all.

QuickCheck = Callable[[Any], bool]

# Keywords that only annotate: they never make an instance invalid (no `$ref` is allowed here,
# so `$id`, `$anchor` and `$defs` cannot be reached either).
_ANNOTATIONS = frozenset(
    {
        "$schema",
        "$id",
        "$anchor",
        "$comment",
        "$defs",
        "title",
        "description",
        "default",
        "examples",
        "deprecated",
        "readOnly",
        "writeOnly",
    }
)


class _Unsupported(Exception):
    """The schema uses a keyword (or a form of one) the quick check does not implement."""


# jsonschema's Draft 2020-12 type checker, one function per type.
def _is_string(value: Any) -> bool:
    return isinstance(value, str)


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, numbers.Number)


def _is_integer(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _is_boolean(value: Any) -> bool:
    return isinstance(value, bool)


def _is_null(value: Any) -> bool:
    return value is None


def _is_object(value: Any) -> bool:
    return isinstance(value, dict)


def _is_array(value: Any) -> bool:
    return isinstance(value, list)


_QUICK_TYPES: dict[str, QuickCheck] = {
    "string": _is_string,
    "integer": _is_integer,
    "number": _is_number,
    "boolean": _is_boolean,
    "null": _is_null,
    "object": _is_object,
    "array": _is_array,
}


def _surely_equal(one: Any, two: Any) -> bool:
    """True only where jsonschema's `equal` (enum, const) is True; containers are not compared."""
    if one is two:
        return True
    if isinstance(one, str) or isinstance(two, str):
        return bool(one == two)
    if isinstance(one, bool) or isinstance(two, bool):
        return False  # True is not 1, False is not 0, and `one is two` was not the case
    if isinstance(one, list | dict | tuple) or isinstance(two, list | dict | tuple):
        return False  # not known here: the validator decides
    return bool(one == two)


def quick_check(schema: Any) -> QuickCheck | None:
    """A predicate that is True only for values `schema` accepts (False: not known, ask the
    validator), or None when the schema uses a keyword the quick check does not know."""
    try:
        return _compile(schema)
    except _Unsupported:
        return None


def _all(checks: Sequence[QuickCheck]) -> QuickCheck:
    if not checks:
        return _is_anything
    if len(checks) == 1:
        return checks[0]
    frozen = tuple(checks)

    def check(value: Any) -> bool:
        for c in frozen:  # noqa: SIM110 - a loop: all() of a generator costs more per value
            if not c(value):
                return False
        return True

    return check


def _compile(schema: Any) -> QuickCheck:
    if schema is True:
        return _is_anything
    if not isinstance(schema, dict):
        return _is_nothing  # `false`, or something no validator would accept
    checks: list[QuickCheck] = []
    for keyword, value in schema.items():
        if keyword in _ANNOTATIONS:
            continue
        compiler = _KEYWORDS.get(keyword)
        if compiler is None:
            raise _Unsupported(keyword)
        check = compiler(value, schema)
        if check is not None:
            checks.append(check)
    return _all(checks)


def _is_anything(value: Any) -> bool:
    return True


def _is_nothing(value: Any) -> bool:
    return False


def _quick_type(value: Any, schema: dict[str, Any]) -> QuickCheck:
    kinds = [value] if isinstance(value, str) else list(value)
    if not kinds or any(k not in _QUICK_TYPES for k in kinds):
        raise _Unsupported("type")
    tests = [_QUICK_TYPES[k] for k in kinds]
    if len(tests) == 1:
        return tests[0]
    return lambda v: any(t(v) for t in tests)


def _quick_enum(value: Any, schema: dict[str, Any]) -> QuickCheck:
    options = list(value)
    if all(type(o) is str for o in options):
        strings = frozenset(options)  # str equality is plain equality: a set lookup will do
        return lambda v: type(v) is str and v in strings
    return lambda v: any(_surely_equal(o, v) for o in options)


def _quick_const(value: Any, schema: dict[str, Any]) -> QuickCheck:
    return lambda v: _surely_equal(value, v)


def _quick_minimum(limit: Any, schema: dict[str, Any]) -> QuickCheck:
    return lambda v: not _is_number(v) or not v < limit


def _quick_maximum(limit: Any, schema: dict[str, Any]) -> QuickCheck:
    return lambda v: not _is_number(v) or not v > limit


def _quick_exclusive_minimum(limit: Any, schema: dict[str, Any]) -> QuickCheck:
    return lambda v: not _is_number(v) or not v <= limit


def _quick_exclusive_maximum(limit: Any, schema: dict[str, Any]) -> QuickCheck:
    return lambda v: not _is_number(v) or not v >= limit


def _quick_min_length(limit: Any, schema: dict[str, Any]) -> QuickCheck:
    return lambda v: not isinstance(v, str) or not len(v) < limit


def _quick_max_length(limit: Any, schema: dict[str, Any]) -> QuickCheck:
    return lambda v: not isinstance(v, str) or not len(v) > limit


def _quick_pattern(value: Any, schema: dict[str, Any]) -> QuickCheck:
    search = re.compile(value).search  # jsonschema: re.search(pattern, instance)
    return lambda v: not isinstance(v, str) or search(v) is not None


def _quick_format(value: Any, schema: dict[str, Any]) -> QuickCheck | None:
    if value not in FORMAT_CHECKER.checkers:
        return None  # jsonschema passes formats it has no checker for
    conforms = FORMAT_CHECKER.conforms
    return lambda v: conforms(v, value)


def _quick_required(value: Any, schema: dict[str, Any]) -> QuickCheck:
    names = list(value)
    return lambda v: not isinstance(v, dict) or all(n in v for n in names)


def _quick_min_properties(limit: Any, schema: dict[str, Any]) -> QuickCheck:
    return lambda v: not isinstance(v, dict) or not len(v) < limit


def _quick_max_properties(limit: Any, schema: dict[str, Any]) -> QuickCheck:
    return lambda v: not isinstance(v, dict) or not len(v) > limit


def _quick_min_items(limit: Any, schema: dict[str, Any]) -> QuickCheck:
    return lambda v: not isinstance(v, list) or not len(v) < limit


def _quick_max_items(limit: Any, schema: dict[str, Any]) -> QuickCheck:
    return lambda v: not isinstance(v, list) or not len(v) > limit


def _quick_properties(value: Any, schema: dict[str, Any]) -> QuickCheck:
    known = {name: _compile(sub) for name, sub in value.items()}

    def check(v: Any) -> bool:
        if not isinstance(v, dict):
            return True
        for name, item in v.items():  # usually fewer than the schema defines
            property_check = known.get(name)
            if property_check is not None and not property_check(item):
                return False
        return True

    return check


def _quick_additional_properties(value: Any, schema: dict[str, Any]) -> QuickCheck:
    if "patternProperties" in schema:
        raise _Unsupported("additionalProperties")
    defined = frozenset(schema.get("properties", {}))
    if value is False:
        return lambda v: not isinstance(v, dict) or defined.issuperset(v)
    extra = _compile(value)
    return lambda v: (
        not isinstance(v, dict)
        or all(extra(item) for name, item in v.items() if name not in defined)
    )


def _quick_property_names(value: Any, schema: dict[str, Any]) -> QuickCheck:
    check = _compile(value)
    return lambda v: not isinstance(v, dict) or all(check(name) for name in v)


def _quick_items(value: Any, schema: dict[str, Any]) -> QuickCheck:
    if "prefixItems" in schema:
        raise _Unsupported("items")
    check = _compile(value)
    return lambda v: not isinstance(v, list) or all(check(item) for item in v)


def _quick_unique_items(value: Any, schema: dict[str, Any]) -> QuickCheck | None:
    if not value:
        return None
    # Strings only: their equality is plain equality (unlike 1, 1.0 and true).
    return lambda v: (
        not isinstance(v, list) or (all(type(item) is str for item in v) and len(set(v)) == len(v))
    )


def _quick_any_of(value: Any, schema: dict[str, Any]) -> QuickCheck:
    options = [_compile(sub) for sub in value]
    return lambda v: any(option(v) for option in options)


def _quick_all_of(value: Any, schema: dict[str, Any]) -> QuickCheck:
    return _all([_compile(sub) for sub in value])


_KEYWORDS: dict[str, Callable[[Any, dict[str, Any]], QuickCheck | None]] = {
    "type": _quick_type,
    "enum": _quick_enum,
    "const": _quick_const,
    "minimum": _quick_minimum,
    "maximum": _quick_maximum,
    "exclusiveMinimum": _quick_exclusive_minimum,
    "exclusiveMaximum": _quick_exclusive_maximum,
    "minLength": _quick_min_length,
    "maxLength": _quick_max_length,
    "pattern": _quick_pattern,
    "format": _quick_format,
    "required": _quick_required,
    "minProperties": _quick_min_properties,
    "maxProperties": _quick_max_properties,
    "minItems": _quick_min_items,
    "maxItems": _quick_max_items,
    "properties": _quick_properties,
    "additionalProperties": _quick_additional_properties,
    "propertyNames": _quick_property_names,
    "items": _quick_items,
    "uniqueItems": _quick_unique_items,
    "anyOf": _quick_any_of,
    "allOf": _quick_all_of,
}
