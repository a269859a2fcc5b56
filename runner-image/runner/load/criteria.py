"""Pass/fail criteria on a run's metrics, and the watchdog that aborts a failing run.

Criteria (`LoadTestSpec.criteria`, parsed by `assay.crds.loadtest.parse_criterion`) are
judged on the merged metrics of all shards:

    p50 p90 p95 p99 max avg   latency in ms, from the merged histogram
    error_rate                errors as a percentage of all requests
    rps                       requests per second over the run (first start to last finish)

A criterion without an observation (no requests at all) fails.

The watchdog judges `abortOnErrorRate` while the run goes on, per shard (shards cannot see
each other): over a sliding window of the last `window` seconds, once the window holds at
least `min_requests` requests, an error rate above the threshold aborts the shard. The
minimum keeps the first handful of requests of a run from deciding it alone.
"""

from __future__ import annotations

from collections import deque
from typing import Optional

from assay.crds.loadtest import ParsedCriterion, parse_criterion

from .metrics import CriterionResult, ShardMetrics

ABORT_WINDOW_SECONDS = 10
ABORT_MIN_REQUESTS = 20


def observe(metric: str, metrics: ShardMetrics) -> Optional[float]:
    """The value of `metric` in the criterion's units (ms, percent, requests per second)."""
    total = metrics.total
    if not total.count:
        return None
    if metric == "error_rate":
        return round(total.error_rate, 6)
    if metric == "rps":
        rps = metrics.rps
        return round(rps, 6) if rps is not None else None
    value = total.latency_ms(metric)
    return round(value, 3) if value is not None else None


def evaluate(criteria: list[ParsedCriterion | str], metrics: ShardMetrics) -> list[CriterionResult]:
    results = []
    for criterion in criteria:
        parsed = parse_criterion(criterion) if isinstance(criterion, str) else criterion
        observed = observe(parsed.metric, metrics)
        results.append(CriterionResult(parsed.text, observed, observed is not None and parsed.passes(observed)))
    return results


def failed(results: list[CriterionResult]) -> list[str]:
    """The texts of the criteria that failed, in order."""
    return [r.criterion for r in results if not r.passed]


def describe(result: CriterionResult) -> str:
    """`p95 < 300ms: observed 412.0` - one line for logs and status messages."""
    observed = "no requests" if result.observed is None else f"observed {result.observed:g}"
    return f"{result.criterion}: {observed} ({'passed' if result.passed else 'FAILED'})"


class AbortWatchdog:
    """Aborts when the error rate over the last seconds exceeds `threshold` percent."""

    def __init__(self, threshold: float, window: int = ABORT_WINDOW_SECONDS, min_requests: int = ABORT_MIN_REQUESTS):
        self.threshold, self.window, self.min_requests = threshold, window, min_requests
        self._seconds: deque[tuple[int, int]] = deque(maxlen=window)

    def observe(self, count: int, errors: int) -> Optional[str]:
        """Add one second's totals; the abort reason if the run must stop, else None."""
        self._seconds.append((count, errors))
        requests = sum(c for c, _ in self._seconds)
        failures = sum(e for _, e in self._seconds)
        if requests < self.min_requests:
            return None
        rate = 100.0 * failures / requests
        if rate > self.threshold:
            span = len(self._seconds)
            return (
                f"error rate {rate:.1f}% ({failures} of {requests} requests in the last {span} s) "
                f"exceeded abortOnErrorRate {self.threshold:g}%"
            )
        return None
