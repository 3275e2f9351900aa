"""Discovery imports: reading rows (JSON lines or CSV) and reconciling them with the CMDB.

A row is a CI (matched by its external id in the import's source) or a relationship between two
CIs named by their external ids. Reconciling a CI row against the CI on record gives one outcome:
created, updated, unchanged, drift (a controlled CI differs: nothing applied) or rejected.
Fields a row leaves out are left as they are; attributes a row names are merged into the CI's.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, ValidationError

from services.config.domain import classes
from services.config.domain.change_control import ChangeControl, under_control
from services.config.domain.ci import ConfigurationItem
from shared.events.catalogue import CiStatus, RelationshipType
from shared.nul import NUL, nul_paths
from shared.nul import REASON as NUL_REASON

# No class under change control: only CIs flagged `controlled` are.
NO_CLASSES = ChangeControl()

Outcome = Literal["created", "updated", "unchanged", "drift", "rejected"]
OUTCOMES: tuple[Outcome, ...] = ("created", "updated", "unchanged", "drift", "rejected")
Format = Literal["jsonl", "csv"]

MAX_LINE_BYTES = 1_048_576
# What `lines` yields in place of a line over MAX_LINE_BYTES.
TOO_LONG = b"\x00too-long"
EXTERNAL_ID = Annotated[str, Field(min_length=1, max_length=200)]
# CSV columns named `attributes.<name>` carry attributes.
ATTRIBUTE_COLUMN = "attributes."
# Fields of a CI row that reconciliation compares, in the order differences are reported.
COMPARED = ("name", "status", "owner_team", "criticality", "attributes")


class CiRow(BaseModel):
    """A discovered configuration item."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False)

    kind: Literal["ci"] = "ci"
    external_id: EXTERNAL_ID
    ci_class: str = Field(alias="class", pattern=classes.CLASS_NAME.pattern)
    name: str = Field(min_length=1, max_length=200)
    status: CiStatus | None = None
    owner_team: str | None = Field(default=None, max_length=200)
    criticality: int | None = Field(default=None, ge=1, le=4)
    attributes: dict[str, Any] | None = None


class RelationshipRow(BaseModel):
    """A discovered relationship: `source <type> target`, both external ids of this source."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["relationship"]
    type: RelationshipType
    source: EXTERNAL_ID
    target: EXTERNAL_ID


Row = Annotated[CiRow | RelationshipRow, Field(discriminator="kind")]
_ROW: TypeAdapter[CiRow | RelationshipRow] = TypeAdapter(Row)


def _kind_or_ci(data: Any) -> str | None:
    """The row's `kind`, `ci` when it has none (the fast path's discriminator)."""
    if isinstance(data, dict):
        kind = data.get("kind", "ci")
        return kind if isinstance(kind, str) else None
    return None


# The same rows read straight from JSON text by pydantic-core, without a dict in between. Only
# its successes are used: whatever it refuses goes the way above, which words every reason.
_ROW_FROM_JSON: TypeAdapter[CiRow | RelationshipRow] = TypeAdapter(
    Annotated[
        Annotated[CiRow, Tag("ci")] | Annotated[RelationshipRow, Tag("relationship")],
        Discriminator(_kind_or_ci),
    ]
)


class Parsed(NamedTuple):
    """One input row: its line number and either the row or why it cannot be read.

    (A named tuple: one per input row, and cheaper to make than a frozen dataclass.)
    """

    line: int
    row: CiRow | RelationshipRow | None
    reason: str | None = None
    key: str | None = None


def row_key(row: CiRow | RelationshipRow) -> str:
    """How the import report names a row: the external id, or `source -type-> target`."""
    if isinstance(row, CiRow):
        return row.external_id
    return f"{row.source} -{row.type}-> {row.target}"


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"] if p not in ("ci", "relationship"))
    return f"{where or 'row'}: {first['msg']}"


def parse_object(line: int, data: object) -> Parsed:
    """Validate one decoded row (`kind` defaults to `ci`)."""
    if not isinstance(data, dict):
        return Parsed(line, None, "row: expected a JSON object")
    if "kind" not in data:
        data = {**data, "kind": "ci"}
    key = data.get("external_id") if isinstance(data.get("external_id"), str) else None
    found = nul_paths(data)
    if found:
        # PostgreSQL text cannot hold it: refused here, per row, like any other invalid cell.
        return Parsed(line, None, f"{found[0]}: {NUL_REASON}", key and key.replace(NUL, ""))
    try:
        row = _ROW.validate_python(data)
    except ValidationError as exc:
        return Parsed(line, None, _describe(exc), key)
    return Parsed(line, row, key=row_key(row))


async def lines(chunks: AsyncIterator[bytes], progress: list[int]) -> AsyncIterator[bytes]:
    """Split a byte stream into lines without holding more than one line (plus a chunk).

    `progress[0]` counts the bytes read so far. A line longer than MAX_LINE_BYTES is yielded
    cut short with a marker, so it is rejected without buffering the rest of it.
    """
    pending = b""
    skipping = False
    async for chunk in chunks:
        progress[0] += len(chunk)
        if b"\n" not in chunk:
            pending += chunk
        else:
            # One split per chunk: cutting lines off the front one by one copies the rest of
            # the chunk for every line.
            complete = (pending + chunk).split(b"\n")
            pending = complete.pop()
            if skipping:
                skipping = False
                del complete[0]  # the end of the overlong line
            for line in complete:
                yield line
        if len(pending) > MAX_LINE_BYTES:
            if not skipping:
                yield TOO_LONG
            skipping = True
            pending = b""
    if pending and not skipping:
        yield pending


def parse_jsonl_line(number: int, raw: bytes) -> Parsed | None:
    """One JSON line (None for a blank one)."""
    if raw == TOO_LONG:
        return Parsed(number, None, f"row: longer than {MAX_LINE_BYTES} bytes")
    text = raw.strip()
    if not text:
        return None
    if b"\\u0000" in text:
        # Decoded here to name the field holding the NUL (parse_object refuses the row).
        try:
            return parse_object(number, json.loads(text))
        except (ValueError, UnicodeDecodeError) as exc:
            return Parsed(number, None, f"row: not JSON ({exc})")
    try:
        row = _ROW_FROM_JSON.validate_json(text)
    except ValidationError:
        pass  # not JSON, not a row, or JSON that pydantic-core reads otherwise: see below
    else:
        return Parsed(number, row, key=row_key(row))
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        return Parsed(number, None, f"row: not JSON ({exc})")
    return parse_object(number, data)


class CsvRows:
    """CSV rows with a header line: `kind, external_id, class, name, status, owner_team,
    criticality, type, source, target` and `attributes.<name>` columns. Empty cells are absent.
    Attribute cells are typed by the class schema (integer, number, boolean, array, object cells
    are JSON; everything else is text); `schemas` maps class names to their attribute schemas.
    """

    def __init__(self, schemas: dict[str, dict[str, Any]]) -> None:
        self.schemas = schemas
        self.header: list[str] | None = None

    def parse(self, number: int, raw: bytes) -> Parsed | None:
        """One CSV line: the header first, then rows (None for the header and blank lines)."""
        if raw == TOO_LONG:
            return Parsed(number, None, f"row: longer than {MAX_LINE_BYTES} bytes")
        try:
            text = raw.decode().rstrip("\r")
        except UnicodeDecodeError:
            return Parsed(number, None, "row: not UTF-8")
        if not text.strip():
            return None
        try:
            cells = next(csv.reader(io.StringIO(text)))
        except (csv.Error, StopIteration) as exc:
            return Parsed(number, None, f"row: not CSV ({exc})")
        if self.header is None:
            self.header = [c.strip() for c in cells]
            return None
        if len(cells) != len(self.header):
            return Parsed(
                number, None, f"row: {len(cells)} cells where the header has {len(self.header)}"
            )
        return self._row(number, dict(zip(self.header, cells, strict=True)))

    def _row(self, number: int, cells: dict[str, str]) -> Parsed:
        data: dict[str, Any] = {}
        attributes: dict[str, Any] = {}
        ci_class = cells.get("class", "")
        properties = self.schemas.get(ci_class, {}).get("properties", {})
        for column, cell in cells.items():
            if cell == "":
                continue
            if column.startswith(ATTRIBUTE_COLUMN):
                name = column[len(ATTRIBUTE_COLUMN) :]
                kind = properties.get(name, {}).get("type")
                if kind in ("integer", "number", "boolean", "array", "object"):
                    try:
                        attributes[name] = json.loads(cell)
                    except ValueError:
                        return Parsed(number, None, f"attributes.{name}: expected {kind}")
                else:
                    attributes[name] = cell
            elif column == "criticality":
                if not cell.strip().isdigit():
                    return Parsed(number, None, "criticality: expected 1 to 4")
                data[column] = int(cell)
            else:
                data[column] = cell
        if attributes:
            data["attributes"] = attributes
        return parse_object(number, data)


@dataclass(frozen=True)
class Reconciled:
    """What a CI row means for the CI on record."""

    outcome: Outcome
    changes: dict[str, Any]
    differences: dict[str, dict[str, Any]]
    reason: str | None = None


def reconcile(
    current: ConfigurationItem, row: CiRow, control: ChangeControl = NO_CLASSES
) -> Reconciled:
    """Compare a discovered CI with the one on record (the row's class must match); a
    difference on a CI under change control (`control`) is drift, not applied."""
    if row.ci_class != current.ci_class:
        return Reconciled(
            "rejected", {}, {}, f"class: registered as {current.ci_class}, not {row.ci_class}"
        )
    discovered: dict[str, Any] = {
        "name": row.name,
        "status": row.status,
        "owner_team": row.owner_team,
        "criticality": row.criticality,
    }
    changes = {
        field: value
        for field, value in discovered.items()
        if value is not None and value != getattr(current, field)
    }
    differences = {
        field: {"recorded": getattr(current, field), "discovered": value}
        for field, value in changes.items()
    }
    if row.attributes:
        merged = {**current.attributes, **row.attributes}
        if merged != current.attributes:
            changes["attributes"] = merged
            for name, value in sorted(row.attributes.items()):
                if current.attributes.get(name) != value:
                    differences[f"attributes.{name}"] = {
                        "recorded": current.attributes.get(name),
                        "discovered": value,
                    }
    if not changes:
        return Reconciled("unchanged", {}, {})
    if current.status == "retired":
        return Reconciled("rejected", {}, differences, "status: the CI is retired")
    if under_control(current, control):
        return Reconciled("drift", {}, differences)
    return Reconciled("updated", changes, differences)
