"""Credential usability and tenancy decisions over an index fed with plain API-server dicts."""

from __future__ import annotations

import time

import pytest

from assay.api.auth import CredentialIndex, Principal, Tenancy
from assay.api.auth.policy import can_reach, credential_problem, principal_for
from assay.api.auth.tokens import hash_secret
from assay.api.errors import ApiError

ORG_LABEL = "assay.dev/org"
NOW = time.time()


def credential(
    name,
    namespace,
    client_id,
    *,
    level="project",
    organization=None,
    phase="Active",
    expires_at=None,
    uid=None,
    deleting=False,
    scopes=("LOADTEST_LIST",),
    grant_types=("client_credentials",),
) -> dict:
    spec = {"displayName": name, "level": level, "scopes": list(scopes), "grantTypes": list(grant_types)}
    if organization:
        spec["organization"] = organization
    if expires_at:
        spec["expiresAt"] = expires_at
    meta = {"name": name, "namespace": namespace, "uid": uid or f"uid-{name}"}
    if deleting:
        meta["deletionTimestamp"] = "2030-01-01T00:00:00Z"
    return {
        "apiVersion": "assay.dev/v1alpha1",
        "kind": "ClientCredential",
        "metadata": meta,
        "spec": spec,
        "status": {"phase": phase, "clientId": client_id, "secretHash": hash_secret("s-" + client_id)},
    }


def namespace(name, org=None, org_admin=None, disabled=None) -> dict:
    labels, annotations = {}, {}
    if org:
        labels[ORG_LABEL] = org
    if org_admin:
        labels["assay.dev/org-admin"] = org_admin
    if disabled is not None:
        annotations["assay.dev/disabled-org-credentials"] = disabled
    return {"metadata": {"name": name, "labels": labels, "annotations": annotations}}


@pytest.fixture
def index() -> CredentialIndex:
    index = CredentialIndex(ORG_LABEL)
    index.reset_namespaces(
        [
            namespace("acme-admin", org_admin="acme"),
            namespace("shop", org="acme"),
            namespace("blog", org="acme", disabled=" ac_org , ac_other"),
            namespace("rival", org="globex"),
            namespace("loose"),
            namespace("squat", org="acme"),
        ]
    )
    index.reset_credentials(
        [
            credential("org", "acme-admin", "ac_org", level="org", organization="acme"),
            credential("shop-ci", "shop", "ac_shop"),
            credential("blog-ci", "blog", "ac_blog"),
            credential("loose-ci", "loose", "ac_loose"),
            credential("forged-org", "squat", "ac_squat", level="org", organization="acme"),
        ]
    )
    return index


def principal(index, client_id, scopes=("LOADTEST_LIST",)) -> Principal:
    return principal_for(index.credential(client_id), index.namespace, scopes)


def test_index_finds_credentials_by_the_status_client_id(index):
    record = index.credential("ac_shop")
    assert record.key == "shop/shop-ci" and record.level == "project" and record.scopes == ("LOADTEST_LIST",)
    assert index.credential("ac_nobody") is None


def test_a_credential_without_a_client_id_yet_is_not_indexed(index):
    pending = credential("new", "shop", "ac_new")
    pending["status"] = {}
    index.put_credential(pending)
    assert index.credential("ac_new") is None


def test_the_client_id_label_is_ignored_only_status_counts(index):
    labelled = credential("sneaky", "shop", "ac_sneaky")
    labelled["metadata"]["labels"] = {"assay.dev/client-id": "ac_org"}
    index.put_credential(labelled)
    assert index.credential("ac_org").key == "acme-admin/org"


def test_two_credentials_claiming_one_client_id_authenticate_neither(index):
    index.put_credential(credential("copy", "rival", "ac_shop"))
    assert index.credential("ac_shop") is None
    index.drop_credential({"metadata": {"namespace": "rival", "name": "copy"}})
    assert index.credential("ac_shop").key == "shop/shop-ci"


def test_deleted_credential_leaves_the_index(index):
    index.drop_credential({"metadata": {"namespace": "shop", "name": "shop-ci"}})
    assert index.credential("ac_shop") is None


def test_a_modified_credential_replaces_its_record(index):
    index.put_credential(credential("shop-ci", "shop", "ac_shop", phase="Expired"))
    assert index.credential("ac_shop").phase == "Expired"


def test_active_credential_has_no_problem(index):
    assert credential_problem(index.credential("ac_shop"), index.namespace, NOW) is None


@pytest.mark.parametrize(
    "change, reason",
    [
        (dict(phase="Expired"), "expired"),
        (dict(phase="Disabled"), "disabled"),
        (dict(phase=None), "not ready"),
        (dict(deleting=True), "being deleted"),
        (dict(expires_at="2000-01-01T00:00:00Z"), "expired"),
    ],
)
def test_unusable_credentials_say_why(index, change, reason):
    index.put_credential(credential("shop-ci", "shop", "ac_shop", **change))
    assert reason in credential_problem(index.credential("ac_shop"), index.namespace, NOW)


def test_expiry_is_decided_by_the_clock_not_by_the_phase(index):
    index.put_credential(credential("shop-ci", "shop", "ac_shop", expires_at="2031-01-01T00:00:00Z"))
    record = index.credential("ac_shop")
    assert credential_problem(record, index.namespace, record.expires_at - 1) is None
    assert "expired" in credential_problem(record, index.namespace, record.expires_at)


def test_org_credential_is_honoured_in_its_org_admin_namespace(index):
    assert credential_problem(index.credential("ac_org"), index.namespace, NOW) is None


def test_org_credential_outside_an_org_admin_namespace_is_not_honoured(index):
    problem = credential_problem(index.credential("ac_squat"), index.namespace, NOW)
    assert "assay.dev/org-admin=acme" in problem


def test_org_credential_of_another_org_than_its_admin_namespace_is_not_honoured(index):
    index.put_credential(credential("grab", "acme-admin", "ac_grab", level="org", organization="globex"))
    assert "org-admin=globex" in credential_problem(index.credential("ac_grab"), index.namespace, NOW)


def test_removing_the_org_admin_label_ends_the_org_credential(index):
    index.put_namespace(namespace("acme-admin"))
    assert credential_problem(index.credential("ac_org"), index.namespace, NOW) is not None


def test_principal_of_a_project_credential_takes_its_namespaces_org(index):
    p = principal(index, "ac_shop")
    assert (p.level, p.organization, p.namespace, p.credential) == ("project", "acme", "shop", "shop/shop-ci")
    assert principal(index, "ac_loose").organization is None


def test_principal_of_an_org_credential_takes_the_spec_org(index):
    p = principal(index, "ac_org")
    assert (p.level, p.organization, p.namespace) == ("org", "acme", "acme-admin")


def test_project_credential_reaches_only_its_project(index):
    tenancy = Tenancy(index)
    shop = principal(index, "ac_shop")
    assert tenancy.project_namespace(shop, "acme", "shop") == "shop"
    for org, project in [("acme", "blog"), ("globex", "rival"), ("acme", "nope"), ("globex", "shop")]:
        with pytest.raises(ApiError) as err:
            tenancy.project_namespace(shop, org, project)
        assert err.value.status == 404
    assert tenancy.namespaces_for(shop) == ["shop"]


def test_org_credential_reaches_its_orgs_projects_except_those_that_disabled_it(index):
    tenancy = Tenancy(index)
    org = principal(index, "ac_org")
    assert tenancy.project_namespace(org, "acme", "shop") == "shop"
    assert tenancy.project_namespace(org, "acme", "squat") == "squat"
    with pytest.raises(ApiError) as err:
        tenancy.project_namespace(org, "acme", "blog")
    assert err.value.status == 404
    assert tenancy.namespaces_for(org) == ["shop", "squat"]


def test_org_credential_gets_nothing_of_another_org(index):
    tenancy = Tenancy(index)
    org = principal(index, "ac_org")
    for org_name, project in [("globex", "rival"), ("acme", "rival")]:
        with pytest.raises(ApiError) as err:
            tenancy.project_namespace(org, org_name, project)
        assert err.value.status == 404


def test_a_missing_project_and_an_unreachable_one_answer_alike(index):
    tenancy = Tenancy(index)
    shop = principal(index, "ac_shop")
    messages = []
    for project in ("blog", "doesnotexist"):
        with pytest.raises(ApiError) as err:
            tenancy.project_namespace(shop, "acme", project)
        messages.append((err.value.status, err.value.code, err.value.message.replace(project, "?")))
    assert messages[0] == messages[1]


def test_disabling_lists_are_parsed_per_client_id(index):
    assert index.namespace("blog").disabled_org_credentials == {"ac_org", "ac_other"}
    org = principal(index, "ac_org")
    index.put_namespace(namespace("blog", org="acme", disabled="ac_other"))
    assert can_reach(org, index.namespace("blog"))


def test_project_credential_without_an_org_reaches_its_namespace_for_orgless_families(index):
    loose = principal(index, "ac_loose")
    assert Tenancy(index).namespaces_for(loose) == ["loose"]
    with pytest.raises(ApiError):
        Tenancy(index).project_namespace(loose, "acme", "loose")


def test_a_namespace_leaving_the_org_leaves_the_org_credentials_reach(index):
    org = principal(index, "ac_org")
    index.put_namespace(namespace("shop"))
    assert "shop" not in Tenancy(index).namespaces_for(org)
