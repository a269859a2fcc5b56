"""ClientCredential on the real control plane with the real operator: the secret is generated
once into an owned Secret, only its hash reaches the status, nothing leaks it, a restarted
operator rotates nothing, expiry flips the phase, a squatted Secret is never adopted."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from datetime import datetime, timedelta, timezone

import pytest

pytestmark = pytest.mark.cluster


def credential_manifest(
    name: str,
    *,
    expires_at: datetime | None = None,
    level: str = "project",
    organization: str | None = None,
    scopes=("LOADTEST_LIST", "LOADTEST_STATUS"),
    grant_types=("client_credentials",),
    redirect_uris=(),
) -> str:
    spec = {"displayName": f"{name} client", "level": level, "scopes": list(scopes), "grantTypes": list(grant_types)}
    if expires_at:
        spec["expiresAt"] = expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    if organization:
        spec["organization"] = organization
    if redirect_uris:
        spec["redirectUris"] = list(redirect_uris)
    return json.dumps(
        {"apiVersion": "assay.dev/v1alpha1", "kind": "ClientCredential", "metadata": {"name": name}, "spec": spec}
    )


def get(cluster, kind: str, name: str, namespace: str) -> dict | None:
    out = cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


def wait_phase(cluster, name: str, namespace: str, phase: str, timeout: float = 30) -> dict:
    def check():
        obj = get(cluster, "clientcredential", name, namespace) or {}
        return obj if (obj.get("status") or {}).get("phase") == phase else None

    return cluster.wait_for(f"{name} to be {phase}", check, timeout=timeout, interval=0.3)


def read_secret(cluster, name: str, namespace: str) -> tuple[dict, str, str]:
    secret = get(cluster, "secret", name, namespace)
    assert secret is not None, f"Secret {name} missing"
    data = secret["data"]
    return (secret, base64.b64decode(data["client-id"]).decode(), base64.b64decode(data["client-secret"]).decode())


def create_credential(cluster, namespace: str, name: str, **kwargs) -> tuple[dict, str]:
    """Apply, wait until Active; returns (credential, plaintext secret from its Secret)."""
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=credential_manifest(name, **kwargs))
    cred = wait_phase(cluster, name, namespace, "Active")
    _, client_id, secret = read_secret(cluster, cred["status"]["secretRef"]["name"], namespace)
    assert client_id == cred["status"]["clientId"]
    return cred, secret


def test_credential_gets_its_secret_once_and_keeps_only_the_hash(cluster, namespace, operator):
    cred, secret = create_credential(cluster, namespace, "ci")
    status = cred["status"]
    client_id = status["clientId"]
    assert client_id.startswith("ac_") and len(client_id) == 23
    assert cred["metadata"]["labels"]["assay.dev/client-id"] == client_id
    assert status["secretRef"] == {"name": "ci-secret"}
    assert status["secretHash"] == "sha256:" + hashlib.sha256(secret.encode()).hexdigest()
    assert len(base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))) == 32
    assert [c["type"] for c in status["conditions"]] == ["Ready"] and status["conditions"][0]["status"] == "True"

    obj, _, _ = read_secret(cluster, "ci-secret", namespace)
    assert obj.get("immutable") is True
    owner = obj["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "ClientCredential",
        "ci",
        cred["metadata"]["uid"],
        True,
    )

    # The plaintext is in the Secret and nowhere else.
    assert secret not in json.dumps(get(cluster, "clientcredential", "ci", namespace))
    assert secret not in cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    assert secret not in operator.log()
    assert client_id in operator.log()  # the id is public and is logged

    found = cluster.kubectl(
        "get", "clientcredentials", "-n", namespace, "-l", f"assay.dev/client-id={client_id}", "-o", "name"
    ).stdout.split()
    assert found == ["clientcredential.assay.dev/ci"]


def test_each_credential_gets_its_own_id_and_secret(cluster, namespace, operator):
    first, first_secret = create_credential(cluster, namespace, "one")
    second, second_secret = create_credential(cluster, namespace, "two")
    assert first["status"]["clientId"] != second["status"]["clientId"]
    assert first_secret != second_secret


def test_restarted_operator_neither_rotates_nor_regenerates_the_secret(cluster, namespace, operator):
    cred, secret = create_credential(cluster, namespace, "stable")
    before, _, _ = read_secret(cluster, "stable-secret", namespace)
    # A second credential whose Secret the user deletes after copying it.
    copied, _ = create_credential(cluster, namespace, "copied")
    cluster.kubectl("delete", "secret", "copied-secret", "-n", namespace)

    operator.stop()
    operator.start()
    # A fresh credential becoming Active proves the new operator is up and has resumed the others.
    create_credential(cluster, namespace, "after-restart")
    time.sleep(1)

    after, _, secret_after = read_secret(cluster, "stable-secret", namespace)
    assert secret_after == secret
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert get(cluster, "clientcredential", "stable", namespace)["status"]["secretHash"] == cred["status"]["secretHash"]

    assert get(cluster, "secret", "copied-secret", namespace) is None
    status = get(cluster, "clientcredential", "copied", namespace)["status"]
    assert (status["clientId"], status["secretHash"]) == (copied["status"]["clientId"], copied["status"]["secretHash"])
    assert secret not in operator.log()


def test_expiry_flips_the_phase_to_expired(cluster, namespace, operator):
    expires_at = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=6)
    cred, _ = create_credential(cluster, namespace, "short", expires_at=expires_at)
    assert cred["status"]["expiresAt"] == expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    expired = wait_phase(cluster, "short", namespace, "Expired", timeout=30)
    assert datetime.now(timezone.utc) >= expires_at
    ready = expired["status"]["conditions"][0]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "False", "Expired")
    assert expired["status"]["clientId"] == cred["status"]["clientId"]  # still identifiable


def test_credential_created_past_its_expiry_is_expired_at_once(cluster, namespace, operator):
    past = datetime.now(timezone.utc) - timedelta(minutes=1)
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=credential_manifest("late", expires_at=past))
    cred = wait_phase(cluster, "late", namespace, "Expired")
    assert cred["status"]["secretHash"].startswith("sha256:")


def test_expiry_that_passed_while_the_operator_was_down_is_caught_up(cluster, namespace, operator):
    expires_at = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=5)
    create_credential(cluster, namespace, "downtime", expires_at=expires_at)
    operator.kill()
    time.sleep(max(0.0, (expires_at - datetime.now(timezone.utc)).total_seconds()) + 1)
    assert get(cluster, "clientcredential", "downtime", namespace)["status"]["phase"] == "Active"
    operator.start()
    wait_phase(cluster, "downtime", namespace, "Expired", timeout=30)


def test_a_secret_it_does_not_control_is_never_adopted(cluster, namespace, operator):
    planted = "planted-secret-known-to-someone-else"
    cluster.kubectl(
        "create",
        "secret",
        "generic",
        "squat-secret",
        "-n",
        namespace,
        "--from-literal=client-id=ac_planted000000000000",
        f"--from-literal=client-secret={planted}",
    )
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=credential_manifest("squat"))
    time.sleep(4)
    status = get(cluster, "clientcredential", "squat", namespace).get("status") or {}
    assert not status.get("clientId") and not status.get("secretHash")

    cluster.kubectl("delete", "secret", "squat-secret", "-n", namespace)
    cred = wait_phase(cluster, "squat", namespace, "Active", timeout=40)
    _, client_id, secret = read_secret(cluster, "squat-secret", namespace)
    assert secret != planted and client_id != "ac_planted000000000000"
    assert cred["status"]["secretHash"] == "sha256:" + hashlib.sha256(secret.encode()).hexdigest()


def test_deleting_the_credential_garbage_collects_its_secret(cluster, namespace, operator):
    create_credential(cluster, namespace, "gone")
    cluster.kubectl("delete", "clientcredential", "gone", "-n", namespace, "--timeout=30s")
    cluster.wait_for(
        "the credential's Secret to be garbage-collected",
        lambda: get(cluster, "secret", "gone-secret", namespace) is None,
        timeout=60,
    )


def test_spec_is_immutable(cluster, namespace, operator):
    create_credential(cluster, namespace, "fixed")
    out = cluster.kubectl(
        "patch",
        "clientcredential",
        "fixed",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"scopes": ["LOADTEST_LIST", "LOADTEST_COPY_RUN"]}}),
        check=False,
    )
    assert out.returncode != 0 and "immutable" in out.stderr
