"""`python -m services.reporting service-levels-rebuild [--tenant T]`: the service-level
projections (services, policies, outages, changes, SLA clock outcomes) emptied and built again
from the ledger, up to each tenant's newest signed checkpoint.

Improvement actions and audit findings are records of their own and stay as they are. Progress
(entries read of the checkpoints' sizes) is drawn on stderr.
"""

from __future__ import annotations

import argparse
import sys

from services.reporting.application.service_levels import rebuild
from services.reporting.commands import command_pool
from services.reporting.settings import ReportingSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's options."""
    parser.add_argument("--tenant", help="rebuild this tenant's projections only")


async def run(args: argparse.Namespace, settings: ReportingSettings) -> int:
    """Rebuild; 0 when done."""
    pool = await command_pool(settings, "service-levels-rebuild")
    try:
        read = await rebuild(pool, args.tenant, sys.stderr)
    finally:
        await pool.close()
    print(f"OK: {read} ledger entries folded into the service-level projections")
    return 0
