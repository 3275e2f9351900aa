"""Completeness of the ledger, and the references behind the entity timeline.

One background task reads the ledger in position order after a stored watermark (every tenant
in one pass) and, for each row:
- indexes the records it names (`references_of`: its subject, the ids in its subject, the
  id-valued fields of its data) for `GET /ledger/timeline/{entity}`;
- for the event families that number their aggregate's versions 1, 2, 3, ... (`checks_versions`),
  compares the version with the aggregate's last one: versions skipped are a `version_gap`, an
  aggregate first seen above 1 a `missing_event`; a skipped version arriving later fills its
  gap (closed when nothing is missing any more). Each new gap is written to the outbox as
  `LedgerGapDetectedV1` in the same transaction as the gap row and the watermark.

Events of one aggregate arrive in order (one partition per key), but a relay restarted may
publish a duplicate or an older version again; so a version at or below the last one is never a
gap: it either fills an open gap or is a repeat (several events at one version are normal too: a
work note does not change its incident's version).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from services.reporting.adapters import completeness as store
from services.reporting.metrics import ReportingMetrics
from shared import outbox
from shared.db import all_tenants_transaction
from shared.events.reporting import LedgerGapDetectedV1

log = logging.getLogger(__name__)

ACTOR = "system:ledger-completeness"
BATCH = 2000
# More ids than this in one event (a baseline of every CI) are not all indexed: the timeline
# of a record is about the events that concern it, not every list it appears in.
MAX_REFERENCES = 1000
MAX_ENTITY = 200

# Families whose aggregate's version goes 1, 2, 3, ... with at least one event per version:
# incident, request and problem records and their SLA clocks (`sla/<id>/<kind>`), CIs (and
# their drift, at the CI's version), relationships (1 added, 2 removed), a CI's service
# membership, business-service announcements, calendars and SLA policies.
_VERSIONED_PREFIXES = (
    "itsm.incident.",
    "itsm.config.ci.",
    "itsm.config.relationship.",
    "itsm.config.service_membership.",
    "itsm.config.business_service.",
    "itsm.config.calendar.",
    "itsm.config.sla_policy.",
)
# A change record's own events: the change is the subject and every stored version of it is
# announced (a conflict found or a blackout overridden repeats the version it concerns).
_CHANGE_RECORD_TYPES = frozenset(
    {
        "itsm.change.created.v1",
        "itsm.change.updated.v1",
        "itsm.change.transitioned.v1",
        "itsm.change.implemented.v1",
        "itsm.change.backout_executed.v1",
        "itsm.change.reviewed.v1",
        "itsm.change.risk_assessed.v1",
        "itsm.change.authorized.v1",
        "itsm.change.approval_rejected.v1",
        "itsm.change.conflict_detected.v1",
        "itsm.change.blackout_overridden.v1",
    }
)
# Not checked: token revocations and baselines (version 1, one subject each), the incident
# service's settings (one `settings` subject per tenant whose versions are not all announced),
# problem suggestions (a trend's count), CI classes and imports, the change service's events
# other than a change record's own (approval steps, windows, templates, settings, deployments,
# releases, feed tokens: subjects of their own), and the ledger's own events.
_UNVERSIONED_TYPES = frozenset(
    {
        "itsm.incident.settings_changed.v1",
        "itsm.incident.problem.suggested.v1",
    }
)

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def checks_versions(event_type: str) -> bool:
    """Whether events of this type number their aggregate's versions 1, 2, 3, ..."""
    if event_type in _CHANGE_RECORD_TYPES:
        return True
    return event_type.startswith(_VERSIONED_PREFIXES) and event_type not in _UNVERSIONED_TYPES


def references_of(subject: str, data: Any) -> list[str]:
    """The records an event names: its subject, the ids inside its subject (`sla/<id>/...`)
    and every id-valued string of its data (an incident's CI, a problem's change request, ...),
    in first-seen order."""
    found: dict[str, None] = {}
    if 0 < len(subject) <= MAX_ENTITY:
        found[subject] = None
    for match in _UUID.findall(subject):
        found[match.lower()] = None
    stack = [data]
    while stack and len(found) < MAX_REFERENCES:
        value = stack.pop()
        if isinstance(value, str):
            if len(value) == 36 and _UUID.fullmatch(value):
                found[value.lower()] = None
        elif isinstance(value, dict):
            stack.extend(reversed(list(value.values())))
        elif isinstance(value, list):
            stack.extend(reversed(value))
    return list(found)[:MAX_REFERENCES]


@dataclass
class Gap:
    """A gap of one aggregate: new (`gap_id` None) or open in the store."""

    tenant_id: str
    aggregate: str
    kind: str
    missing: list[int]
    still_missing: list[int]
    last_seen_version: int | None
    seen_version: int
    position: int
    gap_id: int | None = None
    closed_position: int | None = None
    changed: bool = False


@dataclass
class Row:
    """What the task reads of one ledger row."""

    position: int
    tenant_id: str
    type: str
    subject: str
    version: int
    data: Any


@dataclass
class Outcome:
    """What one batch changes: last versions, gaps found or filled, references."""

    versions: dict[tuple[str, str], int] = field(default_factory=dict)
    new_gaps: list[Gap] = field(default_factory=list)
    changed_gaps: list[Gap] = field(default_factory=list)
    references: list[tuple[str, str, int]] = field(default_factory=list)


def examine(
    rows: Sequence[Row],
    last_versions: Mapping[tuple[str, str], int],
    open_gaps: Iterable[Gap],
) -> Outcome:
    """Compare each versioned row with its aggregate's last version, in order (pure)."""
    outcome = Outcome()
    last = dict(last_versions)
    gaps: dict[tuple[str, str], list[Gap]] = {}
    for stored in open_gaps:
        gaps.setdefault((stored.tenant_id, stored.aggregate), []).append(stored)
    for row in rows:
        outcome.references.extend(
            (row.tenant_id, entity, row.position) for entity in references_of(row.subject, row.data)
        )
        if not checks_versions(row.type):
            continue
        key = (row.tenant_id, row.subject)
        previous = last.get(key)
        gap: Gap | None
        if previous is None and row.version > 1:
            gap = _gap(row, "missing_event", list(range(1, row.version)), None)
        elif previous is not None and row.version > previous + 1:
            gap = _gap(row, "version_gap", list(range(previous + 1, row.version)), previous)
        else:
            gap = None
            if previous is not None and row.version <= previous:
                _fill(gaps.get(key, ()), row)
        if gap is not None:
            outcome.new_gaps.append(gap)
            gaps.setdefault(key, []).append(gap)
        if previous is None or row.version > previous:
            last[key] = outcome.versions[key] = row.version
    outcome.changed_gaps = [
        gap for found in gaps.values() for gap in found if gap.changed and gap.gap_id is not None
    ]
    return outcome


def _gap(row: Row, kind: str, missing: list[int], previous: int | None) -> Gap:
    return Gap(
        row.tenant_id,
        row.subject,
        kind,
        missing,
        list(missing),
        previous,
        row.version,
        row.position,
    )


def _fill(gaps: Iterable[Gap], row: Row) -> None:
    """A late version fills the open gap that misses it (a repeat fills nothing)."""
    for gap in gaps:
        if row.version in gap.still_missing:
            gap.still_missing.remove(row.version)
            gap.changed = True
            if not gap.still_missing:
                gap.closed_position = row.position
            return


def gap_event(gap: Gap) -> LedgerGapDetectedV1:
    """The event announcing a new gap."""
    shown = ", ".join(str(v) for v in gap.missing[:20]) + (" ..." if len(gap.missing) > 20 else "")
    if gap.kind == "missing_event":
        detail = f"{gap.aggregate} first seen at version {gap.seen_version}; missing {shown}"
    else:
        detail = (
            f"{gap.aggregate} went from version {gap.last_seen_version} to {gap.seen_version};"
            f" missing {shown}"
        )
    return LedgerGapDetectedV1(
        aggregate=gap.aggregate[:200],
        kind=gap.kind,
        missing_versions=gap.missing[:1000],
        last_seen_version=gap.last_seen_version,
        detail=detail[:2000],
    )


def row_of(record: Mapping[str, Any]) -> Row:
    """A ledger row as `examine` reads it: the data as sent (from the stored message)."""
    value = record["message_value"]
    data = record["data"]
    if value is not None:
        # The ledger took it, so it is JSON; should it not parse, the jsonb copy will do.
        with contextlib.suppress(ValueError):
            data = json.loads(value)
    elif isinstance(data, str):
        data = json.loads(data)
    return Row(
        record["position"],
        record["tenant_id"],
        record["type"],
        record["subject"],
        record["version"],
        data,
    )


async def index_round(
    pool: asyncpg.Pool, metrics: ReportingMetrics | None = None, *, batch: int = BATCH
) -> int:
    """One round: read up to `batch` ledger rows after the watermark, index them, record gaps,
    in one transaction. The number of rows read (0 when another replica holds the round)."""
    async with all_tenants_transaction(pool) as conn:
        state = await store.claim(conn)
        if state is None:
            return 0
        horizon = await store.advance_horizon(conn, state)
        records = await store.rows_after(conn, state.watermark, horizon, batch)
        rows = [row_of(r) for r in records]
        keys = {(r.tenant_id, r.subject) for r in rows if checks_versions(r.type)}
        outcome = examine(
            rows, await store.last_versions(conn, keys), await store.open_gaps(conn, keys)
        )
        await store.save_versions(conn, outcome.versions)
        await store.save_references(conn, outcome.references)
        await store.update_gaps(conn, outcome.changed_gaps)
        for gap in outcome.new_gaps:
            gap.gap_id = await store.insert_gap(conn, gap)
            await outbox.append(
                conn,
                gap_event(gap),
                subject=f"ledger-gap/{gap.gap_id}",
                tenant_id=gap.tenant_id,
                sequence=1,
                actor=ACTOR,
            )
            log.warning(
                "the ledger is missing events of an aggregate",
                extra={"tenant_id": gap.tenant_id, "subject": gap.aggregate, "kind": gap.kind},
            )
        # Read fewer than asked: everything up to the horizon is indexed.
        watermark = rows[-1].position if len(rows) == batch else horizon
        await store.set_watermark(conn, max(watermark, state.watermark))
        open_count = await store.open_gap_count(conn)
    if metrics is not None:
        for gap in outcome.new_gaps:
            metrics.gaps.labels(gap.kind).inc()
        metrics.open_gaps.set(open_count)
    return len(rows)


async def run_completeness(
    pool: asyncpg.Pool, metrics: ReportingMetrics | None = None, *, interval: float = 1.0
) -> None:
    """Index the ledger every `interval` seconds (at once while rounds come back full).

    Supervised: an error ends the loop and the process's supervisor restarts it. Safe in every
    replica: a round holds the watermark's row lock, another replica's round skips."""
    while True:
        read = await index_round(pool, metrics)
        await asyncio.sleep(0 if read >= BATCH else interval)
