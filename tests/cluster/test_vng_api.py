"""The VNG API test platform API (seeds/004) through the real gateway, on the real control
plane with the real operator: a consumer session whose exposed URL forwards to a loopback API
and records each call, a provider run whose runner pod calls a loopback API with the run's
variables, badges, the openAPIinspector on documents served on loopback, tenancy, and errors
in DRF's shape."""

from __future__ import annotations

import json
import socket
import uuid
import xml.etree.ElementTree as ET

import httpx
import pytest

from tests.support.credentials import create_credential
from tests.support.http_targets import HttpTarget

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]


def vng_token(cluster, gateway, namespace: str, name: str = "vng-ci") -> str:
    """A static API token with the vng scope, once the gateway accepts it."""
    client_id, secret = create_credential(cluster, namespace, name, scopes=["vng"], grant_types=["static_token"])
    token = f"{client_id}.{secret}"
    cluster.wait_for(
        "the gateway to accept the token",
        lambda: (
            httpx.get(
                gateway.url + "/api/v1/sessiontypes/", headers={"Authorization": f"Token {token}"}, timeout=10
            ).status_code
            == 200
        ),
        timeout=30,
        interval=0.3,
    )
    return token


def api(gateway, token: str) -> httpx.Client:
    return httpx.Client(base_url=gateway.url, headers={"Authorization": f"Token {token}"}, timeout=60)


def session_type_manifest(target_url: str) -> str:
    return json.dumps(
        {
            "apiVersion": "assay.dev/v1alpha1",
            "kind": "TestSuite",
            "metadata": {
                "name": "demo-api",
                "labels": {"assay.dev/vng-session-type": "true"},
                "annotations": {
                    "assay.dev/vng-name": "Demo API test",
                    "assay.dev/vng-services": json.dumps({"demo": target_url}),
                },
            },
            "spec": {
                "description": "the demo API",
                "flows": [
                    {
                        "name": "quotes",
                        "requests": [
                            {
                                "method": "POST",
                                "url": "{{demo}}/echo",
                                "assertions": [
                                    {
                                        "source": "response_json",
                                        "property": "method",
                                        "comparison": "equal",
                                        "value": "POST",
                                    }
                                ],
                            },
                            {
                                "url": "{{demo}}/json",
                                "assertions": [
                                    {
                                        "source": "response_json",
                                        "property": "status",
                                        "comparison": "equal",
                                        "value": "ok",
                                    }
                                ],
                            },
                        ],
                    }
                ],
            },
        }
    )


def provider_scenario_manifest() -> str:
    return json.dumps(
        {
            "apiVersion": "assay.dev/v1alpha1",
            "kind": "TestSuite",
            "metadata": {"name": "quotes-provider"},
            "spec": {
                "parameters": {"quotes": "http://127.0.0.1:9", "who": "nobody"},
                "flows": [
                    {
                        "name": "read",
                        "requests": [
                            {
                                "url": "{{quotes}}/echo?who={{who}}",
                                "assertions": [{"source": "response_status", "comparison": "equal", "value": 200}],
                            }
                        ],
                    }
                ],
            },
        }
    )


def svg_badge(response: httpx.Response) -> list[str]:
    assert response.status_code == 200 and response.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(response.content)
    return [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]


def test_consumer_session_forwards_records_and_reports(cluster, namespace, gateway, two_tenants_operator):
    with HttpTarget() as target:
        token = vng_token(cluster, gateway, namespace)
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=session_type_manifest(target.url))
        with api(gateway, token) as vng:
            types = vng.get("/api/v1/sessiontypes/").json()
            assert [(t["name"], t["description"], t["vngendpoint_set"]) for t in types] == [
                ("Demo API test", "the demo API", [{"name": "demo", "url": target.url}])
            ]
            assert vng.get(f"/api/v1/sessiontypes/{types[0]['id']}").json()["name"] == "Demo API test"

            created = vng.post("/api/v1/testsessions/", json={"session_type": "Demo API test"})
            assert created.status_code == 201, created.text
            session = created.json()
            exposed = f"{gateway.url}/vng/exposed/{session['uuid']}/demo/"
            assert session["exposedurl_set"] == [{"vng_endpoint": "demo", "exposed_url": exposed}]
            assert session["exposed_urls"] == [exposed] and session["status"] == "running"
            assert isinstance(session["id"], int) and session["session_type"] == "Demo API test"

            # The client under test calls the exposed URL as if it were the API: method, query,
            # headers and body reach the target, and its own URL in the body is the target's.
            echoed = httpx.post(
                exposed + "echo?page=2",
                json={"self": exposed + "quotes/1"},
                headers={"Authorization": "Bearer target-secret", "X-Trace": "t1"},
                timeout=30,
            )
            assert echoed.status_code == 200, echoed.text
            arrived = target.received("/echo")[-1]
            assert arrived.method == "POST" and arrived.query == {"page": ["2"]}
            assert arrived.header("Authorization") == "Bearer target-secret" and arrived.header("X-Trace") == "t1"
            assert json.loads(arrived.body) == {"self": target.url + "/quotes/1"}
            assert echoed.json()["method"] == "POST"
            # ... and the target's URLs in its answer are the exposed URL again.
            assert json.loads(echoed.json()["body"]) == {"self": exposed + "quotes/1"}

            midway = vng.get(f"/api/v1/testsessions/{session['id']}/result").json()
            assert midway["result"] == "failed"
            assert [(e["scenario_case"]["url"], e["result"]) for e in midway["report"]] == [
                ("/echo", "success"),
                ("/json", None),
            ]
            assert vng.get(f"/api/v1/testsession-run-shield/{session['uuid']}").json()["message"] == "Running"

            assert httpx.get(exposed + "json", timeout=30).json()["status"] == "ok"
            stopped = vng.get(f"/api/v1/testsessions/{session['id']}/stop")
            assert stopped.status_code == 200 and stopped.json() == [
                {"url": "/echo", "http_method": "POST", "vng_endpoint": "demo"},
                {"url": "/json", "http_method": "GET", "vng_endpoint": "demo"},
            ]
            after = httpx.get(exposed + "json", timeout=30)
            assert after.status_code == 404 and set(after.json()) == {"detail"}
            assert len(target.received("/json")) == 1

            result = vng.get(f"/api/v1/testsessions/{session['id']}/result/").json()
            assert result["result"] == "success", result
            assert [(e["result"], e["calls"]) for e in result["report"]] == [("success", 1), ("success", 1)]
            assert result["report"][1]["assertions"][0]["actual_value"] == "ok"
            assert vng.get(f"/api/v1/testsessions/{session['id']}").json()["stopped"]
            # Stopping again (the POST form) answers the same list and changes nothing.
            again = vng.post(f"/api/v1/testsessions/{session['id']}/stop")
            assert again.status_code == 200 and again.json() == stopped.json()

        # Badges need no token: READMEs embed them.
        shield = httpx.get(f"{gateway.url}/api/v1/testsession-run-shield/{session['uuid']}", timeout=30)
        assert shield.json() == {
            "schemaVersion": 1,
            "label": "API Test Platform",
            "message": "Success",
            "color": "green",
        }
        assert svg_badge(
            httpx.get(
                f"{gateway.url}/api/v1/testsession-run-shield/{session['uuid']}", params={"format": "svg"}, timeout=30
            )
        ) == ["API Test Platform", "Success"]
        assert (
            svg_badge(
                httpx.get(
                    f"{gateway.url}/api/v1/testsession-run-shield/{session['uuid']}",
                    headers={"Accept": "image/svg+xml"},
                    timeout=30,
                )
            )[1]
            == "Success"
        )

    # Every exchange is in the gateway's store, the target's credentials redacted.
    with gateway.open_store() as store:
        calls = store.list_records(f"vng-calls/{session['uuid']}", project=namespace)
    assert [(c["method"], c["path"], c["status"]) for c in calls] == [("POST", "/echo", 200), ("GET", "/json", 200)]
    assert ["authorization", "<redacted>"] in [[k.lower(), v] for k, v in calls[0]["requestHeaders"]]
    assert json.loads(calls[0]["requestBody"]) == {"self": target.url + "/quotes/1"}
    assert json.loads(calls[1]["responseBody"])["status"] == "ok"


def test_provider_run_passes_variables_and_reports(cluster, namespace, gateway, two_tenants_operator):
    with HttpTarget() as target:
        token = vng_token(cluster, gateway, namespace)
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=provider_scenario_manifest())
        with api(gateway, token) as vng:
            created = vng.post(
                "/api/v1/provider-run/",
                json={
                    "test_scenario": "quotes-provider",
                    "endpoints": [{"name": "quotes", "value": target.url}, {"name": "who", "value": "vng-provider"}],
                },
            )
            assert created.status_code == 201, created.text
            run = created.json()
            assert run["test_scenario"] == "quotes-provider" and run["status"] == "running"
            assert run["endpoints"] == [
                {"name": "quotes", "value": target.url},
                {"name": "who", "value": "vng-provider"},
            ]

            def finished():
                response = vng.get(f"/api/v1/provider-run/{run['id']}/result")
                assert response.status_code == 200, response.text
                body = response.json()
                return body if isinstance(body, list) else None

            result = cluster.wait_for("the provider run to finish", finished, timeout=180, interval=1)
            assert [(r["name"], r["status"]) for r in result] == [("read", "success")], result
            assert [r.query for r in target.received("/echo")] == [{"who": ["vng-provider"]}]

            detail = vng.get(f"/api/v1/provider-run/{run['id']}").json()
            assert (detail["status"], detail["status_exec"], detail["percentage_exec"]) == ("stopped", "PASSED", 100)
            assert detail["stopped"]
            listed = vng.get("/api/v1/provider-run/")
            assert listed.status_code == 200 and run["id"] in [r["id"] for r in listed.json()]
        shield = httpx.get(f"{gateway.url}/api/v1/provider-run-shield/{run['uuid']}", timeout=30)
        assert shield.json() == {
            "schemaVersion": 1,
            "label": "API Test Platform",
            "message": "Success",
            "color": "green",
        }
        assert svg_badge(
            httpx.get(f"{gateway.url}/api/v1/provider-run-shield/{run['uuid']}", params={"format": "svg"}, timeout=30)
        ) == ["API Test Platform", "Success"]


VALID_SPEC = {
    "openapi": "3.0.3",
    "info": {"title": "Quotes", "version": "1.0"},
    "paths": {"/quotes": {"get": {"responses": {"200": {"description": "the quotes"}}}}},
}
INVALID_SPEC = {
    "openapi": "3.0.3",
    "info": {"title": "Quotes"},
    "paths": {
        "/quotes": {"get": {"summary": "no responses"}},
        "/quotes/{id}": {"get": {"responses": {"200": {"description": "x"}}}},
    },
}


def test_openapi_inspector_reports_each_error(cluster, namespace, gateway, two_tenants_operator):
    with HttpTarget() as target:
        token = vng_token(cluster, gateway, namespace)
        with api(gateway, token) as vng:
            valid_url = httpx.URL(target.url + "/text", params={"body": json.dumps(VALID_SPEC)})
            valid = vng.post("/api/v1/openAPIinspector", json={"url": str(valid_url)})
            assert valid.status_code == 200, valid.text
            assert valid.json() == {"version": 3, "openapi": "3.0.3", "satisfied": True, "errors": []}

            spec_url = httpx.URL(target.url + "/text", params={"body": json.dumps(INVALID_SPEC)})
            invalid = vng.post("/api/v1/openAPIinspector/", json={"url": str(spec_url)})
            assert invalid.status_code == 200, invalid.text
            body = invalid.json()
            assert body["satisfied"] is False
            assert [(e["path"], e["message"]) for e in body["errors"]] == [
                ("/info", '"version" is a required property'),
                ("/paths/~1quotes/get", '"responses" is a required property'),
                (
                    "/paths/~1quotes~1{id}/get",
                    "Path parameter 'id' for 'get' operation in '/quotes/{id}' was not resolved",
                ),
            ], body

            with socket.socket() as closed:  # a loopback port the egress policy allows, with nobody on it
                closed.bind(("127.0.0.1", 0))
                nobody = closed.getsockname()[1]
            for url, message in [
                (f"http://127.0.0.1:{nobody}/spec.json", "not reachable"),
                ("http://127.0.0.1:9/spec.json", "may not reach"),
                (f"{target.url}/text?body=just%20words", "json schema"),
                (f"{target.url}/status/404", "404"),
                ("file:///etc/passwd", "http"),
            ]:
                refused = vng.post("/api/v1/openAPIinspector", json={"url": url})
                assert refused.status_code == 400 and message in refused.json()["url"], (url, refused.text)
            missing = vng.post("/api/v1/openAPIinspector", json={})
            assert missing.status_code == 400 and missing.json() == {"url": ["This field is required."]}


def test_errors_tenancy_and_tokens_in_drfs_shape(cluster, namespace, other_account, gateway, two_tenants_operator):
    with HttpTarget() as target:
        token = vng_token(cluster, gateway, namespace)
        other = vng_token(cluster, gateway, other_account, name="vng-other")
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=session_type_manifest(target.url))
        with api(gateway, token) as vng:
            session = vng.post("/api/v1/testsessions", json={"session_type": "demo-api", "sandbox": True}).json()
            assert session["sandbox"] is True
            run = vng.post("/api/v1/provider-run", json={"test_scenario": "demo-api"})
            assert run.status_code == 201, run.text
            cases = [
                (
                    vng.post(
                        "/api/v1/testsessions/", content=b"{not json", headers={"content-type": "application/json"}
                    ),
                    400,
                    None,
                ),
                (vng.post("/api/v1/testsessions/", json={}), 400, {"session_type": ["This field is required."]}),
                (
                    vng.post("/api/v1/testsessions/", json={"session_type": "nope"}),
                    400,
                    {"session_type": ["Object with name=nope does not exist."]},
                ),
                (
                    vng.post("/api/v1/testsessions/", json=["session_type"]),
                    400,
                    {"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]},
                ),
                (
                    vng.post("/api/v1/provider-run/", json={"test_scenario": "nope"}),
                    400,
                    {"test_scenario": ["Object with name=nope does not exist."]},
                ),
                (
                    vng.post("/api/v1/provider-run/", json={"test_scenario": "demo-api", "endpoints": [{"name": "x"}]}),
                    400,
                    {"endpoints": [{"value": ["This field is required."]}]},
                ),
                (vng.get("/api/v1/testsessions/999/result"), 404, {"detail": "Not found."}),
                (vng.get("/api/v1/testsessions/abc/stop"), 404, {"detail": "Not found."}),
                (vng.get("/api/v1/provider-run/999/result"), 404, {"detail": "Not found."}),
                (vng.get("/api/v1/sessiontypes/999"), 404, {"detail": "Not found."}),
                # Digits int() refuses ("²" passes str.isdigit()) were a 500.
                (vng.get("/api/v1/sessiontypes/²"), 404, {"detail": "Not found."}),
                (vng.post("/api/v1/testsessions/¹/stop"), 404, {"detail": "Not found."}),
                # A trailing newline answered as the list /testsessions/.
                (vng.get("/api/v1/testsessions/%0A"), 400, {"detail": "the path must not contain control characters"}),
                (vng.get(f"/api/v1/testsession-run-shield/{uuid.uuid4()}"), 404, {"detail": "Not found."}),
                (vng.get("/api/v1/provider-run-shield/not-a-uuid"), 404, {"detail": "Not found."}),
                (httpx.get(f"{gateway.url}/vng/exposed/{uuid.uuid4()}/demo/json", timeout=30), 404, None),
                (httpx.get(f"{gateway.url}/vng/exposed/{session['uuid']}/nope/json", timeout=30), 404, None),
            ]
            for response, status, body in cases:
                assert response.status_code == status, (response.request.url, response.text)
                if body is not None:
                    assert response.json() == body, (response.request.url, response.text)
                else:
                    assert set(response.json()) == {"detail"}, (response.request.url, response.text)

        # Another account sees none of it; its own numbering starts afresh.
        with api(gateway, other) as theirs:
            assert theirs.get("/api/v1/sessiontypes").json() == []
            assert theirs.get("/api/v1/testsessions").json() == []
            for path in (
                f"/api/v1/testsessions/{session['id']}",
                f"/api/v1/testsessions/{session['id']}/stop",
                f"/api/v1/testsessions/{session['id']}/result",
                f"/api/v1/provider-run/{run.json()['id']}",
            ):
                response = theirs.get(path)
                assert response.status_code == 404 and response.json() == {"detail": "Not found."}, path
            refused = theirs.post("/api/v1/testsessions", json={"session_type": "demo-api"})
            assert refused.status_code == 400 and "session_type" in refused.json()
        with api(gateway, token) as vng:
            assert vng.get(f"/api/v1/testsessions/{session['id']}").json()["status"] == "running"

        for headers in (
            {},
            {"Authorization": "Token nope.nope"},
            {"Authorization": f"Bearer {token}"},
            {"Authorization": token},
        ):
            response = httpx.get(f"{gateway.url}/api/v1/testsessions/", headers=headers, timeout=30)
            assert response.status_code == 401 and set(response.json()) == {"detail"}, (headers, response.text)
        # Loadmill's paths under /api/v1 keep Loadmill's error shape.
        assert set(httpx.get(f"{gateway.url}/api/v1/test-suites-runs/x", timeout=30).json()) == {"message"}
