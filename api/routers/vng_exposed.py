"""The exposed URLs of VNG consumer sessions: `/vng/exposed/<session uuid>/<service>/<path>`
forwards any method, query, headers and body to the session type's base URL for `service`
plus `<path>`, answers with the target's response, and records the call for the session's
result.

As VNG does, URLs of the target inside textual bodies are rewritten: a response that links to
`https://target/api/quotes/1` links to the exposed URL instead, and a request body that names
an exposed URL reaches the target with the target's URL. Hop-by-hop headers, Host and
Content-Length are not forwarded; the caller's Authorization is (it is meant for the target,
not for Assay). The recorded copy redacts Authorization, Cookie and Set-Cookie values.

No Assay token is needed: the software under test calls these URLs as if they were the API
itself. The session's random uuid is the key, and a stopped session's URLs answer 404.
"""

from __future__ import annotations

import base64
import time

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from ..errors import ApiError
from ..services.vng import EXPOSED_PREFIX, MAX_RECORDED_BODY, VngService, exposed_url

PREFIX = "/vng/"
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
MAX_FORWARDED_BODY = 10 * 1024 * 1024
FORWARD_TIMEOUT_SECONDS = 30.0
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
              "transfer-encoding", "upgrade"}
NOT_FORWARDED = HOP_BY_HOP | {"host", "content-length"}
NOT_RETURNED = HOP_BY_HOP | {"content-length", "content-encoding"}
REDACTED = {"authorization", "cookie", "set-cookie"}
TEXTUAL = ("json", "text/", "xml", "javascript", "x-www-form-urlencoded", "yaml")


def is_textual(content_type: str | None) -> bool:
    content_type = (content_type or "").lower()
    return any(marker in content_type for marker in TEXTUAL)


def rewrite(body: bytes, content_type: str | None, replacements: list[tuple[str, str]]) -> bytes:
    """`body` with each (old, new) URL prefix replaced, when it is UTF-8 text."""
    if not body or not is_textual(content_type):
        return body
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return body
    for old, new in replacements:
        text = text.replace(old, new)
    return text.encode("utf-8")


def recorded_body(body: bytes) -> tuple[str, str, bool]:
    """(text or base64, "text" | "base64", cut) of at most MAX_RECORDED_BODY bytes."""
    cut = len(body) > MAX_RECORDED_BODY
    body = body[:MAX_RECORDED_BODY]
    try:
        return body.decode("utf-8"), "text", cut
    except UnicodeDecodeError:
        return base64.b64encode(body).decode(), "base64", cut


def recorded_headers(pairs) -> list[list[str]]:
    return [[name, "<redacted>" if name.lower() in REDACTED else value] for name, value in pairs]


def build_router(services) -> APIRouter:
    vng = VngService(services.kube, services.store, services.settings.public_url)
    public_url = services.settings.public_url
    router = APIRouter(tags=["vng"])

    async def forward(session_uuid: str, service: str, request: Request, path: str = "") -> Response:
        record, base = await run_in_threadpool(vng.running_session, session_uuid, service)
        body = await request.body()
        if len(body) > MAX_FORWARDED_BODY:
            raise ApiError(413, f"Request bodies of at most {MAX_FORWARDED_BODY} bytes are forwarded.")
        exposed = {name: exposed_url(public_url, record["uuid"], name).rstrip("/")
                   for name in record["services"]}
        to_target = [(exposed[name], url) for name, url in record["services"].items()]
        to_client = [(url, exposed[name]) for name, url in record["services"].items()]
        query = request.url.query
        target = f"{base}/{path}" + (f"?{query}" if query else "")
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in NOT_FORWARDED]
        sent = rewrite(body, request.headers.get("content-type"), to_target)
        call = {"service": service, "method": request.method, "path": "/" + path, "query": query, "url": target,
                "requestHeaders": recorded_headers(headers), "time": time.time()}
        call["requestBody"], call["requestBodyEncoding"], call["requestTruncated"] = recorded_body(sent)
        started = time.monotonic()
        try:
            async with httpx.AsyncClient(timeout=FORWARD_TIMEOUT_SECONDS, follow_redirects=False) as client:
                reply = await client.request(request.method, target, headers=headers, content=sent)
        except httpx.HTTPError as exc:
            call.update(error=f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
                        responseTimeMs=(time.monotonic() - started) * 1000)
            await run_in_threadpool(vng.record_call, record, call)
            raise ApiError(502, "The endpoint is not responding", "bad_gateway") from None
        content = rewrite(reply.content, reply.headers.get("content-type"), to_client)
        call.update(status=reply.status_code, reason=reply.reason_phrase,
                    responseHeaders=recorded_headers(reply.headers.multi_items()),
                    responseTimeMs=(time.monotonic() - started) * 1000)
        call["responseBody"], call["responseBodyEncoding"], call["responseTruncated"] = recorded_body(reply.content)
        await run_in_threadpool(vng.record_call, record, call)
        returned = [(k, v) for k, v in reply.headers.multi_items() if k.lower() not in NOT_RETURNED]
        response = Response(content=content, status_code=reply.status_code)
        for name, value in returned:
            if name.lower() == "location":
                value = rewrite(value.encode(), "text/plain", to_client).decode()
            response.headers.append(name, value)
        return response

    async def forward_root(session_uuid: str, service: str, request: Request) -> Response:
        return await forward(session_uuid, service, request)

    router.add_api_route(EXPOSED_PREFIX + "/{session_uuid}/{service}/{path:path}", forward, methods=METHODS)
    router.add_api_route(EXPOSED_PREFIX + "/{session_uuid}/{service}", forward_root, methods=METHODS)
    return router
