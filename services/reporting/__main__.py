"""`python -m services.reporting [serve|migrate]`."""

from services.reporting.definition import DEFINITION
from shared.service import main

if __name__ == "__main__":
    main(DEFINITION)
