"""Tokens end to end on the real control plane: the real operator generates the credential, the
real gateway issues tokens for it and enforces scopes, expiry, deletion and tenancy through the
real XTC routes.

Layout per test: the test's namespace is both an XTC project and its organization's org-admin
namespace (so the namespace-scoped operator fixture serves project and org credentials alike);
`sibling` is another project of the same organization, `stranger` a project of another one.
"""

from __future__ import annotations

import base64
import time
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.cluster.test_clientcredential import create_credential, wait_phase

pytestmark = pytest.mark.cluster
XTC_SCOPES = ("LOADTEST_LIST", "LOADTEST_STATUS", "LOADTEST_DETAILS")


@pytest.fixture
def org(cluster, namespace) -> str:
    name = f"org-{namespace}"
    cluster.kubectl("label", "namespace", namespace, f"assay.dev/org={name}", f"assay.dev/org-admin={name}")
    return name


def _extra_namespace(cluster, labels: dict[str, str]):
    name = f"t-{uuid.uuid4().hex[:10]}"
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl("label", "namespace", name, *[f"{k}={v}" for k, v in labels.items()])
    return name


@pytest.fixture
def sibling(cluster, org):
    name = _extra_namespace(cluster, {"assay.dev/org": org})
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def stranger(cluster, org):
    name = _extra_namespace(cluster, {"assay.dev/org": f"other-{org}"})
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def request_token(gateway, client_id: str, secret: str, scope: str | None = None, **extra) -> httpx.Response:
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret, **extra}
    if scope is not None:
        form["scope"] = scope
    return httpx.post(f"{gateway.url}/oauth/token", data=form, timeout=10)


def access_token(gateway, cred: dict, secret: str, scope: str | None = None) -> str:
    response = request_token(gateway, cred["status"]["clientId"], secret, scope)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def wait_until_gateway_knows(cluster, gateway, cred: dict, secret: str) -> None:
    """The gateway's index follows the API server through a watch: wait for the credential."""
    cluster.wait_for(
        "the gateway to index the credential",
        lambda: request_token(gateway, cred["status"]["clientId"], secret).status_code == 200,
        timeout=15,
        interval=0.2,
    )


def list_load_tests(gateway, token: str, org: str, project: str) -> httpx.Response:
    return httpx.get(
        f"{gateway.url}/public/api/v1/orgs/{org}/projects/{project}/loadTests",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


def settle(check, timeout: float = 3.0, interval: float = 0.05):
    """Poll a condition that the watch makes true within milliseconds; returns seconds taken."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(interval)
    raise AssertionError(f"not settled within {timeout}s")


def test_token_with_the_real_secret_works_and_a_wrong_one_does_not(cluster, namespace, org, operator, gateway):
    cred, secret = create_credential(cluster, namespace, "ci", scopes=XTC_SCOPES)
    wait_until_gateway_knows(cluster, gateway, cred, secret)
    response = request_token(gateway, cred["status"]["clientId"], secret)
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["access_token"] == body["accessToken"] and body["scope"] == " ".join(XTC_SCOPES)
    assert response.headers["cache-control"] == "no-store"

    wrong = request_token(gateway, cred["status"]["clientId"], secret[:-1] + ("A" if secret[-1] != "A" else "B"))
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    assert "www-authenticate" in wrong.headers

    basic = base64.b64encode(f"{cred['status']['clientId']}:{secret}".encode()).decode()
    via_basic = httpx.post(
        f"{gateway.url}/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
        timeout=10,
    )
    assert via_basic.status_code == 200, via_basic.text

    assert list_load_tests(gateway, body["access_token"], org, namespace).status_code == 200
    assert secret not in gateway.log() and body["access_token"] not in gateway.log()


def test_scopes_are_a_subset_of_the_credentials(cluster, namespace, org, operator, gateway):
    cred, secret = create_credential(cluster, namespace, "narrow", scopes=("LOADTEST_LIST",))
    wait_until_gateway_knows(cluster, gateway, cred, secret)
    too_much = request_token(gateway, cred["status"]["clientId"], secret, "LOADTEST_LIST LOADTEST_COPY_RUN")
    assert too_much.status_code == 400 and too_much.json()["error"] == "invalid_scope"

    token = access_token(gateway, cred, secret, "LOADTEST_LIST")
    assert list_load_tests(gateway, token, org, namespace).status_code == 200
    status = httpx.get(
        f"{gateway.url}/public/api/v1/orgs/{org}/projects/{namespace}/loadTests/1/status",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert status.status_code == 403


def test_project_credential_gets_nothing_of_another_project(
    cluster, namespace, org, sibling, stranger, operator, gateway
):
    cred, secret = create_credential(cluster, namespace, "project-a", scopes=XTC_SCOPES)
    wait_until_gateway_knows(cluster, gateway, cred, secret)
    token = access_token(gateway, cred, secret)
    assert list_load_tests(gateway, token, org, namespace).status_code == 200
    assert list_load_tests(gateway, token, org, sibling).status_code == 404
    assert list_load_tests(gateway, token, f"other-{org}", stranger).status_code == 404
    missing = list_load_tests(gateway, token, org, "no-such-project")
    hidden = list_load_tests(gateway, token, org, sibling)
    assert missing.status_code == hidden.status_code == 404
    assert missing.json()["message"].replace("no-such-project", "?") == hidden.json()["message"].replace(sibling, "?")


def test_org_credential_reaches_its_org_until_a_project_disables_it(
    cluster, namespace, org, sibling, stranger, operator, gateway
):
    cred, secret = create_credential(cluster, namespace, "org-wide", level="org", organization=org, scopes=XTC_SCOPES)
    wait_until_gateway_knows(cluster, gateway, cred, secret)
    token = access_token(gateway, cred, secret)
    assert list_load_tests(gateway, token, org, namespace).status_code == 200
    assert list_load_tests(gateway, token, org, sibling).status_code == 200
    assert list_load_tests(gateway, token, f"other-{org}", stranger).status_code == 404
    assert list_load_tests(gateway, token, org, stranger).status_code == 404

    client_id = cred["status"]["clientId"]
    cluster.kubectl("annotate", "namespace", sibling, f"assay.dev/disabled-org-credentials=ac_someone,{client_id}")
    settle(lambda: list_load_tests(gateway, token, org, sibling).status_code == 404)
    assert list_load_tests(gateway, token, org, namespace).status_code == 200  # only that project
    # A fresh token is no way around it.
    assert list_load_tests(gateway, access_token(gateway, cred, secret), org, sibling).status_code == 404

    cluster.kubectl("annotate", "namespace", sibling, "assay.dev/disabled-org-credentials-")
    settle(lambda: list_load_tests(gateway, token, org, sibling).status_code == 200)


def test_org_credential_is_honoured_only_in_an_org_admin_namespace(cluster, namespace, org, operator, gateway):
    cred, secret = create_credential(cluster, namespace, "org-admin", level="org", organization=org, scopes=XTC_SCOPES)
    wait_until_gateway_knows(cluster, gateway, cred, secret)
    token = access_token(gateway, cred, secret)
    cluster.kubectl("label", "namespace", namespace, "assay.dev/org-admin-")
    settle(lambda: list_load_tests(gateway, token, org, namespace).status_code == 401)
    refused = request_token(gateway, cred["status"]["clientId"], secret)
    assert refused.status_code == 401 and "assay.dev/org-admin" in refused.json()["error_description"]


def test_org_credential_for_another_org_is_not_honoured(cluster, namespace, org, stranger, operator, gateway):
    other = f"other-{org}"
    cred, secret = create_credential(cluster, namespace, "grab", level="org", organization=other, scopes=XTC_SCOPES)
    time.sleep(1)
    refused = request_token(gateway, cred["status"]["clientId"], secret)
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"


def test_expiry_ends_the_credentials_tokens(cluster, namespace, org, operator, gateway):
    expires_at = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=8)
    cred, secret = create_credential(cluster, namespace, "brief", expires_at=expires_at, scopes=XTC_SCOPES)
    wait_until_gateway_knows(cluster, gateway, cred, secret)
    token = access_token(gateway, cred, secret)
    assert list_load_tests(gateway, token, org, namespace).status_code == 200
    time.sleep(max(0.0, (expires_at - datetime.now(timezone.utc)).total_seconds()) + 0.2)
    after = list_load_tests(gateway, token, org, namespace)
    assert after.status_code == 401, after.text
    assert request_token(gateway, cred["status"]["clientId"], secret).status_code == 401
    wait_phase(cluster, "brief", namespace, "Expired", timeout=15)


def test_deleting_the_credential_stops_its_tokens_at_once(cluster, namespace, org, operator, gateway):
    cred, secret = create_credential(cluster, namespace, "doomed", scopes=XTC_SCOPES)
    wait_until_gateway_knows(cluster, gateway, cred, secret)
    token = access_token(gateway, cred, secret)
    assert list_load_tests(gateway, token, org, namespace).status_code == 200
    cluster.kubectl("delete", "clientcredential", "doomed", "-n", namespace, "--wait=false")
    took = settle(lambda: list_load_tests(gateway, token, org, namespace).status_code == 401, timeout=2)
    assert took < 2
    refused = list_load_tests(gateway, token, org, namespace)
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert request_token(gateway, cred["status"]["clientId"], secret).status_code == 401


def test_runscope_web_flow_against_the_real_gateway(cluster, namespace, org, operator, gateway):
    callback = "https://app.example/cb"
    cred, secret = create_credential(
        cluster,
        namespace,
        "webapp",
        scopes=("api:read", "test:read"),
        grant_types=("authorization_code",),
        redirect_uris=(callback,),
    )
    client_id = cred["status"]["clientId"]
    params = {
        "client_id": client_id,
        "redirect_uri": callback,
        "response_type": "code",
        "scope": "api:read",
        "state": "s-123",
    }

    def authorize(auth=(client_id, secret)):
        return httpx.get(f"{gateway.url}/signin/oauth/authorize", params=params, auth=auth, timeout=10)

    cluster.wait_for("the gateway to index the app", lambda: authorize().status_code == 302, timeout=15)
    assert authorize(auth=(client_id, "wrong")).status_code == 401
    location = authorize().headers["location"]
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert location.startswith(callback + "?") and query["state"] == "s-123"

    exchange = {
        "client_id": client_id,
        "client_secret": secret,
        "code": query["code"],
        "grant_type": "authorization_code",
        "redirect_uri": callback,
    }
    first = httpx.post(
        f"{gateway.url}/signin/oauth/access_token",
        params=exchange,
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert first.status_code == 200, first.text
    assert first.json()["scope"] == "api:read" and first.json()["token_type"] == "bearer"
    again = httpx.post(f"{gateway.url}/signin/oauth/access_token", params=exchange, timeout=10)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert secret not in gateway.log() and query["code"] not in gateway.log()


def test_another_client_cannot_use_up_a_code_and_the_exchange_needs_the_redirect_uri(
    cluster, namespace, org, operator, gateway
):
    """RFC 6749 4.1.3 against the real gateway: a rival client holding the code (leaked in a log or
    a Referer) neither burns it nor revokes its tokens; leaving out redirect_uri is refused too,
    and neither costs the application its code."""
    callback = "https://app.example/cb"
    creds = {
        name: create_credential(
            cluster,
            namespace,
            name,
            scopes=("api:read",),
            grant_types=("authorization_code",),
            redirect_uris=(callback,),
        )
        for name in ("owner", "rival")
    }
    (owner, owner_secret), (rival, rival_secret) = [(c["status"]["clientId"], secret) for c, secret in creds.values()]
    params = {"client_id": owner, "redirect_uri": callback, "response_type": "code", "scope": "api:read"}

    def new_code() -> str:
        answer = httpx.get(
            f"{gateway.url}/signin/oauth/authorize", params=params, auth=(owner, owner_secret), timeout=10
        )
        assert answer.status_code == 302, answer.text
        return parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]

    def exchange(code: str, client: str, secret: str, **extra) -> httpx.Response:
        form = {"client_id": client, "client_secret": secret, "code": code, "grant_type": "authorization_code", **extra}
        return httpx.post(f"{gateway.url}/signin/oauth/access_token", data=form, timeout=10)

    cluster.wait_for(
        "the gateway to index both clients",
        lambda: exchange("x", rival, rival_secret, redirect_uri=callback).json().get("error") == "invalid_grant",
        timeout=15,
    )
    code = new_code()
    for attempt in (
        exchange(code, rival, rival_secret, redirect_uri=callback),
        exchange(code, owner, owner_secret),
        exchange(code, owner, owner_secret, redirect_uri=callback + "/other"),
    ):
        assert attempt.status_code == 400 and attempt.json()["error"] == "invalid_grant", attempt.text
    first = exchange(code, owner, owner_secret, redirect_uri=callback)
    assert first.status_code == 200, first.text
    token = {"Authorization": f"Bearer {first.json()['access_token']}"}
    assert httpx.get(f"{gateway.url}/account", headers=token, timeout=10).status_code == 200

    # The rival replaying the used code revokes nothing; the owner replaying it revokes the token.
    assert exchange(code, rival, rival_secret, redirect_uri=callback).json()["error"] == "invalid_grant"
    assert httpx.get(f"{gateway.url}/account", headers=token, timeout=10).status_code == 200
    assert exchange(code, owner, owner_secret, redirect_uri=callback).json()["error"] == "invalid_grant"
    assert httpx.get(f"{gateway.url}/account", headers=token, timeout=10).status_code == 401


def test_tenancy_follows_real_namespaces_in_process(cluster, namespace, org, sibling, stranger, operator):
    """Tenancy straight against the API server's namespaces, no gateway process: the watch
    indexes them and reacts to labels and annotations."""
    from assay.api.auth import Authenticator
    from assay.api.errors import ApiError
    from assay.api.kube import KubeClient
    from assay.api.settings import GatewaySettings

    cred, secret = create_credential(cluster, namespace, "org-direct", level="org", organization=org, scopes=XTC_SCOPES)
    settings = GatewaySettings(token_signing_key="in-process-test-key-0123456789abcdef", store_dir="/nonexistent")
    auth = Authenticator(settings, KubeClient(cluster.kubeconfig), None)
    auth.start()
    try:
        assert auth.ready
        record = auth.authenticate_client(cred["status"]["clientId"], secret)
        principal = auth.verify_access_token(auth.client_credentials_token(record, None).access_token)
        assert principal.level == "org" and principal.organization == org and principal.namespace == namespace
        assert auth.tenancy.namespaces_for(principal) == sorted([namespace, sibling])
        assert auth.tenancy.project_namespace(principal, org, sibling) == sibling
        with pytest.raises(ApiError):
            auth.tenancy.project_namespace(principal, org, stranger)

        cluster.kubectl("annotate", "namespace", sibling, f"assay.dev/disabled-org-credentials={principal.client_id}")
        settle(lambda: auth.tenancy.namespaces_for(principal) == [namespace])
        cluster.kubectl("label", "namespace", stranger, f"assay.dev/org={org}", "--overwrite")
        settle(lambda: stranger in auth.tenancy.namespaces_for(principal))
    finally:
        auth.stop()
