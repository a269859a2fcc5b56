"""The termination-message summary: under 4096 bytes for any latency spread, and shard
summaries merge into an exact-to-1% p95 for the operator."""

from __future__ import annotations

import math
import random

from assay.crds.contracts.histogram import HIGHEST_US, Histogram
from assay.crds.contracts.summary import TERMINATION_MESSAGE_LIMIT, ShardSummary, judge, merge
from assay.runner.load.metrics import Recorder


def shard(latencies: list[int], shard: int = 0, errors: int = 0):
    rec = Recorder(["a", "b"], started_at=100.0)
    for i, latency in enumerate(latencies):
        rec.record(i % 2, 100 + i % 7, latency, 80, 120, (i % 5) if i < errors else -1)
    rec.finish(107.0)
    return rec.metrics(shard=shard, shards=3, run_id="run", finished_at=107.0)


def log_uniform(rng: random.Random, n: int) -> list[int]:
    return [int(math.exp(rng.uniform(0, math.log(HIGHEST_US)))) for _ in range(n)]


def test_the_widest_latency_spread_still_fits_the_termination_message():
    rng = random.Random(1)
    metrics = shard(log_uniform(rng, 200_000), errors=5000)
    summary = metrics.summary()
    message = summary.to_message()
    assert len(message.encode()) < TERMINATION_MESSAGE_LIMIT
    back = ShardSummary.from_message(message)
    assert back.requests == 200_000 and back.failures == 5000
    assert back.errors == {"status": 1000, "timeout": 1000, "connect": 1000, "assertion": 1000, "other": 1000}
    assert back.histogram_digits == 2
    exact = metrics.total.histogram.value_at_percentile(95) / 1000
    assert abs(back.p95_ms - exact) <= 0.01 * exact


def test_a_long_error_text_and_abort_reason_do_not_push_it_over():
    metrics = shard(log_uniform(random.Random(2), 50_000))
    metrics.aborted, metrics.abort_reason = True, "x" * 3000
    summary = metrics.summary()
    summary.error = "e" * 5000
    message = summary.to_message()
    assert len(message.encode()) <= TERMINATION_MESSAGE_LIMIT
    back = ShardSummary.from_message(message)
    assert back.aborted and back.requests == 50_000 and back.histogram


def test_shard_summaries_merge_to_the_p95_of_all_requests():
    rng = random.Random(3)
    parts = [shard([rng.randint(1_000, 50_000) for _ in range(3000)], s) for s in range(2)]
    parts.append(shard([rng.randint(200_000, 900_000) for _ in range(200)], 2))
    messages = [p.summary().to_message() for p in parts]
    total = merge(ShardSummary.from_message(m) for m in messages)
    everything = Histogram()
    for p in parts:
        everything.add(p.total.histogram)
    exact = everything.value_at_percentile(95) / 1000
    assert total.requests == 6200
    assert abs(total.p95_ms - exact) <= 0.01 * exact
    # The average of the shards' own p95s would be far off: shard 2 is slow.
    averaged = sum(ShardSummary.from_message(m).p95_ms for m in messages) / 3
    assert abs(averaged - exact) > 0.2 * exact
    assert total.started_at == 100.0 and total.finished_at == 107.0 and total.duration_s == 7.0


def test_old_summaries_without_histograms_still_merge():
    old = ShardSummary.from_message(
        '{"shard": 0, "requests": 4, "failures": 1, "min_ms": 1.0, "max_ms": 3.0, "total_ms": 8.0}'
    )
    new = shard([2000, 4000]).summary()
    total = merge([old, new])
    assert total.requests == 6 and total.failures == 1 and total.p95_ms is not None
    assert merge([old]).p95_ms is None


def test_criteria_can_be_judged_on_merged_summaries():
    parts = [shard([10_000] * 90, 0, errors=1), shard([10_000] * 8 + [500_000] * 2, 1)]
    total = merge(ShardSummary.from_message(p.summary().to_message()) for p in parts)
    results = judge(total, ["p95 < 20ms", "p99 < 100ms", "error_rate < 2%", "rps >= 20", "avg < 50ms"])
    assert [(r["criterion"], r["passed"]) for r in results] == [
        ("p95 < 20ms", True),
        ("p99 < 100ms", False),
        ("error_rate < 2%", True),
        ("rps >= 20", False),
        ("avg < 50ms", True),
    ]
    assert results[3]["observed"] == round(100 / 7, 3)
    assert judge(ShardSummary(), ["p95 < 1s"]) == [{"criterion": "p95 < 1s", "observed": None, "passed": False}]
