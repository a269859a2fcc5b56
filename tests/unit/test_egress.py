"""The egress policy: what it denies by default, how an allow-list opens it, and that real
connections are checked on the resolved address, for every hop, with nothing sent when denied."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from assay.api.services.openapi_inspector import InspectionInputError, fetch_document
from assay.api.services.outbound import Outbound, OutboundBusy
from assay.runner import egress
from assay.runner.egress import EgressDenied, EgressPolicy, Rule
from tests.support.targets import CountingTarget

DEFAULT = EgressPolicy()


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.9.9.9",
        "::1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "fd00::1",
        "fe80::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "64:ff9b::a9fe:a9fe",
        "255.255.255.255",
        "198.18.0.1",
    ],
)
def test_addresses_that_are_not_public_are_denied_by_default(address):
    assert not DEFAULT.permits(address, 80)


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "8.8.8.8"])
def test_public_addresses_are_allowed_by_default(address):
    assert DEFAULT.permits(address, 443)


def test_the_allow_list_opens_ranges_and_ports_and_the_deny_list_wins():
    policy = EgressPolicy.parse(allow="127.0.0.1:30000-40000, 10.0.0.0/8 [::1]:8080", deny="10.96.0.0/12, 8.8.8.8")
    assert policy.permits("127.0.0.1", 30000) and policy.permits("127.0.0.1", 40000)
    assert not policy.permits("127.0.0.1", 2379) and not policy.permits("127.0.0.1", 40001)
    assert policy.permits("10.1.2.3", 5432) and not policy.permits("10.96.0.1", 443)
    assert policy.permits("::1", 8080) and not policy.permits("::1", 8081)
    assert not policy.permits("8.8.8.8", 53)
    assert (
        EgressPolicy.from_env(
            {
                "ASSAY_EGRESS_ALLOW": "127.0.0.1:30000-40000, 10.0.0.0/8 [::1]:8080",
                "ASSAY_EGRESS_DENY": "10.96.0.0/12, 8.8.8.8",
            }
        )
        == policy
    )


@pytest.mark.parametrize("entry", ["localhost", "10.0.0.0/33", "127.0.0.1:0", "127.0.0.1:9-8", "[::1", "1.2.3.4:x"])
def test_bad_entries_are_refused_with_the_format(entry):
    with pytest.raises(ValueError, match="ADDRESS"):
        Rule.parse(entry)


def test_a_denied_connection_sends_nothing_and_a_host_name_is_checked_once_resolved():
    with CountingTarget() as target:
        port = target.port
        for url in (target.url, f"http://localhost:{port}/", f"http://[::ffff:127.0.0.1]:{port}/"):
            with egress.client(DEFAULT) as client, pytest.raises(EgressDenied):
                client.get(url)
        assert target.total == 0
        with egress.client(EgressPolicy.parse(allow=f"127.0.0.1:{port}")) as client:
            assert client.get(f"http://localhost:{port}/").status_code == 200
        assert target.total == 1


def test_the_async_client_checks_too_and_ignores_proxy_settings(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # would be used if the environment were trusted
    with CountingTarget() as target:
        port = target.port

        async def fetch(policy):
            async with egress.async_client(policy) as client:
                return (await client.get(target.url)).status_code

        with pytest.raises(EgressDenied):
            asyncio.run(fetch(DEFAULT))
        assert target.total == 0
        assert asyncio.run(fetch(EgressPolicy.parse(allow=f"127.0.0.1:{port}"))) == 200


def test_a_redirect_to_a_denied_address_is_refused_at_its_hop():
    """An allowed server that redirects to one the policy denies (the etcd-behind-a-redirect trick)."""
    with CountingTarget() as denied, socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        allowed_port = listener.getsockname()[1]
        denied_port = denied.port

        def redirect_once():
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(
                    b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:%d/v3/kv/range\r\n"
                    b"Content-Length: 0\r\nConnection: close\r\n\r\n" % denied_port
                )

        async def inspect():
            outbound = Outbound(
                EgressPolicy.parse(allow=f"127.0.0.1:{allowed_port}"), per_tenant=2, deadline_seconds=10
            )
            try:
                server = asyncio.get_running_loop().run_in_executor(None, redirect_once)
                with pytest.raises(InspectionInputError, match="may not reach"):
                    async with outbound.slot("t"):
                        await fetch_document(f"http://127.0.0.1:{allowed_port}/openapi.json", outbound)
                await server
            finally:
                await outbound.aclose()

        asyncio.run(inspect())
        assert denied.total == 0


def test_one_tenant_holds_at_most_its_own_slots():
    async def scenario():
        outbound = Outbound(DEFAULT, per_tenant=2, deadline_seconds=0.5)
        try:
            async with outbound.slot("a"), outbound.slot("a"):
                with pytest.raises(OutboundBusy):
                    async with outbound.slot("a"):
                        pass
                async with outbound.slot("b"):  # another tenant is not held up
                    pass
            async with outbound.slot("a"):  # released
                pass
            with pytest.raises(TimeoutError):
                async with outbound.slot("a"):
                    await asyncio.sleep(10)
        finally:
            await outbound.aclose()

    asyncio.run(asyncio.wait_for(scenario(), 30))
    assert isinstance(EgressDenied("h", 1), httpx.ConnectError)


def test_runs_obey_the_policy_only_where_the_node_passes_one(monkeypatch):
    """A run pod on a real node has its own network position and gets no policy; the local
    node agent runs pods as host processes and passes the gateway's."""
    from assay.runner.load.client import CONNECT, HttpClient, RequestError

    monkeypatch.delenv("ASSAY_EGRESS_ALLOW", raising=False)
    monkeypatch.delenv("ASSAY_EGRESS_DENY", raising=False)
    assert EgressPolicy.for_runs() is None
    monkeypatch.setenv("ASSAY_EGRESS_ALLOW", "")
    assert EgressPolicy.for_runs() == DEFAULT
    with CountingTarget() as target:

        async def load_request(policy):
            client = HttpClient(policy=policy)
            try:
                return await client.request("GET", target.url + "/")
            finally:
                await client.close()

        with pytest.raises(RequestError) as refused:
            asyncio.run(load_request(DEFAULT))
        assert refused.value.kind == CONNECT and "egress policy" in str(refused.value)
        assert target.total == 0
        port = target.port
        assert asyncio.run(load_request(EgressPolicy.parse(allow=f"127.0.0.1:{port}"))).status == 200
