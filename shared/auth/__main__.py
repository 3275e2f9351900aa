"""`python -m shared.auth token create --tenant acme --role agent --ttl 8h`: a local token."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from shared.auth.local import DEFAULT_AUDIENCE, DEFAULT_ISSUER, LocalKeys
from shared.auth.roles import ROLES
from shared.devstack.kafka import REPO_ROOT

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(text: str) -> int:
    """Seconds in a duration such as 90s, 15m, 8h or 30d."""
    match = re.fullmatch(r"(\d+)([smhd])", text)
    if not match:
        raise argparse.ArgumentTypeError("use a number and a unit: 90s, 15m, 8h, 30d")
    return int(match.group(1)) * _UNITS[match.group(2)]


def main(argv: list[str] | None = None) -> None:
    """Mint a token signed by the local platform's key."""
    parser = argparse.ArgumentParser(prog="python -m shared.auth")
    commands = parser.add_subparsers(dest="noun", required=True)
    token = commands.add_parser("token").add_subparsers(dest="verb", required=True)
    create = token.add_parser("create", help="print a signed access token")
    create.add_argument("--tenant", action="append", required=True, help="repeat for several")
    create.add_argument("--role", action="append", required=True, choices=sorted(ROLES))
    create.add_argument("--subject", default="local-user")
    create.add_argument("--ttl", type=parse_ttl, default=parse_ttl("8h"))
    create.add_argument("--keys", type=Path, default=REPO_ROOT / ".state" / "run" / "auth")
    create.add_argument("--issuer", default=DEFAULT_ISSUER)
    create.add_argument("--audience", default=DEFAULT_AUDIENCE)
    args = parser.parse_args(argv)
    issuer = LocalKeys(args.keys).issuer(args.issuer, args.audience)
    print(
        issuer.mint(
            subject=args.subject, tenants=args.tenant, roles=args.role, ttl_seconds=args.ttl
        )
    )


if __name__ == "__main__":
    main()
