"""The one progress bar of the platform's commands (imports, ledger verify, rebuild, export):
one line on stderr, redrawn at most ten times a second, with the share done, the rate and the
time left."""

from __future__ import annotations

import time
from typing import TextIO


class ProgressBar:
    """A one-line progress bar of `total` units (bytes as MB, or counted items)."""

    def __init__(
        self, total: int, out: TextIO | None, width: int = 30, *, unit: str = "MB"
    ) -> None:
        self.total = max(total, 1)
        self.out = out
        self.width = width
        self.unit = unit
        self.started = time.monotonic()
        self.drawn_at = 0.0

    def _amount(self, value: float) -> str:
        return f"{value / 1e6:,.1f}" if self.unit == "MB" else f"{value:,.0f}"

    def render(self, done: int, now: float) -> str:
        """The bar for `done` units of the total at monotonic time `now`."""
        fraction = min(done / self.total, 1.0)
        filled = int(fraction * self.width)
        elapsed = max(now - self.started, 1e-6)
        rate = done / elapsed
        left = (self.total - done) / rate if rate > 0 else 0.0
        return (
            f"\r[{'#' * filled}{'.' * (self.width - filled)}] {fraction:6.1%}"
            f" {self._amount(done)}/{self._amount(self.total)} {self.unit}"
            f" {self._amount(rate)} {self.unit}/s {left:4.0f}s left"
        )

    def update(self, done: int, *, final: bool = False) -> None:
        """Redraw (throttled unless final); nothing when there is no output."""
        if self.out is None:
            return
        now = time.monotonic()
        if final or now - self.drawn_at >= 0.1:
            self.out.write(self.render(done, now))
            if final:
                self.out.write("\n")
            self.out.flush()
            self.drawn_at = now
