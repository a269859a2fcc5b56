"""What Runscope API clients (a Go client library and its acceptance suite, BlazeMeter's tooling)
read beyond the document, through the real gateway on the real control plane: a bucket usable
the moment it is created and gone the moment it is deleted, the fields they decode, the steps
list a step creation answers, schedules read back as the live API writes them, environment
settings kept, an environment deleted through the bucket's path, and the bucket trigger.

Layout as in test_runscope_tests.py: the team token is an org credential of team `org`;
`stranger` is a bucket of another team.
"""

from __future__ import annotations

import httpx
import pytest

from tests.cluster import test_runscope_tests as runscope
from tests.cluster.test_runscope_tests import READ_ONLY, assert_error, request_step, team_client
from tests.support.credentials import kubectl_json

pytestmark = pytest.mark.cluster
org, stranger = runscope.org, runscope.stranger

CREATES = 20


def test_a_created_bucket_is_usable_at_once_and_a_deleted_one_gone_at_once(cluster, namespace, org, operator, gateway):
    team = team_client(cluster, gateway, namespace, org)
    account = team.ok("GET", "/account")
    assert account["id"] == account["uuid"] and account["id"]
    assert account["teams"] == [{"id": org, "uuid": org, "name": org}]

    keys = []
    try:
        for i in range(CREATES):
            created = team.ok("POST", "/buckets", params={"name": f"Fresh {i}", "team_uuid": org}, status=201)
            keys.append(created["key"])
            # No wait: the very next requests use the bucket.
            assert team.ok("GET", f"/buckets/{created['key']}")["name"] == f"Fresh {i}"
            assert team.ok("GET", f"/buckets/{created['key']}/tests") == []
        bucket = team.ok("GET", f"/buckets/{keys[0]}")
        url = f"{gateway.url}/buckets/{keys[0]}"
        assert bucket["team"] == {"id": org, "uuid": org, "name": org}
        assert (bucket["tests_url"], bucket["collections_url"], bucket["messages_url"]) == (
            f"{url}/tests",
            f"{url}/collections",
            f"{url}/messages",
        )
        assert bucket["trigger_url"].startswith(f"{gateway.url}/radar/bucket/")
        assert isinstance(bucket["created_at"], int) and bucket["created_at"] > 1_700_000_000
        assert bucket["is_private"] is False
        listed = {b["key"]: b for b in team.ok("GET", "/buckets")}
        assert listed[keys[0]] == bucket

        for key in keys:
            team.ok("DELETE", f"/buckets/{key}", status=204)
            assert_error(team.call("GET", f"/buckets/{key}"), 404)
            assert_error(team.call("GET", f"/buckets/{key}/tests"), 404)
            assert key not in {b["key"] for b in team.ok("GET", "/buckets")}
        keys = []
    finally:
        for key in keys:
            cluster.kubectl("delete", "namespace", key, "--wait=false", check=False)


def test_steps_tests_schedules_and_environments_as_clients_read_them(
    cluster, namespace, org, stranger, operator, gateway
):
    team = team_client(cluster, gateway, namespace, org)
    reader = team_client(cluster, gateway, namespace, org, "reader", READ_ONLY)
    base = f"/buckets/{namespace}/tests"

    first = team.ok("POST", base, {"name": "First"}, status=201)
    second = team.ok("POST", base, {"name": "Second"}, status=201)
    listed = team.ok("GET", base)
    assert [t["name"] for t in listed] == ["Second", "First"]
    assert [t["trigger_url"] for t in listed] == [second["trigger_url"], first["trigger_url"]]

    # A step creation answers the test's steps, the new one last; GET lists them.
    steps = team.ok("POST", f"{base}/{first['id']}/steps", request_step("https://a.example/"), status=201)
    assert [s["url"] for s in steps] == ["https://a.example/"]
    steps = team.ok("POST", f"{base}/{first['id']}/steps", {"step_type": "pause", "duration": 2}, status=201)
    assert [s["step_type"] for s in steps] == ["request", "pause"] and steps[-1]["duration"] == 2
    assert reader.ok("GET", f"{base}/{first['id']}/steps") == steps
    assert reader.ok("GET", f"/v1/buckets/{namespace}/test/{first['id']}/steps") == steps
    assert team.ok("GET", f"{base}/{first['id']}")["steps"] == steps
    assert_error(team.call("GET", f"/buckets/{stranger}/tests/{first['id']}/steps"), 404)
    api_only = team_client(cluster, gateway, namespace, org, "api-only", ("api:read",))
    assert_error(api_only.call("GET", f"{base}/{first['id']}/steps"), 403)
    assert_error(reader.call("POST", f"{base}/{first['id']}/steps", {"step_type": "pause", "duration": 1}), 403)
    assert_error(team.call("GET", f"{base}/not-a-test/steps"), 404)

    # Environments keep the HTTP version settings.
    env = team.ok(
        "POST",
        f"{base}/{first['id']}/environments",
        {"name": "h2", "http_version_support": "http2", "force_h2c": True},
        status=201,
    )
    assert (env["http_version_support"], env["force_h2c"]) == ("http2", True)
    read = team.ok("GET", f"{base}/{first['id']}/environments/{env['id']}")
    assert (read["http_version_support"], read["force_h2c"]) == ("http2", True)
    shared = team.ok("POST", f"/buckets/{namespace}/environments", {"name": "s", "force_h2c": True}, status=201)
    assert team.ok("GET", f"/buckets/{namespace}/environments/{shared['id']}")["force_h2c"] is True

    # Schedules read back as the live API writes them, whichever form was sent.
    for given, shown in (("1h", "1.0h"), ("6.0h", "6.0h"), ("1d", "1.0d"), ("15.0m", "15.0m")):
        schedule = team.ok(
            "POST",
            f"/v1/buckets/{namespace}/tests/{first['id']}/schedules",
            {"environment_id": env["id"], "interval": given},
            status=201,
        )
        assert schedule["interval"] == shown
        assert team.ok("GET", f"{base}/{first['id']}/schedules/{schedule['id']}")["interval"] == shown
        stored = kubectl_json(cluster, "get", "schedules", "-n", namespace)["items"]
        assert [s["spec"]["interval"] for s in stored if s["metadata"]["uid"] == schedule["id"]] == [
            shown.replace(".0", "")
        ]
    assert_error(
        team.call("POST", f"{base}/{first['id']}/schedules", {"environment_id": env["id"], "interval": "2.0h"}), 400
    )

    # The bucket's environment path deletes a test environment too, and only in reach.
    assert_error(team.call("DELETE", f"/buckets/{stranger}/environments/{env['id']}"), 404)
    assert_error(reader.call("DELETE", f"/buckets/{namespace}/environments/{env['id']}"), 403)
    team.ok("DELETE", f"/buckets/{namespace}/environments/{env['id']}", status=204)
    assert_error(team.call("GET", f"{base}/{first['id']}/environments/{env['id']}"), 404)
    team.ok("DELETE", f"/buckets/{namespace}/environments/{shared['id']}", status=204)
    assert_error(team.call("GET", f"/buckets/{namespace}/environments/{shared['id']}"), 404)
    assert_error(team.call("DELETE", f"/buckets/{namespace}/environments/{env['id']}"), 404)


def test_the_bucket_trigger_asks_for_a_run_of_each_test(cluster, namespace, org, stranger, operator, gateway):
    team = team_client(cluster, gateway, namespace, org)
    base = f"/buckets/{namespace}/tests"
    tests = [team.ok("POST", base, {"name": name}, status=201) for name in ("One", "Two")]
    named = team.ok("POST", f"{base}/{tests[0]['id']}/environments", {"name": "only-one"}, status=201)
    trigger_url = team.ok("GET", f"/buckets/{namespace}")["trigger_url"]

    response = httpx.post(trigger_url, params={"runscope_environment": named["id"]}, json={"who": "ci"}, timeout=30)
    assert response.status_code == 201, response.text
    started = response.json()["data"]
    assert (started["runs_started"], started["runs_failed"], started["runs_total"]) == (1, 1, 2)
    assert started["runs"][0]["test_id"] == tests[0]["id"] and started["runs"][0]["variables"] == {"who": "ci"}
    assert started["consolidated_test_results_url"] == f"{gateway.url}{base}"
    monitors = kubectl_json(cluster, "get", "monitors", "-n", namespace)["items"]
    requested = {
        m["metadata"]["uid"] for m in monitors if "assay.dev/run-request" in (m["metadata"].get("annotations") or {})
    }
    assert requested == {tests[0]["id"]}

    for wrong in (trigger_url.replace("/bucket/", "/bucket/0"), f"{gateway.url}/radar/bucket/%25%C2%8E/trigger"):
        unknown = httpx.get(wrong, timeout=10)
        assert unknown.status_code == 404 and unknown.json()["error"]["status"] == 404
