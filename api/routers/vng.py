"""The VNG API test platform's REST API (seeds/004) under `/api/v1`: session types, consumer
test sessions, provider runs, their badges, and the openAPIinspector.

Authentication is VNG's (DRF TokenAuthentication): `Authorization: Token <key>` with the static
API token of a ClientCredential that has the `vng` scope. A VNG account is one namespace, the
credential's own. Errors are DRF's: `{"detail": "..."}`, and `{"<field>": ["..."]}` for a body
that does not validate. Paths answer with and without the trailing slash DRF routers add.

The two badge endpoints answer without a token, as VNG's do: badges are embedded in READMEs,
which cannot send one. They are found only by the run's random uuid and tell nothing but the
outcome. The exposed URLs of a session (vng_exposed.py) are likewise reached by uuid.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Optional

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from .. import openapi
from ..auth import Principal, require_static_token
from ..bodies import JsonBody, limit_routes
from ..errors import ApiError
from ..services.openapi_inspector import InspectionInputError, inspect_url
from ..services.outbound import OutboundBusy
from ..services.shields import badge_svg, wants_svg
from ..services.vng import FieldErrors, VngService
from . import vng_exposed

PREFIX = "/api/v1"
ERROR_PREFIXES = (
    "/api/v1/sessiontypes",
    "/api/v1/testsessions",
    "/api/v1/testsession-run-shield",
    "/api/v1/provider-run",
    "/api/v1/openAPIinspector",
)
"""Explicit prefixes: /api/v1/test... is Loadmill's, and the longest registered prefix wins."""

FAMILY = openapi.ApiFamily(
    name="vng",
    title="Assay VNG API test platform API",
    description="The VNG API test platform's REST API, served by Assay: session types, consumer test sessions, "
    "provider runs, badges and the openAPIinspector. Send `Authorization: Token "
    '<client-id>.<client-secret>`. Errors are DRF\'s: `{"detail"}`, or field errors.',
    security_schemes=lambda public_url: {
        "vngToken": {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Token <client-id>.<client-secret>`: the static API token of a ClientCredential with the "
            "`vng` scope.",
        }
    },
    error_name="VngError",
    error_schema={
        "type": "object",
        "minProperties": 1,
        "description": '`{"detail": "..."}`, or field errors such as `{"session_type": ["This field is required."]}`.',
    },
    errors={
        400: "Field errors in the body.",
        401: "Missing, malformed, unknown or expired token.",
        403: "The token lacks the `vng` scope or reaches no VNG account.",
        404: "Not found.",
    },
)


def render_error(request: Request, status: int, code: str, message: str) -> JSONResponse:
    if code == FieldErrors.CODE:
        return JSONResponse(json.loads(message), status_code=status)
    return JSONResponse({"detail": message}, status_code=status)


def account_namespace(services, principal: Principal) -> str:
    """The VNG account of the token: its credential's namespace, when the credential reaches it."""
    reachable = services.auth.tenancy.namespaces_for(principal)
    if principal.namespace in reachable:
        return principal.namespace
    if len(reachable) == 1:
        return reachable[0]
    raise ApiError(403, "You do not have permission to perform this action.", "forbidden")


def shield_response(document: dict, format: Optional[str], request: Request) -> Response:
    headers = {"Cache-Control": "no-cache, max-age=0"}
    if wants_svg(format, request.headers.get("accept")):
        return Response(badge_svg(document), media_type="image/svg+xml", headers=headers)
    return JSONResponse(document, headers=headers)


def build_router(services) -> APIRouter:
    vng = VngService(
        services.kube, services.store, services.settings.public_url, exposed_base=services.settings.exposed_url
    )
    router = APIRouter(prefix=PREFIX, tags=["vng"])
    authenticated = require_static_token("vng")

    def route(path: str, methods: list[str], status_code: int = 200) -> Callable:
        """Register under `path` and `path/`: DRF clients send the slash, others may not."""

        def register(endpoint: Callable) -> Callable:
            for variant in (path, path + "/"):
                router.add_api_route(variant, endpoint, methods=methods, status_code=status_code)
            return endpoint

        return register

    def account(principal: Principal) -> str:
        return account_namespace(services, principal)

    @route("/sessiontypes", ["GET"])
    def list_session_types(principal: Principal = Depends(authenticated)) -> list:
        return vng.session_types(account(principal))

    @route("/sessiontypes/{id}", ["GET"])
    def get_session_type(id: str, principal: Principal = Depends(authenticated)) -> dict:
        return vng.session_type(account(principal), id)

    @route("/testsessions", ["GET"])
    def list_sessions(principal: Principal = Depends(authenticated)) -> list:
        return vng.sessions(account(principal))

    @route("/testsessions", ["POST"], status_code=201)
    def create_session(body: JsonBody = None, principal: Principal = Depends(authenticated)) -> dict:
        return vng.create_session(account(principal), body, principal.credential)

    @route("/testsessions/{id}", ["GET"])
    def get_session(id: str, principal: Principal = Depends(authenticated)) -> dict:
        return vng.session(account(principal), id)

    @route("/testsessions/{id}/stop", ["GET", "POST"])
    def stop_session(id: str, principal: Principal = Depends(authenticated)) -> list:
        return vng.stop_session(account(principal), id)

    @route("/testsessions/{id}/result", ["GET"])
    def session_result(id: str, principal: Principal = Depends(authenticated)) -> dict:
        return vng.session_result(account(principal), id)

    @route("/testsession-run-shield/{uuid}", ["GET"])
    def session_shield(uuid: str, request: Request, format: Optional[str] = Query(None)) -> Response:
        return shield_response(vng.session_shield(uuid), format, request)

    @route("/provider-run", ["GET"])
    def list_provider_runs(principal: Principal = Depends(authenticated)) -> list:
        return vng.provider_runs(account(principal))

    @route("/provider-run", ["POST"], status_code=201)
    def create_provider_run(body: JsonBody = None, principal: Principal = Depends(authenticated)) -> dict:
        return vng.create_provider_run(account(principal), body, principal.credential)

    @route("/provider-run/{id}", ["GET"])
    def get_provider_run(id: str, principal: Principal = Depends(authenticated)) -> dict:
        return vng.provider_run(account(principal), id)

    @route("/provider-run/{id}/result", ["GET"])
    def provider_result(id: str, principal: Principal = Depends(authenticated)) -> Any:
        return vng.provider_result(account(principal), id)

    @route("/provider-run-shield/{uuid}", ["GET"])
    def provider_shield(uuid: str, request: Request, format: Optional[str] = Query(None)) -> Response:
        return shield_response(vng.provider_shield(uuid), format, request)

    @route("/openAPIinspector", ["POST"])
    async def inspect_openapi(body: JsonBody = None, principal: Principal = Depends(authenticated)) -> dict:
        namespace = await run_in_threadpool(account, principal)
        if not isinstance(body, dict) or body.get("url") in (None, ""):
            raise FieldErrors({"url": ["This field is required."]})
        try:
            return (await inspect_url(body["url"], services.outbound, namespace)).to_dict()
        except InspectionInputError as exc:
            # VNG's own shape for this endpoint: the message itself, not a list.
            raise FieldErrors({"url": str(exc)}) from None
        except OutboundBusy as exc:
            raise ApiError(429, f"Too many requests in flight: {exc}.", "throttled") from None

    return router


def install(app: FastAPI, services) -> None:
    router = build_router(services)
    app.include_router(router)
    openapi.publish(app, FAMILY, router.routes)
    # The exposed URLs forward bodies up to their own limit, larger than the gateway's default.
    app.include_router(limit_routes(vng_exposed.build_router(services), vng_exposed.MAX_FORWARDED_BODY))
    for prefix in (*ERROR_PREFIXES, vng_exposed.PREFIX):
        app.state.error_shapes.register(prefix, render_error)
