"""The runner's side of TestSuite and Monitor runs: `python -m assay.runner testsuite|monitor`
as a Job pod runs them (options from the environment), the summary it leaves in the
termination message — read back by the operator's status code — and the result upload."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from assay.crds.contracts.upload import RunGrant, upload_token
from assay.operator.runhistory import RequestState, history_status
from assay.runner.__main__ import main
from assay.runner.execute import summary_message
from assay.runner.upload import UploadClient, UploadError
from tests.support.targets import CountingTarget


class FakeGateway:
    """Accepts document PUTs on loopback as the ingest endpoint does and keeps them."""

    def __init__(self):
        self.documents: dict[str, tuple[dict, bytes]] = {}
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                gateway.documents[self.path] = (dict(self.headers.items()), body)
                answer = json.dumps({"sha256": hashlib.sha256(body).hexdigest()}).encode()
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gateway():
    fake = FakeGateway()
    yield fake
    fake.close()


TOKEN = upload_token("k" * 32, RunGrant("team-a", "Monitor", "shop", "uid-1", "shop-0123456789"))


@pytest.fixture
def pod_env(monkeypatch, tmp_path):
    """The environment the operator gives a run's pod (runjob.build_runner_job)."""
    termination = tmp_path / "termination-log"
    for name, value in {
        "ASSAY_TERMINATION_LOG": str(termination),
        "ASSAY_RUN_ID": "shop-0123456789",
        "ASSAY_PROJECT": "team-a",
        "ASSAY_OWNER_NAME": "shop",
        "ASSAY_OWNER_UID": "uid-1",
        "ASSAY_SHARDS": "1",
    }.items():
        monkeypatch.setenv(name, value)
    for name in (
        "ASSAY_GATEWAY_URL",
        "ASSAY_UPLOAD_TOKEN",
        "ASSAY_REGION",
        "ASSAY_AGENT",
        "ASSAY_SHARD_INDEX",
        "ASSAY_RUN_OPTIONS",
        "JOB_COMPLETION_INDEX",
    ):
        monkeypatch.delenv(name, raising=False)
    return termination


def write(tmp_path, document) -> str:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(document))
    return str(path)


def suite(url: str) -> dict:
    return {
        "apiVersion": "assay.dev/v1alpha1",
        "kind": "TestSuite",
        "metadata": {"name": "shop", "namespace": "team-a", "uid": "uid-1"},
        "spec": {
            "parameters": {"base": url},
            "flows": [
                {"name": "home", "requests": [{"url": "{{base}}/"}]},
                {"name": "manual", "ciEnabled": False, "requests": [{"url": "{{base}}/manual"}]},
            ],
        },
    }


def monitor(url: str) -> dict:
    return {
        "apiVersion": "assay.dev/v1alpha1",
        "kind": "Monitor",
        "metadata": {"name": "health", "namespace": "team-a", "uid": "uid-2"},
        "spec": {
            "steps": [
                {
                    "stepType": "request",
                    "url": "{{base}}/ping",
                    "assertions": [{"source": "response_status", "comparison": "equal", "value": 200}],
                },
                {"stepType": "subtest", "monitor": "login"},
            ],
            "environments": [{"name": "prod", "initialVariables": {"base": url}, "regions": ["us1", "eu1"]}],
        },
    }


def as_finished_pod(termination) -> dict:
    return {
        "status": {
            "phase": "Succeeded",
            "containerStatuses": [
                {
                    "state": {
                        "terminated": {
                            "exitCode": 0,
                            "message": termination.read_text(),
                            "finishedAt": "2026-01-01T00:00:05Z",
                        }
                    }
                }
            ],
        }
    }


def finished_job(name: str, location: str | None = None) -> dict:
    labels = {"assay.dev/run-id": "shop-0123456789", **({"assay.dev/location": location} if location else {})}
    return {
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {"assay.dev/requested-at": "2026-01-01T00:00:00.000001Z"},
        },
        "status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]},
    }


def test_a_suite_pod_runs_its_options_and_leaves_a_summary_the_operator_reads(tmp_path, pod_env, monkeypatch):
    monkeypatch.setenv("ASSAY_RUN_OPTIONS", json.dumps({"forceAllFlows": True, "overrideParameters": {}}))
    with CountingTarget() as target:
        assert main(["testsuite", "--spec", write(tmp_path, suite(target.url))]) == 0
        assert dict(target.counts) == {("GET", "/"): 1, ("GET", "/manual"): 1}
    summary = json.loads(pod_env.read_text())
    assert summary["result"] == "Passed" and summary["progress"] == "2/2" and summary["flow_runs"] == 2
    status = history_status(
        "TestSuite",
        [finished_job("shop-0123456789")],
        lambda _: [as_finished_pod(pod_env)],
        {},
        RequestState(),
        limit=10,
    )
    assert status["lastRun"]["result"] == "Passed"
    assert status["lastRun"]["counts"] == {"total": 2, "passed": 2, "failed": 0}


def test_a_failing_suite_still_exits_0_and_its_summary_says_failed(tmp_path, pod_env, monkeypatch):
    monkeypatch.setenv("ASSAY_RUN_OPTIONS", json.dumps({"overrideParameters": {"base": "http://127.0.0.1:9"}}))
    with CountingTarget() as target:
        assert main(["testsuite", "--spec", write(tmp_path, suite(target.url))]) == 0
        assert target.total == 0
    summary = json.loads(pod_env.read_text())
    assert (summary["result"], summary["failed"], summary["passed"]) == ("Failed", 1, 0)


def test_a_suite_that_cannot_run_exits_2_with_the_reason_in_the_summary(tmp_path, pod_env):
    document = suite("http://127.0.0.1:9")
    document["spec"]["flows"] = [{**f, "ciEnabled": False} for f in document["spec"]["flows"]]
    assert main(["testsuite", "--spec", write(tmp_path, document)]) == 2
    summary = json.loads(pod_env.read_text())
    assert summary["result"] == "Failed" and summary["error"]


def test_a_monitor_pod_runs_in_its_region_with_subtests_and_uploads_its_runscope_result(
    tmp_path, pod_env, monkeypatch, gateway
):
    login = {
        "apiVersion": "assay.dev/v1alpha1",
        "kind": "Monitor",
        "metadata": {"name": "login", "namespace": "team-a", "uid": "uid-3"},
        "spec": {"steps": [{"stepType": "request", "url": "{{base}}/login"}]},
    }
    subtests = tmp_path / "subtests.json"
    subtests.write_text(json.dumps([login]))
    for name, value in {
        "ASSAY_RUN_OPTIONS": json.dumps({"environment": "prod", "params": {}}),
        "ASSAY_REGION": "eu1",
        "ASSAY_SHARD_INDEX": "1",
        "ASSAY_SHARDS": "2",
        "ASSAY_GATEWAY_URL": gateway.url,
        "ASSAY_UPLOAD_TOKEN": TOKEN,
    }.items():
        monkeypatch.setenv(name, value)
    with CountingTarget() as target:
        document = monitor(target.url)
        document["spec"]["steps"][1]["params"] = [{"name": "base", "value": target.url}]
        assert main(["monitor", "--spec", write(tmp_path, document), "--subtests", str(subtests)]) == 0
        assert dict(target.counts) == {("GET", "/ping"): 1, ("GET", "/login"): 1}

    summary = json.loads(pod_env.read_text())
    assert (summary["region"], summary["result"], summary["environment"]) == ("eu1", "Passed", "prod")
    base = "/internal/v1/runs/shop-0123456789/documents"
    # The step details first, then the result, which finishes the run at the gateway.
    assert list(gateway.documents) == [f"{base}/monitor-steps-1.json", f"{base}/monitor-result-1.json"]
    steps = json.loads(gateway.documents[f"{base}/monitor-steps-1.json"][1])
    assert [detail["response"]["status"] for detail in steps.values()] == [200]
    path = f"{base}/monitor-result-1.json"
    headers, body = gateway.documents[path]
    headers = {k.lower(): v for k, v in headers.items()}
    assert headers["authorization"] == f"Bearer {TOKEN}"
    assert (headers["x-assay-kind"], headers["x-assay-shard"], headers["x-assay-shards"]) == ("Monitor", "1", "2")
    assert (headers["x-assay-project"], headers["x-assay-owner-name"]) == ("team-a", "shop")
    result = json.loads(body)
    assert (result["region"], result["test_run_id"], result["result"]) == ("eu1", "shop-0123456789", "pass")
    assert [step["result"] for step in result["requests"]] == ["pass", "pass"]
    assert result["subtests_passed"] == 1


def test_a_suite_result_is_uploaded_as_suite_run_json_in_loadmills_shape(tmp_path, pod_env, monkeypatch, gateway):
    monkeypatch.setenv("ASSAY_GATEWAY_URL", gateway.url)
    monkeypatch.setenv("ASSAY_UPLOAD_TOKEN", "t")
    with CountingTarget() as target:
        assert main(["testsuite", "--spec", write(tmp_path, suite(target.url))]) == 0
    [(path, (_, body))] = gateway.documents.items()
    assert path.endswith("/runs/shop-0123456789/documents/suite-run.json")
    run = json.loads(body)
    assert (run["id"], run["status"], run["progress"], run["testSuiteId"]) == (
        "shop-0123456789",
        "PASSED",
        "1/1",
        "uid-1",
    )


def test_an_upload_that_fails_is_reported_but_the_run_result_stands(tmp_path, pod_env, monkeypatch):
    monkeypatch.setenv("ASSAY_GATEWAY_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("ASSAY_UPLOAD_TOKEN", "t")

    def gateway_down(*args, **kwargs):
        raise UploadError("uploading suite-run.json failed after 9 attempts: ConnectError")

    monkeypatch.setattr(UploadClient, "upload", gateway_down)
    with CountingTarget() as target:
        assert main(["testsuite", "--spec", write(tmp_path, suite(target.url))]) == 0
    summary = json.loads(pod_env.read_text())
    assert summary["result"] == "Passed" and "upload" in summary["upload_error"]
    status = history_status(
        "TestSuite",
        [finished_job("shop-0123456789")],
        lambda _: [as_finished_pod(pod_env)],
        {},
        RequestState(),
        limit=10,
    )
    assert status["lastRun"]["result"] == "Passed"
    assert "result upload failed" in status["conditions"][0]["message"]


def test_the_summary_always_fits_the_termination_message():
    text = summary_message(
        {"result": "Failed", "error": "x" * 100_000, "upload_error": "y" * 100_000, "started_at": None}
    )
    assert len(text.encode()) <= 4096
    assert "started_at" not in json.loads(text)
