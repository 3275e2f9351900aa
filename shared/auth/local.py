"""A signing key and its JWKS kept in a state directory: local runs, tests and the token CLI."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.auth.tokens import TokenIssuer, load_private_key, new_signing_key, save_private_key

DEFAULT_ISSUER = "itsm"
DEFAULT_AUDIENCE = "itsm-api"


class LocalKeys:
    """`signing-key.pem` (private, mode 600), its `kid`, and `jwks.json` (public) in one folder."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.private_key_file = directory / "signing-key.pem"
        self.kid_file = directory / "kid"
        self.jwks_file = directory / "jwks.json"

    def issuer(self, issuer: str = DEFAULT_ISSUER, audience: str = DEFAULT_AUDIENCE) -> TokenIssuer:
        """The token issuer for this folder's key, made (with its JWKS) on first use."""
        if not self.private_key_file.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            save_private_key(new_signing_key(), self.private_key_file)
            self.kid_file.write_text(_new_kid())
        token_issuer = TokenIssuer(
            load_private_key(self.private_key_file),
            kid=self.kid_file.read_text().strip(),
            issuer=issuer,
            audience=audience,
        )
        if not self.jwks_file.exists():
            self._write_jwks([token_issuer.jwk()])
        return token_issuer

    def published_keys(self) -> list[dict[str, Any]]:
        """The public keys in the JWKS that services verify against."""
        keys: list[dict[str, Any]] = json.loads(self.jwks_file.read_text())["keys"]
        return keys

    def rotate(self) -> str:
        """Sign with a new key from now on; the old public key stays published, so tokens it
        signed keep working until they expire or it is retired. Returns the new kid."""
        old = self.published_keys() if self.jwks_file.exists() else []
        kid = _new_kid()
        self.directory.mkdir(parents=True, exist_ok=True)
        save_private_key(new_signing_key(), self.private_key_file)
        self.kid_file.write_text(kid)
        new = self.issuer()
        # Locally one step; in production publish the new key first, sign with it once every
        # service has reloaded the key set (SECURITY.md, "Key rotation").
        self._write_jwks([new.jwk(), *(k for k in old if k.get("kid") != kid)])
        return kid

    def retire(self, kid: str) -> None:
        """Stop accepting tokens signed by an old key: remove it from the JWKS."""
        if kid == self.kid_file.read_text().strip():
            raise ValueError(f"{kid} is the current signing key: rotate first")
        keys = self.published_keys()
        if not any(k.get("kid") == kid for k in keys):
            raise ValueError(f"no published key has kid {kid}")
        self._write_jwks([k for k in keys if k.get("kid") != kid])

    def _write_jwks(self, keys: list[dict[str, Any]]) -> None:
        # Replace atomically: services reading the file never see half of it.
        partial = self.jwks_file.with_suffix(".json.tmp")
        partial.write_text(json.dumps({"keys": keys}, indent=2))
        partial.replace(self.jwks_file)


def _new_kid() -> str:
    return datetime.now(UTC).strftime("local-%Y%m%dT%H%M%S-") + secrets.token_hex(3)
