"""The one loopback HTTP(S) server the test servers are built on.

A `LoopbackServer` is a threaded `http.server` bound to 127.0.0.1 on a free port, serving a
request handler class in the background while used as a context manager. The servers in
tests/support (and a few in test modules) differ only in their handler and what they record.
"""

from __future__ import annotations

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that keeps the access log out of the test output."""

    def log_message(self, *args) -> None:
        pass


class LoopbackServer:
    """`handler` served on 127.0.0.1 (a free port) while the context is open; `url` reaches it.

    With `ssl_context` it speaks TLS only. The handshake runs in the connection's own thread, so
    a client that fails it does not hold up the others; failed handshakes are kept in
    `tls_failures`."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], *, ssl_context: Optional[ssl.SSLContext] = None):
        self.lock = threading.Lock()
        self.tls_failures: list[str] = []
        self.server = _Server(self, handler, ssl_context)
        self.port = self.server.server_address[1]
        self.scheme = "https" if ssl_context else "http"
        self.url = f"{self.scheme}://127.0.0.1:{self.port}"
        # A short poll keeps shutdown() quick; the default half second adds up over a suite.
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, owner: LoopbackServer, handler: type[BaseHTTPRequestHandler], ssl_context: Optional[ssl.SSLContext]
    ):
        self.owner, self.ssl_context = owner, ssl_context
        super().__init__(("127.0.0.1", 0), handler)

    def finish_request(self, request, client_address):
        if self.ssl_context is None:
            return super().finish_request(request, client_address)
        request.settimeout(10)
        try:
            connection = self.ssl_context.wrap_socket(request, server_side=True)
        except OSError as exc:  # ssl.SSLError included: the client failed the handshake
            with self.owner.lock:
                self.owner.tls_failures.append(str(exc))
            return
        try:
            super().finish_request(connection, client_address)
        finally:
            connection.close()

    def handle_error(self, request, client_address):
        pass  # a client hanging up mid-request is not the test's business
