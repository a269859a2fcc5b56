"""The Runscope trigger URLs' parameters through the real gateway on the real control plane:
`runscope_region` and `runscope_agent` place the run on the nodes labelled with that region or
agent (an extra node agent of team `org`), unknown ones are refused in Runscope's error shape,
and the batch trigger starts one run per parameter set, each with its own variables. A test's
trigger id starts that test only.

Layout as in test_runscope_tests.py: the team token is an org credential of team `org`;
`stranger` is a bucket of another team.
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.cluster import test_runscope_tests as runscope
from tests.cluster.test_runscope_tests import assert_error, request_step, team_client
from tests.support.agents import REGION_LABEL, node_agents
from tests.support.credentials import kubectl_json
from tests.support.targets import CountingTarget

pytestmark = pytest.mark.cluster
org, stranger = runscope.org, runscope.stranger

AGENT_LABEL = "assay.dev/agent"


def answer(response: httpx.Response) -> tuple[int, dict]:
    return response.status_code, response.json()


def monitor_of(cluster, namespace: str, test_id: str) -> dict:
    monitors = kubectl_json(cluster, "get", "monitors", "-n", namespace)["items"]
    return next(m for m in monitors if m["metadata"]["uid"] == test_id)


def finished_run(cluster, namespace: str, test_id: str, run_id: str):
    def check():
        status = monitor_of(cluster, namespace, test_id).get("status") or {}
        entries = [status.get("lastRun") or {}, *(status.get("history") or [])]
        return next((e for e in entries if e.get("runId") == run_id and e.get("result")), None)

    return cluster.wait_for(f"run {run_id} to finish", check, timeout=240, interval=1)


def test_region_and_agent_parameters_place_the_run_and_a_batch_is_one_run_per_set(
    cluster, namespace, org, stranger, operator, gateway, tmp_path_factory
):
    region, agent = f"tr-{uuid.uuid4().hex[:6]}", f"lab-{uuid.uuid4().hex[:6]}"
    node = f"trigger-{region}"
    labels = {REGION_LABEL: region, AGENT_LABEL: agent, "assay.dev/org": org}
    team = team_client(cluster, gateway, namespace, org)
    base = f"/buckets/{namespace}/tests"
    with CountingTarget() as target, node_agents(cluster, tmp_path_factory, {node: labels}):
        test = team.ok("POST", base, {"name": "Placed"}, status=201)
        other = team.ok("POST", base, {"name": "Untouched"}, status=201)
        team.ok("POST", f"{base}/{test['id']}/steps", request_step(f"{target.url}/ping?who={{{{who}}}}"), status=201)
        trigger_url = team.ok("GET", f"{base}/{test['id']}")["trigger_url"]
        node_uid = kubectl_json(cluster, "get", "node", node)["metadata"]["uid"]

        # runscope_region: the run's one Job selects that region's nodes and ran there.
        code, doc = answer(httpx.get(trigger_url, params={"runscope_region": region, "who": "region"}, timeout=30))
        assert code == 201, doc
        [run] = doc["data"]["runs"]
        assert (run["region"], run["agent"], run["variables"]) == (region, None, {"who": "region"})
        entry = finished_run(cluster, namespace, test["id"], run["test_run_id"])
        assert entry["result"] == "Passed" and entry["regions"] == [region], entry
        pods = kubectl_json(cluster, "get", "pods", "-n", namespace, "-l", f"assay.dev/run-id={run['test_run_id']}")
        assert [p["spec"]["nodeSelector"] for p in pods["items"]] == [{REGION_LABEL: region}]
        assert {p["spec"]["nodeName"] for p in pods["items"]} == {node}
        assert target.counts[("GET", "/ping?who=region")] == 1

        # runscope_agent by the agent id the team's agents list shows (the node's uid).
        code, doc = answer(httpx.post(trigger_url, data={"runscope_agent": node_uid, "who": "agent"}, timeout=30))
        assert code == 201, doc
        [run] = doc["data"]["runs"]
        assert (run["region"], run["agent"]) == (None, node_uid)
        entry = finished_run(cluster, namespace, test["id"], run["test_run_id"])
        assert entry["result"] == "Passed" and entry["regions"] == [f"agent-{agent}"], entry
        assert target.counts[("GET", "/ping?who=agent")] == 1

        # Unknown places start nothing and answer in Runscope's error shape.
        requested = monitor_of(cluster, namespace, test["id"])["metadata"]["annotations"]["assay.dev/run-request"]
        for params in ({"runscope_region": "nowhere1"}, {"runscope_agent": str(uuid.uuid4())}):
            error = assert_error(answer(httpx.get(trigger_url, params=params, timeout=30)), 400)
            assert next(iter(params)) in error["message"]
        batch_url = trigger_url.removesuffix("/trigger") + "/batch"
        bad_batch = [{"who": "never"}, {"runscope_environment": "no-such-environment"}]
        assert_error(answer(httpx.post(batch_url, json=bad_batch, timeout=30)), 400)
        assert_error(answer(httpx.post(batch_url, json={"who": "not-a-list"}, timeout=30)), 400)
        assert_error(answer(httpx.post(batch_url, json=[{}] * 51, timeout=30)), 400)
        annotations = monitor_of(cluster, namespace, test["id"])["metadata"]["annotations"]
        assert annotations["assay.dev/run-request"] == requested

        # The batch trigger: one run per set, each with its variables, listed in order.
        sets = [{"who": "first"}, {"who": "second", "runscope_region": region}]
        code, doc = answer(httpx.post(batch_url, json=sets, timeout=60))
        assert code == 201, doc
        started = doc["data"]
        assert (started["runs_total"], started["runs_started"], started["runs_failed"]) == (2, 2, 0)
        assert [(r["variables"], r["region"]) for r in started["runs"]] == [
            ({"who": "first"}, None),
            ({"who": "second"}, region),
        ]
        assert started["runs"][0]["test_run_id"] != started["runs"][1]["test_run_id"]
        assert all(r["test_run_url"].endswith(f"/results/{r['test_run_id']}") for r in started["runs"])
        assert started["consolidated_test_results_url"] == f"{gateway.url}{base}/{test['id']}/results"
        for run in started["runs"]:
            assert finished_run(cluster, namespace, test["id"], run["test_run_id"])["result"] == "Passed"
        assert target.counts[("GET", "/ping?who=first")] == 1 and target.counts[("GET", "/ping?who=second")] == 1

        # A test's trigger id is that test's only: the other test was never asked to run, and
        # the bucket's trigger id is no test's.
        assert "assay.dev/run-request" not in (
            monitor_of(cluster, namespace, other["id"])["metadata"].get("annotations") or {}
        )
        bucket_trigger = team.ok("GET", f"/buckets/{namespace}")["trigger_url"]
        bucket_id = bucket_trigger.split("/radar/bucket/")[1].split("/")[0]
        assert_error(answer(httpx.post(f"{gateway.url}/radar/{bucket_id}/batch", json=[{}], timeout=30)), 404)
        assert_error(answer(httpx.post(f"{gateway.url}/radar/{uuid.uuid4()}/batch", json=[{}], timeout=30)), 404)


def test_another_teams_agent_cannot_be_named(cluster, namespace, org, stranger, operator, gateway, tmp_path_factory):
    theirs = f"lab-{uuid.uuid4().hex[:6]}"
    node = f"trigger-{theirs}"
    team = team_client(cluster, gateway, namespace, org)
    test = team.ok("POST", f"/buckets/{namespace}/tests", {"name": "Ours"}, status=201)
    trigger_url = team.ok("GET", f"/buckets/{namespace}/tests/{test['id']}")["trigger_url"]
    labels = {AGENT_LABEL: theirs, "assay.dev/org": f"other-{org}"}
    with node_agents(cluster, tmp_path_factory, {node: labels}):
        node_uid = kubectl_json(cluster, "get", "node", node)["metadata"]["uid"]
        for named in (theirs, node_uid):
            error = assert_error(answer(httpx.get(trigger_url, params={"runscope_agent": named}, timeout=30)), 400)
            assert "runscope_agent" in error["message"]
    assert "assay.dev/run-request" not in (
        monitor_of(cluster, namespace, test["id"])["metadata"].get("annotations") or {}
    )
