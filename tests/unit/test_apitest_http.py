"""Sending requests and recording exchanges against a real loopback server: timings, errors."""

import asyncio
import json
import socket

import httpx
import pytest

from assay.runner.apitest.http import TIMING_KEYS, Exchange, make_client, send
from tests.support.http_targets import HttpTarget


@pytest.fixture(scope="module")
def target():
    with HttpTarget() as target:
        yield target


def run(coro):
    return asyncio.run(coro)


async def _send(**kwargs):
    async with make_client() as client:
        return await send(client, **kwargs)


def test_a_fresh_connection_has_every_timing_and_they_add_up(target):
    exchange = run(_send(method="GET", url=f"{target.url}/json"))
    assert exchange.error is None and exchange.status == 200
    assert set(exchange.timings) == set(TIMING_KEYS)
    assert all(value >= 0 for value in exchange.timings.values())
    assert exchange.timings["dns_lookup_ms"] == 0  # an IP literal needs no lookup
    assert exchange.timings["dial_ms"] > 0 and exchange.timings["wait_for_response_ms"] > 0
    assert sum(exchange.timings.values()) <= exchange.response_time_ms


def test_host_names_are_resolved_and_timed(target):
    exchange = run(_send(method="GET", url=f"http://localhost:{target.port}/json"))
    if exchange.error and "refused" in exchange.error:  # localhost resolving to ::1 only
        pytest.skip("localhost does not reach 127.0.0.1 here")
    assert exchange.status == 200 and exchange.timings["dns_lookup_ms"] > 0


def test_a_reused_connection_spends_nothing_on_dns_or_dial(target):
    async def twice():
        async with make_client() as client:
            await send(client, "GET", f"{target.url}/json")
            return await send(client, "GET", f"{target.url}/json")

    second = run(twice())
    assert second.timings["dial_ms"] == 0 and second.timings["dns_lookup_ms"] == 0
    assert second.timings["wait_for_response_ms"] > 0


def test_the_request_is_recorded_as_sent(target):
    exchange = run(
        _send(
            method="POST",
            url=f"{target.url}/echo?a=1&a=2",
            headers=[("X-Trace", "one"), ("X-Trace", "two"), ("Content-Type", "text/plain")],
            content="hello",
        )
    )
    echoed = json.loads(exchange.body)
    assert echoed["method"] == "POST" and echoed["query"] == {"a": ["1", "2"]} and echoed["body"] == "hello"
    assert ("X-Trace", "one") in exchange.request_headers and ("X-Trace", "two") in exchange.request_headers
    assert exchange.request_body == b"hello" and exchange.method == "POST"
    assert exchange.header("content-type") == "application/json" and exchange.size == len(exchange.body)


def test_forms_with_repeated_fields(target):
    exchange = run(_send(method="POST", url=f"{target.url}/echo", form={"tag": ["a", "b"], "name": "x y"}))
    assert json.loads(exchange.body)["body"] == "tag=a&tag=b&name=x+y"


def test_a_prebuilt_request_is_sent_as_it_is(target):
    async def prebuilt():
        async with make_client() as client:
            request = client.build_request("PUT", f"{target.url}/echo", headers={"X-Signed": "yes"}, content=b"{}")
            return await send(client, request=request)

    exchange = run(prebuilt())
    assert exchange.method == "PUT" and json.loads(exchange.body)["headers"]["X-Signed"] == "yes"


def test_redirects_are_not_followed(target):
    exchange = run(_send(method="GET", url=f"{target.url}/redirect?to=/json"))
    assert exchange.status == 302 and exchange.header("Location") == "/json"


def test_binary_bodies_are_kept_as_bytes(target):
    exchange = run(_send(method="GET", url=f"{target.url}/binary"))
    assert exchange.body.startswith(b"\x89PNG") and exchange.header("content-type") == "image/png"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_refused_connection_is_an_exchange_with_the_error():
    exchange = run(_send(method="GET", url=f"http://127.0.0.1:{_closed_port()}/"))
    assert exchange.status is None and exchange.error.startswith("connection refused")
    assert not exchange.ok and all(v >= 0 for v in exchange.timings.values())


def test_a_timeout_is_an_exchange_with_the_error(target):
    exchange = run(_send(method="GET", url=f"{target.url}/slow?ms=1500", timeout=0.2))
    assert exchange.status is None and exchange.error.startswith("read timeout")
    assert 150 <= exchange.response_time_ms < 1400


def test_a_bad_url_or_host_is_an_exchange_with_the_error():
    assert run(_send(method="GET", url="not a url")).error.startswith("invalid URL")
    assert run(_send(method="GET", url="ftp://127.0.0.1/x")).error.startswith("invalid URL")
    unknown = run(_send(method="GET", url="http://no-such-host.invalid/"))
    assert unknown.status is None and "DNS lookup of no-such-host.invalid failed" in unknown.error


def test_a_tls_failure_is_an_exchange_with_the_error(target):
    # A TLS handshake against a plain-HTTP server fails the same way a bad certificate does.
    exchange = run(_send(method="GET", url=f"https://127.0.0.1:{target.port}/json", timeout=5))
    assert exchange.status is None and exchange.error.startswith("TLS error: ")


def test_clients_made_elsewhere_work_too(target):
    async def plain():
        async with httpx.AsyncClient() as client:
            return await send(client, "GET", f"{target.url}/json")

    exchange = run(plain())
    assert exchange.status == 200 and exchange.timings["dns_lookup_ms"] == 0


def test_exchanges_made_from_documents_read_like_responses():
    exchange = Exchange.from_json({"result": "pass"}, status=200)
    assert exchange.json() == {"result": "pass"} and exchange.header("Content-Type") == "application/json"
