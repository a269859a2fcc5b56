"""Tenants and API credentials on the real control plane, for the gateway's API tests:
namespaces with org labels, ClientCredentials established by the operator, and tokens."""

from __future__ import annotations

import base64
import json
from datetime import datetime

import httpx


def kubectl_json(cluster, *args) -> dict | None:
    out = cluster.kubectl(*args, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


def make_namespace(cluster, name: str, labels: dict[str, str]) -> str:
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl("label", "namespace", name, *[f"{k}={v}" for k, v in labels.items()])
    cluster.wait_for(
        f"namespace {name}'s default service account",
        lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
    )
    return name


def create_credential(
    cluster,
    namespace: str,
    name: str,
    *,
    scopes,
    level: str = "project",
    organization: str | None = None,
    expires_at: datetime | None = None,
    grant_types=("client_credentials",),
    email: str | None = None,
) -> tuple[str, str]:
    """A ClientCredential, applied and established by the operator; (client id, secret)."""
    spec = {"displayName": name, "level": level, "scopes": list(scopes), "grantTypes": list(grant_types)}
    if organization:
        spec["organization"] = organization
    if email:
        spec["email"] = email
    if expires_at:
        spec["expiresAt"] = expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    cluster.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps(
            {"apiVersion": "assay.dev/v1alpha1", "kind": "ClientCredential", "metadata": {"name": name}, "spec": spec}
        ),
    )
    cred = cluster.wait_for(
        f"credential {name} to be established",
        lambda: (lambda c: c if (c or {}).get("status", {}).get("secretRef") else None)(
            kubectl_json(cluster, "get", "clientcredential", name, "-n", namespace)
        ),
        timeout=60,
        interval=0.3,
    )
    secret = kubectl_json(cluster, "get", "secret", cred["status"]["secretRef"]["name"], "-n", namespace)
    client_id = base64.b64decode(secret["data"]["client-id"]).decode()
    client_secret = base64.b64decode(secret["data"]["client-secret"]).decode()
    assert client_id == cred["status"]["clientId"]
    return client_id, client_secret


def request_token(cluster, gateway, client_id: str, secret: str, scopes) -> str:
    """POST /oauth/token (client credentials); retried while the gateway's credential index
    catches up with a credential created a moment ago."""

    def attempt():
        response = httpx.post(
            gateway.url + "/oauth/token",
            data={
                "client_id": client_id,
                "client_secret": secret,
                "grant_type": "client_credentials",
                "scope": " ".join(scopes),
            },
            timeout=10,
        )
        return response.json()["access_token"] if response.status_code == 200 else None

    return cluster.wait_for("an access token", attempt, timeout=30, interval=0.3)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
