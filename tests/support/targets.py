"""Real HTTP targets on loopback that count what they receive (and check credentials)."""

from __future__ import annotations

import base64
import hmac
import json
import secrets
import time
from collections import Counter
from urllib.parse import parse_qs, unquote_plus

from tests.support.loopback import LoopbackServer, QuietHandler


class CountingTarget(LoopbackServer):
    """A threaded HTTP/1.1 server on 127.0.0.1 that counts requests by method and path.

    `delay` slows every response, to keep a run in flight long enough to interfere with it;
    `status` is what it answers."""

    def __init__(self, delay: float = 0.0, status: int = 200):
        self.delay, self.status = delay, status
        self.counts: Counter[tuple[str, str]] = Counter()
        target = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes; with Nagle on, the client's delayed ACK
            # would add ~40 ms to every response.
            disable_nagle_algorithm = True

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                with target.lock:
                    target.counts[(self.command, self.path)] += 1
                if target.delay:
                    time.sleep(target.delay)
                body = b'{"ok": true}'
                self.send_response(target.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

        super().__init__(Handler)

    @property
    def total(self) -> int:
        with self.lock:
            return sum(self.counts.values())


class CredentialTarget(LoopbackServer):
    """A loopback API that checks credentials, counting what it accepted and refused:

    GET  /basic          200 for basic auth `username:password`, else 401
    POST /oauth/token    the client-credentials grant for `client_id`/`client_secret` (in a
                         basic-auth header or the form): 200 {"access_token", ...}, else 401
    GET  /protected      200 for `Authorization: Bearer <the issued token>`, else 401
    """

    def __init__(self, *, username: str, password: str, client_id: str, client_secret: str):
        self.accepted: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self.token = secrets.token_urlsafe(24)
        target = self
        basic = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()

        def client_credentials(headers, form: dict) -> tuple[str, str]:
            header = headers.get("Authorization") or ""
            if header.startswith("Basic "):
                user, _, secret = base64.b64decode(header[6:]).decode().partition(":")
                return unquote_plus(user), unquote_plus(secret)
            return (form.get("client_id") or [""])[0], (form.get("client_secret") or [""])[0]

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                path, auth = self.path.split("?")[0], self.headers.get("Authorization") or ""
                document: dict | None = None
                if self.command == "GET" and path == "/basic":
                    ok = hmac.compare_digest(auth.encode(), basic.encode())
                    document = {"user": username}
                elif self.command == "POST" and path == "/oauth/token":
                    form = parse_qs(body)
                    cid, secret = client_credentials(self.headers, form)
                    ok = (
                        (form.get("grant_type") or [""])[0] == "client_credentials"
                        and hmac.compare_digest(cid.encode(), client_id.encode())
                        and hmac.compare_digest(secret.encode(), client_secret.encode())
                    )
                    document = {"access_token": target.token, "token_type": "bearer", "expires_in": 3600}
                elif self.command == "GET" and path == "/protected":
                    ok = hmac.compare_digest(auth.encode(), f"Bearer {target.token}".encode())
                    document = {"protected": True}
                else:
                    ok = False
                with target.lock:
                    (target.accepted if ok else target.refused)[path] += 1
                payload = json.dumps(document if ok else {"error": "unauthorized"}).encode()
                self.send_response(200 if ok else 401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _answer

        super().__init__(Handler)
