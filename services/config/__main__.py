"""`python -m services.config [serve|migrate]`."""

import gc

from services.config.definition import DEFINITION
from shared.service import main

# Collections of the youngest generation per allocations (CPython's default: 700).
GC_YOUNG_THRESHOLD = 50_000


def tune_garbage_collection() -> None:
    """Make the cyclic garbage collector cheap for bulk work (discovery imports).

    An import allocates millions of short-lived, acyclic objects (rows, events, records). With
    the defaults the collector runs every 700 allocations and regularly walks every object the
    process holds (modules, schemas, the app): a third of an import's CPU in profiles. What was
    loaded until now stays put (frozen: never walked again), and young collections are rarer.
    Reference counting still frees acyclic garbage at once; only cycles wait a little longer.
    """
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 10, 10)


if __name__ == "__main__":
    tune_garbage_collection()
    main(DEFINITION)
