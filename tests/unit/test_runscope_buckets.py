"""Runscope buckets, the account, team answers and bucket lookups: the shapes API clients decode,
and a bucket visible the moment it is created and gone the moment it is deleted."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from assay.api.auth import CredentialIndex, Principal
from assay.api.errors import ApiError
from assay.api.kube import NotFound as KubeNotFound
from assay.api.routers.runscope_wire import bucket_namespace
from assay.api.services.runscope_buckets import RunscopeBuckets, bucket_of
from assay.api.services.runscope_teams import monitor_integrations, team_detail

ORG_LABEL = "assay.dev/org"
TEAM = Principal(
    client_id="ac_team",
    credential="acme-admin/team",
    credential_uid="cred-uid",
    level="org",
    organization="acme",
    namespace="acme-admin",
    scopes=frozenset({"api:read"}),
)


def namespace(name: str, org: str | None = "acme", *, terminating: bool = False, **annotations) -> dict:
    meta = {
        "name": name,
        "uid": f"uid-{name}",
        "creationTimestamp": "2026-01-02T03:04:05Z",
        "labels": {ORG_LABEL: org} if org else {},
        "annotations": annotations,
    }
    if terminating:
        meta["deletionTimestamp"] = "2026-01-02T03:05:00Z"
    return {"metadata": meta}


def test_a_bucket_carries_its_urls_creation_time_and_the_team_under_both_names():
    ns = namespace("abc123", **{"assay.dev/bucket-name": "Shop"})
    bucket = bucket_of(ns, ORG_LABEL, "http://gw", "http://gw/radar/bucket/t1/trigger")
    assert bucket == {
        "auth_token": None,
        "collections_url": "http://gw/buckets/abc123/collections",
        "created_at": 1767323045,
        "default": False,
        "is_private": False,
        "key": "abc123",
        "messages_url": "http://gw/buckets/abc123/messages",
        "name": "Shop",
        "team": {"id": "acme", "name": "acme", "uuid": "acme"},
        "tests_url": "http://gw/buckets/abc123/tests",
        "trigger_url": "http://gw/radar/bucket/t1/trigger",
        "verify_ssl": True,
    }
    assert isinstance(bucket["created_at"], int)
    assert bucket_of(namespace("loose", org=None), ORG_LABEL, "http://gw", "")["team"] is None


def test_the_account_has_its_id_beside_its_uuid_and_each_team_an_id():
    account = RunscopeBuckets.account(TEAM, with_email=False)
    assert (account["id"], account["uuid"]) == ("cred-uid", "cred-uid")
    assert account["teams"] == [{"id": "acme", "uuid": "acme", "name": "acme"}]
    assert "email" not in account
    project = Principal(**{**TEAM.__dict__, "level": "project", "organization": None})
    assert RunscopeBuckets.account(project, with_email=True)["teams"] == []


def test_integrations_and_teams_carry_id_beside_uuid():
    monitor = {
        "spec": {
            "environments": [
                {"name": "a", "integrations": [{"id": "i1", "integrationType": "slack", "description": "S"}]},
                {"name": "b", "integrations": [{"id": "i1", "integrationType": "slack"}]},
            ]
        }
    }
    assert monitor_integrations([monitor]) == [{"description": "S", "id": "i1", "type": "slack", "uuid": "i1"}]
    assert team_detail("acme") == {"id": "acme", "uuid": "acme", "name": "acme"}


def test_a_terminating_namespace_leaves_the_index_whatever_feeds_it():
    index = CredentialIndex(ORG_LABEL)
    index.reset_namespaces([namespace("kept"), namespace("going", terminating=True)])
    assert index.namespace("kept") is not None and index.namespace("going") is None
    index.put_namespace(namespace("kept", terminating=True))
    assert index.namespace("kept") is None


class FakeKube:
    def __init__(self, *namespaces: dict):
        self.objects = {n["metadata"]["name"]: n for n in namespaces}
        self.reads: list[str] = []

    def namespace(self, name: str) -> dict:
        self.reads.append(name)
        if name not in self.objects:
            raise KubeNotFound(name)
        return self.objects[name]


def services_with(kube: FakeKube, index: CredentialIndex):
    return SimpleNamespace(kube=kube, auth=SimpleNamespace(tenancy=SimpleNamespace(index=index)))


def test_a_bucket_the_index_has_not_seen_yet_is_read_from_the_api_server():
    index = CredentialIndex(ORG_LABEL)
    kube = FakeKube(namespace("fresh"), namespace("rival", org="globex"), namespace("dying", terminating=True))
    services = services_with(kube, index)
    assert bucket_namespace(services, TEAM, "fresh") == "fresh"
    assert bucket_namespace(services, TEAM, "fresh") == "fresh"
    assert kube.reads == ["fresh"]  # known from then on
    for key in ("rival", "dying", "nowhere", "Not/A Namespace", "x" * 64):
        with pytest.raises(ApiError) as caught:
            bucket_namespace(services, TEAM, key)
        assert caught.value.status == 404
    assert kube.reads == ["fresh", "rival", "dying", "nowhere"]


def test_created_buckets_are_reachable_at_once_and_deleted_ones_gone_at_once():
    index = CredentialIndex(ORG_LABEL)
    created_ns = namespace("newbucket", **{"assay.dev/bucket-name": "New"})

    class Kube(FakeKube):
        def create_namespace(self, name, labels, annotations):
            return created_ns

        def delete_namespace(self, name):
            self.deleted = name

    kube = Kube(created_ns)
    settings = SimpleNamespace(org_label=ORG_LABEL, public_url="http://gw/")
    buckets = RunscopeBuckets(kube, SimpleNamespace(index=index), settings, lambda ns: "t")
    assert buckets.create(TEAM, "New", "acme")["key"] == "newbucket"
    assert index.namespace("newbucket") is not None
    buckets.delete(TEAM, "newbucket")
    assert kube.deleted == "newbucket" and index.namespace("newbucket") is None
