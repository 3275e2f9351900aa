"""Compiled CI class validators, cached by schema content for every use case of the process.

Compiling a class schema costs milliseconds (it is checked against the rules first), checking a
CI's attributes with a compiled validator some tens of microseconds: every create, update and
import row reuses one. The key is the schema's fingerprint, not the class name and version: two
tenants may each have a `rack` class at version 1 with different schemas. It is mutable process
state behind a lock (safe for a worker thread too), so it lives here and not in the pure domain
(`services/config/domain/ci_classes/`), which compiles a validator but keeps none.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, NamedTuple

from jsonschema.protocols import Validator

from services.config.domain.ci_classes.attributes import compile_validator, validate_with
from services.config.domain.ci_classes.builtin import CiClass
from services.config.domain.ci_classes.problems import AttributeProblem
from services.config.domain.ci_classes.schema_rules import (
    schema_fingerprint,
    validate_class_schema,
)

CACHE_SIZE = 512


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
        validator = compile_validator(schema)  # outside the lock: it takes milliseconds
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


def validate_attributes(
    schema: dict[str, Any], attributes: Mapping[str, Any]
) -> list[AttributeProblem]:
    """Every way `attributes` break `schema`, ordered by place then message; [] if none."""
    return validate_with(validator_for(schema), attributes)


def validate_class(ci_class: CiClass, attributes: Mapping[str, Any]) -> list[AttributeProblem]:
    """`validate_attributes` for a class, without re-hashing its schema each time."""
    return validate_with(_VALIDATORS.get(ci_class.fingerprint, ci_class.schema), attributes)
