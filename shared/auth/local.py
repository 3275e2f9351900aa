"""A signing key and its JWKS kept in a state directory: local runs, tests and the token CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

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
            self.kid_file.write_text(datetime.now(UTC).strftime("local-%Y%m%dT%H%M%S"))
        token_issuer = TokenIssuer(
            load_private_key(self.private_key_file),
            kid=self.kid_file.read_text().strip(),
            issuer=issuer,
            audience=audience,
        )
        if not self.jwks_file.exists():
            self.jwks_file.write_text(json.dumps({"keys": [token_issuer.jwk()]}, indent=2))
        return token_issuer
