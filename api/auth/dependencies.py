"""FastAPI dependencies that turn a request's Authorization header into a Principal.

    principal: Principal = Depends(require_bearer("LOADTEST_LIST"))
    principal: Principal = Depends(require_static_token("loadmill"))

They read the Authenticator from `request.app.state.services.auth` and raise `ApiError`, which
the family's error renderer shapes: 401 (with WWW-Authenticate) for a missing, malformed,
forged, expired or revoked token, 403 for a missing scope, 503 while the credential index is
not in step with the API server.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable

from fastapi import Request

from ..errors import ApiError
from .policy import Principal
from .service import AuthError, Authenticator, NotReady

REALM = "assay"
SCOPES_ATTRIBUTE = "assay_token_scopes"
"""Set on the dependencies below: the scopes their token must carry, for the OpenAPI documents."""

STATIC_TOKEN_FAMILIES = {
    # family: (Authorization scheme or None for the bare token, the scope the token must carry,
    #          whether `Basic base64("<token>:")` is accepted too)
    "loadmill": (None, "loadmill", True),
    "vng": ("token", "vng", False),
}


def _authenticator(request: Request) -> Authenticator:
    return request.app.state.services.auth


def _quoted(text: str) -> str:
    return text.replace("\\", "").replace('"', "'")


def _not_ready(exc: NotReady) -> ApiError:
    return ApiError(503, str(exc), "temporarily_unavailable", headers={"Retry-After": "2"})


def _unauthorized(scheme: str, message: str, error: str | None) -> ApiError:
    challenge = f'{scheme} realm="{REALM}"'
    if error:
        challenge += f', error="{error}", error_description="{_quoted(message)}"'
    return ApiError(401, message, error or "unauthorized", headers={"WWW-Authenticate": challenge})


def token_requirement(dependency) -> tuple[str, ...] | None:
    """The scopes a `require_bearer`/`require_static_token` dependency wants; None for any other callable."""
    return getattr(dependency, SCOPES_ATTRIBUTE, None)


def _check_scopes(principal: Principal, needed: frozenset[str], scheme: str) -> Principal:
    missing = sorted(needed - principal.scopes)
    if missing:
        raise ApiError(
            403,
            f"the token lacks the scope(s) {' '.join(missing)}",
            "insufficient_scope",
            headers={
                "WWW-Authenticate": f'{scheme} realm="{REALM}", error="insufficient_scope", '
                f'scope="{" ".join(sorted(needed))}"'
            },
        )
    return principal


def require_bearer(*scopes: str) -> Callable[..., Principal]:
    """`Authorization: Bearer <JWT>` from POST /oauth/token (or the Runscope web flow), carrying
    every one of `scopes`. The credential behind the token is re-checked on each request."""
    needed = frozenset(scopes)

    async def bearer_principal(request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.strip().partition(" ")
        if not header:
            raise _unauthorized("Bearer", "an access token is required: Authorization: Bearer <token>", None)
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("Bearer", "expected Authorization: Bearer <token>", "invalid_request")
        try:
            principal = _authenticator(request).verify_access_token(token.strip())
        except NotReady as exc:
            raise _not_ready(exc) from None
        except AuthError as exc:
            raise _unauthorized("Bearer", exc.message, "invalid_token") from None
        return _check_scopes(principal, needed, "Bearer")

    bearer_principal.__qualname__ = f"require_bearer({', '.join(sorted(needed))})"
    setattr(bearer_principal, SCOPES_ATTRIBUTE, tuple(sorted(needed)))
    return bearer_principal


def basic_token(credentials: str) -> str | None:
    """The token of `Basic base64("<token>:")`, as Loadmill's CLI sends it (the token as the
    user, an empty password); None when the credentials are not of that form."""
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, colon, password = decoded.partition(":")
    if not colon or password or not user:
        return None
    return user


def require_static_token(family: str) -> Callable[..., Principal]:
    """A static API token (`<client-id>.<client-secret>`, see tokens.format_static_token) of a
    credential with the static_token grant and the family's scope:
    - "loadmill": `Authorization: <token>` (the bare token, as the REST API documents it) or
      `Authorization: Basic base64("<token>:")` (as Loadmill's CLI and node module send it);
    - "vng": `Authorization: Token <token>`."""
    if family not in STATIC_TOKEN_FAMILIES:
        raise ValueError(f"unknown static-token family {family!r}; known: {sorted(STATIC_TOKEN_FAMILIES)}")
    scheme, scope, basic = STATIC_TOKEN_FAMILIES[family]
    challenge_scheme = "Token"
    needed = frozenset({scope})

    async def static_principal(request: Request) -> Principal:
        header = request.headers.get("authorization", "").strip()
        if not header:
            raise _unauthorized(challenge_scheme, "an API token is required in the Authorization header", None)
        given, _, credentials = header.partition(" ")
        if basic and given.lower() == "basic":
            token = basic_token(credentials) or ""
            if not token:
                raise _unauthorized(
                    challenge_scheme, 'expected Authorization: Basic base64("<token>:")', "invalid_request"
                )
        elif scheme is None:
            token = header
        else:
            given, _, token = header.partition(" ")
            if given.lower() != scheme or not token.strip():
                raise _unauthorized(
                    challenge_scheme, f"expected Authorization: {scheme.title()} <token>", "invalid_request"
                )
        try:
            principal = _authenticator(request).verify_static_token(token.strip())
        except NotReady as exc:
            raise _not_ready(exc) from None
        except AuthError as exc:
            raise _unauthorized(challenge_scheme, exc.message, "invalid_token") from None
        return _check_scopes(principal, needed, challenge_scheme)

    static_principal.__qualname__ = f"require_static_token({family})"
    setattr(static_principal, SCOPES_ATTRIBUTE, tuple(sorted(needed)))
    return static_principal
