"""Real loopback servers for the load engine's tests, and checks that they behave.

`LoadTarget` is a threaded HTTP/1.1 server that counts what it receives (per method and
path, with arrival times) and the connections it accepts. It can answer with a status, after
a delay, with Content-Length or chunked bodies, close every connection, or serve TLS with a
self-signed certificate made with `cryptography`. Other test modules import it as
`tests.unit.test_load_servers`.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Optional

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1 and its key, as PEM files in `folder`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class LoadTarget:
    """A threaded HTTP/1.1 server on 127.0.0.1 that counts requests and connections.

    status   the status of every answer (or a callable (method, path, body) -> status)
    delay    seconds to wait before answering
    body     the response body (bytes), or a callable (method, path, body) -> bytes
    chunked  send the body with chunked transfer encoding, in pieces
    close    answer with `Connection: close` and close every connection
    tls      (cert, key) PEM paths: serve HTTPS
    """

    def __init__(
        self,
        *,
        status: int | Callable = 200,
        delay: float = 0.0,
        body: bytes | Callable = b'{"ok": true}',
        chunked: bool = False,
        close: bool = False,
        tls: Optional[tuple[Path, Path]] = None,
        headers: Optional[dict[str, str]] = None,
    ):
        self.counts: Counter[tuple[str, str]] = Counter()
        self.arrivals: list[float] = []
        self.connections = 0
        self.bodies: list[bytes] = []
        self._lock = threading.Lock()
        target = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # one write for headers, one for the body: no 40 ms stalls

            def setup(self):
                super().setup()
                with target._lock:
                    target.connections += 1

            def _answer(self):
                arrived = time.time()
                length = int(self.headers.get("Content-Length") or 0)
                received = self.rfile.read(length) if length else b""
                with target._lock:
                    target.counts[(self.command, self.path)] += 1
                    target.arrivals.append(arrived)
                    target.bodies.append(received)
                if delay:
                    time.sleep(delay)
                code = status(self.command, self.path, received) if callable(status) else status
                payload = body(self.command, self.path, received) if callable(body) else body
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                if close:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                if chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    if self.command != "HEAD":
                        for i in range(0, len(payload), 7):
                            piece = payload[i : i + 7]
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                            self.wfile.flush()
                        self.wfile.write(b"0\r\n\r\n")
                else:
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD" and code not in (204, 304):
                        self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _answer

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 1024

        self.server = Server(("127.0.0.1", 0), Handler)
        scheme = "http"
        if tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(tls[0]), str(tls[1]))
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.port = self.server.server_address[1]
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())

    def per_second(self, since: float) -> Counter[int]:
        """Arrivals per whole second after `since`."""
        with self._lock:
            return Counter(int(t - since) for t in self.arrivals)

    def __enter__(self) -> LoadTarget:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


class RawTarget:
    """A TCP server that answers every request with fixed bytes, for framings http.server
    cannot produce (a body ended by closing the connection, a server that hangs up); a list
    of pieces is sent piece by piece, 20 ms apart, so that each arrives on its own."""

    def __init__(self, response: bytes | list[bytes] | None, *, close_after: bool = True):
        self.response, self.close_after = response, close_after
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections = 0
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn):
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            if isinstance(self.response, list):
                for piece in self.response:
                    conn.sendall(piece)
                    time.sleep(0.02)
            elif self.response is not None:
                conn.sendall(self.response)
            if self.close_after:
                conn.shutdown(socket.SHUT_WR)

    def __enter__(self) -> RawTarget:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop = True
        self.sock.close()


def json_body(data) -> bytes:
    return json.dumps(data).encode()


# --- the servers do what the other tests rely on ------------------------------------------------


def test_load_target_counts_requests_and_connections():
    import http.client

    with LoadTarget() as target:
        conn = http.client.HTTPConnection("127.0.0.1", target.port)
        for _ in range(3):
            conn.request("GET", "/x")
            assert conn.getresponse().read() == b'{"ok": true}'
        conn.close()
    assert target.counts[("GET", "/x")] == 3 and target.connections == 1


def test_chunked_target_sends_chunks(tmp_path):
    import http.client

    with LoadTarget(chunked=True, body=b"0123456789abcdefghij") as target:
        conn = http.client.HTTPConnection("127.0.0.1", target.port)
        conn.request("GET", "/")
        response = conn.getresponse()
        assert response.getheader("Transfer-Encoding") == "chunked"
        assert response.read() == b"0123456789abcdefghij"
