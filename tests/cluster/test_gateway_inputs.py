"""Careless and hostile input against the real gateway process: bodies far over their limit,
declared or chunked, bodies that trickle or stop half-way, JSON nested too deep, dates out of
range. Each is refused quickly with a 4xx in the API family's own error shape; none is read
into memory, holds a worker, or costs a traceback."""

from __future__ import annotations

import hashlib
import json
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from assay.crds.contracts.upload import RunGrant, document_path, idempotency_key, upload_token
from tests.conftest import GatewayProcess, OperatorProcess
from tests.support.credentials import bearer, create_credential, make_namespace, request_token

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

MiB = 1024 * 1024
HUGE = 400 * 1000 * 1000
BODY_TIMEOUT_SECONDS = 2
UPLOAD_MAX_BYTES = 4 * MiB


class TunedGateway(GatewayProcess):
    """The real gateway with a short body deadline and a small upload limit, so tests can reach both."""

    @property
    def env(self) -> dict[str, str]:
        return {
            **super().env,
            "ASSAY_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT_SECONDS),
            "ASSAY_UPLOAD_MAX_BYTES": str(UPLOAD_MAX_BYTES),
        }


@pytest.fixture
def gateway(cluster, tmp_path: Path):
    proc = TunedGateway(cluster, tmp_path / "store", tmp_path / "gateway.log").start()
    yield proc
    proc.stop()
    print(proc.log()[-4000:], file=sys.stderr)


def peak_rss_bytes(pid: int) -> int:
    """The process's peak resident set size so far (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


# --- raw HTTP, so a body can be declared huge, chunked without end, trickled or cut off -------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float
    sent: int

    def json(self):
        return json.loads(self.body)


def read_answer(sock: socket.socket, timeout: float) -> tuple[int, dict[str, str], bytes]:
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"the gateway closed the connection without an answer: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    while len(body) < int(headers.get("content-length", "0")):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(status_line.split()[1]), headers, body


def post(
    port: int, path: str, headers: dict[str, str], body_chunks, *, method: str = "POST", timeout: float = 30
) -> Answer:
    """Send the request head, then `body_chunks` (each one `send`) from another thread until they run
    out or the gateway hangs up, while this thread waits for the answer."""
    sock = socket.create_connection(("127.0.0.1", port))
    head = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", *(f"{k}: {v}" for k, v in headers.items())]
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
    sent = 0
    started = time.monotonic()

    def send_body():
        nonlocal sent
        try:
            for chunk in body_chunks:
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass  # the gateway hung up: what the test wants

    sender = threading.Thread(target=send_body, daemon=True)
    sender.start()
    try:
        status, answer_headers, body = read_answer(sock, timeout)
        seconds = time.monotonic() - started
        sender.join(timeout)
        return Answer(status, answer_headers, body, seconds, sent)
    finally:
        sock.close()


def declared(total: int, chunk: int = MiB):
    """A body as large as its Content-Length says, sent in 1 MiB pieces."""
    piece = b"a" * chunk
    for _ in range(total // chunk):
        yield piece


def chunked(total: int, chunk: int = MiB):
    """Transfer-Encoding: chunked framing of `total` bytes, never finished before the gateway answers."""
    piece = f"{chunk:x}\r\n".encode() + b"a" * chunk + b"\r\n"
    for _ in range(total // chunk):
        yield piece
    yield b"0\r\n\r\n"


def trickle(total: int, every: float):
    for _ in range(total):
        time.sleep(every)
        yield b"a"


def runscope_error(answer: Answer, status: int, code: str) -> None:
    assert answer.status == status, (answer.status, answer.body)
    assert answer.json() == {
        "data": None,
        "meta": {"status": "error"},
        "error": {"status": status, "code": code, "message": answer.json()["error"]["message"]},
    }


# --- bodies over their limit ------------------------------------------------------------------------


def test_huge_anonymous_bodies_are_refused_before_they_are_read(gateway):
    """Two 400 MB posts at once to the trigger URL and to the dashboard's sign-in, and one chunked
    post streaming on and on to each: all refused in seconds, and the process never holds them."""
    before = peak_rss_bytes(gateway.proc.pid)
    targets = {
        "/radar/no-such-trigger/trigger": {"Content-Type": "application/json"},
        "/dashboard/login": {"Content-Type": "application/x-www-form-urlencoded"},
    }
    attacks = []
    for path, headers in targets.items():
        attacks += [(path, {**headers, "Content-Length": str(HUGE)}, declared(HUGE)) for _ in range(2)]
        attacks.append((path, {**headers, "Transfer-Encoding": "chunked"}, chunked(HUGE)))
    answers: list[Answer | None] = [None] * len(attacks)

    def attack(i: int) -> None:
        path, headers, body = attacks[i]
        answers[i] = post(gateway.port, path, headers, body)

    threads = [threading.Thread(target=attack, args=(i,)) for i in range(len(attacks))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    for (path, _, _), answer in zip(attacks, answers):
        assert answer is not None, path
        assert answer.status == 413 and answer.seconds < 10, (path, answer.status, answer.seconds, answer.body[:300])
        assert answer.headers.get("connection") == "close"
        assert answer.sent < 64 * MiB, (path, answer.sent)
        if path.startswith("/radar/"):
            runscope_error(answer, 413, "too_large")
        else:  # the dashboard's sign-in answers with its own error page
            assert answer.headers["content-type"].startswith("text/html") and b"413" in answer.body
    peak = peak_rss_bytes(gateway.proc.pid)
    grown = peak - before
    assert grown < 32 * MiB and peak < HUGE, f"the gateway's peak RSS grew by {grown / MiB:.1f} MiB"
    print(
        f"peak RSS before {before / MiB:.1f} MiB, grown by {grown / MiB:.1f} MiB; answers in "
        f"{max(a.seconds for a in answers):.2f} s at most; at most {max(a.sent for a in answers) / MiB:.1f} MiB "
        f"sent of {HUGE / MiB:.0f} MiB",
        file=sys.stderr,
    )


def test_a_trickling_body_is_cut_off_at_its_deadline(gateway):
    started = time.monotonic()
    answer = post(
        gateway.port,
        "/radar/no-such-trigger/trigger",
        {"Content-Type": "application/json", "Content-Length": "1000"},
        trickle(1000, every=0.2),
    )
    runscope_error(answer, 408, "request_timeout")
    assert BODY_TIMEOUT_SECONDS <= answer.seconds < BODY_TIMEOUT_SECONDS + 3
    assert answer.headers.get("connection") == "close"
    assert answer.sent < 30
    # The same without a Content-Length: chunks of one byte.
    answer = post(
        gateway.port,
        "/oauth/token",
        {"Content-Type": "application/x-www-form-urlencoded", "Transfer-Encoding": "chunked"},
        (b"1\r\n" + piece + b"\r\n" for piece in trickle(1000, every=0.2)),
    )
    assert answer.status == 408 and answer.json()["error"] == "request_timeout", answer.body
    assert time.monotonic() - started < 2 * BODY_TIMEOUT_SECONDS + 6


def test_result_uploads_keep_their_own_larger_limit(gateway):
    run_id = "limits-1a2b3c4d"
    name = "result.json"

    def headers(data: bytes, name: str = name) -> dict[str, str]:
        sha = hashlib.sha256(data).hexdigest()
        grant = RunGrant("shop", "TestSuite", "checkout", "uid-1", run_id)
        return {
            "Authorization": f"Bearer {upload_token(gateway.UPLOAD_KEY, grant)}",
            "X-Assay-Content-SHA256": sha,
            "Idempotency-Key": idempotency_key(run_id, name, sha),
            "X-Assay-Kind": "TestSuite",
            "X-Assay-Project": "shop",
            "X-Assay-Owner-Name": "checkout",
            "X-Assay-Owner-Uid": "uid-1",
        }

    # Over the gateway's 1 MiB default, under the upload limit: stored.
    data = json.dumps({"pad": "x" * (3 * MiB)}).encode()
    stored = httpx.put(gateway.url + document_path(run_id, name), content=data, headers=headers(data), timeout=30)
    assert stored.status_code == 201, stored.text

    # Over the upload limit, declared: refused before it is read, in the default shape.
    answer = post(
        gateway.port,
        document_path(run_id, "big.json"),
        {**headers(b"big", "big.json"), "Content-Length": str(HUGE)},
        declared(HUGE),
        method="PUT",
    )
    assert (answer.status, answer.json()["error"]) == (413, "too_large") and answer.sent < 64 * MiB
    # And chunked.
    answer = post(
        gateway.port,
        document_path(run_id, "big.json"),
        {**headers(b"big", "big.json"), "Transfer-Encoding": "chunked"},
        chunked(HUGE),
        method="PUT",
    )
    assert (answer.status, answer.json()["error"]) == (413, "too_large") and answer.sent < 64 * MiB

    # A document name with a trailing newline is not a file name.
    odd = httpx.put(
        gateway.url + document_path(run_id, "x.json") + "%0A",
        content=b"{}",
        headers=headers(b"{}", "x.json\n"),
        timeout=10,
    )
    assert (odd.status_code, odd.json()["error"]) == (400, "invalid_request"), odd.text


def test_an_aborted_body_is_one_log_line_and_no_traceback(gateway):
    run_id = "aborted-1a2b3c4d"
    token = upload_token(gateway.UPLOAD_KEY, RunGrant("shop", "LoadTest", "checkout", "uid-1", run_id))
    aborted = [
        ("POST", "/radar/no-such-trigger/trigger", {"Content-Type": "application/json"}),
        ("POST", "/oauth/token", {"Content-Type": "application/x-www-form-urlencoded"}),
        (
            "PUT",
            document_path(run_id, "shard-0.json"),
            {
                "Authorization": f"Bearer {token}",
                "X-Assay-Content-SHA256": "0" * 64,
                "X-Assay-Kind": "LoadTest",
                "X-Assay-Project": "shop",
            },
        ),
    ]
    for method, path, headers in aborted:
        with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
            head = [
                f"{method} {path} HTTP/1.1",
                f"Host: 127.0.0.1:{gateway.port}",
                "Content-Length: 5000",
                *(f"{k}: {v}" for k, v in headers.items()),
            ]
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + b"a" * 100)
            time.sleep(0.3)
    deadline = time.monotonic() + 10
    while gateway.log().count("request body aborted") < len(aborted) and time.monotonic() < deadline:
        time.sleep(0.2)
    log = gateway.log()
    lines = [json.loads(line) for line in log.splitlines() if "request body aborted" in line]
    assert sorted(line["path"] for line in lines) == sorted(path for _, path, _ in aborted), log[-3000:]
    assert all(line["received"] == 100 for line in lines)
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log[-3000:]
    assert token not in log


def test_deeply_nested_json_from_anonymous_clients_is_a_400_in_each_family(gateway):
    nested = b"[" * 50_000 + b"]" * 50_000
    trigger = httpx.post(
        f"{gateway.url}/radar/no-such-trigger/trigger",
        content=nested,
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    runscope_error(Answer(trigger.status_code, dict(trigger.headers), trigger.content, 0, 0), 400, "invalid_request")
    shallow_enough = b'{"a": ' + b"[" * 100 + b"]" * 100 + b"}"
    trigger = httpx.post(
        f"{gateway.url}/radar/no-such-trigger/trigger",
        content=shallow_enough,
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert trigger.status_code == 400 and "nests deeper" in trigger.json()["error"]["message"]

    token = httpx.post(
        f"{gateway.url}/oauth/token",
        content=b'{"a": ' + b"[" * 20_000 + b"]" * 20_000 + b"}",
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert token.status_code == 400 and token.json()["error"] == "invalid_request", token.text
    assert set(token.json()) == {"error", "error_description"}

    run_id = "nested-1a2b3c4d"
    labels = httpx.put(
        gateway.url + document_path(run_id, "shard-0.json"),
        content=b"{}",
        timeout=10,
        headers={
            "Authorization": f"Bearer {upload_token(gateway.UPLOAD_KEY, RunGrant('shop', 'LoadTest', 'checkout', 'uid-1', run_id))}",
            "X-Assay-Content-SHA256": hashlib.sha256(b"{}").hexdigest(),
            "X-Assay-Labels": "[" * 5000 + "]" * 5000,
        },
    )
    assert (labels.status_code, labels.json()["error"]) == (400, "invalid_request"), labels.text


# --- authenticated Runscope routes: nesting and dates --------------------------------------------------

RUNSCOPE_SCOPES = ("api:read", "test:read", "test:write", "team:read", "bucket:write")


@pytest.fixture
def team(cluster, namespace, gateway, tmp_path):
    """Team (org) `team-<random>` whose bucket is `namespace`, an org credential of it, a token."""
    name = f"team-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("label", "namespace", namespace, f"assay.dev/org={name}")
    admin = make_namespace(cluster, f"{namespace}-admin", {"assay.dev/org-admin": name})
    operator = OperatorProcess(cluster, tmp_path / "operator.log", [namespace, admin], gateway).start()
    client_id, secret = create_credential(
        cluster, admin, "inputs", scopes=RUNSCOPE_SCOPES, level="org", organization=name
    )
    token = request_token(cluster, gateway, client_id, secret, RUNSCOPE_SCOPES)
    yield {"name": name, "bucket": namespace, "auth": bearer(token)}
    operator.stop()
    cluster.kubectl("delete", "namespace", admin, "--wait=false", check=False)


def as_answer(response: httpx.Response) -> Answer:
    return Answer(response.status_code, dict(response.headers), response.content, 0, 0)


def test_nested_bodies_and_out_of_range_dates_are_runscope_400s(gateway, team):
    api, auth = gateway.url, team["auth"]
    deep = json.dumps({"name": "deep", "description": "x", "role_id": json.loads("[" * 500 + "]" * 500)})
    deepest = "[" * 50_000 + "]" * 50_000
    for body in (deep, deepest):
        people = httpx.put(f"{api}/teams/{team['name']}/people", content=body, headers=auth, timeout=10)
        runscope_error(as_answer(people), 400, "invalid_request")
        created = httpx.post(
            f"{api}/buckets/{team['bucket']}/tests",
            content=body,
            timeout=10,
            headers={**auth, "Content-Type": "application/json"},
        )
        assert created.status_code == 400 and created.json()["error"]["status"] == 400, created.text
        if body is deep:
            assert "nests deeper than 64 levels" in created.json()["error"]["message"]

    test = httpx.post(f"{api}/buckets/{team['bucket']}/tests", json={"name": "dates"}, headers=auth, timeout=10)
    assert test.status_code == 201, test.text
    results = f"{api}/buckets/{team['bucket']}/tests/{test.json()['data']['id']}/results"
    for query in (
        {"since": "99999999999999"},
        {"before": "-99999999999999"},
        {"since": "1e308"},
        {"since": "nan"},
        {"before": "inf"},
    ):
        answer = httpx.get(results, params=query, headers=auth, timeout=10)
        assert answer.status_code in (200, 400), (query, answer.text)
        if answer.status_code == 400:
            runscope_error(as_answer(answer), 400, "invalid_request")
        else:
            assert answer.json()["data"] == []
    for where in (f"/buckets/{team['bucket']}/requests", f"/teams/{team['name']}/requests"):
        for query in (
            {"days": "99999999999"},
            {"days": "9999999"},
            {"from": "0001-01-01", "to": "9999-12-31"},
            {"date": "0001-01-01"},
            {"from": "9999-12-31", "to": "9999-12-31"},
        ):
            answer = httpx.get(api + where, params=query, headers=auth, timeout=10)
            assert answer.status_code in (200, 400), (where, query, answer.text)
            if answer.status_code == 400:
                runscope_error(as_answer(answer), 400, "invalid_request")
