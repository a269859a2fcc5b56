"""Monitor runs in the store as Runscope results: Test Result List / Detail, Test Result Step
Detail, Test Metrics and the request counts of buckets and teams.

A run is stored as one `monitor-result.json` (`monitor-result-<i>.json` per region when it ran
in several), each the runner's Test Result Detail of one location. Runscope shows a run in two
regions as two results with the same `test_run_id`, one `region` each; so does this module: a
*piece* is one location's document, and every list, metric and count is over pieces.

The functions below the service are pure (documents in, documents out) so tests read them
directly; `RunscopeResults` only fetches pieces from the store.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterable, Iterator, Optional
from urllib.parse import parse_qs, urlsplit

from ..store import RunRecord, Store
from ..store.results import json_object
from . import InvalidInput, NotFound

KIND = "Monitor"
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
_RUN_SCAN_BATCH = 200
RESULT_SPREAD_S = 86400.0
"""How far a run's results may start from its first result's arrival: a run's duration, or a
location queued behind a busy node."""
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
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


# --- pure: presentation ------------------------------------------------------------------------


def result_url(base_url: str, bucket_key: str, test_id: str, run_id: str) -> str:
    return f"{base_url.rstrip('/')}/buckets/{bucket_key}/tests/{test_id}/results/{run_id}"


def _header(piece: Piece, base_url: str) -> dict[str, Any]:
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
    }


def result_summary(piece: Piece, base_url: str, *, subtests: bool = False) -> dict[str, Any]:
    """An item of Test Result List; the subtest fields only when asked for (`subtests=true`)."""
    out = _header(piece, base_url)
    out.pop("requests", None)
    out.pop("source", None)
    if not subtests:
        for key in SUBTEST_KEYS:
            out.pop(key, None)
    return out


def result_detail(piece: Piece, base_url: str) -> dict[str, Any]:
    """The `data` of Test Result Detail."""
    out = _header(piece, base_url)
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
        "request": {"body": "", "body_encoding": "plaintext", "headers": {}, "host": parts.hostname or "",
                    "method": step.get("method") or "", "params": parse_qs(parts.query, keep_blank_values=True),
                    "path": parts.path or "/", "scheme": parts.scheme,
                    "timestamp": piece.doc.get("started_at")},
        "response": None,
    }


def started_at(piece: Piece) -> float:
    value = piece.doc.get("started_at")
    return float(value) if isinstance(value, (int, float)) else (piece.run.started_at or piece.run.created_at)


def select_window(items: list[tuple[float, Any]], *, since: Optional[float], before: Optional[float],
                  count: int) -> list[Any]:
    """Newest first, started strictly after `since` and strictly before `before`, at most `count`."""
    kept = [(t, item) for t, item in items if (since is None or t > since) and (before is None or t < before)]
    kept.sort(key=lambda pair: pair[0], reverse=True)
    return [item for _, item in kept[:count]]


def check_count(count: Optional[int]) -> int:
    if count is None:
        return DEFAULT_COUNT
    if not 1 <= count <= MAX_COUNT:
        raise InvalidInput(f"count must be between 1 and {MAX_COUNT}, not {count}")
    return count


# --- pure: metrics -------------------------------------------------------------------------------


def response_time_ms(doc: dict) -> Optional[float]:
    """The mean response time of the piece's requests (the sum of each request's timings)."""
    times = [sum(float(v or 0) for v in step["timings"].values())
             for step in doc.get("requests") or [] if isinstance(step.get("timings"), dict)]
    return sum(times) / len(times) if times else None


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
    return {"response_time_50th_percentile": percentile(times, 50),
            "response_time_95th_percentile": percentile(times, 95),
            "response_time_99th_percentile": percentile(times, 99),
            "total_test_runs": len(points)}


def _change(now: Optional[float], before: Optional[float]) -> Optional[float]:
    if now is None or not before:
        return None
    return (now - before) / before


def timeframe_widths(timeframe: str) -> tuple[int, int]:
    if timeframe not in TIMEFRAMES:
        raise InvalidInput(f"timeframe must be one of {', '.join(TIMEFRAMES)}, not {timeframe!r}")
    return TIMEFRAMES[timeframe]


def metrics_document(pieces: Iterable[dict], *, now: float, timeframe: str = "day", environment_uuid: str = ALL,
                 region: str = ALL) -> dict[str, Any]:
    """Test Metrics over result documents: one `response_times` point per interval of the
    timeframe that has runs, this period's percentiles and run count, and their relative change
    from the period before (null when that period had nothing to compare with)."""
    length, width = timeframe_widths(timeframe)
    start, previous_start = now - length, now - 2 * length
    this_period, last_period = [], []
    for doc in pieces:
        if doc.get("result") not in ("pass", "fail"):
            continue
        if environment_uuid != ALL and doc.get("environment_id") != environment_uuid:
            continue
        if region != ALL and doc.get("region") != region:
            continue
        at = doc.get("started_at")
        if not isinstance(at, (int, float)) or at > now:
            continue
        point = (float(at), doc["result"] == "pass", response_time_ms(doc))
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
        response_times.append({"success_ratio": sum(ok for _, ok, _ in points) / len(points),
                               "timestamp": timestamp,
                               "avg_response_time_ms": round(sum(times) / len(times)) if times else None})
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


def usage_window(today: date, *, date_: Optional[str] = None, days: Optional[int] = None,
                 from_: Optional[str] = None, to: Optional[str] = None) -> tuple[date, date]:
    """The (from, to) days a request count covers, both inclusive: by default the last day
    (yesterday and today), `date` to today, the last `days` days, or `from` to `to`."""
    def parse(name: str, value: str) -> date:
        if not _DATE.match(value):
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


def requests_count(pieces: Iterable[dict], start: date, end: date) -> int:
    begin, finish = day_bounds(start, end)
    return sum(int(doc.get("requests_executed") or 0) for doc in pieces
               if isinstance(doc.get("started_at"), (int, float)) and begin <= doc["started_at"] < finish)


def bucket_usage(bucket_key: str, pieces: Iterable[dict], start: date, end: date) -> dict[str, Any]:
    return {"requests_count": requests_count(pieces, start, end), "bucket_key": bucket_key,
            "from_date": start.isoformat(), "to_date": end.isoformat()}


# --- the store side --------------------------------------------------------------------------------


def piece_names(run: RunRecord) -> list[tuple[str, str]]:
    """(result document, step details document) of each location, in location order."""
    if run.shards <= 1:
        return [("monitor-result.json", "monitor-steps.json")]
    return [(f"monitor-result-{i}.json", f"monitor-steps-{i}.json") for i in range(run.shards)]


class RunscopeResults:
    def __init__(self, store: Store, base_url: str):
        self.store = store
        self.base_url = base_url

    def runs(self, *, project: str, owner_uid: Optional[str] = None, since: Optional[float] = None,
             before: Optional[float] = None) -> Iterator[RunRecord]:
        """The Monitor runs of a bucket (or of one test), newest first, read in batches as the
        caller goes. `since` / `before` bound when a result *started*; the store orders runs by
        when their first result arrived, which is within `RESULT_SPREAD_S` of each of their
        results' starts, so runs further out than that cannot qualify."""
        offset = 0
        low = None if since is None else since - RESULT_SPREAD_S
        high = None if before is None else before + RESULT_SPREAD_S
        while batch := self.store.list_runs(project=project, kind=KIND, owner_uid=owner_uid, limit=_RUN_SCAN_BATCH,
                                            offset=offset, since=low, before=high):
            yield from batch
            offset += len(batch)

    def pieces(self, run: RunRecord, *, with_steps: bool = False) -> list[Piece]:
        found = []
        for index, (result_name, steps_name) in enumerate(piece_names(run)):
            doc = json_object(self.store.get_document(run.run_id, result_name))
            if doc is None:
                continue
            steps = json_object(self.store.get_document(run.run_id, steps_name)) if with_steps else None
            found.append(Piece(run=run, index=index, doc=doc, steps=steps))
        return found

    def list_results(self, namespace: str, test_id: str, *, count: int, since: Optional[float],
                     before: Optional[float], subtests: bool) -> list[dict]:
        items: list[tuple[float, dict]] = []
        for run in self.runs(project=namespace, owner_uid=test_id, since=since, before=before):
            if len(items) >= count and run.created_at < self._oldest_kept(items, count) - RESULT_SPREAD_S:
                break  # runs are newest first: none further back has a result late enough to be kept
            for piece in self.pieces(run):
                items.append((started_at(piece), result_summary(piece, self.base_url, subtests=subtests)))
        return select_window(items, since=since, before=before, count=count)

    @staticmethod
    def _oldest_kept(items: list[tuple[float, dict]], count: int) -> float:
        return sorted((t for t, _ in items), reverse=True)[count - 1]

    def _run(self, namespace: str, test_id: str, run_id: str) -> Optional[RunRecord]:
        if run_id == "latest":
            return next((r for r in self.runs(project=namespace, owner_uid=test_id) if self.pieces(r)), None)
        try:
            run = self.store.get_run(run_id)
        except ValueError:
            return None
        if run is None or run.kind != KIND or run.project != namespace or run.owner_uid != test_id:
            return None
        return run

    def _piece(self, namespace: str, test_id: str, run_id: str, region: Optional[str],
               with_steps: bool = False) -> Piece:
        run = self._run(namespace, test_id, run_id)
        pieces = self.pieces(run, with_steps=with_steps) if run is not None else []
        if not pieces:
            raise NotFound(f"test run {run_id!r} not found")
        if region is None:
            return pieces[0]
        chosen = next((p for p in pieces if region in (p.doc.get("region"), p.doc.get("agent"))), None)
        if chosen is None:
            raise NotFound(f"test run {run_id!r} did not run in region {region!r}")
        return chosen

    def result(self, namespace: str, test_id: str, run_id: str, region: Optional[str] = None) -> dict:
        return result_detail(self._piece(namespace, test_id, run_id, region), self.base_url)

    def step(self, namespace: str, test_id: str, run_id: str, step_id: str, region: Optional[str] = None) -> dict:
        detail = step_detail(self._piece(namespace, test_id, run_id, region, with_steps=True), step_id)
        if detail is None:
            raise NotFound(f"step {step_id!r} of test run {run_id!r} not found (or it sent no request)")
        return detail

    def metrics(self, namespace: str, test_id: str, *, now: float, timeframe: str, environment_uuid: str,
                region: str) -> dict:
        length, _ = timeframe_widths(timeframe)
        docs = [p.doc for run in self.runs(project=namespace, owner_uid=test_id, since=now - 2 * length, before=now)
                for p in self.pieces(run)]
        return metrics_document(docs, now=now, timeframe=timeframe, environment_uuid=environment_uuid, region=region)

    def bucket_usage(self, namespace: str, start: date, end: date) -> dict:
        since, before = day_bounds(start, end)
        docs = [p.doc for run in self.runs(project=namespace, since=since, before=before) for p in self.pieces(run)]
        return bucket_usage(namespace, docs, start, end)
