"""Revoking a token on a fake unit of work."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.config.application.revocations import RevokeToken, revoke_token
from shared.events.catalogue import TokenRevokedV1, revocation_subject
from tests.unit.fakes_config import TENANT, ConfigStore, unit


async def test_a_revocation_is_stored_and_recorded_under_the_tenant_and_token():
    store = ConfigStore()
    expires = datetime.now(UTC) + timedelta(hours=1)
    revocation = await revoke_token(unit(store, "admin"), RevokeToken("jti-1", "leaked", expires))
    assert revocation.created
    assert (revocation.record["revoked_by"], revocation.record["expires_at"]) == ("admin", expires)
    assert store.revocations["jti-1"] == revocation.record
    (event,) = store.events
    assert isinstance(event.payload, TokenRevokedV1)
    assert (event.subject, event.version) == (revocation_subject(TENANT, "jti-1"), 1)
    assert (event.payload.reason, event.payload.expires_at) == ("leaked", expires)


async def test_revoking_a_revoked_token_answers_the_first_revocation_and_records_nothing():
    store = ConfigStore()
    first = await revoke_token(unit(store), RevokeToken("jti-1", "leaked"))
    again = await revoke_token(unit(store, "bob"), RevokeToken("jti-1", "other reason"))
    assert not again.created and again.record == first.record
    assert len(store.events) == 1
