"""Loadmill's own CLI (loadmill-node 3.x and 4.x) against the real gateway and control plane.

The npm package is not reachable here, so each test replays what the CLI sends, as its source
sends it: every request carries `Authorization: Basic base64("<token>:")` (superagent's
`.auth(token, "")`), JSON bodies go out with `Content-Type: application/json`, paths are
`/api/...` without a version, and results are polled until they leave RUNNING (the CLI polls
every 10 s; here every half second, to keep the test short — the calls are the same).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import httpx
import pytest

from tests.cluster.test_loadmill_api import kubectl_json, loadmill_conf, loadmill_token
from tests.support.http_targets import HttpTarget

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

POLL_SECONDS = 0.5
USER_AGENT = "node-superagent/3.8.3"


def cli(gateway, token: str) -> httpx.Client:
    """An HTTP client that speaks as the CLI does."""
    return httpx.Client(
        base_url=gateway.url + "/api",
        auth=httpx.BasicAuth(token, ""),
        headers={"User-Agent": USER_AGENT, "Accept-Encoding": "gzip, deflate"},
        timeout=60,
    )


def poll(cluster, what: str, read, done, timeout: float = 180) -> dict:
    box: dict = {}

    def check():
        box["last"] = read()
        return done(box["last"])

    try:
        cluster.wait_for(what, check, timeout=timeout, interval=POLL_SECONDS)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nlast: {box.get('last')!r}") from None
    return box["last"]


def ok(response: httpx.Response) -> dict:
    assert response.status_code == 200, (response.request.url, response.status_code, response.text)
    return response.json()


def wait_suite_run(cluster, api: httpx.Client, run_id: str) -> dict:
    return poll(
        cluster,
        f"suite run {run_id}",
        lambda: ok(api.get(f"/test-suites-runs/{run_id}")),
        lambda body: body["status"] != "RUNNING",
    )


def junit(cluster, api: httpx.Client, test_id: str, run_type: str) -> ET.Element:
    """The CLI's -j: ask for the report, then poll its download while it answers 404."""
    report_id = ok(api.post("/reports/junit", json={"testId": test_id, "runType": run_type}))["junitReportId"]
    box: dict = {}

    def ready():
        response = api.get(f"/reports/junit/{report_id}")
        assert response.status_code in (200, 404), response.text
        box["xml"] = response.json().get("junitReport")
        return response.status_code == 200

    cluster.wait_for(f"JUnit report {report_id}", ready, timeout=60, interval=POLL_SECONDS)
    return ET.fromstring(box["xml"].split("?>", 1)[1])


def apply(cluster, namespace: str, manifest: dict) -> dict:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))
    return kubectl_json(cluster, "get", "testsuite", manifest["metadata"]["name"], "-n", namespace)


def suite(name: str, flows: list[dict], plan: str | None = None, **spec) -> dict:
    metadata: dict = {"name": name}
    if plan:
        metadata["labels"] = {"assay.dev/test-plan": plan}
    return {
        "apiVersion": "assay.dev/v1alpha1",
        "kind": "TestSuite",
        "metadata": metadata,
        "spec": {
            "description": f"{name} suite",
            "parameters": {"baseUrl": "http://127.0.0.1:9"},
            **spec,
            "flows": flows,
        },
    }


def checkout_flows() -> list[dict]:
    return [
        {
            "id": "11111111-1111-4111-8111-111111111111",
            "name": "login",
            "labels": ["smoke"],
            "parameterPool": {"name": "users", "csv": "user\nann\nbob\n"},
            "requests": [{"url": "{{baseUrl}}/echo?user={{user}}"}],
        },
        {
            "id": "22222222-2222-4222-8222-222222222222",
            "name": "pay",
            "labels": ["smoke"],
            "stopOnFailure": False,
            "requests": [
                {
                    "name": "catalog",
                    "url": "{{baseUrl}}/json",
                    "assertions": [
                        {"source": "response_json", "property": "data.count", "comparison": "equal", "value": "3"}
                    ],
                },
                {"name": "charge", "url": "{{baseUrl}}/status/500"},
            ],
        },
        {"name": "nightly", "labels": ["nightly"], "requests": [{"url": "{{baseUrl}}/nightly"}]},
    ]


def test_cli_test_suite_with_labels_and_pool_reports_a_failing_suite(cluster, namespace, gateway, two_tenants_operator):
    with HttpTarget() as target:
        token = loadmill_token(cluster, gateway, namespace)
        uid = apply(cluster, namespace, suite("checkout", checkout_flows()))["metadata"]["uid"]
        with cli(gateway, token) as api:
            # `loadmill <suite id> --test-suite --labels smoke --pool users -r -j`
            started = api.post(
                f"/test-suites/{uid}/run",
                json={
                    "overrideParameters": {"baseUrl": target.url},
                    "additionalDescription": "cli",
                    "labels": ["smoke"],
                    "pool": "users",
                },
            )
            assert started.request.headers["authorization"].startswith("Basic ")
            run_id = ok(started)["testSuiteRunId"]
            run = wait_suite_run(cluster, api, run_id)
            assert run["status"] == "FAILED" and run["description"] == "checkout suite cli", run
            flows = {f["description"]: f for f in run["testSuiteFlowRuns"]}
            assert sorted(flows) == ["login (row 1/2)", "login (row 2/2)", "pay"]
            assert sorted(r.query["user"][0] for r in target.received("/echo")) == ["ann", "bob"]
            assert target.received("/nightly") == []

            # -r: the reporter reads the failed flow run's result and redactableResult.
            pay = ok(api.get(f"/test-suites-runs/flows/{flows['pay']['id']}"))
            assert pay["status"] == "FAILED" and pay["testSuiteFlowId"] == "22222222-2222-4222-8222-222222222222"
            resolved = pay["result"]["resolvedRequests"]
            assert [(r["description"], r["method"], r["url"]) for r in resolved] == [
                ("catalog", "GET", f"{target.url}/json"),
                ("charge", "GET", f"{target.url}/status/500"),
            ]
            assert resolved[0]["assert"] == {"0": {"check": "response_json.data.count", "equals": "3"}}
            assert pay["result"]["failures"] == {
                "0": {"numFailures": 1, "histogram": {"0": 1}},
                "1": {"numFailures": 1, "histogram": {"status 500": 1}},
            }
            assert pay["redactableResult"][0] == {"postParameters": [{"response_json.data.count": "2"}]}
            passed = ok(api.get(f"/test-suites-runs/flows/{flows['login (row 1/2)']['id']}"))
            assert passed["status"] == "PASSED" and passed["result"]["failures"] == {}

            # -j
            report = junit(cluster, api, run_id, "test-suite")
            cases = {c.get("name"): c for c in report.iter("testcase")}
            assert sorted(cases) == sorted(flows) and report.get("failures") == "1"
            failure = cases["pay"].find("failure")
            assert failure is not None and "status 500" in failure.text and "data.count" in failure.text
            assert cases["login (row 1/2)"].find("failure") is None

            # Options that select nothing are refused in Loadmill's error shape.
            for body, words in (({"labels": ["nope"]}, "label"), ({"pool": "nope"}, "pool")):
                refused = api.post(f"/test-suites/{uid}/run", json=body)
                assert refused.status_code == 400 and words in refused.json()["message"], refused.text
                assert set(refused.json()) == {"message"}
            assert api.post("/reports/junit", json={"testId": run_id, "runType": "load"}).status_code == 400

        # The documented forms keep working beside the CLI's.
        bare = httpx.get(
            f"{gateway.url}/api/v1/test-suites-runs/{run_id}", headers={"Authorization": token}, timeout=30
        )
        assert bare.status_code == 200 and bare.json()["status"] == "FAILED"
        for headers in ({}, {"Authorization": "Basic " + "x" * 8}, {"Authorization": f"Basic {token}"}):
            refused = httpx.get(f"{gateway.url}/api/labels", headers=headers, timeout=30)
            assert refused.status_code == 401 and set(refused.json()) == {"message"}, headers
        wrong = httpx.get(f"{gateway.url}/api/labels", auth=(token + "x", ""), timeout=30)
        assert wrong.status_code == 401 and token not in wrong.text


def test_cli_load_test_runs_from_the_bare_configuration(cluster, namespace, gateway, two_tenants_operator):
    with HttpTarget() as target:
        token = loadmill_token(cluster, gateway, namespace)
        conf = loadmill_conf(target.url)
        with cli(gateway, token) as api:
            # `loadmill conf.json --load-test`: create, start, poll until `result` is set.
            test_id = ok(api.post("/tests", json=conf))["testId"]
            started = api.put(f"/tests/{test_id}/load")
            assert started.status_code == 200
            test = poll(
                cluster, "the load test", lambda: ok(api.get(f"/tests/{test_id}")), lambda t: t["result"] is not None
            )
            assert test["result"] == "done" and test["conf"] == conf, test
            assert (test["successfulIterations"], test["failedIterations"]) == (6, 0)
            assert len(target.received("/json")) == 6


def test_cli_test_plan_runs_the_plans_suites_and_reports_them(
    cluster, namespace, other_account, gateway, two_tenants_operator
):
    with HttpTarget() as target:
        token = loadmill_token(cluster, gateway, namespace)
        theirs = loadmill_token(cluster, gateway, other_account, "other-ci")
        good = [{"name": "health", "labels": ["smoke"], "requests": [{"url": "{{baseUrl}}/json"}]}]
        apply(cluster, namespace, suite("api", good, plan="release"))
        apply(cluster, namespace, suite("checkout", checkout_flows(), plan="release"))
        apply(cluster, namespace, suite("unplanned", good))
        nightly_only = [{"name": "n", "labels": ["nightly"], "requests": [{"url": "{{baseUrl}}/nightly"}]}]
        apply(cluster, namespace, suite("later", nightly_only, plan="release"))
        with cli(gateway, token) as api:
            # 4.x: `loadmill <plan id> --test-plan --labels smoke -j`
            started = api.post(
                "/test-plans/release/run",
                json={
                    "overrideParameters": {"baseUrl": target.url},
                    "additionalDescription": "cli",
                    "labels": ["smoke"],
                    "pool": None,
                    "parallel": None,
                    "tags": None,
                    "branch": None,
                    "maxFlakyFlowRetries": None,
                    "labelsExpression": None,
                    "inlineParameterOverride": False,
                    "apiCatalogService": None,
                    "turboParallel": False,
                },
            )
            plan_run_id = ok(started)["testPlanRunId"]
            plan_run = poll(
                cluster,
                "the plan run",
                lambda: ok(api.get(f"/test-plans-runs/{plan_run_id}")),
                lambda body: (
                    body["status"] != "RUNNING" and not any(s["status"] == "RUNNING" for s in body["testSuitesRuns"])
                ),
            )
            final = ok(
                api.get(
                    f"/test-plans-runs/{plan_run_id}", params={"fetchAllFlows": "true", "groupFlowAttempts": "true"}
                )
            )
            assert final["status"] == plan_run["status"] == "FAILED", final
            runs = {r["description"]: r for r in final["testSuitesRuns"]}
            assert sorted(runs) == ["api suite cli", "checkout suite cli"]  # not unplanned, not nightly-only
            assert runs["api suite cli"]["status"] == "PASSED" and runs["checkout suite cli"]["status"] == "FAILED"
            assert target.received("/nightly") == []

            report = junit(cluster, api, plan_run_id, "test-plan")
            assert report.tag == "testsuites" and report.get("failures") == "1"
            assert sorted(s.get("name") for s in report.iter("testsuite")) == ["api", "checkout"]

            missing = api.post("/test-plans/nope/run", json={})
            assert missing.status_code == 404 and set(missing.json()) == {"message"}
            report_id = ok(api.post("/reports/junit", json={"testId": plan_run_id, "runType": "test-plan"}))[
                "junitReportId"
            ]
            suite_run_id = runs["api suite cli"]["id"]

        # Another account reaches none of it.
        with cli(gateway, theirs) as other:
            for method, path, body in (
                ("POST", "/test-plans/release/run", {"overrideParameters": {"baseUrl": target.url}}),
                ("GET", f"/test-plans-runs/{plan_run_id}", None),
                ("POST", "/reports/junit", {"testId": plan_run_id, "runType": "test-plan"}),
                ("POST", "/reports/junit", {"testId": suite_run_id, "runType": "test-suite"}),
                ("GET", f"/reports/junit/{report_id}", None),
                ("GET", f"/test-suites-runs/{suite_run_id}", None),
            ):
                response = other.request(method, path, json=body)
                assert response.status_code == 404 and set(response.json()) == {"message"}, (path, response.text)
        # The other account's plan-run request ran nothing here.
        assert len(kubectl_json(cluster, "get", "testsuite", "api", "-n", namespace)["status"]["history"]) == 1
