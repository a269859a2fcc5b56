"""What happens when a TestSuite's, Monitor's or LoadTest's status changes: the one place that
learns of finished runs, whichever path recorded them (a requested run's Jobs, a scheduled
batch, a LoadTest's Job).

`status_written(kind, owner, before, after, logger)` is called after every successful status
write with the owner as read before the write and the status before and after it. It must
be cheap and must never raise into the caller: a run's outcome is decided before it is called.
For each run that finished in the write it counts the run in the metrics and, for a Monitor
whose run has anything to send (notify.has_something_to_send), hands the run to the
notification workers (notify.py), which never block the caller.

Its level-based counterpart is the Monitor handler `monitor.monitor_seen`.
"""

from __future__ import annotations

import logging

from assay.crds.runs import has_finished
from assay.crds.times import seconds_between

from . import metrics, notify
from .settings import get_settings


def _runs(kind: str, status: dict) -> list[dict]:
    """The run records of a status: a LoadTest's status is its one run."""
    if kind == "LoadTest":
        return [status] if status else []
    return [e for e in [status.get("lastRun") or {}, *(status.get("history") or [])] if e.get("runId")]


def finished_runs(kind: str, before: dict, after: dict) -> list[tuple[str, str, float | None]]:
    """(run id, result, duration in seconds) of each run finished in `after` but not in `before`."""
    if kind == "LoadTest":
        after = {**before, **after}  # a LoadTest's status writes carry only the fields they change
    was_done = {e.get("runId") or "" for e in _runs(kind, before) if has_finished(e)}
    found: dict[str, tuple[str, str, float | None]] = {}
    for entry in _runs(kind, after):
        run_id = entry.get("runId") or ""
        if has_finished(entry) and run_id not in was_done and run_id not in found:
            found[run_id] = (
                run_id,
                entry["result"],
                seconds_between(entry.get("startTime"), entry.get("completionTime")),
            )
    return list(found.values())


def status_written(kind: str, owner: dict, before: dict, after: dict, logger: logging.Logger) -> None:
    """Called after a status write; reacts to runs that finished in it."""
    try:
        runs = finished_runs(kind, before or {}, after or {})
        for _, result, duration in runs:
            metrics.run_finished(kind, result, duration)
        if kind == "Monitor" and runs and notify.has_notifications(owner.get("spec") or {}):
            # Most Monitors send nothing: asking the owner as written (as monitor.monitor_seen
            # does) spares the notifier a read of each of them per run (10,000 a minute at scale).
            written = {**owner, "status": {**before, **after}}
            mail = bool(get_settings().smtp_host)
            wanted = [run_id for run_id, _, _ in runs if notify.has_something_to_send(written, run_id, mail)]
            if wanted:
                meta = owner["metadata"]
                notify.notifier().submit(meta["namespace"], meta["name"], wanted)
    except Exception as exc:  # noqa: BLE001  (the run's outcome is written; this is bookkeeping)
        logger.warning(f"after the status write: {type(exc).__name__}: {exc}")
