"""The ledger table: append one event, read a tenant's events in order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shared.db import Connection
from shared.inbox import ReceivedEvent

_COLUMNS = (
    "position, event_id, type, source, subject, sequence, time, correlation_id, causation_id,"
    " actor, data, recorded_at"
)


_INSERTED = (
    "tenant_id, event_id, type, source, subject, sequence, time, correlation_id, causation_id,"
    " actor, data, topic, partition, kafka_offset"
)


async def append(conn: Connection, event: ReceivedEvent) -> None:
    """Record one event (the inbox guarantees each event arrives here once)."""
    e = event.envelope
    await conn.execute(
        "INSERT INTO ledger (tenant_id, event_id, type, source, subject, sequence, time,"
        " correlation_id, causation_id, actor, data, topic, partition, kafka_offset)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        e.tenantid,
        e.id,
        e.type,
        e.source,
        e.subject,
        e.sequence,
        e.time,
        e.correlationid,
        e.causationid,
        e.actor,
        e.data,
        event.record.topic,
        event.record.partition,
        event.record.offset,
    )


async def append_many(conn: Connection, events: Sequence[ReceivedEvent]) -> None:
    """Record many events in one statement, in order (the same effect as `append` for each)."""
    envelopes = [e.envelope for e in events]
    await conn.execute(
        f"INSERT INTO ledger ({_INSERTED}) SELECT {_INSERTED}"  # noqa: S608 - constant columns
        " FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[],"
        " $6::bigint[], $7::timestamptz[], $8::text[], $9::text[], $10::text[], $11::jsonb[],"
        f" $12::text[], $13::int[], $14::bigint[]) WITH ORDINALITY AS r({_INSERTED}, n)"
        " ORDER BY n",
        [e.tenantid for e in envelopes],
        [e.id for e in envelopes],
        [e.type for e in envelopes],
        [e.source for e in envelopes],
        [e.subject for e in envelopes],
        [e.sequence for e in envelopes],
        [e.time for e in envelopes],
        [e.correlationid for e in envelopes],
        [e.causationid for e in envelopes],
        [e.actor for e in envelopes],
        [e.data for e in envelopes],
        [event.record.topic for event in events],
        [event.record.partition for event in events],
        [event.record.offset for event in events],
    )


async def page(
    conn: Connection,
    tenant_id: str,
    *,
    subject: str | None,
    event_type: str | None,
    after: int,
    limit: int,
) -> list[dict[str, Any]]:
    """Up to `limit` of the tenant's entries after a position, oldest first."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM ledger"  # noqa: S608 - constant column list
        " WHERE tenant_id = $1 AND position > $2"
        " AND ($3::text IS NULL OR subject = $3) AND ($4::text IS NULL OR type = $4)"
        " ORDER BY position LIMIT $5",
        tenant_id,
        after,
        subject,
        event_type,
        limit,
    )
    return [dict(r) for r in rows]
