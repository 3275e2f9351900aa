import base64
import json
import time

import jwt
import pytest

from shared.auth.roles import PERMISSIONS, ROLES, allowed
from shared.auth.tokens import AuthenticationError, TokenIssuer, TokenVerifier, new_signing_key

ISS, AUD = "itsm-test", "itsm"


def issuer(kid="k1", iss=ISS, aud=AUD):
    return TokenIssuer(new_signing_key(), kid=kid, issuer=iss, audience=aud)


def verifier(*issuers):
    return TokenVerifier({"keys": [i.jwk() for i in issuers]}, issuer=ISS, audience=AUD)


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
