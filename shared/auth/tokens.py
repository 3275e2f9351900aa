"""Signed JWTs (EdDSA, RFC 8725 checks): verify against keys rotated by `kid`; mint locally."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared.auth.roles import ROLES

ALGORITHMS = ("EdDSA",)  # pinned: a token signed any other way (or not at all) is refused
LEEWAY_SECONDS = 30


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
    """Verifies tokens against a JWKS (public keys by kid), one issuer and one audience."""

    def __init__(self, jwks: dict[str, Any], *, issuer: str, audience: str) -> None:
        self.keys: dict[str, Any] = {}
        for jwk in jwks.get("keys", []):
            key = jwt.PyJWK.from_dict(jwk)
            if key.key_id is None:
                raise ValueError("every verification key needs a kid")
            self.keys[key.key_id] = key
        if not self.keys:
            raise ValueError("the key set has no keys")
        self.issuer = issuer
        self.audience = audience

    @classmethod
    def from_file(cls, path: Path, *, issuer: str, audience: str) -> TokenVerifier:
        """A verifier for the JWKS file at path."""
        return cls(json.loads(path.read_text()), issuer=issuer, audience=audience)

    def verify(self, token: str) -> Principal:
        """The principal of a valid token; AuthenticationError otherwise."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthenticationError("malformed-token") from None
        if header.get("alg") not in ALGORITHMS:
            raise AuthenticationError("algorithm-not-allowed")
        key = self.keys.get(str(header.get("kid")))
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
        tenants, roles = claims.get("tenants"), claims.get("roles")
        if not isinstance(tenants, list) or not _strings(tenants) or not tenants:
            raise AuthenticationError("invalid-claims")
        if not isinstance(roles, list) or not _strings(roles) or not set(roles) <= ROLES:
            raise AuthenticationError("invalid-claims")
        return Principal(
            subject=str(claims["sub"]),
            tenants=tuple(tenants),
            roles=frozenset(roles),
            token_id=str(claims["jti"]),
        )


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
        self, *, subject: str, tenants: Sequence[str], roles: Sequence[str], ttl_seconds: int
    ) -> str:
        """A signed token for a subject acting for tenants with roles, valid for ttl_seconds."""
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
            "jti": str(uuid.uuid4()),
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
    "AuthenticationError",
    "Ed25519PublicKey",
    "Principal",
    "TokenIssuer",
    "TokenVerifier",
    "load_private_key",
    "new_signing_key",
    "save_private_key",
]
