"""A running load test's live figures: what each shard last reported, and all shards merged.

Each shard of a running LoadTest reports every ~2 s (assay.crds.contracts.progress.ShardProgress):
its totals so far and its last few seconds (`windowS`, up to 5): request and error counts,
throughput and a latency histogram of the window. `merge_progress` combines the latest
reports:

* `requests`, `errors`: the sum of the shards' totals, exact as of each shard's last report;
* `rps`, `activeUsers`: the sum over the shards still running (`shardsReporting`): a shard
  that has finished, or has not reported for `STALE_AFTER_SECONDS`, sends no load;
* `p95Ms`: the 95th percentile of the union of those shards' windows, read from their merged
  histograms (HdrHistogram, 2 significant digits: within 1%). It is exact for that union,
  not an upper bound and not an average of shard percentiles; the windows are each shard's
  own last seconds, so they line up to within one report interval;
* `updatedAt`: the newest report's arrival (epoch seconds, the gateway's clock).

`progress_sample` is the same merge with what a chart over time needs besides: errors per
second over the running shards' windows and p50/p99 from the same merged histograms. The
ingest keeps one such sample every `SAMPLE_SECONDS` per run (store `run_progress_samples`, a
ring of `MAX_SAMPLES`): the shards push only their latest seconds, so the curve of a run so
far exists nowhere else until its report is built.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from assay.crds.contracts.progress import WINDOW_HISTOGRAM_DIGITS, ShardProgress

from .store import ProgressRecord

STALE_AFTER_SECONDS = 10.0
"""Five missed reports: the shard is gone (its pod died, or it finished without saying so)."""
SAMPLE_SECONDS = 2.0
"""One sample per report interval, whatever the number of shards reporting."""
MAX_SAMPLES = 900
"""The newest 30 minutes at one sample per 2 s; a longer run's chart shows its last 30 minutes
while it runs and its report's full timeline once it has one."""


def shard_view(record: ProgressRecord) -> dict:
    """One shard's latest report as the ingest API shows it (without the histogram)."""
    doc = {k: v for k, v in record.doc.items() if k != "windowHistogram"}
    return {"shard": record.shard, "updatedAt": record.updated_at, **doc}


def _merged(records: Iterable[ProgressRecord], now: float | None, percentiles: dict[str, float]) -> dict | None:
    from assay.crds.contracts.histogram import Histogram, layout  # the load engine's package: on demand

    records = list(records)
    if not records:
        return None
    now = time.time() if now is None else now
    reports = [(record, ShardProgress.model_validate(record.doc)) for record in records]
    running = [p for record, p in reports if not p.done and now - record.updated_at <= STALE_AFTER_SECONDS]
    window = Histogram(layout(digits=WINDOW_HISTOGRAM_DIGITS))
    for report in running:
        try:
            window.add(report.histogram())
        except ValueError:
            continue  # checked when stored; a histogram that no longer decodes costs its share only
    merged: dict = {
        "requests": sum(p.requests for _, p in reports),
        "errors": sum(p.errors for _, p in reports),
        "rps": round(sum(p.rps for p in running), 3),
    }
    for key, percentile in percentiles.items():
        merged[key] = round(window.value_at_percentile(percentile) / 1000.0, 3) if window.total else None
    merged.update(
        activeUsers=sum(p.active_users for p in running),
        shardsReporting=len(running),
        shardsDone=sum(1 for _, p in reports if p.done),
        updatedAt=max(record.updated_at for record in records),
    )
    merged["_running"] = running
    return merged


def merge_progress(records: Iterable[ProgressRecord], now: float | None = None) -> dict | None:
    """All shards' latest reports as one (see the module's docstring); None without any."""
    merged = _merged(records, now, {"p95Ms": 95.0})
    if merged is not None:
        del merged["_running"]
    return merged


def progress_sample(records: Iterable[ProgressRecord], now: float | None = None) -> dict | None:
    """`merge_progress` with `errorsPerSecond`, `p50Ms` and `p99Ms`: one point of the live charts."""
    merged = _merged(records, now, {"p50Ms": 50.0, "p95Ms": 95.0, "p99Ms": 99.0})
    if merged is None:
        return None
    running = merged.pop("_running")
    merged["errorsPerSecond"] = round(sum(p.window_errors / p.window_s for p in running if p.window_s), 3)
    return merged


__all__ = ["MAX_SAMPLES", "SAMPLE_SECONDS", "STALE_AFTER_SECONDS", "merge_progress", "progress_sample", "shard_view"]
