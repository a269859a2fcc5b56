"""The Runscope API's team administration through the real gateway: people, invites, groups,
roles, e-mail domains, a bucket's custom e-mails (records in the gateway's store), agents (Ready
nodes of the team) and integrations (declared by the team's Monitors); each only for the team's
own principals, in Runscope's envelope."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import httpx
import pytest

from tests.conftest import REPO, OperatorProcess
from tests.support.credentials import bearer, create_credential, make_namespace, request_token

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

ADMIN_SCOPES = ("team:read", "bucket:write", "account:email", "api:read")


@pytest.fixture
def team(cluster, namespace, gateway, tmp_path):
    """Team `team-<random>` with the bucket `namespace`, an org-admin namespace, a second team
    (another org) with its own bucket, and an operator establishing their credentials."""
    name, other = f"team-{uuid.uuid4().hex[:8]}", f"team-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("label", "namespace", namespace, f"assay.dev/org={name}")
    admin = make_namespace(cluster, f"{namespace}-admin", {"assay.dev/org-admin": name})
    other_bucket = make_namespace(cluster, f"{namespace}-other", {"assay.dev/org": other})
    operator = OperatorProcess(cluster, tmp_path / "operator.log", [namespace, admin, other_bucket], gateway).start()
    yield {"name": name, "bucket": namespace, "admin": admin, "other": other, "other_bucket": other_bucket}
    operator.stop()
    print(operator.log()[-4000:], file=sys.stderr)
    for extra in (admin, other_bucket):
        cluster.kubectl("delete", "namespace", extra, "--wait=false", check=False)


@pytest.fixture
def team_agent(cluster, team, tmp_path):
    """A remote agent of the team: a node agent labelled with the agent's name and the team."""
    node = f"lab-{uuid.uuid4().hex[:6]}"
    log = open(tmp_path / "agent.log", "ab")
    proc = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "hack" / "nodeagent.py"),
            "--kubeconfig",
            cluster.kubeconfig,
            "--node",
            node,
            "--label",
            "assay.dev/agent=lab-agent",
            "--label",
            f"assay.dev/org={team['name']}",
            "--workdir",
            str(tmp_path / "pods"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=cluster.env,
    )
    try:
        yield node
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        cluster.kubectl("delete", "node", node, "--wait=false", check=False)


def success(response: httpx.Response, status: int = 200):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"data", "meta", "error"} and body["meta"] == {"status": "success"}, body
    assert body["error"] is None
    return body["data"]


def runscope_error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["data"] is None and body["meta"] == {"status": "error"}, body
    assert body["error"]["status"] == status and body["error"]["message"], body
    return body["error"]


def test_people_invites_groups_and_roles_round_trip_in_the_store(cluster, team, gateway):
    client_id, secret = create_credential(
        cluster, team["admin"], "team-admin", scopes=ADMIN_SCOPES, level="org", organization=team["name"]
    )
    admin = bearer(request_token(cluster, gateway, client_id, secret, ADMIN_SCOPES))
    api = f"{gateway.url}/teams/{team['name']}"

    # Roles: create, read, list, modify.
    viewer = success(
        httpx.post(
            f"{api}/roles", json={"name": "Viewer", "permissions": ["team:people:view"]}, headers=admin, timeout=10
        ),
        201,
    )
    assert (viewer["name"], viewer["permissions"]) == ("Viewer", ["team:people:view"])
    assert (
        success(httpx.get(f"{gateway.url}/teams/{team['name']}/roles/{viewer['uuid']}", headers=admin, timeout=10))
        == viewer
    )
    changed = success(
        httpx.put(
            f"{api}/roles/{viewer['uuid']}",
            json={"permissions": ["team:people:view", "team:usage:view", "bucket:tests:view", "team:secrets:view"]},
            headers=admin,
            timeout=10,
        )
    )
    assert changed["permissions"][1] == "team:usage:view" and changed["name"] == "Viewer"
    admins = success(
        httpx.post(f"{api}/roles", json={"name": "Administrator", "permissions": []}, headers=admin, timeout=10), 201
    )
    built_in, *own = success(httpx.get(f"{api}/roles", headers=admin, timeout=10))
    assert [r["uuid"] for r in own] == [viewer["uuid"], admins["uuid"]]
    assert built_in["name"] == "Administrators" and "team:people:modify" in built_in["permissions"]
    assert success(httpx.get(f"{api}/roles/{built_in['uuid']}", headers=admin, timeout=10)) == built_in
    runscope_error(httpx.put(f"{api}/roles/{built_in['uuid']}", json={"name": "x"}, headers=admin, timeout=10), 400)
    runscope_error(httpx.delete(f"{api}/roles/{built_in['uuid']}", headers=admin, timeout=10), 400)

    # Groups: create (empty), list.
    group = success(httpx.post(f"{api}/groups", json={"name": "My New Team Group"}, headers=admin, timeout=10), 201)
    assert group == {
        "bucket_keys": None,
        "name": "My New Team Group",
        "user_count": 0,
        "users": None,
        "uuid": group["uuid"],
    }
    assert success(httpx.get(f"{api}/groups", headers=admin, timeout=10)) == [
        {"name": "My New Team Group", "uuid": group["uuid"]}
    ]

    # Invite: two people with a role and the group; a bad address and a member again are errors.
    invited = success(
        httpx.post(
            f"{api}/invite",
            content=json.dumps(
                {
                    "emails": ["grace.hopper@gmail.com", "jane.doe@gmail.com", "not-an-address"],
                    "role_uuid": viewer["uuid"],
                    "group_uuids": [group["uuid"]],
                }
            ),
            headers=admin,
            timeout=10,
        ),
        201,
    )
    assert invited["successes"] == ["grace.hopper@gmail.com", "jane.doe@gmail.com"]
    assert [e["email"] for e in invited["errors"]] == ["not-an-address"]
    again = success(
        httpx.post(f"{api}/invite", json={"emails": ["jane.doe@gmail.com"]}, headers=admin, timeout=10), 201
    )
    assert again["successes"] == [] and "already" in again["errors"][0]["error"]

    # People: list (with e-mail for account:email), paging, detail, groups.
    people = success(httpx.get(f"{api}/people", headers=admin, timeout=10))
    assert [(p["email"], p["role_name"]) for p in people] == [
        ("grace.hopper@gmail.com", "Viewer"),
        ("jane.doe@gmail.com", "Viewer"),
    ]
    assert people[0]["id"] == people[0]["uuid"] and people[0]["created_at"].endswith(" -0000")
    assert (
        success(httpx.get(f"{api}/people", params={"count": 1, "page": 2}, headers=admin, timeout=10))[0]["email"]
        == "jane.doe@gmail.com"
    )
    assert success(httpx.get(f"{api}/people", params={"count": 1, "page": 3}, headers=admin, timeout=10)) == []
    grace = success(httpx.get(f"{api}/people/grace.hopper@gmail.com", headers=admin, timeout=10))
    assert (grace["name"], grace["role_name"], grace["uuid"]) == ("grace.hopper", "Viewer", people[0]["id"])
    assert isinstance(grace["created_at"], int)
    assert success(httpx.get(f"{api}/people/grace.hopper@gmail.com/groups", headers=admin, timeout=10)) == [
        {"uuid": group["uuid"], "name": "My New Team Group", "team_uuid": team["name"]}
    ]
    without_email = bearer(request_token(cluster, gateway, client_id, secret, ("team:read",)))
    assert "email" not in success(httpx.get(f"{api}/people", headers=without_email, timeout=10))[0]

    # Assign a role; modify the group's buckets and members; its detail shows them.
    assigned = success(
        httpx.put(
            f"{api}/people", json={"role_uuid": admins["uuid"], "user_uuids": [grace["id"]]}, headers=admin, timeout=10
        )
    )
    assert assigned[0]["role_name"] == "Administrator"
    modified = success(
        httpx.put(
            f"{api}/groups/{group['uuid']}",
            json={"bucket_keys": [team["bucket"]], "user_uuids": [grace["id"]]},
            headers=admin,
            timeout=10,
        )
    )
    assert modified["bucket_keys"] == [team["bucket"]] and modified["user_count"] == 1
    assert modified["users"] == [{"email": "grace.hopper@gmail.com", "name": "grace.hopper", "uuid": grace["id"]}]
    assert success(httpx.get(f"{api}/groups/{group['uuid']}", headers=admin, timeout=10)) == modified
    runscope_error(
        httpx.put(
            f"{api}/groups/{group['uuid']}", json={"bucket_keys": [team["other_bucket"]]}, headers=admin, timeout=10
        ),
        400,
    )
    runscope_error(
        httpx.put(f"{api}/groups/{group['uuid']}", json={"user_uuids": [str(uuid.uuid4())]}, headers=admin, timeout=10),
        400,
    )

    # Remove: a person (not the last one), a role (its people keep membership), a group.
    assert httpx.delete(f"{api}/people/grace.hopper@gmail.com", headers=admin, timeout=10).status_code == 204
    runscope_error(httpx.get(f"{api}/people/grace.hopper@gmail.com", headers=admin, timeout=10), 404)
    assert success(httpx.get(f"{api}/groups/{group['uuid']}", headers=admin, timeout=10))["users"] is None
    runscope_error(httpx.delete(f"{api}/people/jane.doe@gmail.com", headers=admin, timeout=10), 409)
    assert httpx.delete(f"{api}/roles/{viewer['uuid']}", headers=admin, timeout=10).status_code == 204
    assert success(httpx.get(f"{api}/people/jane.doe@gmail.com", headers=admin, timeout=10))["role_name"] is None
    runscope_error(httpx.get(f"{api}/roles/{viewer['uuid']}", headers=admin, timeout=10), 404)
    assert httpx.delete(f"{api}/groups/{group['uuid']}", headers=admin, timeout=10).status_code == 204
    assert success(httpx.get(f"{api}/groups", headers=admin, timeout=10)) == []

    # A gateway restarted on the same store has every record.
    gateway.stop()
    gateway.start()
    assert [r["name"] for r in success(httpx.get(f"{api}/roles", headers=admin, timeout=10))] == [
        "Administrators",
        "Administrator",
    ]

    # Bad bodies and unknown ids.
    for method, path, body in (
        ("post", "/roles", {"name": "x", "permissions": ["not a permission"]}),
        ("post", "/roles", {"permissions": []}),
        ("post", "/groups", {"name": ""}),
        ("post", "/invite", {"emails": []}),
        ("post", "/invite", {"emails": ["a@b.com"], "role_uuid": "nope"}),
        ("put", "/people", {"role_uuid": admins["uuid"], "user_uuids": ["nobody"]}),
        ("put", f"/roles/{admins['uuid']}", {}),
    ):
        runscope_error(httpx.request(method.upper(), api + path, json=body, headers=admin, timeout=10), 400)
    runscope_error(httpx.post(f"{api}/roles", content=b"{not json", headers=admin, timeout=10), 400)
    runscope_error(httpx.post(f"{api}/roles", content=b"[1, 2]", headers=admin, timeout=10), 400)
    runscope_error(httpx.get(f"{api}/groups/{uuid.uuid4()}", headers=admin, timeout=10), 404)
    runscope_error(httpx.put(f"{api}/roles/{uuid.uuid4()}", json={"name": "x"}, headers=admin, timeout=10), 404)
    runscope_error(httpx.get(f"{api}/people", params={"count": 201}, headers=admin, timeout=10), 400)


def test_email_domains_custom_emails_agents_and_integrations(cluster, team, gateway, team_agent):
    client_id, secret = create_credential(
        cluster, team["admin"], "team-admin", scopes=ADMIN_SCOPES, level="org", organization=team["name"]
    )
    admin = bearer(request_token(cluster, gateway, client_id, secret, ADMIN_SCOPES))
    api = f"{gateway.url}/teams/{team['name']}"
    bucket = team["bucket"]

    empty = success(httpx.get(f"{api}/email-domains", headers=admin, timeout=10))
    assert empty["email_whitelist_domains"] == "" and empty["team_uuid"] == team["name"]
    done = httpx.post(
        f"{gateway.url}/team/{team['name']}/email-domains",
        json={"domainNames": "gmail.com,yahoo.com"},
        headers=admin,
        timeout=10,
    )
    assert done.status_code == 200 and done.json() == {"error": None, "meta": {"status": "success"}}
    httpx.post(f"{api}/email-domains", json={"domainNames": "perforce.com, gmail.com"}, headers=admin, timeout=10)
    domains = success(httpx.get(f"{api}/email-domains", headers=admin, timeout=10))
    assert domains["email_whitelist_domains"] == "gmail.com,yahoo.com,perforce.com"
    assert domains["updated_by"] == client_id and isinstance(domains["updated_at"], int)
    runscope_error(
        httpx.post(f"{api}/email-domains", json={"domainNames": "not a domain"}, headers=admin, timeout=10), 400
    )

    emails_url = f"{gateway.url}/buckets/{bucket}/custom-emails"
    added = httpx.post(
        emails_url,
        json={"team_uuid": team["name"], "email": "abcd@gmail.com", "description": "custom email 1"},
        headers=admin,
        timeout=10,
    )
    assert added.status_code == 200 and added.json() == {"error": None, "meta": {"status": "success"}}
    [custom] = success(httpx.get(emails_url, headers=admin, timeout=10))
    assert (custom["custom_email"], custom["description"], custom["bucket_key"], custom["team_uuid"]) == (
        "abcd@gmail.com",
        "custom email 1",
        bucket,
        team["name"],
    )
    assert set(custom) == {"uuid", "custom_email", "description", "bucket_key", "team_uuid", "created_by", "created_at"}
    runscope_error(
        httpx.post(emails_url, json={"team_uuid": team["name"], "email": "x@example.org"}, headers=admin, timeout=10),
        400,
    )  # example.org is not whitelisted
    runscope_error(
        httpx.post(emails_url, json={"team_uuid": team["other"], "email": "x@gmail.com"}, headers=admin, timeout=10),
        400,
    )
    gone = httpx.request("DELETE", emails_url, json={"email": "abcd@gmail.com"}, headers=admin, timeout=10)
    assert gone.status_code == 204
    missing = runscope_error(
        httpx.request("DELETE", emails_url, json={"email": "abcd@gmail.com"}, headers=admin, timeout=10), 404
    )
    assert missing["message"] == f"Email abcd@gmail.com is not part of the bucket {bucket}"
    assert success(httpx.get(emails_url, headers=admin, timeout=10)) == []

    # Agents: the team's Ready agent nodes, under /v1/teams as the document shows them.
    def agents():
        found = success(httpx.get(f"{gateway.url}/v1/teams/{team['name']}/agents", headers=admin, timeout=10))
        return found or None

    [agent] = cluster.wait_for("the team's agent", agents, timeout=60)
    assert (agent["name"], agent["team_id"], agent["hostname"]) == ("lab-agent", team["name"], team_agent)
    assert agent["agent_id"] and agent["ip_address"] and agent["host_os"] and agent["version"]

    # Integrations: those the team's Monitors declare.
    cluster.kubectl(
        "apply",
        "-n",
        bucket,
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "assay.dev/v1alpha1",
                "kind": "Monitor",
                "metadata": {"name": "alerts"},
                "spec": {
                    "steps": [{"stepType": "pause", "duration": 1}],
                    "environments": [
                        {
                            "name": "prod",
                            "integrations": [
                                {
                                    "id": "cf95026e-8951-4ae1-83a7-699243678490",
                                    "integrationType": "pagerduty",
                                    "description": "PagerDuty: Production Alerts",
                                }
                            ],
                        }
                    ],
                },
            }
        ),
    )
    assert success(httpx.get(f"{api}/integrations", headers=admin, timeout=10)) == [
        {
            "description": "PagerDuty: Production Alerts",
            "id": "cf95026e-8951-4ae1-83a7-699243678490",
            "type": "pagerduty",
            "uuid": "cf95026e-8951-4ae1-83a7-699243678490",
        }
    ]


def test_only_the_teams_own_principals_reach_it_and_writes_take_an_org_credential(cluster, team, gateway):
    api = f"{gateway.url}/teams/{team['name']}"
    member_id, member_secret = create_credential(cluster, team["bucket"], "member", scopes=ADMIN_SCOPES)
    member = bearer(request_token(cluster, gateway, member_id, member_secret, ADMIN_SCOPES))
    stranger_id, stranger_secret = create_credential(cluster, team["other_bucket"], "stranger", scopes=ADMIN_SCOPES)
    stranger = bearer(request_token(cluster, gateway, stranger_id, stranger_secret, ADMIN_SCOPES))
    no_team_scope = bearer(request_token(cluster, gateway, member_id, member_secret, ("api:read",)))

    assert [r["name"] for r in success(httpx.get(f"{api}/roles", headers=member, timeout=10))] == ["Administrators"]
    runscope_error(
        httpx.post(f"{api}/roles", json={"name": "Viewer", "permissions": []}, headers=member, timeout=10), 403
    )  # a bucket's credential reads its team, changes nothing
    assert success(httpx.get(api, headers=member, timeout=10)) == {
        "id": team["name"],
        "uuid": team["name"],
        "name": team["name"],
    }
    for path in ("", "/roles", "/people", "/groups", "/email-domains", "/integrations", "/agents"):
        runscope_error(httpx.get(api + path, headers=stranger, timeout=10), 404)
        runscope_error(httpx.get(api + path, headers=no_team_scope, timeout=10), 403)
        runscope_error(httpx.get(api + path, timeout=10), 401)
    runscope_error(httpx.get(f"{gateway.url}/teams/team-nobody/people", headers=member, timeout=10), 404)
    runscope_error(
        httpx.get(f"{gateway.url}/buckets/{team['other_bucket']}/custom-emails", headers=member, timeout=10), 404
    )
    runscope_error(
        httpx.post(
            f"{gateway.url}/buckets/{team['bucket']}/custom-emails",
            json={"team_uuid": team["name"], "email": "a@gmail.com"},
            headers=no_team_scope,
            timeout=10,
        ),
        403,
    )
