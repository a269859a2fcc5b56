"""The report summary (`report.json`) and the CSV tables, from the merged metrics.

The summary is what a report archive says about a run without its histograms: totals and per
request name counts, errors by kind, throughput and percentiles; the criteria; a per-second
timeline. Comparison reports are built from summaries alone, so two report archives can be
compared without the raw results.

Percentiles and counts are the merged metrics' own numbers, copied, never recomputed; only
throughput and error rates are derived here, from the counts and the run's duration.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from .metrics import ERROR_KINDS, as_dict, epoch_seconds, error_count, iso_utc

SUMMARY_VERSION = 1
SUMMARY_KIND = "assay-load-report"
LATENCY_FIELDS = ("minMs", "meanMs", "p50Ms", "p90Ms", "p95Ms", "p99Ms", "maxMs")
# Meta keys the report reads itself; any other meta entry is shown as extra run metadata.
KNOWN_META = ("runId", "loadTest", "label", "shards", "createdAt")


def _rate(numerator: float, denominator: float | None) -> float | None:
    if not denominator:
        return None
    return round(numerator / denominator, 6)


def _percent(part: int, whole: int) -> float:
    """Like the load engine's error rate and criteria: percent of all requests, 0 without any."""
    return round(100 * part / whole, 6) if whole else 0.0


def _row(name: str | None, stats: Mapping, duration_s: float | None) -> dict:
    count = int(stats.get("count") or 0)
    errors = error_count(stats)
    by_kind = {kind: int((stats.get("errors") or {}).get(kind) or 0) for kind in ERROR_KINDS}
    # A kind the engine added later is still counted, not silently dropped.
    by_kind.update({k: int(v) for k, v in (stats.get("errors") or {}).items() if k not in by_kind})
    row = {
        "name": name,
        "count": count,
        "errors": errors,
        "errorsByKind": by_kind,
        "errorRatePct": _percent(errors, count),
        "throughputRps": _rate(count, duration_s),
        "errorsPerSecond": _rate(errors, duration_s),
        "bytesSent": int(stats.get("bytesSent") or 0),
        "bytesReceived": int(stats.get("bytesReceived") or 0),
    }
    for field in LATENCY_FIELDS:
        row[field] = stats.get(field) if count else None
    return row


def _duration(metrics: Mapping) -> tuple[float | None, float | None, float | None]:
    started = epoch_seconds(metrics.get("startedAt"))
    finished = epoch_seconds(metrics.get("finishedAt"))
    if started is not None and finished is not None and finished > started:
        return started, finished, finished - started
    seconds = [entry["second"] for entry in metrics.get("timeline") or []]
    if seconds:
        return started, finished, float(max(seconds) - min(seconds) + 1)
    return started, finished, None


def verdict(*, aborted: bool, criteria: list[dict]) -> str:
    if aborted:
        return "aborted"
    if any(not c.get("passed") for c in criteria):
        return "failed"
    return "passed"


def summarize(merged: Any, meta: Mapping | None = None) -> dict:
    """The report summary of merged metrics; `meta` adds the load test name, a label, etc."""
    metrics = as_dict(merged)
    meta = dict(meta or {})
    started, finished, duration_s = _duration(metrics)
    first_second = min((e["second"] for e in metrics.get("timeline") or []), default=None)
    # Timeline seconds are whole epoch seconds: the one the run started in is elapsed second 0.
    origin = math.floor(started) if started is not None else first_second
    criteria = [
        {"criterion": c.get("criterion"), "observed": c.get("observed"), "passed": bool(c.get("passed"))}
        for c in metrics.get("criteria") or []
    ]
    aborted = bool(metrics.get("aborted"))
    timeline = []
    for entry in sorted(metrics.get("timeline") or [], key=lambda e: e["second"]):
        total = entry.get("total") or {}
        count = int(total.get("count") or 0)
        timeline.append(
            {
                "second": entry["second"],
                "elapsedS": round(entry["second"] - origin, 3) if origin is not None else None,
                "activeUsers": entry.get("activeUsers"),
                "requests": count,
                "errors": error_count(total),
                **{field: (total.get(field) if count else None) for field in ("p50Ms", "p95Ms", "p99Ms", "maxMs")},
            }
        )
    return {
        "version": SUMMARY_VERSION,
        "kind": SUMMARY_KIND,
        "run": {
            "runId": meta.get("runId") or metrics.get("runId"),
            "loadTest": meta.get("loadTest"),
            "label": meta.get("label"),
            "shards": meta.get("shards") or metrics.get("shards"),
            "startedAt": iso_utc(started),
            "finishedAt": iso_utc(finished),
            "durationS": round(duration_s, 3) if duration_s is not None else None,
            "aborted": aborted,
            "abortReason": metrics.get("abortReason"),
            "peakUsers": max((t["activeUsers"] or 0 for t in timeline), default=None),
            "droppedIterations": int(metrics.get("droppedIterations") or 0),
            "generatedAt": meta.get("createdAt") or iso_utc(datetime.now(UTC).timestamp()),
            "extra": {str(k): v for k, v in sorted(meta.items()) if k not in KNOWN_META},
        },
        "verdict": verdict(aborted=aborted, criteria=criteria),
        "total": _row(None, metrics.get("total") or {}, duration_s),
        "requests": [_row(name, stats, duration_s) for name, stats in sorted((metrics.get("requests") or {}).items())],
        "criteria": criteria,
        "timeline": timeline,
    }


def display_label(run: Mapping) -> str:
    """What a run is called in a report: its custom label, else load test and run id."""
    if run.get("label"):
        return str(run["label"])
    parts = [str(p) for p in (run.get("loadTest"), run.get("runId")) if p]
    return " · ".join(parts) or "unnamed run"


# --- CSV tables -------------------------------------------------------------------------------


def _csv(header: list[str], rows: list[list]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return buffer.getvalue().encode()


REQUEST_COLUMNS = [
    "scope",
    "name",
    "count",
    "errors",
    "errorRatePct",
    "throughputRps",
    *LATENCY_FIELDS,
    "bytesSent",
    "bytesReceived",
    *(f"errors_{kind}" for kind in ERROR_KINDS),
]


def requests_csv(summary: Mapping) -> bytes:
    """One row per request name, then the total (scope `total`, no name)."""
    rows = []
    for scope, row in [*(("request", r) for r in summary["requests"]), ("total", summary["total"])]:
        rows.append(
            [
                scope,
                row["name"],
                row["count"],
                row["errors"],
                row["errorRatePct"],
                row["throughputRps"],
                *(row[f] for f in LATENCY_FIELDS),
                row["bytesSent"],
                row["bytesReceived"],
                *(row["errorsByKind"].get(kind, 0) for kind in ERROR_KINDS),
            ]
        )
    return _csv(REQUEST_COLUMNS, rows)


TIMELINE_COLUMNS = ["second", "elapsedS", "activeUsers", "requests", "errors", "p50Ms", "p95Ms", "p99Ms", "maxMs"]


def timeline_csv(summary: Mapping) -> bytes:
    """One row per second of the run, all requests together."""
    return _csv(TIMELINE_COLUMNS, [[entry[c] for c in TIMELINE_COLUMNS] for entry in summary["timeline"]])


ERROR_COLUMNS = ["scope", "name", "kind", "count", "percentOfRequests"]


def errors_csv(summary: Mapping) -> bytes:
    """Every non-zero error count by request name and kind, then the totals by kind."""
    rows = []
    for scope, row in [*(("request", r) for r in summary["requests"]), ("total", summary["total"])]:
        for kind, count in row["errorsByKind"].items():
            if count:
                rows.append([scope, row["name"], kind, count, _percent(count, row["count"])])
    return _csv(ERROR_COLUMNS, rows)
