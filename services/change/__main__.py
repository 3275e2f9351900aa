"""`python -m services.change [serve|migrate]`."""

from services.change.definition import DEFINITION
from shared.service import main

if __name__ == "__main__":
    main(DEFINITION)
