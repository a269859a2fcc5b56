"""The load engine's HTTP client against real loopback servers, on asyncio's and uvloop's loops."""

from __future__ import annotations

import asyncio
import ssl
import time

import pytest

from assay.runner.load.client import HttpClient, RequestError, prepare
from tests.unit.test_load_servers import LoadTarget, RawTarget, self_signed_cert


def _uvloop():
    import uvloop

    return uvloop.new_event_loop()


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request):
    factory = asyncio.new_event_loop if request.param == "asyncio" else _uvloop

    def run(coro):
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(coro)

    return run


def test_sequential_requests_reuse_one_keep_alive_connection(run):
    async def go():
        client = HttpClient()
        statuses = [(await client.request("GET", f"{target.url}/a/{i}")).status for i in range(50)]
        await client.close()
        return statuses, client.connections_opened

    with LoadTarget() as target:
        statuses, opened = run(go())
    assert statuses == [200] * 50
    assert target.connections == 1 and opened == 1
    assert target.total == 50


def test_concurrent_users_use_at_most_one_connection_each(run):
    async def user(client, n):
        for i in range(20):
            response = await client.request("GET", f"{target.url}/u{n}/{i}")
            assert response.status == 200 and response.body == b'{"ok": true}'

    async def go():
        client = HttpClient()
        await asyncio.gather(*(user(client, n) for n in range(5)))
        await client.close()

    with LoadTarget() as target:
        run(go())
    assert target.total == 100
    assert 1 <= target.connections <= 5


def test_chunked_bodies_are_reassembled_and_the_connection_reused(run):
    payload = bytes(range(256)) * 40  # 10 kB in 7-byte chunks

    async def go():
        client = HttpClient()
        responses = [await client.request("GET", f"{target.url}/c") for _ in range(3)]
        await client.close()
        return responses

    with LoadTarget(chunked=True, body=payload) as target:
        responses = run(go())
    assert all(r.status == 200 and r.body == payload for r in responses)
    assert responses[0].header("transfer-encoding") == "chunked"
    assert responses[0].bytes_received > len(payload)
    assert target.connections == 1


def test_connection_close_answers_open_a_new_connection_each_time(run):
    async def go():
        client = HttpClient()
        statuses = [(await client.request("GET", f"{target.url}/x")).status for _ in range(5)]
        await asyncio.sleep(0.05)
        open_after = client.open_connections
        await client.close()
        return statuses, open_after

    with LoadTarget(close=True) as target:
        statuses, open_after = run(go())
    assert statuses == [200] * 5
    assert target.connections == 5 and open_after == 0


def test_a_body_framed_by_the_end_of_the_connection_is_complete(run):
    raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it, until close"
    with RawTarget(raw) as target:
        response = run(HttpClient().request("GET", target.url + "/"))
    assert response.status == 200 and response.body == b"all of it, until close"


def test_a_response_cut_short_is_an_other_error(run):
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part"
    with RawTarget(raw) as target:
        with pytest.raises(RequestError) as caught:
            run(HttpClient().request("GET", target.url + "/"))
    assert caught.value.kind == "other"


def test_a_server_that_hangs_up_without_answering_is_an_other_error(run):
    with RawTarget(None) as target:
        with pytest.raises(RequestError) as caught:
            run(HttpClient().request("GET", target.url + "/"))
    assert caught.value.kind == "other"


def test_keep_alive_connection_closed_by_the_server_is_replaced(run):
    # The server answers as if keep-alive, then closes: the next request must still work.
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    async def go():
        client = HttpClient()
        first = await client.request("GET", target.url + "/1")
        second = await client.request("GET", target.url + "/2")  # may race the close: resent
        await asyncio.sleep(0.05)
        third = await client.request("GET", target.url + "/3")  # the close is seen by now
        await client.close()
        return [first.body, second.body, third.body]

    with RawTarget(raw) as target:
        assert run(go()) == [b"ok"] * 3
    assert target.connections == 3


def test_head_204_and_304_have_no_body_and_keep_the_connection(run):
    def status(method, path, body):
        return {"/none": 204, "/same": 304}.get(path, 200)

    async def go():
        client = HttpClient()
        head = await client.request("HEAD", target.url + "/page")
        no_content = await client.request("GET", target.url + "/none")
        not_modified = await client.request("GET", target.url + "/same")
        after = await client.request("GET", target.url + "/page")
        await client.close()
        return head, no_content, not_modified, after

    with LoadTarget(status=status, body=b"x" * 1000) as target:
        head, no_content, not_modified, after = run(go())
    assert (head.status, head.body, head.header("content-length")) == (200, b"", "1000")
    assert (no_content.status, no_content.body) == (204, b"")
    assert (not_modified.status, not_modified.body) == (304, b"")
    assert after.body == b"x" * 1000
    assert target.connections == 1


def test_request_bodies_and_headers_arrive_intact(run):
    async def go():
        client = HttpClient()
        response = await client.request("POST", target.url + "/p", headers={"X-Test": "yes"}, body='{"name": "Zoë"}')
        empty = await client.request("POST", target.url + "/p")
        await client.close()
        return response, empty

    with LoadTarget() as target:
        response, empty = run(go())
    assert response.status == 200 and empty.status == 200
    assert target.bodies == ['{"name": "Zoë"}'.encode(), b""]


def test_a_slow_answer_times_out(run):
    async def go():
        client = HttpClient()
        started = time.perf_counter()
        try:
            await client.request("GET", target.url + "/slow", timeout=0.2)
        except RequestError as exc:
            return exc, time.perf_counter() - started
        finally:
            await client.close()

    with LoadTarget(delay=1.0) as target:
        error, elapsed = run(go())
    assert error.kind == "timeout"
    assert 0.18 <= elapsed < 0.9  # before the answer would have come, with room for a busy machine


def test_a_refused_connection_is_a_connect_error(run):
    with pytest.raises(RequestError) as caught:
        run(HttpClient().request("GET", "http://127.0.0.1:9/"))
    assert caught.value.kind == "connect"
    assert "127.0.0.1:9" in str(caught.value)


def test_error_statuses_are_returned_for_the_caller_to_classify(run):
    with LoadTarget(status=503) as target:
        response = run(HttpClient().request("GET", target.url + "/"))
    assert response.status == 503


def test_tls_verifies_certificates_unless_told_not_to(run, tmp_path):
    cert, key = self_signed_cert(tmp_path)
    trusting = ssl.create_default_context(cafile=str(cert))

    async def get(client, path):
        try:
            return (await client.request("GET", target.url + path)).status
        finally:
            await client.close()

    with LoadTarget(tls=(cert, key)) as target:
        with pytest.raises(RequestError) as caught:
            run(get(HttpClient(), "/verified"))
        assert caught.value.kind == "connect" and "TLS" in str(caught.value)
        assert run(get(HttpClient(verify_tls=False), "/unverified")) == 200
        assert run(get(HttpClient(ssl_context=trusting), "/trusted")) == 200

        # Keep-alive over TLS too.
        async def many():
            client = HttpClient(ssl_context=trusting)
            for _ in range(10):
                assert (await client.request("GET", target.url + "/again")).status == 200
            await client.close()

        before = target.connections
        run(many())
        assert target.connections - before == 1
    assert target.counts[("GET", "/unverified")] == 1 and target.counts[("GET", "/trusted")] == 1


def test_prepared_requests_carry_host_length_and_user_headers():
    prepared = prepare("POST", "http://example.test:8080/a b?q=1", {"Content-Type": "text/plain"}, "hi")
    head, _, body = prepared.data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /a%20b?q=1 HTTP/1.1"
    assert "Host: example.test:8080" in lines and "Content-Length: 2" in lines
    assert "Content-Type: text/plain" in lines and body == b"hi"
    assert b"Host: example.test\r\n" in prepare("GET", "http://example.test/").data
    assert b"Content-Length" not in prepare("GET", "http://example.test/").data
    with pytest.raises(ValueError):
        prepare("GET", "ftp://example.test/")


def test_a_connect_that_hangs_is_a_connect_error_after_the_connect_timeout(run):
    import socket

    # A listener whose accept queue is full drops further SYNs: the connect hangs.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        try:
            filler.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(filler)
    time.sleep(0.1)
    try:
        with pytest.raises(RequestError) as by_connect_timeout:
            run(HttpClient(connect_timeout=0.3).request("GET", f"http://127.0.0.1:{port}/", timeout=5))
        with pytest.raises(RequestError) as by_request_timeout:
            run(HttpClient(connect_timeout=5).request("GET", f"http://127.0.0.1:{port}/", timeout=0.3))
    finally:
        for sock in [listener, *fillers]:
            sock.close()
    assert by_connect_timeout.value.kind == "connect" and "timed out after 0.3s" in str(by_connect_timeout.value)
    assert by_request_timeout.value.kind == "timeout"


# An interim 103 first (with an empty line before the answer, which llhttp skips), field
# values with tabs and trailing spaces, names in any case, Set-Cookie repeated.
_FIELDS_HEAD = (
    b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n\r\n"
    b"HTTP/1.1 302 Found\r\nSet-Cookie:\ta=1 \r\nLOCATION:  /next \r\nset-cookie: b=2\r\n"
)
_FIELDS = [(b"Set-Cookie", b"a=1 "), (b"LOCATION", b"/next "), (b"set-cookie", b"b=2")]


@pytest.mark.parametrize(
    "framing, extra, trailers",
    [
        (b"Content-Length: 2\r\n\r\nok", [(b"Content-Length", b"2")], []),
        (
            b"Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-Sum: 7\r\nSet-Cookie: c=3\r\n\r\n",
            [(b"Transfer-Encoding", b"chunked")],
            [(b"X-Sum", b"7"), (b"Set-Cookie", b"c=3")],
        ),
    ],
    ids=["length", "chunked-with-trailers"],
)
@pytest.mark.parametrize("pieces", [False, True], ids=["at-once", "in-pieces"])
def test_header_fields_are_what_llhttp_reads_trailers_included(run, framing, extra, trailers, pieces):
    async def go():
        client = HttpClient()
        first = await client.request("GET", target.url + "/")
        await client.close()
        return first

    raw = _FIELDS_HEAD + framing
    if pieces:
        # The head alone, then the rest cut inside the lines that follow it.
        cut = raw.index(b"\r\n\r\n", len(_FIELDS_HEAD)) + 4
        mid = (cut + 1 + len(raw)) // 2
        raw = [piece for piece in (raw[:cut], raw[cut : cut + 1], raw[cut + 1 : mid], raw[mid:]) if piece]
    with RawTarget(raw) as target:
        response = run(go())
    fields = _FIELDS + extra + trailers
    cookies = ["a=1 ", "b=2"] + [v.decode() for n, v in trailers if n == b"Set-Cookie"]
    # Asked before and after the fields are parsed: the same answers.
    assert (response.status, response.body) == (302, b"ok")
    assert response.set_cookies() == cookies and response.location() == "/next"
    assert response.raw_headers == fields
    assert response.set_cookies() == cookies and response.location() == "/next"
    assert response.header("location") == "/next " and "link" not in response.headers
