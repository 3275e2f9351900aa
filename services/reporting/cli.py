"""`python -m services.reporting <command>`: the operator commands beside serve/migrate/relay.

A command is a module of `services/reporting/commands/` (see its docstring); `COMMANDS` names
them. Everything else goes to the shared service command line (`serve`, `migrate`, `relay`).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
from collections.abc import Sequence

from services.reporting.settings import ReportingSettings
from shared.logging import configure_logging

# command -> (module under services.reporting.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "rebuild": ("rebuild", "Rebuild every tenant's verifiable log from Kafka; check or fill."),
    "export": ("export", "export a tenant's evidence for a period to an archive (.tar.gz)"),
    "service-levels-rebuild": (
        "service_levels",
        "Rebuild the availability and SLA projections from the ledger",
    ),
    "kpis": ("kpis", "KPI projection: `kpis rebuild` folds it again from the ledger"),
    "verify": (
        "verify",
        "Verify the stored ledger against its signed checkpoints (or an export: --bundle DIR)",
    ),
}


def main(argv: Sequence[str]) -> int:
    """Run one operator command; its exit status."""
    parser = argparse.ArgumentParser(prog="python -m services.reporting")
    commands = parser.add_subparsers(dest="command", required=True)
    modules = {}
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(f"services.reporting.commands.{module_name}")
        module.add_arguments(commands.add_parser(name, help=help_text, description=help_text))
        modules[name] = module
    args = parser.parse_args(argv)
    settings = ReportingSettings()
    configure_logging("reporting", settings.log_level)
    status: int = asyncio.run(modules[args.command].run(args, settings))
    return status
