"""Tick Jobs into Monitor statuses: when a schedule tick's Job finishes, each member's run is
recorded in its Monitor's `status.lastRun` and `history` (newest first, at most
settings.run_history_limit), with its `Complete` condition, exactly once.

Each tick pod's termination message lists its members' outcomes (assay.runner.batch.Outcome:
Monitor and Schedule uid prefixes, pass/fail, mean response time, start, duration); the run
id is recomputed from the Monitor, the Schedule and the tick (the Job name's suffix), as the
runner computed it for its upload. Recording is idempotent: a run already in the history
(from the same location) changes nothing, so re-reading a Job, a repeated event or a
restarted operator records nothing twice; the same run from another location's Job (a
Monitor in two regions) merges into the same entry: regions united, failed if any failed.

Writes carry the Monitor's resourceVersion and are recomputed on a conflict, then
`runevents.status_written` hears of them as it does of requested runs. The requested-run
path (runs.reconcile_status) keeps these entries: they are finished runs without Jobs of the
Monitor's own.

A tick pod that left no outcomes (killed, out of memory) records nothing for its members;
the Job's failure is logged.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import kopf
from pydantic import ValidationError

from assay.crds.monitor import MonitorSpec
from assay.crds.runrequest import InvalidRunRequest
from assay.runner.batch import UID_PREFIX, Outcome, decode_outcomes, tick_of

from . import kube, runevents
from .monitor import find_environment
from .names import LABEL_LOCATION, LABEL_TICK_GROUP, run_id_for_request
from .runhistory import _complete_condition
from .runstatus import INDEX_ANNOTATION, TERMINAL_PHASES, job_phase, terminated_state
from .settings import get_settings

KIND = "Monitor"
MONITORS = "monitors"
SCHEDULES = "schedules"
CONFLICT_RETRIES = 5
WRITERS = 8
REMEMBERED_JOBS = 1000

log = logging.getLogger("assay.operator.ticks")


# --- pure ----------------------------------------------------------------------------------


def _iso(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def outcomes_of(pods: list[dict]) -> tuple[list[Outcome], list[str]]:
    """Every member outcome of a tick Job's pods (the latest pod per completion index), and
    the problems of pods that left none."""
    latest: dict[str, tuple[str, dict, dict]] = {}
    for pod in pods:
        terminated = terminated_state(pod)
        if not terminated:
            continue
        index = ((pod.get("metadata") or {}).get("annotations") or {}).get(INDEX_ANNOTATION, "0")
        finished = str(terminated.get("finishedAt") or "")
        if index not in latest or finished >= latest[index][0]:
            latest[index] = (finished, terminated, pod)
    outcomes, problems = [], []
    for index, (_, terminated, pod) in sorted(latest.items()):
        found, error = decode_outcomes(terminated.get("message"))
        outcomes += found
        if error or (not found and terminated.get("exitCode")):
            problems.append(f"pod {pod['metadata']['name']}: {error or 'exited ' + str(terminated.get('exitCode'))}")
    return outcomes, problems


def _environment(monitor: dict, schedule: dict) -> str | None:
    try:
        env = find_environment(MonitorSpec.model_validate(monitor["spec"]),
                               (schedule.get("spec") or {}).get("environment"))
    except (InvalidRunRequest, ValidationError):
        return None
    return env.name if env else None


def tick_entries(job: dict, outcomes: list[Outcome], monitors: list[dict],
                 schedules: list[dict]) -> list[tuple[str, dict]]:
    """(Monitor name, MonitorRun entry) for each outcome whose Monitor and Schedule exist."""
    meta = job["metadata"]
    tick = tick_of(meta["name"])
    location = (meta.get("labels") or {}).get(LABEL_LOCATION)
    monitors_by_uid = {m["metadata"]["uid"][:UID_PREFIX]: m for m in monitors}
    schedules_by_uid = {s["metadata"]["uid"][:UID_PREFIX]: s for s in schedules}
    entries = []
    for outcome in outcomes:
        monitor, schedule = monitors_by_uid.get(outcome.monitor_uid), schedules_by_uid.get(outcome.schedule_uid)
        if monitor is None or schedule is None:
            continue
        mmeta = monitor["metadata"]
        entry = {
            "runId": run_id_for_request(mmeta["name"], mmeta["uid"], f"schedule:{schedule['metadata']['uid']}:{tick}"),
            "result": "pass" if outcome.passed else "fail",
            "startedAt": _iso(outcome.started_at),
            "finishedAt": _iso(outcome.started_at + outcome.seconds),
            "environment": _environment(monitor, schedule),
            "regions": [location] if location else None,
            "responseTimeMs": outcome.response_time_ms,
            "schedule": schedule["metadata"]["name"],
        }
        entries.append((mmeta["name"], {k: v for k, v in entry.items() if v is not None}))
    return entries


def _merge(old: dict, new: dict) -> dict:
    merged = {**old, "regions": sorted(set(old.get("regions") or []) | set(new.get("regions") or [])),
              "result": "pass" if old.get("result") == new.get("result") == "pass" else "fail",
              "startedAt": min(old["startedAt"], new["startedAt"]),
              "finishedAt": max(old.get("finishedAt") or "", new.get("finishedAt") or "") or None}
    times = [e["responseTimeMs"] for e in (old, new) if e.get("responseTimeMs") is not None]
    merged["responseTimeMs"] = round(sum(times) / len(times)) if times else None
    return {k: v for k, v in merged.items() if v is not None}


def _message(entry: dict) -> str:
    where = f" in {', '.join(entry['regions'])}" if entry.get("regions") else ""
    return f"run {entry['runId']} scheduled by {entry.get('schedule')}{where}: {entry['result']}"


def with_scheduled_run(status: dict, entry: dict, limit: int, generation: int | None = None) -> dict | None:
    """The status with `entry` recorded; None when it is recorded already (or older than a
    full history)."""
    history = [dict(e) for e in status.get("history") or []]
    last = status.get("lastRun")
    if last and last.get("runId") and all(e.get("runId") != last["runId"] for e in history):
        history.insert(0, dict(last))
    index = next((i for i, e in enumerate(history) if e.get("runId") == entry["runId"]), None)
    if index is not None:
        old = history[index]
        if set(entry.get("regions") or []) <= set(old.get("regions") or []) and \
                old.get("result") in ("pass", "fail"):
            return None
        history[index] = _merge(old, entry) if old.get("result") in ("pass", "fail") else entry
    else:
        if len(history) >= limit and entry["startedAt"] < min(e.get("startedAt") or "" for e in history):
            return None
        history.append(entry)
    history.sort(key=lambda e: e.get("startedAt") or "", reverse=True)
    history = history[:limit]
    previous = {c.get("type"): c for c in status.get("conditions") or []}
    message = _message(history[0]) if history[0]["runId"] == entry["runId"] else None
    complete = _complete_condition(history[0], message, previous.get("Complete"), generation)
    conditions = [c for c in status.get("conditions") or [] if c.get("type") != "Complete"] + [complete]
    return {**status, "lastRun": history[0], "history": history, "conditions": conditions}


# --- I/O -----------------------------------------------------------------------------------


def record_run(namespace: str, name: str, entry: dict, limit: int, logger: logging.Logger) -> bool:
    """Record one run into the Monitor's status; True if this call wrote it."""
    for _ in range(CONFLICT_RETRIES):
        owner = kube.read_custom(MONITORS, namespace, name)
        if owner is None:
            return False
        current = owner.get("status") or {}
        new = with_scheduled_run(current, entry, limit, owner["metadata"].get("generation"))
        if new is None:
            return False
        try:
            kube.patch_status(MONITORS, namespace, name, new, owner["metadata"]["resourceVersion"])
        except kube.Conflict:
            continue
        runevents.status_written(KIND, owner, current, new, logger)
        return True
    raise kube.Conflict(f"{MONITORS}/{name}: status kept changing under {CONFLICT_RETRIES} attempts")


_done: collections.OrderedDict[str, None] = collections.OrderedDict()
_done_lock = threading.Lock()


def record_tick(namespace: str, job: dict, logger: logging.Logger) -> int:
    """Record every member run of a finished tick Job; returns how many were written."""
    pods = kube.list_job_pods(namespace, job["metadata"]["name"])
    outcomes, problems = outcomes_of(pods)
    for problem in problems:
        logger.warning(f"tick {job['metadata']['name']}: {problem}")
    if not outcomes:
        return 0
    entries = tick_entries(job, outcomes, kube.list_custom(MONITORS, namespace), kube.list_custom(SCHEDULES, namespace))
    limit = get_settings().run_history_limit
    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        written = sum(pool.map(lambda item: record_run(namespace, item[0], item[1], limit, logger), entries))
    logger.info(f"tick {job['metadata']['name']}: {len(outcomes)} runs, {written} recorded")
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
