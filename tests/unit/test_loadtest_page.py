"""A load test's dashboard page: each criterion's headroom (how far it is from failing), the
live figures criteria read while the run is live, and the page rendering every value escaped
with its view embedded for the script."""

from __future__ import annotations

import json
import re

import pytest

from assay.api.dashboard.loadtest import loadtest_page
from assay.api.services.dashboard_loadtest import headroom, live_observed, live_series, report_series


@pytest.mark.parametrize(
    "criterion, observed, passing, room, pct",
    [
        ("p95 < 800ms", 200.0, True, 600.0, 75.0),
        ("p95 < 800ms", 900.0, False, -100.0, -12.5),
        ("avg <= 2s", 500.0, True, 1500.0, 75.0),
        ("rps >= 50", 70.0, True, 20.0, 40.0),
        ("rps >= 50", 40.0, False, -10.0, -20.0),
        ("error_rate < 1%", 1.0, False, 0.0, 0.0),
    ],
)
def test_headroom_is_how_far_the_observed_value_may_move_before_the_criterion_fails(
    criterion, observed, passing, room, pct
):
    view = headroom(criterion, observed)
    assert (view["passing"], view["headroom"], view["headroomPct"]) == (passing, room, pct)


def test_a_criterion_not_measured_yet_has_no_verdict():
    assert headroom("p90 < 1s", None) == {
        "criterion": "p90 < 1s",
        "metric": "p90",
        "threshold": 1000.0,
        "observed": None,
        "passing": None,
        "headroom": None,
        "headroomPct": None,
    }


def test_live_criteria_read_the_window_percentiles_and_the_totals_so_far():
    latest = {"requests": 200, "errors": 3, "p95Ms": 41.5, "p50Ms": 12.0}
    assert live_observed("p95", latest, 10.0) == 41.5
    assert live_observed("error_rate", latest, 10.0) == 1.5
    assert live_observed("rps", latest, 10.0) == 20.0
    assert live_observed("p90", latest, 10.0) is None  # only the report knows
    assert live_observed("rps", None, 10.0) is None


def test_series_are_in_seconds_since_the_start_from_samples_or_the_reports_timeline():
    samples = [{"at": 1002.0, "rps": 5.0, "activeUsers": 2}, {"at": 1004.5, "rps": 7.0, "activeUsers": 4}]
    assert [(p["t"], p["rps"], p["activeUsers"]) for p in live_series(samples, 1000.0)] == [
        (2.0, 5.0, 2),
        (4.5, 7.0, 4),
    ]
    report = {"timeline": [{"elapsedS": 0, "requests": 30, "errors": 1, "p95Ms": 9.0, "activeUsers": 3}]}
    [point] = report_series(report)
    assert (point["t"], point["rps"], point["errorsPerSecond"], point["p95Ms"]) == (0, 30, 1, 9.0)


def view(**extra) -> dict:
    return {
        "namespace": "shop",
        "name": "checkout-<2>",
        "number": 2,
        "description": "</script><b>x</b>",
        "state": "running",
        "message": None,
        "durationSeconds": None,
        "shards": 2,
        "load": {"users": 4},
        "reports": [],
        "results": [],
        "report": None,
        "live": True,
        "awaitingReport": False,
        "latest": None,
        "criteria": [],
        "series": [],
        "seriesSource": "live",
        "runs": [{"number": 2, "name": "checkout-<2>", "state": "running", "startedAt": None, "hasReport": False}],
        **extra,
    }


def test_the_page_escapes_values_and_embeds_the_view_where_only_the_script_reads_it():
    page = loadtest_page(view(), "viewer", "NONCE")
    assert "<b>x</b>" not in page.split('id="loadtest-data"')[0]
    data = re.search(r'<script type="application/json" id="loadtest-data" nonce="NONCE">(.*?)</script>', page, re.S)
    assert data and json.loads(data.group(1))["description"] == "</script><b>x</b>"
    assert 'data-api="/dashboard/api/namespaces/shop/loadtests/checkout-%3C2%3E"' in page
    assert "<script nonce=" in page and page.count("<script") == 2
    assert 'id="compare"' not in page  # nothing to compare before two runs have reports
