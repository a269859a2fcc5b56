"""Schedule ticks: the batch runner on a real loopback target, its compact per-member results,
their recording into Monitor statuses (once, merged across regions, bounded), and the
group upload token at the gateway's ingest router."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

from assay.operator.names import run_id_for_request
from assay.operator.runhistory import RequestState, history_status
from assay.operator.tickresults import outcomes_of, retry_request, tick_entries, with_scheduled_run
from assay.crds.contracts.tick import (
    MESSAGE_LIMIT,
    Outcome,
    decode_outcomes,
    encode_outcomes,
    group_upload_token,
    tick_job_name,
    tick_of,
    tick_runs,
)
from assay.crds.contracts.upload import (
    H_IDEMPOTENCY_KEY,
    H_KIND,
    H_OWNER_NAME,
    H_OWNER_UID,
    H_PROJECT,
    H_SHA256,
    H_TICK,
    RunGrant,
    idempotency_key,
)
from tests.conftest import REPO
from tests.support.ingest import ingest_client
from tests.support.targets import CountingTarget

MONITOR_UID = "0a1b2c3d-0000-4000-8000-000000000001"
SCHEDULE_UID = "5c4e0000-0000-4000-8000-000000000002"
JOB = "assay-tick-1234abcd-29395567"


def test_the_tick_is_the_cronjob_controllers_minute_suffix():
    assert tick_of(JOB) == "29395567"
    assert tick_of("assay-tick-1234abcd-manual-x7") == "assay-tick-1234abcd-manual-x7"


def test_the_largest_chunk_of_worst_case_outcomes_fits_a_termination_message():
    from assay.operator.settings import OperatorSettings

    largest = OperatorSettings.model_fields["tick_chunk"].metadata[-1].le
    worst = [Outcome("f" * 8, "e" * 8, False, 99_999, 9_999_999_999, 99_999)] * largest
    message = encode_outcomes(worst, error="x" * 10_000)
    assert len(message.encode()) <= MESSAGE_LIMIT
    assert decode_outcomes(message)[0] == worst


def member(name: str, uid: str, url: str, schedule_uid: str = SCHEDULE_UID, environment=None) -> dict:
    return {
        "schedule": {"name": f"every-{name}", "uid": schedule_uid},
        "environment": environment,
        "monitor": {
            "apiVersion": "assay.dev/v1alpha1",
            "kind": "Monitor",
            "metadata": {"name": name, "namespace": "ns", "uid": uid},
            "spec": {
                "steps": [
                    {
                        "stepType": "request",
                        "url": f"{url}/{name}",
                        "assertions": [{"source": "response_status", "comparison": "equal", "value": 200}],
                    }
                ],
                "environments": [{"name": "local"}],
            },
        },
        "subtests": [],
        "location": None,
        "locationIndex": 0,
        "locations": 1,
    }


def test_a_batch_pod_runs_only_its_chunk_concurrently_and_reports_each_member(tmp_path):
    with CountingTarget(delay=0.5) as target:
        members = [member(f"m{i}", f"{i:08x}-0000-4000-8000-000000000000", target.url) for i in range(5)]
        members[4]["monitor"]["spec"]["steps"][0]["url"] = "http://127.0.0.1:1/refused"
        (tmp_path / "members.json").write_text(
            json.dumps({"group": "g", "namespace": "ns", "chunk": 3, "members": members})
        )
        env = {
            **os.environ,
            "JOB_COMPLETION_INDEX": "1",
            "ASSAY_JOB_NAME": JOB,
            "ASSAY_TERMINATION_LOG": str(tmp_path / "message"),
        }
        env.pop("ASSAY_GATEWAY_URL", None)
        done = subprocess.run(
            [sys.executable, "-m", "assay.runner", "batch", "--spec", str(tmp_path)],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr
    outcomes, error = decode_outcomes((tmp_path / "message").read_text())
    assert error is None
    # Index 1 of chunks of 3: members 3 and 4 only.
    assert [o.owner_uid for o in outcomes] == ["00000003", "00000004"]
    assert [o.passed for o in outcomes] == [True, False]
    assert outcomes[0].response_time_ms >= 500
    assert dict(target.counts) == {("GET", "/m3"): 1}


def terminated_pod(index: int, message: str) -> dict:
    return {
        "metadata": {
            "name": f"{JOB}-{index}-abcde",
            "annotations": {"batch.kubernetes.io/job-completion-index": str(index)},
        },
        "status": {
            "containerStatuses": [
                {"state": {"terminated": {"exitCode": 0, "message": message, "finishedAt": "2026-11-23T10:00:09Z"}}}
            ]
        },
    }


MONITOR = {
    "metadata": {"name": "health", "uid": MONITOR_UID},
    "spec": {"environments": [{"name": "local"}, {"name": "prod"}], "defaultEnvironment": "local"},
}
SCHEDULE = {"metadata": {"name": "every-minute", "uid": SCHEDULE_UID}, "spec": {"environment": "prod"}}


def entries_for(location: str | None, passed: bool, started: int = 1_763_892_000) -> list[tuple[str, str, dict]]:
    job = {"metadata": {"name": JOB, "labels": {"assay.dev/location": location} if location else {}}}
    message = encode_outcomes([Outcome(MONITOR_UID[:8], SCHEDULE_UID[:8], passed, 42, started, 3)])
    outcomes, problems = outcomes_of([terminated_pod(0, message)])
    assert problems == []
    return tick_entries(job, outcomes, [MONITOR], [SCHEDULE])


def test_a_tick_outcome_becomes_a_monitor_run_with_the_schedule_and_the_runners_run_id():
    ((kind, name, entry),) = entries_for(None, True)
    assert (kind, name) == ("Monitor", "health")
    assert entry == {
        "runId": run_id_for_request("health", MONITOR_UID, f"schedule:{SCHEDULE_UID}:29395567"),
        "phase": "Succeeded",
        "result": "Passed",
        "startTime": "2025-11-23T10:00:00Z",
        "completionTime": "2025-11-23T10:00:03Z",
        "environment": "prod",
        "responseTimeMs": 42,
        "schedule": "every-minute",
        "message": "run health-5155f5ddfa scheduled by every-minute: passed",
    }


def test_a_failed_scheduled_run_is_retried_once_where_the_environment_asks_for_it():
    monitor = {
        "metadata": {"name": "shop", "uid": MONITOR_UID},
        "spec": {"environments": [{"name": "prod", "retryOnFailure": True}, {"name": "staging"}]},
    }
    failed = {
        "runId": "shop-0123456789",
        "phase": "Succeeded",
        "result": "Failed",
        "schedule": "every-shop",
        "environment": "prod",
    }
    request = retry_request(monitor, failed)
    assert (request.id, request.environment) == ("retry:shop-0123456789", "prod")
    # The same failed run always asks for the same retry, so reading the tick again starts nothing new.
    assert retry_request(monitor, dict(failed)) == request
    assert retry_request(monitor, {**failed, "result": "Passed"}) is None
    assert retry_request(monitor, {**failed, "environment": "staging"}) is None
    assert retry_request(monitor, {k: v for k, v in failed.items() if k != "schedule"}) is None  # a requested run
    assert retry_request(monitor, {**failed, "environment": "gone"}) is None


def test_a_pod_without_outcomes_is_reported():
    pod = terminated_pod(0, "")
    pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] = 137
    assert outcomes_of([pod]) == ([], [f"pod {JOB}-0-abcde: exited 137"])


def test_a_run_is_recorded_once_and_the_same_run_from_another_region_merges():
    ((_, _, us1),) = entries_for("us1", True)
    ((_, _, eu1),) = entries_for("eu1", False)
    status = with_scheduled_run({}, us1, limit=3)
    assert status["lastRun"] == status["history"][0] == us1
    complete = status["conditions"][0]
    assert (complete["type"], complete["status"], complete["reason"]) == ("Complete", "True", "Passed")
    assert with_scheduled_run(status, us1, limit=3) is None  # a re-read Job records nothing

    merged = with_scheduled_run(status, eu1, limit=3)
    assert merged["lastRun"]["regions"] == ["eu1", "us1"] and merged["lastRun"]["result"] == "Failed"
    assert (
        merged["lastRun"]["message"]
        == merged["conditions"][0]["message"]
        == f"run {us1['runId']} scheduled by every-minute in eu1, us1: failed"
    )
    assert len(merged["history"]) == 1 and merged["conditions"][0]["reason"] == "Failed"
    assert with_scheduled_run(merged, us1, limit=3) is None


def test_history_is_newest_first_bounded_and_an_older_run_does_not_push_into_a_full_one():
    status: dict = {}
    for minute in range(4):
        ((_, _, entry),) = entries_for(None, True, started=1_763_892_000 + 60 * minute)
        entry["runId"] = f"run-{minute}"
        status = with_scheduled_run(status, entry, limit=3)
    assert [e["runId"] for e in status["history"]] == ["run-3", "run-2", "run-1"]
    ((_, _, old),) = entries_for(None, True, started=1_763_892_000 - 600)
    assert with_scheduled_run(status, old, limit=3) is None


def test_the_requested_run_path_keeps_recorded_scheduled_runs():
    ((_, _, entry),) = entries_for(None, True)
    status = with_scheduled_run({}, entry, limit=5)
    rebuilt = history_status("Monitor", [], lambda _job: [], status, RequestState(), limit=5, generation=1)
    assert rebuilt["history"] == status["history"] and rebuilt["lastRun"] == entry


def test_a_backtracking_regex_fails_its_monitor_at_the_time_limit_and_the_others_in_the_pod_pass(tmp_path):
    attack = '/^(a+)+$/.test("a".repeat(40) + "b");'
    with CountingTarget() as target:
        members = [member(f"m{i}", f"{i:08x}-0000-4000-8000-000000000000", target.url) for i in range(3)]
        step = members[0]["monitor"]["spec"]["steps"][0]
        step["beforeScripts"], step["scripts"] = [attack], [attack]
        for other in members[1:]:
            other["monitor"]["spec"]["steps"][0]["scripts"] = ["assert.equal(response.status, 200);"]
        (tmp_path / "members.json").write_text(
            json.dumps({"group": "g", "namespace": "ns", "chunk": 3, "members": members})
        )
        env = {**os.environ, "ASSAY_JOB_NAME": JOB, "ASSAY_TERMINATION_LOG": str(tmp_path / "message")}
        env.pop("ASSAY_GATEWAY_URL", None)
        done = subprocess.run(
            [sys.executable, "-m", "assay.runner", "batch", "--spec", str(tmp_path)],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        counts = dict(target.counts)
    assert done.returncode == 0, done.stderr
    outcomes, error = decode_outcomes((tmp_path / "message").read_text())
    assert error is None
    assert [(o.owner_uid, o.passed) for o in outcomes] == [("00000000", False), ("00000001", True), ("00000002", True)]
    # Two scripts stopped at the 1 s limit (plus the kill grace, whole seconds); the other
    # members did not wait for them. In process, the first script held the pod (and with it
    # the other members) until the Job deadline.
    assert outcomes[0].seconds <= 4, outcomes
    assert all(o.seconds < outcomes[0].seconds for o in outcomes[1:]), outcomes
    assert counts == {("GET", "/m0"): 1, ("GET", "/m1"): 1, ("GET", "/m2"): 1}


# --- the group token at the ingest router ---------------------------------------------------

KEY = "k"


@pytest.fixture
def gateway(tmp_path):
    with ingest_client(tmp_path / "store", KEY) as client:
        yield client


def put(client, run_id: str, token: str, project: str = "ns", kind: str = "Monitor", tick: str | None = None):
    body = json.dumps({"result": "pass", "started_at": 1, "finished_at": 2}).encode()
    sha = hashlib.sha256(body).hexdigest()
    return client.put(
        f"/internal/v1/runs/{run_id}/documents/monitor-result.json",
        content=body,
        headers={
            "Authorization": f"Bearer {token}",
            H_SHA256: sha,
            H_IDEMPOTENCY_KEY: idempotency_key(run_id, "monitor-result.json", sha),
            H_KIND: kind,
            H_PROJECT: project,
            H_OWNER_NAME: "health",
            H_OWNER_UID: MONITOR_UID,
            **({H_TICK: tick} if tick else {}),
        },
    )


def test_a_group_token_is_refused_unless_genuine_and_writes_only_the_runs_of_its_ticks(gateway):
    """Without a cluster the gateway cannot find the tick's Job and members, so even a genuine
    group token writes nothing (tests/cluster/test_ingest_grants.py has the cluster's side)."""
    token = group_upload_token(KEY, "ns", "assay-tick-1234abcd")
    for answer in (
        put(gateway, "x-3", token[:-1] + ("0" if token[-1] != "0" else "1")),
        put(gateway, "x-4", group_upload_token("wrong key", "ns", "assay-tick-1234abcd")),
    ):
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"] == "unauthorized"
    for answer, says in (
        (put(gateway, "health-0123456789", token), "X-Assay-Tick is required"),
        (put(gateway, "health-0123456789", token, tick="29395567"), "not a run of tick 29395567"),
    ):
        assert answer.status_code == 403, answer.text
        assert says in answer.json()["message"]
    assert gateway.store.get_run("health-0123456789") is None


def test_the_runs_of_a_tick_are_its_members_runs_as_the_batch_computes_them():
    document = {
        "group": "assay-tick-1234abcd",
        "namespace": "ns",
        "chunk": 8,
        "members": [member("health", MONITOR_UID, "http://127.0.0.1:1")],
    }
    runs = tick_runs(document, "29395567")
    run_id = run_id_for_request("health", MONITOR_UID, f"schedule:{SCHEDULE_UID}:29395567")
    assert runs == {run_id: RunGrant("ns", "Monitor", "health", MONITOR_UID, run_id)}
    assert run_id not in tick_runs(document, "29395568")
    assert tick_job_name("assay-tick-1234abcd", tick_of(JOB)) == JOB
    assert tick_job_name("assay-tick-1234abcd", tick_of("by-hand")) == "by-hand"


SUITE_UID = "7e570000-0000-4000-8000-000000000003"


def test_a_testsuite_member_runs_in_the_batch_and_its_run_is_recorded_as_a_suite_run(tmp_path):
    with CountingTarget() as target:
        suite = {
            "schedule": {"name": "nightly", "uid": SCHEDULE_UID},
            "kind": "TestSuite",
            "location": None,
            "locationIndex": 0,
            "locations": 1,
            "testSuite": {
                "apiVersion": "assay.dev/v1alpha1",
                "kind": "TestSuite",
                "metadata": {"name": "checkout", "namespace": "ns", "uid": SUITE_UID},
                "spec": {"flows": [{"name": "buy", "requests": [{"url": f"{target.url}/buy"}]}]},
            },
        }
        (tmp_path / "members.json").write_text(
            json.dumps({"group": "g", "namespace": "ns", "chunk": 8, "members": [suite]})
        )
        env = {**os.environ, "ASSAY_JOB_NAME": JOB, "ASSAY_TERMINATION_LOG": str(tmp_path / "message")}
        env.pop("ASSAY_GATEWAY_URL", None)
        done = subprocess.run(
            [sys.executable, "-m", "assay.runner", "batch", "--spec", str(tmp_path)],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr
    assert target.counts[("GET", "/buy")] == 1
    outcomes, _ = decode_outcomes((tmp_path / "message").read_text())
    assert [(o.owner_uid, o.passed) for o in outcomes] == [(SUITE_UID[:8], True)]

    job = {"metadata": {"name": JOB, "labels": {}}}
    owner = {"metadata": {"name": "checkout", "uid": SUITE_UID}, "spec": {}}
    ((kind, name, entry),) = tick_entries(job, outcomes, [MONITOR], [SCHEDULE], [owner])
    assert (kind, name, entry["phase"], entry["result"]) == ("TestSuite", "checkout", "Succeeded", "Passed")
    assert entry["runId"] == run_id_for_request("checkout", SUITE_UID, f"schedule:{SCHEDULE_UID}:29395567")
    status = with_scheduled_run({}, entry, limit=5)
    assert status["lastRun"] == entry and status["conditions"][0]["reason"] == "Passed"
    assert with_scheduled_run(status, entry, limit=5) is None
    rebuilt = history_status("TestSuite", [], lambda _job: [], status, RequestState(), limit=5, generation=1)
    assert rebuilt["history"] == [entry]
