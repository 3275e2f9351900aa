"""Supervision of a process's long-running tasks: the one error policy for every loop.

A background loop (the outbox relay, the backlog gauge, the SLA scheduler, auto-close, the
census and sweep loops, the revocation listener...) keeps no error policy of its own: it lets an
unexpected exception end it, and the supervisor

- logs it once at ERROR with the task's name and traceback (a task that keeps failing the same
  way is then reported at WARNING, without the traceback, so that an outage does not fill the
  log with copies of one stack),
- counts it in `itsm_background_task_failures_total{task}` and sets `itsm_background_task_up`
  to 0,
- starts the task again after a capped exponential backoff (with jitter), reset once the task
  has stayed up for a while,
- reports a task that has been down longer than a grace period in readiness (so
  `/health/ready` answers 503 naming it), and
- past a second limit calls `on_fatal`, which in a served process makes it exit non-zero so that
  the orchestrator (Kubernetes, `make run`) starts it afresh.

A task that returns is restarted too: a loop is meant to run until it is cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackgroundTask:
    """A named long-running task; `run` makes a fresh coroutine for every (re)start."""

    name: str
    run: Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class SupervisionPolicy:
    """How quickly to restart, when to report a task down, and when to give up on the process."""

    first_backoff: float = 0.5
    max_backoff: float = 10.0
    # A task up this long since its last start counts as recovered: its backoff starts over.
    healthy_after: float = 10.0
    # Down this long: readiness fails, naming the task.
    grace: float = 30.0
    # Down this long: the process gives up (on_fatal), so that the orchestrator restarts it.
    fatal_after: float = 300.0


class SupervisionMetrics:
    """The supervisor's metrics, in a process's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.failures = Counter(
            "itsm_background_task_failures",
            "Background tasks that ended with an unexpected exception (and were restarted).",
            ["task"],
            registry=registry,
        )
        self.up = Gauge(
            "itsm_background_task_up",
            "1 while a background task runs, 0 while it waits to be restarted after a failure.",
            ["task"],
            registry=registry,
        )


@dataclass
class _State:
    task: BackgroundTask
    handle: asyncio.Task[None] | None = None
    started_at: float = 0.0
    consecutive_failures: int = 0
    # When the task first failed without a healthy stretch since; None while it is healthy.
    down_since: float | None = None
    last_error: str = ""
    last_signature: str = ""
    restarts: int = 0


class Supervisor:
    """Runs named tasks until stop(); restarts each after an unexpected end (see module doc)."""

    def __init__(
        self,
        process: str,
        metrics: SupervisionMetrics,
        policy: SupervisionPolicy | None = None,
        *,
        on_fatal: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.process = process
        self.metrics = metrics
        self.policy = policy or SupervisionPolicy()
        self.on_fatal = on_fatal
        self.clock = clock
        self._states: dict[str, _State] = {}
        self._stopping = False
        self.fatal: str | None = None

    def start(self, task: BackgroundTask) -> None:
        """Start a task under supervision (names are unique within a process)."""
        if task.name in self._states:
            raise ValueError(f"a background task named {task.name!r} already runs")
        state = _State(task)
        self._states[task.name] = state
        self.metrics.up.labels(task.name).set(1)
        state.handle = asyncio.create_task(self._supervise(state), name=task.name)

    @property
    def names(self) -> list[str]:
        """The supervised tasks' names, in the order they were started."""
        return list(self._states)

    def restarts(self, name: str) -> int:
        """How many times a task has been restarted after a failure."""
        return self._states[name].restarts

    def down(self) -> dict[str, float]:
        """Tasks down past the grace period, with how long each has been down (seconds)."""
        now = self.clock()
        found: dict[str, float] = {}
        for name, state in self._states.items():
            self._settle(state, now)
            if state.down_since is not None and now - state.down_since >= self.policy.grace:
                found[name] = now - state.down_since
        return found

    def readiness(self) -> str:
        """ "ok", or which tasks have been down longer than the grace period, and why."""
        down = self.down()
        if not down:
            return "ok"
        return "down: " + ", ".join(
            f"{name} for {seconds:.0f} s ({self._states[name].last_error})"
            for name, seconds in down.items()
        )

    async def stop(self) -> None:
        """Cancel every task and wait for each to finish its cleanup."""
        self._stopping = True
        handles = [s.handle for s in self._states.values() if s.handle is not None]
        for handle in handles:
            handle.cancel()
        for handle in handles:
            try:
                await handle
            except asyncio.CancelledError:
                pass
            except Exception:
                log.warning("a background task failed while stopping", exc_info=True)
        self._states.clear()

    def _settle(self, state: _State, now: float) -> None:
        """Forget a past failure once the task has stayed up long enough since its restart."""
        running = state.handle is not None and state.started_at > 0
        if running and now - state.started_at >= self.policy.healthy_after:
            if state.down_since is not None:
                log.info(
                    "background task recovered",
                    extra={"task": state.task.name, "supervisor": self.process},
                )
            state.down_since = None
            state.consecutive_failures = 0
            state.last_signature = ""

    async def _supervise(self, state: _State) -> None:
        name = state.task.name
        while True:
            state.started_at = self.clock()
            self.metrics.up.labels(name).set(1)
            try:
                await state.task.run()
                error: BaseException = RuntimeError(
                    "the task returned; it should run until stopped"
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = exc
            if self._stopping:
                return
            now = self.clock()
            self._settle(state, now)
            state.started_at = 0.0
            self._record_failure(state, error, now)
            self._check_fatal(state, now)
            await asyncio.sleep(self._backoff(state))
            state.restarts += 1

    def _record_failure(self, state: _State, error: BaseException, now: float) -> None:
        name = state.task.name
        state.consecutive_failures += 1
        if state.down_since is None:
            state.down_since = now
        state.last_error = f"{type(error).__name__}: {error}"[:300]
        self.metrics.failures.labels(name).inc()
        self.metrics.up.labels(name).set(0)
        extra = {
            "task": name,
            "supervisor": self.process,
            "attempt": state.consecutive_failures,
            "error": state.last_error,
        }
        signature = "".join(traceback.format_exception_only(type(error), error))
        if signature != state.last_signature:
            state.last_signature = signature
            log.error(
                "background task failed; restarting it",
                extra=extra,
                exc_info=(type(error), error, error.__traceback__),
            )
        else:
            log.warning("background task failed again the same way; restarting it", extra=extra)

    def _check_fatal(self, state: _State, now: float) -> None:
        """Give up on the process (once) when a task has been down past `fatal_after`; the task
        is still restarted meanwhile, since nothing else would restart it in-process."""
        assert state.down_since is not None
        down_for = now - state.down_since
        if down_for < self.policy.fatal_after or self.fatal is not None:
            return
        reason = (
            f"background task {state.task.name} has been failing for {down_for:.0f} s"
            f" ({state.last_error}); giving up so that the process is started afresh"
        )
        self.fatal = reason
        log.critical(reason, extra={"task": state.task.name, "supervisor": self.process})
        if self.on_fatal is not None:
            self.on_fatal(reason)

    def _backoff(self, state: _State) -> float:
        exponent = min(state.consecutive_failures - 1, 30)
        delay = min(self.policy.max_backoff, self.policy.first_backoff * 2.0**exponent)
        return delay * random.uniform(0.8, 1.0)


class PerTenant:
    """One tenant's failure stays that tenant's: a loop's round over many tenants (a projection
    catching each tenant up to its log) runs each tenant's share through `run`, which logs a
    failure (at ERROR with the traceback the first time, then at WARNING while it fails the same
    way), counts it in `failures` (labelled with the task) and lets the round go on with the
    other tenants. Without it one tenant's broken data would stop every tenant's work and, past
    the supervisor's limits, the process. Keep one instance per loop, across its rounds."""

    def __init__(self, task: str, failures: Counter | None = None) -> None:
        self.task = task
        self.failures = failures
        self._last: dict[str, str] = {}

    @property
    def failing(self) -> frozenset[str]:
        """The tenants whose last attempt failed."""
        return frozenset(self._last)

    async def run(self, tenant_id: str, work: Callable[[], Awaitable[int | None]]) -> int:
        """`work`'s result (None counts as 0), or 0 when it failed."""
        try:
            done = await work()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            said = f"{type(exc).__name__}: {exc}"
            extra = {"task": self.task, "tenant_id": tenant_id}
            if self._last.get(tenant_id) == said:
                log.warning(
                    "%s: tenant %s still fails: %s", self.task, tenant_id, said, extra=extra
                )
            else:
                log.exception(
                    "%s: tenant %s failed; the others go on", self.task, tenant_id, extra=extra
                )
            self._last[tenant_id] = said
            if self.failures is not None:
                self.failures.labels(self.task).inc()
            return 0
        self._last.pop(tenant_id, None)
        return done or 0
