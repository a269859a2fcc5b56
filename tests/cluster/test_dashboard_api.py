"""The dashboard's sign-in, sessions and JSON API through the real gateway, with credentials
established by the real operator: who may see what, and how bad input is answered."""

from __future__ import annotations

import json
import re
import sys
import uuid
from contextlib import closing

import httpx
import pytest

from tests.conftest import OperatorProcess
from tests.support.credentials import bearer, create_credential, make_namespace, request_token

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

MARKUP = '<script>alert("mine")</script> & co'
"""A display name the page must show as text, never as markup."""
FORM_TOKEN = re.compile(r'name="form_token" value="([^"]+)"')


class Tenants:
    def __init__(self, org: str, a: str, b: str, admin: str):
        self.org, self.a, self.b, self.admin = org, a, b, admin


def monitor_manifest(name: str, url: str = "http://127.0.0.1:9", display_name: str | None = None) -> str:
    return json.dumps(
        {
            "apiVersion": "assay.dev/v1alpha1",
            "kind": "Monitor",
            "metadata": {"name": name},
            "spec": {
                "displayName": display_name or f"{name} check",
                "steps": [{"stepType": "request", "url": "{{base}}/ping"}],
                "environments": [{"name": "local", "initialVariables": {"base": url}}],
            },
        }
    )


def sign_in(gateway, client_id: str, secret: str) -> tuple[httpx.Client, httpx.Response]:
    """Fetch the form (its token and cookie) and post it as a browser would; the caller
    closes the client."""
    client = httpx.Client(base_url=gateway.url, timeout=30)
    form = client.get("/dashboard/login")
    assert form.status_code == 200, form.text
    token = FORM_TOKEN.search(form.text).group(1)
    answer = client.post(
        "/dashboard/login", data={"form_token": token, "client_id": client_id, "client_secret": secret}
    )
    return client, answer


def signed_in(cluster, gateway, client_id: str, secret: str) -> httpx.Client:
    """A client with a session; retried while the gateway's index catches up with the credential."""

    def attempt():
        client, answer = sign_in(gateway, client_id, secret)
        if answer.status_code == 303:
            return client
        client.close()
        return None

    return cluster.wait_for("a dashboard session", attempt, timeout=30, interval=0.5)


@pytest.fixture
def tenants(cluster, namespace):
    org = f"org-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("label", "namespace", namespace, f"assay.dev/org={org}")
    b = make_namespace(cluster, f"{namespace}-b", {"assay.dev/org": org})
    admin = make_namespace(cluster, f"{namespace}-admin", {"assay.dev/org-admin": org})
    yield Tenants(org, namespace, b, admin)
    for extra in (b, admin):
        cluster.kubectl("delete", "namespace", extra, "--wait=false", check=False)


@pytest.fixture
def credentials(cluster, tenants, gateway, tmp_path):
    """A project credential in each namespace (XTC scopes in A, a Runscope one in B), an org
    credential in the org-admin namespace, and a Monitor in each project namespace."""
    operator = OperatorProcess(
        cluster, tmp_path / "operator.log", [tenants.a, tenants.b, tenants.admin], gateway
    ).start()
    try:
        a = create_credential(cluster, tenants.a, "viewer", scopes=("LOADTEST_LIST",))
        b = create_credential(cluster, tenants.b, "other", scopes=("api:read",))
        org = create_credential(
            cluster, tenants.admin, "org-viewer", scopes=("LOADTEST_LIST",), level="org", organization=tenants.org
        )
        cluster.kubectl("apply", "-n", tenants.a, "-f", "-", input=monitor_manifest("mine", display_name=MARKUP))
        cluster.kubectl("apply", "-n", tenants.b, "-f", "-", input=monitor_manifest("theirs"))
        yield {"a": a, "b": b, "org": org}
    finally:
        operator.stop()
        print(operator.log()[-3000:], file=sys.stderr)


def assert_json_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "message"} and body["error"] == code, body
    return body


def test_without_a_session_the_page_redirects_to_sign_in_and_the_api_answers_401(
    cluster, tenants, gateway, credentials
):
    with httpx.Client(base_url=gateway.url, timeout=30) as anonymous:
        page = anonymous.get("/dashboard")
        assert page.status_code == 303 and page.headers["location"] == "/dashboard/login"
        for path in (
            "/dashboard/api/overview",
            "/dashboard/api/namespaces",
            f"/dashboard/api/namespaces/{tenants.a}/monitors/mine",
            f"/dashboard/api/namespaces/{tenants.a}/loadtests/1/reports/1",
        ):
            assert_json_error(anonymous.get(path), 401, "unauthorized")
        # A forged cookie, and an API access token (a real one, of the same credential) in its place.
        anonymous.cookies.set("assay_dashboard", "not-a-token", domain="127.0.0.1", path="/dashboard")
        assert_json_error(anonymous.get("/dashboard/api/overview"), 401, "unauthorized")
        api_token = request_token(cluster, gateway, *credentials["a"], ["LOADTEST_LIST"])
        anonymous.cookies.clear()
        anonymous.cookies.set("assay_dashboard", api_token, domain="127.0.0.1", path="/dashboard")
        body = assert_json_error(anonymous.get("/dashboard/api/overview"), 401, "unauthorized")
        assert "not a dashboard session" in body["message"]


def test_a_wrong_secret_or_unknown_client_gets_the_form_again_with_an_error_and_no_session(
    cluster, gateway, credentials
):
    client_id, secret = credentials["a"]
    signed_in(cluster, gateway, client_id, secret).close()  # the credential is in the gateway's index
    for who, what in ((client_id, secret[:-2] + "xx"), ("no-such-client", secret), (client_id, " ")):
        client, answer = sign_in(gateway, who, what)
        with closing(client):
            assert answer.status_code in (400, 401), answer.text
            assert 'role="alert"' in answer.text and "client_secret" in answer.text
            assert "assay_dashboard" not in client.cookies
            assert secret not in answer.text
            assert client.get("/dashboard/api/namespaces").status_code == 401
    client, answer = sign_in(gateway, client_id, secret[:-2] + "xx")
    assert "Wrong client id or secret." in answer.text
    client.close()


def test_sign_in_is_refused_without_the_forms_token_or_from_another_origin(cluster, gateway, credentials):
    client_id, secret = credentials["a"]
    signed_in(cluster, gateway, client_id, secret).close()
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        no_token = client.post("/dashboard/login", data={"client_id": client_id, "client_secret": secret})
        assert no_token.status_code == 403 and "expired" in no_token.text
        form = client.get("/dashboard/login")
        token = FORM_TOKEN.search(form.text).group(1)
        for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
            foreign = client.post(
                "/dashboard/login",
                headers=headers,
                data={"form_token": token, "client_id": client_id, "client_secret": secret},
            )
            assert foreign.status_code == 403 and "own form" in foreign.text
        as_json = client.post(
            "/dashboard/login", json={"form_token": token, "client_id": client_id, "client_secret": secret}
        )
        assert as_json.status_code == 400
        assert "assay_dashboard" not in client.cookies
        assert client.get("/dashboard/login").status_code == 200  # no state-changing GET: still signed out


def test_a_session_sees_only_its_own_namespace_and_another_tenants_answers_404(cluster, tenants, gateway, credentials):
    client_id, secret = credentials["a"]
    with closing(signed_in(cluster, gateway, client_id, secret)) as client:
        # The cookie: HttpOnly, SameSite=Strict, scoped to the dashboard.
        form_client, answer = sign_in(gateway, client_id, secret)
        form_client.close()
        cookie = next(
            v for k, v in answer.headers.multi_items() if k == "set-cookie" and v.startswith("assay_dashboard=")
        )
        flags = {part.strip().split("=")[0].lower(): part.strip() for part in cookie.split(";")}
        assert "httponly" in flags and flags["samesite"].lower() == "samesite=strict"
        assert flags["path"] == "Path=/dashboard"
        assert answer.headers["location"] == "/dashboard"

        session = client.get("/dashboard/api/namespaces")
        assert session.status_code == 200, session.text
        assert session.json()["namespaces"] == [tenants.a]
        assert session.json()["clientId"] == client_id

        overview = client.get("/dashboard/api/overview")
        assert overview.status_code == 200, overview.text
        body = overview.json()
        assert [(m["namespace"], m["name"], m["displayName"]) for m in body["monitors"]] == [
            (tenants.a, "mine", MARKUP)
        ]
        assert body["loadTests"] == [] and body["suiteRuns"] == [] and body["fingerprint"]
        assert client.get("/dashboard/api/overview", params={"namespace": tenants.a}).status_code == 200

        # Another tenant's namespace, and one that does not exist, answer alike.
        for namespace in (tenants.b, f"{tenants.a}-none"):
            assert_json_error(client.get("/dashboard/api/overview", params={"namespace": namespace}), 404, "not_found")
            assert_json_error(client.get(f"/dashboard/api/namespaces/{namespace}/monitors/theirs"), 404, "not_found")
            assert_json_error(
                client.get(f"/dashboard/api/namespaces/{namespace}/loadtests/1/reports/1"), 404, "not_found"
            )
        page = client.get("/dashboard", params={"namespace": tenants.b})
        assert page.status_code == 404 and "theirs" not in page.text
        mine = client.get(f"/dashboard/api/namespaces/{tenants.a}/monitors/mine")
        assert mine.status_code == 200 and mine.json()["runs"] == []
        assert_json_error(client.get(f"/dashboard/api/namespaces/{tenants.a}/loadtests/1/reports/1"), 404, "not_found")

        html = client.get("/dashboard")
        assert html.status_code == 200 and "theirs" not in html.text
        assert MARKUP not in html.text and "&lt;script&gt;alert(&quot;mine&quot;)&lt;/script&gt; &amp; co" in html.text
        assert tenants.b not in html.text
        csp = html.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'nonce-" in csp
        assert html.headers["cache-control"] == "no-store"

        # The session's token is no API token: it carries no scope of any API family.
        token = client.cookies.get("assay_dashboard")
        xtc = httpx.get(
            f"{gateway.url}/public/api/v1/orgs/{tenants.org}/projects/{tenants.a}/loadTests",
            headers=bearer(token),
            timeout=30,
        )
        assert xtc.status_code == 403, xtc.text

        # Signing out is a POST; afterwards the cookie is gone and the API says 401 again.
        assert client.get("/dashboard/logout").status_code == 405
        out = client.post("/dashboard/logout")
        assert out.status_code == 303 and out.headers["location"] == "/dashboard/login"
        assert "assay_dashboard" not in client.cookies
        assert_json_error(client.get("/dashboard/api/overview"), 401, "unauthorized")

    # The other tenant's session sees its own namespace only.
    with closing(signed_in(cluster, gateway, *credentials["b"])) as other:
        body = other.get("/dashboard/api/overview").json()
        assert [m["name"] for m in body["monitors"]] == ["theirs"] and body["namespaces"] == [tenants.b]


def test_an_org_session_sees_every_project_of_its_org_until_a_project_disables_it(
    cluster, tenants, gateway, credentials
):
    client_id, _ = credentials["org"]
    with closing(signed_in(cluster, gateway, *credentials["org"])) as client:
        assert client.get("/dashboard/api/namespaces").json()["namespaces"] == sorted([tenants.a, tenants.b])
        body = client.get("/dashboard/api/overview").json()
        assert [(m["namespace"], m["name"]) for m in body["monitors"]] == sorted(
            [(tenants.a, "mine"), (tenants.b, "theirs")]
        )
        only_b = client.get("/dashboard/api/overview", params={"namespace": tenants.b}).json()
        assert [m["name"] for m in only_b["monitors"]] == ["theirs"] and only_b["namespace"] == tenants.b
        assert tenants.admin not in client.get("/dashboard").text

        # Project B disables the org credential: B leaves the session's view at once.
        cluster.kubectl("annotate", "namespace", tenants.b, f"assay.dev/disabled-org-credentials={client_id}")
        cluster.wait_for(
            "project B to disable the org credential",
            lambda: client.get("/dashboard/api/namespaces").json()["namespaces"] == [tenants.a],
            timeout=30,
        )
        assert [m["name"] for m in client.get("/dashboard/api/overview").json()["monitors"]] == ["mine"]
        assert_json_error(client.get(f"/dashboard/api/namespaces/{tenants.b}/monitors/theirs"), 404, "not_found")


def test_bad_input_gets_a_4xx_in_the_dashboards_shape(cluster, tenants, gateway, credentials):
    with closing(signed_in(cluster, gateway, *credentials["a"])) as client:
        assert_json_error(client.get("/dashboard/api/namespaces/Not_A_Namespace/monitors/mine"), 400, "invalid_request")
        assert_json_error(
            client.get(f"/dashboard/api/namespaces/{tenants.a}/loadtests/0/reports/1"), 400, "invalid_request"
        )
        assert_json_error(
            client.get(f"/dashboard/api/namespaces/{tenants.a}/loadtests/x/results/1"), 400, "invalid_request"
        )
        assert_json_error(
            client.get("/dashboard/api/overview", params={"namespace": "x" * 200}), 400, "invalid_request"
        )
        assert_json_error(client.get("/dashboard/api/nothing-here"), 404, "not_found")
        huge = client.post(
            "/dashboard/login",
            content=b"a=" + b"x" * 20000,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        # Over the sign-in form's body limit (api/bodies.py): refused unread, as the dashboard's error page.
        assert huge.status_code == 413 and huge.headers["content-type"].startswith("text/html")
