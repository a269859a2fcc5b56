"""The static reports render in a real browser: headless Chromium, no console errors, no
requests beyond the report's own file, and a screenshot that is not blank.

The load-test report and the comparison are built from two real runs of the load engine
against a loopback target (the second one slower); a long synthetic run shows the charts
over minutes.

Screenshots are written to pytest's temporary folder and their paths printed (`pytest -s`
shows them), or to $ASSAY_SCREENSHOT_DIR when set. Needs chromium on PATH:
`bash hack/install-browser.sh` installs Debian's package.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest

from assay.runner.report import build_comparison_report, build_report_archive, load_shards
from tests.browser.headless import Rendered, png_pixels, png_size
from tests.unit.test_report_factory import make_run, run_engine, write_shards

pytestmark = pytest.mark.browser

CRITERIA = [
    {"criterion": "p95 of all requests below 100 ms", "observed": "p95 = 81.6 ms", "passed": True},
    {"criterion": "error rate below 1 %", "observed": "2.39 %", "passed": False},
]


@pytest.fixture(scope="module")
def screenshot_dir(tmp_path_factory) -> Path:
    configured = os.environ.get("ASSAY_SCREENSHOT_DIR")
    if configured:
        Path(configured).mkdir(parents=True, exist_ok=True)
        return Path(configured)
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict[str, Path]:
    """Report archives of two real runs, a baseline and a slower candidate after it, and of a
    long synthetic run."""
    folder = tmp_path_factory.mktemp("reports")
    archives = {}
    for key, delay, label in (("a", 0.002, "v1.4 <baseline>"), ("b", 0.03, "v1.5 candidate")):
        shards = write_shards(run_engine(run_id=f"run-{key}", delay=delay), folder / key)
        merged = load_shards(shards, criteria=["p95 < 500ms", "error_rate < 1%"])
        archives[key] = build_report_archive(
            merged,
            folder / f"report-{key}.zip",
            meta={"loadTest": "shop-checkout", "label": label, "namespace": "perf"},
        )
    _, long_run = make_run(run_id="run-long", shards=1, seconds=240, rate=12, criteria=CRITERIA, seed=11)
    archives["long"] = build_report_archive(long_run, folder / "report-long.zip", meta={"loadTest": "soak"})
    return archives


def _open_from_zip(archive: Path, into: Path) -> str:
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(into)
    return (into / "index.html").as_uri()


def _check_rendered(rendered: Rendered, path: Path) -> None:
    path.write_bytes(rendered.screenshot)
    print(f"\nscreenshot: {path}")
    assert rendered.problems == [], f"the page reported errors: {rendered.problems}"
    foreign = [u for u in rendered.requested_urls if not u.startswith(("file://", "data:", "about:"))]
    assert foreign == [], f"the report is not self-contained, it asked for {foreign}"

    width, height = png_size(rendered.screenshot)
    assert width == 1280 and height >= 900
    assert len(rendered.screenshot) > 20_000, "a page with text, tables and charts compresses to more than this"
    _, _, pixels = png_pixels(rendered.thumbnail)
    ink = [p for p in pixels if min(p) < 235]
    assert len(ink) / len(pixels) > 0.03, "the screenshot is (almost) blank"
    assert len(ink) / len(pixels) < 0.7, "the screenshot is (almost) all dark"
    assert any(max(p) - min(p) > 80 for p in pixels), "no coloured pixel: charts and badges are missing"


@pytest.mark.parametrize("run", ["a", "long"])
def test_load_test_report_renders_without_errors(run, browser, reports, screenshot_dir, tmp_path):
    url = _open_from_zip(reports[run], tmp_path / "report")
    rendered = browser.render(
        url,
        evaluate={
            "title": "document.title",
            "charts": "document.querySelectorAll('svg.chart').length",
            "chartTitles": "[...document.querySelectorAll('svg.chart title[id]')].map(t => t.textContent)",
            "requestRows": "document.querySelectorAll('#requests tbody tr').length",
            "criteriaFailed": "document.querySelectorAll('#criteria td.fail').length",
            "headersWithScope": "document.querySelectorAll('th[scope]').length === document.querySelectorAll('th').length",
            "scripts": "document.scripts.length",
        },
    )
    _check_rendered(rendered, screenshot_dir / f"load-test-report-{run}.png")
    values = rendered.values
    titles = {"a": "Load test report: v1.4 <baseline>", "long": "Load test report: soak · run-long"}
    assert values["title"] == titles[run]
    assert values["charts"] == 3
    assert values["chartTitles"] == ["Throughput over time", "Response time over time", "Active users over time"]
    assert values["requestRows"] == {"a": 2, "long": 3}[run]
    assert values["criteriaFailed"] == {"a": 0, "long": 1}[run]
    assert values["headersWithScope"] is True
    assert values["scripts"] == 0


def test_comparison_report_renders_without_errors(browser, reports, screenshot_dir, tmp_path):
    archive = build_comparison_report(reports["b"], reports["a"], tmp_path / "comparison.zip")
    url = _open_from_zip(archive, tmp_path / "comparison")
    rendered = browser.render(
        url,
        evaluate={
            "subtitle": "document.querySelector('header .sub').textContent",
            "overviewHeads": "[...document.querySelectorAll('#overview thead th')].map(t => t.textContent)",
            "p50": "[...document.querySelectorAll('#overview tbody tr')].find(r => r.textContent.startsWith('p50'))"
            ".lastElementChild.textContent",
        },
    )
    _check_rendered(rendered, screenshot_dir / "comparison-report.png")
    values = rendered.values
    assert values["subtitle"].startswith("Baseline v1.4 <baseline>")
    assert values["overviewHeads"][1:3] == ["Baseline: v1.4 <baseline>", "Measurement: v1.5 candidate"]
    assert values["p50"].endswith("▼ worse"), "the candidate's target answers 28 ms later"


def test_the_render_check_sees_errors_and_foreign_requests(browser, tmp_path):
    """The error checks above are only worth something if they can fail."""
    page = tmp_path / "broken.html"
    page.write_text(
        "<!DOCTYPE html><html><head><title>broken</title>"
        '<link rel="stylesheet" href="http://127.0.0.1:9/missing.css"></head>'
        "<body><p>text</p><script>console.error('logged on purpose');"
        "undefinedFunction();</script></body></html>"
    )
    rendered = browser.render(page.as_uri())
    assert any("logged on purpose" in e for e in rendered.console_errors)
    assert any("undefinedFunction" in e for e in rendered.exceptions)
    assert "http://127.0.0.1:9/missing.css" in rendered.requested_urls
    assert rendered.failed_loads
