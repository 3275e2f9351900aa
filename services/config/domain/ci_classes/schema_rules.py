"""Which tenant class schemas are accepted (`validate_class_schema`), and their fingerprint.

A tenant writes a schema once and every CI it imports is validated against it, so the rules
keep each validation cheap and offline: an object schema, only local `$ref`s (`#/...`,
resolving inside the schema, never recursive; nothing is ever fetched), bounded size, property
count, nesting and `$ref` expansion, only the formats checked here (others would pass
silently), and `pattern`s that `regex_safety` accepts.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import unquote

from jsonschema import Draft202012Validator, FormatChecker, SchemaError

from services.config.domain.ci_classes.formats import FORMATS
from services.config.domain.ci_classes.problems import (
    SCHEMA_FIELD,
    ClassSchemaError,
    Path,
    SchemaProblem,
    problem_at,
    show,
)
from services.config.domain.ci_classes.regex_safety import regex_problems

DIALECT = "https://json-schema.org/draft/2020-12/schema"


# Limits on tenant schemas: each keeps a single validation cheap (see the module docstring).
MAX_SCHEMA_BYTES = 64 * 1024
MAX_PROPERTIES = 200
MAX_SCHEMA_DEPTH = 10  # subschemas below the top one, `$ref`s counted as if written inline
MAX_EXPANDED_SUBSCHEMAS = 2_000  # subschemas once every `$ref` is expanded
MAX_JSON_DEPTH = 64  # any JSON nesting (enum values too); guards the recursive checks after it


# Checks a schema against the metaschema without asking whether format values conform.
_NO_FORMATS = FormatChecker(formats=())


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
                problem_at(
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
        detail = f"is not valid JSON Schema: {show(exc.message, 200)}"
        problems.append(problem_at(SchemaProblem, where, detail))

    if schema.get("type") != "object":
        problems.append(
            problem_at(
                SchemaProblem, (SCHEMA_FIELD, "type"), 'must be "object": attributes are an object'
            )
        )
    dialect = schema.get("$schema", DIALECT)
    if not isinstance(dialect, str) or dialect.rstrip("#") != DIALECT:
        problems.append(
            problem_at(SchemaProblem, (SCHEMA_FIELD, "$schema"), f"must be {DIALECT} when given")
        )

    walk = _Walk(schema)
    problems.extend(walk.problems)
    if walk.property_count > MAX_PROPERTIES:
        problems.append(
            problem_at(
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
        return [problem_at(SchemaProblem, (SCHEMA_FIELD,), "must be a JSON object")]
    stack: list[tuple[object, Path]] = [(schema, (SCHEMA_FIELD,))]
    while stack:
        value, path = stack.pop()
        if len(path) > MAX_JSON_DEPTH:
            return [
                problem_at(SchemaProblem, (SCHEMA_FIELD,), f"nests deeper than {MAX_JSON_DEPTH}")
            ]
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    return [problem_at(SchemaProblem, path, "has a key that is not a string")]
                stack.append((item, (*path, key)))
        elif isinstance(value, list):
            stack.extend((item, (*path, i)) for i, item in enumerate(value))
        elif isinstance(value, float) and not math.isfinite(value):
            return [problem_at(SchemaProblem, path, "is not a finite number")]
        elif not (value is None or isinstance(value, str | int | float | bool)):
            return [problem_at(SchemaProblem, path, "is not JSON")]
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
        self.problems.append(problem_at(SchemaProblem, (SCHEMA_FIELD, *location), detail))

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
            for detail in regex_problems(node["pattern"]):
                self._problem((*location, "pattern"), detail)
        if isinstance(node.get("patternProperties"), dict):
            for pattern in node["patternProperties"]:
                for detail in regex_problems(pattern):
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
                        problem_at(
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
                problem_at(
                    SchemaProblem,
                    (SCHEMA_FIELD,),
                    f"nests subschemas {depth[()]} levels deep (with $refs expanded); "
                    f"at most {MAX_SCHEMA_DEPTH} are allowed",
                )
            )
        if count[()] > MAX_EXPANDED_SUBSCHEMAS:
            problems.append(
                problem_at(
                    SchemaProblem,
                    (SCHEMA_FIELD,),
                    f"expands to more than {MAX_EXPANDED_SUBSCHEMAS} subschemas "
                    "once its $refs are followed",
                )
            )
        return problems


def _canonical(schema: Mapping[str, Any]) -> str:
    return json.dumps(
        schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def schema_fingerprint(schema: Mapping[str, Any]) -> str:
    """The SHA-256 of the schema's canonical JSON: equal content, equal fingerprint."""
    return hashlib.sha256(_canonical(schema).encode()).hexdigest()
