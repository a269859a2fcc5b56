"""The small summary a runner pod reports through its termination message.

Kubernetes keeps at most 4096 bytes of a termination message, so this carries counts, errors
by kind and a compact latency histogram; the full metrics go to the results folder. Shard
summaries merge exactly for counts, min and max; the mean is weighted by request count; the
histograms add, so percentiles of the whole run (`p95_ms`) are read from the merged
histogram, never averaged.

`histogram` is HdrHistogram's base64 V2 encoding of latencies in microseconds (1 µs - 60 s)
at 2 significant digits (values within 1%): a spread over the whole range encodes to some
3.3 kB. Should a message still not fit, it falls back to 1 significant digit (within 10%),
then to no histogram at all (`histogram_digits` says which).

`judge(merge(summaries), spec.criteria)` evaluates the LoadTest's criteria on the merged
summaries, as the runner does on the full metrics (percentiles within 1%). The runner
builds a shard's summary from its full metrics (assay.runner.load.metrics.ShardMetrics.summary);
the operator merges and judges them (assay.operator.runstatus).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field

from .histogram import Histogram, layout

TERMINATION_MESSAGE_LIMIT = 4096
SUMMARY_DIGITS = 2


class ShardSummary(BaseModel):
    model_config = ConfigDict(extra="ignore")

    shard: int | None = None
    requests: int = 0
    failures: int = 0
    min_ms: float | None = None
    max_ms: float | None = None
    total_ms: float = Field(0.0, description="sum of latencies, so means merge exactly")
    error: str | None = Field(None, description="why the shard could not run, if it could not")
    errors: dict[str, int] = Field(default_factory=dict, description="failed requests by kind")
    histogram: str | None = Field(None, description="base64 HdrHistogram of latencies in µs")
    histogram_digits: int | None = Field(None, description="significant digits of `histogram`")
    started_at: float | None = Field(None, description="epoch seconds")
    finished_at: float | None = Field(None, description="epoch seconds")
    aborted: bool | None = None
    abort_reason: str | None = None

    @property
    def avg_ms(self) -> float | None:
        return self.total_ms / self.requests if self.requests else None

    @property
    def p95_ms(self) -> float | None:
        return self.percentile_ms(95.0)

    def percentile_ms(self, percentile: float) -> float | None:
        """A latency percentile of the summarised requests, from the histogram."""
        hist = self.latency_histogram()
        if hist is None or not hist.total:
            return None
        return hist.value_at_percentile(percentile) / 1000.0

    def latency_histogram(self) -> Optional[Histogram]:
        if not self.histogram:
            return None
        return Histogram.decode(self.histogram)

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return max(self.finished_at - self.started_at, 0.0)

    def observe(self, metric: str) -> float | None:
        """The value of a criterion metric (see assay.crds.loadtest.parse_criterion): p50 p90
        p95 p99 max avg in ms, error_rate in percent, rps; None without requests."""
        if not self.requests:
            return None
        if metric == "error_rate":
            return 100.0 * self.failures / self.requests
        if metric == "rps":
            duration = self.duration_s
            return self.requests / duration if duration else None
        if metric == "avg":
            return self.avg_ms
        if metric == "max":
            return self.max_ms
        return self.percentile_ms(float(metric[1:]))

    def record(self, latency_ms: float, ok: bool) -> None:
        self.requests += 1
        self.failures += 0 if ok else 1
        self.total_ms += latency_ms
        self.min_ms = latency_ms if self.min_ms is None else min(self.min_ms, latency_ms)
        self.max_ms = latency_ms if self.max_ms is None else max(self.max_ms, latency_ms)

    def set_histogram(self, hist: Histogram, digits: int) -> None:
        """Keep `hist` at `digits` significant digits."""
        compact = Histogram(layout(hist.layout.lowest, hist.layout.highest, digits))
        compact.add(hist)
        self.histogram, self.histogram_digits = compact.encode(), digits

    def to_message(self) -> str:
        text = self.model_dump_json(exclude_none=True)
        if len(text.encode()) <= TERMINATION_MESSAGE_LIMIT:
            return text
        short = self.model_copy(
            update={"error": (self.error or "")[:500] or None, "abort_reason": (self.abort_reason or "")[:300] or None}
        )
        text = short.model_dump_json(exclude_none=True)
        hist = short.latency_histogram() if len(text.encode()) > TERMINATION_MESSAGE_LIMIT else None
        if hist is not None:
            # Coarser buckets: 1 significant digit always fits (under 1 kB for any spread).
            short.set_histogram(hist, 1)
            text = short.model_dump_json(exclude_none=True)
        if len(text.encode()) > TERMINATION_MESSAGE_LIMIT:
            text = short.model_copy(update={"histogram": None, "histogram_digits": None}).model_dump_json(
                exclude_none=True
            )
        return text

    @classmethod
    def from_message(cls, message: str | None) -> ShardSummary | None:
        if not message:
            return None
        try:
            return cls.model_validate(json.loads(message))
        except (ValueError, TypeError):
            return None


def judge(summary: ShardSummary, criteria: Iterable[str]) -> list[dict]:
    """Criteria on a (merged) summary, as the metrics JSON writes them:
    [{"criterion", "observed", "passed"}]. Percentiles come from the 2-digit histogram, so
    they are within 1% of the full metrics' own."""
    from ..loadtest import parse_criterion

    results = []
    for text in criteria:
        criterion = parse_criterion(text)
        observed = summary.observe(criterion.metric)
        results.append(
            {
                "criterion": text,
                "observed": None if observed is None else round(observed, 3),
                "passed": observed is not None and criterion.passes(observed),
            }
        )
    return results


def merge(summaries: Iterable[ShardSummary]) -> ShardSummary:
    total = ShardSummary()
    histogram = None
    for s in summaries:
        total.requests += s.requests
        total.failures += s.failures
        total.total_ms += s.total_ms
        if s.min_ms is not None:
            total.min_ms = s.min_ms if total.min_ms is None else min(total.min_ms, s.min_ms)
        if s.max_ms is not None:
            total.max_ms = s.max_ms if total.max_ms is None else max(total.max_ms, s.max_ms)
        if s.error and not total.error:
            total.error = s.error
        for kind, n in s.errors.items():
            total.errors[kind] = total.errors.get(kind, 0) + n
        if s.started_at is not None:
            total.started_at = s.started_at if total.started_at is None else min(total.started_at, s.started_at)
        if s.finished_at is not None:
            total.finished_at = s.finished_at if total.finished_at is None else max(total.finished_at, s.finished_at)
        if s.aborted:
            total.aborted = True
            total.abort_reason = total.abort_reason or s.abort_reason
        part = s.latency_histogram()
        if part is not None:
            if histogram is None:
                histogram = part
                total.histogram_digits = s.histogram_digits
            else:
                # Shards that had to send coarser buckets set the precision of the whole.
                if part.layout.digits < histogram.layout.digits:
                    part, histogram = histogram, part
                histogram.add(part)
                total.histogram_digits = histogram.layout.digits
    if histogram is not None:
        total.histogram = histogram.encode()
    return total
