"""The Runscope API's tests, steps, environments, schedules, buckets and trigger URL, through
the real gateway on the real control plane: Monitors, Schedules, namespaces and ConfigMaps are
what the API server holds; the last test runs a test on its 1-minute schedule and by its
trigger URL, and reads both runs back from the results and metrics endpoints.

Layout: the test's namespace is team `org`'s org-admin namespace and a bucket of it; the team
token is an org credential living there. `stranger` is a bucket of another team.
"""

from __future__ import annotations

import json
import re
import uuid

import httpx
import pytest

from tests.support.credentials import bearer, create_credential, kubectl_json, request_token
from tests.support.targets import CountingTarget

pytestmark = pytest.mark.cluster

ALL_SCOPES = ("api:read", "test:read", "test:write", "message:write", "bucket:write", "account:email")
READ_ONLY = ("api:read", "test:read")


@pytest.fixture
def org(cluster, namespace) -> str:
    name = f"org-{namespace}"
    cluster.kubectl("label", "namespace", namespace, f"assay.dev/org={name}", f"assay.dev/org-admin={name}")
    return name


@pytest.fixture
def stranger(cluster, org):
    name = f"t-{uuid.uuid4().hex[:10]}"
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl("label", "namespace", name, f"assay.dev/org=other-{org}")
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


class Runscope:
    """A Runscope API client for one token, answering (status, parsed body)."""

    def __init__(self, gateway, token: str | None):
        self.client = httpx.Client(base_url=gateway.url, headers=bearer(token) if token else {}, timeout=30)

    def call(self, method: str, path: str, body=None, **kwargs) -> tuple[int, dict | None]:
        if body is not None:
            kwargs["json"] = body
        response = self.client.request(method, path, **kwargs)
        return response.status_code, (response.json() if response.content else None)

    def ok(self, method: str, path: str, body=None, status: int = 200, **kwargs):
        code, doc = self.call(method, path, body, **kwargs)
        assert code == status, (method, path, code, doc)
        if status == 204:
            assert doc is None
            return None
        assert doc["meta"]["status"] == "success" and doc["error"] is None, doc
        return doc["data"]


def assert_error(result: tuple[int, dict | None], status: int) -> dict:
    code, doc = result
    assert code == status, (code, doc)
    assert doc["data"] is None and doc["meta"] == {"status": "error"}, doc
    assert doc["error"]["status"] == status and doc["error"]["message"], doc
    return doc["error"]


def team_client(cluster, gateway, namespace, org, name="team", scopes=ALL_SCOPES, level="org", email=None) -> Runscope:
    client_id, secret = create_credential(
        cluster, namespace, name, scopes=scopes, level=level, organization=org if level == "org" else None, email=email
    )
    return Runscope(gateway, request_token(cluster, gateway, client_id, secret, scopes))


def test_root_account_regions_and_buckets(cluster, namespace, org, stranger, operator, gateway):
    team = team_client(cluster, gateway, namespace, org)
    project = team_client(cluster, gateway, namespace, org, "project", ALL_SCOPES, level="project")

    root = team.ok("GET", "/")
    assert root == {"bucket_list_url": f"{gateway.url}/buckets", "current_account_url": f"{gateway.url}/account"}
    account = team.ok("GET", "/account")
    assert account["teams"] == [{"id": org, "uuid": org, "name": org}] and account["name"] == f"{namespace}/team"
    nodes = kubectl_json(cluster, "get", "nodes")["items"]
    labelled = {n["metadata"]["labels"].get("topology.kubernetes.io/region") for n in nodes} - {None}
    regions = team.ok("GET", "/regions")["regions"]
    assert {r["region_code"] for r in regions} == labelled
    assert all(r["service_provider"] == "Kubernetes" and r["location"] for r in regions)

    listed = {b["key"]: b for b in team.ok("GET", "/buckets")}
    assert namespace in listed and stranger not in listed
    assert listed[namespace]["team"] == {"id": org, "name": org, "uuid": org} and listed[namespace]["default"] is False

    created = team.ok("POST", "/buckets", params={"name": "Mobile Apps", "team_uuid": org}, status=201)
    key = created["key"]
    assert re.fullmatch(r"[a-z][a-z0-9]{11}", key) and created["name"] == "Mobile Apps"
    ns = kubectl_json(cluster, "get", "namespace", key)
    assert ns["metadata"]["labels"]["assay.dev/org"] == org
    assert ns["metadata"]["annotations"]["assay.dev/bucket-name"] == "Mobile Apps"
    detail = cluster.wait_for(
        "the gateway to see the new bucket",
        lambda: (lambda r: r[1]["data"] if r[0] == 200 else None)(team.call("GET", f"/v1/buckets/{key}")),
        timeout=20,
        interval=0.2,
    )
    assert detail["key"] == key and detail["default"] is False

    assert_error(team.call("POST", "/buckets", params={"name": "x", "team_uuid": f"other-{org}"}), 403)
    assert_error(team.call("POST", "/buckets", params={"name": "x"}), 400)
    assert_error(project.call("POST", "/buckets", params={"name": "x", "team_uuid": org}), 403)
    assert_error(team.call("GET", f"/buckets/{stranger}"), 404)
    assert_error(team.call("DELETE", f"/buckets/{stranger}"), 404)
    assert_error(team.call("DELETE", f"/buckets/{namespace}"), 400)  # holds the team's credential

    cluster.kubectl("annotate", "namespace", key, "assay.dev/default-bucket=true")
    error = assert_error(team.call("DELETE", f"/buckets/{key}"), 400)
    assert "default bucket" in error["message"]
    cluster.kubectl("annotate", "namespace", key, "assay.dev/default-bucket-")
    team.ok("DELETE", f"/buckets/{key}", status=204)
    gone = kubectl_json(cluster, "get", "namespace", key)
    assert gone is None or gone["metadata"].get("deletionTimestamp")

    assert_error(Runscope(gateway, "not-a-token").call("GET", "/buckets"), 401)
    assert_error(Runscope(gateway, None).call("GET", "/account"), 401)


def test_request_counts_refuse_periods_the_calendar_cannot_hold(cluster, namespace, org, operator, gateway):
    team = team_client(cluster, gateway, namespace, org, scopes=("api:read",))
    # Both were a 500: a days count reaching before year 1, a period ending on 9999-12-31.
    error = assert_error(team.call("GET", f"/buckets/{namespace}/requests", params={"days": 1738865699}), 400)
    assert "days must be between 1 and" in error["message"]
    widest = team.ok("GET", f"/buckets/{namespace}/requests", params={"from": "0001-01-01", "to": "9999-12-31"})
    assert (widest["requests_count"], widest["from_date"], widest["to_date"]) == (0, "0001-01-01", "9999-12-31")


def request_step(url: str) -> dict:
    return {
        "step_type": "request",
        "method": "GET",
        "url": url,
        "assertions": [{"source": "response_status", "comparison": "equal_number", "value": 200}],
    }


def test_tests_steps_environments_schedules_and_revisions(cluster, namespace, org, stranger, operator, gateway):
    team = team_client(cluster, gateway, namespace, org)
    reader = team_client(cluster, gateway, namespace, org, "reader", READ_ONLY)
    base = f"/buckets/{namespace}/tests"

    # tests: create one, create many, list with count/offset, detail, modify
    test = team.ok("POST", base, {"name": "Sample Name", "description": "My test description"}, status=201)
    test_id = test["id"]
    assert test["trigger_url"].startswith(f"{gateway.url}/radar/") and test["trigger_url"].endswith("/trigger")
    assert test["environments"][0]["name"] == "Test Settings" and test["environments"][0]["test_id"] == test_id
    assert test["default_environment_id"] == test["environments"][0]["id"]
    assert test["steps"] == [] and test["schedules"] == [] and test["last_run"] is None
    monitor = [
        m for m in kubectl_json(cluster, "get", "monitors", "-n", namespace)["items"] if m["metadata"]["uid"] == test_id
    ][0]
    assert monitor["spec"]["displayName"] == "Sample Name"
    many = team.ok("POST", f"/v1/buckets/{namespace}/tests", [{"name": "Two"}, {"name": "Three"}], status=201)
    assert [t["name"] for t in many] == ["Two", "Three"]
    listed = team.ok("GET", base, params={"count": 2, "offset": 1})
    assert [t["name"] for t in listed] == ["Two", "Sample Name"]  # newest first
    assert listed[1]["trigger_url"] == test["trigger_url"]
    assert len(reader.ok("GET", base)) == 3
    changed = team.ok("PUT", f"/buckets/{namespace}/test/{test_id}", {"name": "Renamed"})
    assert changed["name"] == "Renamed" and changed["description"] == "My test description"

    # steps of every type, detail, modify, delete, reorder
    after_add = team.ok("POST", f"{base}/{test_id}/steps", request_step("https://yourapihere.com/"), status=201)
    assert [s["url"] for s in after_add] == ["https://yourapihere.com/"]
    team.ok("POST", f"{base}/{test_id}/steps", {"step_type": "pause", "duration": 5}, status=201)
    team.ok(
        "POST",
        f"{base}/{test_id}/steps",
        {
            "step_type": "condition",
            "left_value": "{{user_id}}",
            "comparison": "equal",
            "right_value": "12345",
            "steps": [request_step("https://a.example/"), request_step("https://b.example/")],
        },
        status=201,
    )
    team.ok(
        "POST",
        f"{base}/{test_id}/steps",
        {
            "step_type": "ghost-inspector",
            "integration_id": "c6f2aa66",
            "test_id": "55c3b3db",
            "is_custom_start_url": False,
        },
        status=201,
    )
    steps = team.ok(
        "POST",
        f"{base}/{test_id}/steps",
        {"step_type": "subtest", "test_uuid": many[0]["id"], "params": [{"name": "foo", "value": "{{bar}}"}]},
        status=201,
    )
    assert team.ok("GET", f"{base}/{test_id}/steps") == steps
    assert [s["step_type"] for s in steps] == ["request", "pause", "condition", "ghost-inspector", "subtest"]
    ids = [s["id"] for s in steps]
    inner = [s["id"] for s in steps[2]["steps"]]
    assert team.ok("GET", f"{base}/{test_id}/steps/{inner[1]}")["url"] == "https://b.example/"
    modified = team.ok("PUT", f"{base}/{test_id}/steps/{ids[0]}", {"url": "https://yourapihere.com/v2", "note": "n"})
    assert modified["url"] == "https://yourapihere.com/v2" and modified["note"] == "n" and modified["id"] == ids[0]
    team.ok("DELETE", f"{base}/{test_id}/steps/{ids[3]}", status=204)
    order = [ids[4], {"id": ids[2], "steps": list(reversed(inner))}, ids[1], ids[0]]
    reordered = team.ok("PUT", f"{base}/{test_id}/steps", order)
    assert [s["id"] for s in reordered] == [ids[4], ids[2], ids[1], ids[0]]
    assert [s["id"] for s in reordered[1]["steps"]] == list(reversed(inner))
    assert_error(team.call("PUT", f"{base}/{test_id}/steps", [ids[4], ids[2], ids[1]]), 400)
    assert_error(team.call("PUT", f"{base}/{test_id}/steps", [ids[4], ids[2], ids[1], ids[0], ids[0]]), 400)
    assert_error(team.call("POST", f"{base}/{test_id}/steps", {"step_type": "pause", "duration": 999}), 400)
    assert_error(team.call("GET", f"{base}/{test_id}/steps/{uuid.uuid4()}"), 404)

    # shared environments, and a test environment inheriting from one
    shared = team.ok(
        "POST",
        f"/buckets/{namespace}/environments",
        {"name": "Shared", "initial_variables": {"base": "https://shared.example"}},
        status=201,
    )
    assert shared["test_id"] is None
    cm = kubectl_json(cluster, "get", "configmap", "assay-shared-environments", "-n", namespace)
    assert json.loads(cm["data"][shared["id"]])["initialVariables"] == {"base": "https://shared.example"}
    assert [e["id"] for e in team.ok("GET", f"/buckets/{namespace}/environments")] == [shared["id"]]
    full = {"name": "Shared", "initial_variables": {"base": "https://shared2.example"}, "regions": []}
    assert team.ok("PUT", f"/buckets/{namespace}/environments/{shared['id']}", full)["initial_variables"] == {
        "base": "https://shared2.example"
    }
    assert team.ok("GET", f"/buckets/{namespace}/environments/{shared['id']}")["name"] == "Shared"

    env = team.ok(
        "POST",
        f"{base}/{test_id}/environments",
        {
            "name": "Remote Settings",
            "parent_environment_id": shared["id"],
            "initial_variables": {"a": "1"},
            "webhooks": None,
            "auth": {},
        },
        status=201,
    )
    assert env["test_id"] == test_id and env["parent_environment_id"] == shared["id"]
    assert_error(
        team.call(
            "POST", f"{base}/{test_id}/environments", {"name": "Orphan", "parent_environment_id": str(uuid.uuid4())}
        ),
        400,
    )
    assert_error(team.call("POST", f"{base}/{test_id}/environments", {"name": "Remote Settings"}), 400)
    assert len(team.ok("GET", f"{base}/{test_id}/environments")) == 2
    replaced = team.ok(
        "PUT",
        f"/buckets/{namespace}/test/{test_id}/environments/{env['id']}",
        {"name": "Remote", "initial_variables": {"b": "2"}, "verify_ssl": False},
    )
    assert replaced["initial_variables"] == {"b": "2"} and replaced["parent_environment_id"] is None
    assert team.ok("GET", f"{base}/{test_id}/environments/{env['id']}")["verify_ssl"] is False

    # schedules: v1 creates, v0 updates the same environment's schedule, modify, delete
    v1 = team.ok(
        "POST",
        f"/v1/buckets/{namespace}/tests/{test_id}/schedules",
        {"environment_id": env["id"], "interval": "1d", "note": "Once a day"},
        status=201,
    )
    again = team.ok(
        "POST",
        f"/v1/buckets/{namespace}/tests/{test_id}/schedules",
        {"environment_id": env["id"], "interval": "1h"},
        status=201,
    )
    assert again["id"] != v1["id"]
    v0 = team.ok("POST", f"{base}/{test_id}/schedules", {"environment_id": env["id"], "interval": "5m"}, status=201)
    assert v0["id"] in (v1["id"], again["id"]) and v0["interval"] == "5.0m"
    schedule = kubectl_json(cluster, "get", "schedules", "-n", namespace)["items"]
    mine = {s["metadata"]["uid"]: s for s in schedule}
    assert mine[v1["id"]]["spec"]["target"]["kind"] == "Monitor"
    assert mine[v1["id"]]["metadata"]["ownerReferences"][0]["uid"] == test_id
    generation = mine[v1["id"]]["metadata"]["generation"]
    assert (
        team.ok(
            "PUT",
            f"{base}/{test_id}/schedules/{v1['id']}",
            {"environment_id": env["id"], "interval": "15.0m", "note": "n"},
        )["interval"]
        == "15.0m"
    )
    assert (
        kubectl_json(cluster, "get", "schedule", mine[v1["id"]]["metadata"]["name"], "-n", namespace)["metadata"][
            "generation"
        ]
        > generation
    )
    assert team.ok("GET", f"/buckets/{namespace}/test/{test_id}/schedules/{v1['id']}")["note"] == "n"
    assert len(team.ok("GET", f"{base}/{test_id}/schedules")) == 2
    assert_error(team.call("POST", f"{base}/{test_id}/schedules", {"environment_id": env["id"], "interval": "2m"}), 400)
    team.ok("DELETE", f"{base}/{test_id}/schedules/{again['id']}", status=204)
    assert_error(team.call("GET", f"{base}/{test_id}/schedules/{again['id']}"), 404)

    # revisions: each change is a record
    revisions = team.ok("GET", f"{base}/{test_id}/revisions")
    assert len(revisions["test_revisions"]) >= 8
    assert revisions["test_revisions"][0]["item_type"] == "radar_test"
    assert revisions["test_revisions"][0]["bucket_key"] == namespace
    assert len(revisions["env_revisions"][env["id"]]) == 2

    # a Monitor written with kubectl: a test too, whose steps get ids on the first change
    cluster.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "assay.dev/v1alpha1",
                "kind": "Monitor",
                "metadata": {"name": "by-hand"},
                "spec": {"steps": [{"stepType": "pause", "duration": 1}], "environments": [{"name": "local"}]},
            }
        ),
    )
    by_hand = [t for t in team.ok("GET", base, params={"count": 50}) if t["name"] == "by-hand"][0]
    named = team.ok("PUT", f"{base}/{by_hand['id']}", {"name": "By hand"})
    assert named["name"] == "By hand" and named["steps"][0]["id"] and named["environments"][0]["id"]
    bad_trigger = httpx.post(
        named["trigger_url"], content=b"{bad", headers={"Content-Type": "application/json"}, timeout=10
    )
    assert_error((bad_trigger.status_code, bad_trigger.json()), 400)

    # errors: malformed bodies, unknown ids, scopes, another team's bucket
    bad_json = team.client.post(base, content=b"{not json", headers={"Content-Type": "application/json"})
    assert_error((bad_json.status_code, bad_json.json()), 400)
    assert_error(team.call("POST", base, {"description": "no name"}), 400)
    assert_error(team.call("PUT", f"{base}/{test_id}", {"default_environment_id": "nope"}), 400)
    assert_error(team.call("GET", f"{base}/{uuid.uuid4()}"), 404)
    assert_error(team.call("GET", base, params={"count": "many"}), 400)
    assert_error(reader.call("POST", base, {"name": "x"}), 403)
    assert_error(reader.call("DELETE", f"{base}/{test_id}"), 403)
    assert_error(team.call("GET", f"/buckets/{stranger}/tests"), 404)
    assert_error(team.call("POST", f"/buckets/{stranger}/environments", {"name": "x"}), 404)
    assert_error(Runscope(gateway, "forged").call("GET", base), 401)

    # delete: the test and its schedules go
    team.ok("DELETE", f"/buckets/{namespace}/environments/{shared['id']}", status=204)
    team.ok("DELETE", f"{base}/{test_id}/environments/{env['id']}", status=204)
    team.ok("DELETE", f"{base}/{test_id}", status=204)
    assert_error(team.call("GET", f"{base}/{test_id}"), 404)
    remaining = [
        s
        for s in kubectl_json(cluster, "get", "schedules", "-n", namespace)["items"]
        if s["metadata"]["uid"] in (v1["id"], again["id"]) and not s["metadata"].get("deletionTimestamp")
    ]
    assert remaining == []


def test_a_bucket_holds_at_most_100_environments(cluster, namespace, org, operator, gateway):
    team = team_client(cluster, gateway, namespace, org)
    envs = {f"e{i}": json.dumps({"name": f"Shared {i}", "id": f"e{i}"}) for i in range(98)}
    cluster.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "assay-shared-environments"}, "data": envs}
        ),
    )
    test = team.ok("POST", f"/buckets/{namespace}/tests", {"name": "Crowded"}, status=201)  # its default: 99
    team.ok("POST", f"/buckets/{namespace}/environments", {"name": "Hundredth"}, status=201)
    error = assert_error(team.call("POST", f"/buckets/{namespace}/tests/{test['id']}/environments", {"name": "x"}), 400)
    assert "100" in error["message"]
    assert_error(team.call("POST", f"/buckets/{namespace}/environments", {"name": "y"}), 400)


def test_a_scheduled_and_triggered_test_runs_with_its_inherited_environment_and_reports_its_results(
    cluster, namespace, org, operator_with_gateway, gateway
):
    team = team_client(cluster, gateway, namespace, org)
    with CountingTarget() as target:
        shared = team.ok(
            "POST",
            f"/buckets/{namespace}/environments",
            {"name": "Shared", "initial_variables": {"base": target.url}},
            status=201,
        )
        test = team.ok("POST", f"/buckets/{namespace}/tests", {"name": "Ping"}, status=201)
        test_id, base = test["id"], f"/buckets/{namespace}/tests/{test['id']}"
        team.ok("POST", f"{base}/steps", request_step("{{base}}/ping?who={{who}}"), status=201)
        env = team.ok(
            "POST", f"{base}/environments", {"name": "Inherits", "parent_environment_id": shared["id"]}, status=201
        )
        schedule = team.ok("POST", f"{base}/schedules", {"environment_id": env["id"], "interval": "1m"}, status=201)
        assert any(
            s["metadata"]["uid"] == schedule["id"] and s["spec"]["interval"] == "1m"
            for s in kubectl_json(cluster, "get", "schedules", "-n", namespace)["items"]
        )

        trigger_url = team.ok("GET", base)["trigger_url"]
        assert_error(
            (lambda r: (r.status_code, r.json()))(
                httpx.get(trigger_url.replace("/radar/", "/radar/0").replace("/trigger", "0/trigger"), timeout=10)
            ),
            404,
        )
        response = httpx.post(
            trigger_url, params={"runscope_environment": env["id"]}, json={"who": "runscope"}, timeout=30
        )
        assert response.status_code == 201, response.text
        started = response.json()["data"]
        assert started["runs_started"] == 1 and started["runs_failed"] == 0 and started["runs_total"] == 1
        assert started["consolidated_test_results_url"] == f"{gateway.url}{base}/results"
        run = started["runs"][0]
        assert run["test_id"] == test_id and run["environment_id"] == env["id"]
        assert run["variables"] == {"who": "runscope"}

        def finished():
            monitor = [
                m
                for m in kubectl_json(cluster, "get", "monitors", "-n", namespace)["items"]
                if m["metadata"]["uid"] == test_id
            ][0]
            last = (monitor.get("status") or {}).get("lastRun") or {}
            return last if last.get("runId") == run["test_run_id"] and last.get("result") else None

        last = cluster.wait_for("the triggered run to finish", finished, timeout=240, interval=1)
        assert last["result"] == "Passed", last
        assert last["environment"] == "Inherits"
        assert target.counts[("GET", "/ping?who=runscope")] >= 1
        detail = team.ok("GET", base)
        assert detail["last_run"]["test_run_id"] == run["test_run_id"] and detail["last_run"]["result"] == "pass"
        listed = [t for t in team.ok("GET", f"/buckets/{namespace}/tests") if t["id"] == test_id]
        assert listed[0]["last_run"]["id"] == run["test_run_id"]
        # A GET of the trigger URL starts a run too, its query string as variables.
        by_get = httpx.get(trigger_url, params={"runscope_environment": env["id"], "who": "get"}, timeout=30)
        assert by_get.status_code == 201 and by_get.json()["data"]["runs_started"] == 1, by_get.text
        cluster.wait_for(
            "the GET-triggered run to reach the target",
            lambda: target.counts[("GET", "/ping?who=get")] >= 1,
            timeout=120,
            interval=1,
        )

        # The 1-minute schedule runs the test too (the real CronJob controller's next minute).
        def scheduled():
            monitor = [
                m
                for m in kubectl_json(cluster, "get", "monitors", "-n", namespace)["items"]
                if m["metadata"]["uid"] == test_id
            ][0]
            runs = [
                e for e in (monitor.get("status") or {}).get("history") or [] if e.get("schedule") and e.get("result")
            ]
            return runs[0] if runs else None

        tick = cluster.wait_for("the scheduled run", scheduled, timeout=150, interval=1)
        assert tick["result"] == "Passed" and tick["environment"] == "Inherits"

        # Both runs come back from the results and metrics endpoints (the store).
        def both_stored():
            ids = {r["test_run_id"]: r for r in team.ok("GET", f"{base}/results")}
            return ids if {run["test_run_id"], tick["runId"]} <= set(ids) else None

        results = cluster.wait_for("both results in the store", both_stored, timeout=60)
        assert all(results[i]["result"] == "pass" for i in (run["test_run_id"], tick["runId"]))
        assert (results[run["test_run_id"]]["source"], results[tick["runId"]]["source"]) == ("trigger", "scheduled")
        triggered = team.ok("GET", f"{base}/results/{run['test_run_id']}")
        assert triggered["environment_name"] == "Inherits" and triggered["requests"][0]["result"] == "pass"
        # Typed as the document shows them: the test is its own parent, its creator ran it.
        for shown in (triggered, results[run["test_run_id"]], results[tick["runId"]]):
            assert (shown["parent_test_uuid"], shown["run_by"]) == (test_id, f"{namespace}/team"), shown
        code, metrics = team.call("GET", f"{base}/metrics", params={"timeframe": "hour"})
        assert code == 200 and metrics["this_time_period"]["total_test_runs"] >= 2, metrics
        assert metrics["this_time_period"]["response_time_50th_percentile"] > 0
        # The hour before had no runs: no change, still a number.
        assert set(metrics["change_from_last_period"].values()) == {0.0}, metrics
        assert triggered["source"] == "trigger"
        assert team.ok("GET", f"{base}/results/{tick['runId']}")["source"] == "scheduled"
        enveloped = team.ok("GET", f"{base}/metrics", params={"timeframe": "hour", "marshal_result": "true"})
        assert enveloped["this_time_period"]["total_test_runs"] >= 2
