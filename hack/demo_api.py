"""A small demo API for `make up` and `make demo`: what the manifests in examples/ call.

    python hack/demo_api.py [--port 18080]

    GET  /health, /items, /items/<n>           the LoadTest examples (loadtest-quick.yaml)
    GET  /api/products, /api/products/<n>      loadtest.yaml: browse
    POST /api/cart/items, /api/orders          loadtest.yaml: check out (201, an order's Location)
    POST /api/login -> access_token            the Monitor example (accounts-api)
    GET  /api/account, /api/orders             (Bearer token from /api/login)
    POST /api/users, GET /api/users/<id>       the TestSuite example (user-service)
    GET  /api/admin/report
    POST /hooks/<name>                         a webhook receiver; GET /hooks lists what came
    GET  /stats                                requests received per path

/stats lets the demo check a load test's counts against what the target saw, and /hooks
shows the Monitor's result webhooks arriving."""

from __future__ import annotations

import argparse
import json
import secrets
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ITEMS = [{"id": i, "name": f"item {i}", "price": round(9.99 * i, 2)} for i in range(1, 6)]
ORDERS = [{"id": "o-1", "total": 19.98}, {"id": "o-2", "total": 9.99}]
counts: Counter[str] = Counter()
tokens: set[str] = set()
users: dict[str, dict] = {}
hooks: list[dict] = []
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, the client's delayed ACK
    # would add ~40 ms to every response.
    disable_nagle_algorithm = True

    def _send(self, status: int, payload, content_type: str = "application/json", location: str = "") -> None:
        body = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if location:
            self.send_header("Location", location)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _count(self, path: str) -> None:
        with lock:
            counts[f"{self.command} {path}"] += 1

    def _authorized(self) -> bool:
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        return scheme.lower() == "bearer" and token in tokens

    def _json_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            return None

    def do_GET(self):
        path = self.path.split("?")[0]
        if path == "/stats":
            with lock:
                self._send(200, {"requests": dict(counts), "total": sum(counts.values())})
            return
        self._count(path)
        if path == "/health":
            self._send(200, {"status": "ok"})
        elif path == "/items":
            self._send(200, {"items": ITEMS})
        elif path.startswith("/items/") and path[7:].isdigit() and 1 <= int(path[7:]) <= len(ITEMS):
            self._send(200, ITEMS[int(path[7:]) - 1])
        elif path in ("/api/account", "/api/orders") and not self._authorized():
            self._send(401, {"error": "a Bearer token from POST /api/login is required"})
        elif path == "/api/products":
            self._send(200, {"items": ITEMS, "page": 1})
        elif path.startswith("/api/products/") and path[14:].isdigit() and 1 <= int(path[14:]) <= len(ITEMS):
            self._send(200, ITEMS[int(path[14:]) - 1])
        elif path == "/api/account":
            self._send(200, {"email": "monitor@example.com", "roles": ["customer"], "order_count": len(ORDERS)})
        elif path == "/api/orders":
            self._send(200, {"orders": ORDERS})
        elif path.startswith("/api/users/") and path[11:] in users:
            self._send(200, users[path[11:]])
        elif path == "/api/admin/report":
            with lock:
                rows = "\n".join(f"{u['id']},{u['username']}" for u in users.values())
            self._send(200, f"id,username\n{rows}\n", content_type="text/csv")
        elif path == "/hooks":
            with lock:
                self._send(200, {"received": list(hooks)})
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self):
        path = self.path.split("?")[0]
        self._count(path)
        document = self._json_body()
        if document is None:
            self._send(400, {"error": "body is not JSON"})
        elif path == "/api/login":
            token = secrets.token_hex(16)
            with lock:
                tokens.add(token)
            self._send(200, {"access_token": token, "token_type": "bearer"})
        elif path == "/api/users":
            with lock:
                user = {**document, "id": str(len(users) + 1)}
                users[user["id"]] = user
            self._send(201, user)
        elif path == "/api/orders":
            with lock:
                number = counts["POST /api/orders"]
            self._send(201, {"id": f"o-{number}"}, location=f"/api/orders/o-{number}")
        elif path.startswith("/hooks/"):
            with lock:
                hooks.append({"hook": path[7:], "body": document})
            self._send(204, "")
        else:
            self._send(201, {"id": len(ITEMS) + 1, **document})

    def log_message(self, *args):
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=18080)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"demo-api: listening on http://127.0.0.1:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
