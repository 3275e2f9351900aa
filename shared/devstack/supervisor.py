"""Keeps child processes running: restarts each one that dies, with capped exponential backoff.

Used by `make run` and by the fault tier (which kills parts with SIGKILL and relies on this to
bring them back). Each part gets a thread of its own that starts it, waits for it to exit, says
what happened (exit code or signal) and starts it again after a delay that doubles with every
quick failure, up to a cap, and falls back to the first delay once the part has stayed up for a
while. Stopping the supervisor stops every part in the reverse order they were added.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

logger = logging.getLogger("itsm.devstack.supervisor")

Process = subprocess.Popen[bytes]
EventKind = Literal["started", "exited", "start-failed", "stopped"]


@dataclass(frozen=True)
class Part:
    """One supervised process.

    `start` launches it and returns once it is ready (raising if it is not, after cleaning up
    what it launched); `stop` ends it gracefully (and must also cope with a dead process).
    """

    name: str
    start: Callable[[], Process]
    stop: Callable[[Process], None]


@dataclass(frozen=True)
class Event:
    """Something that happened to a part, with the monotonic and wall-clock time it happened."""

    part: str
    kind: EventKind
    at: float
    wall: float
    detail: str
    pid: int | None = None
    # For "started" after a death: seconds from the exit being noticed to ready again.
    downtime: float | None = None


def describe_exit(returncode: int) -> str:
    """'exit code N' or 'killed by SIGNAME' for a Popen return code."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


@dataclass
class _State:
    part: Part
    process: Process | None = None
    up_since: float | None = None
    down_since: float | None = None
    restarts: int = 0
    thread: threading.Thread | None = None
    ready: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Supervisor:
    """Starts parts, restarts those that die, stops them all on stop()."""

    def __init__(
        self,
        *,
        first_delay: float = 0.5,
        max_delay: float = 30.0,
        stable_after: float = 30.0,
        report: Callable[[str], None] | None = None,
    ) -> None:
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.stable_after = stable_after
        self._report = report or logger.warning
        self._parts: dict[str, _State] = {}
        self._stopping = threading.Event()
        self._events: list[Event] = []
        self._events_lock = threading.Lock()

    # ---- public

    def add(self, part: Part) -> None:
        """Start supervising a part now (its first start runs in the part's own thread)."""
        if part.name in self._parts:
            raise ValueError(f"a part named {part.name!r} is already supervised")
        if self._stopping.is_set():
            raise RuntimeError("the supervisor is stopping")
        state = _State(part)
        self._parts[part.name] = state
        state.thread = threading.Thread(
            target=self._keep_running, args=(state,), name=f"supervise-{part.name}", daemon=True
        )
        state.thread.start()

    def wait_running(self, names: Sequence[str] | None = None, timeout: float = 120.0) -> None:
        """Block until each named part (all by default) is up; raise naming those that are not."""
        wanted = list(names or self._parts)
        deadline = time.monotonic() + timeout
        while True:
            down = [n for n in wanted if not self.is_running(n)]
            if not down:
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"not running after {timeout:.0f}s: {', '.join(down)}")
            self._stopping.wait(0.1)

    def is_running(self, name: str) -> bool:
        """Whether the part is started, ready and its process has not exited."""
        state = self._parts[name]
        with state.lock:
            process = state.process
            return state.ready.is_set() and process is not None and process.poll() is None

    def pid(self, name: str) -> int | None:
        """The running process id of a part (None while it is down)."""
        state = self._parts[name]
        with state.lock:
            process = state.process
            return process.pid if process is not None and process.poll() is None else None

    def restarts(self, name: str) -> int:
        """How many times the part was started again after it died."""
        return self._parts[name].restarts

    @property
    def names(self) -> list[str]:
        """The supervised parts, in the order they were added."""
        return list(self._parts)

    def events(self) -> list[Event]:
        """Everything that happened so far, oldest first."""
        with self._events_lock:
            return list(self._events)

    def stop(self, join_timeout: float = 60.0) -> None:
        """Stop every part, last added first, and end their threads."""
        self._stopping.set()
        for state in reversed(list(self._parts.values())):
            with state.lock:
                process, state.process = state.process, None
                if process is not None:
                    self._stop_part(state.part, process)
        for state in self._parts.values():
            if state.thread is not None:
                state.thread.join(join_timeout)

    # ---- internals

    def _record(self, event: Event) -> None:
        with self._events_lock:
            self._events.append(event)

    def _event(self, state: _State, kind: EventKind, detail: str, **extra: object) -> Event:
        event = Event(state.part.name, kind, time.monotonic(), time.time(), detail, **extra)  # type: ignore[arg-type]
        self._record(event)
        return event

    def _stop_part(self, part: Part, process: Process) -> None:
        try:
            part.stop(process)
        except Exception as exc:  # one part failing to stop must not keep the others running
            self._report(f"{part.name}: stopping failed: {exc!r}")
        self._record(Event(part.name, "stopped", time.monotonic(), time.time(), "stopped"))

    def _delay(self, failures: int) -> float:
        return float(min(self.max_delay, self.first_delay * 2 ** max(0, failures - 1)))

    def _keep_running(self, state: _State) -> None:
        part = state.part
        failures = 0
        while not self._stopping.is_set():
            try:
                process = part.start()
            except Exception as exc:  # the part's own failure: reported, then tried again
                failures += 1
                delay = self._delay(failures)
                first_line = (str(exc).strip().splitlines() or [repr(exc)])[0]
                self._event(state, "start-failed", first_line)
                self._report(
                    f"{part.name}: did not start ({first_line}); trying again in {delay:.1f}s"
                )
                self._stopping.wait(delay)
                continue
            with state.lock:
                if self._stopping.is_set():
                    # stop() ran while this part was starting: it is ours to stop.
                    self._stop_part(part, process)
                    return
                state.process = process
                now = time.monotonic()
                downtime = None if state.down_since is None else now - state.down_since
                state.up_since = now
                state.ready.set()
            if downtime is None:
                self._event(state, "started", f"pid {process.pid}", pid=process.pid)
            else:
                state.restarts += 1
                self._event(
                    state, "started", f"pid {process.pid}", pid=process.pid, downtime=downtime
                )
                self._report(
                    f"{part.name}: running again (pid {process.pid}), "
                    f"{downtime:.1f}s after it went down"
                )
            returncode = self._wait_exit(process)
            if returncode is None:
                return  # stopping: stop() owns the process now
            with state.lock:
                if state.process is not process:
                    return
                state.process = None
                now = time.monotonic()
                state.down_since = now
                stayed = now - (state.up_since or now)
            failures = 1 if stayed >= self.stable_after else failures + 1
            delay = self._delay(failures)
            how = describe_exit(returncode)
            self._event(state, "exited", how, pid=process.pid)
            self._report(
                f"{part.name}: exited ({how}, pid {process.pid}, up {stayed:.1f}s); "
                f"restarting in {delay:.1f}s"
            )
            self._stopping.wait(delay)

    def _wait_exit(self, process: Process) -> int | None:
        """The process's return code once it exits, or None when the supervisor stops first."""
        while not self._stopping.is_set():
            try:
                return process.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                continue
        return None


def stop_process(process: Process, timeout: float = 20.0, sig: int = signal.SIGTERM) -> None:
    """Send a signal (SIGTERM by default), SIGKILL if it has not exited after the timeout."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
