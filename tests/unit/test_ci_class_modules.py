"""The CI class rules split along their jobs: the typed errors they raise, a domain that keeps no
validator cache, and the index that keeps the old import path working."""

import ast
import importlib
from pathlib import Path

import pytest

from services.config.application import validators
from services.config.domain import classes
from services.config.domain.ci_classes.attributes import compile_validator
from services.config.domain.ci_classes.problems import AttributesRefused, ClassSchemaError
from services.config.domain.ci_classes.schema_rules import validate_class_schema
from shared.errors import ValidationFailed
from shared.http.problems import invalid, problem_of

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = ROOT / "services/config/domain/ci_classes"


def wire(problem):
    return (problem.status, problem.title, problem.type, problem.detail, problem.errors)


def test_a_refused_class_schema_is_a_typed_422_with_the_errors_the_handler_used_to_build():
    schema = {"type": "object", "properties": {"code": {"type": "string", "pattern": "("}}}
    with pytest.raises(ClassSchemaError) as caught:
        validate_class_schema(schema)
    error = caught.value

    assert isinstance(error, ValidationFailed)
    assert isinstance(error, ValueError)  # what it was before it became typed
    assert wire(problem_of(error)) == wire(invalid(classes.problem_errors(error.schema_problems)))
    assert problem_of(error).status == 422
    assert problem_of(error).errors[0]["pointer"] == "#/attribute_schema/properties/code/pattern"


def test_refused_attributes_are_a_typed_422_naming_each_attribute_with_its_pointer():
    schema = {
        "type": "object",
        "properties": {"a.b/c": {"type": "integer"}, "port": {"type": "integer", "minimum": 1}},
        "additionalProperties": False,
    }
    problems = validators.validate_attributes(schema, {"a.b/c": "x", "port": 0, "typo": 1})

    error = AttributesRefused(problems)

    assert wire(problem_of(error)) == wire(invalid(classes.problem_errors(problems)))
    rendered = problem_of(error).errors
    assert [e["field"] for e in rendered] == [
        "attributes.a.b/c",
        "attributes.port",
        "attributes.typo",
    ]
    assert rendered[0]["pointer"] == "#/attributes/a.b~1c"
    assert rendered[0]["in"] == "body"


@pytest.mark.parametrize("module", sorted(p.name for p in DOMAIN.glob("*.py")))
def test_the_ci_class_domain_keeps_no_cache_and_imports_no_outer_layer(module):
    tree = ast.parse((DOMAIN / module).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    assert "threading" not in imported
    assert not any(name.startswith("services.config.application") for name in imported)
    assert not any(name.startswith("services.config.adapters") for name in imported)


def test_compiling_a_validator_in_the_domain_keeps_nothing_between_calls():
    schema = {"type": "object", "properties": {"port": {"type": "integer"}}}
    assert compile_validator(schema) is not compile_validator(schema)
    assert validators.validator_for(schema) is validators.validator_for(dict(schema))


def test_every_name_of_the_old_module_still_imports_from_it_as_the_defining_module_has_it():
    # What services/config and the tests import from the old path (grep "classes\.").
    used = {"BUILTIN_CLASSES", "CLASS_NAME", "QuickCheck", "quick_check"}
    used |= {"validate_with", "problem_errors", "ClassSchemaError"}
    used |= {"validate_class_schema", "builtin_class", "CiClass"}
    assert used <= set(classes.__all__)
    for name in classes.__all__:
        value = getattr(classes, name)
        defining = [
            getattr(importlib.import_module(module), name)
            for module in (
                f"services.config.domain.ci_classes.{p.stem}" for p in DOMAIN.glob("*.py")
            )
            if hasattr(importlib.import_module(module), name)
        ]
        assert any(value is d for d in defining), name
