"""A LoadTest's status, reconstructed from its Job and the Job's pods; and the Job and pod
readers (`job_phase`, `terminated_state`, ...) that runhistory.py shares for TestSuite and
Monitor runs.

Pure: it reads the world as dicts and returns the status to write, so a restarted operator
arrives at the same status from the same world, and tests feed it YAML fixtures.
"""

from __future__ import annotations


from assay.crds.contracts.summary import ShardSummary, judge, merge
from assay.crds.times import iso

from .status import set_condition

TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"


def job_condition(job: dict, type_: str) -> dict | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_ and cond.get("status") == "True":
            return cond
    return None


def terminated_state(pod: dict) -> dict | None:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        terminated = (cs.get("state") or {}).get("terminated")
        if terminated:
            return terminated
    return None


def shard_summaries(pods: list[dict]) -> dict[int, ShardSummary]:
    """The latest finished pod's summary per completion index."""
    latest: dict[int, tuple[str, ShardSummary]] = {}
    for pod in pods:
        terminated = terminated_state(pod)
        if not terminated:
            continue
        summary = ShardSummary.from_message(terminated.get("message"))
        if summary is None:
            exit_code = terminated.get("exitCode")
            reason = terminated.get("reason") or "Error"
            summary = ShardSummary(error=f"runner exited {exit_code} ({reason}) without a summary")
        annotations = (pod.get("metadata") or {}).get("annotations") or {}
        index = int(annotations.get(INDEX_ANNOTATION, summary.shard or 0))
        finished = str(terminated.get("finishedAt") or "")
        if index not in latest or finished >= latest[index][0]:
            latest[index] = (finished, summary)
    return {index: summary for index, (_, summary) in latest.items()}


def job_phase(job: dict | None, pods: list[dict]) -> tuple[str, str | None]:
    if job is None:
        return "Pending", None
    if cond := job_condition(job, "Complete"):
        return "Succeeded", None
    if cond := job_condition(job, "Failed"):
        return "Failed", f"{cond.get('reason', 'Failed')}: {cond.get('message', '')}".strip(": ")
    status = job.get("status") or {}
    running = any((p.get("status") or {}).get("phase") == "Running" for p in pods)
    if running or status.get("ready") or status.get("succeeded") or status.get("failed"):
        return "Running", None
    return "Pending", None


def _result(phase: str, summary: ShardSummary, verdicts: list[dict], has_criteria: bool) -> str | None:
    """The same rule as the runner's CLI and the store: no requests, a crashed shard or a
    failed criterion fails the run; without criteria any failed request does."""
    if phase not in TERMINAL_PHASES:
        return None
    if summary.aborted:
        return "Aborted"
    if phase == "Failed" or summary.error or summary.requests == 0:
        return "Failed"
    if has_criteria:
        return "Failed" if any(not v["passed"] for v in verdicts) else "Passed"
    return "Failed" if summary.failures else "Passed"


def loadtest_status(
    job: dict | None, pods: list[dict], shards: int, generation: int | None = None, criteria: list[str] = ()
) -> dict:
    phase, message = job_phase(job, pods)
    summaries = shard_summaries(pods)
    # Shard histograms merge exactly, so the p95 and the criteria are judged on the whole run,
    # never on averaged shard percentiles.
    total = merge(summaries.values())
    verdicts = judge(total, criteria) if summaries and phase in TERMINAL_PHASES else []
    job_status = (job or {}).get("status") or {}
    status: dict = {
        "phase": phase,
        "shards": {
            "total": shards,
            "active": job_status.get("active", 0) or 0,
            "succeeded": job_status.get("succeeded", 0) or 0,
            "failed": job_status.get("failed", 0) or 0,
        },
        "startTime": iso(job_status.get("startTime")),
        "observedGeneration": generation,
    }
    if summaries:
        figures = {"minMs": total.min_ms, "avgMs": total.avg_ms, "maxMs": total.max_ms, "p95Ms": total.p95_ms}
        status["summary"] = {
            "requests": total.requests,
            "failures": total.failures,
            **{k: round(v, 3) for k, v in figures.items() if v is not None},
        }
    if result := _result(phase, total, verdicts, bool(criteria)):
        status["result"] = result
        failed_criteria = [v["criterion"] for v in verdicts if not v["passed"]]
        if failed_criteria:
            status["failedCriteria"] = failed_criteria
        failed = job_condition(job or {}, "Failed")
        status["completionTime"] = iso(job_status.get("completionTime") or (failed or {}).get("lastTransitionTime"))
        message = message or total.error or _verdict_message(total, verdicts, failed_criteria)
    if message:
        status["message"] = message
    status["conditions"] = _conditions(status, generation)
    return {k: v for k, v in status.items() if v is not None}


def _verdict_message(total: ShardSummary, verdicts: list[dict], failed_criteria: list[str]) -> str | None:
    if total.aborted:
        return f"aborted: {total.abort_reason or 'error rate limit reached'}"
    if failed_criteria:
        observed = {v["criterion"]: v["observed"] for v in verdicts}
        return "criteria failed: " + "; ".join(f"{c} (observed {observed[c]})" for c in failed_criteria)
    if total.failures:
        return f"{total.failures} of {total.requests} requests failed"
    return None


def _conditions(status: dict, generation: int | None) -> list[dict] | None:
    """A `Complete` condition, derived from the status itself so it stays reconstructable:
    its transition time is the run's completion (or start) time, never "now"."""
    since = status.get("completionTime") or status.get("startTime")
    if not since:
        return None
    done = "result" in status
    return set_condition(
        None,
        "Complete",
        "True" if done else "False",
        status["result"] if done else status["phase"],
        status.get("message") or ("run finished" if done else "run in progress"),
        now=None,
        generation=generation,
        since=since,
    )
