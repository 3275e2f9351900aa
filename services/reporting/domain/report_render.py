"""A report's content as JSON, CSV and an HTML page with its charts (inline SVG).

Every value that reaches the HTML is escaped (`html.escape`), and the page carries no script:
the service answers it with a Content-Security-Policy that allows none. CSV cells that a
spreadsheet would take for a formula are prefixed with `'` (CSV injection). The same content
gives the same bytes, so a format's SHA-256 identifies it.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterable
from datetime import date, datetime
from html import escape
from typing import Any

from services.reporting.domain import charts
from services.reporting.domain.report_data import (
    AvailabilityPoint,
    Basis,
    KpiDefinition,
    Unit,
)
from services.reporting.domain.reports import KpiSeries, ReportContent

# The page's own styles travel in it (the CSP allows inline styles, and nothing else).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none';"
    " form-action 'none'; frame-ancestors 'none'"
)


# --- values -------------------------------------------------------------------------------------


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def show(unit: Unit | str, value: float | None) -> str:
    """A value as a person reads it, by unit."""
    if value is None or not math.isfinite(value):
        return "—"
    if unit == "ratio":
        return f"{value * 100:.1f}%"
    if unit == "seconds":
        return _duration(value)
    if unit == "count":
        return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"
    return f"{value:,.2f}"


def shower(unit: Unit | str) -> Callable[[float], str]:
    return lambda value: show(unit, value)


def _basis(basis: Basis | None) -> dict[str, Any] | None:
    return None if basis is None else {"tree_size": basis.tree_size, "root_hash": basis.root_hash}


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


# --- JSON ---------------------------------------------------------------------------------------


def _definition(d: KpiDefinition) -> dict[str, Any]:
    return {
        "id": d.id,
        "version": d.version,
        "title": d.title,
        "unit": d.unit,
        "better": d.better,
        "process": d.process,
        "description": d.description,
    }


def as_document(content: ReportContent) -> dict[str, Any]:
    """The report as one JSON-ready document."""
    labels = [p.label for p in content.periods]
    return {
        "format": "itsm-service-report/1",
        "report_id": content.report_id,
        "kind": content.kind,
        "title": content.title,
        "audience": content.audience,
        "tenants": list(content.tenants),
        "services": list(content.services),
        "definition": None
        if content.definition_id is None
        else {"id": content.definition_id, "version": content.definition_version},
        "period": {
            "kind": content.period.kind,
            "label": content.period.label,
            "from": content.period_from.isoformat(),
            "to": content.period_to.isoformat(),
            "time_zone": content.time_zone,
        },
        "periods": labels,
        "generated_at": content.generated_at.isoformat(),
        "basis": {tenant: _basis(b) for tenant, b in content.bases.items()},
        "kpis": [
            {
                "kpi": _definition(s.definition),
                "dimension_value": s.dimension_value,
                "target": s.target,
                "values": [
                    None
                    if p is None
                    else {
                        "period": p.period.label,
                        "value": p.value,
                        "count": p.count,
                        "breached": breach,
                    }
                    for p, breach in zip(s.points, s.breaches(), strict=True)
                ],
            }
            for s in content.series
        ],
        "availability": [
            {
                **{k: _plain(v) for k, v in vars(a).items() if k != "period"},
                "period": a.period.label,
            }
            for a in content.availability
        ],
        "sla": [
            {
                **{k: _plain(v) for k, v in vars(r).items() if k != "period"},
                "period": r.period.label,
            }
            for r in content.sla
        ],
        "improvement_actions": [
            {k: _plain(v) for k, v in vars(a).items()} for a in content.actions
        ],
        "audit_findings": [{k: _plain(v) for k, v in vars(f).items()} for f in content.findings],
        "notes": list(content.notes),
    }


def to_json(content: ReportContent) -> bytes:
    """The report as JSON (stable key order: the same content, the same bytes)."""
    return json.dumps(as_document(content), sort_keys=True, indent=1, ensure_ascii=False).encode()


# --- CSV ----------------------------------------------------------------------------------------

CSV_HEADER = (
    "section",
    "subject",
    "title",
    "dimension_value",
    "period",
    "value",
    "unit",
    "target",
    "breached",
    "count",
    "status",
)


def safe_cell(value: Any) -> str:
    """A CSV cell a spreadsheet shows as text: a leading =, +, -, @, tab or CR is quoted with '
    unless the cell is a number."""
    text = "" if value is None else str(value)
    if text and text[0] in "=+-@\t\r":
        try:
            float(text)
        except ValueError:
            return "'" + text
    return text


def _csv_rows(content: ReportContent) -> Iterable[tuple[Any, ...]]:
    for s in content.series:
        for p, breach in zip(s.points, s.breaches(), strict=True):
            if p is None:
                continue
            yield (
                "kpi",
                s.definition.id,
                s.definition.title,
                s.dimension_value,
                p.period.label,
                p.value,
                s.definition.unit,
                s.target,
                breach,
                p.count,
                "",
            )
    for a in content.availability:
        yield (
            "availability",
            a.service,
            "availability",
            a.service,
            a.period.label,
            a.availability,
            "ratio",
            a.target,
            bool(a.breached),
            a.outages,
            "",
        )
    for r in content.sla:
        yield (
            "sla",
            r.policy,
            r.target,
            None,
            r.period.label,
            r.compliance,
            "ratio",
            r.objective,
            r.missed,
            r.met + r.breached,
            "",
        )
    for action in content.actions:
        yield (
            *("improvement_action", action.id, action.title, action.service),
            *("", "", "", "", "", ""),
            action.status,
        )
    for f in content.findings:
        yield ("audit_finding", f.id, f.finding, f.clause, "", "", "", "", "", "", f.status)


def to_csv(content: ReportContent) -> bytes:
    """The report's figures as CSV: one row per KPI value, availability, SLA result, action and
    finding."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    for row in _csv_rows(content):
        writer.writerow([safe_cell(v) for v in row])
    return out.getvalue().encode()


# --- HTML ---------------------------------------------------------------------------------------

STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#1b1f24;max-width:60rem}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ccc}
h3{font-size:1.05rem;margin-bottom:.2rem}
table{border-collapse:collapse;margin:.5rem 0 1rem}td,th{border:1px solid #ccc;padding:.2rem .5rem;
text-align:left;font-size:.9rem}th{background:#f3f4f6}
.breach,.missed{color:#b42318;font-weight:600}
svg.chart{display:block;max-width:100%;height:auto;font-size:11px}
svg.chart .axes line{stroke:#333;stroke-width:1}svg.chart .grid{stroke:#e5e7eb}
svg.chart .trend{stroke:#2563eb;stroke-width:2}svg.chart .point{fill:#2563eb}
svg.chart .point.breach{fill:#dc2626;stroke:#7f1d1d;stroke-width:1.5}
svg.chart .target line{stroke:#16a34a;stroke-width:1.5}svg.chart .target text{fill:#166534}
svg.chart .no-data{fill:#6b7280}
.meta{color:#4b5563;font-size:.9rem}
@media print{body{margin:1cm}h2{break-before:auto}figure{break-inside:avoid}}
"""


def _series_title(s: KpiSeries) -> str:
    return s.definition.title + (f" — {s.dimension_value}" if s.dimension_value else "")


def _kpi_figure(content: ReportContent, s: KpiSeries, ident: str) -> str:
    labels = [p.label for p in content.periods]
    unit = s.definition.unit
    chart = charts.layout(
        _series_title(s),
        labels,
        s.values(),
        target=s.target,
        breaches=s.breaches(),
        show=shower(unit),
    )
    last = s.points[-1] if s.points else None
    now = show(unit, None if last is None else last.value)
    breach = s.breaches()[-1] if s.points else False
    e = escape
    return (
        f'<figure class="kpi" id="{e(ident)}"><h3>{e(_series_title(s))}</h3>'
        f'<p class="meta">{e(s.definition.description)} (v{s.definition.version};'
        f" better: {e(s.definition.better)})</p>"
        + charts.svg(chart, ident)
        + f'<figcaption>{e(content.period.label)}: <span class="{"breach" if breach else ""}">'
        f"{e(now)}</span>"
        + (f"; target {e(show(unit, s.target))}" if s.target is not None else "")
        + "</figcaption></figure>"
    )


def _availability_figures(content: ReportContent) -> list[str]:
    by_service: dict[str, dict[date, AvailabilityPoint]] = {}
    for a in content.availability:
        by_service.setdefault(a.service, {})[a.period.start] = a
    figures = []
    for n, (service, points) in enumerate(sorted(by_service.items())):
        row = [points.get(p.start) for p in content.periods]
        targets = [a.target for a in row if a is not None and a.target is not None]
        chart = charts.layout(
            f"Availability — {service}",
            [p.label for p in content.periods],
            [None if a is None else a.availability for a in row],
            target=targets[-1] if targets else None,
            breaches=[bool(a is not None and a.breached) for a in row],
            show=shower("ratio"),
        )
        figures.append(
            f'<figure class="availability"><h3>{escape(service)}</h3>'
            + charts.svg(chart, f"availability-{n}")
            + "</figure>"
        )
    return figures


def _table(header: Iterable[str], rows: Iterable[Iterable[Any]], missed: list[bool]) -> str:
    e = escape
    head = "".join(f"<th scope='col'>{e(h)}</th>" for h in header)
    body = "".join(
        ("<tr class='missed'>" if bad else "<tr>")
        + "".join(f"<td>{e('' if v is None else str(_plain(v)))}</td>" for v in row)
        + "</tr>"
        for row, bad in zip(rows, missed, strict=True)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


FINDING_COLUMNS = (
    *("audit", "clause", "finding", "severity"),
    *("owner", "corrective action", "due", "status"),
)


def to_html(content: ReportContent) -> bytes:
    """The report as one HTML page with its charts inline (no script, no external resource)."""
    e = escape
    bases = "; ".join(
        f"{tenant}: "
        + ("no checkpoint yet" if b is None else f"tree size {b.tree_size}, root {b.root_hash}")
        for tenant, b in content.bases.items()
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(content.title)} — {e(content.period.label)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<header><h1>{e(content.title)}</h1>",
        f'<p class="meta">Period {e(content.period.label)} ({e(content.period_from.isoformat())}'
        f" to {e(content.period_to.isoformat())}, {e(content.time_zone)}); audience"
        f" {e(content.audience)}; tenants {e(', '.join(content.tenants))}"
        + (f"; services {e(', '.join(content.services))}" if content.services else "")
        + "</p>",
        f'<p class="meta">Computed from the ledger checkpoint {e(bases)}. Generated'
        f" {e(content.generated_at.isoformat())}, report {e(content.report_id)}.</p>",
        "</header><main>",
    ]
    for note in content.notes:
        parts.append(f'<p class="note">{e(note)}</p>')
    processes: dict[str, list[tuple[int, KpiSeries]]] = {}
    for n, s in enumerate(content.series):
        processes.setdefault(s.definition.process, []).append((n, s))
    if processes:
        parts.append('<section id="kpis"><h2>Key performance indicators</h2>')
        for process, series in processes.items():
            if len(processes) > 1:
                parts.append(f"<h2>{e(process.capitalize())}</h2>")
            parts.extend(_kpi_figure(content, s, f"kpi-{n}") for n, s in series)
        parts.append("</section>")
    if content.availability:
        parts.append('<section id="availability"><h2>Availability</h2>')
        parts.extend(_availability_figures(content))
        rows = [
            (
                a.service,
                a.period.label,
                show("ratio", a.availability),
                show("ratio", a.target),
                a.outages,
                show("seconds", a.downtime_seconds),
                show("seconds", a.planned_downtime_seconds),
                show("seconds", a.degraded_seconds),
                show("seconds", a.mtbf_seconds),
                show("seconds", a.mtrs_seconds),
            )
            for a in content.availability
        ]
        parts.append(
            _table(
                (
                    "service",
                    "period",
                    "availability",
                    "target",
                    "outages",
                    "downtime",
                    "planned",
                    "degraded",
                    "MTBF",
                    "MTRS",
                ),
                rows,
                [bool(a.breached) for a in content.availability],
            )
        )
        parts.append("</section>")
    if content.sla:
        parts.append('<section id="sla"><h2>SLA performance</h2>')
        parts.append(
            _table(
                ("policy", "target", "period", "met", "breached", "compliance", "objective"),
                [
                    (
                        r.policy,
                        r.target,
                        r.period.label,
                        r.met,
                        r.breached,
                        show("ratio", r.compliance),
                        show("ratio", r.objective),
                    )
                    for r in content.sla
                ],
                [r.missed for r in content.sla],
            )
        )
        parts.append("</section>")
    if content.kind == "management_review" or content.actions:
        parts.append('<section id="improvement-actions"><h2>Improvement actions</h2>')
        parts.append(
            _table(
                ("action", "source", "service", "owner", "due", "status", "outcome"),
                [
                    (a.title, a.source, a.service, a.owner, a.due_date, a.status, a.outcome)
                    for a in content.actions
                ],
                [a.status in ("open", "in_progress") for a in content.actions],
            )
        )
        parts.append("</section>")
    if content.kind == "management_review" or content.findings:
        parts.append('<section id="audit-findings"><h2>Internal-audit findings</h2>')
        parts.append(
            _table(
                FINDING_COLUMNS,
                [
                    (
                        f.audit,
                        f.clause,
                        f.finding,
                        f.severity,
                        f.owner,
                        f.corrective_action,
                        f.due_date,
                        f.status,
                    )
                    for f in content.findings
                ],
                [f.status != "closed" for f in content.findings],
            )
        )
        parts.append("</section>")
    parts.append("</main></body></html>")
    return "\n".join(parts).encode()
