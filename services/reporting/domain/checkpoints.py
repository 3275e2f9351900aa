"""Signing the ledger's checkpoints: C2SP signed notes with the ledger's own Ed25519 key.

The key is the ledger's, not the access-token key. Its verifier key string is what auditors
trust (`GET /ledger/keys`, the `keys` file of an export); the format and the checking live in
`services.reporting.verifier`, the file auditors run.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.reporting.verifier import (
    Checkpoint,
    VerificationError,
    parse_checkpoint,
    signature_line,
    verifier_key_string,
)

DEFAULT_KEY_NAME = "itsm-ledger"
# The signed-note private key form of golang.org/x/mod/sumdb/note: PRIVATE+KEY+name+hash+key.
_NOTE_PRIVATE_KEY = "PRIVATE+KEY+"


def origin_of(origin_prefix: str, tenant_id: str) -> str:
    """The origin line of a tenant's log."""
    return f"{origin_prefix}/{tenant_id}"


@dataclass(frozen=True)
class Signer:
    """The ledger's signing key under a signed-note key name."""

    name: str
    private_key: Ed25519PrivateKey = field(repr=False)

    def __post_init__(self) -> None:
        verifier_key_string(self.name, self.public_key)  # refuses a name notes cannot carry

    @classmethod
    def generate(cls, name: str = DEFAULT_KEY_NAME) -> Signer:
        """A signer with a new random key."""
        return cls(name, Ed25519PrivateKey.generate())

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key."""
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @property
    def verifier_key(self) -> str:
        """The verifier key string auditors trust: `name+hash+base64(0x01 || public key)`."""
        return verifier_key_string(self.name, self.public_key)

    @property
    def key_id(self) -> str:
        """The key hash in hex (the `hash` part of the verifier key)."""
        return self.verifier_key.split("+")[1]

    def sign_note(self, text: str) -> str:
        """The signed note of a text (non-empty lines, each ending in a newline)."""
        lines = text[:-1].split("\n") if text.endswith("\n") else []
        if not lines or any(not line or any(c < " " for c in line) for line in lines):
            raise ValueError("a note's text is non-empty lines, each ending in a newline")
        signature = self.private_key.sign(text.encode("utf-8"))
        return f"{text}\n{signature_line(self.name, bytes.fromhex(self.key_id), signature)}"

    def sign(self, checkpoint: Checkpoint) -> str:
        """The signed note of a checkpoint."""
        body = checkpoint.body()
        try:
            parsed = parse_checkpoint(body)
        except VerificationError as exc:
            raise ValueError(f"not a checkpoint: {exc}") from None
        if parsed != checkpoint:
            raise ValueError("a checkpoint's origin and extensions are single non-empty lines")
        return self.sign_note(body)


def _from_note_private_key(text: str) -> Signer:
    parts = text[len(_NOTE_PRIVATE_KEY) :].split("+", 2)
    if len(parts) != 3:
        raise ValueError("malformed signed-note private key")
    name, key_hash, encoded = parts
    try:
        key = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raise ValueError("malformed signed-note private key") from None
    if len(key) != 33 or key[0] != 0x01:
        raise ValueError("the signed-note private key is not an Ed25519 seed")
    signer = Signer(name, Ed25519PrivateKey.from_private_bytes(key[1:]))
    if signer.key_id != key_hash:
        raise ValueError("the signed-note private key's hash does not match its key")
    return signer


def load_signer(path_or_pem: str, name: str = DEFAULT_KEY_NAME) -> Signer:
    """The signer of a PKCS#8 PEM Ed25519 key (the PEM text or a file holding it) named
    `name`, or of a signed-note private key string `PRIVATE+KEY+name+hash+key`."""
    text = path_or_pem.strip()
    if not text.startswith(("-----BEGIN", _NOTE_PRIVATE_KEY)):
        if not os.path.isfile(text):
            raise ValueError("the ledger signing key is neither a PEM key nor a key file")
        with open(text, encoding="utf-8") as f:
            text = f.read().strip()
    if text.startswith(_NOTE_PRIVATE_KEY):
        return _from_note_private_key(text)
    key = serialization.load_pem_private_key(text.encode("ascii"), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("the ledger signing key is not an Ed25519 key")
    return Signer(name, key)
