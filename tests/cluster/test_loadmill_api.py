"""The Loadmill REST API through the real gateway (uvicorn), on the real control plane with the
real operator, whose runner pods upload suite runs and load-test shards to that gateway: every
endpoint of seeds/002 on real runs."""

from __future__ import annotations

import base64
import json
import uuid

import httpx
import pytest

from tests.support.http_targets import HttpTarget

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

LOGIN_FLOW = "0b7e3c52-8f8e-4a4b-9a55-6f3d1c2b7a10"
NIGHTLY_FLOW = "5d2f6a1e-3b9c-4c7d-8e0f-1a2b3c4d5e6f"


def kubectl_json(cluster, *args) -> dict | None:
    out = cluster.kubectl(*args, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


def loadmill_token(cluster, gateway, namespace: str, name: str = "loadmill-ci") -> str:
    """A ClientCredential with a static API token for the loadmill scope; the token, once the
    gateway accepts it."""
    cluster.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "assay.dev/v1alpha1",
                "kind": "ClientCredential",
                "metadata": {"name": name},
                "spec": {"displayName": name, "scopes": ["loadmill"], "grantTypes": ["static_token"]},
            }
        ),
    )
    cred = cluster.wait_for(
        f"credential {name}",
        lambda: (lambda c: c if (c or {}).get("status", {}).get("secretRef") else None)(
            kubectl_json(cluster, "get", "clientcredential", name, "-n", namespace)
        ),
        timeout=60,
        interval=0.3,
    )
    secret = kubectl_json(cluster, "get", "secret", cred["status"]["secretRef"]["name"], "-n", namespace)
    token = (
        base64.b64decode(secret["data"]["client-id"]).decode()
        + "."
        + base64.b64decode(secret["data"]["client-secret"]).decode()
    )
    cluster.wait_for(
        "the gateway to accept the token",
        lambda: (
            httpx.get(gateway.url + "/api/v1/labels", headers={"Authorization": token}, timeout=10).status_code == 200
        ),
        timeout=30,
        interval=0.3,
    )
    return token


def suite_manifest(name: str = "checkout") -> str:
    return json.dumps(
        {
            "apiVersion": "assay.dev/v1alpha1",
            "kind": "TestSuite",
            "metadata": {"name": name},
            "spec": {
                "description": "checkout suite",
                "labels": ["team-web"],
                "parameters": {"baseUrl": "http://127.0.0.1:9"},
                "flows": [
                    {
                        "id": LOGIN_FLOW,
                        "name": "login",
                        "labels": ["smoke", "checkout"],
                        "requests": [
                            {
                                "url": "{{baseUrl}}/json",
                                "assertions": [{"source": "response_status", "comparison": "equal", "value": 200}],
                            }
                        ],
                    },
                    {
                        "id": NIGHTLY_FLOW,
                        "name": "nightly",
                        "ciEnabled": False,
                        "labels": ["nightly"],
                        "requests": [{"url": "{{baseUrl}}/echo?user={{user}}"}],
                    },
                ],
            },
        }
    )


def finished(cluster, client: httpx.Client, run_id: str, timeout: float = 120) -> dict:
    box = {}

    def check():
        response = client.get(f"/api/v1/test-suites-runs/{run_id}")
        assert response.status_code == 200, response.text
        box["run"] = response.json()
        return box["run"]["status"] != "RUNNING"

    try:
        cluster.wait_for(f"suite run {run_id} to finish", check, timeout=timeout, interval=0.5)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nlast: {box.get('run')!r}") from None
    return box["run"]


SUITE_RUN_KEYS = {
    "id",
    "description",
    "startTime",
    "endTime",
    "conf",
    "status",
    "displayName",
    "testSuiteId",
    "testSuiteFlowRuns",
    "progress",
    "successRate",
    "avgResTime",
}


def test_test_suite_runs_with_options_and_reads_back_in_loadmills_shape(
    cluster, namespace, gateway, two_tenants_operator
):
    with HttpTarget() as target:
        token = loadmill_token(cluster, gateway, namespace)
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=suite_manifest())
        uid = kubectl_json(cluster, "get", "testsuite", "checkout", "-n", namespace)["metadata"]["uid"]
        with httpx.Client(base_url=gateway.url, headers={"Authorization": token}, timeout=60) as api:
            started = api.post(
                f"/api/v1/test-suites/{uid}/run",
                json={"additionalDescription": "from CI", "overrideParameters": {"baseUrl": target.url}},
            )
            assert started.status_code == 200, started.text
            first = started.json()["testSuiteRunId"]
            early = api.get(f"/api/v1/test-suites-runs/{first}")
            assert early.status_code == 200 and set(early.json()) >= SUITE_RUN_KEYS, early.text
            assert early.json()["status"] in ("RUNNING", "PASSED")

            # Right away a second run, by the suite's name, with every flow: it waits for the
            # first request to be taken up instead of replacing it.
            again = api.post(
                "/api/v1/test-suites/checkout/run",
                params={"forceAllFlows": "true"},
                json={"overrideParameters": [{"baseUrl": target.url}]},
            )
            assert again.status_code == 200, again.text
            second = again.json()["testSuiteRunId"]
            assert second != first

            run = finished(cluster, api, first)
            assert set(run) >= SUITE_RUN_KEYS
            assert run["status"] == "PASSED", run
            assert run["description"] == "checkout suite from CI"
            assert run["testSuiteId"] == uid and run["conf"] == {"useCookies": True}
            assert (run["progress"], run["successRate"]) == ("1/1", "100%")
            assert [f["description"] for f in run["testSuiteFlowRuns"]] == ["login"]
            assert isinstance(run["startTime"], int) and run["endTime"] >= run["startTime"]
            assert run["avgResTime"].endswith(" ms")

            everything = finished(cluster, api, second)
            assert everything["status"] == "PASSED" and everything["progress"] == "2/2"
            assert [f["description"] for f in everything["testSuiteFlowRuns"]] == ["login", "nightly"]
            assert len(target.received("/json")) == 2 and len(target.received("/echo")) == 1

            flow = run["testSuiteFlowRuns"][0]
            flow_run = api.get(f"/api/v1/test-suites-runs/flows/{flow['id']}")
            assert flow_run.status_code == 200, flow_run.text
            body = flow_run.json()
            assert {
                k: body[k] for k in ("id", "description", "status", "startTime", "testSuiteFlowId", "testSuiteId")
            } == {
                "id": flow["id"],
                "description": "login",
                "status": "PASSED",
                "startTime": flow["startTime"],
                "testSuiteFlowId": LOGIN_FLOW,
                "testSuiteId": uid,
            }
            assert body["conf"]["parameters"]["baseUrl"] == target.url
            # A flow run of a run this gateway has not served yet is found too.
            nightly = next(f for f in everything["testSuiteFlowRuns"] if f["description"] == "nightly")
            assert api.get(f"/api/v1/test-suites-runs/flows/{nightly['id']}").json()["testSuiteFlowId"] == NIGHTLY_FLOW

        status = kubectl_json(cluster, "get", "testsuite", "checkout", "-n", namespace)["status"]
        assert {e["runId"] for e in status["history"]} == {first, second}


def test_a_run_that_cannot_start_is_refused_and_unknown_ids_are_404(cluster, namespace, gateway, two_tenants_operator):
    token = loadmill_token(cluster, gateway, namespace)
    suite = json.loads(suite_manifest("ci-off"))
    for flow in suite["spec"]["flows"]:
        flow["ciEnabled"] = False
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(suite))
    with httpx.Client(base_url=gateway.url, headers={"Authorization": token}, timeout=30) as api:
        refused = api.post("/api/v1/test-suites/ci-off/run")
        assert refused.status_code == 400 and "forceAllFlows" in refused.json()["message"]
        assert set(refused.json()) == {"message"}
        for path in ("/api/v1/test-suites/nope/run", "/api/v1/test-suites/" + str(uuid.uuid4()) + "/run"):
            response = api.post(path)
            assert response.status_code == 404 and set(response.json()) == {"message"}
        for path in ("/api/v1/test-suites-runs/nope", "/api/v1/test-suites-runs/flows/nope", "/api/v1/tests/nope"):
            response = api.get(path)
            assert response.status_code == 404 and set(response.json()) == {"message"}, (path, response.text)
        assert api.put("/api/v1/tests/nope/load").status_code == 404
        bad = api.post("/api/v1/test-suites/ci-off/run", json={"overrideParameters": "baseUrl=x"})
        assert bad.status_code == 400 and "message" in bad.json()
    missing = httpx.get(gateway.url + "/api/v1/labels", timeout=30)
    assert missing.status_code == 401 and set(missing.json()) == {"message"}


def test_flow_parameter_pool_from_csv_drives_the_next_run(cluster, namespace, gateway, two_tenants_operator):
    with HttpTarget() as target:
        token = loadmill_token(cluster, gateway, namespace)
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=suite_manifest())
        uid = kubectl_json(cluster, "get", "testsuite", "checkout", "-n", namespace)["metadata"]["uid"]
        with httpx.Client(base_url=gateway.url, headers={"Authorization": token}, timeout=60) as api:
            path = f"/api/v1/test-suites/{uid}/flows/{NIGHTLY_FLOW}/pools"
            wrong_type = api.patch(path, content=b"user\nann\n", headers={"content-type": "application/json"})
            assert wrong_type.status_code == 415 and "text/csv" in wrong_type.json()["message"]
            bad_csv = api.patch(path, content=b"user,role\nann\n", headers={"content-type": "text/csv"})
            assert bad_csv.status_code == 400 and "line 2" in bad_csv.json()["message"]
            unknown = api.patch(
                f"/api/v1/test-suites/{uid}/flows/{uuid.uuid4()}/pools",
                content=b"user\nann\n",
                headers={"content-type": "text/csv"},
            )
            assert unknown.status_code == 404

            done = api.patch(
                path,
                params={"name": "users"},
                content=b"user\nann\nbob\n",
                headers={"content-type": "text/csv; charset=utf-8"},
            )
            assert done.status_code == 200 and done.content == b""
            flows = kubectl_json(cluster, "get", "testsuite", "checkout", "-n", namespace)["spec"]["flows"]
            assert flows[1]["parameterPool"] == {"name": "users", "csv": "user\nann\nbob\n"}
            assert "parameterPool" not in flows[0]

            # The flow can also be named by its name; the pool keeps its name.
            by_name = api.patch(
                "/api/v1/test-suites/checkout/flows/nightly/pools",
                content=b"user\ncid\ndee\n",
                headers={"content-type": "text/csv"},
            )
            assert by_name.status_code == 200
            flows = kubectl_json(cluster, "get", "testsuite", "checkout", "-n", namespace)["spec"]["flows"]
            assert flows[1]["parameterPool"] == {"name": "users", "csv": "user\ncid\ndee\n"}

            run_id = api.post(
                f"/api/v1/test-suites/{uid}/run",
                params={"forceAllFlows": "true"},
                json={"overrideParameters": {"baseUrl": target.url}},
            ).json()["testSuiteRunId"]
            run = finished(cluster, api, run_id)
            assert run["status"] == "PASSED" and run["progress"] == "3/3", run
            assert sorted(r.query["user"][0] for r in target.received("/echo")) == ["cid", "dee"]


def test_team_labels_with_and_without_the_ci_filter(cluster, namespace, gateway, two_tenants_operator):
    token = loadmill_token(cluster, gateway, namespace)
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=suite_manifest())
    with httpx.Client(base_url=gateway.url, headers={"Authorization": token}, timeout=30) as api:
        everything = api.get("/api/v1/labels").json()["teamLabels"]
        assert [label["description"] for label in everything] == ["checkout", "nightly", "smoke", "team-web"]
        assert {label["description"]: label["id"] for label in everything}["smoke"] == str(
            uuid.uuid5(uuid.uuid5(uuid.NAMESPACE_DNS, "labels.assay.dev"), "smoke")
        )
        ci = api.get("/api/v1/labels", params={"filter": "CI_enabled"}).json()["teamLabels"]
        assert [label["description"] for label in ci] == ["checkout", "smoke", "team-web"]
        # The same label has the same id whichever way it is asked for.
        assert {label["id"] for label in ci} <= {label["id"] for label in everything}
        assert api.get("/api/v1/labels", params={"filter": "nope"}).status_code == 400


def loadmill_conf(url: str) -> dict:
    return {
        "description": "checkout load",
        "concurrency": 2,
        "iterations": 3,
        "requests": [
            {
                "description": "catalog",
                "url": f"{url}/json",
                "method": "GET",
                "extract": [{"count": {"jsonPath": "data.count"}}],
                "assert": [{"check": "count", "equals": "2"}],
            },
            {
                "description": "echo",
                "url": f"{url}/echo?count=${{count}}",
                "method": "POST",
                "headers": [{"X-Test": "loadmill"}],
                "postData": {"text": '{"count": "${count}"}', "mimeType": "application/json"},
            },
        ],
        "meta": {"source": "test"},
    }


def test_load_test_is_created_from_a_configuration_and_runs_once(cluster, namespace, gateway, two_tenants_operator):
    with HttpTarget() as target:
        token = loadmill_token(cluster, gateway, namespace)
        conf = loadmill_conf(target.url)
        with httpx.Client(base_url=gateway.url, headers={"Authorization": token}, timeout=60) as api:
            refused = api.post("/api/v1/tests", json={"config": {"requests": [{"url": f"{target.url}/${{__uuid}}"}]}})
            assert refused.status_code == 400 and "built-in" in refused.json()["message"]

            created = api.post("/api/v1/tests", json={"config": conf})
            assert created.status_code == 200, created.text
            test_id = created.json()["testId"]
            before = api.get(f"/api/v1/tests/{test_id}").json()
            assert before == {
                "id": test_id,
                "startTime": None,
                "endTime": None,
                "usedSeconds": 0,
                "description": "checkout load",
                "conf": conf,
                "result": None,
                "failedIterations": 0,
                "successfulIterations": 0,
            }

            started = api.put(f"/api/v1/tests/{test_id}/load")
            assert started.status_code == 200 and started.content == b""
            twice = api.put(f"/api/v1/tests/{test_id}/load")
            assert twice.status_code == 409 and "only once" in twice.json()["message"]

            box = {}

            def ended():
                box["test"] = api.get(f"/api/v1/tests/{test_id}").json()
                return box["test"]["result"] is not None

            cluster.wait_for("the load test to end", ended, timeout=120, interval=0.5)
            test = box["test"]
            assert test["result"] == "done", test
            assert (test["successfulIterations"], test["failedIterations"]) == (6, 0)
            assert test["endTime"] >= test["startTime"] and test["usedSeconds"] >= 0
            assert test["conf"] == conf

            echoes = target.received("/echo")
            assert len(target.received("/json")) == 6 and len(echoes) == 6
            assert all(r.header("X-Test") == "loadmill" for r in echoes)
            assert all(r.body == b'{"count": "2"}' and r.query["count"] == ["2"] for r in echoes), echoes[0]

            # The configuration's own shape (as Loadmill's clients send it) works too.
            direct = api.post("/api/v1/tests", json=conf)
            assert direct.status_code == 200 and direct.json()["testId"] != test_id

        loadtest = kubectl_json(cluster, "get", "loadtest", f"loadmill-{test_id}", "-n", namespace)
        assert loadtest["metadata"]["labels"]["assay.dev/loadmill-test-id"] == test_id
        load = loadtest["spec"]["load"]
        assert (load["model"], load["users"], load["iterations"]) == ("closed", 2, 3)


def test_another_account_sees_nothing(cluster, namespace, other_account, gateway, two_tenants_operator):
    with HttpTarget() as target:
        mine = loadmill_token(cluster, gateway, namespace)
        theirs = loadmill_token(cluster, gateway, other_account, "other-ci")
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=suite_manifest())
        uid = kubectl_json(cluster, "get", "testsuite", "checkout", "-n", namespace)["metadata"]["uid"]
        with httpx.Client(base_url=gateway.url, headers={"Authorization": mine}, timeout=60) as api:
            run_id = api.post(
                f"/api/v1/test-suites/{uid}/run", json={"overrideParameters": {"baseUrl": target.url}}
            ).json()["testSuiteRunId"]
            run = finished(cluster, api, run_id)
            test_id = api.post("/api/v1/tests", json=loadmill_conf(target.url)).json()["testId"]
        with httpx.Client(base_url=gateway.url, headers={"Authorization": theirs}, timeout=30) as other:
            for method, path in (
                ("GET", f"/api/v1/test-suites-runs/{run_id}"),
                ("GET", f"/api/v1/test-suites-runs/flows/{run['testSuiteFlowRuns'][0]['id']}"),
                ("POST", f"/api/v1/test-suites/{uid}/run"),
                ("POST", "/api/v1/test-suites/checkout/run"),
                ("GET", f"/api/v1/tests/{test_id}"),
                ("PUT", f"/api/v1/tests/{test_id}/load"),
            ):
                response = other.request(method, path)
                assert response.status_code == 404 and set(response.json()) == {"message"}, (path, response.text)
            assert other.get("/api/v1/labels").json() == {"teamLabels": []}
        # Nothing ran on the other account's behalf.
        assert kubectl_json(cluster, "get", "loadtest", f"loadmill-{test_id}", "-n", namespace) is None
