"""The exposed URLs of VNG consumer sessions: `/vng/exposed/<session uuid>/<service>/<path>`
forwards any method, query, headers and body to the session type's base URL for `service`
plus `<path>`, answers with the target's response, and records the call for the session's
result.

As VNG does, URLs of the target inside textual bodies are rewritten: a response that links to
`https://target/api/quotes/1` links to the exposed URL instead, and a request body that names
an exposed URL reaches the target with the target's URL. The caller's Authorization is
forwarded (it is meant for the target, not for Assay); hop-by-hop headers, Host,
Content-Length, and the credentials a browser attaches by itself (Cookie,
Proxy-Authorization) are not. The recorded copy redacts Authorization, Cookie and Set-Cookie.

The base URL is the tenant's own choice, so the forwarder is the gateway reaching wherever a
tenant points it: every connection obeys the egress policy (assay.runner.egress), one tenant
has at most a few forwards in flight, each within a total deadline, and bodies both ways are
capped. What the target answers is the tenant's content, served so that it can never act as
the gateway's page: on its own host name where `ASSAY_EXPOSED_URL` is set, and always
sandboxed (`Content-Security-Policy: sandbox`: an opaque origin, no scripts, no cookies),
`nosniff`, as an attachment when it is a type a browser would render actively, and without
`Set-Cookie`.

No Assay token is needed: the software under test calls these URLs as if they were the API
itself. The session's random uuid is the key, and a stopped session's URLs answer 404.
"""

from __future__ import annotations

import base64
import time
from urllib.parse import urlsplit

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from assay.runner.egress import EgressDenied

from ..errors import ApiError
from ..services.outbound import OutboundBusy, OutboundTooLarge
from ..services.vng import EXPOSED_PREFIX, MAX_RECORDED_BODY, VngService, exposed_url

PREFIX = "/vng/"
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
MAX_FORWARDED_BODY = 10 * 1024 * 1024
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
}
NOT_FORWARDED = HOP_BY_HOP | {"host", "content-length", "cookie"}
# The target may not set cookies or relax the isolation headers the gateway adds.
NOT_RETURNED = HOP_BY_HOP | {
    "content-length",
    "content-encoding",
    "set-cookie",
    "set-cookie2",
    "content-security-policy",
    "content-security-policy-report-only",
    "x-content-type-options",
    "content-disposition",
    "x-frame-options",
}
ISOLATION = {
    "Content-Security-Policy": "sandbox; default-src 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Resource-Policy": "same-origin",
}
# Types a browser renders or runs rather than saves: served as attachments.
ACTIVE = ("html", "svg", "xml", "javascript", "ecmascript", "xsl", "pdf", "multipart")
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


def isolation_headers(content_type: str | None) -> dict[str, str]:
    headers = dict(ISOLATION)
    if not content_type or any(marker in content_type.lower() for marker in ACTIVE):
        headers["Content-Disposition"] = "attachment"
    return headers


def build_router(services) -> APIRouter:
    vng = VngService(services.kube, services.store, services.settings.public_url)
    outbound = services.outbound
    public_url = services.settings.exposed_url or services.settings.public_url
    own_host = urlsplit(services.settings.exposed_url).netloc.lower() if services.settings.exposed_url else None
    router = APIRouter(tags=["vng"])

    async def forward(session_uuid: str, service: str, request: Request, path: str = "") -> Response:
        if own_host is not None and request.headers.get("host", "").lower() != own_host:
            raise ApiError(404, "Not found.")  # tenant content only on its own host name
        record, base = await run_in_threadpool(vng.running_session, session_uuid, service)
        body = await request.body()  # at most MAX_FORWARDED_BODY, in time: api/bodies.py (vng.py sets it)
        exposed = {name: exposed_url(public_url, record["uuid"], name).rstrip("/") for name in record["services"]}
        to_target = [(exposed[name], url) for name, url in record["services"].items()]
        to_client = [(url, exposed[name]) for name, url in record["services"].items()]
        query = request.url.query
        target = f"{base}/{path}" + (f"?{query}" if query else "")
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in NOT_FORWARDED]
        sent = rewrite(body, request.headers.get("content-type"), to_target)
        call = {
            "service": service,
            "method": request.method,
            "path": "/" + path,
            "query": query,
            "url": target,
            "requestHeaders": recorded_headers(headers),
            "time": time.time(),
        }
        call["requestBody"], call["requestBodyEncoding"], call["requestTruncated"] = recorded_body(sent)
        started = time.monotonic()

        async def failed(status: int, message: str, code: str, why: str) -> ApiError:
            call.update(error=why, responseTimeMs=(time.monotonic() - started) * 1000)
            await run_in_threadpool(vng.record_call, record, call)
            return ApiError(status, message, code)

        try:
            async with outbound.slot(record["namespace"]):
                outgoing = outbound.client.build_request(request.method, target, headers=headers, content=sent)
                reply = await outbound.client.send(outgoing, stream=True)
                try:
                    answer = await outbound.read_capped(reply, MAX_FORWARDED_BODY)
                finally:
                    await reply.aclose()
        except OutboundBusy as exc:
            raise ApiError(429, f"Too many requests in flight: {exc}.", "throttled") from None
        except EgressDenied:
            raise await failed(
                403,
                "The endpoint's address is not one the gateway may reach (egress policy).",
                "permission_denied",
                "egress policy: address not allowed",
            ) from None
        except OutboundTooLarge:
            raise await failed(
                502, f"The endpoint answered more than {MAX_FORWARDED_BODY} bytes.", "bad_gateway", "answer too large"
            ) from None
        except TimeoutError:
            raise await failed(
                504,
                "The endpoint did not answer in time",
                "gateway_timeout",
                f"no complete answer within {outbound.deadline_seconds:g} s",
            ) from None
        except httpx.HTTPError as exc:
            raise await failed(
                502,
                "The endpoint is not responding",
                "bad_gateway",
                f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
            ) from None
        content = rewrite(answer, reply.headers.get("content-type"), to_client)
        call.update(
            status=reply.status_code,
            reason=reply.reason_phrase,
            responseHeaders=recorded_headers(reply.headers.multi_items()),
            responseTimeMs=(time.monotonic() - started) * 1000,
        )
        call["responseBody"], call["responseBodyEncoding"], call["responseTruncated"] = recorded_body(answer)
        await run_in_threadpool(vng.record_call, record, call)
        response = Response(content=content, status_code=reply.status_code)
        for name, value in reply.headers.multi_items():
            if name.lower() in NOT_RETURNED:
                continue
            if name.lower() == "location":
                value = rewrite(value.encode(), "text/plain", to_client).decode()
            response.headers.append(name, value)
        for name, value in isolation_headers(reply.headers.get("content-type")).items():
            response.headers[name] = value
        return response

    async def forward_root(session_uuid: str, service: str, request: Request) -> Response:
        return await forward(session_uuid, service, request)

    router.add_api_route(EXPOSED_PREFIX + "/{session_uuid}/{service}/{path:path}", forward, methods=METHODS)
    router.add_api_route(EXPOSED_PREFIX + "/{session_uuid}/{service}", forward_root, methods=METHODS)
    return router
