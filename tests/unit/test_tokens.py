import base64
import json
import time

import jwt
import pytest

from shared.auth.roles import PERMISSIONS, ROLES, allowed
from shared.auth.tokens import (
    DEFAULT_MAX_LIFETIME_SECONDS,
    AuthenticationError,
    TokenIssuer,
    TokenVerifier,
    new_signing_key,
)

ISS, AUD = "itsm-test", "itsm"


def issuer(kid="k1", iss=ISS, aud=AUD):
    return TokenIssuer(new_signing_key(), kid=kid, issuer=iss, audience=aud)


def verifier(*issuers, **kw):
    return TokenVerifier({"keys": [i.jwk() for i in issuers]}, issuer=ISS, audience=AUD, **kw)


class FakeClock:
    """Wall and monotonic time that move only when the test says so, together."""

    def __init__(self):
        self.wall, self.mono = time.time(), time.monotonic()

    def time(self):
        return self.wall

    def monotonic(self):
        return self.mono

    def advance(self, seconds):
        self.wall += seconds
        self.mono += seconds

    def verifier_options(self):
        return {"clock": self.time, "monotonic": self.monotonic}


def mint(i, **kw):
    args = dict(subject="alice", tenants=["acme"], roles=["agent"], ttl_seconds=600)
    args.update(kw)
    return i.mint(**args)


def reason(v, token):
    with pytest.raises(AuthenticationError) as err:
        v.verify(token)
    return err.value.reason


def test_a_valid_token_yields_its_subject_tenants_and_roles():
    i = issuer()
    p = verifier(i).verify(mint(i, tenants=["acme", "globex"], roles=["agent", "auditor"]))
    assert (p.subject, p.tenants, p.roles) == (
        "alice",
        ("acme", "globex"),
        frozenset({"agent", "auditor"}),
    )


def test_keys_rotate_by_kid_old_and_new_both_verify():
    old, new = issuer("2026-10"), issuer("2026-11")
    v = verifier(old, new)
    assert v.verify(mint(old)).subject == v.verify(mint(new)).subject == "alice"


def test_a_token_signed_by_an_unknown_key_is_refused():
    assert reason(verifier(issuer("k1")), mint(issuer("k2"))) == "unknown-key"


def test_a_token_signed_with_a_different_key_under_a_known_kid_is_refused():
    assert reason(verifier(issuer("k1")), mint(issuer("k1"))) == "bad-signature"


def test_alg_none_is_refused():
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "kid": "k1"}).encode()).rstrip(
        b"="
    )
    claims = {
        "sub": "mallory",
        "tenants": ["acme"],
        "roles": ["provider_admin"],
        "iss": ISS,
        "aud": AUD,
        "exp": int(time.time()) + 600,
        "iat": int(time.time()),
        "jti": "x",
    }
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
    assert (
        reason(verifier(issuer()), (header + b"." + body + b".").decode())
        == "algorithm-not-allowed"
    )


def test_a_symmetric_algorithm_is_refused_even_with_the_public_key_as_secret():
    i = issuer()
    secret = "a-shared-secret-of-32-bytes-long"
    token = jwt.encode({"sub": "mallory"}, secret, algorithm="HS256", headers={"kid": "k1"})
    assert reason(verifier(i), token) == "algorithm-not-allowed"


def test_an_expired_token_is_refused():
    i = issuer()
    assert reason(verifier(i), mint(i, ttl_seconds=-120)) == "expired"


def test_a_token_for_another_audience_or_issuer_is_refused():
    i = issuer(aud="other")
    assert (
        reason(TokenVerifier({"keys": [i.jwk()]}, issuer=ISS, audience=AUD), mint(i))
        == "wrong-audience"
    )
    j = issuer(iss="someone-else")
    assert (
        reason(TokenVerifier({"keys": [j.jwk()]}, issuer=ISS, audience=AUD), mint(j))
        == "wrong-issuer"
    )


def test_garbage_is_a_malformed_token():
    assert reason(verifier(issuer()), "not.a.jwt") == "malformed-token"


def test_unknown_roles_are_never_minted():
    with pytest.raises(ValueError, match="unknown roles"):
        mint(issuer(), roles=["superuser"])


def test_every_permission_names_only_known_roles():
    for roles in PERMISSIONS.values():
        assert roles <= ROLES


def test_an_auditor_reads_the_ledger_but_cannot_create_incidents():
    assert allowed("ledger:read", frozenset({"auditor"}))
    assert not allowed("incident:create", frozenset({"auditor"}))
    assert not allowed("no-such-permission", ROLES)


def file_verifier(path, reload_seconds=0.0, **kw):
    return TokenVerifier.from_file(
        path, issuer=ISS, audience=AUD, reload_seconds=reload_seconds, **kw
    )


def publish(path, *issuers):
    path.write_text(json.dumps({"keys": [i.jwk() for i in issuers]}))


def test_a_key_added_to_the_key_set_file_is_accepted_without_a_restart(tmp_path):
    old, new = issuer("old"), issuer("new")
    jwks = tmp_path / "jwks.json"
    publish(jwks, old)
    clock = FakeClock()
    # Only an unknown kid can trigger the reload.
    v = file_verifier(jwks, reload_seconds=3600, **clock.verifier_options())
    assert reason(v, mint(new)) == "unknown-key"
    publish(jwks, new, old)
    clock.advance(0.9)  # unknown kids force a reload at most once a second
    assert reason(v, mint(new)) == "unknown-key"
    clock.advance(0.1)
    assert v.verify(mint(new)).subject == "alice"
    assert v.verify(mint(old)).subject == "alice"


def test_a_key_removed_from_the_key_set_file_stops_verifying_once_reloaded(tmp_path):
    old, new = issuer("old"), issuer("new")
    jwks = tmp_path / "jwks.json"
    publish(jwks, new, old)
    v = file_verifier(jwks)
    token = mint(old)
    assert v.verify(token).subject == "alice"
    publish(jwks, new)
    assert reason(v, token) == "unknown-key"


def test_a_token_verified_before_is_still_refused_once_it_expires(monkeypatch):
    from shared.auth import tokens

    monkeypatch.setattr(tokens, "LEEWAY_SECONDS", 0)
    i = issuer()
    clock = FakeClock()
    v = verifier(i, **clock.verifier_options())
    token = mint(i, ttl_seconds=60)
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    assert v.verify(token).subject == "alice"  # verified, and remembered
    clock.wall = expires - 0.001
    assert v.verify(token).subject == "alice"  # from the memory, still in time
    clock.wall = expires
    assert reason(v, token) == "expired"
    assert reason(v, token) == "expired"  # not remembered as verified either


def test_a_remembered_token_is_checked_afresh_when_its_kid_gets_another_key(tmp_path):
    first, impostor = issuer("k1"), issuer("k1")  # same kid, different keys
    jwks = tmp_path / "jwks.json"
    publish(jwks, first)
    v = file_verifier(jwks, reload_seconds=0)
    token = mint(first)
    assert v.verify(token).subject == "alice"
    publish(jwks, impostor)  # the key behind k1 was replaced
    assert reason(v, token) == "bad-signature"


def test_the_verified_token_memory_is_bounded(monkeypatch):
    from shared.auth import tokens

    monkeypatch.setattr(tokens, "VERIFIED_CACHE_SIZE", 3)
    i = issuer()
    v = verifier(i)
    minted = [mint(i) for _ in range(5)]
    for token in minted:
        v.verify(token)
    assert len(v._verified) == 3
    assert all(v.verify(token).subject == "alice" for token in minted)


def test_a_broken_key_set_file_keeps_the_keys_already_loaded(tmp_path):
    key = issuer()
    jwks = tmp_path / "jwks.json"
    publish(jwks, key)
    v = file_verifier(jwks)
    jwks.write_text("{not json")
    assert v.verify(mint(key)).subject == "alice"
    jwks.write_text(json.dumps({"keys": []}))
    assert v.verify(mint(key)).subject == "alice"


def test_local_key_rotation_keeps_old_tokens_valid_until_the_old_key_is_retired(tmp_path):
    from shared.auth.local import LocalKeys

    local = LocalKeys(tmp_path / "auth")
    first = local.issuer(ISS, AUD)
    old_token = mint(first)
    v = file_verifier(local.jwks_file)
    new_kid = local.rotate()
    second = local.issuer(ISS, AUD)
    assert second.kid == new_kid != first.kid
    assert v.verify(mint(second)).subject == "alice"
    assert v.verify(old_token).subject == "alice"
    with pytest.raises(ValueError, match="current signing key"):
        local.retire(new_kid)
    local.retire(first.kid)
    assert reason(v, old_token) == "unknown-key"
    assert [k["kid"] for k in local.published_keys()] == [new_kid]


def test_the_token_cli_prints_the_token_and_its_id_for_revocation(tmp_path, capsys):
    from shared.auth.__main__ import main

    keys = tmp_path / "auth"
    main(["token", "create", "--tenant", "acme", "--role", "agent", "--keys", str(keys)])
    out, err = capsys.readouterr()
    claims = jwt.decode(out.strip(), options={"verify_signature": False})
    assert err.strip() == f"token id: {claims['jti']}"
    assert claims["tenants"] == ["acme"]
    assert claims["roles"] == ["agent"]


def test_the_role_matrix_in_security_md_is_the_one_in_shared_auth_roles():
    from pathlib import Path

    from shared.auth.roles import matrix_markdown

    text = (Path(__file__).parents[2] / "SECURITY.md").read_text()
    assert text.count("| permission |") == 1, "SECURITY.md has one role matrix"
    assert matrix_markdown() in text, "run `.venv/bin/python -m shared.auth.roles`"


def signed(i, **overrides):
    """A token signed by issuer i with the usual claims, some replaced or removed (None)."""
    now = int(time.time())
    claims = {
        "iss": ISS,
        "aud": AUD,
        "sub": "alice",
        "tenants": ["acme"],
        "roles": ["agent"],
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": "t-1",
    }
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, i.private_key, algorithm="EdDSA", headers={"kid": i.kid})


def test_a_token_with_no_roles_is_refused_as_invalid_claims():
    i = issuer()
    assert reason(verifier(i), signed(i, roles=[])) == "invalid-claims"


@pytest.mark.parametrize("tenant", ["ACME", "acme corp", "-acme", "a" * 64, "acme\x00", "", "é"])
def test_a_tenant_id_outside_the_tenant_id_pattern_is_refused(tenant):
    i = issuer()
    assert reason(verifier(i), signed(i, tenants=["globex", tenant])) == "invalid-claims"


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
def test_a_time_claim_that_is_not_a_json_number_is_refused(claim):
    i = issuer()
    value = str(int(time.time()) + 600 if claim == "exp" else int(time.time()))
    assert reason(verifier(i), signed(i, **{claim: value})) == "invalid-claims"


def test_a_token_living_longer_than_the_maximum_lifetime_is_refused():
    i = issuer()
    assert reason(verifier(i), signed(i, exp=10**20)) == "lifetime-too-long"
    short = TokenVerifier({"keys": [i.jwk()]}, issuer=ISS, audience=AUD, max_lifetime_seconds=3600)
    assert reason(short, mint(i, ttl_seconds=3601)) == "lifetime-too-long"
    assert short.verify(mint(i, ttl_seconds=3600)).subject == "alice"


@pytest.mark.parametrize("subject", ["", "a" * 201, "alice\n", "al\x00ice", 42, ["alice"]])
def test_a_subject_that_cannot_be_an_events_actor_is_refused(subject):
    i = issuer()
    assert reason(verifier(i), signed(i, sub=subject)) == "invalid-claims"


@pytest.mark.parametrize("token_id", ["", 7])
def test_a_token_id_that_is_not_a_string_is_refused(token_id):
    i = issuer()
    assert reason(verifier(i), signed(i, jti=token_id)) == "invalid-claims"


def test_a_token_issued_in_the_future_is_refused():
    i = issuer()
    later = int(time.time()) + 3600
    assert reason(verifier(i), signed(i, iat=later, nbf=None, exp=later + 60)) == "invalid-claims"


def test_a_token_larger_than_8_kib_is_refused_before_it_is_parsed():
    i = issuer()
    big = signed(i, padding="x" * 9000)
    assert reason(verifier(i), big) == "token-too-large"
    assert reason(verifier(i), "x" * 65536) == "token-too-large"


def test_a_token_minted_for_the_longest_allowed_lifetime_verifies():
    i = issuer()
    assert verifier(i).verify(mint(i, ttl_seconds=DEFAULT_MAX_LIFETIME_SECONDS)).subject == "alice"


def test_the_token_cli_will_not_mint_a_token_the_services_would_refuse(tmp_path, capsys):
    from shared.auth.__main__ import main

    with pytest.raises(SystemExit) as exited:
        main(["token", "create", "--tenant", "acme", "--role", "agent", "--ttl", "400d",
              "--keys", str(tmp_path)])  # fmt: skip
    assert exited.value.code == 2
    assert "AUTH_MAX_TOKEN_LIFETIME_SECONDS" in capsys.readouterr().err
