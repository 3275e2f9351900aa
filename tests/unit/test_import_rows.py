"""Reading and reconciling discovery rows (pure functions, no database)."""

import json
import random
import uuid
from datetime import UTC, datetime

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as kafka_murmur2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.config.adapters.imports import GROWN, READ_BY_BATCHES, analyze
from services.config.application import validators
from services.config.application.imports import _TIME, added_event, created_event
from services.config.domain import classes
from services.config.domain.ci import ConfigurationItem, created, register
from services.config.domain.imports import (
    MAX_LINE_BYTES,
    TOO_LONG,
    CiRow,
    CsvRows,
    Parsed,
    lines,
    parse_jsonl_line,
    parse_object,
    reconcile,
)
from shared.events.catalogue import RelationshipAddedV1, RelationshipV1
from shared.outbox import encode_data, murmur2, partition_for
from shared.progress import ProgressBar


def current(**overrides):
    values = {
        "id": uuid.uuid4(),
        "tenant_id": "t-1",
        "ci_class": "server",
        "name": "srv-1",
        "status": "active",
        "owner_team": "platform",
        "criticality": 3,
        "attributes": {"hostname": "srv-1", "environment": "production"},
        "external_ids": {"vcenter": "h1"},
        "controlled": False,
        "version": 4,
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
        "updated_at": datetime(2026, 1, 2, tzinfo=UTC),
        "updated_by": "carol",
    }
    return ConfigurationItem(**{**values, **overrides})


def row(**fields):
    return CiRow.model_validate({"external_id": "h1", "class": "server", "name": "srv-1", **fields})


def test_a_row_that_repeats_the_record_is_unchanged():
    assert reconcile(current(), row(attributes={"hostname": "srv-1"})).outcome == "unchanged"


def test_fields_a_row_leaves_out_stay_and_named_attributes_are_merged():
    decision = reconcile(current(), row(criticality=2, attributes={"os": "Debian 13"}))
    assert decision.outcome == "updated"
    assert decision.changes == {
        "criticality": 2,
        "attributes": {"hostname": "srv-1", "environment": "production", "os": "Debian 13"},
    }
    assert decision.differences == {
        "criticality": {"recorded": 3, "discovered": 2},
        "attributes.os": {"recorded": None, "discovered": "Debian 13"},
    }


def test_a_difference_on_a_controlled_ci_is_drift_with_nothing_to_apply():
    decision = reconcile(current(controlled=True), row(name="srv-one"))
    assert decision.outcome == "drift"
    assert decision.changes == {}
    assert decision.differences == {"name": {"recorded": "srv-1", "discovered": "srv-one"}}


def test_a_row_of_another_class_or_for_a_retired_ci_is_rejected():
    assert reconcile(current(), row(**{"class": "database"})).reason == (
        "class: registered as server, not database"
    )
    retired = reconcile(current(status="retired"), row(name="back"))
    assert (retired.outcome, retired.reason) == ("rejected", "status: the CI is retired")


def test_rows_default_to_the_ci_kind_and_name_the_field_they_break():
    assert isinstance(
        parse_object(1, {"external_id": "a", "class": "server", "name": "a"}).row, CiRow
    )
    bad = parse_object(2, {"kind": "relationship", "type": "owns", "source": "a", "target": "b"})
    assert bad.row is None
    assert bad.reason.startswith("type:")
    assert parse_object(3, ["a"]).reason == "row: expected a JSON object"
    assert parse_jsonl_line(4, b"   ") is None
    assert parse_jsonl_line(5, b"{").reason.startswith("row: not JSON")


def test_csv_attribute_cells_are_typed_by_the_class_schema_and_empty_cells_are_absent():
    schemas = {
        "database": {"properties": {"port": {"type": "integer"}, "engine": {"type": "string"}}}
    }
    rows = CsvRows(schemas)
    assert rows.parse(1, b"external_id,class,name,attributes.port,attributes.engine,status") is None
    parsed = rows.parse(2, b"db1,database,orders,5432,007,")
    assert parsed.row.attributes == {"port": 5432, "engine": "007"}
    assert parsed.row.status is None
    assert rows.parse(3, b"db2,database,x").reason == "row: 3 cells where the header has 6"


async def test_lines_are_split_across_chunks_and_an_overlong_line_is_cut_not_buffered():
    async def chunks():
        yield b'{"a":'
        yield b" 1}\n{"
        yield b"x" * (MAX_LINE_BYTES + 10)
        yield b"}\nlast"

    progress = [0]
    seen = [line async for line in lines(chunks(), progress)]
    assert seen[0] == b'{"a": 1}'
    assert parse_jsonl_line(2, seen[1]).reason == f"row: longer than {MAX_LINE_BYTES} bytes"
    assert seen[2:] == [b"last"]
    assert progress[0] == 5 + 5 + MAX_LINE_BYTES + 10 + 6


def test_the_progress_bar_shows_share_size_rate_and_time_left():
    bar = ProgressBar(total=10_000_000, out=None)
    text = bar.render(5_000_000, bar.started + 2.0)
    assert "[###############...............]" in text
    assert " 50.0%" in text
    assert "5.0/10.0 MB" in text
    assert "2.5 MB/s" in text
    assert "2s left" in text


# --- reading rows fast, with the same outcome ---------------------------------------------------

# Lines whose every outcome (row, reason, key) must not depend on how they are read: most are
# read straight from JSON, the rest go the way through a dict that words every reason.
CORPUS = [
    b'{"external_id":"h1","class":"server","name":"a","attributes":{"hostname":"h1"}}',
    b'{"kind":"relationship","type":"runs_on","source":"a","target":"b"}',
    b'{"kind":"ci","external_id":"h1","class":"server","name":"a","criticality":"3"}',
    b'{"external_id":"h1","class":"server","name":"a","criticality":3.0,"status":"planned"}',
    b'{"external_id":"h1","class":"server","name":"a","name":"b"}',
    b'{"external_id":"h1","class":"server","name":"a","attributes":{"n":1e400,"m":-0}}',
    b'{"external_id":"h1","class":"server","name":"a","attributes":{"n":NaN,"d":{"e":[1,"x"]}}}',
    b'{"external_id":"h1","class":"server","name":"a","attributes":null,"owner_team":null}',
    b'  {"external_id":"h1","class":"server","name":"caf\xc3\xa9 \\u00e9\\n"}  ',
    b'{"external_id":"h1","class":"server","name":"a\tb"}',
    b'{"external_id":"h1","class":"server","name":"\\ud800"}',
    b'\xef\xbb\xbf{"external_id":"h1","class":"server","name":"a"}',
    b'{"external_id":"h1","class":"server","name":"\xc3"}',
    b'{"external_id":"h1","class":"server","name":"a"} trailing',
    b'{"external_id":"h1","class":"server","name":"a",}',
    b'{"kind":null,"external_id":"h1","class":"server","name":"a"}',
    b'{"kind":"rack","external_id":"h1"}',
    b'{"kind":"relationship","type":"owns","source":"a","target":"b"}',
    b'{"kind":"relationship","type":"runs_on","source":"a","target":"b","extra":1}',
    b'{"external_id":"","class":"server","name":"a"}',
    b'{"external_id":"h1","class":"Server!","name":"a","criticality":9}',
    b'{"external_id":7,"class":"server","name":"a"}',
    b'["not", "an", "object"]',
    b"42",
    b"{",
]


def read_through_a_dict(number, raw):
    """How every line was read before the fast way: json.loads, then the pydantic models."""
    try:
        data = json.loads(raw.strip())
    except (ValueError, UnicodeDecodeError) as exc:
        return Parsed(number, None, f"row: not JSON ({exc})")
    return parse_object(number, data)


def test_a_line_read_straight_from_json_has_the_outcome_it_has_read_through_a_dict():
    for number, raw in enumerate(CORPUS, start=1):
        fast, slow = parse_jsonl_line(number, raw), read_through_a_dict(number, raw)
        assert (fast.line, fast.reason, fast.key) == (slow.line, slow.reason, slow.key), raw
        if slow.row is None:
            assert fast.row is None, raw
        else:
            assert type(fast.row) is type(slow.row), raw
            assert repr(fast.row.model_dump()) == repr(slow.row.model_dump()), raw


async def test_every_line_of_a_chunk_is_yielded_and_an_overlong_one_is_cut_mid_chunk():
    long_tail = b"y" * 10

    async def chunks():
        yield b"a\nb\n\nc"
        yield b"d\n"
        yield b"\n"
        yield b"x" * (MAX_LINE_BYTES + 1)
        yield long_tail + b"\ne\nf"

    seen = [line async for line in lines(chunks(), [0])]
    assert seen == [b"a", b"b", b"", b"cd", b"", TOO_LONG, b"e", b"f"]


# --- validating attributes quickly, with the same verdict -------------------------------------

VALID_ATTRIBUTES = {
    "business_service": {"owner": "o", "customer": "c", "availability_target": 99.9},
    "application": {"environment": "production"},
    "database": {"engine": "postgresql", "port": 5432},
    "server": {"hostname": "h1.example.com", "environment": "production", "cpu_cores": 8},
    "virtual_machine": {"hostname": "h1", "environment": "test", "ip_addresses": ["10.0.0.1"]},
    "container_workload": {"cluster": "c", "namespace": "ns", "image": "i"},
    "network_device": {"vendor": "v", "management_ip": "::1", "role": "switch"},
    "storage": {"storage_type": "block", "capacity_gib": 10},
    "cloud_resource": {
        "provider": "aws",
        "region": "r",
        "resource_type": "t",
        "account_id": "a",
        "tags": {"team": "x"},
    },
    "location": {"site_code": "FRA-2", "country": "DE"},
}

ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.sampled_from(
        [0, 1, -1, 65535, 65536, 0.0, 1.0, 100, 100.0, 100.5, True, False, float("nan")]
    ),
    st.sampled_from(
        ["production", "x", "", "10.0.0.1", "::1", "fe80::1%eth0", "300.1.1.1", "a@b", "a b@c"]
    ),
    st.sampled_from(["http://x", "x:", "FRA-2", "fra-2", "DE", "DEU", "-h", "aws", "a" * 254]),
    st.text(max_size=3),
    st.lists(st.sampled_from(["10.0.0.1", "::1", "bad", 1, True]), max_size=3),
    st.dictionaries(st.sampled_from(["a", "", "k" * 129]), st.sampled_from(["v", 1, "x" * 257])),
)


def mutated(ci_class):
    """Valid attributes of the class with some values replaced, added or left out."""
    names = [*classes.BUILTIN_CLASSES[ci_class]["properties"], "undefined"]
    changes = st.dictionaries(st.sampled_from(names), ODD_VALUES, max_size=3)
    removals = st.lists(st.sampled_from(names), max_size=2)
    return st.tuples(changes, removals).map(
        lambda c: {k: v for k, v in {**VALID_ATTRIBUTES[ci_class], **c[0]}.items() if k not in c[1]}
    )


@settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.sampled_from(sorted(VALID_ATTRIBUTES)).flatmap(lambda c: st.tuples(st.just(c), mutated(c)))
)
def test_the_quick_check_accepts_only_attributes_the_validator_accepts(case):
    ci_class, attributes = case
    schema = classes.BUILTIN_CLASSES[ci_class]
    check = classes.quick_check(schema)
    assert check is not None
    problems = validators.validate_attributes(schema, attributes)
    if check(attributes):
        assert problems == []
    elif not problems:
        # Every keyword of the built-in schemas is known: nothing valid is left to the validator.
        raise AssertionError(f"valid attributes not accepted quickly: {attributes}")


def test_a_schema_with_a_keyword_the_quick_check_does_not_know_gets_none():
    base = {"type": "object", "properties": {"n": {"type": "integer"}}}
    for extra in (
        {"oneOf": [{"required": ["n"]}]},
        {"patternProperties": {"^x": {"type": "string"}}, "additionalProperties": False},
        {"properties": {"n": {"type": "integer", "multipleOf": 2}}},
        {"$ref": "#/$defs/x", "$defs": {"x": {}}},
        {"dependentRequired": {"n": ["m"]}},
    ):
        assert classes.quick_check({**base, **extra}) is None, extra
    assert classes.quick_check(base)({"n": 1.0})
    assert not classes.quick_check(base)({"n": True})


def test_the_quick_check_follows_json_schema_equality_for_enum_and_const():
    check = classes.quick_check({"enum": [1, "a", None], "const": 1})
    assert check(1) and check(1.0)
    assert not check(True)
    assert not classes.quick_check({"enum": ["a"]})(["a"])


# --- statistics refreshed after an import ------------------------------------------------------


class StatisticsConnection:
    """Just enough of a connection for `analyze`: the statistics' row counts, the SQL run."""

    def __init__(self, rows):
        self.rows = rows
        self.executed = []

    async def fetch(self, query, tables):
        return [{"relname": t, "reltuples": self.rows[t]} for t in tables if t in self.rows]

    async def execute(self, query):
        self.executed.append(query)


async def test_statistics_are_refreshed_for_the_tables_an_import_grew_by_a_tenth():
    conn = StatisticsConnection({"cis": 10_000, "ci_external_ids": 10_000, "relationships": -1})
    written = {"cis": 999, "ci_external_ids": 1_000, "relationships": 5}
    refreshed = await analyze(conn, written, GROWN, derived=True)
    assert refreshed == ["ci_external_ids", "relationships"]
    assert conn.executed == ["ANALYZE ci_external_ids, relationships, ci_service_membership"]

    during = StatisticsConnection({"cis": 0, "ci_external_ids": 0, "relationships": 0})
    assert await analyze(during, written, READ_BY_BATCHES, derived=False) == [
        "cis",
        "ci_external_ids",
    ]
    assert during.executed == ["ANALYZE cis, ci_external_ids"]


async def test_an_import_that_wrote_nothing_refreshes_no_statistics():
    conn = StatisticsConnection({"cis": 0})
    assert await analyze(conn, {}, GROWN, derived=True) == []
    assert conn.executed == []


# --- publishing: the relay picks the partition Kafka's producer would -------------------------


def test_the_relay_partitions_keys_as_kafkas_default_partitioner_does():
    rng = random.Random(5)
    for length in range(80):
        key = bytes(rng.randrange(256) for _ in range(length))
        assert murmur2(key) == kafka_murmur2(key)
        for count in (1, 3, 6, 12):
            partitions = list(range(count))
            expected = DefaultPartitioner()(key, partitions, partitions)
            assert partition_for(key, partitions) == expected


def test_the_event_of_an_imported_relationship_carries_what_the_validated_event_would_dump():
    rid, source, target = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    pending = added_event(rid, "runs_on", source, target)
    validated = RelationshipAddedV1(
        relationship=RelationshipV1(
            id=str(rid), type="runs_on", source_id=str(source), target_id=str(target)
        )
    )
    assert pending.data == validated.model_dump(mode="json")
    assert pending.payload == validated
    assert (pending.subject, pending.sequence) == (str(rid), 1)


@pytest.mark.parametrize("microsecond", [0, 123456])
def test_the_event_of_an_imported_ci_is_what_the_validated_event_would_encode(microsecond):
    now = datetime(2026, 11, 21, 9, 30, 5, microsecond, tzinfo=UTC)
    ci = register(
        tenant_id="t-1",
        ci_class="server",
        name='srv "1" \u00e9',
        status="active",
        owner_team=None,
        criticality=2,
        attributes={"hostname": "h1", "cpu_cores": 8, "tags": ["a", "b"]},
        external_ids={"vcenter": "vm-1"},
        controlled=False,
        actor="importer",
        now=now,
    )
    pending, state = created_event(ci, "vcenter", _TIME.dump_python(now, mode="json"))
    validated = created(ci, source="vcenter")
    dumped = validated.model_dump(mode="json")
    # The bytes the outbox would have written for the validated event, and its state as the
    # history keeps it, from one encoding.
    assert pending.encoded == encode_data(dumped).encode()
    assert json.loads(state) == dumped["ci"]
    assert pending.payload == validated
    assert (pending.subject, pending.sequence) == (str(ci.id), 1)
