"""Monitor runs end to end on the real control plane: annotate -> one Job per region -> pods
bound by node agents labelled with those regions -> status.lastRun and history; with the
gateway, the Runscope-shaped result of each region lands in the store."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from assay.crds.contracts.upload import RunGrant, upload_token
from assay.operator.names import run_id_for_request
from tests.conftest import GatewayProcess
from tests.support.agents import node_agents, region_nodes
from tests.support.targets import CountingTarget

pytestmark = pytest.mark.cluster

ANNOTATION = "assay.dev/run-request"
REGION_LABEL = "topology.kubernetes.io/region"
REGIONS = ("us1", "eu1")


@pytest.fixture(scope="module")
def region_agents(cluster, tmp_path_factory):
    """One extra node agent per region, as a multi-region cluster has nodes per region."""
    with node_agents(cluster, tmp_path_factory, region_nodes("agent", REGIONS)):
        yield {region: f"agent-{region}" for region in REGIONS}


def monitor_manifest(name: str, url: str, *, regions=(), pause: int = 0) -> str:
    steps = [
        {
            "stepType": "request",
            "url": "{{base}}/ping",
            "assertions": [{"source": "response_status", "comparison": "equal", "value": 200}],
        }
    ]
    if pause:
        steps.insert(0, {"stepType": "pause", "duration": pause})
    return json.dumps(
        {
            "apiVersion": "assay.dev/v1alpha1",
            "kind": "Monitor",
            "metadata": {"name": name},
            "spec": {
                "steps": steps,
                "environments": [
                    {"name": "local", "initialVariables": {"base": url}},
                    {"name": "world", "id": "env-world", "initialVariables": {"base": url}, "regions": list(regions)},
                ],
                "defaultEnvironment": "local",
            },
        }
    )


def get(cluster, kind: str, name: str, namespace: str) -> dict:
    return json.loads(cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout)


def request_run(cluster, namespace: str, name: str, value) -> str:
    """Annotate; returns the run id the request gets."""
    text = value if isinstance(value, str) else json.dumps(value)
    cluster.kubectl("annotate", "monitor", name, "-n", namespace, f"{ANNOTATION}={text}", "--overwrite")
    uid = get(cluster, "monitor", name, namespace)["metadata"]["uid"]
    request_id = value["id"] if isinstance(value, dict) else value
    return run_id_for_request(name, uid, request_id)


def run_jobs(cluster, namespace: str, name: str) -> list[dict]:
    out = cluster.kubectl(
        "get", "jobs", "-n", namespace, "-l", f"assay.dev/kind=Monitor,assay.dev/name={name}", "-o", "json"
    )
    return json.loads(out.stdout)["items"]


def run_pods(cluster, namespace: str, run_id: str) -> list[dict]:
    out = cluster.kubectl("get", "pods", "-n", namespace, "-l", f"assay.dev/run-id={run_id}", "-o", "json")
    return json.loads(out.stdout)["items"]


def finished(cluster, namespace: str, name: str, run_id: str):
    def check():
        status = get(cluster, "monitor", name, namespace).get("status") or {}
        last = status.get("lastRun") or {}
        return status if last.get("runId") == run_id and last.get("result") else None

    return check


def termination_summary(pod: dict) -> dict:
    return json.loads(pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"])


def test_a_run_passes_then_a_run_with_other_params_fails_and_history_has_both(cluster, namespace, operator):
    with CountingTarget() as target:
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=monitor_manifest("health", target.url))
        first = request_run(cluster, namespace, "health", "r-1")
        status = cluster.wait_for("the first run", finished(cluster, namespace, "health", first), timeout=90)
        assert status["lastRun"]["result"] == "Passed", status
        assert status["lastRun"]["environment"] == "local"
        assert "regions" not in status["lastRun"]
        assert target.counts[("GET", "/ping")] == 1
        [job] = run_jobs(cluster, namespace, "health")
        assert job["metadata"]["name"] == first

        second = request_run(cluster, namespace, "health", {"id": "r-2", "params": {"base": "http://127.0.0.1:9"}})
        status = cluster.wait_for("the second run", finished(cluster, namespace, "health", second), timeout=90)
        assert status["lastRun"]["result"] == "Failed"
        assert [(e["runId"], e["result"]) for e in status["history"]] == [(second, "Failed"), (first, "Passed")]
        assert target.counts[("GET", "/ping")] == 1
        assert len(run_jobs(cluster, namespace, "health")) == 2


def test_a_run_in_two_regions_is_two_pods_on_nodes_of_those_regions(cluster, namespace, operator, region_agents):
    with CountingTarget() as target:
        cluster.kubectl(
            "apply", "-n", namespace, "-f", "-", input=monitor_manifest("global", target.url, regions=REGIONS)
        )
        run_id = request_run(cluster, namespace, "global", {"id": "r-1", "environment": "env-world"})
        status = cluster.wait_for("the run", finished(cluster, namespace, "global", run_id), timeout=90)

        assert status["lastRun"]["result"] == "Passed", status
        assert sorted(status["lastRun"]["regions"]) == sorted(REGIONS)
        assert status["lastRun"]["environment"] == "world"
        jobs = run_jobs(cluster, namespace, "global")
        assert sorted(j["metadata"]["name"] for j in jobs) == sorted(f"{run_id}-{r}" for r in REGIONS)
        pods = run_pods(cluster, namespace, run_id)
        assert len(pods) == 2
        for pod in pods:
            region = pod["metadata"]["labels"]["assay.dev/location"]
            assert pod["spec"]["nodeSelector"] == {REGION_LABEL: region}
            assert pod["spec"]["nodeName"] == region_agents[region]
            node = get(cluster, "node", pod["spec"]["nodeName"], "default")
            assert node["metadata"]["labels"][REGION_LABEL] == region
            summary = termination_summary(pod)
            assert summary["region"] == region and summary["result"] == "Passed"
        assert target.counts[("GET", "/ping")] == 2
        complete = {c["type"]: c for c in status["conditions"]}["Complete"]
        assert complete["message"] == status["lastRun"]["message"] == ", ".join(f"{r}: passed" for r in sorted(REGIONS))


def test_operator_killed_mid_run_completes_the_regions_once(cluster, namespace, operator, region_agents):
    with CountingTarget() as target:
        cluster.kubectl(
            "apply", "-n", namespace, "-f", "-", input=monitor_manifest("steady", target.url, regions=REGIONS, pause=4)
        )
        run_id = request_run(cluster, namespace, "steady", {"id": "r-1", "environment": "world"})
        cluster.wait_for(
            "both region pods to run",
            lambda: (
                len([p for p in run_pods(cluster, namespace, run_id) if p["status"].get("phase") == "Running"]) == 2
            ),
            timeout=60,
            interval=0.2,
        )
        uids = sorted(j["metadata"]["uid"] for j in run_jobs(cluster, namespace, "steady"))
        operator.kill()
        assert target.total == 0, "the run finished before the operator was killed; pause longer"
        operator.start()

        status = cluster.wait_for("the run", finished(cluster, namespace, "steady", run_id), timeout=120)
        assert status["lastRun"]["result"] == "Passed", status
        assert sorted(j["metadata"]["uid"] for j in run_jobs(cluster, namespace, "steady")) == uids
        assert target.counts[("GET", "/ping")] == 2
        assert len(status["history"]) == 1


def test_an_unknown_environment_starts_nothing_and_says_why(cluster, namespace, operator):
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=monitor_manifest("where", "http://127.0.0.1:9"))
    request_run(cluster, namespace, "where", {"id": "r-1", "environment": "mars"})

    def refused():
        conditions = (get(cluster, "monitor", "where", namespace).get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c["type"] == "RunRequest"), None)

    condition = cluster.wait_for("the RunRequest condition", refused, timeout=30)
    assert (condition["status"], condition["reason"]) == ("False", "InvalidRequest")
    assert "'mars'" in condition["message"] and "local, world" in condition["message"]
    time.sleep(1)
    assert run_jobs(cluster, namespace, "where") == []


def _gateway_ready() -> bool:
    import importlib.util

    return importlib.util.find_spec("assay.api.routers.ingest") is not None


@pytest.mark.skipif(not _gateway_ready(), reason="the gateway's ingest router is not there yet")
def test_with_the_gateway_each_regions_result_lands_in_the_store(
    cluster, namespace, region_agents, gateway, operator_with_gateway
):
    with CountingTarget() as target:
        cluster.kubectl(
            "apply", "-n", namespace, "-f", "-", input=monitor_manifest("stored", target.url, regions=REGIONS)
        )
        run_id = request_run(cluster, namespace, "stored", {"id": "r-1", "environment": "world"})
        status = cluster.wait_for("the run", finished(cluster, namespace, "stored", run_id), timeout=90)
        assert status["lastRun"]["result"] == "Passed", status
        secret = json.loads(cluster.kubectl("get", "secret", f"{run_id}-upload", "-n", namespace, "-o", "json").stdout)
        assert secret["metadata"]["ownerReferences"][0]["kind"] == "Monitor"

        # What the gateway says it holds for the run (the ingest endpoint takes the run's token)...
        uid = get(cluster, "monitor", "stored", namespace)["metadata"]["uid"]
        token = upload_token(GatewayProcess.UPLOAD_KEY, RunGrant(namespace, "Monitor", "stored", uid, run_id))
        request = urllib.request.Request(
            f"{gateway.url}/internal/v1/runs/{run_id}", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            stored = json.load(answer)
        assert sorted(d["name"] for d in stored["documents"]) == [
            "monitor-result-0.json",
            "monitor-result-1.json",
            "monitor-steps-0.json",
            "monitor-steps-1.json",
        ]
        assert (stored["run"]["kind"], stored["run"]["project"]) == ("Monitor", namespace), stored["run"]
        # ... and the Runscope-shaped results on its volume, one per region.
        results = [json.loads(gateway.read_object(key)) for key in gateway.stored_keys("*-monitor-result-*.json")]
        assert sorted(r["region"] for r in results) == sorted(REGIONS)
        assert all(r["test_run_id"] == run_id and r["result"] == "pass" for r in results)
        assert all(r["environment_name"] == "world" and r["requests"] for r in results)
