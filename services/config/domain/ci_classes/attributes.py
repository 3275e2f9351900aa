"""A CI's attributes checked against its class schema: the compiled validator, and every problem
worded for a person at its place under `attributes.`, in a stable order.

Compiling costs milliseconds; `services/config/application/validators.py` keeps compiled
validators by schema fingerprint, so callers validate with `validate_with` and a cached one.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from jsonschema import Draft202012Validator, ValidationError
from jsonschema.protocols import Validator
from referencing import Registry
from referencing.jsonschema import SchemaRegistry

from services.config.domain.ci_classes.formats import FORMAT_CHECKER, FORMATS
from services.config.domain.ci_classes.problems import (
    ATTRIBUTES_FIELD,
    AttributeProblem,
    Path,
    problem_at,
    show,
)
from services.config.domain.ci_classes.schema_rules import validate_class_schema

# An empty registry: a `$ref` the schema cannot resolve itself fails, it is never retrieved.
# (Without a registry jsonschema 4.x would still fetch remote references, with a warning.)
_NO_RETRIEVAL: SchemaRegistry = Registry()


def compile_validator(schema: dict[str, Any]) -> Validator:
    """The validator of an acceptable schema, compiled now; ClassSchemaError otherwise."""
    # Only accepted schemas are compiled: no remote `$ref`, nothing expensive to evaluate.
    validate_class_schema(schema)
    return Draft202012Validator(
        copy.deepcopy(schema),  # the caller's dict may change later; the validator must not
        format_checker=FORMAT_CHECKER,
        registry=_NO_RETRIEVAL,
    )


def validate_with(validator: Validator, attributes: Mapping[str, Any]) -> list[AttributeProblem]:
    """`validate_attributes` with a validator already in hand (bulk work: no lookup per CI)."""
    found: dict[tuple[Path, str], None] = {}  # ordered set: one problem per place and message
    for error in validator.iter_errors(attributes):
        for path, detail in _explain(error, validator.schema, attributes):
            found[((ATTRIBUTES_FIELD, *path), detail)] = None
    ordered = sorted(found, key=lambda item: (_sort_key(item[0]), item[1]))
    return [problem_at(AttributeProblem, path, detail) for path, detail in ordered]


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
                return "must be one of: " + ", ".join(show(v) for v in value)
            return f"must be one of the {len(value)} allowed values"
        case "const":
            return f"must be {show(json.dumps(value))}"
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
    return show(error.message, 200)
