"""A numbered, versioned record in PostgreSQL: one repository, parameterised by a table.

`RecordTable` says how a record type is stored: its table (one column per dataclass field, but
for fields computed by a SQL expression, such as a problem's linked incidents), its history
table and the column there that names the record, the fields kept as arrays (tuples in the
record), and its kind in the tenant's record counter. The repository it gives:

- numbers: `next_number`, the tenant's next number of the kind, taken in the creating
  transaction (gap-free; `services/*/adapters/numbers.py` takes them in groups outside it);
- `insert`, `get` (optionally locked for the transaction), `locked` (get, locked, or
  `NotFound`; `StaleVersion` unless it is at the version the caller read), and `save`, which
  writes a new version over exactly the one before it (`StaleVersion` otherwise);
- `record_history` and `history`: one row per version (who, when, what changed);
- `search`: the records matching a filter, newest first, after a (created_at, id) position
  (keyset pagination: the page after a cursor costs the same wherever it is).

Plain, parameterised SQL, always scoped to a tenant (row-level security applies too). The SQL
text is built from the table description once, never from a caller's values.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Generic

from shared.db import Connection
from shared.errors import NotFound, StaleVersion
from shared.records.record import R


@dataclass(frozen=True)
class Condition:
    """One part of a search's WHERE clause: SQL naming its one parameter as `{p}` (as often as
    it needs), and the parameter's value. Columns are the record table's, as `r.<column>`."""

    sql: str
    value: Any


class RecordTable(Generic[R]):
    """How a record type is stored, and the repository over it."""

    def __init__(
        self,
        record: type[R],
        *,
        table: str,
        history: str,
        key: str,
        kind: str,
        what: str,
        arrays: Sequence[str] = (),
        computed: Mapping[str, str] | None = None,
    ) -> None:
        for name in (table, history, key):
            if not name.isidentifier():  # the SQL below is built from these names
                raise ValueError(f"not a SQL identifier: {name!r}")
        self.record = record
        self.table = table
        self.kind = kind
        self.what = what
        self.arrays = frozenset(arrays)
        self.computed = dict(computed or {})
        self.fields = [f.name for f in fields(record)]
        self.columns = [name for name in self.fields if name not in self.computed]
        # id and tenant_id come first (VersionedRecord) and never change.
        assert self.columns[:2] == ["id", "tenant_id"], self.columns[:2]
        names = ", ".join(self.columns)
        places = ", ".join(f"${i}" for i in range(1, len(self.columns) + 1))
        sets = ", ".join(f"{name} = ${i}" for i, name in enumerate(self.columns, 1) if i > 2)
        version = len(self.columns) + 1
        selected = [f"r.{name}" for name in self.columns]
        selected += [f"{sql} AS {name}" for name in self.fields if (sql := self.computed.get(name))]
        # Built from the checked names and the dataclass's fields only (noqa S608 below).
        self.select = f"SELECT {', '.join(selected)} FROM {table} r"  # noqa: S608
        self._insert = f"INSERT INTO {table} ({names}) VALUES ({places})"  # noqa: S608
        self._save = (
            f"UPDATE {table} SET {sets}"  # noqa: S608
            f" WHERE id = $1 AND tenant_id = $2 AND version = ${version}"
        )
        self._get = f"{self.select} WHERE r.tenant_id = $1 AND r.id = $2"
        self._version = f"SELECT version FROM {table} WHERE tenant_id = $1 AND id = $2"  # noqa: S608
        self._record_history = (
            f"INSERT INTO {history} (tenant_id, {key}, version, at, actor, action, changes)"  # noqa: S608
            " VALUES ($1, $2, $3, $4, $5, $6, $7)"
        )
        self._history = (
            f"SELECT version, at, actor, action, changes FROM {history}"  # noqa: S608
            f" WHERE tenant_id = $1 AND {key} = $2 ORDER BY version"
        )

    def row(self, record: R) -> list[Any]:
        """The record's column values, in column order (arrays as lists)."""
        values = [getattr(record, name) for name in self.columns]  # not asdict: it deep-copies
        return [
            list(value) if name in self.arrays else value
            for name, value in zip(self.columns, values, strict=True)
        ]

    def from_row(self, row: Any) -> R:
        """The record a row of `select` holds (arrays as tuples, NULL as empty)."""
        values = dict(row)
        for name in self.arrays:
            values[name] = tuple(values[name] or ())
        return self.record(**values)

    async def next_number(self, conn: Connection, tenant_id: str) -> int:
        """The tenant's next number of this kind, taken in the caller's transaction."""
        return await next_number(conn, tenant_id, self.kind)

    async def insert(self, conn: Connection, record: R) -> None:
        """Store a new record (its first version)."""
        await conn.execute(self._insert, *self.row(record))

    async def save(self, conn: Connection, record: R) -> None:
        """Store the next version of a record over the one before it (which the caller holds
        locked); `StaleVersion` when the stored one is not that version."""
        status = await conn.execute(self._save, *self.row(record), record.version - 1)
        if status != "UPDATE 1":
            current = await conn.fetchval(self._version, record.tenant_id, record.id)
            raise StaleVersion(self.what, current or 0, record.version - 1)

    async def get(
        self, conn: Connection, tenant_id: str, record_id: uuid.UUID, *, lock: bool = False
    ) -> R | None:
        """The tenant's record with this id, or None (locked for the transaction with `lock`)."""
        row = await conn.fetchrow(
            self._get + (" FOR UPDATE OF r" if lock else ""), tenant_id, record_id
        )
        return self.from_row(row) if row else None

    async def locked(
        self, conn: Connection, tenant_id: str, record_id: uuid.UUID, expected: int | None
    ) -> R:
        """The record, locked for the transaction: `NotFound` without one, `StaleVersion` when
        `expected` (the version the caller read; None: any) is not the current one."""
        record = await self.get(conn, tenant_id, record_id, lock=True)
        if record is None:
            raise NotFound(self.kind, str(record_id))
        if expected is not None and expected != record.version:
            raise StaleVersion(self.what, record.version, expected)
        return record

    async def record_history(
        self, conn: Connection, record: R, *, action: str, changes: dict[str, Any]
    ) -> None:
        """Keep the version: who, when, what changed."""
        await conn.execute(
            self._record_history,
            record.tenant_id,
            record.id,
            record.version,
            record.updated_at,
            record.updated_by,
            action,
            changes,
        )

    async def history(
        self, conn: Connection, tenant_id: str, record_id: uuid.UUID
    ) -> list[dict[str, Any]]:
        """Every version of a record, oldest first."""
        return [dict(r) for r in await conn.fetch(self._history, tenant_id, record_id)]

    async def search(
        self,
        conn: Connection,
        tenant_id: str,
        where: Sequence[Condition],
        *,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[R]:
        """Records matching every condition, newest first, after a (created_at, id) position."""
        parts = [self.select, " WHERE r.tenant_id = $1"]
        params: list[Any] = [tenant_id]
        for condition in where:
            params.append(condition.value)
            parts.append(" AND " + condition.sql.format(p=f"${len(params)}"))
        if after is not None:
            params += after
            parts.append(f" AND (r.created_at, r.id) < (${len(params) - 1}, ${len(params)})")
        params.append(limit)
        parts.append(f" ORDER BY r.created_at DESC, r.id DESC LIMIT ${len(params)}")
        return [self.from_row(r) for r in await conn.fetch("".join(parts), *params)]


async def next_number(conn: Connection, tenant_id: str, kind: str) -> int:
    """The tenant's next record number of a kind (gap-free: taken in the creating transaction)."""
    number = await conn.fetchval(
        "INSERT INTO record_numbers (tenant_id, kind, last) VALUES ($1, $2, 1)"
        " ON CONFLICT (tenant_id, kind) DO UPDATE SET last = record_numbers.last + 1"
        " RETURNING last",
        tenant_id,
        kind,
    )
    assert isinstance(number, int)
    return number
