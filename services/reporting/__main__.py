"""`python -m services.reporting [serve|migrate|relay]`, or an operator command of
`services/reporting/cli.py` (`verify`, `rebuild`, ...)."""

import sys

from services.reporting.cli import COMMANDS
from services.reporting.cli import main as command_main
from services.reporting.definition import DEFINITION
from shared.service import main

if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in COMMANDS:
        sys.exit(command_main(sys.argv[1:]))
    main(DEFINITION)
