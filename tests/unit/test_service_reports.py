"""Service reports without a database: periods and schedules, the SVG trend charts (their
coordinates, targets, breaches, empty data), the HTML's escaping, the CSV, and the content a
report is built from (with the readers' test doubles)."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, date, datetime, time
from xml.etree import ElementTree
from zoneinfo import ZoneInfo

import pytest

from services.reporting.application.reports import (
    DefinitionInput,
    ReportBuilder,
    checked_definition,
)
from services.reporting.domain import charts, report_render
from services.reporting.domain.report_data import Basis, KpiPoint, Period, instants_of, period_of
from services.reporting.domain.reports import (
    ReportContent,
    ReportSpec,
    ShownKpi,
    parse_period,
    period_due,
    run_instants,
    series_of,
    shift,
    trend,
)
from shared.errors import ValidationFailed
from tests.unit.fakes_reports import DEFINITIONS, FakeKpiReader, FakeServiceLevelReader

SVG = "{http://www.w3.org/2000/svg}"
BERLIN = ZoneInfo("Europe/Berlin")


def show(value: float) -> str:
    return f"{value:g}"


# --- periods and schedules ----------------------------------------------------------------------


def test_periods_are_calendar_days_iso_weeks_and_months_with_their_labels():
    assert period_of("week", date(2026, 12, 3)) == Period("week", date(2026, 11, 30), "2026-W49")
    assert period_of("month", date(2026, 12, 3)) == Period("month", date(2026, 12, 1), "2026-12")
    assert shift(period_of("month", date(2026, 1, 15)), -1).label == "2025-12"
    assert [p.label for p in trend(period_of("month", date(2026, 3, 1)), 3)] == [
        "2025-12",
        "2026-01",
        "2026-02",
        "2026-03",
    ]


def test_a_period_runs_from_local_midnight_to_local_midnight():
    start, end = instants_of(period_of("month", date(2026, 10, 1)), BERLIN)
    # October in Berlin: summer time (UTC+2) at the start, winter time (UTC+1) at the end.
    assert start == datetime(2026, 9, 30, 22, tzinfo=UTC)
    assert end == datetime(2026, 10, 31, 23, tzinfo=UTC)


def test_a_period_start_that_begins_no_period_is_refused():
    with pytest.raises(ValueError, match="starts on 2026-11-30"):
        parse_period("week", date(2026, 12, 2))


def test_a_monthly_schedule_runs_on_the_first_at_local_time_and_reports_the_month_that_ended():
    runs = run_instants(
        "monthly",
        time(6, 0),
        BERLIN,
        datetime(2026, 10, 15, tzinfo=UTC),
        datetime(2026, 12, 3, tzinfo=UTC),
    )
    assert runs == [datetime(2026, 11, 1, 5, tzinfo=UTC), datetime(2026, 12, 1, 5, tzinfo=UTC)]
    assert [period_due("month", r, BERLIN).label for r in runs] == ["2026-10", "2026-11"]


def test_a_daily_schedule_of_a_monthly_report_names_the_same_month_all_month():
    runs = run_instants(
        "daily",
        time(0, 30),
        ZoneInfo("UTC"),
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2026, 12, 3, 1, tzinfo=UTC),
    )
    assert len(runs) == 3
    assert {period_due("month", r, ZoneInfo("UTC")).label for r in runs} == {"2026-11"}


def test_no_schedule_never_runs():
    assert (
        run_instants(
            "none",
            time(0),
            BERLIN,
            datetime(2026, 1, 1, tzinfo=UTC),
            datetime(2027, 1, 1, tzinfo=UTC),
        )
        == []
    )


# --- charts -------------------------------------------------------------------------------------


def test_a_chart_spreads_the_periods_over_the_width_and_scales_values_from_zero():
    chart = charts.layout(
        "Resolve time",
        ["a", "b", "c"],
        [10.0, 20.0, 40.0],
        target=None,
        breaches=[False, False, False],
        show=show,
    )
    xs = [d.x for d in chart.dots]
    assert xs == [
        charts.LEFT,
        (charts.LEFT + charts.WIDTH - charts.RIGHT) / 2,
        charts.WIDTH - charts.RIGHT,
    ]
    assert (chart.low, chart.high) == (0.0, 40.0)
    bottom, top = charts.HEIGHT - charts.BOTTOM, charts.TOP
    assert [d.y for d in chart.dots] == [
        bottom - (bottom - top) / 4,
        bottom - (bottom - top) / 2,
        top,
    ]
    assert [t.text for t in chart.ticks] == ["0", "10", "20", "30", "40"]


def test_the_target_is_a_line_at_its_value_and_widens_the_scale_when_above_the_data():
    chart = charts.layout(
        "Success", ["a", "b"], [0.5, 0.6], target=1.0, breaches=[True, True], show=show
    )
    assert chart.high == 1.0 and chart.target_y == charts.TOP
    drawn = charts.svg(chart, "c1")
    assert 'class="target"' in drawn and "target 1" in drawn


def test_breached_periods_are_highlighted_and_named_in_the_description():
    chart = charts.layout(
        "Resolve time",
        ["2026-10", "2026-11"],
        [3.0, 5.0],
        target=4.0,
        breaches=[False, True],
        show=show,
    )
    root = ElementTree.fromstring(charts.svg(chart, "c2"))
    circles = root.findall(f"{SVG}circle")
    assert [c.get("class") for c in circles] == ["point", "point breach"]
    assert circles[1].find(f"{SVG}title").text == "2026-11: 5 (target missed)"
    assert "2026-11: 5 (target missed)" in root.find(f"{SVG}desc").text


def test_a_period_without_data_breaks_the_line_instead_of_drawing_zero():
    chart = charts.layout(
        "x",
        ["a", "b", "c", "d"],
        [1.0, None, 2.0, 3.0],
        target=None,
        breaches=[False] * 4,
        show=show,
    )
    assert [len(s) for s in chart.segments] == [1, 2]
    root = ElementTree.fromstring(charts.svg(chart, "c3"))
    assert len(root.findall(f"{SVG}polyline")) == 1  # a lone point is a dot, not a line
    assert len(root.findall(f"{SVG}circle")) == 3


def test_a_chart_without_any_data_says_so_and_draws_no_points():
    chart = charts.layout(
        "Empty", ["a", "b"], [None, None], target=5.0, breaches=[False, False], show=show
    )
    root = ElementTree.fromstring(charts.svg(chart, "c4"))
    assert chart.empty and root.get("data-points") == "0"
    assert "empty" in root.get("class")
    assert root.findall(f"{SVG}circle") == [] and root.find(f"{SVG}g[@class='target']") is None
    assert root.find(f"{SVG}text[@class='no-data']").text == "No data in these periods"


def test_a_chart_has_an_accessible_title_and_description():
    chart = charts.layout("Resolve <time>", ["a"], [1.0], target=None, breaches=[False], show=show)
    drawn = charts.svg(chart, "k1")
    root = ElementTree.fromstring(drawn)
    assert root.get("role") == "img" and root.get("aria-labelledby") == "k1-title k1-desc"
    assert root.find(f"{SVG}title").text == "Resolve <time>"
    assert "<time>" not in drawn


# --- content and rendering ----------------------------------------------------------------------

SPEC = ReportSpec(
    name='Mail <img src=x onerror="alert(1)">',
    audience="customer & board",
    services=("svc-<b>mail</b>",),
    period_kind="month",
    kpis=(ShownKpi("incident.resolve_time.median", 4000.0), ShownKpi("incident.volume")),
    trend_periods=3,
    formats=("json", "csv", "html"),
)


class NoConnection:
    async def fetchval(self, *args: object) -> None:
        return None


async def content_of(spec: ReportSpec = SPEC, kind: str = "service_report") -> ReportContent:
    kpis = FakeKpiReader(bases={"t-1": Basis(42, "cm9vdA==")})
    builder = ReportBuilder(kpis, FakeServiceLevelReader(service="svc-<b>mail</b>"))
    return await builder.content(
        NoConnection(),
        "t-1",
        report_id="r-1",
        kind=kind,  # type: ignore[arg-type]
        spec=spec,
        period_start=date(2026, 11, 1),
        generated_at=datetime(2026, 12, 1, 6, tzinfo=UTC),
    )


async def test_a_report_holds_each_kpi_over_the_trend_with_its_target_and_names_its_basis():
    content = await content_of()
    assert [p.label for p in content.periods] == ["2026-08", "2026-09", "2026-10", "2026-11"]
    resolve, volume = content.series
    assert resolve.target == 4000.0 and volume.target is None
    assert len(resolve.points) == 4
    assert resolve.breaches() == [v is not None and v > 4000.0 for v in resolve.values()]
    assert any(resolve.breaches())
    assert content.bases == {"t-1": Basis(42, "cm9vdA==")}
    document = json.loads(report_render.to_json(content))
    assert document["basis"] == {"t-1": {"tree_size": 42, "root_hash": "cm9vdA=="}}
    assert document["kpis"][0]["kpi"]["id"] == "incident.resolve_time.median"


async def test_the_same_content_renders_to_the_same_bytes():
    first, second = await content_of(), await content_of()
    for render in (report_render.to_json, report_render.to_csv, report_render.to_html):
        assert render(first) == render(second)


async def test_every_value_in_the_html_is_escaped_and_the_page_has_no_script():
    page = report_render.to_html(await content_of(kind="management_review")).decode()
    assert "<script" not in page and "onerror=" not in page.replace("onerror=&quot;", "")
    assert "<img" not in page and "<b>mail</b>" not in page
    assert "Mail &lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page
    assert "customer &amp; board" in page
    assert "Shorten P1 resolution &lt;script&gt;" in page
    # Every chart is there, with its title, and parses as SVG.
    svgs = re.findall(r"<svg .*?</svg>", page, flags=re.S)
    assert len(svgs) == 3  # two KPIs, one service's availability
    for drawn in svgs:
        ElementTree.fromstring(drawn)


async def test_the_management_review_shows_sla_results_availability_actions_and_findings():
    page = report_render.to_html(await content_of(kind="management_review")).decode()
    for section in ("kpis", "availability", "sla", "improvement-actions", "audit-findings"):
        assert f'<section id="{section}">' in page
    assert "Emergency changes lack a PIR" in page and "8.5.1" in page
    assert "<tr class='missed'><td>Gold</td><td>P1 resolution</td>" in page


async def test_the_csv_has_a_row_per_value_and_defuses_formulas():
    content = await content_of(kind="management_review")
    rows = list(csv.DictReader(io.StringIO(report_render.to_csv(content).decode())))
    kpi_rows = [r for r in rows if r["section"] == "kpi"]
    assert len(kpi_rows) == 8  # two KPIs over four months
    assert {r["section"] for r in rows} == {
        "kpi",
        "availability",
        "sla",
        "improvement_action",
        "audit_finding",
    }
    assert report_render.safe_cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert report_render.safe_cell("-12.5") == "-12.5"
    assert report_render.safe_cell("@SUM(A1)") == "'@SUM(A1)"


def test_points_are_placed_in_their_period_and_a_kpi_without_points_is_an_empty_series():
    periods = trend(period_of("month", date(2026, 11, 1)), 2)
    point = KpiPoint("incident.volume", 1, periods[1], "tenant", None, 7.0, 7)
    series = series_of(
        DEFINITIONS,
        [ShownKpi("incident.volume"), ShownKpi("change.success_rate", 0.9)],
        periods,
        [point],
    )
    assert series[0].values() == [None, 7.0, None]
    assert series[1].values() == [None, None, None] and series[1].target == 0.9


def test_a_definition_naming_an_unknown_kpi_is_refused_naming_the_field():
    given = DefinitionInput(
        spec=ReportSpec(
            "r", "a", (), "month", (ShownKpi("incident.volume"), ShownKpi("nope")), 1, ("json",)
        ),
        schedule="none",
        schedule_time=time(6),
    )
    with pytest.raises(ValidationFailed) as caught:
        checked_definition(given, DEFINITIONS)
    assert [f.field for f in caught.value.fields] == ["kpis.1.id"]


def test_a_definition_with_an_unknown_time_zone_is_refused_naming_the_field():
    given = DefinitionInput(
        spec=ReportSpec(
            "r", "a", (), "month", (ShownKpi("incident.volume"),), 1, ("json",), "Mars/Olympus"
        ),
        schedule="none",
        schedule_time=time(6),
    )
    with pytest.raises(ValidationFailed) as caught:
        checked_definition(given, DEFINITIONS)
    assert [f.field for f in caught.value.fields] == ["time_zone"]
