"""OAuth 2 endpoints: XTC's client-credentials token and Runscope's web authorization flow.

POST /oauth/token                     grant_type=client_credentials (XTC) or authorization_code;
                                      form body (application/x-www-form-urlencoded; JSON accepted),
                                      client authentication by client_id + client_secret in the
                                      body OR HTTP Basic (RFC 6749 2.3.1), never both.
GET  /signin/oauth/authorize          Runscope step 1: client_id, redirect_uri, response_type=code,
                                      scope, state -> 302 to redirect_uri?code=...&state=...
POST /signin/oauth/access_token       Runscope step 3: client_id, client_secret, code,
                                      grant_type=authorization_code, redirect_uri; parameters in
                                      the query string (as Runscope's own example sends them), the
                                      form body or a JSON body.

Token response: {"access_token", "accessToken", "token_type", "expires_in", "scope"}. XTC's
API page says "look for the access_token field", its v76 notes say `accessToken`: both keys
carry the same token. `token_type` is "Bearer" ("bearer" on the Runscope path, as its docs show).
Tokens expire after settings.token_ttl_seconds (1 h) on both paths; Runscope's never-expiring
tokens are not reproduced: a client gets a fresh one at any time, and long-lived access is
what static API tokens are for.

Scopes: space-separated; a subset of the credential's scopes, never more (invalid_scope);
none requested means all of them.

Who approves the authorization step: the application itself. The request must carry HTTP
Basic credentials of the very client being authorized (its client id and secret); a browser
shows its password dialog, which stands in for Runscope's confirmation screen. This grants
nothing the client_credentials grant would not: the resulting token is bounded by that
credential's scopes and tenancy. `redirect_uri` must be one of the credential's
`redirectUris`, compared exactly; an unknown client or an unregistered redirect_uri is an
error page (400), never a redirect (RFC 6749 4.1.2.1). Codes live 60 s and are single-use; a
replayed code revokes the tokens issued for it. At the exchange `redirect_uri` is required and
must be the authorization request's (RFC 6749 4.1.3). A code is used up only by the client it
was issued to, with that redirect_uri: another client's attempt leaves it (and its tokens) be.

Errors are RFC 6749 5.2 JSON, `{"error", "error_description"}`, for every path under /oauth and
/signin/oauth (including 404/405), with `Cache-Control: no-store` like every token response.
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse

from ..auth import AuthError, Authenticator, IssuedToken, NotReady
from ..auth.tokens import resolve_scopes
from ..bodies import body_limit, json_document
from ..errors import ApiError
from ..services import InvalidInput

PREFIXES = ("/oauth", "/signin/oauth")
MAX_BODY = 64 * 1024
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
BASIC_CHALLENGE = {"WWW-Authenticate": 'Basic realm="assay", charset="UTF-8"'}
STATUS_FOR = {"invalid_client": 401, "temporarily_unavailable": 503}


def oauth_error_renderer(request: Request, status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "error_description": message}, status_code=status, headers=NO_STORE)


def _error(code: str, message: str) -> ApiError:
    status = STATUS_FOR.get(code, 400)
    headers = dict(BASIC_CHALLENGE) if status == 401 else {}
    if status == 503:
        headers["Retry-After"] = "2"
    return ApiError(status, message, code, headers=headers)


# --- request parsing ----------------------------------------------------------------------------


def _pairs_from_body(body: bytes, content_type: str) -> list[tuple[str, str]]:
    if not body.strip():
        return []
    try:
        text = body.decode("utf-8")
        if content_type in ("application/x-www-form-urlencoded", ""):
            return parse_qsl(text, keep_blank_values=True)
        if content_type == "application/json":
            obj = json_document(text)
            if not isinstance(obj, dict) or not all(isinstance(v, str) for v in obj.values()):
                raise ValueError("expected a JSON object of strings")
            return list(obj.items())
    except InvalidInput as exc:
        raise _error("invalid_request", f"unreadable request body: {exc.message}") from None
    except ValueError as exc:
        raise _error("invalid_request", f"unreadable request body: {exc}") from None
    raise _error("invalid_request", "send parameters as application/x-www-form-urlencoded")


async def _params(request: Request, *, query: bool) -> dict[str, str]:
    """Parameters, each at most once (RFC 6749 3.1); empty ones count as absent."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    pairs = parse_qsl(request.url.query, keep_blank_values=True) if query else []
    pairs += _pairs_from_body(await request.body(), content_type)
    params: dict[str, str] = {}
    for key, value in pairs:
        if value == "":
            continue
        if key in params:
            raise _error("invalid_request", f"parameter {key} given more than once")
        params[key] = value
    return params


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        raise _error("invalid_client", "client authentication must use HTTP Basic or the request body")
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise _error("invalid_client", "malformed HTTP Basic credentials") from None
    if not sep:
        raise _error("invalid_client", "malformed HTTP Basic credentials")
    # RFC 6749 2.3.1: client id and secret are form-urlencoded before Basic encoding.
    return unquote_plus(user), unquote_plus(password)


def _client_credentials(request: Request, params: dict[str, str]) -> tuple[str, str]:
    basic = _basic_credentials(request)
    if basic is not None:
        if "client_secret" in params:
            raise _error("invalid_request", "use one client authentication method: HTTP Basic or the body")
        if params.get("client_id", basic[0]) != basic[0]:
            raise _error("invalid_request", "client_id does not match the HTTP Basic user")
        return basic
    if "client_id" not in params or "client_secret" not in params:
        raise _error("invalid_client", "client authentication required: client_id and client_secret")
    return params["client_id"], params["client_secret"]


# --- responses ----------------------------------------------------------------------------------


def _token_response(issued: IssuedToken, token_type: str) -> JSONResponse:
    return JSONResponse(
        {
            "access_token": issued.access_token,
            "accessToken": issued.access_token,
            "token_type": token_type,
            "expires_in": issued.expires_in,
            "scope": " ".join(issued.scopes),
        },
        headers=NO_STORE,
    )


def _with_query(uri: str, params: dict[str, str | None]) -> str:
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query += [(k, v) for k, v in params.items() if v is not None]
    return urlunsplit(parts._replace(query=urlencode(query), fragment=""))


def _redirect(uri: str, params: dict[str, str | None]) -> RedirectResponse:
    return RedirectResponse(_with_query(uri, params), status_code=302, headers=NO_STORE)


# --- the endpoints ------------------------------------------------------------------------------


async def _exchange(
    auth: Authenticator, request: Request, *, query: bool, allowed: tuple[str, ...], token_type: str
) -> JSONResponse:
    params = await _params(request, query=query)
    grant_type = params.get("grant_type")
    if grant_type is None:
        raise _error("invalid_request", "grant_type is required")
    if grant_type not in allowed:
        raise _error("unsupported_grant_type", f"grant_type must be one of: {', '.join(allowed)}")
    if grant_type == "authorization_code" and "code" not in params:
        raise _error("invalid_request", "code is required")
    client_id, client_secret = _client_credentials(request, params)
    try:
        record = auth.authenticate_client(client_id, client_secret)
        if grant_type == "client_credentials":
            issued = auth.client_credentials_token(record, params.get("scope"))
        else:
            issued = auth.authorization_code_token(record, params["code"], params.get("redirect_uri"))
    except NotReady as exc:
        raise _error("temporarily_unavailable", str(exc)) from None
    except AuthError as exc:
        raise _error(exc.code, exc.message) from None
    return _token_response(issued, token_type)


async def _authorize(auth: Authenticator, request: Request):
    params = await _params(request, query=True)
    client_id, redirect_uri = params.get("client_id"), params.get("redirect_uri")
    if not client_id or not redirect_uri:
        raise _error("invalid_request", "client_id and redirect_uri are required")
    try:
        record = auth.lookup_client(client_id)
    except NotReady as exc:
        raise _error("temporarily_unavailable", str(exc)) from None
    if record is None or redirect_uri not in record.redirect_uris:
        # Never redirect to an unverified URI: that would make this an open redirector.
        raise _error("invalid_request", "unknown client_id, or redirect_uri is not one of its redirectUris")
    approver = _basic_credentials(request)
    if approver is None or approver[0] != client_id or not auth.secret_valid(record, approver[1]):
        raise ApiError(
            401,
            "approve this authorization by signing in as the application: HTTP Basic "
            "with its client id and client secret",
            "access_denied",
            headers=BASIC_CHALLENGE,
        )
    state = params.get("state")

    def refuse(code: str, message: str) -> RedirectResponse:
        return _redirect(redirect_uri, {"error": code, "error_description": message, "state": state})

    problem = auth.problem(record)
    if problem:
        return refuse("access_denied", problem)
    if params.get("response_type") != "code":
        return refuse("unsupported_response_type", "response_type must be code")
    if "authorization_code" not in record.grant_types:
        return refuse("unauthorized_client", "this client may not use the authorization_code grant")
    try:
        scopes = resolve_scopes(params.get("scope"), record.scopes)
        code = auth.issue_code(record, redirect_uri, scopes)
    except ValueError as exc:
        return refuse("invalid_scope", str(exc))
    except AuthError as exc:
        return refuse(exc.code, exc.message)
    return _redirect(redirect_uri, {"code": code, "state": state})


def install(app: FastAPI, services) -> None:
    auth: Authenticator = services.auth
    for prefix in PREFIXES:
        app.state.error_shapes.register(prefix, oauth_error_renderer)
    router = APIRouter(include_in_schema=False)

    @router.post("/oauth/token")
    @body_limit(MAX_BODY)
    async def token(request: Request) -> JSONResponse:
        return await _exchange(
            auth, request, query=False, token_type="Bearer", allowed=("client_credentials", "authorization_code")
        )

    @router.get("/signin/oauth/authorize")
    @body_limit(MAX_BODY)
    async def authorize(request: Request):
        return await _authorize(auth, request)

    @router.post("/signin/oauth/access_token")
    @body_limit(MAX_BODY)
    async def access_token(request: Request) -> JSONResponse:
        return await _exchange(auth, request, query=True, token_type="bearer", allowed=("authorization_code",))

    app.include_router(router)
