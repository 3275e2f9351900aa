"""A lean HTTP/1.1 load generator for the benchmarks: keep-alive connections over asyncio streams.

The benchmarks run the load generator on the same two cores as the service, PostgreSQL and
Kafka. httpx spends about as much CPU per request as the service does (measured: the httpx
client at 80% of a core against the service's 62% while creating incidents), so it measured
itself as much as the service. This client does only what a load generator must: write a
request, read the status line, headers and a `Content-Length` or chunked body, and keep the
connection for the next request. It is not a general HTTP client (no redirects, no TLS, no
proxies) and is only used by `tests/benchmarks`.

`CpuMeter` reads how much CPU each part of the platform (service processes, PostgreSQL, the
Kafka broker, this load generator) spent during a measurement, from /proc (Linux).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def exchange(self, request: bytes) -> tuple[Reply, bool]:
        """Send one request and read its reply; also whether the connection can be reused."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *lines = head[:-4].decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = await self._chunked()
        else:
            body = b""
        return Reply(status, headers, body), headers.get("connection", "").lower() != "close"

    async def _chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int((await self.reader.readline()).split(b";", 1)[0], 16)
            if size == 0:
                await self.reader.readline()  # the empty trailer line
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readline()

    def close(self) -> None:
        self.writer.close()


@dataclass
class _Slot:
    host: str
    port: int
    connection: _Connection | None = None


class LoadClient:
    """`connections` keep-alive connections, spread evenly over one or more servers (replicas
    of a service, as a load balancer would spread them); a request takes the longest-free one.

    A transport failure raises one of `TRANSPORT_ERRORS` and drops that connection; the next
    request on its slot opens a new one.
    """

    TRANSPORT_ERRORS = (ConnectionError, EOFError, asyncio.LimitOverrunError, OSError)

    def __init__(self, base_urls: str | Sequence[str], connections: int) -> None:
        urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        servers = [urlsplit(url) for url in urls]
        self._free: asyncio.Queue[_Slot] = asyncio.Queue()
        for i in range(connections):
            server = servers[i % len(servers)]
            self._free.put_nowait(_Slot(server.hostname or "127.0.0.1", server.port or 80))

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        body = b"" if json_body is None else json.dumps(json_body).encode()
        slot = await self._free.get()
        lines = [f"{method} {path} HTTP/1.1", f"Host: {slot.host}:{slot.port}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        if json_body is not None:
            lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(body)}")
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        try:
            if slot.connection is None:
                slot.connection = _Connection(*await asyncio.open_connection(slot.host, slot.port))
            reply, reusable = await slot.connection.exchange(request)
        except BaseException:
            self._drop(slot)
            raise
        if not reusable:
            self._drop(slot)
        else:
            self._free.put_nowait(slot)
        return reply

    def _drop(self, slot: _Slot) -> None:
        if slot.connection is not None:
            slot.connection.close()
            slot.connection = None
        self._free.put_nowait(slot)

    async def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> Reply:
        return await self.request("POST", path, json_body=body, headers=headers)

    async def get(self, path: str, headers: dict[str, str] | None = None) -> Reply:
        return await self.request("GET", path, headers=headers)

    async def close(self) -> None:
        while not self._free.empty():
            slot = self._free.get_nowait()
            if slot.connection is not None:
                slot.connection.close()

    async def __aenter__(self) -> LoadClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


# --- CPU accounting ----------------------------------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


def children_of(parent: int) -> list[int]:
    """The direct children of a process (a PostgreSQL server's backends)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == parent:
                found.append(int(entry.name))
    return found


def pid_from_file(path: Path) -> int:
    """The pid on the first line of a pid file (postmaster.pid, broker.pid)."""
    return int(path.read_text().split()[0])


class CpuMeter:
    """CPU seconds spent by groups of processes between `start()` and `stop()`.

    `groups` maps a name to a function returning that group's pids, called at both ends, so
    that processes started in between (new PostgreSQL backends) count from the moment seen.
    This process is measured with `time.process_time()` as the group "load generator".
    """

    def __init__(self, groups: Mapping[str, Any]) -> None:
        self.groups = groups
        self._before: dict[str, dict[int, float]] = {}
        self._mine = 0.0
        self.spent: dict[str, float] = {}

    def _sample(self) -> dict[str, dict[int, float]]:
        return {
            name: {pid: _cpu_seconds(pid) for pid in pids()} for name, pids in self.groups.items()
        }

    def start(self) -> None:
        self._before = self._sample()
        self._mine = time.process_time()

    def stop(self) -> dict[str, float]:
        after = self._sample()
        self.spent = {
            name: sum(cpu - self._before[name].get(pid, 0.0) for pid, cpu in pids.items())
            for name, pids in after.items()
        }
        self.spent["load generator"] = time.process_time() - self._mine
        return self.spent

    def per(self, count: int, unit: str = "request") -> str:
        """CPU milliseconds per unit of work, by group."""
        parts: Iterable[str] = (
            f"{name} {seconds / count * 1000:.2f}" for name, seconds in self.spent.items()
        )
        total = sum(self.spent.values()) / count * 1000
        return f"CPU ms per {unit}: " + ", ".join(parts) + f"; all {total:.2f}"
