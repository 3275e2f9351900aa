"""Risk and approval storage in PostgreSQL: versioned rule sets, risk assessments, approval
steps and decisions, CAB meetings. Plain SQL on the caller's tenant transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from services.change.domain.approvals import Approvers, Decision, Step
from services.change.domain.risk import LEAST_CRITICAL
from shared.cmdb.reads import service_by_id, services_of_ci
from shared.cmdb.walks import walk
from shared.db import Connection
from shared.uow import TransactionStore


@dataclass(frozen=True)
class RuleSet:
    """A stored version of a tenant's rule set (version 0: the defaults, never stored)."""

    kind: str
    version: int
    body: dict[str, Any] | None
    created_at: datetime | None = None
    created_by: str | None = None


@dataclass(frozen=True)
class StoredAssessment:
    """A recorded risk assessment, with everything needed to replay it."""

    id: uuid.UUID
    change_id: uuid.UUID
    change_version: int
    rule_set_version: int
    inputs: dict[str, Any]
    factors: list[dict[str, Any]]
    score: float
    computed_level: str
    level: str
    override_reason: str | None
    assessed_at: datetime
    assessed_by: str


@dataclass(frozen=True)
class CabMeeting:
    """A CAB meeting: when, who sits on it."""

    id: uuid.UUID
    title: str
    starts_at: datetime
    members: tuple[str, ...]
    created_at: datetime
    created_by: str


class PostgresCab(TransactionStore):
    """The tenant's rule sets, assessments, steps, decisions and meetings, on the connection of
    the unit of work that holds it."""

    # --- rule sets -------------------------------------------------------------------------

    async def lock_rule_set(self, kind: str) -> None:
        """Serialise the writers of one kind of rule set (also while none is stored)."""
        await self._conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('change_rule_sets:' || $1 || ':' || $2,"
            " 0))",
            self._tenant,
            kind,
        )

    async def rule_set(self, kind: str, version: int | None = None) -> RuleSet:
        """A version of the rule set (the latest when None); version 0 when none is stored."""
        if version == 0:
            return RuleSet(kind, 0, None)
        row = await self._conn.fetchrow(
            "SELECT version, body, created_at, created_by FROM change_rule_sets"
            " WHERE tenant_id = $1 AND kind = $2 AND ($3::integer IS NULL OR version = $3)"
            " ORDER BY version DESC LIMIT 1",
            self._tenant,
            kind,
            version,
        )
        if row is None:
            return RuleSet(kind, 0, None)
        return RuleSet(kind, row["version"], row["body"], row["created_at"], row["created_by"])

    async def add_rule_set(
        self, kind: str, version: int, body: dict[str, Any], *, at: datetime, actor: str
    ) -> None:
        """Store a new version of the rule set."""
        await self._conn.execute(
            "INSERT INTO change_rule_sets (tenant_id, kind, version, body, created_at, created_by)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            self._tenant,
            kind,
            version,
            body,
            at,
            actor,
        )

    # --- risk assessments ------------------------------------------------------------------

    async def add_assessment(self, a: StoredAssessment) -> None:
        """Record an assessment."""
        await self._conn.execute(
            "INSERT INTO risk_assessments (tenant_id, id, change_id, change_version,"
            " rule_set_version, inputs, factors, score, computed_level, level, override_reason,"
            " assessed_at, assessed_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,"
            " $12, $13)",
            self._tenant,
            a.id,
            a.change_id,
            a.change_version,
            a.rule_set_version,
            a.inputs,
            a.factors,
            a.score,
            a.computed_level,
            a.level,
            a.override_reason,
            a.assessed_at,
            a.assessed_by,
        )

    async def assessments(
        self, change_id: uuid.UUID, *, limit: int = 100
    ) -> list[StoredAssessment]:
        """A change's assessments, newest first."""
        rows = await self._conn.fetch(
            "SELECT * FROM risk_assessments WHERE tenant_id = $1 AND change_id = $2"
            " ORDER BY assessed_at DESC, id DESC LIMIT $3",
            self._tenant,
            change_id,
            limit,
        )
        return [_assessment(r) for r in rows]

    # --- blast radius (the CMDB projection) ------------------------------------------------

    async def blast_radius(
        self, ci_ids: Sequence[uuid.UUID], hops: int
    ) -> tuple[int, list[tuple[str, int]]]:
        """(CIs reached, including the affected ones; business services reached or supported,
        with their criticality) walking `hops` relationships upstream from each affected CI."""
        reached: set[str] = {str(ci) for ci in ci_ids}
        services: dict[str, int] = {}
        for ci in ci_ids:
            impact = await walk(self._conn, self._tenant, str(ci), direction="upstream", depth=hops)
            reached |= {item.id for item in impact.items}
            for item in impact.business_services():
                services[item.id] = item.criticality or LEAST_CRITICAL
            for service_id in await services_of_ci(self._conn, self._tenant, str(ci)):
                if service_id not in services:
                    found = await service_by_id(self._conn, self._tenant, service_id)
                    services[service_id] = found.criticality if found else LEAST_CRITICAL
        return len(reached), sorted(services.items())

    # --- failure history -------------------------------------------------------------------

    async def earlier_outcomes(
        self, change_id: uuid.UUID, ci_ids: Sequence[uuid.UUID], template_id: uuid.UUID | None
    ) -> tuple[int, int]:
        """(implemented, failed or rolled back) among other changes on any of these CIs or from
        this template."""
        row = await self._conn.fetchrow(
            "SELECT count(*) AS done,"
            " count(*) FILTER (WHERE outcome IN ('failed', 'rolled_back')) AS failed"
            " FROM changes WHERE tenant_id = $1 AND id <> $2 AND outcome IS NOT NULL"
            " AND (affected_cis && $3::uuid[] OR ($4::uuid IS NOT NULL AND template_id = $4))",
            self._tenant,
            change_id,
            list(ci_ids),
            template_id,
        )
        assert row is not None
        return int(row["done"]), int(row["failed"])

    # --- approval steps and decisions ------------------------------------------------------

    async def last_round(self, change_id: uuid.UUID) -> int:
        """The number of the change's latest approval round (0: none yet)."""
        found = await self._conn.fetchval(
            "SELECT max(round) FROM approval_steps WHERE tenant_id = $1 AND change_id = $2",
            self._tenant,
            change_id,
        )
        return int(found or 0)

    async def authorization_inputs(
        self, change_id: uuid.UUID, kind: str
    ) -> tuple[list[Step], list[Decision], RuleSet]:
        """What the change's authorization is computed from, in one round trip (the gate asks
        it on every decision): the steps of its latest round (`round_steps`), every decision
        on it (`decisions`) and the latest rule set of `kind` (`rule_set`)."""
        row = await self._conn.fetchrow(_AUTHORIZATION_INPUTS, self._tenant, change_id, kind)
        assert row is not None  # one row, always
        rule_set = (
            RuleSet(kind, 0, None)
            if row["version"] is None
            else RuleSet(kind, row["version"], row["body"], row["created_at"], row["created_by"])
        )
        return (
            [_step(_typed(s, _STEP_UUIDS, _STEP_INSTANTS)) for s in row["steps"]],
            [_decision(_typed(d, _DECISION_UUIDS, ("at",))) for d in row["decisions"]],
            rule_set,
        )

    async def round_steps(self, change_id: uuid.UUID, round: int | None = None) -> list[Step]:
        """The steps of a round (the latest when None), in order."""
        rows = await self._conn.fetch(
            "SELECT * FROM approval_steps WHERE tenant_id = $1 AND change_id = $2 AND round ="
            " coalesce($3::integer, (SELECT max(round) FROM approval_steps"
            " WHERE tenant_id = $1 AND change_id = $2)) ORDER BY position",
            self._tenant,
            change_id,
            round,
        )
        return [_step(r) for r in rows]

    async def step(self, step_id: uuid.UUID, *, lock: bool = False) -> Step | None:
        """One step."""
        row = await self._conn.fetchrow(_STEP_LOCKED if lock else _STEP, self._tenant, step_id)
        return None if row is None else _step(row)

    async def pending_steps(self, *, limit: int) -> list[Step]:
        """Pending steps of the tenant, oldest deadline first."""
        rows = await self._conn.fetch(
            "SELECT * FROM approval_steps WHERE tenant_id = $1 AND state = 'pending'"
            " ORDER BY deadline_at NULLS LAST, id LIMIT $2",
            self._tenant,
            limit,
        )
        return [_step(r) for r in rows]

    async def add_steps(self, steps: Sequence[Step]) -> None:
        """Store a new round's steps."""
        for s in steps:
            await self._conn.execute(
                "INSERT INTO approval_steps (tenant_id, id, change_id, round, position, name,"
                " approvers, quorum, n, deadline_seconds, content_hash, state, opened_at,"
                " deadline_at, escalate_at, escalations, completed_at, version)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,"
                " $17, $18)",
                s.tenant_id,
                s.id,
                s.change_id,
                s.round,
                s.position,
                s.name,
                s.approvers.model_dump(mode="json"),
                s.quorum,
                s.n,
                s.deadline.total_seconds(),
                s.content_hash,
                s.state,
                s.opened_at,
                s.deadline_at,
                s.escalate_at,
                s.escalations,
                s.completed_at,
                s.version,
            )

    async def save_step(self, s: Step) -> None:
        """Store a step's new state, deadline and escalations."""
        await self._conn.execute(
            "UPDATE approval_steps SET state = $3, opened_at = $4, deadline_at = $5,"
            " escalate_at = $6, escalations = $7, completed_at = $8, version = $9"
            " WHERE tenant_id = $1 AND id = $2",
            self._tenant,
            s.id,
            s.state,
            s.opened_at,
            s.deadline_at,
            s.escalate_at,
            s.escalations,
            s.completed_at,
            s.version,
        )

    async def void_open_steps(self, change_id: uuid.UUID, *, at: datetime) -> list[Step]:
        """Void the change's waiting and pending steps (a new round replaces them)."""
        rows = await self._conn.fetch(
            "UPDATE approval_steps SET state = 'void', completed_at = $3, version = version + 1"
            " WHERE tenant_id = $1 AND change_id = $2 AND state IN ('waiting', 'pending')"
            " RETURNING *",
            self._tenant,
            change_id,
            at,
        )
        return [_step(r) for r in rows]

    async def decisions(self, change_id: uuid.UUID) -> list[Decision]:
        """Every decision on the change, oldest first."""
        rows = await self._conn.fetch(
            "SELECT * FROM approval_decisions WHERE tenant_id = $1 AND change_id = $2"
            " ORDER BY at, id",
            self._tenant,
            change_id,
        )
        return [_decision(r) for r in rows]

    async def add_decision(self, d: Decision) -> None:
        """Record a decision."""
        await self._conn.execute(
            "INSERT INTO approval_decisions (tenant_id, id, step_id, change_id, approver,"
            " decision, comment, content_hash, at, cab_meeting_id)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            self._tenant,
            d.id,
            d.step_id,
            d.change_id,
            d.approver,
            d.decision,
            d.comment,
            d.content_hash,
            d.at,
            d.cab_meeting_id,
        )

    # --- CAB meetings ----------------------------------------------------------------------

    async def add_meeting(self, m: CabMeeting) -> None:
        """Record a CAB meeting."""
        await self._conn.execute(
            "INSERT INTO cab_meetings (tenant_id, id, title, starts_at, members, created_at,"
            " created_by) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            self._tenant,
            m.id,
            m.title,
            m.starts_at,
            list(m.members),
            m.created_at,
            m.created_by,
        )

    async def meeting(self, meeting_id: uuid.UUID) -> CabMeeting | None:
        """One CAB meeting."""
        row = await self._conn.fetchrow(
            "SELECT * FROM cab_meetings WHERE tenant_id = $1 AND id = $2",
            self._tenant,
            meeting_id,
        )
        if row is None:
            return None
        return CabMeeting(
            id=row["id"],
            title=row["title"],
            starts_at=row["starts_at"],
            members=tuple(row["members"]),
            created_at=row["created_at"],
            created_by=row["created_by"],
        )


_STEP = "SELECT * FROM approval_steps WHERE tenant_id = $1 AND id = $2"
_STEP_LOCKED = _STEP + " FOR UPDATE"


async def due_escalations(
    conn: Connection, now: datetime, *, limit: int
) -> list[tuple[str, uuid.UUID]]:
    """(tenant, step id) of pending steps of every tenant whose escalation is due, in an
    all-tenants transaction."""
    rows = await conn.fetch(
        "SELECT tenant_id, id FROM approval_steps WHERE state = 'pending' AND escalate_at <= $1"
        " ORDER BY escalate_at LIMIT $2",
        now,
        limit,
    )
    return [(r["tenant_id"], r["id"]) for r in rows]


def _assessment(r: asyncpg.Record) -> StoredAssessment:
    return StoredAssessment(
        id=r["id"],
        change_id=r["change_id"],
        change_version=r["change_version"],
        rule_set_version=r["rule_set_version"],
        inputs=r["inputs"],
        factors=r["factors"],
        score=r["score"],
        computed_level=r["computed_level"],
        level=r["level"],
        override_reason=r["override_reason"],
        assessed_at=r["assessed_at"],
        assessed_by=r["assessed_by"],
    )


# `authorization_inputs`: the three reads of `round_steps`, `decisions` and `rule_set` as one
# statement; the steps and decisions travel as JSON (`_typed` restores their ids and instants).
_AUTHORIZATION_INPUTS = (
    "SELECT coalesce((SELECT jsonb_agg(s ORDER BY s.position) FROM approval_steps s"
    " WHERE s.tenant_id = $1 AND s.change_id = $2 AND s.round = (SELECT max(round)"
    " FROM approval_steps WHERE tenant_id = $1 AND change_id = $2)), '[]') AS steps,"
    " coalesce((SELECT jsonb_agg(d ORDER BY d.at, d.id) FROM approval_decisions d"
    " WHERE d.tenant_id = $1 AND d.change_id = $2), '[]') AS decisions,"
    " r.version, r.body, r.created_at, r.created_by"
    " FROM (SELECT 1) AS one LEFT JOIN LATERAL (SELECT version, body, created_at, created_by"
    " FROM change_rule_sets WHERE tenant_id = $1 AND kind = $3 ORDER BY version DESC LIMIT 1)"
    " AS r ON true"
)
_STEP_UUIDS = ("id", "change_id")
_STEP_INSTANTS = ("opened_at", "deadline_at", "escalate_at", "completed_at")
_DECISION_UUIDS = ("id", "step_id", "change_id", "cab_meeting_id")


def _typed(row: dict[str, Any], uuids: Sequence[str], instants: Sequence[str]) -> dict[str, Any]:
    """A row read as JSON with its UUIDs and instants as asyncpg reads them."""
    typed = dict(row)
    for name in uuids:
        if typed[name] is not None:
            typed[name] = uuid.UUID(typed[name])
    for name in instants:
        if typed[name] is not None:
            typed[name] = datetime.fromisoformat(typed[name])
    return typed


def _step(r: asyncpg.Record | dict[str, Any]) -> Step:
    return Step(
        id=r["id"],
        tenant_id=r["tenant_id"],
        change_id=r["change_id"],
        round=r["round"],
        position=r["position"],
        name=r["name"],
        approvers=Approvers.model_validate(r["approvers"]),
        quorum=r["quorum"],
        n=r["n"],
        deadline=timedelta(seconds=r["deadline_seconds"]),
        content_hash=r["content_hash"],
        state=r["state"],
        opened_at=r["opened_at"],
        deadline_at=r["deadline_at"],
        escalate_at=r["escalate_at"],
        escalations=r["escalations"],
        completed_at=r["completed_at"],
        version=r["version"],
    )


def _decision(r: asyncpg.Record | dict[str, Any]) -> Decision:
    return Decision(
        id=r["id"],
        step_id=r["step_id"],
        change_id=r["change_id"],
        approver=r["approver"],
        decision=r["decision"],
        comment=r["comment"],
        content_hash=r["content_hash"],
        at=r["at"],
        cab_meeting_id=r["cab_meeting_id"],
    )
