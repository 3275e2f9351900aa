"""The revocation list each process keeps, and how it reads the revocation topic's records."""

from datetime import UTC, datetime, timedelta

from aiokafka import ConsumerRecord
from prometheus_client import CollectorRegistry

from shared.auth.revocations import RevocationList, RevocationListener, RevocationMetrics
from shared.events.binding import to_kafka
from shared.events.catalogue import TokenRevokedV1, revocation_subject
from shared.events.envelope import new_envelope
from tests.support import incident_event, sample_value


def record(envelope=None, value=None, headers=None):
    encoded = to_kafka(envelope) if envelope else None
    return ConsumerRecord(
        topic="itsm.auth.revocations",
        partition=0,
        offset=0,
        timestamp=0,
        timestamp_type=0,
        key=encoded.key if encoded else None,
        value=encoded.value if encoded else value,
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=0,
        headers=encoded.headers if encoded else (headers or []),
    )


def revoked(tenant, token_id, expires_at=None):
    payload = TokenRevokedV1(token_id=token_id, reason="test", expires_at=expires_at)
    return new_envelope(
        source="itsm/config",
        type="itsm.config.token.revoked.v1",
        subject=revocation_subject(tenant, token_id),
        tenantid=tenant,
        itsmversion=1,
        actor="admin",
        data=payload.model_dump(mode="json"),
    )


def listener():
    registry = CollectorRegistry()
    return RevocationListener(RevocationList(), {}, RevocationMetrics(registry)), registry


def test_a_revocation_applies_to_its_tenant_only():
    revocations = RevocationList()
    revocations.add("acme", "jti-1")
    assert revocations.is_revoked("acme", "jti-1")
    assert not revocations.is_revoked("globex", "jti-1")
    assert not revocations.is_revoked("acme", "jti-2")


def test_entries_of_expired_tokens_are_forgotten_and_others_kept():
    revocations = RevocationList()
    now = datetime.now(UTC)
    revocations.add("acme", "old", now - timedelta(seconds=1))
    revocations.add("acme", "live", now + timedelta(hours=1))
    revocations.add("acme", "forever")
    assert revocations.forget_expired(now) == 1
    assert len(revocations) == 2
    assert not revocations.is_revoked("acme", "old")


def test_the_listener_applies_revocation_events_and_counts_them():
    consumer, registry = listener()
    consumer.apply(record(revoked("acme", "jti-9")))
    assert consumer.revocations.is_revoked("acme", "jti-9")
    assert sample_value(registry, "itsm_token_revocation_events_total", {"outcome": "applied"}) == 1


def test_the_listener_ignores_and_counts_what_is_not_a_revocation():
    consumer, registry = listener()
    consumer.apply(record(value=b"not json", headers=[("ce_specversion", b"1.0")]))
    consumer.apply(record(incident_event("acme", title="x", impact=1, urgency=1)))
    assert len(consumer.revocations) == 0
    assert sample_value(registry, "itsm_token_revocation_events_total", {"outcome": "invalid"}) == 2
