"""Reading and reconciling discovery rows (pure functions, no database)."""

import uuid
from datetime import UTC, datetime

from services.config.cli import ProgressBar
from services.config.domain.ci import ConfigurationItem
from services.config.domain.imports import (
    MAX_LINE_BYTES,
    CiRow,
    CsvRows,
    lines,
    parse_jsonl_line,
    parse_object,
    reconcile,
)


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
