"""Tick Jobs into Monitor (and TestSuite) statuses: when a schedule tick's Job finishes, each
member's run is recorded in its owner's `status.lastRun` and `history` (newest first, at most
settings.run_history_limit), with its `Complete` condition, exactly once. A Monitor run's
entry is a MonitorRun with `schedule` set; a TestSuite run's a SuiteRun.

Each tick pod's termination message lists its members' outcomes (assay.runner.batch.Outcome:
owner and Schedule uid prefixes, pass/fail, mean response time, start, duration); the run
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
import kubernetes
from kubernetes.client.rest import ApiException
from pydantic import ValidationError

from assay.crds.monitor import MonitorSpec
from assay.crds.runs import has_finished
from assay.crds.runrequest import InvalidRunRequest, MonitorRunRequest
from assay.runner.batch import UID_PREFIX, Outcome, decode_outcomes, tick_of

from . import kube, runevents
from .monitor import find_environment, start_requested_run
from .names import GROUP, LABEL_LOCATION, LABEL_TICK_GROUP, VERSION, run_id_for_request
from .runhistory import complete_condition, status_patch
from .runsecrets import MissingSecret
from .runstatus import INDEX_ANNOTATION, TERMINAL_PHASES, job_phase, terminated_state
from .settings import get_settings

MONITORS = "monitors"
SUITES = "testsuites"
SCHEDULES = "schedules"
PLURALS = {"Monitor": MONITORS, "TestSuite": SUITES}
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


def retry_request(monitor: dict, entry: dict) -> MonitorRunRequest | None:
    """The run that retries a failed scheduled run, when its environment has retryOnFailure:
    once, at once, in the same environment. Its request id names the failed run, so however
    often the tick is read (a replayed event, a restarted operator, a second region's Job of
    the same run) it is one run; a retry is a requested run, never retried itself."""
    if entry.get("result") != "Failed" or not entry.get("schedule"):
        return None
    try:
        env = find_environment(MonitorSpec.model_validate(monitor["spec"]), entry.get("environment"))
    except (InvalidRunRequest, ValidationError):
        return None
    if env is None or not env.retry_on_failure:
        return None
    return MonitorRunRequest(id=f"retry:{entry['runId']}", environment=env.name)


def tick_entries(job: dict, outcomes: list[Outcome], monitors: list[dict], schedules: list[dict],
                 suites: list[dict] = ()) -> list[tuple[str, str, dict]]:
    """(kind, owner name, run entry) for each outcome whose owner and Schedule exist."""
    meta = job["metadata"]
    tick = tick_of(meta["name"])
    location = (meta.get("labels") or {}).get(LABEL_LOCATION)
    owners_by_uid = {o["metadata"]["uid"][:UID_PREFIX]: (kind, o)
                     for kind, owners in (("Monitor", monitors), ("TestSuite", suites)) for o in owners}
    schedules_by_uid = {s["metadata"]["uid"][:UID_PREFIX]: s for s in schedules}
    entries = []
    for outcome in outcomes:
        (kind, owner), schedule = owners_by_uid.get(outcome.owner_uid, (None, None)), \
            schedules_by_uid.get(outcome.schedule_uid)
        if owner is None or schedule is None:
            continue
        ometa = owner["metadata"]
        run_id = run_id_for_request(ometa["name"], ometa["uid"], f"schedule:{schedule['metadata']['uid']}:{tick}")
        entry = {"runId": run_id, "phase": "Succeeded", "result": "Passed" if outcome.passed else "Failed",
                 "startTime": _iso(outcome.started_at), "completionTime": _iso(outcome.started_at + outcome.seconds)}
        if kind == "Monitor":
            entry = {
                **entry,
                "environment": _environment(owner, schedule),
                "regions": [location] if location else None,
                "responseTimeMs": outcome.response_time_ms,
                "schedule": schedule["metadata"]["name"],
            }
        entry = {k: v for k, v in entry.items() if v is not None}
        entries.append((kind, ometa["name"], {**entry, "message": _message(entry)}))
    return entries


def _merge(old: dict, new: dict) -> dict:
    merged = {**old, "regions": sorted(set(old.get("regions") or []) | set(new.get("regions") or [])),
              "result": "Passed" if old.get("result") == new.get("result") == "Passed" else "Failed",
              "startTime": min(old["startTime"], new["startTime"]),
              "completionTime": max(old.get("completionTime") or "", new.get("completionTime") or "") or None}
    times = [e["responseTimeMs"] for e in (old, new) if e.get("responseTimeMs") is not None]
    merged["responseTimeMs"] = round(sum(times) / len(times)) if times else None
    merged["message"] = _message(merged)
    return {k: v for k, v in merged.items() if v is not None}


def _started(entry: dict) -> str:
    return entry.get("startTime") or ""


def _message(entry: dict) -> str:
    where = f" in {', '.join(entry['regions'])}" if entry.get("regions") else ""
    by = f" scheduled by {entry['schedule']}" if entry.get("schedule") else " (scheduled)"
    return f"run {entry['runId']}{by}{where}: {entry['result'].lower()}"


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
        if set(entry.get("regions") or []) <= set(old.get("regions") or []) and has_finished(old):
            return None
        history[index] = _merge(old, entry) if has_finished(old) else entry
    else:
        if len(history) >= limit and _started(entry) < min(_started(e) for e in history):
            return None
        history.append(entry)
    history.sort(key=_started, reverse=True)
    history = history[:limit]
    complete = complete_condition(history[0], generation)
    conditions = [c for c in status.get("conditions") or [] if c.get("type") != "Complete"] + [complete]
    return {**status, "lastRun": history[0], "history": history, "conditions": conditions}


# --- I/O -----------------------------------------------------------------------------------


_client: kubernetes.client.CustomObjectsApi | None = None


def _custom() -> kubernetes.client.CustomObjectsApi:
    # One client, hence one connection pool, for the many status writes of a tick: a client
    # per call would open a TLS connection per call.
    global _client
    if _client is None:
        _client = kubernetes.client.CustomObjectsApi(kubernetes.client.ApiClient())
    return _client


def _patch_status(plural: str, namespace: str, name: str, status: dict, resource_version: str) -> None:
    try:
        _custom().patch_namespaced_custom_object_status(GROUP, VERSION, namespace, plural, name, {
            "metadata": {"resourceVersion": resource_version}, "status": status})
    except ApiException as exc:
        if exc.status == 409:
            raise kube.Conflict(f"{plural}/{name} changed since resourceVersion {resource_version}") from exc
        raise


def _read(plural: str, namespace: str, name: str) -> dict | None:
    try:
        return _custom().get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def record_run(namespace: str, kind: str, name: str, entry: dict, limit: int, logger: logging.Logger,
               owner: dict | None = None) -> bool:
    """Record one run into the owner's status; True if this call wrote it. `owner` is the
    owner as listed, saving the first read; a conflict reads it again."""
    plural = PLURALS[kind]
    for _ in range(CONFLICT_RETRIES):
        owner = owner or _read(plural, namespace, name)
        if owner is None:
            return False
        current = owner.get("status") or {}
        new = with_scheduled_run(current, entry, limit, owner["metadata"].get("generation"))
        if new is None:
            return False
        try:
            _patch_status(plural, namespace, name, status_patch(current, new), owner["metadata"]["resourceVersion"])
        except kube.Conflict:
            owner = None
            continue
        runevents.status_written(kind, owner, current, new, logger)
        return True
    raise kube.Conflict(f"{plural}/{name}: status kept changing under {CONFLICT_RETRIES} attempts")


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
    monitors, suites = kube.list_custom(MONITORS, namespace), kube.list_custom(SUITES, namespace)
    listed = {(kind, o["metadata"]["name"]): o for kind, owners in (("Monitor", monitors), ("TestSuite", suites))
              for o in owners}
    entries = tick_entries(job, outcomes, monitors, kube.list_custom(SCHEDULES, namespace), suites)
    limit = get_settings().run_history_limit
    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        written = sum(pool.map(lambda item: record_run(namespace, *item, limit, logger, listed.get(item[:2])),
                               entries))
    logger.info(f"tick {job['metadata']['name']}: {len(outcomes)} runs, {written} recorded")
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
