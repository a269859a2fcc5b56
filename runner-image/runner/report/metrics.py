"""The merged load-test metrics the reports read, as plain dicts in the shard JSON shape.

The load engine owns the per-shard metrics format and how shards merge
(`assay.runner.load.metrics`), and how criteria are judged on the merged whole
(`assay.runner.load.criteria`). The reports take its merged result, either as its object or
as the dict it serialises to, and only read it:

    {"version": 1, "runId", "shard", "shards", "startedAt", "finishedAt",
     "requests": {NAME: STATS}, "total": STATS,
     "timeline": [{"second": EPOCH, "requests": {NAME: STATS}, "total": STATS, "activeUsers"}],
     "criteria": [{"criterion", "observed", "passed"}], "aborted", "abortReason",
     "droppedIterations", "timers" (only with spec.timers: the result archive's XLT records)}

    STATS = {"count", "errors": {"status", "timeout", "connect", "assertion", "other"},
             "bytesSent", "bytesReceived", "histogram" (base64 HdrHistogram of µs),
             "minMs", "meanMs", "p50Ms", "p90Ms", "p95Ms", "p99Ms", "maxMs"}
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from assay.crds.times import epoch

ERROR_KINDS = ("status", "timeout", "connect", "assertion", "other")
PERCENTILES = (("p50Ms", 50.0), ("p90Ms", 90.0), ("p95Ms", 95.0), ("p99Ms", 99.0))


def as_dict(merged: Any) -> dict:
    """The merged metrics as a dict, whether given as one or as the load engine's object."""
    if isinstance(merged, Mapping):
        return dict(merged)
    for method in ("to_dict", "model_dump"):
        if hasattr(merged, method):
            return dict(getattr(merged, method)())
    if hasattr(merged, "to_json"):
        return json.loads(merged.to_json())
    raise TypeError(f"cannot read load-test metrics from a {type(merged).__name__}")


def load_shards(paths: Iterable[Path], *, criteria: Sequence[str] = ()) -> Any:
    """Per-shard metrics files merged by the load engine (a `ShardMetrics`), with `criteria`
    judged on the merged whole (a merge leaves them to its caller: per-shard verdicts do not
    add up to the run's)."""
    from assay.runner.load.criteria import evaluate
    from assay.runner.load.metrics import ShardMetrics, merge

    shards = []
    for path in paths:
        try:
            data = json.loads(Path(path).read_bytes())
            # The timer records are for the result archive's XLT layout, which reads the shard
            # files itself: the merged view has no use for them, decoded or added up.
            if isinstance(data, dict):
                data.pop("timers", None)
            shards.append(ShardMetrics.from_json(data))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: not load-test shard metrics ({exc})") from None
    if not shards:
        raise ValueError("no shard metrics to merge")
    merged = merge(shards)
    if criteria:
        merged.criteria = evaluate(list(criteria), merged)
    return merged


def error_count(stats: Mapping) -> int:
    return sum(int(n) for n in (stats.get("errors") or {}).values())


def epoch_seconds(value: Any) -> float | None:
    """A start or finish time as epoch seconds: epoch numbers and ISO 8601 text both occur."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        # Epoch milliseconds are 13 digits long for the next few centuries.
        return value / 1000 if value > 1e11 else float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    return epoch(text)


def iso_utc(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
