"""How each CI/CD tool signs its webhook deliveries, checked in constant time (pure).

- GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body with the secret>`.
- Flux notification-controller, `generic-hmac` provider: `X-Signature: sha256=<hex HMAC>` of
  the body with the provider secret's `token`.
- Argo CD notifications' webhook service computes no HMAC: the operator configures a header
  whose value is the secret (`signature_header`, default `X-Argocd-Signature`), compared as is.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

GITHUB_HEADER: Final = "X-Hub-Signature-256"
FLUX_HEADER: Final = "X-Signature"
ARGOCD_DEFAULT_HEADER: Final = "X-Argocd-Signature"


def hmac_sha256(secret: str, body: bytes) -> str:
    """`sha256=<hex>`: the HMAC-SHA256 of the body keyed with the secret, as GitHub and Flux
    send it."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def valid_hmac(secret: str, body: bytes, header: str | None) -> bool:
    """Whether `header` is the body's `sha256=<hex>` HMAC under the secret."""
    if not header:
        return False
    return hmac.compare_digest(hmac_sha256(secret, body).encode(), header.strip().encode())


def valid_token(secret: str, header: str | None) -> bool:
    """Whether `header` carries the secret itself (Argo CD's static header)."""
    if not header:
        return False
    return hmac.compare_digest(secret.encode(), header.strip().encode())
