"""The reporting service's operator commands (`python -m services.reporting <command>`).

Each module here is one command: `add_arguments(parser)` declares its options and
`async run(args, settings) -> int` does the work, drawing its progress on stderr with
`shared.progress.ProgressBar`, and returns the exit status (0 success, 1 a failure it reports).
`services/reporting/cli.py` lists them.
"""

from __future__ import annotations

import asyncpg

from services.reporting.settings import SERVICE, ReportingSettings
from shared.db import create_pool


async def command_pool(settings: ReportingSettings, command: str) -> asyncpg.Pool:
    """The small pool a command works with, named `reporting-<command>` in pg_stat_activity."""
    return await create_pool(
        settings.database_url.get_secret_value(),
        schema=SERVICE.schema,
        application_name=f"reporting-{command}",
        min_size=1,
        max_size=2,
    )
