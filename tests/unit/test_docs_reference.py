"""The reference tables in the READMEs and docs/ are rendered from the code they describe, so they
cannot drift: each test fails when a table no longer lists exactly what the code accepts.

After changing what the code accepts, rewrite the tables with
`.venv/bin/python -m tests.unit.test_docs_reference` and review the diff.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

import pytest

from services.config.domain.classes import BUILTIN_CLASSES
from services.incident.domain.workflow import HOLD_REASONS, RESOLUTION_CODES
from services.reporting.domain.kpis import DEFINITIONS as KPI_DEFINITIONS
from shared.calendars import WEEKDAYS, CalendarSpec, OpeningInterval
from shared.events.catalogue import CATALOGUE, CiStatus
from shared.kafka_acl import markdown as kafka_acls

ROOT = Path(__file__).resolve().parents[2]

# What each value means: written by hand, checked against the code's set of values below.
CI_STATUS_MEANING = {
    "planned": "ordered or being built; not yet in service",
    "active": "in service",
    "maintenance": "in service but under maintenance (planned work, degraded)",
    "retired": "out of service for good: supports no business service, cannot be modified",
}
RESOLUTION_MEANING = {
    "solved_permanently": "the cause was removed",
    "solved_workaround": "restored by a workaround; the cause remains (a problem may follow)",
    "resolved_by_caller": "the caller fixed it or it went away on the caller's side",
    "not_reproducible": "nobody could make it happen again",
    "not_solved": "closed without a fix (for example, the service is being replaced)",
    "alert_cleared": "monitoring reported the alert over; nobody recorded a fix",
}
HOLD_MEANING = {
    "awaiting_customer": "waiting for the caller",
    "awaiting_vendor": "waiting for a supplier",
    "awaiting_change": "waiting for a change to be implemented",
}


def _meanings(name: str, meaning: dict[str, str], values: tuple[str, ...]) -> str:
    assert set(meaning) == set(values), f"{name}: describe exactly {sorted(values)}"
    rows = [f"| `{value}` | {meaning[value]} |" for value in values]
    return "\n".join([f"| {name} | meaning |", "|---|---|", *rows])


def ci_statuses() -> str:
    """The CI status values (`status` of `POST /cis`, `PATCH /cis/{id}`, `GET /cis?status=`)."""
    return _meanings("status", CI_STATUS_MEANING, get_args(CiStatus))


def resolution_codes() -> str:
    """The `resolution_code` values of a move to `resolved`."""
    return _meanings("resolution_code", RESOLUTION_MEANING, RESOLUTION_CODES)


def hold_reasons() -> str:
    """The `hold_reason` values of a move to `on_hold`."""
    return _meanings("hold_reason", HOLD_MEANING, HOLD_REASONS)


def _shape(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return "one of " + ", ".join(f"`{v}`" for v in schema["enum"])
    kind = schema.get("type", "any")
    if "format" in schema:
        return f"{kind} ({schema['format']})"
    bounds = [
        f"{sign} {schema[key]}"
        for key, sign in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"))
        if key in schema
    ]
    if bounds:
        return f"{kind} {', '.join(bounds)}"
    if kind == "array":
        return f"list of {_shape(schema.get('items', {}))}"
    return str(kind)


def builtin_classes() -> str:
    """Each built-in CI class with the attributes it requires and those it allows."""
    rows = ["| class | what | required attributes | optional attributes |", "|---|---|---|---|"]
    for name in sorted(BUILTIN_CLASSES):
        schema = BUILTIN_CLASSES[name]
        properties = schema.get("properties", {})
        required = schema.get("required", [])
        needed = "; ".join(f"`{a}`: {_shape(properties[a])}" for a in required) or "none"
        optional = ", ".join(f"`{a}`" for a in properties if a not in required) or "none"
        rows.append(f"| `{name}` | {schema.get('description', '')} | {needed} | {optional} |")
    return "\n".join(rows)


def calendar_spec() -> str:
    """The fields of a business-hours calendar (`calendar` of `PUT /calendars/{name}`)."""
    fields = CalendarSpec.model_fields
    interval = OpeningInterval.model_fields
    days = ", ".join(f"`{d}`" for d in WEEKDAYS)
    rows = [
        "| field | required | what |",
        "|---|---|---|",
        f"| `timezone` | yes | {fields['timezone'].description} Not a machine-local zone. |",
        f"| `weekly_hours` | yes | {fields['weekly_hours'].description} Keys: {days}; each a"
        " list of intervals, sorted by start, not overlapping. |",
        f"| `weekly_hours.<day>[].start` | yes | {interval['start'].description} |",
        f"| `weekly_hours.<day>[].end` | yes | {interval['end'].description} After `start`. |",
        f"| `holidays` | no | {fields['holidays'].description} Dates, `YYYY-MM-DD`. |",
    ]
    assert set(fields) == {"timezone", "weekly_hours", "holidays"}, "describe every field"
    assert set(interval) == {"start", "end"}, "describe every interval field"
    return "\n".join(rows)


def event_types() -> str:
    """Every event type of the catalogue with its topic, producer and payload model."""
    rows = ["| type | topic | source | payload model |", "|---|---|---|---|"]
    for spec in sorted(CATALOGUE.values(), key=lambda s: (s.topic, s.type)):
        rows.append(
            f"| `{spec.type}` | `{spec.topic}` | `{spec.source}` | `{spec.model.__name__}` |"
        )
    return "\n".join(rows)


def kpi_definitions() -> str:
    """Every KPI's versioned definition (services/reporting/domain/kpis.py)."""
    rows = [
        "| id | version | title | unit | better | process | definition |",
        "|---|---|---|---|---|---|---|",
    ]
    for d in KPI_DEFINITIONS:
        rows.append(
            f"| `{d.id}` | {d.version} | {d.title} | {d.unit} | {d.better} | {d.process} |"
            f" {d.description} |"
        )
    return "\n".join(rows)


# (file, block name, renderer): each block sits between `<!-- BEGIN GENERATED name -->` and
# `<!-- END GENERATED name -->` in its file.
BLOCKS: list[tuple[str, str, Callable[[], str]]] = [
    ("services/config/README.md", "ci-statuses", ci_statuses),
    ("services/config/README.md", "ci-classes", builtin_classes),
    ("services/config/README.md", "calendar-spec", calendar_spec),
    ("services/incident/README.md", "resolution-codes", resolution_codes),
    ("services/incident/README.md", "hold-reasons", hold_reasons),
    ("docs/events.md", "event-types", event_types),
    ("docs/kpis.md", "kpi-definitions", kpi_definitions),
    ("deploy/kafka/PRODUCTION.md", "kafka-acls", kafka_acls),
]


def _pattern(name: str) -> re.Pattern[str]:
    name = re.escape(name)
    begin, end = f"<!-- BEGIN GENERATED {name} -->", f"<!-- END GENERATED {name} -->"
    return re.compile(rf"({begin}\n)(.*?)(\n{end})", re.DOTALL)


def _spaced(table: str) -> str:
    # Blank lines around the table, so that every Markdown renderer sees a table.
    return f"\n{table}\n"


def block_of(path: str, name: str) -> str | None:
    match = _pattern(name).search((ROOT / path).read_text())
    return match.group(2) if match else None


@pytest.mark.parametrize(("path", "name", "render"), BLOCKS, ids=[b[1] for b in BLOCKS])
def test_the_reference_table_lists_exactly_what_the_code_accepts(path, name, render):
    assert block_of(path, name) == _spaced(render()), (
        f"{path}: the {name} table differs from the code; run"
        " `.venv/bin/python -m tests.unit.test_docs_reference` and review the diff"
    )


def test_docs_list_every_event_type_of_the_catalogue():
    table = block_of("docs/events.md", "event-types") or ""
    listed = set(re.findall(r"^\| `([^`]+)` \|", table, re.MULTILINE))
    assert listed == set(CATALOGUE)


def test_the_readmes_link_only_documents_inside_the_repository():
    for readme in [ROOT / "README.md", *ROOT.glob("services/*/README.md"), *ROOT.glob("docs/*.md")]:
        text = readme.read_text()
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # a URL, not a file
            linked = (readme.parent / target).resolve()
            assert linked.is_relative_to(ROOT), f"{readme.name} links outside: {target}"
            assert linked.exists(), f"{readme.name} links a missing file: {target}"
        assert "../shared/design" not in text, readme


def test_the_docs_run_the_local_tools_with_the_venv_python():
    # A bare `python` outside the virtual environment lacks the project's packages.
    local_tools = r"(?<![/\w])python -m (shared\.auth|shared\.devstack|services\.config\.cli)\b"
    for doc in [ROOT / "README.md", ROOT / "SECURITY.md", *ROOT.glob("services/*/README.md")]:
        found = re.search(local_tools, doc.read_text())
        assert found is None, f"{doc.name}: use .venv/bin/{found and found.group(0)}"


def rewrite() -> list[str]:
    """Render every block into its file; the names of the files changed."""
    changed = []
    for path, name, render in BLOCKS:
        file = ROOT / path
        text = file.read_text()
        pattern = _pattern(name)
        assert pattern.search(text), f"{path} has no block {name}"
        table = _spaced(render())
        new = pattern.sub(lambda m, table=table: m.group(1) + table + m.group(3), text)
        if new != text:
            file.write_text(new)
            changed.append(f"{path} ({name})")
    return changed


if __name__ == "__main__":
    print("\n".join(rewrite()) or "every table is up to date", file=sys.stderr)
