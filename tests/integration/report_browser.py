"""Renders a report's HTML in real headless Chromium (Debian's `chromium`) and measures what
the browser drew: the page's title and size, and for every chart its on-screen box, its
plotted points and the length of its trend lines.

The page itself carries no script (its CSP forbids any); for the check a copy of it gets one
measuring script at the end, and Chromium's `--dump-dom` hands back the DOM after it ran, with
the measurements written into it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

MEASURE = """
<script>
(() => {
  const visible = (el) => {
    const style = getComputedStyle(el);
    return style.display !== "none" && style.visibility !== "hidden" && Number(style.opacity) > 0;
  };
  const charts = [...document.querySelectorAll("svg.chart")].map((svg) => {
    const box = svg.getBoundingClientRect();
    const points = [...svg.querySelectorAll("circle.point")].map((c) => {
      const b = c.getBoundingClientRect();
      return {w: b.width, h: b.height, inside: b.left >= box.left && b.right <= box.right
        && b.top >= box.top && b.bottom <= box.bottom, visible: visible(c),
        breach: c.classList.contains("breach"), fill: getComputedStyle(c).fill};
    });
    const lines = [...svg.querySelectorAll("polyline.trend")].map((l) => l.getTotalLength());
    return {title: (svg.querySelector("title") || {}).textContent || "",
      width: box.width, height: box.height, visible: visible(svg), points, lines,
      axes: svg.querySelectorAll(".axes line").length,
      labels: svg.querySelectorAll(".labels text").length};
  });
  const out = document.createElement("pre");
  out.id = "browser-check";
  out.textContent = JSON.stringify({title: document.title,
    height: document.documentElement.scrollHeight,
    heading: (document.querySelector("h1") || {}).textContent || "", charts});
  document.body.appendChild(out);
})();
</script>
"""


def chromium() -> str | None:
    """Debian's chromium, if installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def measure(page: bytes, browser: str) -> dict[str, Any]:
    """What Chromium drew of the page."""
    html = page.decode()
    checked = html.replace("</body>", MEASURE + "</body>") if "</body>" in html else html + MEASURE
    with tempfile.TemporaryDirectory(prefix="report-check-") as scratch:
        source = Path(scratch) / "report.html"
        source.write_text(checked, encoding="utf-8")
        done = subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                f"--user-data-dir={scratch}/profile",
                "--window-size=1280,1024",
                "--dump-dom",
                source.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    found = re.search(r'<pre id="browser-check">(.*?)</pre>', done.stdout, flags=re.S)
    if found is None:
        raise AssertionError(f"chromium rendered nothing: {done.returncode} {done.stderr[-800:]}")
    return json.loads(
        found.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    )


def empty_charts(drawn: dict[str, Any]) -> list[str]:
    """The charts drawn with no visible size, no visible point inside them, or (with more than
    one point) no trend line: what a reader would see as an empty chart."""
    bad = []
    for chart in drawn["charts"]:
        shown = [p for p in chart["points"] if p["visible"] and p["w"] > 0 and p["inside"]]
        if (
            not chart["visible"]
            or chart["width"] <= 0
            or chart["height"] <= 0
            or not shown
            or (len(shown) > 1 and not any(length > 0 for length in chart["lines"]))
            or chart["axes"] < 2
        ):
            bad.append(chart["title"])
    return bad
