"""Monitor runs in the store as Runscope results: Test Result List / Detail, Test Result Step
Detail, Test Metrics and the request counts of buckets and teams.

A run is stored as one `monitor-result.json` (`monitor-result-<i>.json` per region when it ran
in several), each the runner's Test Result Detail of one location. Runscope shows a run in two
regions as two results with the same `test_run_id`, one `region` each; so does this module: a
*piece* is one location's document, and every list, metric and count is over pieces.

Lists, metrics and counts read the store's index of the pieces (`monitor_results`), never the
documents, so their cost follows the page asked for, not the history behind it; a detail reads
the one document it shows.

The functions below the service are pure (documents in, documents out) so tests read them
directly; `RunscopeResults` only fetches from the store.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterable, Optional
from urllib.parse import parse_qs, urlsplit

from ..store import MonitorResultRecord, RunRecord, Store
from ..store.monitor_results import ResultFigures, json_object
from . import InvalidInput, NotFound

KIND = "Monitor"
RUN_SOURCES = "runscope-run-sources"
"""Store collection: how a run the gateway asked for started (`trigger`), by run id. The
gateway asks for every requested Monitor run; a run it did not ask for came from a schedule
(or a retry of a scheduled run), or from a run request written by hand, shown as scheduled too."""
SCHEDULED = "scheduled"
DEFAULT_COUNT = 10
MAX_COUNT = 50
SUBTEST_KEYS = ("subtests_count", "subtests_passed", "subtests_failed", "subtests_others", "subtest_detail")
TIMEFRAMES = {
    # timeframe: (length of the period, width of one response_times point), seconds
    "hour": (3600, 60),
    "day": (86400, 3600),
    "week": (7 * 86400, 86400),
    "month": (30 * 86400, 86400),
}
ALL = "all"
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
MAX_USAGE_DAYS = 36_600
"""A century: `days` beyond it would reach before year 1, which date arithmetic cannot."""
SECONDS_PER_DAY = 86400


@dataclass(frozen=True)
class Piece:
    """One location's result of one run."""

    run: RunRecord
    index: int
    doc: dict
    steps: Optional[dict] = None
    """Step details by step uuid, when the runner stored them (`monitor-steps[-<i>].json`)."""
    source: Optional[str] = None
    """How the run started (RUN_SOURCES); the runner's own `source` (a subtest's) wins."""


# --- pure: presentation ------------------------------------------------------------------------


def result_url(base_url: str, bucket_key: str, test_id: str, run_id: str) -> str:
    return f"{base_url.rstrip('/')}/buckets/{bucket_key}/tests/{test_id}/results/{run_id}"


def _header(piece: Piece, base_url: str, run_by: Optional[str]) -> dict[str, Any]:
    """`run_by` answers for a run whose document names nobody: Runscope attributes runs
    (scheduled ones too) to a person, and here that is the test's creator. A run that is not a
    subtest's is its own tree's root, so its parent test is its own test."""
    doc, run = piece.doc, piece.run
    test_id = doc.get("test_id") or run.owner_uid
    bucket_key = doc.get("bucket_key") or run.project
    return {
        **doc,
        "bucket_key": bucket_key,
        "test_id": test_id,
        "test_run_id": run.run_id,
        "test_run_url": result_url(base_url, bucket_key, test_id, run.run_id),
        "agent_expired": bool(doc.get("agent_expired", False)),
        "parent_test_uuid": doc.get("parent_test_uuid") or test_id,
        "run_by": doc.get("run_by") or run_by,
        "source": doc.get("source") or piece.source,
    }


def result_summary(
    piece: Piece, base_url: str, *, subtests: bool = False, run_by: Optional[str] = None
) -> dict[str, Any]:
    """An item of Test Result List; the subtest fields only when asked for (`subtests=true`)."""
    out = _header(piece, base_url, run_by)
    out.pop("requests", None)
    if not subtests:
        for key in SUBTEST_KEYS:
            out.pop(key, None)
    return out


def result_detail(piece: Piece, base_url: str, *, run_by: Optional[str] = None) -> dict[str, Any]:
    """The `data` of Test Result Detail."""
    out = _header(piece, base_url, run_by)
    out.setdefault("requests", [])
    return out


def step_detail(piece: Piece, step_id: str) -> Optional[dict[str, Any]]:
    """The `data` of Test Result Step Detail for a request step of this piece; None when the
    step is not in the run or sent no request. The runner stores each step's exchange
    (`monitor-steps.json`); for a run stored without it the request is rebuilt from the
    step's URL and method, and the response is null."""
    if piece.steps and isinstance(piece.steps.get(step_id), dict):
        detail = piece.steps[step_id]
        return {**detail, "bucket_key": detail.get("bucket_key") or piece.doc.get("bucket_key") or piece.run.project}
    step = next((s for s in piece.doc.get("requests") or [] if s.get("uuid") == step_id), None)
    if step is None or not step.get("url"):
        return None
    parts = urlsplit(step["url"])
    return {
        "bucket_key": piece.doc.get("bucket_key") or piece.run.project,
        "uuid": step_id,
        "request": {
            "body": "",
            "body_encoding": "plaintext",
            "headers": {},
            "host": parts.hostname or "",
            "method": step.get("method") or "",
            "params": parse_qs(parts.query, keep_blank_values=True),
            "path": parts.path or "/",
            "scheme": parts.scheme,
            "timestamp": piece.doc.get("started_at"),
        },
        "response": None,
    }


def check_count(count: Optional[int]) -> int:
    if count is None:
        return DEFAULT_COUNT
    if not 1 <= count <= MAX_COUNT:
        raise InvalidInput(f"count must be between 1 and {MAX_COUNT}, not {count}")
    return count


# --- pure: metrics -------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> Optional[float]:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _period_figures(points: list[tuple[float, bool, Optional[float]]]) -> dict[str, Any]:
    times = [t for _, _, t in points if t is not None]
    return {
        "response_time_50th_percentile": percentile(times, 50),
        "response_time_95th_percentile": percentile(times, 95),
        "response_time_99th_percentile": percentile(times, 99),
        "total_test_runs": len(points),
    }


def _change(now: Optional[float], before: Optional[float]) -> float:
    """The relative change; 0.0 when there is nothing to compare (no runs in either period):
    the field is a number in every answer the document shows, and no measured change is none."""
    if now is None or not before:
        return 0.0
    return (now - before) / before


def timeframe_widths(timeframe: str) -> tuple[int, int]:
    if timeframe not in TIMEFRAMES:
        raise InvalidInput(f"timeframe must be one of {', '.join(TIMEFRAMES)}, not {timeframe!r}")
    return TIMEFRAMES[timeframe]


def metrics_document(
    pieces: Iterable[dict], *, now: float, timeframe: str = "day", environment_uuid: str = ALL, region: str = ALL
) -> dict[str, Any]:
    """Test Metrics over result documents (`result_metrics` over what the index holds of them)."""
    return result_metrics(
        [MonitorResultRecord.from_document(doc).figures for doc in pieces],
        now=now,
        timeframe=timeframe,
        environment_uuid=environment_uuid,
        region=region,
    )


def result_metrics(
    results: Iterable[ResultFigures],
    *,
    now: float,
    timeframe: str = "day",
    environment_uuid: str = ALL,
    region: str = ALL,
) -> dict[str, Any]:
    """Test Metrics: one `response_times` point per interval of the timeframe that has runs,
    this period's percentiles and run count, and their relative change from the period before
    (0.0 when either period had nothing to compare with)."""
    length, width = timeframe_widths(timeframe)
    start, previous_start = now - length, now - 2 * length
    this_period, last_period = [], []
    for result in results:
        if result.result not in ("pass", "fail"):
            continue
        if environment_uuid != ALL and result.environment_id != environment_uuid:
            continue
        if region != ALL and result.region != region:
            continue
        at = result.started_at
        if at is None or at > now:
            continue
        point = (at, result.result == "pass", result.response_time_ms)
        if at >= start:
            this_period.append(point)
        elif at >= previous_start:
            last_period.append(point)
    buckets: dict[int, list] = {}
    for point in this_period:
        buckets.setdefault(int(point[0] // width * width), []).append(point)
    response_times = []
    for timestamp in sorted(buckets):
        points = buckets[timestamp]
        times = [t for _, _, t in points if t is not None]
        response_times.append(
            {
                "success_ratio": sum(ok for _, ok, _ in points) / len(points),
                "timestamp": timestamp,
                "avg_response_time_ms": round(sum(times) / len(times)) if times else None,
            }
        )
    this_figures, last_figures = _period_figures(this_period), _period_figures(last_period)
    return {
        "response_times": response_times,
        "change_from_last_period": {key: _change(this_figures[key], last_figures[key]) for key in this_figures},
        "environment_uuid": environment_uuid,
        "region": region,
        "timeframe": timeframe,
        "this_time_period": this_figures,
    }


# --- pure: usage -----------------------------------------------------------------------------------


def usage_window(
    today: date,
    *,
    date_: Optional[str] = None,
    days: Optional[int] = None,
    from_: Optional[str] = None,
    to: Optional[str] = None,
) -> tuple[date, date]:
    """The (from, to) days a request count covers, both inclusive: by default the last day
    (yesterday and today), `date` to today, the last `days` days, or `from` to `to`."""

    def parse(name: str, value: str) -> date:
        if not _DATE.fullmatch(value):
            raise InvalidInput(f"{name} must be a date as YYYY-MM-DD, not {value!r}")
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise InvalidInput(f"{name} must be a date as YYYY-MM-DD, not {value!r}") from None

    if (from_ is None) != (to is None):
        raise InvalidInput("from and to must be given together")
    if from_ is not None and to is not None:
        start, end = parse("from", from_), parse("to", to)
    elif date_ is not None:
        start, end = parse("date", date_), today
    elif days is not None:
        if not 1 <= days <= MAX_USAGE_DAYS:
            raise InvalidInput(f"days must be between 1 and {MAX_USAGE_DAYS}, not {days}")
        start, end = today - timedelta(days=days), today
    else:
        start, end = today - timedelta(days=1), today
    if start > end:
        raise InvalidInput(f"the period starts ({start}) after it ends ({end})")
    return start, end


def day_bounds(start: date, end: date) -> tuple[float, float]:
    """Epoch seconds from the start of `start` to the end of `end` (UTC)."""
    begin = datetime(start.year, start.month, start.day, tzinfo=timezone.utc)
    last = datetime(end.year, end.month, end.day, tzinfo=timezone.utc)
    # The day after 9999-12-31 has no datetime, but it has an epoch second.
    return begin.timestamp(), last.timestamp() + SECONDS_PER_DAY


def bucket_usage(bucket_key: str, requests_count: int, start: date, end: date) -> dict[str, Any]:
    return {
        "requests_count": requests_count,
        "bucket_key": bucket_key,
        "from_date": start.isoformat(),
        "to_date": end.isoformat(),
    }


# --- the store side --------------------------------------------------------------------------------


def steps_name(result_name: str) -> str:
    """The step details document beside a result document (`monitor-steps[-<i>].json`)."""
    return result_name.replace("monitor-result", "monitor-steps", 1)


def record_source(store: Store, namespace: str, run_id: str, source: str) -> None:
    store.put_record(RUN_SOURCES, run_id, {"source": source}, project=namespace)


def run_source(store: Store, run_id: str) -> str:
    return (store.get_record(RUN_SOURCES, run_id) or {}).get("source") or SCHEDULED


class RunscopeResults:
    def __init__(self, store: Store, base_url: str):
        self.store = store
        self.base_url = base_url

    def list_results(
        self,
        namespace: str,
        test_id: str,
        *,
        count: int,
        since: Optional[float],
        before: Optional[float],
        subtests: bool,
        run_by: Optional[str] = None,
    ) -> list[dict]:
        listed = self.store.list_monitor_results(namespace, test_id, since=since, before=before, limit=count)
        return [
            result_summary(
                Piece(
                    run=run,
                    index=result.location or 0,
                    doc=result.header,
                    source=run_source(self.store, run.run_id),
                ),
                self.base_url,
                subtests=subtests,
                run_by=run_by,
            )
            for run, result in listed
        ]

    def _run(self, namespace: str, test_id: str, run_id: str) -> Optional[RunRecord]:
        if run_id == "latest":
            return self.store.latest_monitor_run(namespace, test_id)
        try:
            run = self.store.get_run(run_id)
        except ValueError:
            return None
        if run is None or run.kind != KIND or run.project != namespace or run.owner_uid != test_id:
            return None
        return run

    def _piece(
        self, namespace: str, test_id: str, run_id: str, region: Optional[str], with_steps: bool = False
    ) -> Piece:
        run = self._run(namespace, test_id, run_id)
        results = self.store.run_monitor_results(run.run_id) if run is not None else []
        if not results:
            raise NotFound(f"test run {run_id!r} not found")
        chosen = (
            results[0]
            if region is None
            else next((r for r in results if region in (r.header.get("region"), r.header.get("agent"))), None)
        )
        if chosen is None:
            raise NotFound(f"test run {run_id!r} did not run in region {region!r}")
        doc = json_object(self.store.get_document(run.run_id, chosen.name))
        if doc is None:
            raise NotFound(f"test run {run_id!r} not found")
        steps = json_object(self.store.get_document(run.run_id, steps_name(chosen.name))) if with_steps else None
        return Piece(
            run=run, index=chosen.location or 0, doc=doc, steps=steps, source=run_source(self.store, run.run_id)
        )

    def result(
        self, namespace: str, test_id: str, run_id: str, region: Optional[str] = None, run_by: Optional[str] = None
    ) -> dict:
        return result_detail(self._piece(namespace, test_id, run_id, region), self.base_url, run_by=run_by)

    def step(self, namespace: str, test_id: str, run_id: str, step_id: str, region: Optional[str] = None) -> dict:
        detail = step_detail(self._piece(namespace, test_id, run_id, region, with_steps=True), step_id)
        if detail is None:
            raise NotFound(f"step {step_id!r} of test run {run_id!r} not found (or it sent no request)")
        return detail

    def metrics(
        self, namespace: str, test_id: str, *, now: float, timeframe: str, environment_uuid: str, region: str
    ) -> dict:
        length, _ = timeframe_widths(timeframe)
        results = self.store.monitor_result_figures(namespace, test_id, now - 2 * length, now)
        return result_metrics(results, now=now, timeframe=timeframe, environment_uuid=environment_uuid, region=region)

    def bucket_usage(self, namespace: str, start: date, end: date) -> dict:
        since, before = day_bounds(start, end)
        return bucket_usage(namespace, self.store.monitor_requests(namespace, since, before), start, end)
