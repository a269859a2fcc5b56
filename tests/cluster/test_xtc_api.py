"""The XTC API through the real gateway (uvicorn), on the real control plane with the real
operator, whose runner pods upload their results to that gateway: the document's curl
sequence step by step, scopes, tenancy between projects, org credentials disabled in a
project, expired credentials."""

from __future__ import annotations

import io
import json
import sys
import time
import uuid
import zipfile
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from tests.conftest import OperatorProcess
from tests.support.credentials import bearer, kubectl_json, make_namespace
from tests.support.credentials import create_credential as _create_credential
from tests.support.credentials import request_token as _request_token
from tests.support.targets import CountingTarget

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

XTC_SCOPES = (
    "LOADTEST_LIST",
    "LOADTEST_STATUS",
    "LOADTEST_DETAILS",
    "LOADTEST_COPY_RUN",
    "LOADTEST_REPORT_DOWNLOAD",
    "LOADTEST_RESULT_DOWNLOAD",
)


# --- fixtures: projects in an organization, an operator wired to the gateway ------------------------


class Org:
    def __init__(self, cluster, name: str, a: str, b: str, admin: str):
        self.cluster, self.name, self.a, self.b, self.admin = cluster, name, a, b, admin


@pytest.fixture
def org(cluster, namespace):
    """Organization `org-<random>` with projects A (the `namespace` fixture) and B, and an
    org-admin namespace where org-level credentials live."""
    name = f"org-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("label", "namespace", namespace, f"assay.dev/org={name}")
    b = make_namespace(cluster, f"{namespace}-b", {"assay.dev/org": name})
    admin = make_namespace(cluster, f"{namespace}-admin", {"assay.dev/org-admin": name})
    yield Org(cluster, name, namespace, b, admin)
    for extra in (b, admin):
        cluster.kubectl("delete", "namespace", extra, "--wait=false", check=False)


@pytest.fixture
def linked_operator(cluster, org, gateway, tmp_path):
    proc = OperatorProcess(cluster, tmp_path / "operator.log", [org.a, org.b, org.admin], gateway).start()
    yield proc
    proc.stop()
    print(proc.log()[-4000:], file=sys.stderr)


# --- helpers ---------------------------------------------------------------------------------------


def create_credential(cluster, namespace: str, name: str, *, scopes=XTC_SCOPES, **kwargs) -> tuple[str, str]:
    return _create_credential(cluster, namespace, name, scopes=scopes, **kwargs)


def request_token(cluster, gateway, client_id: str, secret: str, scopes=XTC_SCOPES) -> str:
    return _request_token(cluster, gateway, client_id, secret, scopes)


def loadtest_manifest(
    name: str, url: str, *, shards: int = 2, users: int = 2, iterations: int = 3, labels: dict | None = None
) -> str:
    return json.dumps(
        {
            "apiVersion": "assay.dev/v1alpha1",
            "kind": "LoadTest",
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {
                "description": "checkout against a loopback target",
                "shards": shards,
                "baseUrl": url,
                "load": {"users": users, "iterations": iterations},
                "flows": [
                    {"name": "browse", "requests": [{"name": "home", "url": "/"}, {"name": "item", "url": "/items/1"}]}
                ],
            },
        }
    )


def project_url(gateway, org: str, project: str) -> str:
    return f"{gateway.url}/public/api/v1/orgs/{org}/projects/{project}/loadTests"


def assert_xtc_error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"timestamp", "status", "error", "code", "message", "path"}, body
    assert body["status"] == status and body["path"] == response.request.url.path
    return body


def poll(cluster, what: str, call, done, timeout: float = 120, interval: float = 0.5):
    """Call until `done(result)`; the last result."""
    box = {}

    def check():
        box["last"] = call()
        return done(box["last"])

    try:
        cluster.wait_for(what, check, timeout=timeout, interval=interval)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nlast: {box.get('last')!r}") from None
    return box["last"]


# --- the document's sequence ------------------------------------------------------------------------


def test_the_documented_curl_sequence_end_to_end(cluster, org, gateway, linked_operator):
    with CountingTarget() as target:
        # An administrator creates client credentials in the project and copies the secret.
        client_id, secret = create_credential(cluster, org.a, "xtc-ci")
        cluster.kubectl(
            "apply", "-n", org.a, "-f", "-", input=loadtest_manifest("checkout", target.url, labels={"team": "web"})
        )
        # curl -X POST -d client_id=... -d client_secret=... -d grant_type=client_credentials -d scope=...
        token = request_token(cluster, gateway, client_id, secret)
        base = project_url(gateway, org.name, org.a)
        with httpx.Client(headers=bearer(token), timeout=30) as api:
            # curl -H "Authorization: Bearer <token>" .../loadTests
            listing = api.get(base)
            assert listing.status_code == 200, listing.text
            tests = listing.json()["loadTests"]
            assert [(t["number"], t["name"]) for t in tests] == [(1, "checkout")]
            assert listing.json()["total"] == 1
            assert tests[0]["links"]["details"] == f"{base}/1"

            details = api.get(f"{base}/1")
            assert details.status_code == 200, details.text
            body = details.json()
            assert body["description"] == "checkout against a loopback target"
            assert body["load"]["users"] == 2 and body["load"]["iterations"] == 3
            assert body["flows"] == [{"name": "browse", "weight": 1, "requests": 2}]
            assert body["shards"]["total"] == 2 and body["copiedFrom"] is None

            status = api.get(f"{base}/1/status")
            assert status.status_code == 200, status.text
            assert status.json()["number"] == 1
            assert status.json()["state"] in ("NEW", "STARTING", "RUNNING", "FINISHED")

            # The original ran once; wait for it, so the copy's requests can be told apart.
            poll(
                cluster,
                "load test 1 to finish",
                lambda: api.get(f"{base}/1/status").json(),
                lambda s: s["state"] == "FINISHED" and s["latestReportNumber"],
            )
            assert target.total == 2 * 3 * 2

            copy = api.post(f"{base}/1/runCopy")
            assert copy.status_code == 201, copy.text
            made = copy.json()
            assert (made["number"], made["name"], made["copiedFrom"]) == (2, "checkout-2", 1)
            assert copy.headers["location"] == f"{base}/2" == made["links"]["details"]

            final = poll(
                cluster,
                "the copy to run to completion",
                lambda: api.get(f"{base}/2/status").json(),
                lambda s: s["state"] in ("FINISHED", "FAILED") and s["latestReportNumber"],
                timeout=180,
            )
            assert (final["state"], final["result"]) == ("FINISHED", "PASSED"), final
            assert final["requests"] == 12 and final["failures"] == 0 and final["shards"]["succeeded"] == 2
            assert target.total == 2 * 12

            copied = api.get(f"{base}/2").json()
            assert copied["copiedFrom"] == 1 and copied["result"] == "PASSED"
            assert copied["summary"]["requests"] == 12 and copied["summary"]["errorRate"] == 0.0
            assert copied["summary"]["p95Ms"] is not None
            assert [r["number"] for r in copied["reports"]] == [1] and [r["number"] for r in copied["results"]] == [1]

            report = api.get(copied["reports"][0]["downloadUrl"])
            assert report.status_code == 200 and report.headers["content-type"] == "application/zip"
            assert report.headers["content-disposition"].startswith("attachment;")
            assert "loadtest-2-report-1.zip" in report.headers["content-disposition"]
            with zipfile.ZipFile(io.BytesIO(report.content)) as archive:
                assert "index.html" in archive.namelist()
                assert "<html" in archive.read("index.html").decode().lower()
            assert len(report.content) == copied["reports"][0]["size"]

            result = api.get(f"{base}/2/results/1/download")
            assert result.status_code == 200 and result.headers["content-type"] == "application/zip"
            with zipfile.ZipFile(io.BytesIO(result.content)) as archive:
                shards = [n for n in archive.namelist() if n.startswith("shards/")]
                assert len(shards) == 2, archive.namelist()

            assert api.get(f"{base}/2/reports/2/download").status_code == 404
            assert_xtc_error(api.get(f"{base}/9/status"), 404)

            listing = api.get(base).json()["loadTests"]
            assert [(t["number"], t["name"], t["copiedFrom"]) for t in listing] == [
                (1, "checkout", None),
                (2, "checkout-2", 1),
            ]

        # The copy is an ordinary LoadTest: same spec, labelled with its number and its source's.
        original = kubectl_json(cluster, "get", "loadtest", "checkout", "-n", org.a)
        copy_cr = kubectl_json(cluster, "get", "loadtest", "checkout-2", "-n", org.a)
        assert copy_cr["spec"] == original["spec"]
        labels = copy_cr["metadata"]["labels"]
        assert (labels["assay.dev/loadtest-number"], labels["assay.dev/copied-from-number"], labels["team"]) == (
            "2",
            "1",
            "web",
        )


def test_loadtests_created_with_kubectl_are_numbered_in_creation_order(cluster, org, gateway, linked_operator):
    client_id, secret = create_credential(cluster, org.a, "numbers", scopes=("LOADTEST_LIST", "LOADTEST_DETAILS"))
    for name in ("first", "second", "third"):
        # One second apart: creation timestamps have second precision.
        cluster.kubectl(
            "apply",
            "-n",
            org.a,
            "-f",
            "-",
            input=loadtest_manifest(name, "http://127.0.0.1:9", shards=1, users=1, iterations=1),
        )
        time.sleep(1.1)
    token = request_token(cluster, gateway, client_id, secret, ("LOADTEST_LIST", "LOADTEST_DETAILS"))
    base = project_url(gateway, org.name, org.a)
    # The first look is a details call, not a list: numbers are allocated all the same.
    third = httpx.get(f"{base}/3", headers=bearer(token), timeout=30)
    assert third.status_code == 200 and third.json()["name"] == "third"
    cluster.kubectl("delete", "loadtest", "second", "-n", org.a)
    cluster.kubectl(
        "apply",
        "-n",
        org.a,
        "-f",
        "-",
        input=loadtest_manifest("fourth", "http://127.0.0.1:9", shards=1, users=1, iterations=1),
    )
    listing = httpx.get(base, headers=bearer(token), timeout=30).json()["loadTests"]
    # A deleted load test's number is never given to another.
    assert [(t["number"], t["name"]) for t in listing] == [(1, "first"), (3, "third"), (4, "fourth")]
    assert_xtc_error(httpx.get(f"{base}/2", headers=bearer(token), timeout=30), 404)


# --- authorization ----------------------------------------------------------------------------------

ENDPOINTS = {
    "LOADTEST_LIST": ("GET", ""),
    "LOADTEST_DETAILS": ("GET", "/1"),
    "LOADTEST_STATUS": ("GET", "/1/status"),
    "LOADTEST_COPY_RUN": ("POST", "/1/runCopy"),
    "LOADTEST_REPORT_DOWNLOAD": ("GET", "/1/reports/1/download"),
    "LOADTEST_RESULT_DOWNLOAD": ("GET", "/1/results/1/download"),
}


def test_each_endpoint_refuses_a_token_without_its_scope(cluster, org, gateway, linked_operator):
    client_id, secret = create_credential(cluster, org.a, "scoped")
    cluster.kubectl(
        "apply",
        "-n",
        org.a,
        "-f",
        "-",
        input=loadtest_manifest("idle", "http://127.0.0.1:9", shards=1, users=1, iterations=1),
    )
    base = project_url(gateway, org.name, org.a)
    for scope, (method, path) in ENDPOINTS.items():
        others = [s for s in XTC_SCOPES if s != scope]
        token = request_token(cluster, gateway, client_id, secret, others)
        response = httpx.request(method, base + path, headers=bearer(token), timeout=30)
        body = assert_xtc_error(response, 403)
        assert body["code"] == "insufficient_scope" and scope in body["message"]
        assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
        # With only that scope, the same call is let through (404 for archives that do not exist yet).
        alone = request_token(cluster, gateway, client_id, secret, [scope])
        allowed = httpx.request(method, base + path, headers=bearer(alone), timeout=30)
        assert allowed.status_code in (200, 201, 404), (scope, allowed.text)
        assert allowed.status_code != 404 or "archive" in allowed.json()["message"]
    # No token, a forged token: 401 with a Bearer challenge, in the XTC shape.
    assert_xtc_error(httpx.get(base, timeout=30), 401)
    forged = httpx.get(base, headers=bearer("eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl"), timeout=30)
    assert assert_xtc_error(forged, 401)["code"] == "invalid_token"


def test_project_credentials_see_nothing_of_another_project(cluster, org, gateway, linked_operator):
    client_id, secret = create_credential(cluster, org.a, "project-a")
    for project in (org.a, org.b):
        cluster.kubectl(
            "apply",
            "-n",
            project,
            "-f",
            "-",
            input=loadtest_manifest("secret-plan", "http://127.0.0.1:9", shards=1, users=1, iterations=1),
        )
    token = request_token(cluster, gateway, client_id, secret)
    assert httpx.get(project_url(gateway, org.name, org.a), headers=bearer(token), timeout=30).status_code == 200
    other = project_url(gateway, org.name, org.b)
    for method, path in ENDPOINTS.values():
        body = assert_xtc_error(httpx.request(method, other + path, headers=bearer(token), timeout=30), 404)
        assert org.b in body["message"] and "secret-plan" not in json.dumps(body)
    # Nothing was copied in project B, and a wrong org name hides project A too.
    assert [i["metadata"]["name"] for i in kubectl_json(cluster, "get", "loadtests", "-n", org.b)["items"]] == [
        "secret-plan"
    ]
    assert_xtc_error(httpx.get(project_url(gateway, "other-org", org.a), headers=bearer(token), timeout=30), 404)


def test_an_org_credential_disabled_in_a_project_gets_nothing_there(cluster, org, gateway, linked_operator):
    client_id, secret = create_credential(cluster, org.admin, "org-wide", level="org", organization=org.name)
    for project in (org.a, org.b):
        cluster.kubectl(
            "apply",
            "-n",
            project,
            "-f",
            "-",
            input=loadtest_manifest("plan", "http://127.0.0.1:9", shards=1, users=1, iterations=1),
        )
    token = request_token(cluster, gateway, client_id, secret)
    for project in (org.a, org.b):
        listing = httpx.get(project_url(gateway, org.name, project), headers=bearer(token), timeout=30)
        assert listing.status_code == 200 and [t["name"] for t in listing.json()["loadTests"]] == ["plan"]

    cluster.kubectl("annotate", "namespace", org.b, f"assay.dev/disabled-org-credentials={client_id}")
    other = project_url(gateway, org.name, org.b)
    poll(
        cluster,
        "the gateway to see the project disable the credential",
        lambda: httpx.get(other, headers=bearer(token), timeout=30).status_code,
        lambda s: s == 404,
        timeout=30,
    )
    for method, path in ENDPOINTS.values():
        assert_xtc_error(httpx.request(method, other + path, headers=bearer(token), timeout=30), 404)
    # Project A did not disable it.
    assert httpx.get(project_url(gateway, org.name, org.a), headers=bearer(token), timeout=30).status_code == 200


def test_an_expired_credential_gets_401(cluster, org, gateway, linked_operator):
    expires = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(
        seconds=30
    )  # room for a busy machine to establish it
    client_id, secret = create_credential(cluster, org.a, "short-lived", expires_at=expires)
    token = request_token(cluster, gateway, client_id, secret)
    base = project_url(gateway, org.name, org.a)
    assert httpx.get(base, headers=bearer(token), timeout=30).status_code == 200
    time.sleep(max((expires - datetime.now(timezone.utc)).total_seconds(), 0) + 1)
    body = assert_xtc_error(httpx.get(base, headers=bearer(token), timeout=30), 401)
    assert "expired" in body["message"]
    assert httpx.post(
        gateway.url + "/oauth/token",
        data={"client_id": client_id, "client_secret": secret, "grant_type": "client_credentials"},
        timeout=30,
    ).status_code in (400, 401)
