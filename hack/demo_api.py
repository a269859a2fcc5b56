"""A small demo API for `make demo`: JSON items, a health check, and a request counter.

    python hack/demo_api.py [--port 8080]

GET /stats tells how many requests each path received, so a load test's counts can be
checked against what the target saw."""

from __future__ import annotations

import argparse
import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ITEMS = [{"id": i, "name": f"item {i}", "price": round(9.99 * i, 2)} for i in range(1, 6)]
counts: Counter[str] = Counter()
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, the client's delayed ACK
    # would add ~40 ms to every response.
    disable_nagle_algorithm = True

    def _send(self, status: int, payload) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path = self.path.split("?")[0]
        if path != "/stats":
            with lock:
                counts[f"{self.command} {path}"] += 1
        if path == "/health":
            self._send(200, {"status": "ok"})
        elif path == "/items":
            self._send(200, {"items": ITEMS})
        elif path.startswith("/items/") and path[7:].isdigit() and 1 <= int(path[7:]) <= len(ITEMS):
            self._send(200, ITEMS[int(path[7:]) - 1])
        elif path == "/stats":
            with lock:
                self._send(200, {"requests": dict(counts), "total": sum(counts.values())})
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        with lock:
            counts[f"POST {self.path}"] += 1
        try:
            item = json.loads(raw or b"{}")
        except ValueError:
            self._send(400, {"error": "body is not JSON"})
            return
        self._send(201, {"id": len(ITEMS) + 1, **item})

    def log_message(self, *args):
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"demo-api: listening on http://127.0.0.1:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
