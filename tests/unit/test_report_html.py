"""The static HTML report and its SVG charts, read as markup (tests/browser renders them)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from assay.runner.report import compare, summarize
from assay.runner.report.charts import Series, format_elapsed, line_chart, nice_step, time_step
from assay.runner.report.compare import render_comparison
from assay.runner.report.html import render_report
from tests.unit.test_report_factory import ERROR_KINDS, START, make_run

CRITERIA = [
    {"criterion": "p95 < 300ms", "observed": 81.599, "passed": True},
    {"criterion": "error_rate < 1%", "observed": 2.391, "passed": False},
    {"criterion": "rps >= 100", "observed": None, "passed": False},
]


@pytest.fixture(scope="module")
def summary():
    _, merged = make_run(
        seconds=8,
        criteria=CRITERIA,
        requests={"GET /a?x=<script>alert(1)</script>": (10.0, 1), "POST /b & c": (30.0, 1)},
    )
    return summarize(
        merged,
        {"loadTest": "shop", "label": 'v2 "rc"', "target": "http://shop.example/", "createdAt": "2024-01-01T00:00:00Z"},
    )


class Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse(html: str) -> Collector:
    collector = Collector()
    collector.feed(html)
    return collector


def test_the_report_loads_nothing_from_anywhere(summary):
    page = parse(render_report(summary))
    assert not [t for t, _ in page.tags if t in ("script", "link", "img", "iframe", "object", "embed")]
    links = [a.get("href") for t, a in page.tags if "href" in a or "src" in a]
    assert links and all(href.startswith("#") for href in links), links
    assert not [a for _, a in page.tags if "style" in a and "url(" in a["style"]]
    assert "@import" not in render_report(summary) and "url(" not in render_report(summary)


def test_names_labels_and_metadata_are_escaped(summary):
    html = render_report(summary)
    assert "<script>alert(1)</script>" not in html
    assert "GET /a?x=&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "POST /b &amp; c" in html
    assert "v2 &quot;rc&quot;" in html
    assert "http://shop.example/" in "".join(parse(html).text)  # metadata is text, not a link


def test_the_report_shows_summary_criteria_charts_requests_errors_and_run(summary):
    page = parse(render_report(summary))
    ids = {a["id"] for _, a in page.tags if "id" in a}
    assert {"summary", "criteria", "charts", "requests", "errors", "run"} <= ids
    svgs = [a for t, a in page.tags if t == "svg"]
    assert len(svgs) == 3 and all(a["role"] == "img" and "aria-labelledby" in a for a in svgs)
    text = " ".join(page.text)
    assert "81.6 ms" in text and "2.39 %" in text and "nothing observed (no requests)" in text
    assert "Failed" in text and "1 of 3 criteria passed" in text
    assert all(h in text for h in ("p50 (ms)", "p90 (ms)", "p95 (ms)", "p99 (ms)", "Max (ms)"))
    assert all(h in text for h in ("HTTP status", "Timeout", "Connect", "Assertion", "Other"))


def test_every_table_header_cell_has_a_scope(summary):
    for html in (render_report(summary), render_comparison(compare(summary, summary))):
        cells = [a for t, a in parse(html).tags if t == "th"]
        assert cells and all(a.get("scope") in ("col", "row") for a in cells)


def test_a_run_without_requests_still_renders():
    empty_stats = {
        "count": 0,
        "errors": dict.fromkeys(ERROR_KINDS, 0),
        "bytesSent": 0,
        "bytesReceived": 0,
        "histogram": "",
        **dict.fromkeys(("minMs", "meanMs", "p50Ms", "p90Ms", "p95Ms", "p99Ms", "maxMs")),
    }
    merged = {
        "version": 1,
        "runId": "r",
        "shard": None,
        "shards": 1,
        "startedAt": None,
        "finishedAt": None,
        "requests": {},
        "total": empty_stats,
        "timeline": [],
        "criteria": [],
        "aborted": True,
        "abortReason": "no target",
        "droppedIterations": 0,
    }
    text = " ".join(parse(render_report(summarize(merged))).text)
    assert "No requests were recorded." in text and "Aborted" in text and "no target" in text


# --- charts -------------------------------------------------------------------------------------


@pytest.mark.parametrize("span,step", [(0.7, 0.2), (8, 2), (37, 10), (420, 100), (0, 1.0)])
def test_value_ticks_are_round_numbers(span, step):
    assert nice_step(span) == pytest.approx(step)


def test_time_ticks_fall_on_whole_seconds_minutes_and_hours():
    assert time_step(10) == 2 and time_step(300) == 60 and time_step(3 * 3600) == 1800
    assert format_elapsed(75) == "1:15" and format_elapsed(3725) == "1:02:05"


def test_missing_values_break_the_line_instead_of_dropping_to_zero():
    svg = line_chart(
        chart_id="c",
        title="t",
        description="d",
        y_label="ms",
        series=[Series("p95", "#000", [(0, 1), (1, 2), (2, None), (3, 4), (4, 5), (5, None), (6, 7)])],
    )
    assert svg.count("<polyline") == 2 and svg.count("<circle") == 1


def test_a_chart_without_data_says_so():
    svg = line_chart(
        chart_id="c", title="Latency", description="d", y_label="ms", series=[Series("p95", "#000", [(0, None)])]
    )
    assert "No data" in svg and "<polyline" not in svg and '<title id="c-title">Latency</title>' in svg


def test_chart_points_stay_inside_the_plot():
    _, merged = make_run(seconds=30, started=START)
    svg = render_report(summarize(merged))
    for points in re.findall(r'points="([^"]+)"', svg):
        for pair in points.split():
            x, y = map(float, pair.split(","))
            assert 0 <= x <= 960 and 0 <= y <= 280
