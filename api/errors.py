"""Errors in each API family's own shape.

Every family raises `ApiError` (or lets FastAPI raise validation and routing errors); one set
of handlers renders them with the renderer registered for the request's path prefix, so an XTC
client gets XTC errors, a Loadmill client Loadmill errors, and nobody gets a 500 for bad input.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

Renderer = Callable[[Request, int, str, str], JSONResponse]
"""(request, status, code, message) -> response."""

CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


class ApiError(Exception):
    """A client-facing error: HTTP status, a short machine-readable code, a human message."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or HTTPStatus(status).phrase.lower().replace(" ", "_")
        self.headers = headers or {}


def default_renderer(request: Request, status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


class ErrorShapes:
    def __init__(self) -> None:
        self._by_prefix: list[tuple[str, Renderer]] = []

    def register(self, prefix: str, renderer: Renderer) -> None:
        self._by_prefix.append((prefix, renderer))
        self._by_prefix.sort(key=lambda item: len(item[0]), reverse=True)

    def renderer_for(self, path: str) -> Renderer:
        for prefix, renderer in self._by_prefix:
            if path.startswith(prefix):
                return renderer
        return default_renderer


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "request"
        parts.append(f"{where}: {err.get('msg')}")
    return "; ".join(parts)


class AsgiFunction:
    """A middleware that is one function `handler(scope, receive, send, app)`."""

    def __init__(self, app, handler):
        self.app, self.handler = app, handler

    async def __call__(self, scope, receive, send) -> None:
        await self.handler(scope, receive, send, self.app)


def install_error_handlers(app: FastAPI) -> ErrorShapes:
    shapes = ErrorShapes()
    app.state.error_shapes = shapes

    def render(request: Request, status: int, code: str, message: str, headers: dict | None = None):
        response = shapes.renderer_for(request.url.path)(request, status, code, message)
        for name, value in (headers or {}).items():
            response.headers[name] = value
        return response

    async def reject_control_characters(scope, receive, send, app) -> None:
        # Routes match with `$`, which also matches before a trailing newline: `/testsessions/%0A`
        # would answer as the list `/testsessions/`. No path of any family has a control character.
        # A plain ASGI middleware: one on BaseHTTPMiddleware inside the body limits (bodies.py)
        # would read the body in a task of its own, where a refusal escapes the error handlers.
        if scope["type"] == "http" and CONTROL_CHARACTERS.search(scope["path"]):
            response = render(Request(scope), 400, "invalid_request", "the path must not contain control characters")
            await response(scope, receive, send)
            return
        await app(scope, receive, send)

    app.add_middleware(AsgiFunction, handler=reject_control_characters)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return render(request, exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        return render(request, 400, "invalid_request", _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        code = getattr(exc, "code", None) or HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_")
        return render(request, exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    return shapes
