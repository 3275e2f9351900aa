"""Surveys in PostgreSQL (migration 0013): one row per surveyed record, with its answer.

No token is stored: the row is what a valid token points at.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from services.incident.domain.survey import Survey
from shared.db import Connection
from shared.events.catalogue import RecordKind

_COLUMNS = (
    "tenant_id, record, record_id, caller, services, assignment_group, assignee, sent_at,"
    " expires_at, score, comment, answered_at"
)


@dataclass(frozen=True)
class SurveyFilter:
    """What `GET /surveys` narrows by (None: any)."""

    record: RecordKind | None = None
    record_id: uuid.UUID | None = None
    scores: tuple[int, ...] = ()
    answered: bool | None = None
    service: str | None = None
    assignment_group: str | None = None
    assignee: str | None = None


def _survey(row: asyncpg.Record) -> Survey:
    values = dict(row)
    values["services"] = tuple(values["services"])
    return Survey(**values)


async def get(
    conn: Connection, tenant_id: str, record: RecordKind, record_id: uuid.UUID, *, lock: bool
) -> Survey | None:
    """The record's survey (locked for the transaction with `lock`), or None."""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM surveys"  # noqa: S608 - constant columns
        " WHERE tenant_id = $1 AND record = $2 AND record_id = $3"
        + (" FOR UPDATE" if lock else ""),
        tenant_id,
        record,
        record_id,
    )
    return None if row is None else _survey(row)


async def insert(conn: Connection, survey: Survey) -> bool:
    """Store a new survey; False when the record already has one (nothing written)."""
    inserted = await conn.fetchval(
        "INSERT INTO surveys (tenant_id, record, record_id, caller, services, assignment_group,"
        " assignee, sent_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        " ON CONFLICT (tenant_id, record, record_id) DO NOTHING RETURNING true",
        survey.tenant_id,
        survey.record,
        survey.record_id,
        survey.caller,
        list(survey.services),
        survey.assignment_group,
        survey.assignee,
        survey.sent_at,
        survey.expires_at,
    )
    return bool(inserted)


async def save_answer(conn: Connection, survey: Survey) -> None:
    """Store the survey's answer (the row must be unanswered: one answer, ever)."""
    status = await conn.execute(
        "UPDATE surveys SET score = $4, comment = $5, answered_at = $6"
        " WHERE tenant_id = $1 AND record = $2 AND record_id = $3 AND answered_at IS NULL",
        survey.tenant_id,
        survey.record,
        survey.record_id,
        survey.score,
        survey.comment,
        survey.answered_at,
    )
    if status != "UPDATE 1":
        raise RuntimeError(f"survey {survey.record_id} was answered twice")


async def search(
    conn: Connection,
    tenant_id: str,
    where: SurveyFilter,
    *,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Survey]:
    """The tenant's surveys, newest sent first, after the keyset position."""
    clauses = ["tenant_id = $1"]
    args: list[Any] = [tenant_id]

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if where.record is not None:
        clauses.append(f"record = {arg(where.record)}")
    if where.record_id is not None:
        clauses.append(f"record_id = {arg(where.record_id)}")
    if where.scores:
        clauses.append(f"score = ANY({arg(list(where.scores))}::smallint[])")
    if where.answered is not None:
        clauses.append("answered_at IS NOT NULL" if where.answered else "answered_at IS NULL")
    if where.service is not None:
        clauses.append(f"{arg(where.service)} = ANY(services)")
    if where.assignment_group is not None:
        clauses.append(f"assignment_group = {arg(where.assignment_group)}")
    if where.assignee is not None:
        clauses.append(f"assignee = {arg(where.assignee)}")
    if after is not None:
        clauses.append(f"(sent_at, record_id) < ({arg(after[0])}, {arg(after[1])})")
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM surveys WHERE {' AND '.join(clauses)}"  # noqa: S608 - parameterised
        f" ORDER BY sent_at DESC, record_id DESC LIMIT {arg(limit)}",
        *args,
    )
    return [_survey(r) for r in rows]
