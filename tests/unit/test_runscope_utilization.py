"""Runscope buckets and teams over namespaces, nodes and store records: the v1 bucket detail's
location utilization, the team request count's creator."""

from __future__ import annotations

from types import SimpleNamespace

from assay.api.auth import Principal
from assay.api.services.runscope_buckets import LOCATION_ANNOTATION, REGION_LABEL, RunscopeBuckets
from assay.api.services.runscope_teams import team_creator


class FakeKube:
    """Nodes in two regions and a bucket's Monitors with their last runs."""

    def __init__(self, monitors: list[dict]):
        self.monitors = monitors

    def nodes(self) -> list[dict]:
        return [
            {
                "metadata": {
                    "name": f"node-{code}",
                    "labels": {REGION_LABEL: code},
                    "annotations": {LOCATION_ANNOTATION: location},
                }
            }
            for code, location in (("us1", "US Virginia"), ("eu1", "EU Frankfurt"))
        ]

    def list(self, plural: str, namespace: str) -> list[dict]:
        assert (plural, namespace) == ("monitors", "shop")
        return self.monitors


def test_a_location_s_utilization_is_the_share_of_the_bucket_s_tests_running_there():
    def monitor(phase=None, regions=()):
        return {"status": {"lastRun": {"runId": "r", "phase": phase, "regions": list(regions)}}} if phase else {}

    kube = FakeKube(
        [
            monitor("Running", ["us1", "eu1"]),
            monitor("Pending", ["us1"]),
            monitor("Running", ["agent-laptop"]),
            monitor("Succeeded", ["eu1"]),  # finished: not running anywhere
            monitor(),
        ]
    )
    settings = SimpleNamespace(org_label="assay.dev/org", public_url="http://gateway")
    buckets = RunscopeBuckets(kube, None, settings, lambda ns: "http://gateway/radar/bucket/shop/trigger")
    assert buckets.locations_utilization("shop", 0) == {"EU Frankfurt": 20, "US Virginia": 40, "remote": 20}
    assert buckets.locations_utilization("shop", 21) == {"US Virginia": 40}
    assert buckets.locations_utilization("shop") == {}  # the document's default threshold, 85
    assert RunscopeBuckets(FakeKube([]), None, settings, lambda ns: "").locations_utilization("shop", 0) == {}


def principal(*scopes: str) -> Principal:
    return Principal(
        client_id="c-1",
        credential="shop/team",
        credential_uid="u-1",
        level="org",
        organization="acme",
        namespace="shop",
        scopes=frozenset(scopes),
        email="team@example.com",
    )


def test_a_team_s_creator_is_its_first_member_else_its_own_credential_and_the_e_mail_takes_account_email():
    people = [
        {"id": "p-2", "name": "ada", "email": "ada@example.com", "created_at": 20.0},
        {"id": "p-1", "name": "grace", "email": "grace@example.com", "created_at": 10.0},
    ]
    reader, email_reader = principal("team:read"), principal("team:read", "account:email")
    assert team_creator(people, email_reader) == {
        "creator_name": "grace",
        "creator_email": "grace@example.com",
        "creator_id": "p-1",
    }
    assert team_creator(people, reader)["creator_email"] is None
    assert team_creator([], email_reader) == {
        "creator_name": "shop/team",
        "creator_email": "team@example.com",
        "creator_id": "c-1",
    }
    assert team_creator([], reader) == {"creator_name": "shop/team", "creator_email": None, "creator_id": "c-1"}
