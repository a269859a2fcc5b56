"""Sending one HTTP request and recording what happened: the `Exchange`.

Timings follow the Runscope result document and come from httpcore's `trace` extension:

    dns_lookup_ms        name resolution, measured by a resolving network backend installed in
                         clients made by `make_client`; 0 for IP literals, for a reused
                         keep-alive connection, and for clients made elsewhere (their
                         resolution then counts in dial_ms)
    dial_ms              TCP connect plus the TLS handshake (connection.connect_tcp +
                         connection.start_tls), minus DNS; 0 on a reused connection
    send_headers_ms      http11/http2 send_request_headers
    send_body_ms         http11/http2 send_request_body
    wait_for_response_ms receive_response_headers: from the request sent to the headers read
    receive_response_ms  receive_response_body

`response_time_ms` is the wall time from just before the request is handed to the client to
the last body byte. Redirects are not followed: a 3xx is a response to assert on, as in the
Runscope result, where each request is one entry.

Transport failures (refused, timeout, TLS, bad URL) never raise: they come back as an
Exchange with `error` set and no status.
"""

from __future__ import annotations

import contextvars
import json
import socket
import ssl
import time
from typing import Any, Mapping, Optional, Sequence, Union

import httpx

from .. import egress
from ..egress import EgressPolicy, ResolvingBackend

TIMING_KEYS = (
    "dns_lookup_ms",
    "dial_ms",
    "send_headers_ms",
    "send_body_ms",
    "wait_for_response_ms",
    "receive_response_ms",
)

DEFAULT_TIMEOUT_S = 60.0

HeaderPairs = Sequence[tuple[str, str]]


class Exchange:
    """One executed request and its response (or the transport error instead of it)."""

    __slots__ = (
        "method",
        "url",
        "request_headers",
        "request_body",
        "status",
        "reason",
        "response_headers",
        "body",
        "response_time_ms",
        "timings",
        "error",
        "started_at",
        "finished_at",
        "_json",
        "_text",
    )

    def __init__(
        self,
        method: str,
        url: str,
        *,
        request_headers: HeaderPairs = (),
        request_body: bytes = b"",
        status: Optional[int] = None,
        reason: str = "",
        response_headers: HeaderPairs = (),
        body: bytes = b"",
        response_time_ms: float = 0.0,
        timings: Optional[dict[str, float]] = None,
        error: Optional[str] = None,
        started_at: Optional[float] = None,
        finished_at: Optional[float] = None,
    ):
        self.method, self.url = method, url
        self.request_headers = list(request_headers)
        self.request_body = request_body
        self.status, self.reason = status, reason
        self.response_headers = list(response_headers)
        self.body = body
        self.response_time_ms = response_time_ms
        self.timings = timings if timings is not None else dict.fromkeys(TIMING_KEYS, 0.0)
        self.error = error
        self.started_at = started_at if started_at is not None else time.time()
        self.finished_at = finished_at if finished_at is not None else self.started_at
        self._json: Any = _UNSET
        self._text: Optional[str] = None

    @classmethod
    def from_json(
        cls,
        document: Any,
        *,
        status: int,
        url: str = "",
        method: str = "",
        response_time_ms: float = 0.0,
        started_at: Optional[float] = None,
    ) -> Exchange:
        """A response made from a document, for steps whose "response" is not HTTP (subtests)."""
        body = json.dumps(document).encode()
        exchange = cls(
            method,
            url,
            status=status,
            reason="OK" if status < 400 else "Error",
            response_headers=[("Content-Type", "application/json")],
            body=body,
            response_time_ms=response_time_ms,
            started_at=started_at,
        )
        exchange._json = document
        return exchange

    @property
    def size(self) -> int:
        """Response body size in bytes."""
        return len(self.body)

    @property
    def ok(self) -> bool:
        return self.error is None and self.status is not None

    def header(self, name: str) -> Optional[str]:
        """The response header `name` (any case); repeated headers joined with ", "; None if absent."""
        wanted = name.lower()
        values = [v for k, v in self.response_headers if k.lower() == wanted]
        return ", ".join(values) if values else None

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = self.body.decode(_charset(self.header("content-type")) or "utf-8", errors="replace")
        return self._text

    def json(self) -> Any:
        """The body parsed as JSON, parsed once; raises ValueError when it is not JSON."""
        if self._json is _UNSET:
            self._json = json.loads(self.body)
        return self._json


_UNSET = object()


def _charset(content_type: Optional[str]) -> Optional[str]:
    if not content_type:
        return None
    for piece in content_type.split(";")[1:]:
        key, _, value = piece.strip().partition("=")
        if key.lower() == "charset" and value:
            name = value.strip("\"' ")
            try:
                "".encode(name)
            except LookupError:
                return None
            return name
    return None


# --- timing ---------------------------------------------------------------------------------

_active_trace: contextvars.ContextVar[Optional["_Trace"]] = contextvars.ContextVar("assay_http_trace", default=None)


class _Trace:
    """The `trace` extension callback: start/complete times per httpcore stage."""

    __slots__ = ("started", "spent", "dns_ms")

    def __init__(self):
        self.started: dict[str, float] = {}
        self.spent: dict[str, float] = {}
        self.dns_ms = 0.0

    async def __call__(self, event: str, info: Mapping[str, Any]) -> None:
        stage, _, phase = event.rpartition(".")
        stage = stage.partition(".")[2]  # "http11.send_request_headers" -> "send_request_headers"
        now = time.perf_counter()
        if phase == "started":
            self.started[stage] = now
        elif phase in ("complete", "failed"):
            began = self.started.get(stage)
            if began is not None:
                self.spent[stage] = self.spent.get(stage, 0.0) + (now - began) * 1000.0

    def timings(self) -> dict[str, float]:
        spent = self.spent.get
        connect = spent("connect_tcp", 0.0)
        dns = min(self.dns_ms, connect) if connect else 0.0
        return {
            "dns_lookup_ms": dns,
            "dial_ms": connect - dns + spent("start_tls", 0.0),
            "send_headers_ms": spent("send_request_headers", 0.0),
            "send_body_ms": spent("send_request_body", 0.0),
            "wait_for_response_ms": spent("receive_response_headers", 0.0),
            "receive_response_ms": spent("receive_response_body", 0.0),
        }


def _record_dns(ms: float) -> None:
    trace = _active_trace.get()
    if trace is not None:
        trace.dns_ms = ms


_TRANSPORT_KWARGS = (
    "verify",
    "cert",
    "trust_env",
    "http1",
    "http2",
    "limits",
    "retries",
    "local_address",
    "socket_options",
)


def make_client(**kwargs: Any) -> httpx.AsyncClient:
    """An AsyncClient whose connections time DNS separately (see the module doc).

    Transport settings (`verify`, `cert`, `http2`, `limits`, ...) go to the transport, the rest
    (`cookies`, `headers`, `timeout`, ...) to the client. A `transport` passed in is used as
    it is, with the resolver installed in the HTTP transports it holds. Redirects are not
    followed."""
    transport = kwargs.pop("transport", None)
    transport_kwargs = {k: kwargs.pop(k) for k in _TRANSPORT_KWARGS if k in kwargs}
    if transport is None:
        transport = httpx.AsyncHTTPTransport(**transport_kwargs)
    if "trust_env" in transport_kwargs:
        kwargs["trust_env"] = transport_kwargs["trust_env"]
    _install_resolver(transport)
    kwargs.setdefault("follow_redirects", False)
    kwargs.setdefault("timeout", DEFAULT_TIMEOUT_S)
    return httpx.AsyncClient(transport=transport, **kwargs)


def _install_resolver(transport: httpx.AsyncBaseTransport) -> None:
    # Where the run was given an egress policy (a run in the gateway's or operator's network
    # position, see assay.runner.egress), every connection is checked against it too.
    policy = EgressPolicy.for_runs()
    candidates = (
        [transport]
        if isinstance(transport, httpx.AsyncHTTPTransport)
        else [value for value in vars(transport).values() if isinstance(value, httpx.AsyncHTTPTransport)]
    )
    for http_transport in candidates:
        backend = getattr(getattr(http_transport, "_pool", None), "_network_backend", None)
        if not isinstance(backend, ResolvingBackend):
            egress.install(http_transport, lambda inner: ResolvingBackend(inner, policy, _record_dns))


# --- sending --------------------------------------------------------------------------------


def describe_transport_error(exc: BaseException) -> str:
    """A one-line reason for a failed request, e.g. `connection refused: [Errno 111] ...`,
    classified by the exceptions in the chain, worded by their messages."""
    chain: list[BaseException] = []
    seen: Optional[BaseException] = exc
    while seen is not None and len(chain) < 8:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    reasons: list[str] = []
    for link in chain:
        text = str(link).strip()
        if text and not any(text in reason for reason in reasons):
            reasons.append(text)
    if len(reasons) > 1 and reasons[0] == "All connection attempts failed":
        reasons.pop(0)  # anyio's summary; the next reason says which and why
    detail = "; ".join(reasons) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        kind = {
            httpx.ConnectTimeout: "connect timeout",
            httpx.ReadTimeout: "read timeout",
            httpx.WriteTimeout: "write timeout",
            httpx.PoolTimeout: "pool timeout",
        }.get(type(exc), "timeout")
        return f"{kind}: {detail}" if reasons else kind
    if any(isinstance(link, ssl.SSLError) for link in chain):
        return f"TLS error: {detail}"
    if any(isinstance(link, ConnectionRefusedError) for link in chain):
        return f"connection refused: {detail}"
    if any(isinstance(link, socket.gaierror) for link in chain) or detail.startswith("DNS lookup"):
        return f"DNS error: {detail}"
    if isinstance(exc, httpx.ConnectError):
        return f"connection failed: {detail}"
    if isinstance(exc, (httpx.InvalidURL, httpx.UnsupportedProtocol)):
        return f"invalid URL: {detail}"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"protocol error: {detail}"
    return f"{type(exc).__name__}: {detail}"


def _header_pairs(headers: httpx.Headers) -> list[tuple[str, str]]:
    encoding = headers.encoding
    return [(k.decode(encoding), v.decode(encoding)) for k, v in headers.raw]


Form = Mapping[str, Union[str, Sequence[str]]]


async def send(
    client: httpx.AsyncClient,
    method: str = "GET",
    url: str = "",
    *,
    request: Optional[httpx.Request] = None,
    headers: Union[HeaderPairs, Mapping[str, str], None] = None,
    content: Union[str, bytes, None] = None,
    form: Optional[Form] = None,
    timeout: Optional[float] = None,
) -> Exchange:
    """Send a request and return the Exchange; never raises for transport failures.

    Either pass `method`, `url` and the parts, or a `request` built with `client.build_request`
    (the path used when authentication must sign it first); `timeout` in seconds overrides
    the client's for this request."""
    started_at = time.time()
    if request is None:
        try:
            request = client.build_request(
                method, url, headers=headers, content=content, data=form if content is None else None
            )
        except (httpx.InvalidURL, httpx.UnsupportedProtocol, ValueError, TypeError) as exc:
            return Exchange(method, url, error=describe_transport_error(exc), started_at=started_at)
    if timeout is not None:
        request.extensions["timeout"] = httpx.Timeout(timeout).as_dict()
    trace = _Trace()
    request.extensions["trace"] = trace
    token = _active_trace.set(trace)
    began = time.perf_counter()
    try:
        response = await client.send(request)
    # A TLS 1.3 server refusing the client certificate says so after the handshake, and
    # httpcore sometimes lets that surface as a bare ssl.SSLError rather than an httpx error.
    except (httpx.HTTPError, ssl.SSLError) as exc:
        elapsed = (time.perf_counter() - began) * 1000.0
        return Exchange(
            request.method,
            str(request.url),
            request_headers=_header_pairs(request.headers),
            request_body=_request_body(request),
            response_time_ms=elapsed,
            timings=trace.timings(),
            error=describe_transport_error(exc),
            started_at=started_at,
            finished_at=time.time(),
        )
    finally:
        _active_trace.reset(token)
    elapsed = (time.perf_counter() - began) * 1000.0
    return Exchange(
        request.method,
        str(request.url),
        request_headers=_header_pairs(request.headers),
        request_body=_request_body(request),
        status=response.status_code,
        reason=response.reason_phrase,
        response_headers=_header_pairs(response.headers),
        body=response.content,
        response_time_ms=elapsed,
        timings=trace.timings(),
        started_at=started_at,
        finished_at=time.time(),
    )


def _request_body(request: httpx.Request) -> bytes:
    try:
        return request.content
    except httpx.RequestNotRead:
        return b""
