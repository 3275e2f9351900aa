"""A quick yes for the common case: a class schema compiled into plain predicates that can only
say "valid"; when one says no, the full validator words the problems.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Callable, Sequence
from typing import Any

from services.config.domain.ci_classes.formats import FORMAT_CHECKER

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
