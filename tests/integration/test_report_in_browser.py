"""A generated report's HTML in real headless Chromium (Debian's package): the page renders and
every chart is on screen with its points and trend lines, breaches drawn apart; the check
itself fails a page whose chart is empty or hidden; and the PDF printed by the same browser."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from services.reporting.application.reports import ReportBuilder, ReportSources
from services.reporting.domain import report_render
from services.reporting.domain.reports import ReportSpec, ShownKpi
from services.reporting.report_wiring import use_report_sources
from tests.integration.report_browser import chromium, empty_charts, measure
from tests.integration.test_service_reports import finished
from tests.unit.fakes_reports import FakeKpiReader, FakeServiceLevelReader

BROWSER = chromium()
pytestmark = pytest.mark.skipif(
    BROWSER is None,
    reason="Chromium is not installed (deploy/local/install-system-packages.sh installs it)",
)

SPEC = {
    "name": "Mail service",
    "audience": "customer",
    "services": ["svc-mail"],
    "period": "month",
    "kpis": [
        {"id": "incident.resolve_time.median", "target": 4000},
        {"id": "incident.volume"},
        {"id": "change.success_rate", "target": 0.95},
    ],
    "trend_periods": 5,
}


def resolve_times(tenant: str) -> dict[tuple[str, str, date], float | None]:
    """Median resolve times around the target (4000 s): June to November, every other one
    missed."""
    kpi = "incident.resolve_time.median"
    return {(tenant, kpi, date(2026, m, 1)): 3000.0 + 2000.0 * (m % 2) for m in range(6, 12)}


async def generated(service_client, auth, tenant, formats, **settings):
    reporting = await service_client(
        "reporting", checkpoint_interval_seconds=0.2, report_poll_seconds=0.2, **settings
    )
    kpis = FakeKpiReader(values=resolve_times(tenant))
    use_report_sources(reporting.runtime, ReportSources(kpis, FakeServiceLevelReader()))
    admin = auth(tenant, "tenant_admin")
    created = await reporting.post(
        "/report-definitions", json={**SPEC, "formats": formats}, headers=admin
    )
    assert created.status_code == 201, created.text
    started = await reporting.post(
        "/reports",
        json={"definition_id": created.json()["id"], "period_start": "2026-11-01"},
        headers=admin,
    )
    report = await finished(reporting, admin, started.headers["Location"])
    return reporting, admin, report


async def test_a_generated_report_renders_in_chromium_with_every_chart_drawn_and_not_empty(
    service_client, auth, tenant
):
    reporting, admin, report = await generated(service_client, auth, tenant, ["html"])
    page = await reporting.get(f"/reports/{report['id']}.html", headers=admin)
    assert page.status_code == 200

    drawn = measure(page.content, BROWSER)  # type: ignore[arg-type]

    assert drawn["title"] == "Mail service — 2026-11"
    assert drawn["heading"] == "Mail service" and drawn["height"] > 500
    assert [c["title"] for c in drawn["charts"]] == [
        "Median time to resolve",
        "Incidents opened",
        "Change success rate",
        "Availability — svc-mail",
    ]
    assert empty_charts(drawn) == []
    for chart in drawn["charts"]:
        assert chart["width"] > 300 and chart["height"] > 100
        assert len(chart["points"]) == 6  # the period and the five before it
        assert chart["labels"] == 6
        assert sum(chart["lines"]) > 300
    # A breached period is drawn apart (red), the others not.
    resolve = drawn["charts"][0]
    assert [p["breach"] for p in resolve["points"]] == [False, True] * 3  # June: 3000 s
    fills = {p["fill"] for p in resolve["points"] if p["breach"]}
    assert fills == {"rgb(220, 38, 38)"}
    assert {p["fill"] for p in resolve["points"] if not p["breach"]} == {"rgb(37, 99, 235)"}


async def content_with(kpis: FakeKpiReader):
    spec = ReportSpec(
        "Check",
        "test",
        (),
        "month",
        (ShownKpi("incident.volume"), ShownKpi("change.success_rate")),
        3,
        ("html",),
    )

    class NoConnection:
        async def fetchval(self, *args: object) -> None:
            return None

    return await ReportBuilder(kpis, FakeServiceLevelReader()).content(
        NoConnection(),
        "t-1",
        report_id="r-1",
        kind="service_report",
        spec=spec,
        period_start=date(2026, 11, 1),
        generated_at=datetime(2026, 12, 1, tzinfo=UTC),
    )


async def test_the_browser_check_fails_a_chart_without_data_and_a_chart_that_is_hidden():
    months = [date(2026, m, 1) for m in (8, 9, 10, 11)]
    no_changes = FakeKpiReader(values={("t-1", "change.success_rate", m): None for m in months})
    page = report_render.to_html(await content_with(no_changes))
    drawn = measure(page, BROWSER)  # type: ignore[arg-type]
    assert empty_charts(drawn) == ["Change success rate"]

    page = report_render.to_html(await content_with(FakeKpiReader()))
    hidden = page.replace(b"svg.chart{", b"svg.chart{visibility:hidden;", 1)
    assert hidden != page
    drawn = measure(hidden, BROWSER)  # type: ignore[arg-type]
    assert empty_charts(drawn) == ["Incidents opened", "Change success rate"]


async def test_the_pdf_is_the_page_printed_by_chromium(service_client, auth, tenant):
    reporting, admin, report = await generated(
        service_client, auth, tenant, ["html", "pdf"], report_chromium=BROWSER
    )
    assert set(report["formats"]) == {"html", "pdf"}
    pdf = await reporting.get(f"/reports/{report['id']}.pdf", headers=admin)
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-") and len(pdf.content) > 5000
