"""The changes answering problems, as the change service announces them
(`itsm.change.created.v1`, `itsm.change.transitioned.v1` carry `problem_ids`): consumer
`incident-problem-changes` keeps them in `problem_changes`, and `GET /problems/{id}` lists them
with their number and state (traceability incident -> problem -> known error -> change).

An event older than the row's change version changes nothing (replays, rebuilds)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from shared.db import Connection
from shared.events.catalogue import ChangeCreatedV1, ChangeTransitionedV1
from shared.events.envelope import Envelope


@dataclass(frozen=True)
class ProblemChange:
    """A change answering a problem: its number, type, state and outcome."""

    change_id: uuid.UUID
    number: int
    type: str
    state: str
    outcome: str | None
    request_id: uuid.UUID | None

    def view(self) -> dict[str, Any]:
        """As the problem's API shows it."""
        return {
            "change_id": str(self.change_id),
            "reference": f"CHG{self.number}",
            "number": self.number,
            "type": self.type,
            "state": self.state,
            "outcome": self.outcome,
            "request_id": str(self.request_id) if self.request_id else None,
        }


async def apply(
    conn: Connection, envelope: Envelope, payload: ChangeCreatedV1 | ChangeTransitionedV1
) -> None:
    """Record the change's number and state on each problem it answers."""
    if not payload.problem_ids:
        return
    if isinstance(payload, ChangeCreatedV1):
        state, outcome = "new", None
    else:
        state, outcome = payload.to_state, payload.outcome
    request = payload.problem_request_id
    await conn.execute(
        "INSERT INTO problem_changes (tenant_id, problem_id, change_id, number, type, state,"
        " outcome, request_id, version, updated_at)"
        " SELECT $1, p, $3, $4, $5, $6, $7, $8, $9, $10 FROM unnest($2::uuid[]) AS p"
        " ON CONFLICT (tenant_id, problem_id, change_id) DO UPDATE SET state = EXCLUDED.state,"
        " outcome = coalesce(EXCLUDED.outcome, problem_changes.outcome),"
        " version = EXCLUDED.version, updated_at = EXCLUDED.updated_at"
        " WHERE problem_changes.version <= EXCLUDED.version",
        envelope.tenantid,
        [uuid.UUID(p) for p in payload.problem_ids],
        uuid.UUID(payload.change_id),
        payload.number,
        payload.type,
        state,
        outcome,
        uuid.UUID(request) if request else None,
        envelope.itsmversion,
        envelope.time,
    )


async def changes_of(
    conn: Connection, tenant_id: str, problem_id: uuid.UUID
) -> list[ProblemChange]:
    """The changes answering a problem, by number."""
    rows = await conn.fetch(
        "SELECT change_id, number, type, state, outcome, request_id FROM problem_changes"
        " WHERE tenant_id = $1 AND problem_id = $2 ORDER BY number",
        tenant_id,
        problem_id,
    )
    return [ProblemChange(**dict(r)) for r in rows]
