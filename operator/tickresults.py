"""A finished tick Job into run entries, pure: each member's outcome (from the tick pods'
termination messages) as a MonitorRun or SuiteRun entry, and the owner's status with one
entry recorded.

Each tick pod's termination message lists its members' outcomes (assay.crds.contracts.tick.Outcome:
owner and Schedule uid prefixes, pass/fail, mean response time, start, duration); the run
id is recomputed from the Monitor, the Schedule and the tick (the Job name's suffix), as the
runner computed it for its upload. Recording is idempotent: a run already in the history
(from the same location) changes nothing; the same run from another location's Job (a
Monitor in two regions) merges into the same entry: regions united, failed if any failed.
"""

from __future__ import annotations

import datetime as dt

from pydantic import ValidationError

from assay.crds.runs import has_finished
from assay.crds.monitor import MonitorSpec
from assay.crds.runrequest import InvalidRunRequest, MonitorRunRequest
from assay.crds.contracts.tick import UID_PREFIX, Outcome, decode_outcomes, tick_of

from .monitorruns import find_environment
from .names import LABEL_LOCATION, run_id_for_request
from .runhistory import complete_condition
from .runstatus import INDEX_ANNOTATION, terminated_state


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
    for _, (_, terminated, pod) in sorted(latest.items()):
        found, error = decode_outcomes(terminated.get("message"))
        outcomes += found
        if error or (not found and terminated.get("exitCode")):
            problems.append(f"pod {pod['metadata']['name']}: {error or 'exited ' + str(terminated.get('exitCode'))}")
    return outcomes, problems


def _environment(monitor: dict, schedule: dict) -> str | None:
    try:
        env = find_environment(
            MonitorSpec.model_validate(monitor["spec"]), (schedule.get("spec") or {}).get("environment")
        )
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


def tick_entries(
    job: dict, outcomes: list[Outcome], monitors: list[dict], schedules: list[dict], suites: list[dict] = ()
) -> list[tuple[str, str, dict]]:
    """(kind, owner name, run entry) for each outcome whose owner and Schedule exist."""
    meta = job["metadata"]
    tick = tick_of(meta["name"])
    location = (meta.get("labels") or {}).get(LABEL_LOCATION)
    owners_by_uid = {
        o["metadata"]["uid"][:UID_PREFIX]: (kind, o)
        for kind, owners in (("Monitor", monitors), ("TestSuite", suites))
        for o in owners
    }
    schedules_by_uid = {s["metadata"]["uid"][:UID_PREFIX]: s for s in schedules}
    entries = []
    for outcome in outcomes:
        (kind, owner), schedule = (
            owners_by_uid.get(outcome.owner_uid, (None, None)),
            schedules_by_uid.get(outcome.schedule_uid),
        )
        if owner is None or schedule is None:
            continue
        ometa = owner["metadata"]
        run_id = run_id_for_request(ometa["name"], ometa["uid"], f"schedule:{schedule['metadata']['uid']}:{tick}")
        entry = {
            "runId": run_id,
            "phase": "Succeeded",
            "result": "Passed" if outcome.passed else "Failed",
            "startTime": _iso(outcome.started_at),
            "completionTime": _iso(outcome.started_at + outcome.seconds),
        }
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
    merged = {
        **old,
        "regions": sorted(set(old.get("regions") or []) | set(new.get("regions") or [])),
        "result": "Passed" if old.get("result") == new.get("result") == "Passed" else "Failed",
        "startTime": min(old["startTime"], new["startTime"]),
        "completionTime": max(old.get("completionTime") or "", new.get("completionTime") or "") or None,
    }
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
    conditions = complete_condition(status.get("conditions") or [], history[0], generation)
    return {**status, "lastRun": history[0], "history": history, "conditions": conditions}
