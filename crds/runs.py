"""One run, in Kubernetes vocabulary, whatever the kind: a LoadTest's status, each entry of a
TestSuite's or Monitor's `lastRun` and `history`.

* `phase` says where the run is: Pending (its Jobs wait for pods), Running, Succeeded (it ran
  to the end, whatever the verdict) or Failed (it could not run to the end).
* `result` is the verdict, set when, and only when, the run has finished: Passed, Failed or
  Aborted (a LoadTest stopped at its error-rate limit).
* `counts` are the run's items by outcome: a TestSuite run's flow runs, a Monitor run's
  assertions (over all its regions). A LoadTest counts its requests in `summary` instead.

The REST APIs' own spellings (Loadmill's PASSED/RUNNING, Runscope's pass/working and
started_at, ...) are made from these fields by the gateway's mappers, never stored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Optional

from pydantic import Field

from .common import StatusModel

RunPhase = Literal["Pending", "Running", "Succeeded", "Failed"]
RunResult = Literal["Passed", "Failed", "Aborted"]
FINISHED_PHASES = ("Succeeded", "Failed")


class RunCounts(StatusModel):
    """A run's items by outcome; `total` includes items that have not finished yet."""

    total: int = Field(default=0, ge=0)
    passed: int = Field(default=0, ge=0)
    failed: int = Field(default=0, ge=0)

    @property
    def finished(self) -> int:
        return self.passed + self.failed

    @property
    def progress(self) -> str:
        """Finished items out of all, e.g. `3/4`."""
        return f"{self.finished}/{self.total}"

    @property
    def success_rate(self) -> float:
        """Percent of the finished items that passed; 0 when none has finished."""
        return 100.0 * self.passed / self.finished if self.finished else 0.0


class RunState(StatusModel):
    """The fields every run has, under the same names and types for every kind."""

    run_id: Optional[str] = None
    phase: Optional[RunPhase] = None
    """Where the run is: Succeeded means it ran to the end, whatever the result."""
    result: Optional[RunResult] = None
    """The verdict of a finished run; unset while it has not finished."""
    start_time: Optional[datetime] = None
    """When the run started (was requested, until a runner reports its own start)."""
    completion_time: Optional[datetime] = None
    """When the run finished; unset while it has not."""
    counts: Optional[RunCounts] = None
    """The run's items by outcome: flow runs of a TestSuite run, assertions of a Monitor run;
    unset for a LoadTest, whose requests are counted in `summary`."""
    message: Optional[str] = None
    """Why the run ended as it did, or what it waits for."""


class Run(RunState):
    """One run in a TestSuite's or Monitor's `lastRun` and `history`."""

    run_id: str


def verdict(passed: bool) -> RunResult:
    """The result of a run that ran to the end; the runner's summary says it so too."""
    return "Passed" if passed else "Failed"


def has_finished(entry: dict) -> bool:
    """Whether a run as stored (camelCase dict) has finished: it has a verdict."""
    return entry.get("result") is not None


# How v1alpha1 spelled runs before this record, for statuses written by an older operator.
_OLD_VERDICTS = {"PASSED": "Passed", "FAILED": "Failed", "pass": "Passed", "fail": "Failed"}
_OLD_STATES = {*_OLD_VERDICTS, "RUNNING", "working"}
_OLD_FIELDS = ("status", "startedAt", "finishedAt", "endTime", "successRate", "progress")


def upgraded(entry: dict) -> dict:
    """A stored run entry in this record's fields. An older operator wrote TestSuite runs as
    `status` PASSED/FAILED/RUNNING with `endTime`, Monitor runs as `result` pass/fail/working
    with `startedAt`/`finishedAt`; the API server now refuses those values, so a status that
    still holds one could never be written again. Today's entries come back unchanged."""
    state = entry.get("status") if "status" in entry else entry.get("result")
    if state not in _OLD_STATES and not any(k in entry for k in _OLD_FIELDS):
        return entry
    verdict = _OLD_VERDICTS.get(state) if state in _OLD_STATES else entry.get("result")
    record = {k: v for k, v in entry.items() if k not in _OLD_FIELDS}
    record.update(
        result=verdict,
        phase=entry.get("phase") or ("Succeeded" if verdict else "Running"),
        startTime=entry.get("startTime") or entry.get("startedAt"),
        completionTime=entry.get("completionTime") or entry.get("endTime") or entry.get("finishedAt"),
    )
    return {k: v for k, v in record.items() if v is not None}


def upgraded_runs(status: dict) -> dict:
    """The `lastRun` and `history` of a TestSuite's or Monitor's status that `upgraded` changes
    (empty when there is nothing to upgrade)."""
    changed: dict = {}
    if status.get("lastRun") and upgraded(status["lastRun"]) != status["lastRun"]:
        changed["lastRun"] = upgraded(status["lastRun"])
    history = [upgraded(e) for e in status.get("history") or []]
    if history != (status.get("history") or []):
        changed["history"] = history
    return changed
