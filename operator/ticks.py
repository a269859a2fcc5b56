"""Tick Jobs into Monitor (and TestSuite) statuses: when a schedule tick's Job finishes, each
member's run is recorded in its owner's `status.lastRun` and `history` (newest first, at most
settings.run_history_limit), with its `Complete` condition, exactly once (tickresults.py
computes the entries and the statuses). A Monitor run's entry is a MonitorRun with `schedule`
set; a TestSuite run's a SuiteRun.

Re-reading a Job, a repeated event or a restarted operator records nothing twice. Writes go
through status.update_status, then `runevents.status_written` hears of them as it does of
requested runs. The requested-run path (runs.reconcile_status) keeps these entries: they are
finished runs without Jobs of the Monitor's own.

A tick pod that left no outcomes (killed, out of memory) records nothing for its members;
the Job's failure is logged.

The writes of every tick, whichever namespace it ran in, share one pool of
settings.status_writers threads (`write_runs`): ticks of many namespaces finishing in the
same minute are written concurrently, and never more at once than that bound, over the one
connection pool of kube.py.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import kopf

from assay.crds.runrequest import InvalidRunRequest

from . import kube, runevents
from .monitorruns import start_requested_run
from .names import LABEL_TICK_GROUP
from .runsecrets import MissingSecret
from .runstatus import TERMINAL_PHASES, job_phase
from .settings import get_settings
from .status import update_status
from .tickresults import outcomes_of, retry_request, tick_entries, with_scheduled_run

MONITORS = "monitors"
SUITES = "testsuites"
SCHEDULES = "schedules"
REMEMBERED_JOBS = 1000


def record_run(
    namespace: str, kind: str, name: str, entry: dict, limit: int, logger: logging.Logger, owner: dict | None = None
) -> bool:
    """Record one run into the owner's status; True if this call wrote it. `owner` is the
    owner as listed, saving the first read; a conflict reads it again."""
    written = update_status(
        kind,
        namespace,
        name,
        lambda current: with_scheduled_run(
            current.get("status") or {}, entry, limit, current["metadata"].get("generation")
        ),
        first=owner,
    )
    if written is None:
        return False
    runevents.status_written(kind, written.obj, written.before, written.after, logger)
    return True


_writers: ThreadPoolExecutor | None = None
_writers_lock = threading.Lock()


def writers() -> ThreadPoolExecutor:
    global _writers
    with _writers_lock:
        if _writers is None:
            _writers = ThreadPoolExecutor(get_settings().status_writers, thread_name_prefix="assay-status")
        return _writers


def write_runs(namespace: str, entries: list[tuple[str, str, dict]], listed: dict, logger: logging.Logger) -> int:
    """Record each (kind, owner name, entry) on the shared writers; how many were written.
    `listed` has the owners as listed, by (kind, name)."""
    limit = get_settings().run_history_limit
    futures = [
        writers().submit(record_run, namespace, kind, name, entry, limit, logger, listed.get((kind, name)))
        for kind, name, entry in entries
    ]
    written, failed = 0, None
    for future in futures:
        try:
            written += future.result()
        except Exception as exc:  # noqa: BLE001  (the others are written; the first failure is raised)
            failed = failed or exc
    if failed is not None:
        raise failed
    return written


_done: collections.OrderedDict[str, None] = collections.OrderedDict()
_done_lock = threading.Lock()


def record_tick(namespace: str, job: dict, logger: logging.Logger) -> int:
    """Record every member run of a finished tick Job; returns how many were written."""
    started = time.monotonic()
    pods = kube.list_job_pods(namespace, job["metadata"]["name"])
    outcomes, problems = outcomes_of(pods)
    for problem in problems:
        logger.warning(f"tick {job['metadata']['name']}: {problem}")
    if not outcomes:
        return 0
    monitors, suites = kube.list_custom(MONITORS, namespace), kube.list_custom(SUITES, namespace)
    listed = {
        (kind, o["metadata"]["name"]): o
        for kind, owners in (("Monitor", monitors), ("TestSuite", suites))
        for o in owners
    }
    entries = tick_entries(job, outcomes, monitors, kube.list_custom(SCHEDULES, namespace), suites)
    written = write_runs(namespace, entries, listed, logger)
    logger.info(
        f"tick {job['metadata']['name']}: {len(outcomes)} runs, {written} recorded in {time.monotonic() - started:.1f}s"
    )
    for kind, name, entry in entries:
        monitor = listed.get((kind, name)) if kind == "Monitor" else None
        request = retry_request(monitor, entry) if monitor is not None else None
        if request is not None:
            try:
                start_requested_run(monitor, request, monitor.get("status") or {}, get_settings(), logger)
            except (InvalidRunRequest, MissingSecret) as exc:
                logger.warning(f"{name}: cannot retry run {entry['runId']}: {exc}")
    return written


@kopf.on.event("batch", "v1", "jobs", labels={LABEL_TICK_GROUP: kopf.PRESENT})
def tick_job_finished(body, type, namespace, logger, **_):
    if type == "DELETED":
        return
    job = {"metadata": dict(body["metadata"]), "status": dict(body.get("status") or {})}
    phase, _ = job_phase(job, [])
    uid = job["metadata"].get("uid")
    if phase not in TERMINAL_PHASES or uid in _done:
        return
    record_tick(namespace, job, logger)
    with _done_lock:
        # Later events of the same finished Job (pod cleanup, history deletion) need no reading.
        _done[uid] = None
        while len(_done) > REMEMBERED_JOBS:
            _done.popitem(last=False)
