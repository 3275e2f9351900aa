"""Each service against its own OpenAPI, on the real broker and database: schemathesis generates
requests from the document (valid and invalid ones) and checks that no answer is a server error
and that every answer is one the document promises: its status, its content type, its body.

The run is bounded (examples per operation, a fixed seed, one worker) so that all services fit
in a few minutes of CI on two cores. Set SCHEMATHESIS_SEED to explore other inputs, and
SCHEMATHESIS_MAX_EXAMPLES to explore more of them.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
import uvicorn

from shared.auth.roles import ROLES
from shared.http.app import create_app
from tests.conftest import DEFINITIONS, free_port

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    ]
)
SEED = os.environ.get("SCHEMATHESIS_SEED", "17")
MAX_EXAMPLES = os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "12")
RUN_TIMEOUT = 300.0
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


async def serve(app: object) -> AsyncIterator[str]:
    """The app served by uvicorn on a free loopback port, in this test's event loop."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")  # type: ignore[arg-type]
    )
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 10
    while not server.started:
        assert not task.done(), "uvicorn stopped before it started"
        assert time.monotonic() < deadline, "uvicorn did not start within 10 s"
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def served(start_runtime: Callable[..., object]) -> AsyncIterator[Callable[..., object]]:
    """`await served("config")`: the base URL of the service, running on the real stack."""
    servers: list[AsyncIterator[str]] = []

    async def start(name: str) -> str:
        runtime = await start_runtime(name)  # type: ignore[operator]
        app = create_app(runtime, DEFINITIONS[name].routers, title=f"ITSM {name} service")
        server = serve(app)
        servers.append(server)
        return await anext(server)

    yield start
    for server in servers:
        await server.aclose()


async def run_schemathesis(base_url: str, headers: dict[str, str], report: Path) -> int:
    """Run the schemathesis CLI against the service; its exit status (0: no failure found)."""
    args = [
        "run",
        f"{base_url}/openapi.json",
        "--checks",
        CHECKS,
        "--phases",
        os.environ.get("SCHEMATHESIS_PHASES", "examples,coverage,fuzzing,stateful"),
        "--max-examples",
        MAX_EXAMPLES,
        "--seed",
        SEED,
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--suppress-health-check",
        "all",
        "--continue-on-failure",
        "--report",
        "junit",
        "--report-junit-path",
        str(report),
        *[arg for name, value in headers.items() for arg in ("--header", f"{name}: {value}")],
    ]
    process = await asyncio.create_subprocess_exec(
        str(SCHEMATHESIS),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "160"},
        # Its crash cache stays with the test: every run starts from the seed alone.
        cwd=report.parent,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"schemathesis did not finish within {RUN_TIMEOUT:.0f} s") from None
    # What was tested and each failure with a curl line to reproduce it (shown on failure, or -s).
    print(output.decode(errors="replace"))
    assert process.returncode is not None
    return process.returncode


@pytest.mark.parametrize("service", sorted(DEFINITIONS))
async def test_every_answer_of_the_service_is_documented_and_none_is_a_server_error(
    service: str, served, auth, tenant, tmp_path: Path
) -> None:
    base_url = await served(service)
    async with httpx.AsyncClient(base_url=base_url) as client:
        spec = (await client.get("/openapi.json")).json()
    assert spec["paths"], "the service documents no operation"

    # Every role, and the token's own tenant named, so that requests get past authorization.
    headers = {**auth(tenant, *sorted(ROLES)), "X-Tenant-Id": tenant}
    status = await run_schemathesis(base_url, headers, tmp_path / "junit.xml")

    assert status == 0, "schemathesis found failures: see its report in the captured output"
