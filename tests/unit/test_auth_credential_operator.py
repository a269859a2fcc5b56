"""The ClientCredential operator's pure parts: the Secret it writes once, the status it keeps."""

from __future__ import annotations

import base64
import importlib
import json
from datetime import datetime, timedelta, timezone

from assay.crds.clientcredential import ClientCredentialSpec

cc = importlib.import_module("assay.operator.clientcredential")

OWNER = {
    "apiVersion": "assay.dev/v1alpha1",
    "kind": "ClientCredential",
    "metadata": {"name": "ci", "namespace": "shop", "uid": "uid-1"},
}
NOW = datetime(2030, 1, 1, tzinfo=timezone.utc)


def spec(**extra) -> ClientCredentialSpec:
    return ClientCredentialSpec.model_validate(
        {"displayName": "CI", "scopes": ["LOADTEST_LIST"], "grantTypes": ["client_credentials"], **extra}
    )


def test_secret_holds_id_and_secret_is_immutable_and_controlled_by_the_credential():
    secret = cc.build_credential_secret(OWNER, "ac_abc", "the-secret")
    assert secret["metadata"]["name"] == "ci-secret" and secret["metadata"]["namespace"] == "shop"
    assert secret["immutable"] is True and secret["type"] == "Opaque"
    assert base64.b64decode(secret["data"]["client-id"]).decode() == "ac_abc"
    assert base64.b64decode(secret["data"]["client-secret"]).decode() == "the-secret"
    ref = secret["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["uid"], ref["controller"]) == ("ClientCredential", "uid-1", True)
    assert cc.controlled_by(secret, "uid-1") and not cc.controlled_by(secret, "uid-2")
    assert cc.secret_contents(secret) == ("ac_abc", "the-secret")
    assert "the-secret" not in json.dumps(secret["metadata"])


def test_secret_name_fits_the_name_limit():
    long = "c" * 253
    name = cc.secret_name_for(long)
    assert len(name) <= 253 and name.endswith("-secret")


def test_status_has_the_hash_and_never_the_secret():
    status = cc.credential_status(spec(), "ac_abc", cc.hash_secret("the-secret"), "ci-secret", 1, NOW)
    assert status["phase"] == "Active" and status["clientId"] == "ac_abc"
    assert status["secretRef"] == {"name": "ci-secret"}
    assert status["secretHash"] == cc.hash_secret("the-secret")
    assert "the-secret" not in json.dumps(status)
    assert status["conditions"][0]["type"] == "Ready" and status["conditions"][0]["status"] == "True"


def test_status_of_a_credential_past_its_expiry_is_expired():
    status = cc.credential_status(
        spec(expiresAt=(NOW - timedelta(seconds=1)).isoformat()), "ac_abc", "sha256:x", "ci-secret", 1, NOW
    )
    assert status["phase"] == "Expired" and status["conditions"][0]["reason"] == "Expired"
    assert status["expiresAt"] == "2029-12-31T23:59:59Z"


def test_status_keeps_its_creation_time():
    status = cc.credential_status(spec(), "ac_abc", "sha256:x", "ci-secret", 1, NOW, created_at="2029-01-01T00:00:00Z")
    assert status["createdAt"] == "2029-01-01T00:00:00Z"


def test_expiry_is_due_only_at_expires_at():
    assert not cc.is_expired(None, NOW)
    assert not cc.is_expired(NOW + timedelta(seconds=1), NOW)
    assert cc.is_expired(NOW, NOW)


def test_a_disabled_credential_stays_disabled():
    status = cc.credential_status(spec(), "ac_abc", "sha256:x", "ci-secret", 1, NOW, disabled=True)
    assert status["phase"] == "Disabled" and status["conditions"][0]["status"] == "False"
    expired = cc.credential_status(
        spec(expiresAt="2000-01-01T00:00:00Z"), "ac_abc", "sha256:x", "ci-secret", 1, NOW, disabled=True
    )
    assert expired["phase"] == "Expired"


def test_client_ids_are_always_valid_label_values():
    import re

    from assay.operator import clientcredential

    label_value = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
    ids = {clientcredential.generate_client_id() for _ in range(5000)}
    assert len(ids) == 5000
    assert all(label_value.match(i) and len(i) <= 63 and "." not in i for i in ids)
