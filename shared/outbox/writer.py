"""The outbox's writer: events encoded once and inserted inside the state change's transaction.

`append` is `append_many` of one, through the one encoder (`_encode`), so the wire format has
a single definition; `encode_many` then `insert_encoded` lets a bulk writer encode before its
transaction.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii as quote
from typing import Any

from shared.db import Connection
from shared.events.binding import CONTENT_TYPE
from shared.events.catalogue import EventPayload, spec_of
from shared.events.envelope import MAX_SUBJECT, Envelope
from shared.ids import new_ids


@dataclass(frozen=True)
class Pending:
    """One event of a batch for `append_many`: its payload, aggregate and the aggregate's
    version after it (`sequence`; the `itsmversion` attribute on the wire).

    `data` is the payload as `payload.model_dump(mode="json")` gives it, for a caller that has
    it already (bulk writers that store the same state elsewhere): it is not dumped again.
    `encoded` is that data already serialised as `encode_data` does it, for a caller that
    encodes part of it for another use too (a CI's state, kept in its history as well).
    """

    payload: EventPayload
    subject: str
    sequence: int
    data: dict[str, Any] | None = None
    encoded: bytes | None = None


# `encode_json`'s settings, built once: json.dumps with arguments builds an encoder per call.
_PAYLOAD_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True, default=str)


def encode_data(data: Any) -> str:
    """JSON text as the outbox writes event payloads: compact, keys sorted."""
    return _PAYLOAD_ENCODER.encode(data)


# One statement for a whole batch, positions in the batch's order. Each event's headers come
# as JSON text built by encode_many (before the transaction): built in SQL, with
# jsonb_build_object per row, they cost the statement a fifth of its time. Event ids come from
# encode_many too (time-ordered: shared/ids.py).
_INSERT_MANY = """
INSERT INTO outbox (event_id, tenant_id, topic, message_key, event_type, headers, payload)
SELECT x.e, $1, x.tp, x.k, x.et, x.h::jsonb, x.p
FROM (
    SELECT u.*
    FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::bytea[], $7::uuid[])
         WITH ORDINALITY AS u(tp, k, et, h, p, e, n)
) x
ORDER BY x.n
"""


def _require_transaction(conn: Connection) -> None:
    if not conn.is_in_transaction():
        raise RuntimeError("outbox events must be written inside the state change's transaction")


async def append(
    conn: Connection,
    payload: EventPayload,
    *,
    subject: str,
    tenant_id: str,
    sequence: int,
    actor: str,
    correlation_id: str | None = None,
    causation_id: str | None = None,
) -> Envelope:
    """Add an event to the outbox inside the caller's transaction; return its envelope."""
    # `append_many` of one: one encoder for the wire format, so the two cannot drift apart.
    _require_transaction(conn)
    encoded, envelope = _encode(
        [Pending(payload, subject, sequence)],
        tenant_id=tenant_id,
        actor=actor,
        correlation_id=correlation_id,
        causation_id=causation_id,
    )
    await insert_encoded(conn, encoded)
    return envelope


@dataclass(frozen=True)
class Encoded:
    """A batch of one tenant's events validated and serialised for the outbox (encode_many):
    what is left to do is the database's. `select` keeps some of them (in their order)."""

    tenant_id: str
    correlation_id: str | None
    shared: str  # the headers every event of the batch has, as a JSON object
    topics: list[str]
    subjects: list[str]
    types: list[str]
    sources: list[str]
    sequences: list[int]
    payloads: list[bytes]
    ids: list[uuid.UUID]
    headers: list[str]  # each event's Kafka headers, the shared ones with its own, as JSON

    def __len__(self) -> int:
        return len(self.topics)

    def select(self, indices: Sequence[int]) -> Encoded:
        """Only the events at these positions of the batch."""
        return Encoded(
            self.tenant_id,
            self.correlation_id,
            self.shared,
            [self.topics[i] for i in indices],
            [self.subjects[i] for i in indices],
            [self.types[i] for i in indices],
            [self.sources[i] for i in indices],
            [self.sequences[i] for i in indices],
            [self.payloads[i] for i in indices],
            [self.ids[i] for i in indices],
            [self.headers[i] for i in indices],
        )


def encode_many(
    events: Sequence[Pending],
    *,
    tenant_id: str,
    actor: str,
    correlation_id: str | None = None,
    causation_id: str | None = None,
) -> Encoded:
    """Validate and serialise a batch of one tenant's events for `insert_encoded`.

    A bulk writer can do this before its transaction (or while another one runs), so that
    the transaction holds its locks only for the database's work. The attributes every event
    of the batch shares are validated once (as a full envelope); each event's own are checked
    as it is built. Raises ValueError for an event the outbox cannot carry.
    """
    if not events:
        return Encoded(tenant_id, correlation_id, "{}", [], [], [], [], [], [], [], [])
    encoded, _ = _encode(
        events,
        tenant_id=tenant_id,
        actor=actor,
        correlation_id=correlation_id,
        causation_id=causation_id,
    )
    return encoded


def _data(pending: Pending) -> dict[str, Any]:
    return pending.data if pending.data is not None else pending.payload.model_dump(mode="json")


def _encode(
    events: Sequence[Pending],
    *,
    tenant_id: str,
    actor: str,
    correlation_id: str | None,
    causation_id: str | None,
) -> tuple[Encoded, Envelope]:
    """The outbox's one encoder: a non-empty batch, and its first event's full envelope (the
    one that validates the shared attributes, with the id and time the batch carries)."""
    now = datetime.now(UTC)
    ids = new_ids(len(events))
    spec = spec_of(events[0].payload)
    first_data = _data(events[0])
    first = Envelope(
        id=ids[0],
        source=spec.source,
        type=spec.type,
        subject=events[0].subject,
        time=now,
        tenantid=tenant_id,
        itsmversion=events[0].sequence,
        correlationid=correlation_id or str(ids[0]),
        causationid=causation_id,
        actor=actor,
        data=first_data,
    )
    shared = {
        "content-type": CONTENT_TYPE,
        "ce_specversion": first.specversion,
        "ce_time": now.isoformat(),
        "ce_tenantid": tenant_id,
        "ce_actor": actor,
    }
    if causation_id is not None:
        shared["ce_causationid"] = causation_id
    shared_json = json.dumps(shared)
    encoded = Encoded(tenant_id, correlation_id, shared_json, [], [], [], [], [], [], ids, [])
    encode = _PAYLOAD_ENCODER.encode
    # Each event's headers: the shared object, its closing brace replaced by the event's own
    # (as header_map would give them; a correlation id defaults to the event's id).
    opening = shared_json[:-1]
    correlation = quote(correlation_id) if correlation_id else None
    quoted: dict[str, str] = {}
    for position, (pending, event_id) in enumerate(zip(events, ids, strict=True)):
        spec = spec_of(pending.payload)
        if not 1 <= len(pending.subject) <= MAX_SUBJECT or pending.sequence < 1:
            raise ValueError(
                f"event subject must be 1 to {MAX_SUBJECT} characters and sequence >= 1:"
                f" {pending.subject!r}, {pending.sequence}"
            )
        encoded.topics.append(spec.topic)
        encoded.subjects.append(pending.subject)
        encoded.types.append(spec.type)
        encoded.sources.append(spec.source)
        encoded.sequences.append(pending.sequence)
        kind = quoted.get(spec.type)
        if kind is None:
            kind = quoted[spec.type] = (
                f',"ce_source":{quote(spec.source)},"ce_type":{quote(spec.type)}'
            )
        own_id = f'"{event_id}"'
        encoded.headers.append(
            f'{opening},"ce_id":{own_id}{kind},"ce_subject":{quote(pending.subject)},'
            f'"ce_itsmversion":"{pending.sequence}","ce_correlationid":{correlation or own_id}}}'
        )
        if pending.encoded is not None:
            encoded.payloads.append(pending.encoded)
            continue
        data = first_data if position == 0 else _data(pending)
        encoded.payloads.append(encode(data).encode())
    return encoded, first


async def insert_encoded(conn: Connection, encoded: Encoded) -> list[uuid.UUID]:
    """Add an encoded batch to the outbox, in order, in one round trip; return the event ids."""
    _require_transaction(conn)
    if not encoded:
        return []
    await conn.execute(
        _INSERT_MANY,
        encoded.tenant_id,
        encoded.topics,
        encoded.subjects,
        encoded.types,
        encoded.headers,
        encoded.payloads,
        encoded.ids,
    )
    return list(encoded.ids)


async def append_many(
    conn: Connection,
    events: Sequence[Pending],
    *,
    tenant_id: str,
    actor: str,
    correlation_id: str | None = None,
    causation_id: str | None = None,
) -> list[uuid.UUID]:
    """Add a batch of one tenant's events, in order, in one round trip (bulk writes, imports).

    Returns the event ids. `encode_many` then `insert_encoded`, for a caller that encodes
    the batch before its transaction.
    """
    _require_transaction(conn)
    encoded = encode_many(
        events,
        tenant_id=tenant_id,
        actor=actor,
        correlation_id=correlation_id,
        causation_id=causation_id,
    )
    return await insert_encoded(conn, encoded)
