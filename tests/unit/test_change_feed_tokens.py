"""Calendar feed tokens (pure): the secret, its hash, the constant-time match, the cap per
user, the events (never the secret) and revocation."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime

import pytest

from services.change.domain import feed_tokens as tokens
from shared.events.catalogue import ScheduleFeedTokenCreatedV1, ScheduleFeedTokenRevokedV1

NOW = datetime(2027, 3, 1, tzinfo=UTC)


def new(active: int = 0, **fields):
    values = {
        "tenant_id": "acme",
        "user_id": "rita",
        "name": "Outlook",
        "service": None,
        "ci_ids": ("db-1", "db-1", "app-1"),
        "now": NOW,
        "active_tokens": active,
        **fields,
    }
    return tokens.create_token(**values)


def test_the_secret_is_32_random_bytes_in_url_safe_base64_and_only_its_hash_is_kept():
    token, secret, _ = new()
    assert tokens.well_formed(secret)
    assert len(base64.urlsafe_b64decode(secret + "=")) == 32
    assert token.secret_hash == hashlib.sha256(secret.encode()).digest()
    assert secret.encode() not in repr(token).encode()
    assert new()[1] != secret


def test_a_secret_matches_its_token_only():
    token, secret, _ = new()
    _, other, _ = new()
    assert tokens.matches(token, secret)
    assert not tokens.matches(token, other)


@pytest.mark.parametrize("secret", ["", "x", "a" * 42, "a" * 44, "a" * 42 + "=", "a/" * 21 + "a"])
def test_what_cannot_be_a_secret_is_not_well_formed(secret):
    assert not tokens.well_formed(secret)


def test_the_url_names_the_tenant_and_the_secret():
    assert tokens.feed_path("acme", "s" * 43) == f"/feeds/acme/schedule/{'s' * 43}.ics"


def test_the_event_carries_the_filters_and_never_the_secret():
    token, secret, [event] = new()
    assert isinstance(event, ScheduleFeedTokenCreatedV1)
    assert event.token_id == str(token.id)
    assert event.ci_ids == ["db-1", "app-1"] == list(token.ci_ids)
    dumped = event.model_dump_json()
    assert secret not in dumped and token.secret_hash.hex() not in dumped


def test_a_user_holds_at_most_the_cap_of_active_tokens():
    new(active=tokens.MAX_ACTIVE_PER_USER - 1)
    with pytest.raises(ValueError, match="revoke one first"):
        new(active=tokens.MAX_ACTIVE_PER_USER)


def test_revoking_records_who_and_once():
    token, _, _ = new()
    revoked, [event] = tokens.revoke_token(token, actor="mia", now=NOW)
    assert isinstance(event, ScheduleFeedTokenRevokedV1)
    assert (event.user_id, event.revoked_by) == ("rita", "mia")
    assert not revoked.active and revoked.version == 2 and revoked.revoked_by == "mia"
    again, events = tokens.revoke_token(revoked, actor="rita", now=NOW)
    assert again is revoked and events == []
