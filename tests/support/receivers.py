"""Real notification receivers on loopback: a webhook receiver and an SMTP server (aiosmtpd)."""

from __future__ import annotations

import json
import socket
import threading
import time
from email import message_from_bytes
from email.message import Message

from tests.support.loopback import LoopbackServer, QuietHandler


class WebhookReceiver(LoopbackServer):
    """Records every POST body by path. Paths starting with /fail answer 500, /hang holds the
    request for `hang` seconds without answering; the rest answer 200."""

    def __init__(self, hang: float = 60.0):
        self.posts: list[tuple[str, dict, float]] = []
        self._release = threading.Event()
        receiver = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.posts.append((self.path, json.loads(body or b"null"), time.monotonic()))
                if self.path.startswith("/hang"):
                    receiver._release.wait(hang)
                    self.close_connection = True
                    return
                status = 500 if self.path.startswith("/fail") else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        super().__init__(Handler)

    def bodies(self, path: str) -> list[dict]:
        with self.lock:
            return [body for p, body, _ in self.posts if p == path]

    def __exit__(self, *exc) -> None:
        self._release.set()  # the held /hang requests end with the server
        super().__exit__(*exc)


class SmtpReceiver:
    """aiosmtpd on 127.0.0.1 keeping every message it accepts, with its envelope recipients."""

    def __init__(self):
        from aiosmtpd.controller import Controller

        self.messages: list[tuple[list[str], Message]] = []
        receiver = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                receiver.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
                return "250 Message accepted for delivery"

        with socket.socket() as probe:  # the controller connects to its port to check it is up
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> SmtpReceiver:
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()
