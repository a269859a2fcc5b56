"""One load test as its dashboard page shows it: live while it runs, its report once it ended.

Live figures
    The run's merged progress samples (store `run_progress_samples`, one per ~2 s, written by
    the ingest from the shards' pushed progress; api/store/progress.py). The shards push only
    their latest seconds, so the samples are the one record of the curve so far, and a small
    one: a bounded ring per run, not every report of every shard.
Final figures
    The newest report archive's summary (`report.json`): totals, the per-request table, errors
    by kind, the criteria as judged, and a per-second timeline that replaces the live samples
    as the chart once it exists.
Criteria
    Each of `spec.criteria` with the value observed so far and its headroom: how far the
    value may still move before the criterion fails (positive: passing; zero or less:
    failing). While the run is live, latency criteria read the merged window of the shards'
    last seconds (p50, p95, p99 only; the others wait for the report), `error_rate` and `rps`
    the run's totals so far.
Runs
    The load test and its copies (XTC runCopy; they share `copy_root_name`) are its runs. Any
    two with a report compare through the report package's comparison (assay.runner.report).

Tenancy is the caller's: every method takes one namespace the principal reaches.
"""

from __future__ import annotations

import datetime as dt
from typing import Optional

from assay.crds.loadtest import parse_criterion

from . import NotFound
from .dashboard import loadtest_state, loadtest_view, moment
from .loadtests import LoadTestService, NumberedLoadTest, copy_root_name, parse_time

RUNNING_STATES = ("pending", "running")
REPORT_WAIT_SECONDS = 120.0
"""How long after its end a run without a report is still worth watching for one: the report
is built once every shard's results are in, seconds after the run's end."""
LIVE_LATENCIES = {"p50": "p50Ms", "p95": "p95Ms", "p99": "p99Ms"}
REPORT_LATENCIES = {"p50": "p50Ms", "p90": "p90Ms", "p95": "p95Ms", "p99": "p99Ms", "max": "maxMs", "avg": "meanMs"}
SERIES_KEYS = ("rps", "errorsPerSecond", "p50Ms", "p95Ms", "p99Ms", "activeUsers")


class NotComparable(Exception):
    """A run picked for comparison has no report (yet)."""


def headroom(text: str, observed: Optional[float]) -> dict:
    """One criterion with its observed value and how far it is from failing."""
    parsed = parse_criterion(text)
    view = {"criterion": text, "metric": parsed.metric, "threshold": parsed.threshold, "observed": observed}
    if observed is None:
        return {**view, "passing": None, "headroom": None, "headroomPct": None}
    # `<`/`<=`: room until the value climbs to the threshold; `>`/`>=`: until it falls to it.
    room = parsed.threshold - observed if parsed.operator in ("<", "<=") else observed - parsed.threshold
    return {
        **view,
        "passing": parsed.passes(observed),
        "headroom": round(room, 3),
        "headroomPct": round(100.0 * room / parsed.threshold, 1) if parsed.threshold else None,
    }


def live_observed(metric: str, latest: Optional[dict], elapsed: Optional[float]) -> Optional[float]:
    if not latest:
        return None
    if metric in LIVE_LATENCIES:
        return latest.get(LIVE_LATENCIES[metric])
    requests = latest.get("requests") or 0
    if metric == "error_rate":
        return round(100.0 * (latest.get("errors") or 0) / requests, 3) if requests else None
    if metric == "rps":
        return round(requests / elapsed, 3) if elapsed else None
    return None


def report_observed(metric: str, report: dict) -> Optional[float]:
    total = report.get("total") or {}
    if metric in REPORT_LATENCIES:
        return total.get(REPORT_LATENCIES[metric])
    return total.get({"error_rate": "errorRatePct", "rps": "throughputRps"}[metric])


def live_series(samples: list[dict], started: Optional[float]) -> list[dict]:
    origin = started if started is not None else (samples[0]["at"] if samples else 0.0)
    return [{"t": round(s["at"] - origin, 1), **{k: s.get(k) for k in SERIES_KEYS}} for s in samples]


def report_series(report: dict) -> list[dict]:
    return [
        {
            "t": entry.get("elapsedS"),
            "rps": entry.get("requests"),
            "errorsPerSecond": entry.get("errors"),
            **{k: entry.get(k) for k in ("p50Ms", "p95Ms", "p99Ms", "activeUsers")},
        }
        for entry in report.get("timeline") or []
    ]


class LoadTestPages:
    def __init__(self, loadtests: LoadTestService, store):
        self.loadtests = loadtests
        self.store = store

    def _family(self, namespace: str, name: str) -> tuple[Optional[NumberedLoadTest], list[NumberedLoadTest]]:
        """(the load test named `name`, it and every other run of the same root), by number."""
        items = self.loadtests.list(namespace)
        item = next((i for i in items if i.name == name), None)
        if item is None:
            return None, []
        root = copy_root_name(item.resource)
        return item, [i for i in items if copy_root_name(i.resource) == root]

    def _report(self, namespace: str, item: NumberedLoadTest) -> tuple[Optional[dict], Optional[int]]:
        """The newest readable report archive's summary and number."""
        from assay.runner.report import ArchiveError, read_report  # the report package: on demand

        for archive in reversed([a for a in self.loadtests.archives(namespace, item) if a.kind == "report"]):
            try:
                # archive(): a local file also when the archive is an object in S3.
                path = self.loadtests.archive(namespace, item, "report", archive.number).path
                return read_report(path), archive.number
            except (ArchiveError, OSError, NotFound):
                continue
        return None, None

    def view(self, namespace: str, name: str) -> Optional[dict]:
        """Everything the page shows of load test `name`; None when there is none."""
        item, family = self._family(namespace, name)
        if item is None:
            return None
        record = self.loadtests.run_record(item)
        base = loadtest_view(
            namespace, item, self.loadtests.archives(namespace, item), getattr(record, "summary", None)
        )
        run_id = item.status.get("runId")
        samples = self.store.list_progress_samples(run_id) if run_id else []
        started = parse_time(item.status.get("startTime"))
        live = base["state"] in RUNNING_STATES
        latest = samples[-1] if samples else None
        report, report_number = (None, None) if live else self._report(namespace, item)
        if report is not None:
            observed = {c["criterion"]: c.get("observed") for c in report.get("criteria") or []}
            criteria = [
                headroom(text, observed.get(text, report_observed(parse_criterion(text).metric, report)))
                for text in item.spec.get("criteria") or []
            ]
        else:
            now = dt.datetime.now(dt.timezone.utc)
            elapsed = (now - started).total_seconds() if started else None
            criteria = [
                headroom(text, live_observed(parse_criterion(text).metric, latest, elapsed))
                for text in item.spec.get("criteria") or []
            ]
        finished = parse_time(item.status.get("completionTime"))
        recently = (
            finished is not None and (dt.datetime.now(dt.timezone.utc) - finished).total_seconds() < REPORT_WAIT_SECONDS
        )
        return {
            **base,
            "live": live,
            "awaitingReport": not live and report is None and recently,
            "load": item.spec.get("load") or {},
            "shards": item.spec.get("shards", 1),
            "latest": {k: v for k, v in latest.items() if k != "at"} if latest else None,
            "criteria": criteria,
            "series": report_series(report)
            if report
            else live_series(samples, started.timestamp() if started else None),
            "seriesSource": "report" if report else "live",
            "report": None
            if report is None
            else {
                "number": report_number,
                "verdict": report.get("verdict"),
                "run": report.get("run") or {},
                "total": report.get("total") or {},
                "requests": report.get("requests") or [],
                "errorsByKind": {k: n for k, n in ((report.get("total") or {}).get("errorsByKind") or {}).items() if n},
            },
            "runs": [
                {
                    "number": run.number,
                    "name": run.name,
                    "state": loadtest_state(run.status),
                    "startedAt": moment(run.status.get("startTime")),
                    "hasReport": any(a.kind == "report" for a in self.loadtests.archives(namespace, run)),
                }
                for run in family
            ],
        }

    def compare(self, namespace: str, name: str, first: int, second: int) -> Optional[dict]:
        """The comparison of two runs of load test `name` by number (the older is the baseline);
        None when the load test, or either number among its runs, is not there; NotComparable
        when one has no report."""
        from assay.runner.report import compare

        item, family = self._family(namespace, name)
        runs = {run.number: run for run in family}
        if item is None or first not in runs or second not in runs:
            return None
        reports = []
        for number in (first, second):
            report, _ = self._report(namespace, runs[number])
            if report is None:
                raise NotComparable(f"load test {number} has no report yet")
            reports.append(
                {
                    **report,
                    "run": {**report["run"], "label": report["run"].get("label") or f"#{number} {runs[number].name}"},
                }
            )
        return compare(*reports)


__all__ = ["LoadTestPages", "NotComparable", "headroom"]
