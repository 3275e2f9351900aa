"""`python -m services.reporting kpis rebuild [--tenant T ...]`: the KPI projection rebuilt
from the ledger.

Each tenant's facts are reset and folded again from its log up to its newest signed checkpoint,
in one transaction per tenant (readers see the old figures until it commits; the KPI task skips
the tenant meanwhile), with a progress bar of the entries folded. The same code as the task's
(`application/kpis.py` `fold_tenant`).
"""

from __future__ import annotations

import argparse
import sys
import time

from services.reporting.application import kpis
from services.reporting.commands import command_pool
from services.reporting.settings import ReportingSettings
from shared.progress import ProgressBar


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's options."""
    actions = parser.add_subparsers(dest="action", required=True)
    rebuild = actions.add_parser(
        "rebuild", help="reset the KPI projection and fold it again from the ledger"
    )
    rebuild.add_argument(
        "--tenant", action="append", help="only this tenant (repeatable; default every tenant)"
    )


async def run(args: argparse.Namespace, settings: ReportingSettings) -> int:
    """Rebuild; 0 when done."""
    pool = await command_pool(settings, "kpis")
    try:
        bar: ProgressBar | None = None

        def show(done: int, total: int) -> None:
            nonlocal bar
            if bar is None:
                bar = ProgressBar(total, sys.stderr, unit="entries")
            bar.update(done, final=done >= total)

        started = time.monotonic()
        folded = await kpis.rebuild(pool, args.tenant, show)
        seconds = time.monotonic() - started
        for tenant, count in folded.items():
            print(f"{tenant}: {count:,} entries folded", file=sys.stderr)
        print(
            f"rebuilt the KPIs of {len(folded)} tenant(s) from {sum(folded.values()):,} entries"
            f" in {seconds:.1f} s",
            file=sys.stderr,
        )
        return 0
    finally:
        await pool.close()
