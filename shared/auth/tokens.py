"""Signed JWTs (EdDSA, RFC 8725 checks): verify against keys rotated by `kid`; mint locally."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared.auth.roles import ROLES

log = logging.getLogger(__name__)

ALGORITHMS = ("EdDSA",)  # pinned: a token signed any other way (or not at all) is refused
LEEWAY_SECONDS = 30
FORCED_RELOAD_INTERVAL = 1.0  # an unknown kid reloads the key set at most this often
VERIFIED_CACHE_SIZE = 4096  # tokens whose signature and claims were checked, kept until expiry
MAX_TOKEN_BYTES = 8192  # a token is a header value: anything larger is refused unparsed
# Integration accounts hold long-lived tokens (SECURITY.md): a year and a day by default.
DEFAULT_MAX_LIFETIME_SECONDS = 366 * 86400
TENANT_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"  # the one tenant-id syntax (tokens, headers)
_TENANT_ID = re.compile(TENANT_ID_PATTERN)
# The subject becomes the `actor` of every event the token's requests cause, so it must be one:
# 1-200 characters, none of them a control character (CloudEvents attribute strings).
MAX_SUBJECT_CHARS = 200
_SUBJECT = re.compile(rf"[^\x00-\x1f\x7f-\x9f]{{1,{MAX_SUBJECT_CHARS}}}")


class AuthenticationError(Exception):
    """The token is malformed, unsigned, expired or not meant for us; `reason` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Principal:
    """Who a verified token speaks for."""

    subject: str
    tenants: tuple[str, ...]
    roles: frozenset[str]
    token_id: str


class TokenVerifier:
    """Verifies tokens against a JWKS (public keys by kid), one issuer and one audience.

    Built from a file, it follows key rotation without a restart: the file is checked at most
    every `reload_seconds`, and at once (at most once a second) when a token names a kid it
    does not know. A file that cannot be read or parsed keeps the keys already loaded.

    A client sends the same token with every request until it expires, and checking an EdDSA
    signature is the largest single cost of a small request. So a token that verified is
    remembered (the most recent `VERIFIED_CACHE_SIZE`, exactly as sent) with the key that
    verified it and its expiry: it is accepted again without the signature check while that
    key is still in the key set and it has not expired. Revocation is checked per request by
    the caller, not here, so a revoked token is refused at once all the same.

    `clock` (wall time, for token expiry) and `monotonic` (for the reload intervals) are there
    so tests can move time instead of sleeping; PyJWT checks `exp` against the system clock
    too, so an injected clock can only make tokens expire sooner, never later.
    """

    def __init__(
        self,
        jwks: dict[str, Any],
        *,
        issuer: str,
        audience: str,
        source: Path | None = None,
        reload_seconds: float = 5.0,
        max_lifetime_seconds: int = DEFAULT_MAX_LIFETIME_SECONDS,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        self.monotonic = monotonic
        self.keys = _keys_of(jwks)
        self.max_lifetime_seconds = max_lifetime_seconds
        self.issuer = issuer
        self.audience = audience
        self.source = source
        self.reload_seconds = reload_seconds
        self._stamp = _stamp_of(source) if source is not None else None
        self._checked_at = monotonic()
        self._forced_at = 0.0
        self._verified: dict[str, tuple[Principal, Any, float]] = {}

    @classmethod
    def from_file(
        cls,
        path: Path,
        *,
        issuer: str,
        audience: str,
        reload_seconds: float = 5.0,
        max_lifetime_seconds: int = DEFAULT_MAX_LIFETIME_SECONDS,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> TokenVerifier:
        """A verifier for the JWKS file at path, reloading it when it changes."""
        return cls(
            json.loads(path.read_text()),
            issuer=issuer,
            audience=audience,
            source=path,
            reload_seconds=reload_seconds,
            max_lifetime_seconds=max_lifetime_seconds,
            clock=clock,
            monotonic=monotonic,
        )

    def refresh(self, *, force: bool = False) -> bool:
        """Reload the key set if its file changed (when due, or now if forced); True if it did."""
        if self.source is None:
            return False
        now = self.monotonic()
        if force:
            if now - self._forced_at < FORCED_RELOAD_INTERVAL:
                return False
            self._forced_at = now
        elif now - self._checked_at < self.reload_seconds:
            return False
        self._checked_at = now
        try:
            content = self.source.read_bytes()
            stamp = hashlib.sha256(content).hexdigest()
            if stamp == self._stamp:
                return False
            keys = _keys_of(json.loads(content))
        except (OSError, ValueError, jwt.PyJWTError) as exc:
            log.error(
                "the key set file could not be loaded; keeping the current keys",
                extra={"path": str(self.source), "error": repr(exc)},
            )
            return False
        self.keys, self._stamp = keys, stamp
        log.info("key set reloaded", extra={"kids": sorted(keys)})
        return True

    def verify(self, token: str) -> Principal:
        """The principal of a valid token; AuthenticationError otherwise."""
        if len(token) > MAX_TOKEN_BYTES:
            # Checked first: an oversized token is neither parsed nor kept in the cache.
            raise AuthenticationError("token-too-large")
        self.refresh()
        remembered = self._verified.get(token)
        if remembered is not None:
            principal, key, expires = remembered
            kid = key.key_id
            if self.keys.get(kid) is key and self.clock() < expires + LEEWAY_SECONDS:
                return principal
            del self._verified[token]  # expired, or its key left the key set: check it afresh
        principal, key, expires = self._verify_afresh(token)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            del self._verified[next(iter(self._verified))]  # the oldest
        self._verified[token] = (principal, key, expires)
        return principal

    def _verify_afresh(self, token: str) -> tuple[Principal, Any, float]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthenticationError("malformed-token") from None
        if header.get("alg") not in ALGORITHMS:
            raise AuthenticationError("algorithm-not-allowed")
        kid = str(header.get("kid"))
        key = self.keys.get(kid)
        if key is None and self.refresh(force=True):
            key = self.keys.get(kid)
        if key is None:
            raise AuthenticationError("unknown-key")
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=list(ALGORITHMS),
                issuer=self.issuer,
                audience=self.audience,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("expired") from None
        except jwt.InvalidAudienceError:
            raise AuthenticationError("wrong-audience") from None
        except jwt.InvalidIssuerError:
            raise AuthenticationError("wrong-issuer") from None
        except jwt.InvalidSignatureError:
            raise AuthenticationError("bad-signature") from None
        except jwt.PyJWTError:
            raise AuthenticationError("invalid-claims") from None
        self._check_times(claims)
        tenants, roles = claims.get("tenants"), claims.get("roles")
        if not _strings(tenants) or not tenants:
            raise AuthenticationError("invalid-claims")
        if not all(_TENANT_ID.fullmatch(t) for t in tenants):
            raise AuthenticationError("invalid-claims")
        # A token with no role could do nothing: refused here (401), not later on each route (403).
        if not _strings(roles) or not roles or not set(roles) <= ROLES:
            raise AuthenticationError("invalid-claims")
        subject, token_id = claims["sub"], claims["jti"]
        if not isinstance(subject, str) or not _SUBJECT.fullmatch(subject):
            raise AuthenticationError("invalid-claims")
        if not isinstance(token_id, str) or not token_id:
            raise AuthenticationError("invalid-claims")
        principal = Principal(
            subject=subject,
            tenants=tuple(tenants),
            roles=frozenset(roles),
            token_id=token_id,
        )
        return principal, key, float(claims["exp"])

    def _check_times(self, claims: dict[str, Any]) -> None:
        """`exp`, `iat` (and `nbf`) are JSON numbers; `iat` not ahead; a bounded lifetime."""
        # PyJWT takes "123" for 123: RFC 7519 says NumericDate, so a string is refused.
        for name in ("exp", "iat", "nbf"):
            value = claims.get(name)
            if name in claims and (not isinstance(value, int | float) or isinstance(value, bool)):
                raise AuthenticationError("invalid-claims")
        exp, iat, now = claims["exp"], claims["iat"], self.clock()
        if iat > now + LEEWAY_SECONDS:
            raise AuthenticationError("invalid-claims")
        # PyJWT refused a token expired by the system clock already; this is the same rule by
        # the verifier's own clock (the same one in production), which the cache also follows.
        if int(exp) <= now - LEEWAY_SECONDS:
            raise AuthenticationError("expired")
        if exp - iat > self.max_lifetime_seconds:
            raise AuthenticationError("lifetime-too-long")


def _keys_of(jwks: dict[str, Any]) -> dict[str, Any]:
    """The verification keys of a JWKS by kid; a key without a kid, or no key, is an error."""
    keys: dict[str, Any] = {}
    for jwk in jwks.get("keys", []):
        key = jwt.PyJWK.from_dict(jwk)
        if key.key_id is None:
            raise ValueError("every verification key needs a kid")
        keys[key.key_id] = key
    if not keys:
        raise ValueError("the key set has no keys")
    return keys


def _stamp_of(path: Path) -> str:
    """What tells us the file changed: a digest of its content (it is small)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and v for v in value)


class TokenIssuer:
    """Mints tokens with a private key (local runs, tests, and the CLI)."""

    def __init__(
        self, private_key: Ed25519PrivateKey, *, kid: str, issuer: str, audience: str
    ) -> None:
        self.private_key = private_key
        self.kid = kid
        self.issuer = issuer
        self.audience = audience

    def mint(
        self,
        *,
        subject: str,
        tenants: Sequence[str],
        roles: Sequence[str],
        ttl_seconds: int,
        token_id: str | None = None,
    ) -> str:
        """A signed token for a subject acting for tenants with roles, valid for ttl_seconds.

        `token_id` (the jti, a fresh UUID by default) is what a revocation names.
        """
        unknown = set(roles) - ROLES
        if unknown:
            raise ValueError(f"unknown roles: {', '.join(sorted(unknown))}")
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "tenants": list(tenants),
            "roles": list(roles),
            "iat": now,
            "nbf": now,
            "exp": now + ttl_seconds,
            "jti": token_id or str(uuid.uuid4()),
        }
        return jwt.encode(claims, self.private_key, algorithm="EdDSA", headers={"kid": self.kid})

    def jwk(self) -> dict[str, Any]:
        """The public half as a JWK."""
        public = self.private_key.public_key()
        jwk: dict[str, Any] = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(public))
        return {**jwk, "kid": self.kid, "alg": "EdDSA", "use": "sig"}


def new_signing_key() -> Ed25519PrivateKey:
    """A fresh Ed25519 key."""
    return Ed25519PrivateKey.generate()


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """An Ed25519 private key from a PEM file."""
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key


def save_private_key(key: Ed25519PrivateKey, path: Path) -> None:
    """Write a private key as PEM, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


__all__ = [
    "ALGORITHMS",
    "DEFAULT_MAX_LIFETIME_SECONDS",
    "MAX_TOKEN_BYTES",
    "TENANT_ID_PATTERN",
    "AuthenticationError",
    "Ed25519PublicKey",
    "Principal",
    "TokenIssuer",
    "TokenVerifier",
    "load_private_key",
    "new_signing_key",
    "save_private_key",
]
