"""The change service with one more background task that always fails, served as main() serves
it: the test expects the process to give up (exit non-zero) once the task has been down past
CHANGE_BACKGROUND_FATAL_SECONDS."""

import dataclasses

from services.change.definition import DEFINITION
from shared.service import main
from shared.supervision import BackgroundTask


async def always_failing() -> None:
    raise ConnectionRefusedError("the dependency this loop needs is gone")


if __name__ == "__main__":
    main(
        dataclasses.replace(
            DEFINITION, background=lambda _: [BackgroundTask("always-failing", always_failing)]
        ),
        ["serve"],
    )
