"""Local tokens and keys.

python -m shared.auth token create --tenant acme --role agent --ttl 8h
python -m shared.auth keys rotate          # sign with a new key; the old one still verifies
python -m shared.auth keys retire --kid K  # stop accepting tokens signed by key K
python -m shared.auth keys list
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import uuid
from pathlib import Path

from shared.auth.local import DEFAULT_AUDIENCE, DEFAULT_ISSUER, LocalKeys
from shared.auth.roles import ROLES
from shared.auth.tokens import DEFAULT_MAX_LIFETIME_SECONDS
from shared.devstack.kafka import REPO_ROOT

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(text: str) -> int:
    """Seconds in a duration such as 90s, 15m, 8h or 30d."""
    match = re.fullmatch(r"(\d+)([smhd])", text)
    if not match:
        raise argparse.ArgumentTypeError("use a number and a unit: 90s, 15m, 8h, 30d")
    return int(match.group(1)) * _UNITS[match.group(2)]


def main(argv: list[str] | None = None) -> None:
    """Mint a token signed by the local platform's key, or rotate and retire keys."""
    default_keys = REPO_ROOT / ".state" / "run" / "auth"
    parser = argparse.ArgumentParser(prog="python -m shared.auth")
    commands = parser.add_subparsers(dest="noun", required=True)
    token = commands.add_parser("token").add_subparsers(dest="verb", required=True)
    create = token.add_parser("create", help="print a signed access token")
    create.add_argument("--tenant", action="append", required=True, help="repeat for several")
    create.add_argument("--role", action="append", required=True, choices=sorted(ROLES))
    create.add_argument("--subject", default="local-user")
    create.add_argument("--ttl", type=parse_ttl, default=parse_ttl("8h"))
    create.add_argument("--keys", type=Path, default=default_keys)
    create.add_argument("--issuer", default=DEFAULT_ISSUER)
    create.add_argument("--audience", default=DEFAULT_AUDIENCE)
    keys = commands.add_parser("keys").add_subparsers(dest="verb", required=True)
    for verb, text in (
        ("rotate", "sign with a new key from now on (the old one keeps verifying)"),
        ("retire", "remove an old key from the published key set"),
        ("list", "print the published kids, the signing one first"),
    ):
        command = keys.add_parser(verb, help=text)
        command.add_argument("--keys", type=Path, default=default_keys)
        if verb == "retire":
            command.add_argument("--kid", required=True)
    args = parser.parse_args(argv)
    local = LocalKeys(args.keys)
    if args.noun == "keys":
        try:
            if args.verb == "rotate":
                print(local.rotate())
            elif args.verb == "retire":
                local.retire(args.kid)
            for key in local.published_keys():
                print(key["kid"], file=sys.stderr if args.verb != "list" else sys.stdout)
        except ValueError as exc:
            parser.exit(2, f"error: {exc}\n")
        return
    # Services refuse a token that lives longer than this: do not mint one they would refuse.
    longest = int(os.environ.get("AUTH_MAX_TOKEN_LIFETIME_SECONDS", DEFAULT_MAX_LIFETIME_SECONDS))
    if args.ttl > longest:
        parser.exit(2, f"error: --ttl is longer than AUTH_MAX_TOKEN_LIFETIME_SECONDS ({longest})\n")
    issuer = local.issuer(args.issuer, args.audience)
    token_id = str(uuid.uuid4())
    minted = issuer.mint(
        subject=args.subject,
        tenants=args.tenant,
        roles=args.role,
        ttl_seconds=args.ttl,
        token_id=token_id,
    )
    # The token id (jti) is what a tenant administrator names to revoke the token.
    print(f"token id: {token_id}", file=sys.stderr)
    print(minted)


if __name__ == "__main__":
    main()
