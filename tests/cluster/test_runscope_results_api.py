"""The Runscope API's results, metrics and request counts through the real gateway, over Monitor
runs produced for real: kubectl applies a Monitor, the run-request annotation starts runs, the
runner pods (on node agents, one per region) run the steps against a loopback target and upload
their results to the gateway."""

from __future__ import annotations

import json
import sys
import uuid

import httpx
import pytest

from assay.operator.names import run_id_for_request
from tests.conftest import OperatorProcess
from tests.support.agents import node_agents, region_nodes
from tests.support.credentials import bearer, create_credential, make_namespace, request_token
from tests.support.targets import CountingTarget

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]

REGION_LABEL = "topology.kubernetes.io/region"
REGIONS = ("us1", "eu1")
READ_SCOPES = ("api:read", "test:read")
ENVELOPE_KEYS = {"data", "meta", "error"}


@pytest.fixture(scope="module")
def region_agents(cluster, tmp_path_factory):
    """One node agent per region, so a run in two regions is two pods on two nodes."""
    with node_agents(cluster, tmp_path_factory, region_nodes("results-agent", REGIONS)):
        yield {region: f"results-agent-{region}" for region in REGIONS}


@pytest.fixture
def team(cluster, namespace, gateway, tmp_path):
    """A team (org) whose bucket is `namespace`, an org-admin namespace for its org credential,
    and an operator wired to the gateway watching both."""
    name = f"team-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("label", "namespace", namespace, f"assay.dev/org={name}")
    admin = make_namespace(cluster, f"{namespace}-admin", {"assay.dev/org-admin": name})
    operator = OperatorProcess(cluster, tmp_path / "operator.log", [namespace, admin], gateway).start()
    yield {"name": name, "bucket": namespace, "admin": admin}
    operator.stop()
    print(operator.log()[-4000:], file=sys.stderr)
    cluster.kubectl("delete", "namespace", admin, "--wait=false", check=False)


def monitor_manifest(url: str) -> str:
    return json.dumps(
        {
            "apiVersion": "assay.dev/v1alpha1",
            "kind": "Monitor",
            "metadata": {"name": "health"},
            "spec": {
                "displayName": "Health check",
                "steps": [
                    {
                        "stepType": "request",
                        "id": "step-ping",
                        "url": "{{base}}/ping?probe=1",
                        "variables": [{"name": "ok", "source": "response_json", "property": "ok"}],
                        "assertions": [{"source": "response_status", "comparison": "equal_number", "value": 200}],
                    },
                    {"stepType": "pause", "id": "step-pause", "duration": 1},
                ],
                "environments": [
                    {"name": "local", "id": "env-local", "initialVariables": {"base": url}},
                    {"name": "world", "id": "env-world", "initialVariables": {"base": url}, "regions": list(REGIONS)},
                ],
                "defaultEnvironment": "local",
            },
        }
    )


def run_monitor(cluster, namespace: str, request: dict) -> str:
    """Ask for a run with the annotation and wait until the Monitor's status has its result."""
    cluster.kubectl(
        "annotate", "monitor", "health", "-n", namespace, f"assay.dev/run-request={json.dumps(request)}", "--overwrite"
    )
    monitor = json.loads(cluster.kubectl("get", "monitor", "health", "-n", namespace, "-o", "json").stdout)
    run_id = run_id_for_request("health", monitor["metadata"]["uid"], request["id"])

    def done():
        status = (
            json.loads(cluster.kubectl("get", "monitor", "health", "-n", namespace, "-o", "json").stdout).get("status")
            or {}
        )
        last = status.get("lastRun") or {}
        return last.get("runId") == run_id and bool(last.get("result"))

    cluster.wait_for(f"run {run_id}", done, timeout=180)
    return run_id


def success(response: httpx.Response, status: int = 200):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == ENVELOPE_KEYS and body["meta"] == {"status": "success"} and body["error"] is None, body
    return body["data"]


def runscope_error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["data"] is None and body["meta"] == {"status": "error"}, body
    assert body["error"]["status"] == status and body["error"]["message"], body
    return body["error"]


def test_results_metrics_and_request_counts_of_real_monitor_runs(cluster, team, gateway, region_agents):
    bucket = team["bucket"]
    with CountingTarget() as target:
        cluster.kubectl("apply", "-n", bucket, "-f", "-", input=monitor_manifest(target.url))
        test_id = json.loads(cluster.kubectl("get", "monitor", "health", "-n", bucket, "-o", "json").stdout)[
            "metadata"
        ]["uid"]
        local = run_monitor(cluster, bucket, {"id": "r-1"})
        world = run_monitor(cluster, bucket, {"id": "r-2", "environment": "env-world"})
        broken = run_monitor(cluster, bucket, {"id": "r-3", "params": {"base": "http://127.0.0.1:9"}})
        assert target.counts[("GET", "/ping?probe=1")] == 3

    client_id, secret = create_credential(cluster, bucket, "reader", scopes=(*READ_SCOPES, "team:read"))
    token = request_token(cluster, gateway, client_id, secret, READ_SCOPES)
    auth = bearer(token)
    tests_url = f"{gateway.url}/buckets/{bucket}/tests/{test_id}"

    # Test Result List: one result per region, newest first, the run ids of the Jobs.
    items = success(httpx.get(f"{tests_url}/results", headers=auth, timeout=10))
    assert [i["test_run_id"] for i in items] == [broken, world, world, local]
    assert sorted(i["region"] for i in items[1:3]) == sorted(REGIONS)
    assert [i["result"] for i in items] == ["fail", "pass", "pass", "pass"]
    first = items[-1]
    assert first["bucket_key"] == bucket and first["test_id"] == test_id
    assert first["test_run_url"] == f"{gateway.url}/buckets/{bucket}/tests/{test_id}/results/{local}"
    assert (first["environment_id"], first["environment_name"]) == ("env-local", "local")
    assert (first["assertions_defined"], first["assertions_passed"], first["variables_passed"]) == (1, 1, 1)
    assert "requests" not in first and "subtest_detail" not in first
    assert {i["environment_id"] for i in items if i["test_run_id"] == world} == {"env-world"}

    assert len(success(httpx.get(f"{tests_url}/results", params={"count": 2}, headers=auth, timeout=10))) == 2
    newer = success(httpx.get(f"{tests_url}/results", params={"since": first["started_at"]}, headers=auth, timeout=10))
    assert local not in {i["test_run_id"] for i in newer} and len(newer) == 3
    older = success(
        httpx.get(f"{tests_url}/results", params={"before": items[0]["started_at"]}, headers=auth, timeout=10)
    )
    assert broken not in {i["test_run_id"] for i in older} and len(older) == 3
    with_subtests = success(httpx.get(f"{tests_url}/results", params={"subtests": "true"}, headers=auth, timeout=10))
    assert all(i["subtests_count"] == 0 and "subtest_detail" in i for i in with_subtests)
    runscope_error(httpx.get(f"{tests_url}/results", params={"count": 51}, headers=auth, timeout=10), 400)
    runscope_error(httpx.get(f"{tests_url}/results", params={"count": "many"}, headers=auth, timeout=10), 400)

    # Test Result Detail, by id and latest, in every spelling of the path.
    detail = success(httpx.get(f"{tests_url}/results/{local}", headers=auth, timeout=10))
    assert detail["result"] == "pass" and detail["test_run_id"] == local and detail["requests_executed"] == 1
    ping, pause = detail["requests"]
    assert (ping["uuid"], ping["method"], ping["url"]) == ("step-ping", "GET", f"{target.url}/ping?probe=1")
    assert ping["assertions"][0]["source"] == "status_code" and ping["assertions"][0]["actual_value"] == "200"
    assert ping["variables"][0]["name"] == "ok" and ping["variables"][0]["result"] == "pass"
    assert set(ping["timings"]) == {
        "dns_lookup_ms",
        "dial_ms",
        "send_headers_ms",
        "send_body_ms",
        "wait_for_response_ms",
        "receive_response_ms",
    }
    assert pause["uuid"] == "step-pause" and pause["result"] is None
    for spelling in (
        f"{gateway.url}/v1/buckets/{bucket}/tests/{test_id}/results/{local}",
        f"{gateway.url}/buckets/{bucket}/test/{test_id}/results/{local}",
    ):
        assert success(httpx.get(spelling, headers=auth, timeout=10))["test_run_id"] == local
    latest = success(httpx.get(f"{tests_url}/results/latest", headers=auth, timeout=10))
    assert (latest["test_run_id"], latest["result"]) == (broken, "fail")
    eu = success(httpx.get(f"{tests_url}/results/{world}", params={"region": "eu1"}, headers=auth, timeout=10))
    assert (eu["region"], eu["environment_name"]) == ("eu1", "world")
    runscope_error(httpx.get(f"{tests_url}/results/{world}", params={"region": "ap1"}, headers=auth, timeout=10), 404)

    # Test Result Step Detail: the exchange the runner recorded.
    step = success(httpx.get(f"{tests_url}/results/{local}/steps/step-ping", headers=auth, timeout=10))
    assert step["uuid"] == "step-ping" and step["bucket_key"] == bucket
    request = step["request"]
    assert (request["method"], request["host"], request["path"], request["scheme"]) == (
        "GET",
        "127.0.0.1",
        "/ping",
        "http",
    )
    assert request["params"] == {"probe": ["1"]}
    assert step["response"]["status"] == 200 and step["response"]["headers"]
    runscope_error(httpx.get(f"{tests_url}/results/{local}/steps/step-pause", headers=auth, timeout=10), 404)
    runscope_error(httpx.get(f"{tests_url}/results/{local}/steps/nope", headers=auth, timeout=10), 404)

    # Test Metrics over the four results.
    metrics = httpx.get(f"{tests_url}/metrics", headers=auth, timeout=10)
    assert metrics.status_code == 200, metrics.text
    metrics = metrics.json()
    assert (metrics["timeframe"], metrics["region"], metrics["environment_uuid"]) == ("day", "all", "all")
    assert metrics["this_time_period"]["total_test_runs"] == 4
    assert sum(p["success_ratio"] for p in metrics["response_times"]) > 0
    assert metrics["this_time_period"]["response_time_50th_percentile"] > 0
    assert set(metrics["change_from_last_period"]) == {
        "response_time_50th_percentile",
        "response_time_95th_percentile",
        "response_time_99th_percentile",
        "total_test_runs",
    }
    eu_metrics = httpx.get(
        f"{tests_url}/metrics", params={"region": "eu1", "timeframe": "hour"}, headers=auth, timeout=10
    ).json()
    assert eu_metrics["this_time_period"]["total_test_runs"] == 1 and eu_metrics["timeframe"] == "hour"
    world_metrics = httpx.get(
        f"{tests_url}/metrics", params={"environment_uuid": "env-world"}, headers=auth, timeout=10
    ).json()
    assert world_metrics["this_time_period"]["total_test_runs"] == 2
    runscope_error(httpx.get(f"{tests_url}/metrics", params={"timeframe": "year"}, headers=auth, timeout=10), 400)

    # Request counts: the bucket's, and the team's with its buckets.
    executed = sum(i["requests_executed"] for i in items)
    assert executed >= 3
    usage = success(httpx.get(f"{gateway.url}/buckets/{bucket}/requests", headers=auth, timeout=10))
    assert usage["requests_count"] == executed and usage["bucket_key"] == bucket
    assert usage["from_date"] < usage["to_date"]
    old = success(
        httpx.get(
            f"{gateway.url}/buckets/{bucket}/requests",
            params={"from": "2019-11-14", "to": "2019-11-15"},
            headers=auth,
            timeout=10,
        )
    )
    assert (old["requests_count"], old["from_date"], old["to_date"]) == (0, "2019-11-14", "2019-11-15")
    runscope_error(
        httpx.get(f"{gateway.url}/buckets/{bucket}/requests", params={"from": "2019-11-14"}, headers=auth, timeout=10),
        400,
    )
    team_token = request_token(cluster, gateway, client_id, secret, ("team:read",))
    for path in (f"/team/{team['name']}/requests", f"/teams/{team['name']}/requests"):
        team_usage = success(httpx.get(gateway.url + path, params={"days": 2}, headers=bearer(team_token), timeout=10))
        assert team_usage["team_uuid"] == team["name"] and team_usage["requests_count"] == executed
        assert [(b["bucket_key"], b["requests_count"]) for b in team_usage["buckets"]] == [(bucket, executed)]

    # Unknown ids, other buckets and teams, missing or wrong tokens, missing scopes.
    runscope_error(
        httpx.get(f"{gateway.url}/buckets/{bucket}/tests/{uuid.uuid4()}/results", headers=auth, timeout=10), 404
    )
    runscope_error(httpx.get(f"{tests_url}/results/{uuid.uuid4()}", headers=auth, timeout=10), 404)
    runscope_error(
        httpx.get(f"{gateway.url}/buckets/{team['admin']}/tests/{test_id}/results", headers=auth, timeout=10), 404
    )
    runscope_error(httpx.get(f"{gateway.url}/team/team-other/requests", headers=bearer(team_token), timeout=10), 404)
    runscope_error(httpx.get(f"{tests_url}/results", timeout=10), 401)
    runscope_error(httpx.get(f"{tests_url}/results", headers=bearer("not-a-token"), timeout=10), 401)
    runscope_error(httpx.get(f"{tests_url}/results", headers=bearer(team_token), timeout=10), 403)
    runscope_error(httpx.get(f"{gateway.url}/team/{team['name']}/requests", headers=auth, timeout=10), 403)
