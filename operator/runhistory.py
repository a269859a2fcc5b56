"""The status of a resource that runs on request (TestSuite, Monitor): its last run, a short
history and conditions, rebuilt from the run Jobs and their pods.

Pure: it reads the world as dicts and returns the status to write, so a restarted operator
arrives at the same status from the same world, and tests feed it plain dicts.

* Every run Job carries its run id (label), its request id and the time it was requested
  (annotations); a run is the set of Jobs with one run id (one Job, or one per region).
* The newest `limit` runs, newest first, are the history; `lastRun` is the first of them.
  Each is a run record (assay.crds.runs): phase, result, startTime, completionTime, counts,
  message; the `Complete` condition is derived from the last one.
* A run the status already records as finished is kept as recorded (its pods may be gone);
  an unfinished one is recomputed from its Jobs and pods. A recorded run whose Jobs were
  deleted stays in the history; if it had not finished, it is reported failed.
* Each runner pod reports a small JSON summary in its termination message (written by
  `python -m assay.runner testsuite|monitor`), its `result` the verdict as a run record says it
  (Passed/Failed, assay.crds.runs.verdict): TestSuite {"result", "progress",
  "success_rate", "flow_runs", "passed", "failed", "started_at", "finished_at", "error"};
  Monitor {"result", "region", "agent", "environment", "requests_executed",
  "response_time_ms" (mean over the sent requests), "assertions_passed", "assertions_failed",
  "started_at", "finished_at", "error"}; times are epoch seconds.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Callable

from assay.crds.runs import has_finished
from assay.crds.times import iso

from .names import (
    ENVIRONMENT_ANNOTATION,
    LABEL_LOCATION,
    LABEL_RUN_ID,
    REQUEST_ID_ANNOTATION,
    REQUESTED_AT_ANNOTATION,
)
from .runstatus import TERMINAL_PHASES, job_condition, job_phase, terminated_state
from .status import set_condition, short

COMPLETE = "Complete"
RUN_REQUEST = "RunRequest"
OWNED_CONDITIONS = (COMPLETE, RUN_REQUEST)


@dataclass
class Piece:
    """One Job of a run (the whole run, or one region of it) as the status needs it."""

    job_name: str
    location: str | None
    phase: str
    failure: str | None
    summary: dict | None
    start: str | None
    end: str | None


@dataclass
class Run:
    run_id: str
    request_id: str | None
    requested_at: str
    environment: str | None
    pieces: list[Piece] = field(default_factory=list)


def _summary(pods: list[dict]) -> dict | None:
    """The summary of the Job's latest finished pod, or an error summary if it left none."""
    latest: tuple[str, dict] | None = None
    for pod in pods:
        terminated = terminated_state(pod)
        if not terminated:
            continue
        try:
            summary = json.loads(terminated.get("message") or "")
        except ValueError:
            summary = None
        if not isinstance(summary, dict):
            reason = terminated.get("reason") or "Error"
            summary = {"error": f"runner exited {terminated.get('exitCode')} ({reason}) without a summary"}
        finished = str(terminated.get("finishedAt") or "")
        if latest is None or finished >= latest[0]:
            latest = (finished, summary)
    return latest[1] if latest else None


def piece_of(job: dict, pods: list[dict]) -> Piece:
    phase, failure = job_phase(job, pods)
    summary = _summary(pods)
    status = job.get("status") or {}
    failed = job_condition(job, "Failed")
    end = None
    if phase in TERMINAL_PHASES:
        end = iso(status.get("completionTime") or (failed or {}).get("lastTransitionTime"))
    labels = (job.get("metadata") or {}).get("labels") or {}
    return Piece(
        job_name=job["metadata"]["name"],
        location=labels.get(LABEL_LOCATION),
        phase=phase,
        failure=failure,
        summary=summary,
        start=iso((summary or {}).get("started_at")) or iso(status.get("startTime")),
        end=iso((summary or {}).get("finished_at")) or end,
    )


def group_runs(jobs: list[dict]) -> list[Run]:
    """The runs behind `jobs`, newest request first (pieces not filled in)."""
    runs: dict[str, Run] = {}
    for job in jobs:
        meta = job.get("metadata") or {}
        run_id = (meta.get("labels") or {}).get(LABEL_RUN_ID)
        if not run_id:
            continue
        annotations = meta.get("annotations") or {}
        requested = annotations.get(REQUESTED_AT_ANNOTATION) or iso(meta.get("creationTimestamp")) or ""
        run = runs.setdefault(
            run_id,
            Run(run_id, annotations.get(REQUEST_ID_ANNOTATION), requested, annotations.get(ENVIRONMENT_ANNOTATION)),
        )
        run.requested_at = min(run.requested_at, requested)
    return sorted(runs.values(), key=lambda r: (r.requested_at, r.run_id), reverse=True)


def _seconds_iso(text: str | None) -> str | None:
    # Requested-at has microseconds (it orders runs); the status shows whole seconds.
    return text[:19] + "Z" if text and len(text) >= 19 else text


# --- the run records --------------------------------------------------------------------------


def _upload_note(message: str | None, summary: dict) -> str | None:
    if summary.get("upload_error"):
        return "; ".join(filter(None, [message, f"result upload failed: {summary['upload_error']}"]))
    return message


def _count(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def suite_run(run: Run) -> dict:
    """A SuiteRun record: its counts are the runner's flow runs."""
    piece = run.pieces[0] if run.pieces else None
    summary = (piece.summary if piece else None) or {}
    entry: dict = {
        "runId": run.run_id,
        "phase": piece.phase if piece else "Pending",
        "startTime": (piece.start if piece else None) or _seconds_iso(run.requested_at),
    }
    if piece is not None and piece.phase in TERMINAL_PHASES:
        ok = piece.phase == "Succeeded" and summary.get("result") == "Passed" and not summary.get("error")
        entry["result"] = "Passed" if ok else "Failed"
        entry["completionTime"] = piece.end
        message = summary.get("error") or (piece.failure if piece.phase == "Failed" else None)
        if not message and not ok:
            message = f"{summary.get('failed', '?')} of {summary.get('flow_runs', '?')} flow runs failed"
        entry["message"] = short(_upload_note(message, summary))
    total, passed, failed = (_count(summary.get(k)) for k in ("flow_runs", "passed", "failed"))
    if total is not None:
        entry["counts"] = {"total": total, "passed": passed or 0, "failed": failed or 0}
    return {k: v for k, v in entry.items() if v is not None}


def _mean_response_time_ms(pieces: list[Piece]) -> int | None:
    """The regions' mean response times, averaged (each region ran the same requests)."""
    times = [
        value
        for value in ((p.summary or {}).get("response_time_ms") for p in pieces)
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    ]
    return round(sum(times) / len(times)) if times else None


def _assertion_counts(pieces: list[Piece]) -> dict | None:
    """The regions' assertions added up, when any region reported them."""
    reported = [
        (_count(s.get("assertions_passed")), _count(s.get("assertions_failed")))
        for s in (p.summary or {} for p in pieces)
    ]
    reported = [(p or 0, f or 0) for p, f in reported if p is not None or f is not None]
    if not reported:
        return None
    passed, failed = sum(p for p, _ in reported), sum(f for _, f in reported)
    return {"total": passed + failed, "passed": passed, "failed": failed}


def _overall_phase(pieces: list[Piece]) -> str:
    phases = {p.phase for p in pieces}
    if not phases or phases == {"Pending"}:
        return "Pending"
    if not phases <= TERMINAL_PHASES:
        return "Running"
    return "Succeeded" if phases == {"Succeeded"} else "Failed"


def monitor_run(run: Run) -> dict:
    """A MonitorRun record over its regions; its message says each region's result."""
    entry: dict = {"runId": run.run_id, "phase": _overall_phase(run.pieces), "environment": run.environment}
    locations = [p.location for p in run.pieces if p.location]
    if locations:
        entry["regions"] = locations
    starts = [p.start for p in run.pieces if p.start]
    entry["startTime"] = min(starts) if starts else _seconds_iso(run.requested_at)
    entry["counts"] = _assertion_counts(run.pieces)
    if entry["phase"] not in TERMINAL_PHASES:
        return {k: v for k, v in entry.items() if v is not None}
    verdicts = []
    for piece in run.pieces:
        summary = piece.summary or {}
        passed = piece.phase == "Succeeded" and summary.get("result") == "Passed" and not summary.get("error")
        why = _upload_note(summary.get("error") or (piece.failure if piece.phase == "Failed" else None), summary)
        verdicts.append((piece.location, passed, why))
    entry["result"] = "Passed" if all(v[1] for v in verdicts) else "Failed"
    entry["responseTimeMs"] = _mean_response_time_ms(run.pieces)
    ends = [p.end for p in run.pieces if p.end]
    entry["completionTime"] = max(ends) if ends else None
    if locations:
        message = ", ".join(
            f"{where}: {'passed' if ok else 'failed'}" + (f" ({why})" if why else "") for where, ok, why in verdicts
        )
    else:
        message = verdicts[0][2] if verdicts else None
    entry["message"] = short(message)
    return {k: v for k, v in entry.items() if v is not None}


# --- the status -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestState:
    """What the run-request annotation asks for now: nothing, a run (`run_id`), or nothing
    usable (`error`, with the condition reason `error_reason`). `pending` says why a valid
    request has not started yet, `pending_reason` the condition reason for it."""

    run_id: str | None = None
    error: str | None = None
    error_reason: str = "InvalidRequest"
    pending: str | None = None
    pending_reason: str = "Pending"


def history_status(
    kind: str,
    jobs: list[dict],
    pods_by_job: Callable[[str], list[dict]],
    current: dict,
    request: RequestState,
    *,
    limit: int,
    generation: int | None = None,
    now: str | None = None,
) -> dict:
    """The status of a TestSuite (kind "TestSuite") or Monitor: lastRun, history, conditions.

    `pods_by_job(job name)` is called only for the Jobs of unfinished runs, so a long-lived
    resource with many finished runs costs one Job list per update."""
    entry_of = suite_run if kind == "TestSuite" else monitor_run
    recorded = {
        e["runId"]: e for e in [current.get("lastRun") or {}, *(current.get("history") or [])] if e.get("runId")
    }
    runs = group_runs(jobs)[:limit]
    jobs_by_run: dict[str, list[dict]] = {}
    for job in jobs:
        jobs_by_run.setdefault(job["metadata"]["labels"].get(LABEL_RUN_ID), []).append(job)

    entries: list[tuple[str, dict]] = []
    for run in runs:
        old = recorded.get(run.run_id)
        if old and has_finished(old):
            entries.append((run.requested_at, old))
            continue
        run_jobs = sorted(jobs_by_run.get(run.run_id, []), key=lambda j: j["metadata"]["name"])
        run.pieces = [piece_of(job, pods_by_job(job["metadata"]["name"])) for job in run_jobs]
        entries.append((run.requested_at, entry_of(run)))
    shown = {e["runId"] for _, e in entries}
    with_jobs = set(jobs_by_run)
    for run_id, old in recorded.items():
        if run_id in shown or run_id in with_jobs:
            continue
        if not has_finished(old):
            old = {
                **old,
                "phase": "Failed",
                "result": "Failed",
                "message": "the run's Job was deleted before it finished",
            }
        entries.append((old.get("startTime") or "", old))
    entries.sort(key=lambda item: item[0], reverse=True)
    entries = entries[:limit]

    status: dict = {"history": [e for _, e in entries], "observedGeneration": generation}
    if entries:
        status["lastRun"] = entries[0][1]
    previous = {c.get("type"): c for c in current.get("conditions") or []}
    conditions = list(current.get("conditions") or [])
    if entries:
        conditions = complete_condition(conditions, entries[0][1], generation)
    if request.run_id or request.error:
        started = request.run_id in shown or request.run_id in with_jobs or request.run_id in recorded
        conditions = _request_condition(conditions, request, started, previous.get(RUN_REQUEST), generation, now)
    kept = {COMPLETE} if entries else set()
    kept |= {RUN_REQUEST} if request.run_id or request.error else set()
    status["conditions"] = [c for c in conditions if c.get("type") not in OWNED_CONDITIONS or c["type"] in kept]
    return {k: v for k, v in status.items() if v is not None}


def complete_condition(conditions: list[dict], last: dict, generation: int | None) -> list[dict]:
    """`conditions` with `Complete` for the last run, from its record alone: its transition
    time is the run's completion (or start) time, so it is rebuilt identically."""
    done = has_finished(last)
    since = (last.get("completionTime") if done else None) or last.get("startTime")
    message = last.get("message") or (f"run {last['runId']} finished" if done else f"run {last['runId']} in progress")
    return set_condition(
        conditions,
        COMPLETE,
        "True" if done else "False",
        last["result"] if done else "Running",
        message,
        now=None,
        generation=generation,
        since=since,
    )


def _request_condition(
    conditions: list[dict],
    request: RequestState,
    started: bool,
    previous: dict | None,
    generation: int | None,
    now: str | None,
) -> list[dict]:
    """`RunRequest`: True once the requested run exists, False for an unusable request,
    Unknown while a valid one waits (e.g. for a ConfigMap its parameter pool names)."""
    if request.error:
        state, reason, message = "False", request.error_reason, request.error
    elif started:
        state, reason, message = "True", "Started", f"run {request.run_id}"
    else:
        waiting, reason = request.pending, request.pending_reason
        if (
            waiting is None
            and previous
            and previous.get("status") == "Unknown"
            and request.run_id in (previous.get("message") or "")
        ):
            waiting, reason = previous.get("message"), previous.get("reason") or reason
        state, message = "Unknown", short(waiting) or f"run {request.run_id} not started yet"
    return set_condition(conditions, RUN_REQUEST, state, reason, message, now=now, generation=generation)


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def requested_at_now() -> str:
    """A request time precise enough to order two runs requested in the same second."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
