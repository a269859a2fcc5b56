"""A real HTTP server on 127.0.0.1 with the endpoints API-test tests need.

    GET  /json                 a JSON document (see JSON_DOCUMENT); ?status=N answers with N
    GET  /json/array           a JSON array at the top level
    GET  /xml                  an XML catalog (see XML_DOCUMENT)
    GET  /text[?body=B]        "hello plain world" (or B) as text/plain
    GET  /empty                200 with an empty body and an empty X-Empty header
    GET  /binary               PNG_BYTES as image/png (not UTF-8)
    GET  /status/<code>        that status with {"status": code}
    GET  /redirect?to=PATH     302 to PATH
    GET  /slow?ms=N            answers after N milliseconds
    GET  /headers/multi        two X-Multi headers and an X-Request-Id
    ANY  /echo                 {"method", "path", "query": {k: [v]}, "headers": {name: value},
                               "body": text, "cookies": {name: value}} of what arrived
    GET  /cookies/set?k=v      sets cookie k=v (Path=/), answers {"set": {k: v}}
    GET  /cookies              {"cookies": {name: value}} received
    GET  /ghost/tests/<id>/execute/?apiKey=K[&startUrl=U]
                               Ghost Inspector's execute API: 401 unless K is GHOST_API_KEY;
                               test id "failing-test" reports passing false

Every request is recorded (`target.requests`), so tests can check what was sent. Responses
go out with TCP_NODELAY so small bodies are not held back by Nagle's algorithm.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlsplit

from tests.support.loopback import LoopbackServer, QuietHandler

JSON_DOCUMENT = {
    "data": {
        "items": [{"id": 1, "name": "first"}, {"id": 2, "name": "second"}],
        "count": 2,
        "price": 9.5,
        "active": True,
        "nothing": None,
        "empty_text": "",
        "empty_list": [],
        "tags": ["red", "green", 7],
        "address": "12 Long Avenue",
        "meta": {"a.b": "dotted", "numeric_text": "42"},
    },
    "status": "ok",
}

JSON_ARRAY = [{"name": "zero"}, {"name": "one"}]

XML_DOCUMENT = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<catalog count="2"><book id="b1"><title>Dune</title><price>9.99</price></book>'
    b'<book id="b2"><title>Emma</title><price>5</price></book><empty/></catalog>'
)

PNG_BYTES = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89\xff\xfe"
)

GHOST_API_KEY = "gi-secret-key"


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.time)

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


class HttpTarget(LoopbackServer):
    """The routes above, over HTTP/1.1; use as a context manager."""

    def __init__(self):
        self.requests: list[Received] = []
        target = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                query = parse_qs(parts.query, keep_blank_values=True)
                received = Received(self.command, parts.path, query, dict(self.headers.items()), body)
                with target.lock:
                    target.requests.append(received)
                route(self, received)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _answer

            def do_HEAD(self):
                self._answer()

            def reply(
                self,
                status: int,
                body: bytes = b"",
                content_type: str = "application/json",
                headers: list[tuple[str, str]] = (),
            ):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers:
                    self.send_header(name, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def reply_json(self, status: int, document, headers: list[tuple[str, str]] = ()):
                self.reply(status, json.dumps(document).encode(), "application/json", headers)

        super().__init__(Handler)

    def received(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def clear(self) -> None:
        with self.lock:
            self.requests.clear()


def _cookies(received: Received) -> dict[str, str]:
    jar = SimpleCookie()
    jar.load(received.header("Cookie") or "")
    return {name: morsel.value for name, morsel in jar.items()}


def route(handler, received: Received) -> None:
    path, query = received.path, received.query
    first = {k: v[0] for k, v in query.items()}
    if path == "/json":
        handler.reply_json(int(first.get("status", 200)), JSON_DOCUMENT)
    elif path == "/json/array":
        handler.reply_json(200, JSON_ARRAY)
    elif path == "/xml":
        handler.reply(200, XML_DOCUMENT, "application/xml")
    elif path == "/text":
        handler.reply(200, first.get("body", "hello plain world").encode(), "text/plain; charset=utf-8")
    elif path == "/empty":
        handler.reply(200, b"", "text/plain", [("X-Empty", "")])
    elif path == "/binary":
        handler.reply(200, PNG_BYTES, "image/png")
    elif path.startswith("/status/"):
        code = int(path.rsplit("/", 1)[1])
        handler.reply_json(code, {"status": code})
    elif path == "/redirect":
        handler.reply(302, b"", "text/plain", [("Location", first.get("to", "/json"))])
    elif path == "/slow":
        time.sleep(int(first.get("ms", "500")) / 1000)
        handler.reply_json(200, {"slow": True})
    elif path == "/headers/multi":
        handler.reply_json(200, {}, [("X-Multi", "a"), ("X-Multi", "b"), ("X-Request-Id", "req-123")])
    elif path == "/echo":
        handler.reply_json(
            200,
            {
                "method": received.method,
                "path": received.path,
                "query": received.query,
                "headers": received.headers,
                "body": received.body.decode("utf-8", errors="replace"),
                "cookies": _cookies(received),
            },
        )
    elif path == "/cookies/set":
        handler.reply_json(200, {"set": first}, [("Set-Cookie", f"{k}={v}; Path=/") for k, v in first.items()])
    elif path == "/cookies":
        handler.reply_json(200, {"cookies": _cookies(received)})
    elif path.startswith("/ghost/tests/") and path.endswith("/execute/"):
        test_id = path[len("/ghost/tests/") : -len("/execute/")]
        if first.get("apiKey") != GHOST_API_KEY:
            handler.reply_json(401, {"code": "ERROR", "message": "Invalid API key"})
            return
        handler.reply_json(
            200,
            {
                "code": "SUCCESS",
                "data": {
                    "_id": f"result-{test_id}",
                    "test": {"_id": test_id},
                    "passing": test_id != "failing-test",
                    "startUrl": first.get("startUrl", "https://default.example"),
                    "screenshot": {"small": {"defaultUrl": f"https://shots.example/{test_id}.png"}},
                },
            },
        )
    else:
        handler.reply_json(404, {"error": f"no route {path}"})
