"""Trend charts drawn on the server as inline SVG: a value per period as a line, the target as
a dashed line, breaches highlighted, axes with labels, an accessible title and description.

`layout` computes the geometry (pure arithmetic, tested on its coordinates); `svg` draws it.
Every text that reaches the SVG is escaped here, so a KPI title or a service name cannot inject
markup into the page. No JavaScript: the chart is the picture.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

WIDTH = 640
HEIGHT = 240
LEFT = 64
RIGHT = 36
TOP = 16
BOTTOM = 44
TICKS = 5


@dataclass(frozen=True)
class Dot:
    """A period's value on the chart."""

    x: float
    y: float
    label: str  # the period
    text: str  # the value as shown
    breach: bool


@dataclass(frozen=True)
class Tick:
    y: float
    text: str


@dataclass(frozen=True)
class ChartLayout:
    """Where everything goes in a WIDTH x HEIGHT chart."""

    title: str
    description: str
    x_labels: tuple[tuple[float, str], ...]
    ticks: tuple[Tick, ...]
    dots: tuple[Dot, ...]
    segments: tuple[tuple[Dot, ...], ...]  # runs of consecutive periods with a value
    target_y: float | None
    target_text: str | None
    low: float
    high: float

    @property
    def empty(self) -> bool:
        return not self.dots


def _nice_step(span: float) -> float:
    raw = span / TICKS
    magnitude = 10.0 ** math.floor(math.log10(raw))
    return next(f * magnitude for f in (1.0, 2.0, 2.5, 5.0, 10.0) if raw <= f * magnitude)


def _scale(values: Sequence[float]) -> tuple[float, float, float]:
    """(low, high, step): a range from zero (or below) that holds every value, in nice steps."""
    low = min(0.0, *values)
    high = max(values)
    if high == low:
        high = low + (abs(low) or 1.0)
    step = _nice_step(high - low)
    return float(math.floor(low / step) * step), float(math.ceil(high / step) * step), step


def layout(
    title: str,
    labels: Sequence[str],
    values: Sequence[float | None],
    *,
    target: float | None,
    breaches: Sequence[bool],
    show: Callable[[float], str],
) -> ChartLayout:
    """The geometry of a trend chart: one value (or None) and one breach flag per label."""
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    n = len(labels)
    xs = [LEFT + plot_w / 2] if n == 1 else [LEFT + plot_w * i / (n - 1) for i in range(n)]
    known = [v for v in values if v is not None and math.isfinite(v)]
    scale_of = [*known, *([target] if target is not None and known else [])]
    low, high, step = _scale(scale_of) if scale_of else (0.0, 1.0, 0.2)

    def y(value: float) -> float:
        return round(TOP + plot_h * (high - value) / (high - low), 2)

    ticks = tuple(
        Tick(y(low + step * i), show(low + step * i)) for i in range(round((high - low) / step) + 1)
    )
    dots: list[Dot] = []
    segments: list[tuple[Dot, ...]] = []
    run: list[Dot] = []
    for x, label, value, breach in zip(xs, labels, values, breaches, strict=True):
        if value is None or not math.isfinite(value):
            if run:
                segments.append(tuple(run))
            run = []
            continue
        dot = Dot(round(x, 2), y(value), label, show(value), breach)
        dots.append(dot)
        run.append(dot)
    if run:
        segments.append(tuple(run))
    shown_target = target is not None and bool(known)
    description = (
        "; ".join(f"{d.label}: {d.text}{' (target missed)' if d.breach else ''}" for d in dots)
        if dots
        else "No data in these periods."
    )
    if target is not None:
        description += f" Target {show(target)}."
    return ChartLayout(
        title=title,
        description=description,
        x_labels=tuple((round(x, 2), label) for x, label in zip(xs, labels, strict=True)),
        ticks=ticks,
        dots=tuple(dots),
        segments=tuple(segments),
        target_y=y(target) if shown_target and target is not None else None,
        target_text=show(target) if target is not None else None,
        low=low,
        high=high,
    )


def svg(chart: ChartLayout, ident: str) -> str:
    """The chart as an inline <svg> (ident: unique in the page, for aria-labelledby)."""
    e = escape
    title_id, desc_id = f"{ident}-title", f"{ident}-desc"
    bottom = HEIGHT - BOTTOM
    parts = [
        f'<svg class="chart{" empty" if chart.empty else ""}" role="img"'
        f' viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}"'
        f' aria-labelledby="{e(title_id)} {e(desc_id)}" data-points="{len(chart.dots)}"'
        ' xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{e(title_id)}">{e(chart.title)}</title>',
        f'<desc id="{e(desc_id)}">{e(chart.description)}</desc>',
        f'<g class="axes"><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom}"/>'
        f'<line x1="{LEFT}" y1="{bottom}" x2="{WIDTH - RIGHT}" y2="{bottom}"/></g>',
        '<g class="ticks">',
    ]
    for tick in chart.ticks:
        parts.append(
            f'<line class="grid" x1="{LEFT}" y1="{tick.y}" x2="{WIDTH - RIGHT}" y2="{tick.y}"/>'
            f'<text x="{LEFT - 6}" y="{tick.y}" text-anchor="end"'
            f' dominant-baseline="middle">{e(tick.text)}</text>'
        )
    parts.append('</g><g class="labels">')
    for x, label in chart.x_labels:
        parts.append(f'<text x="{x}" y="{bottom + 18}" text-anchor="middle">{e(label)}</text>')
    parts.append("</g>")
    if chart.empty:
        parts.append(
            f'<text class="no-data" x="{LEFT + (WIDTH - LEFT - RIGHT) / 2}"'
            f' y="{TOP + (bottom - TOP) / 2}" text-anchor="middle">No data in these periods</text>'
        )
    if chart.target_y is not None:
        parts.append(
            f'<g class="target"><line x1="{LEFT}" y1="{chart.target_y}" x2="{WIDTH - RIGHT}"'
            f' y2="{chart.target_y}" stroke-dasharray="6 4"/>'
            f'<text x="{WIDTH - RIGHT}" y="{chart.target_y - 4}" text-anchor="end">'
            f"target {e(chart.target_text or '')}</text></g>"
        )
    for segment in chart.segments:
        if len(segment) > 1:
            points = " ".join(f"{d.x},{d.y}" for d in segment)
            parts.append(f'<polyline class="trend" fill="none" points="{points}"/>')
    for dot in chart.dots:
        css = "point breach" if dot.breach else "point"
        radius = 6 if dot.breach else 4
        note = " (target missed)" if dot.breach else ""
        parts.append(
            f'<circle class="{css}" cx="{dot.x}" cy="{dot.y}" r="{radius}">'
            f"<title>{e(dot.label)}: {e(dot.text)}{note}</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)
