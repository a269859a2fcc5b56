"""Schemathesis against the XTC OpenAPI document the real gateway serves at /openapi/xtc.json
(the same as /public/api/json), with a valid token: no generated input may get a 5xx, and every
answer must match the document (status codes, content types, response schemas).

The project's load tests are never run here (the operator watches only the namespace of the
org credential), so the copies that fuzzing makes with runCopy stay cheap; the store is seeded
with a report and a result archive for load test 1, so the downloads are exercised too. The run
is bounded by examples per operation and by time; the number of test cases is printed and
written to `schemathesis-cases.json` in the test's tmp dir.
"""

from __future__ import annotations

import base64
import io
import json
import os
import uuid
import zipfile

import httpx
import pytest

from assay.api.store import RunRecord
from tests.conftest import OperatorProcess
from tests.support.fuzzing import assert_no_failures, run_schemathesis

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(900)]

MAX_EXAMPLES = int(os.environ.get("ASSAY_SCHEMATHESIS_EXAMPLES", "100"))
MAX_SECONDS = 30
SCOPES = (
    "LOADTEST_LIST LOADTEST_STATUS LOADTEST_DETAILS LOADTEST_COPY_RUN LOADTEST_REPORT_DOWNLOAD LOADTEST_RESULT_DOWNLOAD"
)


@pytest.fixture
def fuzz_project(cluster, namespace):
    org = f"org-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("label", "namespace", namespace, f"assay.dev/org={org}")
    admin = f"{namespace}-admin"
    cluster.kubectl("create", "namespace", admin)
    cluster.kubectl("label", "namespace", admin, f"assay.dev/org-admin={org}")
    yield org, namespace, admin
    cluster.kubectl("delete", "namespace", admin, "--wait=false", check=False)


def zip_bytes(files: dict[str, str]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return out.getvalue()


def test_no_generated_input_gets_a_server_error(cluster, fuzz_project, gateway, tmp_path):
    org, project, admin = fuzz_project
    operator = OperatorProcess(cluster, tmp_path / "operator.log", admin).start()
    try:
        cluster.kubectl(
            "apply",
            "-n",
            admin,
            "-f",
            "-",
            input=json.dumps(
                {
                    "apiVersion": "assay.dev/v1alpha1",
                    "kind": "ClientCredential",
                    "metadata": {"name": "fuzzer"},
                    "spec": {
                        "displayName": "fuzzer",
                        "level": "org",
                        "organization": org,
                        "scopes": SCOPES.split(),
                        "grantTypes": ["client_credentials"],
                    },
                }
            ),
        )
        secret = cluster.wait_for(
            "the credential's Secret",
            lambda: json.loads(
                cluster.kubectl("get", "secret", "fuzzer-secret", "-n", admin, "-o", "json", check=False).stdout
                or "null"
            ),
            timeout=60,
        )
    finally:
        operator.stop()
    client_id = base64.b64decode(secret["data"]["client-id"]).decode()
    client_secret = base64.b64decode(secret["data"]["client-secret"]).decode()
    cluster.kubectl(
        "apply",
        "-n",
        project,
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "assay.dev/v1alpha1",
                "kind": "LoadTest",
                "metadata": {"name": "seeded"},
                "spec": {"baseUrl": "http://127.0.0.1:9", "flows": [{"name": "f", "requests": [{"url": "/"}]}]},
            }
        ),
    )

    def token():
        response = httpx.post(
            gateway.url + "/oauth/token",
            data={
                "client_id": client_id,
                "client_secret": client_secret,
                "grant_type": "client_credentials",
                "scope": SCOPES,
            },
            timeout=10,
        )
        return response.json()["access_token"] if response.status_code == 200 else None

    access = cluster.wait_for("an access token", token, timeout=30, interval=0.3)
    base = f"{gateway.url}/public/api/v1/orgs/{org}/projects/{project}/loadTests"
    listing = httpx.get(base, headers={"Authorization": f"Bearer {access}"}, timeout=30).json()
    seeded = listing["loadTests"][0]
    assert seeded["number"] == 1

    # Archives for load test 1, registered in the gateway's store as the ingest would.
    uid = json.loads(cluster.kubectl("get", "loadtest", "seeded", "-n", project, "-o", "json").stdout)["metadata"][
        "uid"
    ]
    store = gateway.open_store()
    try:
        store.upsert_run(
            RunRecord(
                run_id="seeded-run",
                kind="LoadTest",
                project=project,
                owner_name="seeded",
                owner_uid=uid,
                state="succeeded",
                result="passed",
                summary={"requests": 1},
            )
        )
        for kind, files in (("report", {"index.html": "<html></html>"}), ("result", {"manifest.json": "{}"})):
            path = tmp_path / f"{kind}.zip"
            path.write_bytes(zip_bytes(files))
            store.add_archive("seeded-run", kind, path, loadtest_uid=uid, project=project)
    finally:
        store.close()
    assert (
        httpx.get(f"{base}/1/reports/1/download", headers={"Authorization": f"Bearer {access}"}, timeout=30).status_code
        == 200
    )

    # The org and project are fixed, so generated cases reach the load tests instead of
    # stopping at "no such project"; everything else is generated.
    run = run_schemathesis(
        f"{gateway.url}/openapi/xtc.json",
        tmp_path,
        headers={"Authorization": f"Bearer {access}"},
        parameters={"path.org": org, "path.project": project},
        max_examples=MAX_EXAMPLES,
        max_time=MAX_SECONDS,
    )
    assert_no_failures(run)
    copies = json.loads(cluster.kubectl("get", "loadtests", "-n", project, "-o", "json").stdout)["items"]
    print(f"schemathesis: {len(copies) - 1} copies made by runCopy")
