"""The Runscope API's wire format, shared by its routers: the `{data, meta, error}` envelope
on every response (errors included), the paths it owns, and buckets as namespaces.

A bucket is a namespace and its key is the namespace's name, so `kubectl get monitors -n
<bucket key>` shows a bucket's tests. A principal reaches the buckets its credential reaches
(an org credential: the namespaces of its org, i.e. its Runscope team; a project credential:
its own namespace); any other key is a 404, whether or not the namespace exists, so a caller
learns nothing about buckets it cannot use.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from .. import openapi
from ..auth import Principal
from ..auth.policy import can_reach
from ..errors import ApiError
from ..kube import NotFound as KubeNotFound

# Paths the Runscope API owns, for its error shape. The root resource ("/") is Runscope's too,
# but registering "/" would claim every other family's unknown paths; its handler cannot fail.
ERROR_PREFIXES = ("/account", "/regions", "/buckets", "/teams/", "/team/", "/v1/buckets", "/v1/teams/")


SCOPES = {
    "api:read": "Read buckets, the account and regions",
    "test:read": "Read tests, steps, environments, schedules and results",
    "test:write": "Create, change and delete tests",
    "message:write": "Create buckets",
    "bucket:write": "Delete buckets, change custom e-mails and the team",
    "team:read": "Read the team",
    "account:email": "See e-mail addresses",
}


def security_schemes(public_url: str) -> dict:
    return {
        "runscopeOAuth2": {
            "type": "oauth2",
            "description": "The token is a JWT sent as `Authorization: Bearer <token>`.",
            "flows": {
                "authorizationCode": {
                    "authorizationUrl": f"{public_url}/signin/oauth/authorize",
                    "tokenUrl": f"{public_url}/signin/oauth/access_token",
                    "scopes": dict(SCOPES),
                },
                "clientCredentials": {"tokenUrl": f"{public_url}/oauth/token", "scopes": dict(SCOPES)},
            },
        },
        "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
    }


FAMILY = openapi.ApiFamily(
    name="runscope",
    title="Assay Runscope API",
    description="The Runscope / BlazeMeter API Monitoring API, served by Assay: buckets, tests, steps, "
    "environments, schedules, results, metrics, usage, team administration and the trigger URL. Send "
    "`Authorization: Bearer <token>`. Every answer is the `{data, meta, error}` envelope.",
    security_schemes=security_schemes,
    error_name="RunscopeError",
    error_schema={
        "type": "object",
        "required": ["data", "meta", "error"],
        "properties": {
            "data": {"type": "null"},
            "meta": {"type": "object", "required": ["status"], "properties": {"status": {"const": "error"}}},
            "error": {
                "type": "object",
                "required": ["status", "code", "message"],
                "properties": {
                    "status": {"type": "integer"},
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                },
            },
        },
    },
    errors={
        400: "A malformed or invalid body or parameter.",
        401: "Missing or bad token.",
        403: "The token lacks a scope this endpoint needs.",
        404: "No such id, or a bucket or team the token does not reach.",
    },
)

NAMESPACE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
"""A key that cannot name a namespace is not looked up on the API server."""

JSON_OBJECT_BODY = {"requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}}}
"""For endpoints that read their JSON body themselves (whatever the Content-Type)."""
JSON_ARRAY_BODY = {
    "requestBody": {"content": {"application/json": {"schema": {"type": "array", "items": {"type": "object"}}}}}
}


def ok(data: Any, status: int = 200, **meta: Any) -> JSONResponse:
    """A success envelope; `meta` adds to {"status": "success"} (paging, links)."""
    return JSONResponse({"data": data, "meta": {"status": "success", **meta}, "error": None}, status_code=status)


def deleted() -> Response:
    """204 No Content, as Runscope answers a delete."""
    return Response(status_code=204)


def render_error(request: Request, status: int, code: str, message: str) -> JSONResponse:
    """Runscope's error envelope: data null, meta.status "error", and the error object."""
    return JSONResponse(
        {"data": None, "meta": {"status": "error"}, "error": {"status": status, "code": code, "message": message}},
        status_code=status,
    )


def install_error_shape(app: FastAPI) -> None:
    """Idempotent: each Runscope router calls it from its own install()."""
    if getattr(app.state, "runscope_errors_installed", False):
        return
    for prefix in ERROR_PREFIXES:
        app.state.error_shapes.register(prefix, render_error)
    app.state.runscope_errors_installed = True


def bucket_namespace(services, principal: Principal, bucket_key: str) -> str:
    """The namespace behind `bucket_key`, if this principal reaches it; else a 404.

    The tenancy index follows a watch and may not have seen a bucket created a moment ago (by
    this replica or another), so a key it does not know is looked up on the API server once."""
    index = services.auth.tenancy.index
    if index.namespace(bucket_key) is None and NAMESPACE_NAME.fullmatch(bucket_key):
        try:
            index.put_namespace(services.kube.namespace(bucket_key))
        except KubeNotFound:
            pass
    if can_reach(principal, index.namespace(bucket_key)):
        return bucket_key
    raise ApiError(404, f"bucket {bucket_key!r} not found", "not_found")
