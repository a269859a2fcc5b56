"""Latency histograms and shard metrics: HdrHistogram compatibility, exact merging, JSON."""

from __future__ import annotations

import math
import random

import pytest
from hdrh.histogram import HdrHistogram

from assay.crds.contracts.histogram import HIGHEST_US, Histogram, layout
from assay.runner.load.metrics import Recorder, ShardMetrics, Stats, merge

PERCENTILES = [0.0, 1.0, 25.0, 50.0, 90.0, 95.0, 99.0, 99.9, 100.0]


def latencies(rng: random.Random, n: int) -> list[int]:
    """Log-uniform from 1 µs to 60 s, with a few values outside the range."""
    values = [int(math.exp(rng.uniform(0, math.log(HIGHEST_US)))) for _ in range(n)]
    return values + [0, HIGHEST_US, HIGHEST_US + 5_000_000]


@pytest.mark.parametrize("digits", [3, 2, 1])
def test_histograms_match_hdrhistogram_bit_for_bit(digits):
    rng = random.Random(digits)
    values = latencies(rng, 5000)
    mine = Histogram(layout(1, HIGHEST_US, digits))
    mine.record_many(values)
    reference = HdrHistogram(1, HIGHEST_US, digits)
    for v in values:
        reference.record_value(min(v, HIGHEST_US))
    assert mine.encode() == reference.encode().decode()
    assert mine.values_at_percentiles(PERCENTILES) == [reference.get_value_at_percentile(p) for p in PERCENTILES]
    assert (mine.min(), mine.max()) == (reference.get_min_value(), reference.get_max_value())
    assert mine.mean() == pytest.approx(reference.get_mean_value())
    # And both read each other's encodings.
    assert Histogram.decode(reference.encode()) == mine
    assert HdrHistogram.decode(mine.encode()).get_total_count() == len(values)


@pytest.mark.parametrize("seed", range(20))
def test_merging_shard_histograms_equals_recording_everything_in_one(seed):
    rng = random.Random(seed)
    values = latencies(rng, rng.randint(0, 3000))
    single = Histogram()
    single.record_many(values)
    shards = [Histogram() for _ in range(3)]
    for v in values:
        shards[rng.randrange(3)].record(v)
    merged = Histogram()
    for shard in shards:
        merged.add(Histogram.decode(shard.encode()))  # through the wire, as shards arrive
    assert merged.encode() == single.encode()
    assert merged.values_at_percentiles(PERCENTILES) == single.values_at_percentiles(PERCENTILES)


def test_a_coarser_histogram_is_rebucketed_when_added():
    fine = Histogram()
    fine.record_many([1500, 25_000, 990_000])
    coarse = Histogram(layout(1, HIGHEST_US, 2))
    coarse.add(fine)
    assert coarse.total == 3
    assert coarse.value_at_percentile(100) == pytest.approx(990_000, rel=0.01)


def test_recorder_buckets_by_second_and_counts_every_sample():
    rec = Recorder(["a", "b"], started_at=1000.2)
    rec.active = rec.peak = 3
    rec.record(0, 1000, 1500, 100, 200, -1)
    rec.record(1, 1000, 2500, 100, 200, 0)
    rec.record(0, 1002, 800, 100, 200, 1)  # second 1001 had nothing
    entries = rec.flush()
    assert [e.second for e in entries] == [1000, 1001]
    assert entries[0].total.count == 2 and entries[0].requests["b"].errors_by_kind()["status"] == 1
    assert entries[1].total.count == 0 and entries[1].active_users == 3
    rec.finish(1002.5)
    metrics = rec.metrics(run_id="r", shard=0, shards=1, finished_at=1002.5)
    assert [e.second for e in metrics.timeline] == [1000, 1001, 1002]
    assert metrics.total.count == 3 and metrics.requests["a"].count == 2
    assert metrics.total.errors_by_kind() == {"status": 1, "timeout": 1, "connect": 0, "assertion": 0, "other": 0}
    assert metrics.total.bytes_sent == 300 and metrics.total.bytes_received == 600
    assert metrics.requests["a"].latency_ms("max") == pytest.approx(1.5, rel=0.001)


def shard_metrics(shard: int, start: int, counts: list[int], rng: random.Random) -> ShardMetrics:
    rec = Recorder(["get", "post"], started_at=start + 0.5)
    for offset, n in enumerate(counts):
        rec.active = rec.peak = shard + 1
        for _ in range(n):
            rec.record(
                rng.randrange(2), start + offset, rng.randint(100, 90_000), 50, 70, rng.choice([-1, -1, -1, 0, 1])
            )
    rec.finish(start + len(counts) - 0.5)
    return rec.metrics(run_id="run", shard=shard, shards=3, finished_at=start + len(counts) - 0.5)


def test_merge_adds_counts_and_histograms_and_aligns_timelines_on_epoch_seconds():
    rng = random.Random(7)
    parts = [
        shard_metrics(0, 2000, [10, 20, 30], rng),
        shard_metrics(1, 2001, [5, 5], rng),
        shard_metrics(2, 2000, [1, 0, 0, 7], rng),
    ]
    merged = merge([ShardMetrics.from_json(p.to_json()) for p in parts])
    assert merged.total.count == 78
    assert merged.started_at == 2000.5 and merged.finished_at == 2003.5
    assert [e.second for e in merged.timeline] == [2000, 2001, 2002, 2003]
    assert [e.total.count for e in merged.timeline] == [11, 25, 35, 7]
    assert [e.active_users for e in merged.timeline] == [1 + 3, 1 + 2 + 3, 1 + 2 + 3, 3]
    for name in ("get", "post"):
        single = Histogram()
        for p in parts:
            single.add(p.requests[name].histogram)
        assert merged.requests[name].histogram == single
        assert merged.requests[name].count == sum(p.requests[name].count for p in parts)
    # Percentiles come from the merged histogram, never an average of the shards' figures.
    whole = Histogram()
    for p in parts:
        whole.add(p.total.histogram)
    assert merged.total.to_dict()["p95Ms"] == round(whole.value_at_percentile(95) / 1000, 3)


def test_metrics_survive_the_json_round_trip():
    rng = random.Random(3)
    metrics = shard_metrics(1, 3000, [4, 0, 9], rng)
    metrics.aborted, metrics.abort_reason = True, "error rate"
    text = metrics.to_json()
    back = ShardMetrics.from_json(text)
    assert back.to_json() == text
    assert back.started_at == pytest.approx(3000.5) and back.total.histogram == metrics.total.histogram


def test_empty_stats_have_null_figures():
    doc = Stats().to_dict()
    assert doc["count"] == 0 and doc["p95Ms"] is None and Histogram.decode(doc["histogram"]).total == 0
