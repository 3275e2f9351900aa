"""The reporting ledger consumer, killed (os._exit) right after its database commit.

Run as a separate process by the fault tests: it applies a batch, commits it in PostgreSQL, and
dies before it can commit the Kafka offsets.
"""

import asyncio
import dataclasses
import os
import sys

from services.reporting.definition import DEFINITION
from services.reporting.entrypoints.consumers import ledger_consumer
from services.reporting.settings import ReportingSettings
from shared.service import ServiceRuntime


def consumers(runtime):
    consumer = ledger_consumer(runtime)

    async def die_after_commit(applied):
        if applied:
            print(f"committed {len(applied)} events; dying before the offset commit", flush=True)
            os._exit(137)

    consumer.after_commit = die_after_commit
    return [consumer]


async def main() -> None:
    definition = dataclasses.replace(DEFINITION, consumers=consumers, routers=())
    runtime = ServiceRuntime(definition, ReportingSettings())
    await runtime.start()
    await asyncio.sleep(120)
    print("no event arrived", flush=True)
    sys.exit(3)


if __name__ == "__main__":
    asyncio.run(main())
