"""Synthetic load-test metrics in the load engine's shard JSON format, for the report tests.

`make_run` draws seeded random requests for every shard and second and returns the shard
dicts together with their exact merge, computed from all samples at once (recording the same
values into one HdrHistogram is what merging histograms gives). The tests in this module
check that the fixtures keep the contract the report code reads.
"""

from __future__ import annotations

import base64
import json
import random
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

from hdrh.histogram import HdrHistogram

ERROR_KINDS = ("status", "timeout", "connect", "assertion", "other")
START = 1_700_000_000  # 2023-11-14T22:13:20Z

DEFAULT_REQUESTS = {
    # name: (median latency ms, share of the traffic)
    "GET /items": (20.0, 5),
    "POST /orders": (60.0, 2),
    "GET /items/{id}": (12.0, 3),
}


def new_histogram() -> HdrHistogram:
    return HdrHistogram(1, 60_000_000, 3)


def stats_of(samples: list[tuple[int, str | None, int, int]]) -> dict:
    """STATS of (latency µs, error kind or None, bytes sent, bytes received) samples."""
    histogram = new_histogram()
    errors = dict.fromkeys(ERROR_KINDS, 0)
    for latency_us, error, _, _ in samples:
        histogram.record_value(latency_us)
        if error:
            errors[error] += 1
    count = len(samples)
    percentiles = histogram.get_percentile_to_value_dict([50, 90, 95, 99]) if count else {}

    def ms(value: float) -> float | None:
        return round(value / 1000, 3) if count else None

    return {
        "count": count,
        "errors": errors,
        "bytesSent": sum(s[2] for s in samples),
        "bytesReceived": sum(s[3] for s in samples),
        "histogram": histogram.encode().decode(),
        # Exact min, mean and max (HdrHistogram's own mean walks every bucket: slow in Python).
        "minMs": ms(min(s[0] for s in samples)) if count else None,
        "meanMs": ms(sum(s[0] for s in samples) / count) if count else None,
        "p50Ms": ms(percentiles.get(50, 0)),
        "p90Ms": ms(percentiles.get(90, 0)),
        "p95Ms": ms(percentiles.get(95, 0)),
        "p99Ms": ms(percentiles.get(99, 0)),
        "maxMs": ms(max(s[0] for s in samples)) if count else None,
    }


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def _metrics(run_id, shard, shards, started, seconds, samples, users, criteria, aborted=False, reason=None):
    """A metrics dict from samples keyed by (second, name)."""
    by_name: dict[str, list] = defaultdict(list)
    timeline = []
    for second in range(started, started + seconds):
        per_name = {name: s for (sec, name), s in samples.items() if sec == second}
        for name, s in per_name.items():
            by_name[name].extend(s)
        timeline.append(
            {
                "second": second,
                "requests": {name: stats_of(s) for name, s in sorted(per_name.items())},
                "total": stats_of([x for s in per_name.values() for x in s]),
                "activeUsers": users(second - started),
            }
        )
    return {
        "version": 1,
        "runId": run_id,
        "shard": shard,
        "shards": shards,
        "startedAt": iso(started),
        "finishedAt": iso(started + seconds),
        "requests": {name: stats_of(s) for name, s in sorted(by_name.items())},
        "total": stats_of([x for s in by_name.values() for x in s]),
        "timeline": timeline,
        "criteria": criteria,
        "aborted": aborted,
        "abortReason": reason,
    }


def make_run(
    *,
    run_id: str = "run-a",
    shards: int = 2,
    seconds: int = 12,
    started: int = START,
    rate: int = 20,
    requests: dict | None = None,
    slowdown: float = 1.0,
    error_rate: float = 0.02,
    users: int = 8,
    seed: int = 1,
    criteria: list | None = None,
) -> tuple[list[dict], dict]:
    """(shard metrics dicts, merged metrics dict) of a synthetic run.

    Each shard sends about `rate` requests a second, split over `requests` by share, with
    log-normal latencies around each median times `slowdown`; `error_rate` of them fail with
    a random error kind. Users ramp up over the first quarter of the run."""
    requests = requests or DEFAULT_REQUESTS
    rng = random.Random(seed)
    names = list(requests)
    weights = [requests[n][1] for n in names]
    ramp = max(1, seconds // 4)

    def users_at(shard_users):
        return lambda elapsed: max(1, round(shard_users * min(1.0, (elapsed + 1) / ramp)))

    shard_dicts, all_samples = [], defaultdict(list)
    for shard in range(shards):
        samples = defaultdict(list)
        for second in range(started, started + seconds):
            for _ in range(rng.randint(rate - rate // 4, rate + rate // 4)):
                name = rng.choices(names, weights)[0]
                median_us = requests[name][0] * 1000 * slowdown
                latency = int(min(59_000_000, max(50, rng.lognormvariate(0, 0.45) * median_us)))
                error = rng.choice(ERROR_KINDS) if rng.random() < error_rate else None
                sample = (latency, error, rng.randint(100, 400), rng.randint(200, 4000))
                samples[(second, name)].append(sample)
                all_samples[(second, name)].append(sample)
        shard_users = users // shards + (1 if shard < users % shards else 0)
        shard_dicts.append(
            _metrics(run_id, shard, shards, started, seconds, samples, users_at(shard_users), criteria or [])
        )

    def all_users(elapsed):
        return sum(users_at(users // shards + (1 if s < users % shards else 0))(elapsed) for s in range(shards))

    merged = _metrics(run_id, 0, shards, started, seconds, all_samples, all_users, criteria or [])
    return shard_dicts, merged


def write_shards(shard_dicts: list[dict], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for data in shard_dicts:
        path = folder / f"{data['runId'].replace('/', '-')}-shard{data['shard']}.json"
        path.write_text(json.dumps(data))
        paths.append(path)
    return paths


def run_engine(
    *,
    run_id: str,
    delay: float,
    shards: int = 2,
    users: int = 4,
    duration: str = "3s",
    criteria: tuple[str, ...] = ("p95 < 500ms", "error_rate < 1%"),
) -> list[dict]:
    """A real, short load test: the load engine's shards, all at once in this process,
    against a loopback target answering after `delay` seconds; the shards' metrics dicts."""
    import asyncio

    from assay.crds.loadtest import LoadTestSpec
    from assay.runner.load import run, run_load_shard
    from tests.support.targets import CountingTarget

    with CountingTarget(delay=delay) as target:
        spec = LoadTestSpec.model_validate(
            {
                "baseUrl": target.url,
                "load": {"users": users, "duration": duration, "rampUp": "1s"},
                "flows": [
                    {
                        "name": "shop",
                        "requests": [
                            {"name": "GET /items", "url": "/items"},
                            {"name": "POST /orders", "method": "POST", "url": "/orders", "body": "{}"},
                        ],
                    }
                ],
                "criteria": list(criteria),
            }
        )

        async def all_shards():
            return await asyncio.gather(*(run_load_shard(spec, i, shards, run_id=run_id) for i in range(shards)))

        return [m.to_dict() for m in run(all_shards())]


# --- the fixtures keep the contract -----------------------------------------------------------


def test_synthetic_shards_follow_the_metrics_contract():
    shards, merged = make_run(shards=3, seconds=5)
    keys = {
        "version",
        "runId",
        "shard",
        "shards",
        "startedAt",
        "finishedAt",
        "requests",
        "total",
        "timeline",
        "criteria",
        "aborted",
        "abortReason",
    }
    stats_keys = {
        "count",
        "errors",
        "bytesSent",
        "bytesReceived",
        "histogram",
        "minMs",
        "meanMs",
        "p50Ms",
        "p90Ms",
        "p95Ms",
        "p99Ms",
        "maxMs",
    }
    for data in [*shards, merged]:
        assert set(data) == keys
        assert set(data["total"]) == stats_keys
        assert set(data["total"]["errors"]) == set(ERROR_KINDS)
        assert len(data["timeline"]) == 5
        assert all(set(e) == {"second", "requests", "total", "activeUsers"} for e in data["timeline"])
        base64.b64decode(data["total"]["histogram"])  # valid base64


def test_synthetic_merge_adds_up_the_shards():
    shards, merged = make_run(shards=3, seconds=4)
    assert merged["total"]["count"] == sum(s["total"]["count"] for s in shards)
    for kind in ERROR_KINDS:
        assert merged["total"]["errors"][kind] == sum(s["total"]["errors"][kind] for s in shards)
    histogram = new_histogram()
    for s in shards:
        histogram.add(HdrHistogram.decode(s["total"]["histogram"]))
    assert round(histogram.get_value_at_percentile(99) / 1000, 3) == merged["total"]["p99Ms"]
    assert merged["timeline"][-1]["activeUsers"] == sum(s["timeline"][-1]["activeUsers"] for s in shards)


def test_synthetic_slowdown_moves_the_percentiles():
    _, fast = make_run(seed=3)
    _, slow = make_run(seed=3, slowdown=2.0)
    assert slow["total"]["p50Ms"] > 1.8 * fast["total"]["p50Ms"]


def test_synthetic_merge_is_what_the_load_engine_merge_gives():
    from assay.runner.load.metrics import ShardMetrics, merge

    shards, expected = make_run(shards=3, seconds=4)
    merged = merge(ShardMetrics.from_json(json.dumps(s)) for s in shards).to_dict()
    assert merged["startedAt"].startswith(expected["startedAt"][:-1])
    for ours, theirs in [
        (expected["total"], merged["total"]),
        *((expected["requests"][n], merged["requests"][n]) for n in expected["requests"]),
        *((a["total"], b["total"]) for a, b in zip(expected["timeline"], merged["timeline"])),
    ]:
        for key in ("count", "errors", "bytesSent", "bytesReceived", "p50Ms", "p90Ms", "p95Ms", "p99Ms"):
            assert ours[key] == theirs[key], key
    assert [e["activeUsers"] for e in merged["timeline"]] == [e["activeUsers"] for e in expected["timeline"]]
