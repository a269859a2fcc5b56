"""Pass/fail criteria on merged metrics, and the watchdog that aborts a failing run."""

from __future__ import annotations

import time

import pytest

from assay.crds.loadtest import LoadTestSpec
from assay.runner.load import run, run_load_shard
from assay.runner.load.criteria import AbortWatchdog, evaluate, failed
from assay.runner.load.metrics import Recorder, merge
from tests.unit.test_load_servers import LoadTarget


def metrics_with(latencies_us: list[int], errors: int, seconds: float = 10.0, shard: int = 0):
    rec = Recorder(["r"], started_at=5000.0)
    for i, latency in enumerate(latencies_us):
        rec.record(0, 5000, latency, 10, 10, 0 if i < errors else -1)
    rec.finish(5000.0 + seconds)
    return rec.metrics(shard=shard, shards=2, finished_at=5000.0 + seconds)


def test_criteria_are_judged_on_the_merged_run():
    # 100 requests over 10 s: 95 at 10 ms, 5 at 900 ms, 2 of them errors, in two shards.
    a = metrics_with([10_000] * 60, errors=0)
    b = metrics_with([10_000] * 35 + [900_000] * 5, errors=2, shard=1)
    whole = merge([a, b])
    results = evaluate(
        [
            "p95 < 20ms",
            "p99 < 1s",
            "max <= 1s",
            "avg < 100ms",
            "error_rate < 1%",
            "error_rate <= 2%",
            "rps >= 10",
            "rps > 10",
            "p50 < 10ms",
        ],
        whole,
    )
    observed = {r.criterion: r.observed for r in results}
    assert observed["p95 < 20ms"] == pytest.approx(10.0, rel=0.001)
    assert observed["p99 < 1s"] == pytest.approx(900.0, rel=0.001)
    assert observed["error_rate < 1%"] == 2.0 and observed["rps >= 10"] == 10.0
    assert failed(results) == ["error_rate < 1%", "rps > 10", "p50 < 10ms"]
    # Judged per shard instead, shard b alone would fail the p95: merging matters.
    assert failed(evaluate(["p95 < 20ms"], b)) == ["p95 < 20ms"]


def test_a_run_without_requests_fails_every_criterion():
    empty = metrics_with([], errors=0)
    results = evaluate(["error_rate < 1%", "p95 < 1s"], empty)
    assert [(r.observed, r.passed) for r in results] == [(None, False), (None, False)]


def test_watchdog_waits_for_enough_requests_then_judges_the_window():
    dog = AbortWatchdog(threshold=50, window=3, min_requests=20)
    assert dog.observe(10, 10) is None  # too few requests to judge
    assert dog.observe(100, 10) is None  # 20 of 110
    assert dog.observe(100, 10) is None
    assert dog.observe(100, 10) is None  # the 10/10 second has left the window
    reason = dog.observe(20, 20) or dog.observe(100, 100)
    assert reason and "abortOnErrorRate 50%" in reason and "last 3 s" in reason


def test_a_target_answering_500_aborts_the_run_and_says_why():
    with LoadTarget(status=500) as target:
        spec = LoadTestSpec.model_validate(
            {
                "baseUrl": target.url,
                "load": {"users": 4, "duration": "30s"},
                "abortOnErrorRate": 20,
                "criteria": ["error_rate < 5%"],
                "flows": [{"name": "f", "thinkTime": "10ms", "requests": [{"url": "/"}]}],
            }
        )
        started = time.monotonic()
        metrics = run(run_load_shard(spec, 0, 1))
        elapsed = time.monotonic() - started
    assert metrics.aborted and elapsed < 5
    assert "exceeded abortOnErrorRate 20%" in metrics.abort_reason and "error rate 100.0%" in metrics.abort_reason
    assert metrics.total.errors_by_kind()["status"] == metrics.total.count == target.total
    assert failed(metrics.criteria) == ["error_rate < 5%"]
    doc = metrics.to_dict()
    assert doc["aborted"] is True and doc["abortReason"] == metrics.abort_reason
