"""The Runscope document's example requests, sent as the document writes them, answer every
field the document shows with the type it shows: the fields that used to be null or missing
(an environment's `emails`, `created_by.email`, revisions' `author_email`, the account's
`email`, the v1 bucket detail's `locations_utilization_%`, people's `last_login_at`, the team
request count's `creator_*`). Runs are not needed here; results and metrics are checked on
real runs in test_runscope_tests.py.
"""

from __future__ import annotations

import pytest

from tests.cluster.test_runscope_tests import assert_error, team_client

pytestmark = pytest.mark.cluster

EMAIL = "grace@example.com"
SCOPES = ("api:read", "test:read", "test:write", "account:email", "team:read", "bucket:write")


@pytest.fixture
def org(cluster, namespace) -> str:
    """A team whose only bucket is the test's namespace, which also holds its org credentials."""
    name = f"org-{namespace}"
    cluster.kubectl("label", "namespace", namespace, f"assay.dev/org={name}", f"assay.dev/org-admin={name}")
    return name


def test_the_documented_examples_answer_typed_fields(cluster, namespace, org, operator, gateway):
    team = team_client(cluster, gateway, namespace, org, scopes=SCOPES, email=EMAIL)
    quiet = team_client(cluster, gateway, namespace, org, "quiet", scopes=("api:read",))
    tests = f"/buckets/{namespace}/tests"

    assert team.ok("GET", "/account")["email"] == EMAIL
    assert "email" not in quiet.ok("GET", "/account")  # without account:email

    # Creating Tests (Single Test), then Test Detail.
    created = team.ok("POST", tests, {"name": "Sample Name", "description": "My test description"}, status=201)
    detail = team.ok("GET", f"{tests}/{created['id']}")
    for shown in (created, detail):
        assert shown["created_by"] == {"email": EMAIL, "name": f"{namespace}/team", "id": shown["created_by"]["id"]}
        assert isinstance(shown["created_by"]["id"], str)
        assert shown["environments"][0]["emails"] == {
            "notify_all": False,
            "notify_on": "all",
            "notify_threshold": 1,
            "recipients": [],
        }
    listed = team.ok("GET", tests)
    assert [t["created_by"]["email"] for t in listed] == [EMAIL]

    # Modifying Tests, then List Revisions.
    team.ok("PUT", f"{tests}/{created['id']}", {"name": "Sample Name", "description": "My test description"})
    revisions = team.ok("GET", f"{tests}/{created['id']}/revisions")["test_revisions"]
    assert revisions and all(r["author_email"] == EMAIL for r in revisions), revisions

    # Bucket Detail v1 (v0 stays as it was); nothing runs, so no location is over any threshold.
    v1 = team.ok("GET", f"/v1/buckets/{namespace}")
    assert v1["locations_utilization_%"] == {} and v1["key"] == namespace
    assert (
        team.ok("GET", f"/v1/buckets/{namespace}", params={"list_utilizations_gt": 0})["locations_utilization_%"] == {}
    )
    assert "locations_utilization_%" not in team.ok("GET", f"/buckets/{namespace}")
    assert_error(team.call("GET", f"/v1/buckets/{namespace}", params={"list_utilizations_gt": 101}), 400)

    # Team Request Count before anyone joined: the team's own credential stands as its creator.
    count = team.ok("GET", f"/team/{org}/requests")
    assert (count["creator_name"], count["creator_email"], count["creator_id"]) == (
        f"{namespace}/team",
        EMAIL,
        created["created_by"]["id"],
    )

    # Invite Users to Team (without the example's role and groups, which name ids of its own
    # team), Team Members List, Team Request Count.
    invited = team.ok(
        "POST", f"/teams/{org}/invite", {"emails": ["grace.hopper@gmail.com", "jane.doe@gmail.com"]}, status=201
    )
    assert invited["successes"] == ["grace.hopper@gmail.com", "jane.doe@gmail.com"]
    people = team.ok("GET", f"/teams/{org}/people")
    assert len(people) == 2
    for person in people:
        assert person["last_login_at"] == person["created_at"] and person["last_login_at"].endswith(" -0000")
    first = next(p for p in people if p["email"] == "grace.hopper@gmail.com")  # invited first
    count = team.ok("GET", f"/team/{org}/requests")
    assert (count["creator_name"], count["creator_email"], count["creator_id"]) == (
        first["name"],
        "grace.hopper@gmail.com",
        first["id"],
    )
