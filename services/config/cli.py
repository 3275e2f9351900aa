"""Command line for the config service: `python -m services.config.cli import FILE --source S`.

Streams a JSON-lines or CSV file to `POST /imports` with a progress bar on stderr (bytes sent,
rate, time left), then prints the import's report as JSON on stdout and, if any, the first
rejected rows with their reasons. The bearer token comes from `--token-file` or `ITSM_TOKEN`.
Exit status: 0 when the import completed, 1 when it failed or the request was refused.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TextIO

import httpx

from shared.progress import ProgressBar

CHUNK_BYTES = 256 * 1024
MEDIA = {"jsonl": "application/x-ndjson", "csv": "text/csv"}


async def file_chunks(path: Path, on_progress: Callable[[int], None]) -> AsyncIterator[bytes]:
    """The file in chunks, reporting the bytes read so far after each."""
    sent = 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            sent += len(chunk)
            on_progress(sent)
            yield chunk


async def upload(
    url: str,
    token: str,
    path: Path,
    *,
    source: str,
    format_: str,
    tenant: str | None = None,
    progress: TextIO | None = None,
    request_timeout: float = 3600.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> tuple[int, dict[str, Any]]:
    """Stream a file to POST /imports; return (HTTP status, JSON body)."""
    size = path.stat().st_size  # noqa: ASYNC240 - one stat call before the upload
    bar = ProgressBar(size, progress) if progress else None
    headers = {"Authorization": f"Bearer {token}", "Content-Type": MEDIA[format_]}
    if tenant:
        headers["X-Tenant-Id"] = tenant
    async with httpx.AsyncClient(
        base_url=url, timeout=request_timeout, transport=transport
    ) as client:
        response = await client.post(
            "/imports",
            params={"source": source, "format": format_},
            content=file_chunks(path, bar.update if bar else lambda _: None),
            headers=headers,
        )
        if bar:
            bar.update(size, final=True)
        body: dict[str, Any] = response.json()
        if response.status_code == 201 and body.get("outcomes", {}).get("rejected"):
            rows = await client.get(
                f"/imports/{body['id']}/rows",
                params={"outcome": "rejected", "limit": 20},
                headers=headers,
            )
            body["first_rejected"] = rows.json().get("items", [])
    return response.status_code, body


def _token(args: argparse.Namespace) -> str:
    if args.token_file:
        return str(args.token_file.read_text().strip())
    token = os.environ.get("ITSM_TOKEN", "").strip()
    if not token:
        raise SystemExit("no token: pass --token-file or set ITSM_TOKEN")
    return token


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.config.cli", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    imports = commands.add_parser("import", help="import a discovery file (JSON lines or CSV)")
    imports.add_argument("file", type=Path)
    imports.add_argument("--source", required=True, help="discovery source, e.g. vcenter")
    imports.add_argument("--format", choices=sorted(MEDIA), help="default: from the extension")
    default_url = os.environ.get("ITSM_CONFIG_URL", "http://127.0.0.1:8003")
    imports.add_argument("--url", default=default_url)
    imports.add_argument("--tenant", help="X-Tenant-Id, for tokens that serve several tenants")
    imports.add_argument("--token-file", type=Path)
    imports.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    format_ = args.format or ("csv" if args.file.suffix.lower() == ".csv" else "jsonl")
    status, body = asyncio.run(
        upload(
            args.url,
            _token(args),
            args.file,
            source=args.source,
            format_=format_,
            tenant=args.tenant,
            progress=None if args.quiet else sys.stderr,
        )
    )
    json.dump(body, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0 if status == 201 and body.get("status") == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
