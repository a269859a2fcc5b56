"""The runner's upload client against real loopback servers: a scripted one for the retry
rules, and the gateway's real ingest router (uvicorn, real store) for the wire contract."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from assay.crds.contracts.upload import RunGrant, idempotency_key, upload_token, verify_upload_token
from assay.runner.upload import UploadClient, UploadError

RUN = "checkout-1a2b3c4d"
META = {"project": "shop", "owner_name": "checkout", "owner_uid": "uid-1", "shards": 1}


GRANT = RunGrant("shop", "LoadTest", "checkout", "uid-1", RUN)


def test_the_upload_token_names_its_run_and_owner_under_an_hmac_of_all_of_them():
    subject = f"run.v2:shop/LoadTest/checkout/uid-1/{RUN}"
    expected = f"{subject}:{hmac.new(b'key', subject.encode(), hashlib.sha256).hexdigest()}"
    assert upload_token("key", GRANT) == upload_token(b"key", GRANT) == expected
    assert verify_upload_token("key", expected) == GRANT
    mac = expected.rpartition(":")[2]
    for forged in (
        f"run.v2:other/LoadTest/checkout/uid-1/{RUN}:{mac}",  # another namespace, same MAC
        f"run.v2:shop/LoadTest/checkout/uid-1/other-run:{mac}",  # another run
        upload_token("other key", GRANT),
        hmac.new(b"key", RUN.encode(), hashlib.sha256).hexdigest(),  # the former, unbound format
        f"run.v3:shop/LoadTest/checkout/uid-1/{RUN}:{mac}",
        "",
        ":",
        "run.v2:::",
    ):
        assert verify_upload_token("key", forged) is None, forged
    with pytest.raises(ValueError):
        upload_token("", GRANT)
    with pytest.raises(ValueError):  # a field that could shift the others
        upload_token("key", RunGrant("shop/x", "LoadTest", "checkout", "uid-1", RUN))


def test_idempotency_key_depends_on_run_name_and_content():
    sha = hashlib.sha256(b"x").hexdigest()
    key = idempotency_key(RUN, "shard-0.json", sha)
    assert key == idempotency_key(RUN, "shard-0.json", sha)
    assert (
        len(
            {
                key,
                idempotency_key(RUN, "shard-1.json", sha),
                idempotency_key("other", "shard-0.json", sha),
                idempotency_key(RUN, "shard-0.json", hashlib.sha256(b"y").hexdigest()),
            }
        )
        == 4
    )


class Scripted:
    """Answers each PUT with the next (status, body) of `script`; records what it received."""

    def __init__(self, script: list[tuple[int, dict]], port: int = 0):
        self.script = list(script)
        self.received: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_PUT(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status, answer = outer.script.pop(0) if outer.script else (200, {})
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def scripted():
    servers = []

    def make(script, port=0):
        servers.append(Scripted(script, port))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def client(url: str, **kwargs) -> UploadClient:
    return UploadClient(url, RUN, "token-x", sleep=lambda s: None, **kwargs)


def test_upload_sends_the_document_with_its_checksum_identity_and_metadata(scripted):
    server = scripted([(201, {"created": True})])
    answer = client(server.url).upload("LoadTest", 0, "shard-0.json", b'{"a":1}', {**META, "labels": {"team": "web"}})
    assert answer == {"created": True}
    (request,) = server.received
    sha = hashlib.sha256(b'{"a":1}').hexdigest()
    assert request["path"] == f"/internal/v1/runs/{RUN}/documents/shard-0.json"
    assert request["body"] == b'{"a":1}'
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert headers["authorization"] == "Bearer token-x"
    assert headers["x-assay-content-sha256"] == sha
    assert headers["idempotency-key"] == idempotency_key(RUN, "shard-0.json", sha)
    assert (headers["x-assay-kind"], headers["x-assay-shard"], headers["x-assay-shards"]) == ("LoadTest", "0", "1")
    assert (headers["x-assay-project"], headers["x-assay-owner-name"], headers["x-assay-owner-uid"]) == (
        "shop",
        "checkout",
        "uid-1",
    )
    assert json.loads(headers["x-assay-labels"]) == {"team": "web"}


def test_server_errors_and_checksum_mismatches_are_retried_until_stored(scripted):
    server = scripted([(503, {"error": "x"}), (500, {}), (400, {"error": "checksum_mismatch"}), (200, {"ok": 1})])
    assert client(server.url).upload("LoadTest", 0, "shard-0.json", b"{}", META) == {"ok": 1}
    assert len(server.received) == 4
    assert len({r["headers"]["Idempotency-Key"] for r in server.received}) == 1


def test_a_conflict_with_the_same_bytes_is_done_and_with_other_bytes_is_an_error(scripted):
    sha = hashlib.sha256(b"{}").hexdigest()
    server = scripted([(409, {"error": "conflict", "sha256": sha})])
    assert client(server.url).upload("LoadTest", 0, "shard-0.json", b"{}", META)["sha256"] == sha
    server = scripted([(409, {"error": "conflict", "sha256": "0" * 64})])
    with pytest.raises(UploadError, match="409"):
        client(server.url).upload("LoadTest", 0, "shard-0.json", b"{}", META)
    assert len(server.received) == 1


def test_a_refused_token_fails_at_once(scripted):
    server = scripted([(401, {"error": "unauthorized", "message": "a valid upload token is required"})])
    with pytest.raises(UploadError, match="401 unauthorized: a valid upload token"):
        client(server.url).upload("LoadTest", 0, "shard-0.json", b"{}", META)
    assert len(server.received) == 1


def test_retries_stop_after_the_deadline_with_a_clear_message():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    waits = []
    up = UploadClient(
        f"http://127.0.0.1:{port}", RUN, "t", retry_for=0.5, sleep=lambda s: (waits.append(s), time.sleep(s))
    )
    started = time.monotonic()
    with pytest.raises(UploadError, match=f"uploading shard-0.json of run {RUN} .* failed after .* attempts"):
        up.upload("LoadTest", 0, "shard-0.json", b"{}", META)
    assert time.monotonic() - started < 5
    assert waits and all(w <= 0.6 for w in waits)


def test_a_gateway_that_comes_up_late_still_gets_the_upload(scripted):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    timer = threading.Timer(1.0, lambda: scripted([(201, {"created": True})], port))
    timer.start()
    up = UploadClient(f"http://127.0.0.1:{port}", RUN, "t", retry_for=20)
    assert up.upload("LoadTest", 0, "shard-0.json", b"{}", META) == {"created": True}
    timer.join()


# --- against the real ingest router --------------------------------------------------------------


@pytest.fixture
def ingest_gateway(tmp_path):
    """The ingest router alone in a real uvicorn server on a real store (the full gateway,
    with auth and the API families, is exercised in tests/cluster/test_ingest.py)."""
    import uvicorn
    from fastapi import FastAPI
    from pydantic import SecretStr

    from assay.api.bodies import install_body_limits
    from assay.api.errors import install_error_handlers
    from assay.api.routers import ingest
    from assay.api.settings import GatewaySettings
    from assay.api.store import Store

    store = Store(tmp_path / "store")
    settings = GatewaySettings(store_dir=tmp_path / "store", upload_key=SecretStr("k"), upload_max_bytes=1 << 20)
    app = FastAPI()
    install_error_handlers(app)
    install_body_limits(app, settings)
    ingest.install(app, SimpleNamespace(store=store, kube=None, settings=settings))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield SimpleNamespace(url=f"http://127.0.0.1:{port}", store=store)
    server.should_exit = True
    thread.join(10)
    store.close()


def test_the_client_and_the_ingest_router_agree_on_the_wire_format(ingest_gateway):
    up = UploadClient(
        ingest_gateway.url,
        "smoke-1",
        upload_token("k", RunGrant("shop", "TestSuite", "smoke", "ts-uid", "smoke-1")),
        retry_for=5,
    )
    meta = {"project": "shop", "owner_name": "smoke", "owner_uid": "ts-uid", "labels": {"ci": "true"}}
    first = up.upload("TestSuite", None, "result.json", b'{"passed": true}', meta)
    again = up.upload("TestSuite", None, "result.json", b'{"passed": true}', meta)
    assert (first["created"], again["created"]) == (True, False)
    assert first["idempotencyKey"] == idempotency_key("smoke-1", "result.json", first["sha256"])
    assert first["run"]["labels"] == {"ci": "true"}
    assert ingest_gateway.store.get_document("smoke-1", "result.json") == b'{"passed": true}'
    with pytest.raises(UploadError, match="409"):
        up.upload("TestSuite", None, "result.json", b'{"passed": false}', meta)
    with pytest.raises(UploadError, match="413"):
        up.upload("TestSuite", None, "big.json", b"x" * (2 << 20), meta)
    with pytest.raises(UploadError, match="403 forbidden: the upload token is for run smoke-2, not smoke-1"):
        UploadClient(
            ingest_gateway.url,
            "smoke-1",
            upload_token("k", RunGrant("shop", "TestSuite", "smoke", "ts-uid", "smoke-2")),
            retry_for=5,
        ).upload("TestSuite", None, "other.json", b"{}", meta)
    assert [d.name for d in ingest_gateway.store.list_documents("smoke-1")] == ["result.json"]


# --- the runner's loadtest command -------------------------------------------------------------


def test_loadtest_pods_upload_their_shards_and_the_gateway_builds_the_archives(ingest_gateway, tmp_path):
    from tests.unit.test_load_cli import manifest, runner
    from tests.unit.test_load_servers import LoadTarget

    run_id = "cli-1a2b3c4d"
    env = {
        "ASSAY_GATEWAY_URL": ingest_gateway.url,
        "ASSAY_UPLOAD_TOKEN": upload_token("k", RunGrant("shop", "LoadTest", "cli", "lt-uid", run_id)),
        "ASSAY_RUN_ID": run_id,
        "ASSAY_PROJECT": "shop",
        "ASSAY_OWNER_KIND": "LoadTest",
        "ASSAY_OWNER_NAME": "cli",
        "ASSAY_OWNER_UID": "lt-uid",
        "ASSAY_SHARDS": "2",
        "ASSAY_TERMINATION_LOG": str(tmp_path / "termination-log"),
    }
    with LoadTarget() as target:
        path = manifest(tmp_path, target.url, shards=2, load={"users": 2, "iterations": 2})
        for index in (0, 1):
            result = runner("loadtest", "--spec", str(path), env={**env, "JOB_COMPLETION_INDEX": str(index)})
            assert result.returncode == 0, result.stderr
            assert f"uploaded shard-{index}.json" in result.stdout
    store = ingest_gateway.store
    run = store.get_run(run_id)
    assert (run.state, run.shards_received, run.summary["requests"]) == ("succeeded", 2, target.total)
    assert [(a.kind, a.number) for a in store.list_archives(run_id=run_id)] == [("report", 1), ("result", 1)]


def test_a_loadtest_pod_whose_upload_is_refused_fails_and_says_why(ingest_gateway, tmp_path):
    from tests.unit.test_load_cli import manifest, runner
    from tests.unit.test_load_servers import LoadTarget

    log = tmp_path / "termination-log"
    env = {
        "ASSAY_GATEWAY_URL": ingest_gateway.url,
        "ASSAY_UPLOAD_TOKEN": "not-the-token",
        "ASSAY_RUN_ID": "cli-1a2b3c4d",
        "ASSAY_PROJECT": "shop",
        "ASSAY_OWNER_KIND": "LoadTest",
        "ASSAY_OWNER_NAME": "cli",
        "ASSAY_OWNER_UID": "lt-uid",
        "ASSAY_SHARDS": "1",
        "ASSAY_TERMINATION_LOG": str(log),
    }
    with LoadTarget() as target:
        path = manifest(tmp_path, target.url, load={"users": 1, "iterations": 1})
        result = runner("loadtest", "--spec", str(path), env=env)
    assert result.returncode == 3
    assert "result upload failed" in result.stderr and "401" in result.stderr
    summary = json.loads(log.read_text())
    assert summary["error"].startswith("result upload failed: ") and summary["requests"] == target.total
    assert ingest_gateway.store.list_documents("cli-1a2b3c4d") == []
