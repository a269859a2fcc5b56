"""A small, fast HTTP/1.1 client for load generation: asyncio Protocols and httptools.

Why not httpx or aiohttp: a load generator spends its CPU in the client, and the general
clients spend most of theirs on features a load test does not use (streaming, HTTP/2,
middleware). This one does one thing: send a request whose bytes are usually ready in
advance, and parse the response with httptools (llhttp, in C). Cookies and redirects are
the engine's (engine.py, cookies.py): they change which bytes go out, not how.

What it does
- One keep-alive connection pool per origin (scheme, host, port); a connection carries one
  request at a time and goes back to the pool when its response is complete. A pool grows
  as concurrency needs, so N virtual users use at most N connections.
- `PreparedRequest` holds the request's exact bytes; a request with nothing templated is
  encoded once for the whole run.
- Responses framed by Content-Length, chunked encoding or the end of the connection; HEAD,
  1xx, 204 and 304 responses have no body.
- Header fields cost nothing until asked for: llhttp checks the head without calling back per
  field, the response keeps the head's bytes, and Set-Cookie and Location are found by a
  search of them; all fields (`raw_headers`) come from a parser of their own, and a chunked
  body's trailer fields, read as the body arrives, follow them.
- `Connection: close` (or HTTP/1.0 without keep-alive) closes the connection after the
  response. A pooled connection the server closed while idle is dropped; if the server closes
  a reused connection before sending any byte of the response, the request is sent once more
  on a new connection (the server cannot have answered it).
- TLS through asyncio's ssl, with verification on (the default) or off.
- A connect timeout (the client's) and a per-request timeout (covering the whole request,
  connection included), kept in 10 ms slots (wheel.py) rather than a timer each.

Every failure raises `RequestError` whose `kind` is one of
    connect   the connection could not be made (refused, unreachable, DNS, TLS handshake,
              connect timeout)
    timeout   the request timeout passed before the response was complete
    other     anything else: the connection broke mid-response, a malformed response
A response with status >= 400 is returned, not raised: the caller classifies it (`status`),
because an assertion may expect it.
"""

from __future__ import annotations

import asyncio
import socket
import ssl as ssl_module
from typing import Optional
from urllib.parse import quote, urlsplit

import httptools

from ..egress import EgressPolicy
from .wheel import TimerWheel

CONNECT = "connect"
TIMEOUT = "timeout"
STATUS = "status"
ASSERTION = "assertion"
OTHER = "other"
ERROR_KINDS = (STATUS, TIMEOUT, CONNECT, ASSERTION, OTHER)
"""The error kinds of the metrics, in their JSON order."""

USER_AGENT = "assay-load/1"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# Characters a request target may carry as they are; anything else is percent-encoded.
_SAFE_TARGET = "/?#[]@!$&'()*+,;=:%-._~"


class RequestError(Exception):
    """A request that got no usable response; `kind` says why (see the module docstring)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class _StaleConnection(Exception):
    """The server closed a connection before answering: safe to send again elsewhere."""


class Origin:
    """Where requests go: scheme, host and port, and the Host header they carry."""

    __slots__ = ("scheme", "host", "port", "tls", "key", "host_header")

    def __init__(self, scheme: str, host: str, port: Optional[int]):
        scheme = scheme.lower()
        if scheme not in ("http", "https"):
            raise ValueError(f"unsupported URL scheme {scheme!r}: expected http or https")
        if not host:
            raise ValueError("URL has no host")
        self.scheme, self.host, self.tls = scheme, host, scheme == "https"
        default = 443 if self.tls else 80
        self.port = port or default
        shown = f"[{host}]" if ":" in host else host
        self.host_header = shown if self.port == default else f"{shown}:{self.port}"
        self.key = (scheme, host, self.port)

    def __repr__(self) -> str:
        return f"Origin({self.scheme}://{self.host_header})"


def split_url(url: str) -> tuple[Origin, str]:
    """The origin of an absolute http(s) URL and its request target (path and query)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"invalid port in URL {url!r}") from exc
    origin = Origin(parts.scheme, parts.hostname or "", port)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return origin, quote(target, safe=_SAFE_TARGET)


class PreparedRequest:
    """A request as it goes on the wire: its origin and its bytes, and the parts it was made
    of (target, headers, body) for a redirect to be built from."""

    __slots__ = ("method", "origin", "data", "head", "target", "headers", "body", "head_end")

    def __init__(
        self,
        method: str,
        origin: Origin,
        data: bytes,
        target: str = "/",
        headers: list[tuple[str, str]] | None = None,
        body: Optional[bytes] = None,
        head_end: int = -1,
    ):
        self.method, self.origin, self.data = method, origin, data
        self.head = method == "HEAD"
        self.target, self.headers, self.body = target, headers or [], body
        self.head_end = head_end
        """Where the blank line that ends the header block starts in `data`."""

    @property
    def path(self) -> str:
        """The target without its query, as cookie paths are matched."""
        cut = self.target.find("?")
        return self.target if cut < 0 else self.target[:cut]

    @property
    def url(self) -> str:
        return f"{self.origin.scheme}://{self.origin.host_header}{self.target}"

    def with_cookie(self, value: str) -> bytes:
        """The request's bytes with a Cookie header added."""
        if "\r" in value or "\n" in value:
            raise ValueError("cookie contains a line break")
        cut = self.head_end
        return self.data[:cut] + b"\r\nCookie: " + value.encode() + self.data[cut:]


def encode_request(
    method: str,
    origin: Origin,
    target: str,
    headers: dict[str, str] | list[tuple[str, str]] = (),
    body: bytes | str | None = None,
) -> PreparedRequest:
    """The bytes of one request. Host, User-Agent and Content-Length are added unless the
    caller's headers set them; a body goes with Content-Length (never chunked)."""
    if isinstance(body, str):
        body = body.encode()
    items = list(headers.items()) if isinstance(headers, dict) else list(headers)
    given = {name.lower() for name, _ in items}
    lines = [f"{method} {target} HTTP/1.1"]
    if "host" not in given:
        lines.append(f"Host: {origin.host_header}")
    if "user-agent" not in given:
        lines.append(f"User-Agent: {USER_AGENT}")
    for name, value in items:
        if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
            raise ValueError(f"header {name!r} contains a line break")
        if name.lower() != "content-length":
            lines.append(f"{name}: {value}")
    if body or method in _BODY_METHODS:
        lines.append(f"Content-Length: {len(body or b'')}")
    # Non-ASCII header text goes out as UTF-8, as browsers and curl send it.
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    return PreparedRequest(method, origin, head + (body or b""), target, items, body, len(head) - 4)


def prepare(
    method: str, url: str, headers: dict[str, str] | list[tuple[str, str]] = (), body: bytes | str | None = None
) -> PreparedRequest:
    origin, target = split_url(url)
    return encode_request(method, origin, target, headers, body)


class _Fields:
    """The header fields of one response as llhttp gives them, from a parser of its own (the
    connection's parser does not call back per header: most responses are never asked for
    theirs); with a chunked body, its trailer fields follow."""

    __slots__ = ("fields", "parser", "done")

    def __init__(self):
        self.fields: list[tuple[bytes, bytes]] = []
        self.done = False
        self.parser = httptools.HttpResponseParser(self)

    def on_header(self, name: bytes, value: bytes):
        self.fields.append((name, value))

    def on_message_complete(self):
        self.done = True

    def feed(self, data: bytes) -> None:
        if not self.done:
            try:
                self.parser.feed_data(data)
            except (httptools.HttpParserError, httptools.HttpParserUpgrade):
                # The connection's parser accepted these bytes: what follows the fields (an
                # upgrade, bytes after the message) is none of theirs.
                self.done = True


def header_fields(head: bytes) -> list[tuple[bytes, bytes]]:
    fields = _Fields()
    fields.feed(head)
    return fields.fields


_SET_COOKIE = b"\r\nset-cookie:"
_LOCATION = b"\r\nlocation:"


def _field_values(head: bytes, lower: bytes, key: bytes, at: int) -> list[str]:
    """The values of the field that `key` (CRLF, the name in lower case, colon) starts, the
    first at `at` in `lower` (the head in lower case, so that names match in any case: a
    search in C, not a regex or a loop per field), as llhttp reads them from a head it has
    accepted: every line ends in CRLF, the first is the status line, no space comes before
    the colon, and a value is what follows the colon and its spaces and tabs."""
    values = []
    while at >= 0:
        start = at + len(key)
        end = head.find(b"\r", start)
        values.append(head[start:end].lstrip(b" \t").decode("latin-1"))
        at = lower.find(key, end)
    return values


class Response:
    """A complete response. `body` is None unless the caller asked to keep it; `head` holds
    the status line and header fields as received, parsed into `raw_headers` when asked."""

    __slots__ = ("status", "head", "body", "bytes_received", "_raw", "_headers")

    def __init__(
        self, status: int, head: bytes, body: Optional[bytes], bytes_received: int, raw_headers: Optional[list] = None
    ):
        self.status, self.head, self.body, self.bytes_received = status, head, body, bytes_received
        self._raw = raw_headers
        self._headers = None

    @property
    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """(name, value) of each field in order, trailer fields of a chunked body included."""
        if self._raw is None:
            self._raw = header_fields(self.head)
        return self._raw

    def set_cookies(self) -> Optional[list[str]]:
        """The Set-Cookie values, None when there is none."""
        if self._raw is None:
            lower = self.head.lower()
            # find, not `in`: bytes' `in` tries the needle as an integer first, which costs
            # more than the search.
            at = lower.find(_SET_COOKIE)
            return _field_values(self.head, lower, _SET_COOKIE, at) if at >= 0 else None
        values = [v.decode("latin-1") for n, v in self._raw if len(n) == 10 and n.lower() == b"set-cookie"]
        return values or None

    def location(self) -> Optional[str]:
        """The first Location value, stripped; None without one."""
        if self._raw is None:
            lower = self.head.lower()
            at = lower.find(_LOCATION)
            return _field_values(self.head, lower, _LOCATION, at)[0].strip() if at >= 0 else None
        for name, value in self._raw:
            if len(name) == 8 and name.lower() == b"location":
                return value.decode("latin-1").strip()
        return None

    @property
    def headers(self) -> dict[str, str]:
        """Header names in lower case; repeated headers joined with ', '."""
        if self._headers is None:
            out: dict[str, str] = {}
            for name, value in self.raw_headers:
                key = name.decode("latin-1").lower()
                text = value.decode("latin-1")
                out[key] = f"{out[key]}, {text}" if key in out else text
            self._headers = out
        return self._headers

    def header(self, name: str) -> Optional[str]:
        return self.headers.get(name.lower())

    @property
    def text(self) -> str:
        return (self.body or b"").decode("utf-8", errors="replace")

    def __repr__(self) -> str:
        return f"Response({self.status}, {self.bytes_received} bytes)"


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: at most one request in flight."""

    # A connection per virtual user: slots keep an idle user's memory low (no __dict__).
    __slots__ = (
        "loop",
        "transport",
        "parser",
        "closed",
        "waiter",
        "keep_body",
        "head",
        "pending",
        "collecting",
        "head_start",
        "response_head",
        "fields",
        "body",
        "received",
        "status",
        "headers_done",
        "keep_alive",
        "fresh_parser",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.transport: Optional[asyncio.Transport] = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.waiter: Optional[asyncio.Future] = None
        self.keep_body = False
        self.head = False
        self.pending: Optional[bytes] = None
        self.collecting = False
        """The response's bytes are kept in `pending` until its body shows its framing (the
        head alone is not searched for it): a chunked body may have trailer fields."""
        self.head_start = 0
        self.response_head = b""
        self.fields: Optional[_Fields] = None
        """A chunked response's fields, trailers included."""
        self.body: Optional[list] = None
        self.received = 0
        self.status = 0
        self.headers_done = False
        self.keep_alive = True
        self.fresh_parser = False  # a HEAD response leaves the parser expecting a body

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data: bytes):
        waiter = self.waiter
        if waiter is None or waiter.done():
            # Bytes nobody asked for: the stream is out of step; never reuse it.
            self._close()
            return
        self.received += len(data)
        if self.collecting:
            pending = self.pending
            self.pending = data if pending is None else pending + data
        elif self.fields is not None:
            self.fields.feed(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(RequestError(OTHER, f"malformed response: {exc}"))
            self._close()

    def eof_received(self):
        self.closed = True  # not to be taken from the pool again
        return False  # close the transport; connection_lost does the rest

    def connection_lost(self, exc):
        self.closed = True
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if self.headers_done and self._framed_by_close():
            self._complete()
        elif self.received == 0:
            waiter.set_exception(_StaleConnection())
        else:
            waiter.set_exception(RequestError(OTHER, "connection closed before the response was complete"))

    # -- httptools callbacks -----------------------------------------------------------------

    def on_headers_complete(self):
        self.status = self.parser.get_status_code()
        self.headers_done = True
        data = self.pending
        # llhttp skips empty lines before a status line; the head starts at the status line.
        start = len(data) - len(data.lstrip(b"\r\n")) if data[0] in (13, 10) else 0
        end = data.find(b"\r\n\r\n", start) + 4
        self.response_head = data[start:end]
        self.head_start = start
        if self.status < 200:
            # An interim response (103 Early Hints): the real one follows, maybe in these bytes.
            self.pending = data[end:] or None
        if self.head and self.status >= 200:
            # llhttp does not know the request was HEAD and would wait for the body that
            # Content-Length announces; the response is complete, the parser is not reusable.
            self.keep_alive = self.parser.should_keep_alive()
            self.fresh_parser = True
            self._complete()

    def on_chunk_header(self):
        if self.collecting:
            # A chunked body, which trailer fields may follow: a parser of their own reads
            # the message from its start.
            self.collecting = False
            self.fields = _Fields()
            self.fields.feed(self.pending[self.head_start :])
            self.pending = None

    def on_body(self, body: bytes):
        if self.collecting:
            self.collecting = False  # not chunked: the head has all the fields
            self.pending = None
        if self.keep_body:
            self.body.append(body)

    def on_message_complete(self):
        if 100 <= self.status < 200 and self.status != 101:
            self.headers_done = False
            return
        self.keep_alive = self.parser.should_keep_alive()
        self._complete()

    # -- the request -------------------------------------------------------------------------

    def start(self, data: bytes, keep_body: bool, head: bool) -> asyncio.Future:
        if self.fresh_parser:
            self.parser = httptools.HttpResponseParser(self)
            self.fresh_parser = False
        self.waiter = waiter = self.loop.create_future()
        self.keep_body, self.head = keep_body, head
        self.pending = self.fields = None
        self.collecting = True
        self.body = [] if keep_body else None
        self.received = self.status = 0
        self.headers_done = False
        self.transport.write(data)
        return waiter

    def on_timeout(self):
        self._fail(RequestError(TIMEOUT, "request timed out"))
        self._close()

    def _complete(self):
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            body = b"".join(self.body) if self.keep_body else None
            fields = self.fields.fields if self.fields is not None else None
            waiter.set_result(Response(self.status, self.response_head, body, self.received, fields))
            # An idle pooled connection must not hold its last response (its head is most of
            # an idle virtual user's memory); bytes arriving now find no waiter and close the
            # connection, and a stray parser callback fails the same way.
            self.waiter = self.body = self.fields = self.pending = None
            self.collecting = False
            self.response_head = b""

    def _fail(self, exc: Exception):
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def _close(self):
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _framed_by_close(self) -> bool:
        """Whether the body ends with the connection: no Content-Length, not chunked."""
        if self.status in (204, 304) or self.head:
            return False
        for name, value in header_fields(self.response_head):
            lname = name.lower()
            if lname == b"content-length" or (lname == b"transfer-encoding" and b"chunked" in value.lower()):
                return False
        return True


class HttpClient:
    """Keep-alive connection pools per origin, shared by all the virtual users of a shard.

    `verify_tls=False` accepts any server certificate; `ssl_context` replaces the default
    one entirely (tests pass one that trusts their own CA). With an egress `policy`, only the
    addresses it permits are connected to (checked once per origin, off the hot path)."""

    def __init__(
        self,
        *,
        connect_timeout: float = 10.0,
        verify_tls: bool = True,
        ssl_context: Optional[ssl_module.SSLContext] = None,
        policy: Optional[EgressPolicy] = None,
    ):
        self.connect_timeout = connect_timeout
        self._policy = policy
        self._ssl = ssl_context
        self._verify = verify_tls
        self._idle: dict[tuple, list[_Connection]] = {}
        self._all: set[_Connection] = set()
        self._addresses: dict[tuple, tuple] = {}
        self._deadlines = TimerWheel(_Connection.on_timeout)
        self.connections_opened = 0

    def _ssl_context(self) -> ssl_module.SSLContext:
        if self._ssl is None:
            ctx = ssl_module.create_default_context()
            if not self._verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl_module.CERT_NONE
            ctx.set_alpn_protocols(["http/1.1"])
            self._ssl = ctx
        return self._ssl

    async def _resolve(self, loop, origin: Origin) -> tuple:
        """Resolve each origin once per run: a load test must not measure DNS each time."""
        address = self._addresses.get(origin.key)
        if address is None:
            infos = await loop.getaddrinfo(origin.host, origin.port, type=socket.SOCK_STREAM)
            if not infos:
                raise OSError(f"no address for {origin.host}")
            if self._policy is not None:
                infos = [info for info in infos if self._policy.permits(info[4][0], origin.port)]
                if not infos:
                    raise RequestError(
                        CONNECT, f"{origin.host_header} is not an address Assay may connect to (egress policy)"
                    )
            family, _, _, _, sockaddr = infos[0]
            address = self._addresses[origin.key] = (family, sockaddr[0])
        return address

    async def _connect(self, origin: Origin, timeout: float) -> _Connection:
        loop = asyncio.get_running_loop()
        limit = min(self.connect_timeout, timeout)
        try:
            async with asyncio.timeout(limit):
                family, host = await self._resolve(loop, origin)
                if origin.tls:
                    _, conn = await loop.create_connection(
                        lambda: _Connection(loop),
                        host,
                        origin.port,
                        family=family,
                        ssl=self._ssl_context(),
                        server_hostname=origin.host,
                    )
                else:
                    _, conn = await loop.create_connection(lambda: _Connection(loop), host, origin.port, family=family)
        except TimeoutError:
            if limit < self.connect_timeout:
                raise RequestError(TIMEOUT, f"request timed out while connecting to {origin.host_header}") from None
            raise RequestError(CONNECT, f"connect to {origin.host_header} timed out after {limit:g}s") from None
        except ssl_module.SSLError as exc:
            reason = exc.reason or exc
            raise RequestError(CONNECT, f"TLS handshake with {origin.host_header} failed: {reason}") from None
        except OSError as exc:
            raise RequestError(CONNECT, f"cannot connect to {origin.host_header}: {exc.strerror or exc}") from None
        self.connections_opened += 1
        self._all.add(conn)
        return conn

    async def send(
        self, request: PreparedRequest, timeout: float, keep_body: bool = False, data: Optional[bytes] = None
    ) -> Response:
        """Send one request and wait for its complete response (RequestError on failure).
        `data` replaces the request's bytes (the same request with a Cookie header)."""
        if data is None:
            data = request.data
        idle = self._idle.get(request.origin.key)
        if idle is None:
            idle = self._idle[request.origin.key] = []
        conn = None
        while idle:
            conn = idle.pop()
            if not conn.closed:
                break
            conn = None
        reused = conn is not None
        loop = asyncio.get_running_loop()
        if conn is None:
            started = loop.time()
            conn = await self._connect(request.origin, timeout)
            timeout -= loop.time() - started
        while True:
            waiter = conn.start(data, keep_body, request.head)
            slot = self._deadlines.add(loop, conn, timeout if timeout > 0.0 else 0.0)
            try:
                response = await waiter
            except _StaleConnection:
                self._all.discard(conn)
                if not reused:
                    raise RequestError(OTHER, "connection closed before the response was complete") from None
                # The server closed an idle keep-alive connection as we sent on it.
                reused = False
                started = loop.time()
                conn = await self._connect(request.origin, timeout)
                timeout -= loop.time() - started
                continue
            except BaseException:
                # A timeout, a broken response, or the caller cancelling: the connection is
                # in an unknown state, so it is closed rather than reused.
                conn._close()
                self._all.discard(conn)
                raise
            finally:
                self._deadlines.discard(conn, slot)
            if conn.keep_alive and not conn.closed:
                idle.append(conn)
            else:
                conn._close()
                self._all.discard(conn)
            return response

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | str | None = None,
        timeout: float = 30.0,
        keep_body: bool = True,
    ) -> Response:
        """Convenience for one-off requests: prepare and send."""
        return await self.send(prepare(method, url, headers or {}, body), timeout, keep_body)

    @property
    def open_connections(self) -> int:
        return sum(1 for c in self._all if not c.closed)

    async def close(self) -> None:
        for conn in list(self._all):
            conn._close()
        self._all.clear()
        self._idle.clear()
        await asyncio.sleep(0)  # let transports run their close callbacks
