"""Request bodies: how large they may be, how long they may take to arrive, and JSON read from them.

Every route takes a body of at most `ASSAY_BODY_MAX_BYTES` (1 MiB) that arrives within
`ASSAY_BODY_TIMEOUT_SECONDS` (30 s) of the route's first read. A route that needs another limit
says so where it is defined, with `body_limit`:

    @router.put("/documents/{name}")
    @body_limit(256 * 1024 * 1024, timeout_seconds=600)
    async def put_document(...): ...

or, for a router's routes at once, `limit_routes(router, max_bytes)` (the VNG exposed URLs
would use `limit_routes(router, MAX_FORWARDED_BODY)`).

The limit holds however the body arrives: a Content-Length above it is refused before a byte
is read, a chunked body when it passes the limit, a trickling one at its deadline, so no
client can make the gateway buffer more than a route allows or hold a worker forever. Routes
that never read their body are not held up by it. Refusals are 413 `too_large` and 408
`request_timeout`, rendered in the route's API family's error shape (errors.py), with
`Connection: close` so the server stops reading the rest. A client that goes away mid-body is
one log line, not a traceback.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Body, FastAPI
from pydantic import AfterValidator
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .logs import log_fields
from .services import InvalidInput

log = logging.getLogger("assay.api.bodies")

LIMIT_ATTRIBUTE = "assay_body_limit"
MAX_JSON_DEPTH = 64
"""Deeper JSON than any API family's documents; deeper still would exhaust the recursion of
the code that walks it."""


@dataclass(frozen=True)
class BodyLimit:
    max_bytes: int
    timeout_seconds: float | None = None
    """None: the gateway's default."""


class BodyRefused(StarletteHTTPException):
    """A body over its limit or past its deadline. An HTTPException, so FastAPI's own body
    parsing (for `Body()` parameters) passes it on to the error handlers unchanged."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(status, message, headers={"Connection": "close"})
        self.code = code


def body_limit(max_bytes: int, timeout_seconds: float | None = None) -> Callable:
    """Decorate an endpoint: its body may be up to `max_bytes` and take up to `timeout_seconds`."""

    def mark(endpoint: Callable) -> Callable:
        setattr(endpoint, LIMIT_ATTRIBUTE, BodyLimit(max_bytes, timeout_seconds))
        return endpoint

    return mark


def limit_routes(router: APIRouter, max_bytes: int, timeout_seconds: float | None = None) -> APIRouter:
    """Every route of `router` takes bodies up to `max_bytes`."""
    for route in router.routes:
        body_limit(max_bytes, timeout_seconds)(route.endpoint)
    return router


def too_large(max_bytes: int) -> BodyRefused:
    return BodyRefused(413, "too_large", f"the request body is larger than the limit of {max_bytes} bytes")


def declared_length(scope: Scope) -> int | None:
    value = Headers(scope=scope).get("content-length")
    return int(value) if value and value.isdigit() else None


class LimitedBody:
    """One request's body as its route reads it: counted against the route's limit and timed
    from the first read. Messages after the body (a disconnect) pass untouched."""

    def __init__(self, scope: Scope, receive: Receive, default: BodyLimit):
        self.scope, self._receive, self.default = scope, receive, default
        self.limit: BodyLimit | None = None
        self.deadline = 0.0
        self.received = 0
        self.complete = False
        self.aborted = False

    def route_limit(self) -> BodyLimit:
        # The router has put the matched endpoint into the (shared) scope by the time it reads.
        declared = getattr(self.scope.get("endpoint"), LIMIT_ATTRIBUTE, None) or self.default
        return BodyLimit(declared.max_bytes, declared.timeout_seconds or self.default.timeout_seconds)

    async def receive(self) -> Message:
        if self.complete:
            return await self._receive()
        if self.limit is None:
            self.limit = self.route_limit()
            length = declared_length(self.scope)
            if length is not None and length > self.limit.max_bytes:
                raise too_large(self.limit.max_bytes)
            self.deadline = anyio.current_time() + self.limit.timeout_seconds
        try:
            with anyio.fail_after(max(0.0, self.deadline - anyio.current_time())):
                message = await self._receive()
        except TimeoutError:
            raise BodyRefused(
                408, "request_timeout", f"the request body did not arrive within {self.limit.timeout_seconds:g} seconds"
            ) from None
        if message["type"] == "http.disconnect":
            self.aborted = True
            log_fields(
                log,
                "request body aborted: the client disconnected",
                method=self.scope["method"],
                path=self.scope["path"],
                received=self.received,
            )
        if message["type"] != "http.request":
            self.complete = True
            return message
        self.received += len(message.get("body", b""))
        if self.received > self.limit.max_bytes:
            raise too_large(self.limit.max_bytes)
        self.complete = not message.get("more_body", False)
        return message


class BodyLimits:
    """ASGI middleware: every HTTP request's body is a LimitedBody."""

    def __init__(self, app: ASGIApp, default: BodyLimit):
        self.app, self.default = app, default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = LimitedBody(scope, receive, self.default)
        try:
            await self.app(scope, body.receive, send)
        except ClientDisconnect:
            if not body.aborted:
                raise
            # Logged as one line when it happened. The client is gone, but the middleware around
            # this one (request metrics) expects an answer.
            request = Request(scope)
            render = request.app.state.error_shapes.renderer_for(request.url.path)
            await render(request, 400, "incomplete_body", "the client disconnected before the body was complete")(
                scope, receive, send
            )


def install_body_limits(app: FastAPI, settings) -> None:
    app.add_middleware(BodyLimits, default=BodyLimit(settings.body_max_bytes, settings.body_timeout_seconds))


# --- JSON bodies ---------------------------------------------------------------------------------


def json_depth(value: Any) -> int:
    """How deeply `value` nests lists and objects; iterative, so any depth can be measured."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            pending.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def shallow(value: Any) -> Any:
    if json_depth(value) > MAX_JSON_DEPTH:
        raise ValueError(f"nests deeper than {MAX_JSON_DEPTH} levels")
    return value


JsonBody = Annotated[Any, Body(), AfterValidator(shallow)]
"""A body parameter of any JSON within MAX_JSON_DEPTH: FastAPI parses it, this bounds it."""


def json_document(raw: bytes | str, what: str = "the body") -> Any:
    """`raw` as JSON; not JSON, or nested deeper than MAX_JSON_DEPTH, is the client's error (400)."""
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        raise InvalidInput(f"{what} is not valid JSON (or nests deeper than {MAX_JSON_DEPTH} levels)") from None
    try:
        return shallow(value)
    except ValueError as exc:
        raise InvalidInput(f"{what} {exc}") from None
