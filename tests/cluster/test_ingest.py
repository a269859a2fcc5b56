"""Result ingest through the real gateway process (uvicorn, its store in a temporary folder):
tokens, truncated and repeated uploads, archives numbered per load test, and a gateway
SIGKILLed in the middle of an upload and restarted on the same store."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time

import httpx
import pytest

from assay.api.store import archive_counter
from assay.crds.contracts.upload import RunGrant, document_path, idempotency_key, upload_token
from assay.runner.upload import UploadClient
from tests.support.tcp import pipe
from tests.unit.test_report_factory import make_run

pytestmark = pytest.mark.cluster

PROJECT = "shop"
LOADTEST_UID = "5b0c6f0e-0000-4000-8000-000000000001"


def token_for(gateway, run_id: str) -> str:
    return upload_token(gateway.UPLOAD_KEY, RunGrant(PROJECT, "LoadTest", "checkout", LOADTEST_UID, run_id))


def shard_documents(run_id: str, shards: int = 2, seed: int = 1, pad: int = 0) -> list[bytes]:
    """The shards' metrics JSON; `pad` trailing spaces make a large body that still parses.
    Runs are dated a minute ago: the gateway's retention purges runs finished long ago."""
    dicts, _ = make_run(
        run_id=run_id,
        shards=shards,
        seconds=3,
        rate=10,
        seed=seed,
        started=int(time.time()) - 60,
        criteria=[{"criterion": "p95 < 5s", "observed": 1.0, "passed": True}],
    )
    return [json.dumps(d).encode() + b" " * pad for d in dicts]


def meta(shards: int = 2) -> dict:
    return {"project": PROJECT, "owner_name": "checkout", "owner_uid": LOADTEST_UID, "shards": shards}


def upload_all(url: str, gateway, run_id: str, documents: list[bytes]) -> list[dict]:
    client = UploadClient(url, run_id, token_for(gateway, run_id), retry_for=60)
    return [
        client.upload("LoadTest", i, f"shard-{i}.json", data, meta(len(documents))) for i, data in enumerate(documents)
    ]


def stored(gateway, run_id: str) -> dict:
    response = httpx.get(
        f"{gateway.url}/internal/v1/runs/{run_id}", headers={"Authorization": f"Bearer {token_for(gateway, run_id)}"}
    )
    assert response.status_code == 200, response.text
    return response.json()


def put_headers(gateway, run_id: str, name: str, data: bytes, **extra) -> dict:
    sha = hashlib.sha256(data).hexdigest()
    return {
        "Authorization": f"Bearer {token_for(gateway, run_id)}",
        "X-Assay-Content-SHA256": sha,
        "Idempotency-Key": idempotency_key(run_id, name, sha),
        "X-Assay-Kind": "LoadTest",
        "X-Assay-Project": PROJECT,
        "X-Assay-Owner-Name": "checkout",
        "X-Assay-Owner-Uid": LOADTEST_UID,
        "X-Assay-Shards": "2",
        **extra,
    }


def test_uploads_without_a_valid_token_are_refused_with_401(gateway):
    run_id = "checkout-aaaa1111"
    data = shard_documents(run_id)[0]
    url = gateway.url + document_path(run_id, "shard-0.json")
    headers = put_headers(gateway, run_id, "shard-0.json", data)
    token = token_for(gateway, run_id)
    for authorization in (
        None,
        "Bearer",
        "Basic " + token,
        "Bearer " + token[:-1] + ("1" if token[-1] == "0" else "0"),
        "Bearer " + token[:32],
    ):
        sent = {k: v for k, v in headers.items() if k != "Authorization"}
        if authorization is not None:
            sent["Authorization"] = authorization
        response = httpx.put(url, content=data, headers=sent)
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "unauthorized" and run_id in response.json()["message"]
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert httpx.get(f"{gateway.url}/internal/v1/runs/{run_id}").status_code == 401
    assert (
        httpx.get(
            f"{gateway.url}/internal/v1/runs/{run_id}",
            headers={"Authorization": f"Bearer {token_for(gateway, run_id)}"},
        ).status_code
        == 404
    )  # nothing stored


def test_a_truncated_upload_is_rejected_and_nothing_is_stored(gateway):
    run_id = "checkout-bbbb2222"
    data = shard_documents(run_id, pad=1 << 20)[0]
    url = gateway.url + document_path(run_id, "shard-0.json")
    headers = put_headers(gateway, run_id, "shard-0.json", data)

    # A body cut short on the way that still arrives as a complete request.
    response = httpx.put(url, content=data[: len(data) // 2], headers=headers)
    assert response.status_code == 400 and response.json()["error"] == "checksum_mismatch"

    # A connection that dies half-way through the body.
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        head = [
            f"PUT {document_path(run_id, 'shard-0.json')} HTTP/1.1",
            f"Host: 127.0.0.1:{gateway.port}",
            f"Content-Length: {len(data)}",
            *(f"{k}: {v}" for k, v in headers.items()),
            "",
            "",
        ]
        sock.sendall("\r\n".join(head).encode() + data[: len(data) // 2])
        time.sleep(0.5)
    time.sleep(0.5)
    response = httpx.get(
        f"{gateway.url}/internal/v1/runs/{run_id}", headers={"Authorization": f"Bearer {token_for(gateway, run_id)}"}
    )
    assert response.status_code == 404, response.text
    assert not gateway.stored_keys(f"runs/{run_id}/*shard-0.json")


def test_a_repeated_upload_stores_one_record(gateway):
    run_id = "checkout-cccc3333"
    first = shard_documents(run_id)[0]
    client = UploadClient(gateway.url, run_id, token_for(gateway, run_id), retry_for=30)
    answers = [client.upload("LoadTest", 0, "shard-0.json", first, meta()) for _ in range(3)]
    assert [a["created"] for a in answers] == [True, False, False]
    assert len({a["sha256"] for a in answers}) == 1
    record = stored(gateway, run_id)
    assert [d["name"] for d in record["documents"]] == ["shard-0.json"]
    assert (record["run"]["state"], record["run"]["shardsReceived"]) == ("running", 1)
    # Other bytes under the same name are refused, and the stored document stays.
    other = shard_documents(run_id, seed=7)[0]
    response = httpx.put(
        gateway.url + document_path(run_id, "shard-0.json"),
        content=other,
        headers=put_headers(gateway, run_id, "shard-0.json", other),
    )
    assert response.status_code == 409 and response.json()["sha256"] == answers[0]["sha256"]
    assert stored(gateway, run_id)["documents"][0]["sha256"] == answers[0]["sha256"]


def test_all_shards_make_result_and_report_archive_1_and_the_next_run_gets_2(gateway):
    first_run, second_run = "checkout-dddd4444", "checkout-eeee5555"
    answers = upload_all(gateway.url, gateway, first_run, shard_documents(first_run))
    assert answers[0]["archives"] == []
    assert [(a["kind"], a["number"]) for a in answers[1]["archives"]] == [("report", 1), ("result", 1)]
    run = answers[1]["run"]
    assert (run["state"], run["result"], run["shardsReceived"]) == ("succeeded", "passed", 2)
    assert run["summary"]["requests"] > 0 and run["summary"]["p95Ms"] is not None
    assert run["summary"]["throughputRps"] > 0

    upload_all(gateway.url, gateway, second_run, shard_documents(second_run, seed=2))
    assert [(a["kind"], a["number"]) for a in stored(gateway, second_run)["archives"]] == [("report", 2), ("result", 2)]
    with gateway.open_store() as store:
        assert store.get_archive(PROJECT, LOADTEST_UID, "result", 1).run_id == first_run
        assert store.get_archive(PROJECT, LOADTEST_UID, "report", 2).run_id == second_run
        assert len(store.list_archives(loadtest_uid=LOADTEST_UID)) == 4


class SlowProxy:
    """A TCP proxy in front of the gateway. The first connection's request body goes through
    slowly, and `forwarded` is set once `trigger_bytes` have passed, so a test can kill the
    gateway while that request is in flight; later connections pass at full speed."""

    def __init__(self, upstream_port: int, trigger_bytes: int, chunk: int = 64 * 1024, pause: float = 0.02):
        self.upstream_port, self.trigger_bytes, self.chunk, self.pause = upstream_port, trigger_bytes, chunk, pause
        self.forwarded = threading.Event()
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self._closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._closing:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(client, self.connections == 1), daemon=True).start()

    def _serve(self, client: socket.socket, slow: bool):
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
        except OSError:
            client.close()  # the gateway is down: the client sees the connection drop
            return
        upstream.settimeout(None)
        threading.Thread(target=pipe, args=(upstream, client, self.chunk), daemon=True).start()
        pipe(client, upstream, self.chunk, self._slowly if slow else None)

    def _slowly(self, sent: int) -> None:
        if sent >= self.trigger_bytes:
            self.forwarded.set()
        time.sleep(self.pause)

    def close(self):
        self._closing = True
        self.listener.close()


def _upload_in_background(client: UploadClient, index: int, data: bytes, shards: int) -> dict:
    outcome: dict = {}

    def run():
        try:
            outcome["answer"] = client.upload("LoadTest", index, f"shard-{index}.json", data, meta(shards))
        except Exception as exc:  # pragma: no cover - reported by the test
            outcome["error"] = exc

    outcome["thread"] = threading.Thread(target=run, daemon=True)
    outcome["thread"].start()
    return outcome


def assert_stored_exactly_once(gateway, run_id: str, documents: list[bytes], number: int = 1) -> None:
    record = stored(gateway, run_id)
    assert [(d["name"], d["sha256"]) for d in record["documents"]] == [
        (f"shard-{i}.json", hashlib.sha256(d).hexdigest()) for i, d in enumerate(documents)
    ]
    assert (record["run"]["state"], record["run"]["shardsReceived"]) == ("succeeded", len(documents))
    assert [(a["kind"], a["number"]) for a in record["archives"]] == [("report", number), ("result", number)]
    with gateway.open_store() as store:
        for kind in ("result", "report"):
            # Exactly one number was ever allocated for this run's archives.
            assert store.key_for_number(PROJECT, archive_counter(kind, LOADTEST_UID), number) == run_id
            assert store.key_for_number(PROJECT, archive_counter(kind, LOADTEST_UID), number + 1) is None
        assert len(store.list_documents(run_id)) == len(documents)
    # The shard documents and the two archives, nothing else (a write the kill interrupted may
    # leave a `.tmp-*` file on the volume, which the store sweeps an hour later).
    keys = [key for key in gateway.stored_keys(f"runs/{run_id}/*") if "/.tmp-" not in key]
    assert len(keys) == len(documents) + 2, keys


def test_killing_the_gateway_mid_upload_loses_nothing_and_the_retry_stores_it_exactly_once(gateway):
    run_id = "checkout-ffff6666"
    documents = shard_documents(run_id, pad=8 << 20)  # 8 MiB bodies: seconds through the slow proxy
    client = UploadClient(gateway.url, run_id, token_for(gateway, run_id), retry_for=120)
    client.upload("LoadTest", 0, "shard-0.json", documents[0], meta())

    proxy = SlowProxy(gateway.port, trigger_bytes=1 << 20)
    try:
        slow_client = UploadClient(proxy.url, run_id, token_for(gateway, run_id), retry_for=120)
        outcome = _upload_in_background(slow_client, 1, documents[1], 2)
        assert proxy.forwarded.wait(30), "the upload never started"
        gateway.kill()  # SIGKILL with a megabyte of the last shard received
        assert stored_nothing_yet(gateway, run_id, documents)
        time.sleep(1.0)  # the client's retries meet a dead gateway for a while
        gateway.start()
        outcome["thread"].join(150)
        assert "error" not in outcome, outcome.get("error")
        assert outcome["answer"]["created"] is True  # the killed attempt had stored nothing
        assert proxy.connections >= 2
    finally:
        proxy.close()
    assert_stored_exactly_once(gateway, run_id, documents)


def stored_nothing_yet(gateway, run_id: str, documents: list[bytes]) -> bool:
    """With the gateway dead, the store on disk holds the first shard only."""
    with gateway.open_store() as store:
        return [d.name for d in store.list_documents(run_id)] == ["shard-0.json"] and store.list_archives(
            run_id=run_id
        ) == []


def test_killing_the_gateway_as_the_last_shard_arrives_still_builds_the_archives_once(gateway):
    # The kill lands somewhere between "body received" and "answer sent": before the store,
    # between the document and the archives, or after; the retry (or the restarted gateway's
    # recovery) must end in the same single record every time.
    for attempt in range(3):
        run_id = f"checkout-{attempt}aaa7777"
        documents = shard_documents(run_id, seed=10 + attempt, pad=256 << 10)
        client = UploadClient(gateway.url, run_id, token_for(gateway, run_id), retry_for=120)
        client.upload("LoadTest", 0, "shard-0.json", documents[0], meta())
        proxy = SlowProxy(gateway.port, trigger_bytes=len(documents[1]), pause=0.0)
        try:
            slow_client = UploadClient(proxy.url, run_id, token_for(gateway, run_id), retry_for=120)
            outcome = _upload_in_background(slow_client, 1, documents[1], 2)
            assert proxy.forwarded.wait(30)
            time.sleep(0.05 * attempt)
            gateway.kill()
            gateway.start()
            outcome["thread"].join(150)
            assert "error" not in outcome, outcome.get("error")
        finally:
            proxy.close()
        assert_stored_exactly_once(gateway, run_id, documents, number=attempt + 1)
