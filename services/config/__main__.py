"""`python -m services.config [serve|migrate]`."""

from services.config.definition import DEFINITION
from shared.service import main

if __name__ == "__main__":
    main(DEFINITION)
