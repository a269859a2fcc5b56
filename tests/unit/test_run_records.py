"""The one run record of TestSuite and Monitor statuses, and the REST spellings the gateway's
mappers make from it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from assay.api.services.dashboard import monitor_runs, suite_runs
from assay.api.services.runscope_mapping import last_run_to_runscope
from assay.api.services.suites import loadmill_status
from assay.crds import LoadTestStatus, MonitorRun, RunCounts, RunState, SuiteRun

FINISHED = {
    "runId": "s-2",
    "phase": "Succeeded",
    "result": "Failed",
    "startTime": "2026-01-01T00:00:00Z",
    "completionTime": "2026-01-01T00:00:04Z",
    "counts": {"total": 4, "passed": 3, "failed": 1},
    "message": "1 of 4 flow runs failed",
}
RUNNING = {"runId": "s-3", "phase": "Running", "startTime": "2026-01-01T00:01:00Z"}


def test_every_kind_shares_the_run_fields():
    shared = list(RunState.model_fields)
    for model in (SuiteRun, MonitorRun, LoadTestStatus):
        assert list(model.model_fields)[: len(shared)] == shared
    assert SuiteRun.model_validate(FINISHED).to_k8s() == FINISHED
    with pytest.raises(ValidationError):
        SuiteRun.model_validate({**FINISHED, "result": "PASSED"})
    with pytest.raises(ValidationError):
        MonitorRun.model_validate({"runId": "m-1", "result": "pass"})


def test_progress_and_success_rate_derive_from_the_counts():
    counts = RunCounts(total=4, passed=2, failed=1)
    assert (counts.progress, round(counts.success_rate, 2)) == ("3/4", 66.67)
    assert (RunCounts(total=2).progress, RunCounts(total=2).success_rate) == ("0/2", 0.0)


def test_loadmill_spells_the_result_and_running_without_one():
    assert [loadmill_status(e) for e in (FINISHED, {**FINISHED, "result": "Passed"}, RUNNING)] == [
        "FAILED",
        "PASSED",
        "RUNNING",
    ]


def test_the_dashboard_reads_suite_runs_from_the_records():
    suite = {"metadata": {"name": "checkout"}, "status": {"lastRun": RUNNING, "history": [RUNNING, FINISHED]}}
    running, finished = suite_runs("team-a", suite, [])
    assert (running["state"], running["progress"], running["finishedAt"]) == ("running", None, None)
    assert (finished["state"], finished["progress"], finished["successRate"]) == ("failed", "4/4", 75.0)
    assert finished["durationSeconds"] == 4.0


def test_the_dashboard_and_runscope_read_monitor_runs_from_the_records():
    passed = {
        "runId": "m-1",
        "phase": "Succeeded",
        "result": "Passed",
        "startTime": "2026-01-01T00:00:00Z",
        "completionTime": "2026-01-01T00:00:02Z",
        "environment": "prod",
        "responseTimeMs": 40,
    }
    working = {"runId": "m-2", "phase": "Pending", "startTime": "2026-01-01T00:01:00Z", "environment": "prod"}
    runs = monitor_runs({"lastRun": working, "history": [working, passed]}, [])
    assert [(r["runId"], r["result"], r["finishedAt"]) for r in runs] == [
        ("m-2", "running", None),
        ("m-1", "passed", "2026-01-01T00:00:02Z"),
    ]

    spec = {"environments": [{"name": "prod", "id": "env-1"}]}
    done = last_run_to_runscope({"lastRun": passed}, spec, "team-a", "t-1", "http://gw")
    assert (done["status"], done["result"], done["started_at"], done["finished_at"]) == (
        "completed",
        "pass",
        1767225600.0,
        1767225602.0,
    )
    assert done["environment_id"] == "env-1"
    pending = last_run_to_runscope({"lastRun": working}, spec, "team-a", "t-1", "http://gw")
    assert (pending["status"], pending["result"], pending["finished_at"]) == ("working", "working", None)
    failed = last_run_to_runscope({"lastRun": {**passed, "result": "Failed"}}, spec, "team-a", "t-1", "http://gw")
    assert failed["result"] == "fail"


def test_runs_an_older_operator_recorded_read_as_todays_records():
    from assay.crds import MonitorStatus, TestSuiteStatus
    from assay.crds.runs import upgraded, upgraded_runs

    suite = {
        "runId": "s-1",
        "status": "PASSED",
        "startTime": "2026-01-01T00:00:00Z",
        "endTime": "2026-01-01T00:00:05Z",
        "progress": "2/2",
        "successRate": 100.0,
    }
    running = {"runId": "s-2", "status": "RUNNING", "startTime": "2026-01-01T00:01:00Z", "progress": "0/2"}
    monitor = {
        "runId": "m-1",
        "result": "fail",
        "startedAt": "2026-01-01T00:00:00Z",
        "finishedAt": "2026-01-01T00:00:02Z",
        "environment": "prod",
        "responseTimeMs": 8,
    }
    assert upgraded(suite) == {
        "runId": "s-1",
        "phase": "Succeeded",
        "result": "Passed",
        "startTime": "2026-01-01T00:00:00Z",
        "completionTime": "2026-01-01T00:00:05Z",
    }
    assert upgraded(running) == {"runId": "s-2", "phase": "Running", "startTime": "2026-01-01T00:01:00Z"}
    assert upgraded(monitor) == {
        "runId": "m-1",
        "phase": "Succeeded",
        "result": "Failed",
        "environment": "prod",
        "responseTimeMs": 8,
        "startTime": "2026-01-01T00:00:00Z",
        "completionTime": "2026-01-01T00:00:02Z",
    }
    # What the upgrade writes is valid under today's models; today's records are left alone.
    changed = upgraded_runs({"lastRun": suite, "history": [running, suite]})
    TestSuiteStatus.model_validate(changed)
    MonitorStatus.model_validate({"history": [upgraded(monitor)]})
    assert upgraded(FINISHED) is FINISHED
    assert upgraded_runs({"lastRun": FINISHED, "history": [FINISHED]}) == {}
