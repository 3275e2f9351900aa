"""`python -m services.incident [serve|migrate]`."""

from services.incident.definition import DEFINITION
from shared.service import main

if __name__ == "__main__":
    main(DEFINITION)
