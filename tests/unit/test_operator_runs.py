"""TestSuite and Monitor runs: the run-request contract, the run plan and its Jobs, and the
status rebuilt from Jobs and pods — all read straight from the pure functions."""

import json

import pytest

from assay.operator import monitorruns as monitor_kind
from assay.operator import suiteruns as suite_kind
from assay.operator.names import job_name_for, run_id_for_request
from assay.operator.runhistory import RequestState, history_status
from assay.operator.status import replacing
from assay.crds.runrequest import (
    InvalidRunRequest,
    MonitorRunRequest,
    SuiteRunRequest,
    parse_run_request,
)
from assay.operator.runs import RunPlan, build_jobs, build_run_objects
from assay.operator.settings import OperatorSettings

UID = "6f1c2d3e-aaaa-bbbb-cccc-000011112222"
SUITE = {
    "apiVersion": "assay.dev/v1alpha1",
    "kind": "TestSuite",
    "metadata": {"name": "checkout", "namespace": "shop", "uid": UID, "generation": 1},
    "spec": {"flows": [{"name": "buy", "requests": [{"url": "http://127.0.0.1:1/"}]}]},
}
MONITOR = {
    "apiVersion": "assay.dev/v1alpha1",
    "kind": "Monitor",
    "metadata": {"name": "health", "namespace": "shop", "uid": UID, "generation": 1},
    "spec": {
        "steps": [{"stepType": "request", "url": "http://127.0.0.1:1/"}],
        "environments": [
            {"name": "staging", "id": "env-1"},
            {
                "name": "prod",
                "id": "env-2",
                "regions": ["us1", "eu1"],
                "remoteAgents": [{"name": "dc-berlin", "uuid": "a-1"}],
            },
        ],
        "defaultEnvironment": "staging",
    },
}


def annotated(owner, value):
    return {**owner, "metadata": {**owner["metadata"], "annotations": {"assay.dev/run-request": value}}}


# --- the run-request contract ---------------------------------------------------------------


def test_a_plain_annotation_value_is_the_request_id():
    request = parse_run_request({"assay.dev/run-request": " 1767225600 "}, SuiteRunRequest)
    assert request == SuiteRunRequest(id="1767225600")
    assert request.options() == {"forceAllFlows": False, "additionalDescription": "", "overrideParameters": {}}


def test_the_gateways_json_request_carries_the_run_options():
    value = json.dumps(
        {
            "id": "r-7",
            "forceAllFlows": True,
            "additionalDescription": "nightly",
            "overrideParameters": {"baseUrl": "https://staging", "retries": 3},
        }
    )
    request = parse_run_request({"assay.dev/run-request": value}, SuiteRunRequest)
    assert request.options() == {
        "forceAllFlows": True,
        "additionalDescription": "nightly",
        "overrideParameters": {"baseUrl": "https://staging", "retries": "3"},
    }
    selective = SuiteRunRequest(id="r-8", labels=["smoke"], pool="staging-users")
    again = parse_run_request({"assay.dev/run-request": selective.annotation()}, SuiteRunRequest)
    assert again == selective and again.options() == {
        "forceAllFlows": False,
        "additionalDescription": "",
        "overrideParameters": {},
        "labels": ["smoke"],
        "pool": "staging-users",
    }
    request = parse_run_request(
        {"assay.dev/run-request": json.dumps({"id": 42, "environment": "env-2", "params": {"user": "alice"}})},
        MonitorRunRequest,
    )
    assert (request.id, request.environment, request.params) == ("42", "env-2", {"user": "alice"})


def test_no_annotation_is_no_request():
    assert parse_run_request({}, SuiteRunRequest) is None
    assert parse_run_request(None, MonitorRunRequest) is None
    assert parse_run_request({"assay.dev/run-request": "  "}, SuiteRunRequest) is None


@pytest.mark.parametrize(
    "value, says",
    [
        ('{"id": "x", "forceAllFlow": true}', "forceAllFlow"),
        ('{"forceAllFlows": true}', "id"),
        ('{"id": "x"', "not valid JSON"),
        ('{"id": ""}', "id"),
    ],
)
def test_an_unusable_request_says_what_is_wrong(value, says):
    with pytest.raises(InvalidRunRequest, match=says):
        parse_run_request({"assay.dev/run-request": value}, SuiteRunRequest)


def test_the_run_id_derives_from_uid_and_request_id_only():
    run_id = run_id_for_request("checkout", UID, "r-1")
    assert run_id == run_id_for_request("checkout", UID, "r-1")
    assert run_id.startswith("checkout-") and len(run_id) == len("checkout-") + 10
    assert run_id != run_id_for_request("checkout", UID, "r-2")
    assert run_id != run_id_for_request("checkout", UID.replace("a", "d"), "r-1")
    assert len(run_id_for_request("x" * 250, UID, "r-1")) <= 52


def test_region_job_names_stay_short_enough_for_indexed_pod_hostnames():
    run_id = run_id_for_request("x" * 250, UID, "r-1")
    names = {job_name_for(run_id, region) for region in ("us-east-1", "us-east-2")}
    assert len(names) == 2 and all(len(n) <= 52 for n in names)
    assert job_name_for("health-0123456789", "eu1") == "health-0123456789-eu1"


def test_a_plain_id_and_the_same_id_in_json_are_the_same_run():
    plain = suite_kind.request_state(annotated(SUITE, "r-1"))
    as_json = suite_kind.request_state(annotated(SUITE, '{"id": "r-1", "forceAllFlows": true}'))
    assert plain.run_id == as_json.run_id == run_id_for_request("checkout", UID, "r-1")


# --- Monitor plans: environments and regions ------------------------------------------------


def test_a_monitor_run_in_two_regions_and_an_agent_is_one_job_per_location():
    owner = annotated(MONITOR, json.dumps({"id": "r-1", "environment": "prod", "params": {"a": "b"}}))
    request = parse_run_request(owner["metadata"]["annotations"], MonitorRunRequest)
    plan = monitor_kind.plan_run(owner, request, requested_at="2026-01-01T00:00:00.000001Z")
    assert [loc.name for loc in plan.locations] == ["us1", "eu1", "agent-dc-berlin"]
    jobs = build_jobs(owner, plan, OperatorSettings())
    run_id = run_id_for_request("health", UID, "r-1")
    assert [j["metadata"]["name"] for j in jobs] == [f"{run_id}-us1", f"{run_id}-eu1", f"{run_id}-agent-dc-berlin"]
    selectors = [j["spec"]["template"]["spec"]["nodeSelector"] for j in jobs]
    assert selectors == [
        {"topology.kubernetes.io/region": "us1"},
        {"topology.kubernetes.io/region": "eu1"},
        {"assay.dev/agent": "dc-berlin"},
    ]
    envs = [{e["name"]: e.get("value") for e in j["spec"]["template"]["spec"]["containers"][0]["env"]} for j in jobs]
    assert [e.get("ASSAY_REGION") for e in envs] == ["us1", "eu1", None]
    assert envs[2]["ASSAY_AGENT"] == "dc-berlin"
    assert [e["ASSAY_SHARD_INDEX"] for e in envs] == ["0", "1", "2"]
    assert all(e["ASSAY_SHARDS"] == "3" and e["ASSAY_RUN_ID"] == run_id for e in envs)
    assert json.loads(envs[0]["ASSAY_RUN_OPTIONS"]) == {"environment": "prod", "params": {"a": "b"}}
    assert all(j["metadata"]["annotations"]["assay.dev/request-id"] == "r-1" for j in jobs)
    # Finished run Jobs go after an hour: the status and the store keep the run.
    assert all(j["spec"]["ttlSecondsAfterFinished"] == 3600 for j in jobs)


def test_a_request_naming_regions_or_agents_runs_there_instead_of_the_environments_locations():
    def locations(**where):
        request = parse_run_request(
            annotated(MONITOR, json.dumps({"id": "r", "environment": "prod", **where}))["metadata"]["annotations"],
            MonitorRunRequest,
        )
        return [(loc.name, loc.node_selector) for loc in monitor_kind.plan_run(MONITOR, request).locations]

    assert locations(regions=["eu1"]) == [("eu1", {"topology.kubernetes.io/region": "eu1"})]
    # An agent the environment does not list runs on that agent's nodes, and in no region.
    assert locations(remoteAgents=["lab"]) == [("agent-lab", {"assay.dev/agent": "lab"})]
    assert [name for name, _ in locations(regions=["ap1"], remoteAgents=["dc-berlin"])] == ["ap1", "agent-dc-berlin"]
    assert len(locations()) == 3
    state = monitor_kind.request_state(annotated(MONITOR, '{"id": "r", "regions": ["us east"]}'))
    assert "the run request" in state.error and "not a valid node label value" in state.error


def test_a_monitor_without_regions_runs_one_job_anywhere_in_its_default_environment():
    owner = annotated(MONITOR, "r-1")
    plan = monitor_kind.plan_run(owner, MonitorRunRequest(id="r-1"))
    assert plan.environment == "staging" and plan.locations == []
    [job] = build_jobs(owner, plan, OperatorSettings())
    assert job["metadata"]["name"] == run_id_for_request("health", UID, "r-1")
    assert "nodeSelector" not in job["spec"]["template"]["spec"]
    assert (
        build_jobs(owner, plan, OperatorSettings(run_job_ttl_seconds=600))[0]["spec"]["ttlSecondsAfterFinished"] == 600
    )
    assert job["spec"]["template"]["spec"]["containers"][0]["args"][:1] == ["monitor"]


def test_an_environment_is_found_by_name_or_id_and_an_unknown_one_is_refused():
    assert monitor_kind.plan_run(MONITOR, MonitorRunRequest(id="r", environment="env-2")).environment == "prod"
    state = monitor_kind.request_state(annotated(MONITOR, '{"id": "r", "environment": "qa"}'))
    assert state.run_id is None and "no such environment" in state.error and "staging, prod" in state.error


def test_a_region_that_cannot_be_a_node_label_is_refused():
    spec = {**MONITOR["spec"], "environments": [{"name": "x", "regions": ["us east"]}], "defaultEnvironment": "x"}
    state = monitor_kind.request_state(annotated({**MONITOR, "spec": spec}, "r"))
    assert "not a valid node label value" in state.error


def test_subtests_are_resolved_transitively_by_name_or_uid():
    def monitor(name, uid, targets):
        steps = [{"stepType": "subtest", **target} for target in targets] or [
            {"stepType": "request", "url": "http://x/"}
        ]
        return {
            "apiVersion": "assay.dev/v1alpha1",
            "kind": "Monitor",
            "metadata": {"name": name, "namespace": "shop", "uid": uid},
            "spec": {"steps": steps},
        }

    main = monitor("main", "u-main", [{"monitor": "login"}])
    login = monitor("login", "u-login", [{"testUuid": "u-token"}])
    token = monitor("token", "u-token", [{"monitor": "main"}])  # a cycle back to main
    other = monitor("other", "u-other", [])
    found = monitor_kind.resolve_subtests(main, [main, login, token, other])
    assert sorted(m["metadata"]["name"] for m in found) == ["login", "token"]


def test_the_spec_configmap_freezes_the_plan_and_the_manifest():
    owner = annotated(SUITE, "r-1")
    plan = suite_kind.plan_run(owner, SuiteRunRequest(id="r-1"))
    configmap, secret, jobs = build_run_objects(owner, plan, owner, OperatorSettings())
    assert secret is None
    assert RunPlan.from_json(json.loads(configmap["data"]["plan.json"])) == plan
    assert json.loads(configmap["data"]["manifest.json"])["metadata"]["uid"] == UID
    assert jobs[0]["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "testsuite",
        "--spec",
        "/etc/assay/run/manifest.json",
    ]


# --- status from Jobs and pods --------------------------------------------------------------


def job(
    run_id,
    requested_at,
    *,
    location=None,
    complete=None,
    start="2026-01-01T00:00:00Z",
    end="2026-01-01T00:00:05Z",
    environment=None,
):
    name = run_id if location is None else f"{run_id}-{location}"
    labels = {"assay.dev/run-id": run_id, **({"assay.dev/location": location} if location else {})}
    annotations = {"assay.dev/request-id": "r", "assay.dev/requested-at": requested_at}
    if environment:
        annotations["assay.dev/environment"] = environment
    status = {"startTime": start, "active": 1}
    if complete == "Complete":
        status = {
            "startTime": start,
            "completionTime": end,
            "succeeded": 1,
            "conditions": [{"type": "Complete", "status": "True"}],
        }
    elif complete == "Failed":
        status = {
            "startTime": start,
            "failed": 1,
            "conditions": [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "DeadlineExceeded",
                    "message": "too slow",
                    "lastTransitionTime": end,
                }
            ],
        }
    return {"metadata": {"name": name, "labels": labels, "annotations": annotations}, "status": status}


def pod(summary, phase="Succeeded", exit_code=0):
    message = json.dumps(summary) if isinstance(summary, dict) else summary
    return {
        "status": {
            "phase": phase,
            "containerStatuses": [
                {
                    "state": {
                        "terminated": {"exitCode": exit_code, "message": message, "finishedAt": "2026-01-01T00:00:05Z"}
                    }
                }
            ],
        }
    }


def pods_from(mapping):
    calls = []

    def pods(job_name):
        calls.append(job_name)
        return mapping.get(job_name, [])

    pods.calls = calls
    return pods


SUITE_PASSED = {
    "result": "Passed",
    "progress": "2/2",
    "success_rate": 100.0,
    "flow_runs": 2,
    "passed": 2,
    "failed": 0,
    "started_at": 1767225601.5,
    "finished_at": 1767225603.0,
}
SUITE_FAILED = {**SUITE_PASSED, "result": "Failed", "success_rate": 50.0, "passed": 1, "failed": 1}


def test_a_new_suite_run_is_pending_then_passed_with_its_flow_run_counts():
    jobs = [job("s-1", "2026-01-01T00:00:00.5Z")]
    running = history_status("TestSuite", jobs, pods_from({}), {}, RequestState(run_id="s-1"), limit=10)
    assert running["lastRun"] == {"runId": "s-1", "phase": "Pending", "startTime": "2026-01-01T00:00:00Z"}
    assert running["history"] == [running["lastRun"]]
    conditions = {c["type"]: c for c in running["conditions"]}
    assert conditions["Complete"]["status"] == "False"
    assert conditions["RunRequest"]["status"] == "True" and conditions["RunRequest"]["reason"] == "Started"

    jobs = [job("s-1", "2026-01-01T00:00:00.5Z", complete="Complete")]
    done = history_status(
        "TestSuite", jobs, pods_from({"s-1": [pod(SUITE_PASSED)]}), running, RequestState(run_id="s-1"), limit=10
    )
    assert done["lastRun"] == {
        "runId": "s-1",
        "phase": "Succeeded",
        "result": "Passed",
        "startTime": "2026-01-01T00:00:01Z",
        "completionTime": "2026-01-01T00:00:03Z",
        "counts": {"total": 2, "passed": 2, "failed": 0},
    }
    complete = {c["type"]: c for c in done["conditions"]}["Complete"]
    assert (complete["status"], complete["reason"], complete["lastTransitionTime"]) == (
        "True",
        "Passed",
        "2026-01-01T00:00:03Z",
    )


def test_history_is_newest_first_bounded_and_finished_runs_are_not_recomputed():
    jobs = [job(f"s-{i}", f"2026-01-01T00:00:0{i}.000000Z", complete="Complete") for i in range(5)]
    current = {
        "history": [{"runId": "s-1", "phase": "Succeeded", "result": "Failed", "startTime": "2026-01-01T00:00:01Z"}]
    }
    pods = pods_from({f"s-{i}": [pod(SUITE_PASSED)] for i in range(5)})
    status = history_status("TestSuite", jobs, pods, current, RequestState(run_id="s-4"), limit=3)
    assert [e["runId"] for e in status["history"]] == ["s-4", "s-3", "s-2"]
    assert status["lastRun"]["runId"] == "s-4"
    status = history_status("TestSuite", jobs, pods, current, RequestState(), limit=10)
    assert [e["runId"] for e in status["history"]] == ["s-4", "s-3", "s-2", "s-1", "s-0"]
    assert status["history"][3]["result"] == "Failed", "a recorded finished run stays as recorded"
    assert "s-1" not in pods.calls


def test_a_failed_suite_run_says_how_many_flow_runs_failed():
    jobs = [job("s-1", "2026-01-01T00:00:00.5Z", complete="Complete")]
    status = history_status("TestSuite", jobs, pods_from({"s-1": [pod(SUITE_FAILED)]}), {}, RequestState(), limit=10)
    assert (status["lastRun"]["phase"], status["lastRun"]["result"]) == ("Succeeded", "Failed")
    assert status["lastRun"]["counts"] == {"total": 2, "passed": 1, "failed": 1}
    assert status["lastRun"]["message"] == "1 of 2 flow runs failed"
    complete = status["conditions"][0]
    assert complete["reason"] == "Failed" and complete["message"] == "1 of 2 flow runs failed"


def test_a_runner_that_left_no_summary_fails_the_run_with_the_jobs_reason():
    jobs = [job("s-1", "2026-01-01T00:00:00.5Z", complete="Failed")]
    status = history_status(
        "TestSuite", jobs, pods_from({"s-1": [pod("", phase="Failed", exit_code=137)]}), {}, RequestState(), limit=10
    )
    assert (status["lastRun"]["phase"], status["lastRun"]["result"]) == ("Failed", "Failed")
    assert "exited 137" in status["lastRun"]["message"]
    assert status["conditions"][0]["message"] == status["lastRun"]["message"]


def test_a_recorded_run_whose_job_was_deleted_stays_and_an_unfinished_one_fails():
    current = {
        "lastRun": {"runId": "s-2", "phase": "Running", "startTime": "2026-01-01T00:00:02Z"},
        "history": [
            {"runId": "s-2", "phase": "Running", "startTime": "2026-01-01T00:00:02Z"},
            {"runId": "s-1", "phase": "Succeeded", "result": "Passed", "startTime": "2026-01-01T00:00:01Z"},
        ],
    }
    status = history_status("TestSuite", [], pods_from({}), current, RequestState(), limit=10)
    assert [(e["runId"], e["phase"], e.get("result")) for e in status["history"]] == [
        ("s-2", "Failed", "Failed"),
        ("s-1", "Succeeded", "Passed"),
    ]
    assert "deleted" in status["conditions"][0]["message"]


def test_an_invalid_request_is_a_false_condition_and_keeps_its_transition_time():
    state = RequestState(error="assay.dev/run-request: not valid JSON")
    first = history_status("TestSuite", [], pods_from({}), {}, state, limit=10, now="2026-01-01T00:00:00Z")
    [condition] = first["conditions"]
    assert (condition["type"], condition["status"], condition["reason"]) == ("RunRequest", "False", "InvalidRequest")
    again = history_status("TestSuite", [], pods_from({}), first, state, limit=10, now="2026-01-02T00:00:00Z")
    assert again["conditions"][0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"


def test_conditions_of_other_writers_are_kept():
    current = {"conditions": [{"type": "TriggerReady", "status": "True"}]}
    status = history_status("Monitor", [], pods_from({}), current, RequestState(), limit=10)
    assert status["conditions"] == [{"type": "TriggerReady", "status": "True"}]


def test_a_monitor_run_in_two_regions_passes_only_when_both_pass_and_says_which_failed():
    jobs = [
        job("m-1", "2026-01-01T00:00:00.5Z", location=loc, complete="Complete", environment="prod")
        for loc in ("us1", "eu1")
    ]
    passed = {
        "result": "Passed",
        "started_at": 1767225601.0,
        "finished_at": 1767225602.0,
        "assertions_passed": 2,
        "assertions_failed": 0,
    }
    pods = {
        "m-1-us1": [pod({**passed, "region": "us1"})],
        "m-1-eu1": [
            pod(
                {
                    **passed,
                    "region": "eu1",
                    "result": "Failed",
                    "finished_at": 1767225604.0,
                    "assertions_passed": 1,
                    "assertions_failed": 1,
                }
            )
        ],
    }
    status = history_status("Monitor", jobs, pods_from(pods), {}, RequestState(run_id="m-1"), limit=10)
    assert status["lastRun"] == {
        "runId": "m-1",
        "environment": "prod",
        "regions": ["eu1", "us1"],
        "phase": "Succeeded",
        "result": "Failed",
        "startTime": "2026-01-01T00:00:01Z",
        "completionTime": "2026-01-01T00:00:04Z",
        "counts": {"total": 4, "passed": 3, "failed": 1},
        "message": "eu1: failed, us1: passed",
    }
    complete = {c["type"]: c for c in status["conditions"]}["Complete"]
    assert complete["message"] == "eu1: failed, us1: passed"
    pods["m-1-eu1"] = [pod({**passed, "region": "eu1"})]
    status = history_status("Monitor", jobs, pods_from(pods), {}, RequestState(), limit=10)
    assert status["lastRun"]["result"] == "Passed"


def test_a_monitor_run_is_running_while_one_region_still_runs():
    jobs = [
        job("m-1", "2026-01-01T00:00:00.5Z", location="us1", complete="Complete"),
        job("m-1", "2026-01-01T00:00:00.5Z", location="eu1"),
    ]
    pods = {"m-1-us1": [pod({"result": "Passed"})], "m-1-eu1": []}
    status = history_status("Monitor", jobs, pods_from(pods), {}, RequestState(), limit=10)
    assert status["lastRun"]["phase"] == "Running"
    assert "result" not in status["lastRun"] and "completionTime" not in status["lastRun"]


def test_status_is_reconstructable_from_the_same_world():
    jobs = [job("s-1", "2026-01-01T00:00:00.5Z", complete="Complete")]
    pods = pods_from({"s-1": [pod(SUITE_PASSED)]})
    first = history_status(
        "TestSuite", jobs, pods, {}, RequestState(run_id="s-1"), limit=10, generation=3, now="2026-01-01T00:00:09Z"
    )
    second = history_status(
        "TestSuite", jobs, pods, first, RequestState(run_id="s-1"), limit=10, generation=3, now="2026-01-01T00:10:00Z"
    )
    assert first == second


def test_the_status_write_clears_what_the_previous_last_run_had_and_the_new_one_lacks():
    jobs = [job("s-1", "2026-01-01T00:00:00.5Z", complete="Complete"), job("s-2", "2026-01-01T00:00:05.5Z")]
    pods = pods_from({"s-1": [pod(SUITE_PASSED)]})
    first = history_status("TestSuite", jobs[:1], pods, {}, RequestState(), limit=10)
    second = history_status("TestSuite", jobs, pods, first, RequestState(run_id="s-2"), limit=10)
    patch = replacing(first, second)
    assert (patch["lastRun"]["runId"], patch["lastRun"]["phase"]) == ("s-2", "Pending")
    assert {k for k, v in patch["lastRun"].items() if v is None} == {"result", "completionTime", "counts"}
    assert {k: v for k, v in {**first["lastRun"], **patch["lastRun"]}.items() if v is not None} == second["lastRun"]
    assert replacing({}, second) == second
