"""Schemathesis against the Loadmill, Runscope and VNG OpenAPI documents the real gateway serves
at /openapi/<family>.json, each with a real token of the family (an established
ClientCredential): no generated input may get a 5xx, and every answer must match the document
(status codes, content types, the family's error shape). XTC's run is test_xtc_schemathesis.py.

The operator establishes the credentials and is then stopped, so nothing the fuzzing creates
(suite runs, Monitors, sessions) starts a runner. Each run is bounded by examples per
operation and by time; the number of cases is printed and written to `schemathesis-cases.json`
in the test's tmp dir: 30 s for Loadmill, 40 s for VNG, 80 s for Runscope (66 operations once
the alternative spellings are left out). `ASSAY_SCHEMATHESIS_TIME_FACTOR` (and
`ASSAY_SCHEMATHESIS_EXAMPLES`) make a deeper run.
"""

from __future__ import annotations

import json
import os
import uuid

import httpx
import pytest

from tests.conftest import OperatorProcess
from tests.support.credentials import create_credential, make_namespace, request_token
from tests.support.fuzzing import assert_no_failures, run_schemathesis

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(600)]

MAX_EXAMPLES = int(os.environ.get("ASSAY_SCHEMATHESIS_EXAMPLES", "8"))


def static_token(cluster, gateway, namespace: str, scope: str, probe: str, scheme: str = "") -> str:
    """A static API token of the family's scope, once the gateway accepts it."""
    operator = OperatorProcess(cluster, gateway.log_path.parent / f"operator-{scope}.log", namespace).start()
    try:
        client_id, secret = create_credential(
            cluster, namespace, f"{scope}-fuzzer", scopes=[scope], grant_types=["static_token"]
        )
    finally:
        operator.stop()
    header = f"{scheme}{client_id}.{secret}"
    cluster.wait_for(
        "the gateway to accept the token",
        lambda: httpx.get(gateway.url + probe, headers={"Authorization": header}, timeout=10).status_code == 200,
        timeout=30,
        interval=0.3,
    )
    return header


def apply(cluster, namespace: str, manifest: dict) -> dict:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))
    return json.loads(
        cluster.kubectl(
            "get", manifest["kind"].lower(), manifest["metadata"]["name"], "-n", namespace, "-o", "json"
        ).stdout
    )


def suite(name: str, **metadata) -> dict:
    return {
        "apiVersion": "assay.dev/v1alpha1",
        "kind": "TestSuite",
        "metadata": {"name": name, **metadata},
        "spec": {
            "description": "fuzzed",
            "flows": [
                {
                    "id": str(uuid.uuid4()),
                    "name": "f",
                    "labels": ["smoke"],
                    "requests": [{"url": "http://127.0.0.1:9/x"}],
                }
            ],
        },
    }


def test_loadmill_api_has_no_server_error(cluster, namespace, gateway, tmp_path):
    token = static_token(cluster, gateway, namespace, "loadmill", "/api/v1/labels")
    seeded = apply(cluster, namespace, suite("checkout"))
    run = run_schemathesis(
        f"{gateway.url}/openapi/loadmill.json",
        tmp_path,
        headers={"Authorization": token},
        parameters={"path.suiteId": seeded["metadata"]["uid"]},
        max_examples=MAX_EXAMPLES,
        max_time=30,
    )
    assert_no_failures(run)


def test_vng_api_has_no_server_error(cluster, namespace, gateway, tmp_path):
    token = static_token(cluster, gateway, namespace, "vng", "/api/v1/sessiontypes/", scheme="Token ")
    apply(
        cluster,
        namespace,
        suite(
            "demo-api",
            labels={"assay.dev/vng-session-type": "true"},
            annotations={
                "assay.dev/vng-name": "Demo",
                "assay.dev/vng-services": json.dumps({"demo": "http://127.0.0.1:9"}),
            },
        ),
    )
    run = run_schemathesis(
        f"{gateway.url}/openapi/vng.json",
        tmp_path,
        headers={"Authorization": token},
        parameters={},
        max_examples=MAX_EXAMPLES,
        max_time=40,
        # The inspector fetches the URL it is given, and generated URLs point anywhere; tests
        # reach only loopback (tests/cluster/test_vng_api.py covers it on loopback documents).
        exclude_path_regex="^/api/v1/openAPIinspector",
    )
    assert_no_failures(run)


RUNSCOPE_SCOPES = ("api:read", "test:read", "test:write", "message:write", "bucket:write", "team:read", "account:email")


@pytest.fixture
def team(cluster, namespace):
    """A Runscope team: the bucket `namespace` (a default bucket, so fuzzing cannot delete it)
    and the org-admin namespace of its credential; buckets the fuzzing creates go with it."""
    name = f"team-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("label", "namespace", namespace, f"assay.dev/org={name}")
    cluster.kubectl("annotate", "namespace", namespace, "assay.dev/default-bucket=true")
    admin = make_namespace(cluster, f"{namespace}-admin", {"assay.dev/org-admin": name})
    yield {"name": name, "bucket": namespace, "admin": admin}
    cluster.kubectl("delete", "namespace", "-l", f"assay.dev/org={name}", "--wait=false", check=False)
    cluster.kubectl("delete", "namespace", admin, "--wait=false", check=False)


def test_runscope_api_has_no_server_error(cluster, team, gateway, tmp_path):
    operator = OperatorProcess(cluster, tmp_path / "operator.log", team["admin"]).start()
    try:
        client_id, secret = create_credential(
            cluster, team["admin"], "runscope-fuzzer", scopes=RUNSCOPE_SCOPES, level="org", organization=team["name"]
        )
    finally:
        operator.stop()
    token = request_token(cluster, gateway, client_id, secret, RUNSCOPE_SCOPES)
    monitor = apply(
        cluster,
        team["bucket"],
        {
            "apiVersion": "assay.dev/v1alpha1",
            "kind": "Monitor",
            "metadata": {"name": "fuzzed"},
            "spec": {
                "displayName": "fuzzed",
                "steps": [{"id": str(uuid.uuid4()), "stepType": "request", "url": "http://127.0.0.1:9/x"}],
            },
        },
    )
    run = run_schemathesis(
        f"{gateway.url}/openapi/runscope.json",
        tmp_path,
        headers={"Authorization": f"Bearer {token}"},
        parameters={
            "path.bucket_key": team["bucket"],
            "path.team_id": team["name"],
            "path.test_id": monitor["metadata"]["uid"],
        },
        max_examples=MAX_EXAMPLES,
        max_time=80,
        # `/test/`, `/team/` and `/v1` spell the same operations as `/tests/`, `/teams/` and the
        # bare path (one handler each); only POST .../schedules differs, and both of its are in.
        exclude_path_regex=r"/test(/|$)|/team/|^/v1/(?!.*/schedules$)",
    )
    assert_no_failures(run)
