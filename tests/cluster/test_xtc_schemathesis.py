"""Schemathesis against the XTC OpenAPI document the real gateway serves at /public/api/json,
with a valid token: no generated input may get a 5xx, and every answer must match the document
(status codes, content types, response schemas).

The project's load tests are never run here (the operator watches only the namespace of the
org credential), so the copies that fuzzing makes with runCopy stay cheap; the store is seeded
with a report and a result archive for load test 1, so the downloads are exercised too. The
number of test cases is printed and written to `schemathesis-cases.json` in the test's tmp dir.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import httpx
import pytest

from assay.api.store import RunRecord, Store
from tests.conftest import OperatorProcess

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(900)]

MAX_EXAMPLES = int(os.environ.get("ASSAY_SCHEMATHESIS_EXAMPLES", "100"))
SCOPES = "LOADTEST_LIST LOADTEST_STATUS LOADTEST_DETAILS LOADTEST_COPY_RUN LOADTEST_REPORT_DOWNLOAD " \
         "LOADTEST_RESULT_DOWNLOAD"
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance," \
         "response_headers_conformance,unsupported_method,ignored_auth"


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
        cluster.kubectl("apply", "-n", admin, "-f", "-", input=json.dumps({
            "apiVersion": "assay.dev/v1alpha1", "kind": "ClientCredential", "metadata": {"name": "fuzzer"},
            "spec": {"displayName": "fuzzer", "level": "org", "organization": org, "scopes": SCOPES.split(),
                     "grantTypes": ["client_credentials"]}}))
        secret = cluster.wait_for("the credential's Secret", lambda: json.loads(cluster.kubectl(
            "get", "secret", "fuzzer-secret", "-n", admin, "-o", "json", check=False).stdout or "null"), timeout=60)
    finally:
        operator.stop()
    client_id = base64.b64decode(secret["data"]["client-id"]).decode()
    client_secret = base64.b64decode(secret["data"]["client-secret"]).decode()
    cluster.kubectl("apply", "-n", project, "-f", "-", input=json.dumps({
        "apiVersion": "assay.dev/v1alpha1", "kind": "LoadTest", "metadata": {"name": "seeded"},
        "spec": {"baseUrl": "http://127.0.0.1:9", "flows": [{"name": "f", "requests": [{"url": "/"}]}]}}))

    def token():
        response = httpx.post(gateway.url + "/oauth/token", data={
            "client_id": client_id, "client_secret": client_secret, "grant_type": "client_credentials",
            "scope": SCOPES}, timeout=10)
        return response.json()["access_token"] if response.status_code == 200 else None
    access = cluster.wait_for("an access token", token, timeout=30, interval=0.3)
    base = f"{gateway.url}/public/api/v1/orgs/{org}/projects/{project}/loadTests"
    listing = httpx.get(base, headers={"Authorization": f"Bearer {access}"}, timeout=30).json()
    seeded = listing["loadTests"][0]
    assert seeded["number"] == 1

    # Archives for load test 1, registered in the gateway's store as the ingest would.
    uid = json.loads(cluster.kubectl("get", "loadtest", "seeded", "-n", project, "-o", "json").stdout)["metadata"]["uid"]
    store = Store(gateway.store_dir)
    try:
        store.upsert_run(RunRecord(run_id="seeded-run", kind="LoadTest", project=project, owner_name="seeded",
                                   owner_uid=uid, state="succeeded", result="passed", summary={"requests": 1}))
        for kind, files in (("report", {"index.html": "<html></html>"}), ("result", {"manifest.json": "{}"})):
            path = tmp_path / f"{kind}.zip"
            path.write_bytes(zip_bytes(files))
            store.add_archive("seeded-run", kind, path, loadtest_uid=uid, project=project)
    finally:
        store.close()
    assert httpx.get(f"{base}/1/reports/1/download", headers={"Authorization": f"Bearer {access}"},
                     timeout=30).status_code == 200

    report = tmp_path / "schemathesis.ndjson"
    # The org and project are fixed, so generated cases reach the load tests instead of
    # stopping at "no such project"; everything else is generated.
    config = tmp_path / "schemathesis.toml"
    config.write_text(f'[parameters]\n"path.org" = "{org}"\n"path.project" = "{project}"\n')
    command = [str(Path(sys.executable).parent / "st"), "--config-file", str(config), "run", f"{gateway.url}/public/api/json",
               "--header", f"Authorization: Bearer {access}", "--checks", CHECKS,
               "--max-examples", str(MAX_EXAMPLES), "--workers", "1", "--no-color", "--seed", "20240101",
               "--phases", "examples,coverage,fuzzing", "--generation-database", "none",
               "--request-timeout", "30", "--report", "ndjson", "--report-ndjson-path", str(report)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=800, cwd=tmp_path)
    output = result.stdout + result.stderr
    print(output[-6000:])
    cases = count_cases(output, report)
    (tmp_path / "schemathesis-cases.json").write_text(json.dumps(cases))
    print(f"schemathesis: {cases}")
    assert result.returncode == 0, output[-6000:]
    assert cases["total"] > 0
    copies = json.loads(cluster.kubectl("get", "loadtests", "-n", project, "-o", "json").stdout)["items"]
    print(f"schemathesis: {len(copies) - 1} copies made by runCopy")


def count_cases(output: str, report: Path) -> dict:
    """Test cases tried: from the CLI's summary line ("N generated"), per operation from the
    NDJSON events when available."""
    found = re.search(r"(\d[\d,]*) generated", output)
    total = int(found.group(1).replace(",", "")) if found else 0
    per_operation: dict[str, int] = {}
    if report.exists():
        for line in report.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            text = json.dumps(event)
            for label in re.findall(r'"label": "((?:GET|POST) [^"]+)"', text):
                per_operation.setdefault(label, 0)
    return {"total": total, "operations": sorted(per_operation)}
