import copy
import socket
import urllib.request
import uuid

import pytest
from jsonschema import Draft202012Validator

from services.config.application.validators import (
    validate_attributes,
    validate_class,
    validator_cache_info,
    validator_for,
)
from services.config.domain.classes import (
    BUILTIN_CLASSES,
    MAX_PROPERTIES,
    MAX_SCHEMA_BYTES,
    MAX_SCHEMA_DEPTH,
    AttributeProblem,
    CiClass,
    ClassSchemaError,
    builtin_class,
    is_valid_class_name,
    problem_errors,
    validate_class_schema,
)

REALISTIC = {
    "business_service": {
        "owner": "Payments team",
        "customer": "Retail banking",
        "availability_target": 99.95,
        "service_hours": "24x7",
        "support_email": "payments-support@example.com",
        "documentation_url": "https://wiki.example.com/payments",
    },
    "application": {
        "vendor": "In-house",
        "version": "4.12.0",
        "environment": "production",
        "repository_url": "https://git.example.com/payments/api",
    },
    "database": {"engine": "postgresql", "version": "16.4", "port": 5432},
    "server": {
        "hostname": "db01.fra.example.com",
        "ip_addresses": ["10.20.0.11", "2001:db8::11"],
        "os": "Ubuntu",
        "os_version": "24.04",
        "cpu_cores": 32,
        "memory_gib": 256,
        "serial_number": "CZ2345XYZ",
        "environment": "production",
    },
    "virtual_machine": {
        "hostname": "app-07",
        "ip_addresses": ["10.20.4.7"],
        "vcpus": 4,
        "memory_gib": 15.5,
        "hypervisor": "kvm",
        "environment": "staging",
    },
    "container_workload": {
        "cluster": "prod-eu-1",
        "namespace": "payments",
        "image": "registry.example.com/payments/api:4.12.0",
        "replicas": 0,
        "kind": "deployment",
    },
    "network_device": {
        "vendor": "Juniper",
        "model": "MX204",
        "management_ip": "192.0.2.1",
        "role": "router",
        "firmware_version": "23.2R1",
    },
    "storage": {"storage_type": "block", "capacity_gib": 10240, "protocol": "iscsi"},
    "cloud_resource": {
        "provider": "aws",
        "region": "eu-west-1",
        "resource_type": "AWS::RDS::DBInstance",
        "account_id": "123456789012",
        "resource_id": "arn:aws:rds:eu-west-1:123456789012:db:payments",
        "tags": {"cost-center": "4711", "team": "payments"},
    },
    "location": {
        "site_code": "FRA-2",
        "kind": "data_center",
        "address": "Hanauer Landstraße 1, 60314 Frankfurt am Main",
        "country": "DE",
        "time_zone": "Europe/Berlin",
    },
}

# (class, attribute changed from the realistic example, its wrong value)
WRONG = [
    ("business_service", "availability_target", 0),
    ("application", "environment", "prod"),
    ("database", "port", 70000),
    ("server", "cpu_cores", 0),
    ("virtual_machine", "hostname", "app_07!"),
    ("container_workload", "replicas", -1),
    ("network_device", "management_ip", "192.0.2.256"),
    ("storage", "capacity_gib", "10 TB"),
    ("cloud_resource", "provider", "oracle-cloud"),
    ("location", "country", "DEU"),
]


def fields(problems):
    return [p.field for p in problems]


def tenant_schema(**properties):
    return {"type": "object", "properties": properties}


def refused(schema):
    with pytest.raises(ClassSchemaError) as caught:
        validate_class_schema(schema)
    return caught.value


# --- built-in classes


def test_the_builtin_classes_are_the_ten_of_the_issue():
    assert set(BUILTIN_CLASSES) == {
        "business_service",
        "application",
        "database",
        "server",
        "virtual_machine",
        "container_workload",
        "network_device",
        "storage",
        "cloud_resource",
        "location",
    }
    assert set(REALISTIC) == set(BUILTIN_CLASSES)


@pytest.mark.parametrize("name", sorted(BUILTIN_CLASSES))
def test_every_builtin_schema_is_valid_json_schema_and_passes_the_tenant_rules(name):
    Draft202012Validator.check_schema(BUILTIN_CLASSES[name])
    validate_class_schema(BUILTIN_CLASSES[name])
    assert is_valid_class_name(name)


@pytest.mark.parametrize("name", sorted(BUILTIN_CLASSES))
def test_every_builtin_class_accepts_a_realistic_example(name):
    assert validate_attributes(BUILTIN_CLASSES[name], REALISTIC[name]) == []


@pytest.mark.parametrize(("name", "attribute", "value"), WRONG)
def test_every_builtin_class_rejects_a_wrong_value_naming_the_attribute(name, attribute, value):
    attributes = {**REALISTIC[name], attribute: value}

    problems = validate_attributes(BUILTIN_CLASSES[name], attributes)

    assert fields(problems) == [f"attributes.{attribute}"]
    assert problems[0].detail


@pytest.mark.parametrize("name", sorted(BUILTIN_CLASSES))
def test_builtin_classes_refuse_unknown_attributes_naming_them(name):
    problems = validate_attributes(BUILTIN_CLASSES[name], {**REALISTIC[name], "hostnme": "x"})

    assert problems == [
        AttributeProblem(
            "attributes.hostnme", "is not defined by the class schema", ("attributes", "hostnme")
        )
    ]


def test_a_missing_required_attribute_is_named_by_the_missing_property():
    attributes = {k: v for k, v in REALISTIC["server"].items() if k != "hostname"}

    problems = validate_attributes(BUILTIN_CLASSES["server"], attributes)

    assert [(p.field, p.detail) for p in problems] == [("attributes.hostname", "is required")]


def test_every_missing_required_attribute_is_named():
    problems = validate_attributes(BUILTIN_CLASSES["cloud_resource"], {"provider": "gcp"})

    assert fields(problems) == [
        "attributes.account_id",
        "attributes.region",
        "attributes.resource_type",
    ]


def test_a_bad_item_of_an_array_is_named_by_its_index():
    attributes = {**REALISTIC["server"], "ip_addresses": ["10.0.0.1", "10.0.0.300", "::1"]}

    problems = validate_attributes(BUILTIN_CLASSES["server"], attributes)

    assert [(p.field, p.detail) for p in problems] == [
        ("attributes.ip_addresses.1", "must be an IPv4 address or an IPv6 address")
    ]
    assert problems[0].path == ("attributes", "ip_addresses", 1)


def test_a_bad_value_in_a_nested_object_is_named_by_its_full_path():
    attributes = {**REALISTIC["cloud_resource"], "tags": {"team": 7}}

    problems = validate_attributes(BUILTIN_CLASSES["cloud_resource"], attributes)

    assert [(p.field, p.detail) for p in problems] == [("attributes.tags.team", "must be a string")]


def test_problems_are_ordered_by_place_with_indices_in_numeric_order():
    addresses = [f"10.0.0.{i}" for i in range(12)]
    addresses[10] = "not-an-ip"
    addresses[2] = "not-an-ip-either"
    attributes = {"zz": 1, "cpu_cores": 0, "ip_addresses": addresses, "environment": "prod"}

    problems = validate_attributes(BUILTIN_CLASSES["server"], attributes)

    assert fields(problems) == [
        "attributes.cpu_cores",
        "attributes.environment",
        "attributes.hostname",
        "attributes.ip_addresses.2",
        "attributes.ip_addresses.10",
        "attributes.zz",
    ]
    assert problems == validate_attributes(BUILTIN_CLASSES["server"], dict(attributes))


@pytest.mark.parametrize(
    ("target", "accepted"), [(0, False), (0.001, True), (99.9, True), (100, True), (100.01, False)]
)
def test_availability_target_is_a_percentage_above_zero_up_to_a_hundred(target, accepted):
    attributes = {**REALISTIC["business_service"], "availability_target": target}

    assert (validate_attributes(BUILTIN_CLASSES["business_service"], attributes) == []) is accepted


@pytest.mark.parametrize("port", [0, 65536, 5432.5, "5432"])
def test_a_database_port_is_an_integer_from_1_to_65535(port):
    problems = validate_attributes(BUILTIN_CLASSES["database"], {"engine": "mysql", "port": port})

    assert fields(problems) == ["attributes.port"]


def test_an_enum_violation_lists_the_allowed_values():
    attributes = {**REALISTIC["server"], "environment": "prod"}

    (problem,) = validate_attributes(BUILTIN_CLASSES["server"], attributes)

    assert problem.detail == "must be one of: production, staging, test, development"


# --- formats


FORMATTED = tenant_schema(
    ip4={"type": "string", "format": "ipv4"},
    ip6={"type": "string", "format": "ipv6"},
    seen={"type": "string", "format": "date-time"},
    born={"type": "string", "format": "date"},
    mail={"type": "string", "format": "email"},
    docs={"type": "string", "format": "uri"},
    ref={"type": "string", "format": "uuid"},
)


def test_values_in_every_checked_format_are_accepted():
    attributes = {
        "ip4": "192.0.2.10",
        "ip6": "2001:db8::1",
        "seen": "2025-01-31T09:00:00.123456789+01:00",
        "born": "2024-02-29",
        "mail": "ops@example.com",
        "docs": "https://docs.example.com/runbook?id=1#top",
        "ref": "0b6b2c3e-8f6a-4c1e-9a8b-2f1e0d9c8b7a",
    }

    assert validate_attributes(FORMATTED, attributes) == []


@pytest.mark.parametrize(
    ("attribute", "value", "detail"),
    [
        ("ip4", "192.0.2.999", "must be an IPv4 address"),
        ("ip4", "2001:db8::1", "must be an IPv4 address"),
        ("ip6", "2001:db8::g", "must be an IPv6 address"),
        ("seen", "2025-01-31 09:00", "must be an RFC 3339 date-time such as 2025-01-31T09:00:00Z"),
        (
            "seen",
            "2025-02-30T09:00:00Z",
            "must be an RFC 3339 date-time such as 2025-01-31T09:00:00Z",
        ),
        ("born", "2023-02-29", "must be a date (YYYY-MM-DD)"),
        ("mail", "ops.example.com", "must be an email address"),
        ("docs", "not a uri", "must be an absolute URI"),
        ("docs", "/relative/path", "must be an absolute URI"),
        ("ref", "not-a-uuid", "must be a UUID"),
    ],
)
def test_a_value_in_the_wrong_format_is_named(attribute, value, detail):
    problems = validate_attributes(FORMATTED, {attribute: value})

    assert [(p.field, p.detail) for p in problems] == [(f"attributes.{attribute}", detail)]


def test_a_bad_management_ip_is_named():
    attributes = {**REALISTIC["network_device"], "management_ip": "switch-01"}

    problems = validate_attributes(BUILTIN_CLASSES["network_device"], attributes)

    assert [(p.field, p.detail) for p in problems] == [
        ("attributes.management_ip", "must be an IPv4 address or an IPv6 address")
    ]


# --- the problem+json errors


def test_problem_errors_have_the_shape_of_the_shared_problem_json_errors():
    problems = validate_attributes(
        BUILTIN_CLASSES["database"], {"engine": "postgresql", "port": 0, "typo": 1}
    )

    assert problem_errors(problems) == [
        {
            "in": "body",
            "field": "attributes.port",
            "detail": "must be at least 1",
            "pointer": "#/attributes/port",
        },
        {
            "in": "body",
            "field": "attributes.typo",
            "detail": "is not defined by the class schema",
            "pointer": "#/attributes/typo",
        },
    ]


def test_the_pointer_keeps_names_with_dots_and_slashes_apart():
    schema = tenant_schema(**{"a.b/c": {"type": "integer"}})

    (error,) = problem_errors(validate_attributes(schema, {"a.b/c": "x"}))

    assert error["field"] == "attributes.a.b/c"
    assert error["pointer"] == "#/attributes/a.b~1c"


# --- tenant classes


RACK = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://cmdb.example.com/classes/rack",
    "type": "object",
    "required": ["height_units", "location_code"],
    "$defs": {"units": {"type": "integer", "minimum": 1, "maximum": 60}},
    "properties": {
        "height_units": {"$ref": "#/$defs/units"},
        "location_code": {"type": "string", "pattern": "^[A-Z]+(-[A-Z0-9]+)*$"},
        "power_feeds": {"type": "array", "items": {"$ref": "#/$defs/units"}},
        "installed": {"type": "string", "format": "date"},
    },
}


def test_a_tenant_schema_with_local_references_is_accepted_and_validates():
    validate_class_schema(RACK)

    problems = validate_attributes(
        RACK, {"height_units": 42, "location_code": "FRA-2", "power_feeds": [2, 0]}
    )

    assert [(p.field, p.detail) for p in problems] == [
        ("attributes.power_feeds.1", "must be at least 1")
    ]


def test_tenant_schemas_may_allow_attributes_they_do_not_define():
    schema = tenant_schema(rack={"type": "string"})

    assert validate_attributes(schema, {"rack": "R12", "anything": {"else": 1}}) == []


def test_an_attribute_a_tenant_schema_forbids_is_named():
    schema = tenant_schema(
        legacy_id=False, network={"type": "object", "properties": {"vlan_name": False}}
    )

    problems = validate_attributes(schema, {"legacy_id": 1, "network": {"vlan_name": "x"}})

    assert [(p.field, p.detail) for p in problems] == [
        ("attributes.legacy_id", "is not allowed"),
        ("attributes.network.vlan_name", "is not allowed"),
    ]


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "array", "items": {"type": "string"}},
        {"type": "string"},
        {"properties": {"a": {"type": "string"}}},
        {"type": ["object", "null"]},
        True,
        [],
    ],
)
def test_a_tenant_schema_that_does_not_describe_an_object_is_refused(schema):
    error = refused(schema)

    assert error.schema_problems[0].field in ("attribute_schema", "attribute_schema.type")


def test_a_remote_reference_is_refused_and_nothing_is_fetched(monkeypatch):
    attempts = []

    def no_network(*args, **kwargs):
        attempts.append(args)
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    schema = tenant_schema(owner={"$ref": "https://schemas.example.com/person.json"})

    error = refused(schema)
    with pytest.raises(ClassSchemaError):
        validate_attributes(schema, {"owner": {"name": "x"}})

    assert [p.field for p in error.schema_problems] == ["attribute_schema.properties.owner.$ref"]
    assert "local reference" in error.schema_problems[0].detail
    assert attempts == []


@pytest.mark.parametrize(
    "ref",
    [
        "person.json",
        "#anchor",
        "https://json-schema.org/draft/2020-12/schema",
        "urn:example:person",
    ],
)
def test_only_json_pointer_references_inside_the_schema_are_allowed(ref):
    error = refused(tenant_schema(owner={"$ref": ref}))

    assert [p.field for p in error.schema_problems] == ["attribute_schema.properties.owner.$ref"]


def test_a_reference_to_nothing_is_refused():
    error = refused(tenant_schema(owner={"$ref": "#/$defs/person"}))

    assert error.problems == [
        "attribute_schema.properties.owner.$ref: #/$defs/person points at nothing in this schema"
    ]


def test_a_recursive_reference_is_refused():
    schema = {
        "type": "object",
        "$defs": {"node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/node"}}}},
        "properties": {"tree": {"$ref": "#/$defs/node"}},
    }

    error = refused(schema)

    assert [p.field for p in error.schema_problems] == [
        "attribute_schema.$defs.node.properties.child.$ref"
    ]


def test_an_id_below_the_top_is_refused():
    error = refused(tenant_schema(part={"$id": "https://example.com/part", "type": "string"}))

    assert fields(error.schema_problems) == ["attribute_schema.properties.part.$id"]


def test_an_invalid_json_schema_is_refused_naming_the_place():
    error = refused(tenant_schema(size={"type": "integr"}))

    assert fields(error.schema_problems) == ["attribute_schema.properties.size.type"]
    assert "is not valid JSON Schema" in error.schema_problems[0].detail


def test_a_schema_that_is_not_json_data_is_refused():
    error = refused(tenant_schema(size={"type": "number", "maximum": float("nan")}))

    assert fields(error.schema_problems) == ["attribute_schema.properties.size.maximum"]


def test_an_oversize_schema_is_refused():
    schema = {"type": "object", "description": "x" * MAX_SCHEMA_BYTES}

    error = refused(schema)

    assert "bytes long" in error.problems[0]


def test_a_schema_with_too_many_properties_is_refused():
    schema = tenant_schema(**{f"p{i}": {"type": "string"} for i in range(MAX_PROPERTIES + 1)})

    error = refused(schema)

    assert error.problems == [
        f"attribute_schema: defines {MAX_PROPERTIES + 1} properties; "
        f"at most {MAX_PROPERTIES} are allowed"
    ]
    validate_class_schema(
        tenant_schema(**{f"p{i}": {"type": "string"} for i in range(MAX_PROPERTIES)})
    )


def nested(levels):
    schema = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"inner": schema}}
    return schema


def test_a_schema_nested_too_deep_is_refused():
    validate_class_schema(nested(MAX_SCHEMA_DEPTH))

    error = refused(nested(MAX_SCHEMA_DEPTH + 1))

    assert "levels deep" in error.problems[0]


def test_references_count_towards_the_depth_as_if_written_inline():
    inner = nested(MAX_SCHEMA_DEPTH - 1)
    schema = {
        "type": "object",
        "$defs": {"deep": inner},
        "properties": {"a": {"$ref": "#/$defs/deep"}},
    }
    validate_class_schema(schema)  # as deep as written: $defs.deep is one level, like properties.a

    schema["properties"]["a"] = {"type": "object", "properties": {"b": {"$ref": "#/$defs/deep"}}}

    assert "levels deep" in refused(schema).problems[0]


def test_a_schema_whose_references_expand_exponentially_is_refused():
    defs = {"d0": {"type": "string"}}
    for i in range(1, 6):
        defs[f"d{i}"] = {"allOf": [{"$ref": f"#/$defs/d{i - 1}"}] * 10}
    schema = {"type": "object", "$defs": defs, "properties": {"p": {"$ref": "#/$defs/d5"}}}

    error = refused(schema)

    assert "expands to more than" in error.problems[0]


def test_an_invalid_regular_expression_is_refused():
    error = refused(tenant_schema(code={"type": "string", "pattern": "^[A-Z+$"}))

    assert fields(error.schema_problems) == ["attribute_schema.properties.code.pattern"]
    assert "is not a valid regular expression" in error.schema_problems[0].detail


def test_an_invalid_regular_expression_in_pattern_properties_is_refused():
    schema = {"type": "object", "patternProperties": {"^x-(": {"type": "string"}}}

    error = refused(schema)

    assert fields(error.schema_problems) == ["attribute_schema.patternProperties.^x-("]


@pytest.mark.parametrize("pattern", ["(?P<site>[A-Z]+)", "(?i)^abc$", r"\Aabc\Z"])
def test_a_regular_expression_that_only_python_understands_is_refused(pattern):
    error = refused(tenant_schema(code={"type": "string", "pattern": pattern}))

    assert "ECMA-262" in error.schema_problems[0].detail


@pytest.mark.parametrize("pattern", ["^(a+)+$", "^(\\w*)*$", "^([a-z]+|[0-9]+)+$", "(\\s*\\w+)*x"])
def test_a_regular_expression_prone_to_catastrophic_backtracking_is_refused(pattern):
    error = refused(tenant_schema(code={"type": "string", "pattern": pattern}))

    assert "exponential time" in error.schema_problems[0].detail


@pytest.mark.parametrize(
    "pattern",
    [
        "^[a-z]+(-[a-z]+)*$",
        "^(\\d{1,3}\\.){3}\\d{1,3}$",
        "^(?=.{1,63}$)[a-z0-9]+$",
        "^(ab|cd)+$",
        "^[(+*]+$",
    ],
)
def test_ordinary_regular_expressions_are_accepted(pattern):
    validate_class_schema(tenant_schema(code={"type": "string", "pattern": pattern}))


def test_a_format_that_is_not_checked_is_refused_rather_than_silently_ignored():
    error = refused(tenant_schema(host={"type": "string", "format": "hostname"}))

    assert fields(error.schema_problems) == ["attribute_schema.properties.host.format"]


def test_every_problem_of_a_schema_is_reported_at_once():
    schema = {
        "type": "array",
        "properties": {
            "a": {"type": "string", "pattern": "("},
            "b": {"$ref": "https://example.com/b"},
        },
    }

    error = refused(schema)

    assert sorted(fields(error.schema_problems)) == [
        "attribute_schema.properties.a.pattern",
        "attribute_schema.properties.b.$ref",
        "attribute_schema.type",
    ]
    assert all(line.startswith("attribute_schema") for line in error.problems)


def test_schema_problems_render_as_problem_json_errors():
    error = refused(tenant_schema(code={"type": "string", "pattern": "("}))

    (rendered,) = problem_errors(error.schema_problems)

    assert rendered["in"] == "body"
    assert rendered["field"] == "attribute_schema.properties.code.pattern"
    assert rendered["pointer"] == "#/attribute_schema/properties/code/pattern"


# --- the validator cache


def unique_schema():
    return {
        "type": "object",
        "title": f"class {uuid.uuid4()}",
        "properties": {"port": {"type": "integer", "minimum": 1}},
    }


def test_the_same_schema_content_gets_the_same_compiled_validator():
    schema = unique_schema()

    assert validator_for(schema) is validator_for(copy.deepcopy(schema))
    assert validator_for(schema) is not validator_for(unique_schema())


def test_validating_many_cis_compiles_their_schema_once():
    schema = unique_schema()
    ci_class = CiClass("rack_mount", unique_schema())
    before = validator_cache_info()

    for port in range(1, 1001):
        assert validate_attributes(schema, {"port": port}) == []
        assert validate_class(ci_class, {"port": port}) == []

    after = validator_cache_info()
    assert after.misses - before.misses == 2
    assert after.hits - before.hits == 1998


def test_changing_a_schema_after_use_does_not_change_what_was_cached():
    schema = unique_schema()
    original = copy.deepcopy(schema)
    validate_attributes(schema, {"port": 1})

    schema["properties"]["port"]["minimum"] = 100

    assert fields(validate_attributes(schema, {"port": 1})) == ["attributes.port"]
    assert validate_attributes(original, {"port": 1}) == []


# --- CiClass


def test_a_builtin_class_is_a_ci_class_marked_builtin_at_version_one():
    server = builtin_class("server")

    assert server.name == "server"
    assert server.builtin is True
    assert server.version == 1
    assert server.description
    assert server.schema is BUILTIN_CLASSES["server"]
    assert validate_class(server, REALISTIC["server"]) == []


def test_validating_a_ci_class_reports_what_validate_attributes_reports():
    rack = CiClass("rack", RACK, builtin=False, version=3, description="19-inch rack")
    attributes = {"height_units": 99, "typo": True}

    assert validate_class(rack, attributes) == validate_attributes(RACK, attributes)


@pytest.mark.parametrize("name", ["Server", "x", "9rack", "rack-mount", "a" * 64, "räck"])
def test_a_class_name_is_lower_case_letters_digits_and_underscores(name):
    assert not is_valid_class_name(name)
    with pytest.raises(ValueError, match="class name"):
        CiClass(name, tenant_schema())


def test_a_class_version_starts_at_one():
    with pytest.raises(ValueError, match="version"):
        CiClass("rack", tenant_schema(), version=0)
