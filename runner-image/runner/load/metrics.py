"""What a load shard measured, how it is recorded on the hot path, and how shards merge.

Per request name and overall, in total and for every second of the run: the request count,
errors by kind, bytes sent and received, and latency as an HdrHistogram (microseconds,
1 µs - 60 s, 3 significant digits; see histogram.py). Every request is counted and its
latency recorded, failed ones too (a timeout records the time waited, so slow failures
show in the percentiles).

The JSON (`ShardMetrics.to_json()`, read back by `from_json`; the report builder and the
operator are written against these keys):

    {"version": 1, "runId", "shard", "shards", "startedAt", "finishedAt",    (ISO 8601 UTC)
     "requests": {NAME: STATS}, "total": STATS,
     "timeline": [{"second": EPOCH_INT, "requests": {NAME: STATS}, "total": STATS,
                   "activeUsers": n}],
     "criteria": [{"criterion", "observed", "passed"}], "aborted", "abortReason",
     "droppedIterations", "errorSamples": {KIND: first message}}
    STATS = {"count", "errors": {"status", "timeout", "connect", "assertion", "other"},
             "bytesSent", "bytesReceived", "redirects", "histogram" (base64 HdrHistogram V2, µs),
             "minMs", "meanMs", "p50Ms", "p90Ms", "p95Ms", "p99Ms", "maxMs"}

`redirects` counts the redirect hops the requests followed (a request and its redirects
count as one request; its latency and bytes cover the whole chain). Read as 0 when absent.

The millisecond figures are derived from the histogram (null when count is 0), for readers
without an HdrHistogram library; a merge recomputes them from the merged histograms.
A timeline second is the epoch second in which requests completed; `activeUsers` is the
most virtual users (closed model) or iterations (open model) running at once in it.
`merge` adds histograms and counts and aligns timelines on the epoch second.

With `spec.timers.enabled` the shard also keeps one timer record per request and per
iteration (`TimerLog`), for the result archive's XLT layout (assay.runner.report.xlt):

    "timers": {"names": [REQUEST NAME], "flows": [FLOW NAME], "seen": n, "cap": n,
               "records": base64(gzip(CSV))}
    CSV line:  R,NAME_INDEX,FLOW_INDEX,USER,START_MS,RUNTIME_US,ERROR_KIND_INDEX(-1 ok),STATUS,SENT,RECEIVED
               T,FLOW_INDEX,USER,START_MS,RUNTIME_US,FAILED(0/1)

Up to `cap` records are kept exactly; beyond it the log is a uniform sample (reservoir) of
`cap` of the `seen` records, so counts from the records fall short while their percentiles
stay within sampling error.
"""

from __future__ import annotations

import base64
import gzip
import json
import random
from array import array
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Optional

from assay.crds.contracts.histogram import Histogram
from assay.crds.contracts.summary import SUMMARY_DIGITS, ShardSummary
from assay.crds.times import epoch

from .client import ERROR_KINDS

VERSION = 1
RECENT_SECONDS = 30
PERCENTILES = (("p50Ms", 50.0), ("p90Ms", 90.0), ("p95Ms", 95.0), ("p99Ms", 99.0))
_KIND_INDEX = {kind: i for i, kind in enumerate(ERROR_KINDS)}


class Stats:
    """Counts, errors by kind, bytes and a latency histogram for some set of requests.

    The histogram is decoded from JSON only when someone needs it (a merge, a percentile),
    so reading a long run's timeline costs little."""

    __slots__ = ("count", "errors", "bytes_sent", "bytes_received", "redirects", "_histogram", "_encoded", "_figures")

    def __init__(
        self,
        count: int = 0,
        errors: Optional[list[int]] = None,
        bytes_sent: int = 0,
        bytes_received: int = 0,
        histogram: Optional[Histogram] = None,
        encoded: Optional[str] = None,
        redirects: int = 0,
    ):
        self.count = count
        self.redirects = redirects
        self.errors = errors if errors is not None else [0] * len(ERROR_KINDS)
        self.bytes_sent = bytes_sent
        self.bytes_received = bytes_received
        self._histogram = histogram
        self._encoded = encoded
        self._figures: Optional[dict[str, Optional[float]]] = None

    @property
    def histogram(self) -> Histogram:
        if self._histogram is None:
            self._histogram = Histogram.decode(self._encoded) if self._encoded else Histogram()
        return self._histogram

    @property
    def error_count(self) -> int:
        return sum(self.errors)

    @property
    def error_rate(self) -> float:
        """Errors as a percentage of requests (0 with no requests)."""
        return 100.0 * self.error_count / self.count if self.count else 0.0

    def errors_by_kind(self) -> dict[str, int]:
        return dict(zip(ERROR_KINDS, self.errors))

    def add(self, other: Stats) -> None:
        self.count += other.count
        self.errors = [a + b for a, b in zip(self.errors, other.errors)]
        self.bytes_sent += other.bytes_sent
        self.bytes_received += other.bytes_received
        self.redirects += other.redirects
        # A compacted `other` (a timeline second, a shard read from JSON) is decoded for the
        # addition only, not kept decoded: merging a long run must not hold every second's
        # histogram in memory at once.
        theirs = other._histogram
        if theirs is None and other._encoded:
            theirs = Histogram.decode(other._encoded)
        if theirs is not None:
            self.histogram.add(theirs)
        self._encoded = self._figures = None

    def compact(self) -> None:
        """Keep only the encoded histogram and the figures: a long run's timeline holds
        thousands of these, and a sparse histogram is some kilobytes where its encoding is
        some hundred bytes."""
        if self._encoded is None:
            self._encoded = self.histogram.encode()
        if self._figures is None:
            self._figures = self._compute_figures()
        self._histogram = None

    def latency_ms(self, metric: str) -> Optional[float]:
        """`p50`..`p99`, `min`, `max` or `avg`/`mean` in milliseconds; None without requests."""
        if not self.count:
            return None
        h = self.histogram
        if metric in ("avg", "mean"):
            return h.mean() / 1000.0
        if metric == "min":
            return h.min() / 1000.0
        if metric == "max":
            return h.max() / 1000.0
        if metric.startswith("p"):
            return h.value_at_percentile(float(metric[1:])) / 1000.0
        raise ValueError(f"unknown latency metric {metric!r}")

    def _compute_figures(self) -> dict[str, Optional[float]]:
        h = self.histogram
        if not (self.count and h.total):
            return dict.fromkeys(("minMs", "meanMs", "p50Ms", "p90Ms", "p95Ms", "p99Ms", "maxMs"))
        p50, p90, p95, p99 = h.values_at_percentiles([p for _, p in PERCENTILES])
        return {
            "minMs": _ms(h.min()),
            "meanMs": round(h.mean() / 1000.0, 3),
            "p50Ms": _ms(p50),
            "p90Ms": _ms(p90),
            "p95Ms": _ms(p95),
            "p99Ms": _ms(p99),
            "maxMs": _ms(h.max()),
        }

    def to_dict(self) -> dict[str, Any]:
        if self._encoded is None:
            self._encoded = self.histogram.encode()
        if self._figures is None:
            self._figures = self._compute_figures()
        return {
            "count": self.count,
            "errors": self.errors_by_kind(),
            "bytesSent": self.bytes_sent,
            "bytesReceived": self.bytes_received,
            "redirects": self.redirects,
            "histogram": self._encoded,
            **self._figures,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Stats:
        errors = data.get("errors") or {}
        return cls(
            count=int(data.get("count") or 0),
            errors=[int(errors.get(kind) or 0) for kind in ERROR_KINDS],
            bytes_sent=int(data.get("bytesSent") or 0),
            bytes_received=int(data.get("bytesReceived") or 0),
            encoded=data.get("histogram") or None,
            redirects=int(data.get("redirects") or 0),
        )

    def __repr__(self) -> str:
        return f"Stats(count={self.count}, errors={self.errors_by_kind()})"


def _ms(us: int) -> float:
    return round(us / 1000.0, 3)


@dataclass
class TimelineEntry:
    second: int
    requests: dict[str, Stats] = field(default_factory=dict)
    total: Stats = field(default_factory=Stats)
    active_users: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "second": self.second,
            "requests": {n: s.to_dict() for n, s in self.requests.items()},
            "total": self.total.to_dict(),
            "activeUsers": self.active_users,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TimelineEntry:
        return cls(
            second=int(data["second"]),
            requests={n: Stats.from_dict(s) for n, s in (data.get("requests") or {}).items()},
            total=Stats.from_dict(data.get("total") or {}),
            active_users=int(data.get("activeUsers") or 0),
        )


@dataclass
class CriterionResult:
    criterion: str
    observed: Optional[float]
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return {"criterion": self.criterion, "observed": self.observed, "passed": self.passed}


@dataclass
class ShardMetrics:
    run_id: str = ""
    shard: Optional[int] = 0
    shards: int = 1
    started_at: Optional[float] = None
    """Epoch seconds; ISO 8601 in JSON."""
    finished_at: Optional[float] = None
    requests: dict[str, Stats] = field(default_factory=dict)
    total: Stats = field(default_factory=Stats)
    timeline: list[TimelineEntry] = field(default_factory=list)
    criteria: list[CriterionResult] = field(default_factory=list)
    aborted: bool = False
    abort_reason: Optional[str] = None
    dropped_iterations: int = 0
    """Open model: arrivals that never started because max_users were all busy."""
    error_samples: dict[str, str] = field(default_factory=dict)
    """The first error message of each kind, e.g. {"connect": "GET /: cannot connect to ..."}."""
    timers: Optional[TimerLog] = None
    """Per-request and per-iteration records, when the spec asks for them."""

    @property
    def duration_s(self) -> Optional[float]:
        if self.started_at is None or self.finished_at is None:
            return None
        return max(self.finished_at - self.started_at, 0.0)

    @property
    def rps(self) -> Optional[float]:
        duration = self.duration_s
        return self.total.count / duration if duration else None

    def summary(self) -> ShardSummary:
        """The termination-message view of the shard's metrics."""
        total = self.total
        summary = ShardSummary(
            shard=self.shard,
            requests=total.count,
            failures=total.error_count,
            errors={kind: n for kind, n in total.errors_by_kind().items() if n},
            started_at=self.started_at,
            finished_at=self.finished_at,
            aborted=self.aborted or None,
            abort_reason=self.abort_reason,
        )
        if total.count:
            hist = total.histogram
            summary.min_ms = round(hist.min() / 1000.0, 3)
            summary.max_ms = round(hist.max() / 1000.0, 3)
            summary.total_ms = round(hist.mean() * total.count / 1000.0, 3)
            summary.set_histogram(hist, SUMMARY_DIGITS)
        return summary

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "runId": self.run_id,
            "shard": self.shard,
            "shards": self.shards,
            "startedAt": _iso(self.started_at),
            "finishedAt": _iso(self.finished_at),
            "requests": {name: s.to_dict() for name, s in self.requests.items()},
            "total": self.total.to_dict(),
            "timeline": [entry.to_dict() for entry in self.timeline],
            "criteria": [c.to_dict() for c in self.criteria],
            "aborted": self.aborted,
            "abortReason": self.abort_reason,
            "droppedIterations": self.dropped_iterations,
            "errorSamples": self.error_samples,
            **({"timers": self.timers.to_dict()} if self.timers is not None else {}),
        }

    def to_json(self, indent: Optional[int] = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, data: str | bytes | dict[str, Any]) -> ShardMetrics:
        if not isinstance(data, dict):
            data = json.loads(data)
        if data.get("version", VERSION) != VERSION:
            raise ValueError(f"unsupported load metrics version {data.get('version')!r}")
        return cls(
            run_id=data.get("runId") or "",
            shard=data.get("shard"),
            shards=int(data.get("shards") or 1),
            started_at=epoch(data.get("startedAt")),
            finished_at=epoch(data.get("finishedAt")),
            requests={n: Stats.from_dict(s) for n, s in (data.get("requests") or {}).items()},
            total=Stats.from_dict(data.get("total") or {}),
            timeline=[TimelineEntry.from_dict(e) for e in data.get("timeline") or []],
            criteria=[
                CriterionResult(c["criterion"], c.get("observed"), bool(c.get("passed")))
                for c in data.get("criteria") or []
            ],
            aborted=bool(data.get("aborted")),
            abort_reason=data.get("abortReason"),
            dropped_iterations=int(data.get("droppedIterations") or 0),
            error_samples=dict(data.get("errorSamples") or {}),
            timers=TimerLog.from_dict(data["timers"]) if data.get("timers") else None,
        )


def _iso(epoch: Optional[float]) -> Optional[str]:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def merge(parts: Iterable[ShardMetrics], *, shard: Optional[int] = None, shards: Optional[int] = None) -> ShardMetrics:
    """Shards (or the processes of one shard) as one: counts and histograms add, timelines
    align on the epoch second, the run spans the earliest start to the latest finish.

    The result's `shard` is None (all shards) unless given; criteria are left empty for the
    caller to evaluate on the merged whole (criteria.evaluate)."""
    parts = list(parts)
    out = ShardMetrics(
        run_id=next((p.run_id for p in parts if p.run_id), ""),
        shard=shard,
        shards=shards if shards is not None else max((p.shards for p in parts), default=1),
    )
    starts = [p.started_at for p in parts if p.started_at is not None]
    finishes = [p.finished_at for p in parts if p.finished_at is not None]
    out.started_at = min(starts) if starts else None
    out.finished_at = max(finishes) if finishes else None
    seconds: dict[int, TimelineEntry] = {}
    for part in parts:
        _add_named(out.requests, part.requests)
        out.total.add(part.total)
        for entry in part.timeline:
            merged = seconds.get(entry.second)
            if merged is None:
                merged = seconds[entry.second] = TimelineEntry(entry.second)
            _add_named(merged.requests, entry.requests)
            merged.total.add(entry.total)
            merged.active_users += entry.active_users
        if part.aborted:
            out.aborted = True
            if part.abort_reason and not out.abort_reason:
                where = f"shard {part.shard}: " if part.shard is not None and len(parts) > 1 else ""
                out.abort_reason = where + part.abort_reason
        out.dropped_iterations += part.dropped_iterations
        for kind, message in part.error_samples.items():
            out.error_samples.setdefault(kind, message)
        if part.timers is not None:
            if out.timers is None:
                out.timers = TimerLog(part.timers.names, part.timers.flows, 0)
            out.timers.extend(part.timers)
    out.timeline = [seconds[s] for s in sorted(seconds)]
    for entry in out.timeline:
        for stats in entry.requests.values():
            stats.compact()
        entry.total.compact()
    return out


def _add_named(into: dict[str, Stats], more: dict[str, Stats]) -> None:
    for name, stats in more.items():
        mine = into.get(name)
        if mine is None:
            mine = into[name] = Stats()
        mine.add(stats)


_STRIDE = 10
_KINDS = ("R", "T")


class TimerLog:
    """Timer records of single requests (`R`) and iterations (`T`): at most `cap` kept, a
    uniform sample of all `seen` beyond that.

    `records` gives them as tuples as the CSV line above has them (R records 10 fields, T
    records 6). They are stored flat in one array of 64-bit integers, 10 per record: 80 bytes
    where a tuple of ints takes about 200, and nothing for the garbage collector to walk.
    A record costs about 0.5 µs on the hot path."""

    __slots__ = ("names", "flows", "cap", "seen", "_data", "_random")

    def __init__(self, names: list[str], flows: list[str], cap: int):
        self.names, self.flows, self.cap = list(names), list(flows), cap
        self.seen = 0
        self._data = array("q")
        self._random = random.Random()

    def __len__(self) -> int:
        return len(self._data) // _STRIDE

    @property
    def sampled(self) -> bool:
        return self.seen > len(self)

    @property
    def records(self) -> list[tuple]:
        data = self._data
        out: list[tuple] = []
        for at in range(0, len(data), _STRIDE):
            kind = data[at]
            fields = data[at + 1 : at + (_STRIDE if kind == 0 else 6)]
            out.append((_KINDS[kind], *fields))
        return out

    def _add(self, record: tuple[int, ...]) -> None:
        self.seen += 1
        if len(self._data) < self.cap * _STRIDE:
            self._data.extend(record)
        else:
            j = self._random.randrange(self.seen)
            if j < self.cap:
                self._data[j * _STRIDE : (j + 1) * _STRIDE] = array("q", record)

    def request(
        self,
        index: int,
        flow: int,
        user: int,
        start_ms: int,
        runtime_us: int,
        error: int,
        status: int,
        sent: int,
        received: int,
    ) -> None:
        self._add((0, index, flow, user, start_ms, runtime_us, error, status, sent, received))

    def iteration(self, flow: int, user: int, start_ms: int, runtime_us: int, failed: bool) -> None:
        self._add((1, flow, user, start_ms, runtime_us, 1 if failed else 0, 0, 0, 0, 0))

    def extend(self, other: TimerLog) -> None:
        """Add another process's log of the same shard (same names, same flows)."""
        if other.names != self.names or other.flows != self.flows:
            raise ValueError("timer logs of different request or flow names do not merge")
        self.seen += other.seen
        self.cap += other.cap
        self._data.extend(other._data)

    def to_dict(self) -> dict[str, Any]:
        text = "".join(",".join(map(str, r)) + "\n" for r in self.records)
        return {
            "names": self.names,
            "flows": self.flows,
            "seen": self.seen,
            "cap": self.cap,
            "records": base64.b64encode(gzip.compress(text.encode(), 6, mtime=0)).decode(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TimerLog:
        log = cls(data.get("names") or [], data.get("flows") or [], int(data.get("cap") or 0))
        text = gzip.decompress(base64.b64decode(data.get("records") or "")).decode() if data.get("records") else ""
        for line in text.splitlines():
            kind, *fields = line.split(",")
            row = [_KINDS.index(kind), *map(int, fields)]
            log._data.extend(row + [0] * (_STRIDE - len(row)))
        log.seen = max(int(data.get("seen") or 0), len(log))
        return log


# --- the hot path -----------------------------------------------------------------------------


class _Bucket:
    """One request name's raw samples in the current second."""

    __slots__ = ("latencies", "errors", "sent", "received", "redirects")

    def __init__(self):
        self.latencies: list[int] = []
        self.errors = [0] * len(ERROR_KINDS)
        self.sent = 0
        self.received = 0
        self.redirects = 0


class Recorder:
    """Collects samples during the run, a second at a time.

    `record()` is the only call per request: it appends the latency to the current second's
    list for the request name and adds the counts. `advance()` closes seconds (cheaply: the
    lists are set aside), and `flush()`, which the engine calls from its once-a-second ticker,
    turns the closed seconds into histograms, so the per-request cost stays a list append.
    The engine keeps `active` up to date; `peak` is the most active during the second.
    """

    def __init__(self, names: list[str], started_at: float):
        self.names = list(names)
        self.started_at = started_at
        self.second = int(started_at)
        self.buckets = [_Bucket() for _ in self.names]
        self.active = 0
        self.peak = 0
        self._closed: list[tuple[int, Optional[list[_Bucket]], int]] = []
        self.timeline: list[TimelineEntry] = []
        self.totals = {name: Stats() for name in self.names}
        self.total = Stats()
        self.recent: deque[tuple[int, Stats]] = deque(maxlen=RECENT_SECONDS)
        """The last seconds' totals with their histograms, for progress and the watchdog."""

    def index(self, name: str) -> int:
        return self.names.index(name)

    def record(
        self, index: int, second: int, latency_us: int, sent: int, received: int, error: int, redirects: int = 0
    ) -> None:
        """One request: `error` is -1 for success or the index of its kind in ERROR_KINDS;
        `redirects` the hops it followed."""
        if second != self.second and second > self.second:
            self.advance(second)
        bucket = self.buckets[index]
        bucket.latencies.append(latency_us)
        bucket.sent += sent
        bucket.received += received
        if error >= 0:
            bucket.errors[error] += 1
        if redirects:
            bucket.redirects += redirects

    def advance(self, second: int) -> None:
        """Close every second before `second`; seconds without requests close empty."""
        if second <= self.second:
            return
        self._closed.append((self.second, self.buckets, self.peak))
        for empty in range(self.second + 1, second):
            self._closed.append((empty, None, self.active))
        self.second = second
        self.buckets = [_Bucket() for _ in self.names]
        self.peak = self.active

    def flush(self) -> list[TimelineEntry]:
        """Turn the closed seconds into timeline entries and add them to the totals."""
        closed, self._closed = self._closed, []
        entries = []
        for second, buckets, active in closed:
            entry = TimelineEntry(second, active_users=active)
            if buckets is not None:
                for name, bucket in zip(self.names, buckets):
                    if not bucket.latencies:
                        continue
                    histogram = Histogram()
                    histogram.record_many(bucket.latencies)
                    stats = Stats(
                        len(bucket.latencies),
                        bucket.errors,
                        bucket.sent,
                        bucket.received,
                        histogram,
                        redirects=bucket.redirects,
                    )
                    entry.requests[name] = stats
                    entry.total.add(stats)
                    self.totals[name].add(stats)
                    stats.compact()
                self.total.add(entry.total)
            recent = Stats(entry.total.count, list(entry.total.errors), histogram=entry.total.histogram.copy())
            self.recent.append((second, recent))
            entry.total.compact()
            self.timeline.append(entry)
            entries.append(entry)
        return entries

    def finish(self, finished_at: float) -> list[TimelineEntry]:
        """Close the last (partial) second and flush everything."""
        self.advance(int(finished_at) + 1)
        return self.flush()

    def metrics(self, **fields) -> ShardMetrics:
        requests = {name: stats for name, stats in self.totals.items() if stats.count}
        return ShardMetrics(
            requests=requests, total=self.total, timeline=self.timeline, started_at=self.started_at, **fields
        )


def error_index(kind: Optional[str]) -> int:
    return -1 if kind is None else _KIND_INDEX[kind]
