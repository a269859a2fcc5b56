"""The operator's Prometheus metrics, served on /metrics (--metrics-port, ASSAY_METRICS_PORT).

* assay_operator_runs_total{kind,outcome}: finished runs (counted by the replica that wrote
  the finished status, once per run).
* assay_operator_run_duration_seconds{kind}: start to finish of those runs.
* assay_operator_reconcile_errors_total{kind}: handler exceptions, as Kopf reports them.
* assay_monitor_last_result{namespace,monitor}: 1 the last run passed, 0 it failed;
  assay_monitor_response_time_seconds: the last run's mean response time;
  assay_monitor_success_ratio: passed / finished runs in status.history. These three are
  read from each Monitor's status whenever it changes (so a new leader has them at once) and
  removed when the Monitor is deleted.
* assay_monitor_consecutive_failures{namespace,monitor}: how many of the newest finished runs
  in status.history did not pass, counted from the newest (so capped by the history's length).
* assay_schedule_last_run_timestamp_seconds{namespace,schedule,target_kind,target}: the
  Schedule's CronJobs' lastScheduleTime, or its anchorTime before the first run (a Schedule
  that never ran is overdue from there); assay_schedule_interval_seconds: the length of its
  Runscope interval (absent for cron expressions, whose gaps vary). Set by the pass that writes
  the Schedules' status, for every Schedule not suspended; a namespace's series are replaced
  on each pass, so deleted and suspended Schedules lose theirs.

Outcomes are a run's `result` in lower case: passed, failed, aborted.
"""

from __future__ import annotations

import logging

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from assay.crds.runs import has_finished
from assay.crds.schedule import interval_seconds
from assay.crds.times import epoch

RUNS = Counter("assay_operator_runs_total", "Finished runs by kind and outcome.", ["kind", "outcome"])
RUN_DURATION = Histogram(
    "assay_operator_run_duration_seconds",
    "Duration of finished runs.",
    ["kind"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600),
)
RECONCILE_ERRORS = Counter(
    "assay_operator_reconcile_errors_total", "Exceptions raised by the operator's handlers.", ["kind"]
)
MONITOR_LAST_RESULT = Gauge(
    "assay_monitor_last_result", "1 if the Monitor's last run passed, 0 if it failed.", ["namespace", "monitor"]
)
MONITOR_RESPONSE_TIME = Gauge(
    "assay_monitor_response_time_seconds", "Mean response time of the Monitor's last run.", ["namespace", "monitor"]
)
MONITOR_SUCCESS_RATIO = Gauge(
    "assay_monitor_success_ratio",
    "Passed share of the finished runs in the Monitor's status history.",
    ["namespace", "monitor"],
)
MONITOR_CONSECUTIVE_FAILURES = Gauge(
    "assay_monitor_consecutive_failures",
    "Finished runs in a row, newest first, that did not pass.",
    ["namespace", "monitor"],
)
_MONITOR_GAUGES = (MONITOR_LAST_RESULT, MONITOR_RESPONSE_TIME, MONITOR_SUCCESS_RATIO, MONITOR_CONSECUTIVE_FAILURES)
_MONITOR_FIGURES = ("last_result", "response_time_seconds", "success_ratio", "consecutive_failures")
_SCHEDULE_LABELS = ["namespace", "schedule", "target_kind", "target"]
SCHEDULE_LAST_RUN = Gauge(
    "assay_schedule_last_run_timestamp_seconds",
    "The Schedule's last run (its anchor time before the first), Unix time.",
    _SCHEDULE_LABELS,
)
SCHEDULE_INTERVAL = Gauge("assay_schedule_interval_seconds", "The length of the Schedule's interval.", _SCHEDULE_LABELS)
_schedule_series: dict[str, set[tuple[str, ...]]] = {}


def serve(port: int, registry: CollectorRegistry = REGISTRY) -> None:
    """/metrics on 0.0.0.0:`port`, from a daemon thread."""
    start_http_server(port, registry=registry)


def run_finished(kind: str, result: str, duration_seconds: float | None) -> None:
    RUNS.labels(kind=kind, outcome=result.lower()).inc()
    if duration_seconds is not None:
        RUN_DURATION.labels(kind=kind).observe(duration_seconds)


def monitor_figures(status: dict) -> dict:
    """The per-Monitor gauges' values from its status: `last_result`, `response_time_seconds`,
    `success_ratio`, `consecutive_failures`, each absent when the status has nothing to say
    about it."""
    finished = [e for e in status.get("history") or [] if has_finished(e)]
    figures: dict[str, float] = {}
    if finished:
        last = finished[0]
        figures["last_result"] = 1.0 if last["result"] == "Passed" else 0.0
        if isinstance(last.get("responseTimeMs"), (int, float)):
            figures["response_time_seconds"] = last["responseTimeMs"] / 1000.0
        figures["success_ratio"] = sum(e["result"] == "Passed" for e in finished) / len(finished)
        failures = next((i for i, e in enumerate(finished) if e["result"] == "Passed"), len(finished))
        figures["consecutive_failures"] = float(failures)
    return figures


def monitor_observed(namespace: str, name: str, status: dict) -> None:
    figures = monitor_figures(status)
    for gauge, key in zip(_MONITOR_GAUGES, _MONITOR_FIGURES):
        if key in figures:
            gauge.labels(namespace=namespace, monitor=name).set(figures[key])
        else:
            _remove(gauge, namespace, name)


def monitor_deleted(namespace: str, name: str) -> None:
    for gauge in _MONITOR_GAUGES:
        _remove(gauge, namespace, name)


def _remove(gauge: Gauge, *labels: str) -> None:
    try:
        gauge.remove(*labels)
    except KeyError:
        pass


def schedules_observed(namespace: str, schedules: list[dict]) -> None:
    """The namespace's Schedule gauges from its Schedules as their status now is (each dict
    a Schedule with the status just written); series of Schedules not in the list go."""
    seen: set[tuple[str, ...]] = set()
    for schedule in schedules:
        spec, status = schedule.get("spec") or {}, schedule.get("status") or {}
        if spec.get("suspend"):
            continue
        target = spec.get("target") or {}
        labels = (namespace, schedule["metadata"]["name"], target.get("kind", ""), target.get("name", ""))
        last = epoch(status.get("lastScheduleTime") or status.get("anchorTime"))
        if last is None:
            continue
        seen.add(labels)
        SCHEDULE_LAST_RUN.labels(*labels).set(last)
        interval = interval_seconds(spec.get("interval", ""))
        if interval is None:
            _remove(SCHEDULE_INTERVAL, *labels)
        else:
            SCHEDULE_INTERVAL.labels(*labels).set(interval)
    for labels in _schedule_series.get(namespace, set()) - seen:
        _remove(SCHEDULE_LAST_RUN, *labels)
        _remove(SCHEDULE_INTERVAL, *labels)
    _schedule_series[namespace] = seen


class HandlerErrorCounter(logging.Handler):
    """Counts Kopf's "Handler '…' failed …" records by the object's kind. Kopf logs every
    handler exception this way (retried, temporary or permanent), with the object in
    `record.k8s_ref`, so counting here covers every handler without wrapping each one."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith(("Handler '", "Timer '", "Daemon '")) and " failed " in message:
            kind = (getattr(record, "k8s_ref", None) or {}).get("kind") or "unknown"
            RECONCILE_ERRORS.labels(kind=kind).inc()
