"""`python -m services.reporting export`: an evidence export written to a file.

Queues the export like `POST /evidence-exports` does, runs it in this process (a replica's
runner may take it first; then this waits for it), and writes the archive to `--out`, with a
progress bar of the entries written.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime
from pathlib import Path

from prometheus_client import CollectorRegistry

from services.reporting.application import evidence
from services.reporting.application.checkpoints import (
    Checkpointer,
    LedgerConfiguration,
    signer_of,
)
from services.reporting.commands import command_pool
from services.reporting.domain.clauses import CLAUSE_IDS
from services.reporting.metrics import ReportingMetrics
from services.reporting.settings import ReportingSettings
from shared.metrics import TenantLabel
from shared.progress import ProgressBar

# How long to wait for a job another process holds before giving up.
WAIT_SECONDS = 600.0


def _instant(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r}: give a UTC offset (e.g. 2026-01-01T00:00Z)")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's options."""
    parser.add_argument("--tenant", required=True, help="the tenant whose evidence to export")
    parser.add_argument("--from", dest="period_from", required=True, type=_instant)
    parser.add_argument("--to", dest="period_to", required=True, type=_instant)
    parser.add_argument(
        "--clauses",
        help=f"comma-separated clauses (default all: {','.join(CLAUSE_IDS)})",
    )
    parser.add_argument("--out", required=True, type=Path, help="the archive to write (.tar.gz)")


async def run(args: argparse.Namespace, settings: ReportingSettings) -> int:
    """Export; 0 with the archive written, 1 when the export failed."""
    wanted = [c.strip() for c in args.clauses.split(",") if c.strip()] if args.clauses else None
    pool = await command_pool(settings, "export")
    try:
        signer = None
        if settings.ledger_signing_key_file:
            signer = Checkpointer(
                pool,
                signer_of(settings),
                LedgerConfiguration.of(settings),
                ReportingMetrics(CollectorRegistry()),
                TenantLabel(),
            )
        runner = evidence.ExportRunner(pool, signer, settings.ledger_origin)
        job = await evidence.request_export(
            pool, args.tenant, args.period_from, args.period_to, wanted, "system:export-command"
        )
        print(f"export {job.id}", file=sys.stderr)
        bar: ProgressBar | None = None

        def show(done: int, total: int) -> None:
            nonlocal bar
            if bar is None:
                bar = ProgressBar(total, sys.stderr, unit="entries")
            bar.update(done, final=done >= total)

        deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
        while True:
            await runner.run(job.id, args.tenant, show)
            job = await evidence.export_status(pool, args.tenant, job.id)
            if job.state in ("done", "failed") or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(1.0)
        if job.state != "done":
            print(f"export {job.id} {job.state}: {job.error or 'not finished'}", file=sys.stderr)
            return 1
        archive = await evidence.archive_of(pool, args.tenant, job)
        assert archive is not None
        args.out.write_bytes(archive)
        print(
            f"wrote {args.out} ({len(archive):,} bytes, sha256 {job.archive_sha256});"
            f" checkpoint size {job.tree_size}",
            file=sys.stderr,
        )
        return 0
    finally:
        await pool.close()
