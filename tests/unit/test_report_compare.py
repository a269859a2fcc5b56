"""Comparison reports: the older run is the baseline, reverse swaps, and the deltas are right."""

from __future__ import annotations

import copy
import json
import zipfile

import pytest

from assay.runner.report import build_comparison_report, build_report_archive, compare, summarize
from assay.runner.report.compare import delta
from tests.unit.test_report_factory import START, make_run


@pytest.fixture(scope="module")
def older():
    _, merged = make_run(run_id="run-old", seconds=6, seed=1)
    return summarize(merged, {"loadTest": "shop", "label": "release 1.4", "createdAt": "2024-01-01T00:00:00Z"})


@pytest.fixture(scope="module")
def newer():
    _, merged = make_run(run_id="run-new", seconds=6, started=START + 86_400, seed=2, slowdown=1.5)
    return summarize(merged, {"loadTest": "shop", "createdAt": "2024-01-01T00:00:00Z"})


def test_the_older_run_is_the_baseline_whichever_comes_first(older, newer):
    for a, b in ((older, newer), (newer, older)):
        comparison = compare(a, b)
        assert comparison["baseline"]["runId"] == "run-old"
        assert comparison["measurement"]["runId"] == "run-new"
        assert comparison["reversed"] is False


def test_reverse_order_makes_the_newer_run_the_baseline(older, newer):
    for a, b in ((older, newer), (newer, older)):
        comparison = compare(a, b, reverse=True)
        assert comparison["baseline"]["runId"] == "run-new"
        assert comparison["measurement"]["runId"] == "run-old"
        assert comparison["reversed"] is True


def test_runs_are_named_by_their_custom_label_else_load_test_and_run_id(older, newer):
    comparison = compare(older, newer)
    assert comparison["baseline"]["label"] == "release 1.4"
    assert comparison["measurement"]["label"] == "shop · run-new"


def _with_total(summary, **values):
    changed = copy.deepcopy(summary)
    changed["total"].update(values)
    return changed


def test_total_deltas_are_absolute_and_relative_to_the_baseline(older):
    base = _with_total(older, throughputRps=50.0, errorRatePct=2.0, p50Ms=10.0, p95Ms=100.0, p99Ms=200.0, maxMs=400.0)
    meas = _with_total(older, throughputRps=40.0, errorRatePct=1.0, p50Ms=10.05, p95Ms=120.0, p99Ms=150.0, maxMs=400.0)
    meas["run"] = {**meas["run"], "startedAt": "2030-01-01T00:00:00Z", "runId": "later"}
    total = compare(meas, base)["total"]
    assert total["throughputRps"] == {
        "baseline": 50.0,
        "measurement": 40.0,
        "delta": -10.0,
        "deltaPct": -20.0,
        "verdict": "worse",
    }
    assert total["errorRatePct"] == {
        "baseline": 2.0,
        "measurement": 1.0,
        "delta": -1.0,
        "deltaPct": -50.0,
        "verdict": "better",
    }
    assert total["p50Ms"]["delta"] == 0.05 and total["p50Ms"]["deltaPct"] == 0.5
    assert total["p50Ms"]["verdict"] == "unchanged"  # within the ±1 % band
    assert total["p95Ms"] == {
        "baseline": 100.0,
        "measurement": 120.0,
        "delta": 20.0,
        "deltaPct": 20.0,
        "verdict": "worse",
    }
    assert total["p99Ms"]["delta"] == -50.0 and total["p99Ms"]["deltaPct"] == -25.0
    assert total["p99Ms"]["verdict"] == "better"
    assert total["maxMs"] == {
        "baseline": 400.0,
        "measurement": 400.0,
        "delta": 0.0,
        "deltaPct": 0.0,
        "verdict": "unchanged",
    }


def test_per_request_deltas_use_each_requests_own_numbers(older, newer):
    comparison = compare(older, newer)
    base = {r["name"]: r for r in older["requests"]}
    meas = {r["name"]: r for r in newer["requests"]}
    for row in comparison["requests"]:
        b, m = base[row["name"]]["p95Ms"], meas[row["name"]]["p95Ms"]
        assert row["presence"] == "both"
        assert row["p95Ms"]["delta"] == pytest.approx(m - b, abs=1e-6)
        assert row["p95Ms"]["deltaPct"] == pytest.approx((m - b) / b * 100, abs=1e-3)
        assert row["p95Ms"]["verdict"] == "worse"  # the newer run is 1.5 times slower


def test_requests_in_only_one_run_are_listed_without_deltas(older, newer):
    extra = copy.deepcopy(newer)
    extra["requests"].append({**extra["requests"][0], "name": "GET /new"})
    rows = {r["name"]: r for r in compare(older, extra)["requests"]}
    assert rows["GET /new"]["presence"] == "measurement"
    assert rows["GET /new"]["p95Ms"]["baseline"] is None
    assert rows["GET /new"]["p95Ms"]["verdict"] == "n/a"


@pytest.mark.parametrize(
    "baseline,measurement,higher_is_better,expected",
    [
        (100, 110, True, (10, 10.0, "better")),
        (100, 110, False, (10, 10.0, "worse")),
        (100, 100.5, False, (0.5, 0.5, "unchanged")),
        (0, 0, False, (0, 0.0, "unchanged")),
        (0, 0.01, False, (0.01, None, "worse")),  # from no errors to some: no percentage, still worse
        (None, 5, False, (None, None, "n/a")),
    ],
)
def test_delta_direction_and_neutral_band(baseline, measurement, higher_is_better, expected):
    d = delta(baseline, measurement, higher_is_better=higher_is_better)
    assert (d["delta"], d["deltaPct"], d["verdict"]) == expected


def test_comparison_archive_from_report_archives(older, newer, tmp_path):
    _, merged_a = make_run(run_id="run-old", seconds=4, seed=1)
    _, merged_b = make_run(run_id="run-new", seconds=4, started=START + 60, seed=2)
    a = build_report_archive(merged_a, tmp_path / "a.zip", meta={"label": "before <fix>"})
    b = build_report_archive(merged_b, tmp_path / "b.zip", meta={"label": "after"})
    out = build_comparison_report(b, a, tmp_path / "out" / "comparison.zip")
    with zipfile.ZipFile(out) as zf:
        assert zf.namelist() == ["index.html", "comparison.json"]
        comparison = json.loads(zf.read("comparison.json"))
        html = zf.read("index.html").decode()
    assert comparison["baseline"]["label"] == "before <fix>"
    assert "Baseline: before &lt;fix&gt;" in html and "Measurement: after" in html
    assert "The run that started first is the baseline." in html
    reversed_out = build_comparison_report(b, a, tmp_path / "reversed.zip", reverse=True)
    with zipfile.ZipFile(reversed_out) as zf:
        assert json.loads(zf.read("comparison.json"))["baseline"]["label"] == "after"
        assert "Reverse order: the run that started later is the baseline." in zf.read("index.html").decode()


def test_comparison_refuses_what_is_not_a_report(older, tmp_path):
    with pytest.raises(TypeError):
        compare(older, 42)
