"""TestSuite runs end to end on the real control plane: annotate -> one Job -> the runner pod
(run by the node agent) calls a loopback target -> status.lastRun and history, checked
against what the target received."""

from __future__ import annotations

import base64
import json
import time
import urllib.request

import pytest

from assay.crds.contracts.upload import RunGrant, upload_token
from assay.operator.names import run_id_for_request
from tests.conftest import GatewayProcess
from tests.support.targets import CountingTarget

pytestmark = pytest.mark.cluster

ANNOTATION = "assay.dev/run-request"


def suite_manifest(name: str, url: str, *, requests_per_flow: int = 1) -> str:
    return json.dumps(
        {
            "apiVersion": "assay.dev/v1alpha1",
            "kind": "TestSuite",
            "metadata": {"name": name},
            "spec": {
                "parameters": {"base": url},
                "flows": [
                    {
                        "name": "browse",
                        "requests": [
                            {
                                "name": f"home {i}",
                                "url": "{{base}}/",
                                "assertions": [{"source": "response_status", "comparison": "equal", "value": 200}],
                            }
                            for i in range(requests_per_flow)
                        ],
                    },
                    {"name": "buy", "requests": [{"method": "POST", "url": "{{base}}/orders", "body": "{}"}]},
                    {"name": "manual only", "ciEnabled": False, "requests": [{"url": "{{base}}/manual"}]},
                ],
            },
        }
    )


def get(cluster, kind: str, name: str, namespace: str) -> dict:
    return json.loads(cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout)


def request_run(cluster, namespace: str, name: str, value: str) -> None:
    cluster.kubectl("annotate", "testsuite", name, "-n", namespace, f"{ANNOTATION}={value}", "--overwrite")


def run_jobs(cluster, namespace: str, name: str) -> list[dict]:
    out = cluster.kubectl(
        "get", "jobs", "-n", namespace, "-l", f"assay.dev/kind=TestSuite,assay.dev/name={name}", "-o", "json"
    )
    return json.loads(out.stdout)["items"]


def last_run_finished(cluster, namespace: str, name: str, run_id: str | None = None):
    def check():
        status = get(cluster, "testsuite", name, namespace).get("status") or {}
        last = status.get("lastRun") or {}
        if last.get("result") and (run_id is None or last.get("runId") == run_id):
            return status
        return None

    return check


def test_an_annotation_starts_one_job_and_the_status_matches_what_the_target_received(cluster, namespace, operator):
    with CountingTarget() as target:
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=suite_manifest("shop", target.url))
        request_run(cluster, namespace, "shop", "r-1")
        [job] = cluster.wait_for("the run Job", lambda: run_jobs(cluster, namespace, "shop"))
        status = cluster.wait_for("the run to finish", last_run_finished(cluster, namespace, "shop"), timeout=90)

        last = status["lastRun"]
        assert (last["phase"], last["result"]) == ("Succeeded", "Passed"), status
        assert last["runId"] == job["metadata"]["labels"]["assay.dev/run-id"] == job["metadata"]["name"]
        assert last["counts"] == {"total": 2, "passed": 2, "failed": 0}
        assert last["startTime"] <= last["completionTime"]
        assert status["history"] == [last]
        # The two CI-enabled flows ran, the manual one did not.
        assert dict(target.counts) == {("GET", "/"): 1, ("POST", "/orders"): 1}
        assert job["metadata"]["ownerReferences"][0]["kind"] == "TestSuite"
        conditions = {c["type"]: c for c in status["conditions"]}
        assert conditions["Complete"]["status"] == "True" and conditions["Complete"]["reason"] == "Passed"
        assert conditions["RunRequest"]["reason"] == "Started"


def test_the_same_request_id_starts_nothing_and_a_new_id_starts_a_second_run(cluster, namespace, operator):
    with CountingTarget() as target:
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=suite_manifest("again", target.url))
        request_run(cluster, namespace, "again", "r-1")
        first = cluster.wait_for("the first run", last_run_finished(cluster, namespace, "again"), timeout=90)
        assert first["lastRun"]["result"] == "Passed"
        received = target.total

        # The same id again, as the gateway writes it, and a spec edit that fires the handlers.
        request_run(cluster, namespace, "again", json.dumps({"id": "r-1", "forceAllFlows": True}))
        cluster.kubectl(
            "patch", "testsuite", "again", "-n", namespace, "--type=merge", "-p", '{"spec": {"description": "edited"}}'
        )
        time.sleep(4)
        assert len(run_jobs(cluster, namespace, "again")) == 1
        assert target.total == received

        # A new id: a second run, which fails because its parameters point nowhere.
        request_run(
            cluster, namespace, "again", json.dumps({"id": "r-2", "overrideParameters": {"base": "http://127.0.0.1:9"}})
        )
        uid = get(cluster, "testsuite", "again", namespace)["metadata"]["uid"]
        second = run_id_for_request("again", uid, "r-2")  # what the gateway answers a run request with
        status = cluster.wait_for("the second run", last_run_finished(cluster, namespace, "again", second), timeout=90)
        assert len(run_jobs(cluster, namespace, "again")) == 2
        assert first["lastRun"]["runId"] == run_id_for_request("again", uid, "r-1")
        assert status["lastRun"]["result"] == "Failed" and status["lastRun"]["counts"]["passed"] == 0
        assert [e["runId"] for e in status["history"]] == [status["lastRun"]["runId"], first["lastRun"]["runId"]]
        assert [e["result"] for e in status["history"]] == ["Failed", "Passed"]
        assert target.total == received
        complete = {c["type"]: c for c in status["conditions"]}["Complete"]
        assert complete["reason"] == "Failed" and complete["message"] == "2 of 2 flow runs failed"


def test_operator_killed_mid_run_completes_the_run_once(cluster, namespace, operator):
    with CountingTarget(delay=0.3) as target:
        cluster.kubectl(
            "apply", "-n", namespace, "-f", "-", input=suite_manifest("survives", target.url, requests_per_flow=12)
        )
        request_run(cluster, namespace, "survives", "r-1")
        [job] = cluster.wait_for("the run Job", lambda: run_jobs(cluster, namespace, "survives"))
        cluster.wait_for("requests to arrive", lambda: target.total > 0, timeout=60, interval=0.1)
        operator.kill()
        assert target.total < 13, "the run finished before the operator was killed; slow the target"
        operator.start()

        status = cluster.wait_for("the run to finish", last_run_finished(cluster, namespace, "survives"), timeout=120)
        assert [j["metadata"]["uid"] for j in run_jobs(cluster, namespace, "survives")] == [job["metadata"]["uid"]]
        assert status["lastRun"]["result"] == "Passed", status
        assert target.total == 13
        assert len(status["history"]) == 1


def test_an_unusable_request_starts_nothing_and_says_why(cluster, namespace, operator):
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=suite_manifest("typo", "http://127.0.0.1:9"))
    request_run(cluster, namespace, "typo", '{"id": "r-1", "forceAllFlow": true}')

    def refused():
        conditions = (get(cluster, "testsuite", "typo", namespace).get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c["type"] == "RunRequest"), None)

    condition = cluster.wait_for("the RunRequest condition", refused, timeout=30)
    assert (condition["status"], condition["reason"]) == ("False", "InvalidRequest")
    assert "forceAllFlow" in condition["message"]
    assert run_jobs(cluster, namespace, "typo") == []


def test_with_the_gateway_the_suite_run_lands_in_the_store_and_every_run_gets_an_upload_secret(
    cluster, namespace, gateway, operator_with_gateway
):
    with CountingTarget() as target:
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=suite_manifest("stored", target.url))
        request_run(cluster, namespace, "stored", "r-1")
        uid = get(cluster, "testsuite", "stored", namespace)["metadata"]["uid"]
        run_id = run_id_for_request("stored", uid, "r-1")
        status = cluster.wait_for("the run", last_run_finished(cluster, namespace, "stored", run_id), timeout=90)
        assert status["lastRun"]["result"] == "Passed", status

        token = upload_token(GatewayProcess.UPLOAD_KEY, RunGrant(namespace, "TestSuite", "stored", uid, run_id))
        request = urllib.request.Request(
            f"{gateway.url}/internal/v1/runs/{run_id}", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            stored = json.load(answer)
        assert [d["name"] for d in stored["documents"]] == ["suite-run.json"]
        [key] = gateway.stored_keys("*-suite-run.json")
        document = json.loads(gateway.read_object(key))
        assert (document["id"], document["status"], document["progress"]) == (run_id, "PASSED", "2/2")
        assert [f["status"] for f in document["testSuiteFlowRuns"]] == ["PASSED", "PASSED"]

        # A LoadTest's run is wired the same way: its own token Secret, the gateway in the env.
        cluster.kubectl(
            "apply",
            "-n",
            namespace,
            "-f",
            "-",
            input=json.dumps(
                {
                    "apiVersion": "assay.dev/v1alpha1",
                    "kind": "LoadTest",
                    "metadata": {"name": "load"},
                    "spec": {
                        "shards": 1,
                        "baseUrl": target.url,
                        "load": {"users": 1, "iterations": 1},
                        "flows": [{"name": "f", "requests": [{"url": "/"}]}],
                    },
                }
            ),
        )
        job = cluster.wait_for(
            "the LoadTest Job",
            lambda: json.loads(
                cluster.kubectl("get", "jobs", "-n", namespace, "-l", "assay.dev/kind=LoadTest", "-o", "json").stdout
            )["items"],
        )[0]
        load_run = job["metadata"]["labels"]["assay.dev/run-id"]
        secret = json.loads(
            cluster.kubectl("get", "secret", f"{load_run}-upload", "-n", namespace, "-o", "json").stdout
        )
        load_uid = get(cluster, "loadtest", "load", namespace)["metadata"]["uid"]
        assert base64.b64decode(secret["data"]["token"]).decode() == upload_token(
            GatewayProcess.UPLOAD_KEY, RunGrant(namespace, "LoadTest", "load", load_uid, load_run)
        )
        env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["ASSAY_GATEWAY_URL"]["value"] == gateway.url
        assert env["ASSAY_UPLOAD_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == f"{load_run}-upload"


def test_a_run_waits_for_the_configmap_its_parameter_pool_names_then_uses_it(cluster, namespace, operator):
    with CountingTarget() as target:
        suite = json.loads(suite_manifest("pooled", target.url))
        suite["spec"]["flows"] = [
            {
                "name": "items",
                "parameterPool": {"name": "ids", "configMapRef": {"name": "item-ids", "key": "ids.csv"}},
                "requests": [{"url": "{{base}}/items/{{id}}"}],
            }
        ]
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(suite))
        request_run(cluster, namespace, "pooled", "r-1")

        def waiting():
            conditions = (get(cluster, "testsuite", "pooled", namespace).get("status") or {}).get("conditions") or []
            return next((c for c in conditions if c["type"] == "RunRequest" and c["reason"] == "Pending"), None)

        condition = cluster.wait_for("the RunRequest condition to say it waits", waiting, timeout=30)
        assert condition["status"] == "Unknown" and "ConfigMap 'item-ids'" in condition["message"]
        assert run_jobs(cluster, namespace, "pooled") == []

        cluster.kubectl("create", "configmap", "item-ids", "-n", namespace, "--from-literal=ids.csv=id\n7\n8\n")
        status = cluster.wait_for("the run", last_run_finished(cluster, namespace, "pooled"), timeout=90)
        assert status["lastRun"]["result"] == "Passed" and status["lastRun"]["counts"]["total"] == 2
        assert dict(target.counts) == {("GET", "/items/7"): 1, ("GET", "/items/8"): 1}
        # The run uses the pool as it was when the run started: the CSV is in the run's ConfigMap.
        manifest = json.loads(
            get(cluster, "configmap", f"{status['lastRun']['runId']}-spec", namespace)["data"]["manifest.json"]
        )
        assert manifest["spec"]["flows"][0]["parameterPool"] == {"name": "ids", "csv": "id\n7\n8\n"}
