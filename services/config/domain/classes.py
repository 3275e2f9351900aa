"""CI classes: the JSON Schema (Draft 2020-12) that the `attributes` of every CI of a class obey.

The index of `services/config/domain/ci_classes/`, one module per job:

- `builtin`: the ten built-in classes every tenant has (`BUILTIN_CLASSES`), `CiClass`;
- `formats`: the string formats a schema may name, checked by our own code;
- `schema_rules`: which tenant schemas are accepted (`validate_class_schema`), their fingerprint;
- `regex_safety`: whether a `pattern` is safe to run (a heuristic against backtracking);
- `problems`: what is wrong where (`AttributeProblem`, `SchemaProblem`) and the typed 422s
  (`ClassSchemaError`, `AttributesRefused`, both `shared.errors.ValidationFailed`);
- `attributes`: a compiled validator (`compile_validator`) and every problem worded for a
  person (`validate_with`);
- `quick_check`: a fast "valid" for the common case, before the full validator.

The compiled-validator cache (`validator_for`, `validate_attributes`, `validator_cache_info`) is
process state and lives in `services/config/application/validators.py`: the domain keeps no
validator (`make lint` holds the domain to importing no application module).
"""

from __future__ import annotations

from services.config.domain.ci_classes.attributes import (
    compile_validator,
    validate_with,
)
from services.config.domain.ci_classes.builtin import (
    BUILTIN_CLASSES,
    BUILTIN_VERSION,
    CLASS_NAME,
    CiClass,
    builtin_class,
    is_valid_class_name,
)
from services.config.domain.ci_classes.formats import (
    FORMAT_CHECKER,
    FORMATS,
)
from services.config.domain.ci_classes.problems import (
    ATTRIBUTES_FIELD,
    SCHEMA_FIELD,
    AttributeProblem,
    AttributesRefused,
    ClassSchemaError,
    FieldProblem,
    Path,
    SchemaProblem,
    field_errors,
    problem_errors,
)
from services.config.domain.ci_classes.quick_check import (
    QuickCheck,
    quick_check,
)
from services.config.domain.ci_classes.regex_safety import (
    MAX_PATTERN_LENGTH,
)
from services.config.domain.ci_classes.schema_rules import (
    DIALECT,
    MAX_EXPANDED_SUBSCHEMAS,
    MAX_JSON_DEPTH,
    MAX_PROPERTIES,
    MAX_SCHEMA_BYTES,
    MAX_SCHEMA_DEPTH,
    schema_fingerprint,
    validate_class_schema,
)

__all__ = [
    "ATTRIBUTES_FIELD",
    "BUILTIN_CLASSES",
    "BUILTIN_VERSION",
    "CLASS_NAME",
    "DIALECT",
    "FORMATS",
    "FORMAT_CHECKER",
    "MAX_EXPANDED_SUBSCHEMAS",
    "MAX_JSON_DEPTH",
    "MAX_PATTERN_LENGTH",
    "MAX_PROPERTIES",
    "MAX_SCHEMA_BYTES",
    "MAX_SCHEMA_DEPTH",
    "SCHEMA_FIELD",
    "AttributeProblem",
    "AttributesRefused",
    "CiClass",
    "ClassSchemaError",
    "FieldProblem",
    "Path",
    "QuickCheck",
    "SchemaProblem",
    "builtin_class",
    "compile_validator",
    "field_errors",
    "is_valid_class_name",
    "problem_errors",
    "quick_check",
    "schema_fingerprint",
    "validate_class_schema",
    "validate_with",
]
