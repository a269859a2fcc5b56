"""Authentication of API-test requests: basic, OAuth 1.0a, OAuth 2.0 and TLS client certificates.

The engine makes one `AuthSession` per run, creates its `httpx.AsyncClient` from
`client_kwargs()`, passes every request through `apply()` with the request's auth model (the
step's, or the environment's when the step has none) and calls `close()` at the end. It renders
`{{variables}}` in the auth model first, so every value seen here is final.

Client certificates. The environment's `clientCertificate` is, in the words of the Runscope
document, "client certificate text available to be used in request authentication": a property
of the environment, like `verify_ssl`. It goes into the SSL context of the run's client, so it
is offered on every connection of the run whose server asks for a client certificate (TLS sends
one only when asked, so other servers never see it). A request with `auth_type:
client_certificate` states that it relies on it: apply() fails it clearly when the environment
has none or it cannot be used. Presenting it only on such requests would need a second
connection pool in the engine's client, since an SSL context cannot choose per connection;
one pool keeps `client_kwargs()` to the `verify=` that the engine's `make_client` expects.

Nothing here logs, and no AuthError message holds a password, secret or token.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import math
import os
import re
import ssl
import tempfile
import time
from dataclasses import dataclass
from typing import Optional, Union
from urllib.parse import parse_qsl, quote, quote_plus, urlencode, urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from oauthlib import oauth1

from assay.crds.monitor import BasicAuth, ClientCertificateAuth, OAuth1Auth, OAuth2Auth

AuthModel = Union[BasicAuth, OAuth1Auth, OAuth2Auth, ClientCertificateAuth]

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"

EXPIRY_MARGIN_SECONDS = 30.0
"""A fetched OAuth 2.0 token is renewed this long before `expires_in` runs out (at most a tenth
of its lifetime), so that it does not lapse between being applied and being checked."""

_OAUTH1_SIGNATURE_TYPES = {
    "auth_header": oauth1.SIGNATURE_TYPE_AUTH_HEADER,
    "query": oauth1.SIGNATURE_TYPE_QUERY,
    "body": oauth1.SIGNATURE_TYPE_BODY,
}

_OAUTH2_GRANT_NAMES = {"client_credentials": "client_credentials", "password_credentials": "password"}

_PRIVATE_KEY_PEM = re.compile(rb"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.+?-----END \1PRIVATE KEY-----", re.S)

# oauthlib writes the signature base string at DEBUG level, and with it the access token and
# the signed form fields; a runner logging at DEBUG must not print them.
logging.getLogger("oauthlib.oauth1.rfc5849").setLevel(logging.INFO)

_now = time.monotonic  # the clock token lifetimes are measured on; tests replace it


class AuthError(Exception):
    """Authentication of a request failed; the message says what, without any secret."""


@dataclass
class _Token:
    access_token: str
    refresh_token: Optional[str]
    expires_at: Optional[float]
    """On the `_now()` clock; None when the token endpoint gave no expires_in."""

    def is_fresh(self) -> bool:
        return self.expires_at is None or _now() < self.expires_at


class AuthSession:
    """The authentication state of one run: TLS settings, the client certificate and the OAuth
    2.0 tokens fetched so far."""

    def __init__(self, environment_client_certificate: str | None, verify_ssl: bool):
        self._verify_ssl = verify_ssl
        self._certificate_pem = (environment_client_certificate or "").strip() or None
        self._context: Optional[ssl.SSLContext] = None
        self._certificate_loaded = False
        self._certificate_problem: Optional[str] = None
        self._certificate_path: Optional[str] = None
        self._tokens: dict[str, _Token] = {}
        self._token_locks: dict[str, asyncio.Lock] = {}

    # --- the client -------------------------------------------------------------------------

    def client_kwargs(self) -> dict:
        """Keyword arguments for `httpx.AsyncClient(...)`.

        Only `verify`: an SSL context that checks servers as `verify_ssl` says (true: the
        bundle httpx uses, or SSL_CERT_FILE / SSL_CERT_DIR) and holds the environment's client
        certificate when it has a usable one. httpx 0.28 deprecates `cert=`; the certificate
        travels inside the context instead."""
        return {"verify": self._ssl_context()}

    def _ssl_context(self) -> ssl.SSLContext:
        if self._context is None:
            context = httpx.create_ssl_context(verify=self._verify_ssl)
            if self._certificate_pem is not None:
                try:
                    self._load_client_certificate(context, self._certificate_pem.encode())
                    self._certificate_loaded = True
                except AuthError as exc:
                    # The run goes on without it; requests that rely on it fail with this reason.
                    self._certificate_problem = str(exc)
            self._context = context
        return self._context

    def _load_client_certificate(self, context: ssl.SSLContext, pem: bytes) -> None:
        _check_client_certificate(pem)
        # ssl reads a certificate chain only from a file: one readable by this user alone
        # (mkstemp makes it 0600), removed as soon as the key is loaded.
        fd, self._certificate_path = tempfile.mkstemp(prefix="assay-client-certificate-", suffix=".pem")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(pem)
            context.load_cert_chain(self._certificate_path)
        except ssl.SSLError as exc:
            reason = exc.reason or exc
            raise AuthError(f"the environment's clientCertificate could not be loaded: {reason}") from None
        finally:
            self._remove_certificate_file()

    def _remove_certificate_file(self) -> None:
        if self._certificate_path is not None:
            try:
                os.unlink(self._certificate_path)
            except FileNotFoundError:
                pass
            self._certificate_path = None

    def close(self) -> None:
        """Remove the certificate file if it is still there and forget the fetched tokens."""
        self._remove_certificate_file()
        self._tokens.clear()

    # --- requests ---------------------------------------------------------------------------

    async def apply(
        self, request: httpx.Request, auth: Optional[AuthModel], client: httpx.AsyncClient
    ) -> httpx.Request:
        """The request to send: `request` signed or given a token as `auth` says (None: as it
        is). OAuth 2.0 tokens are fetched through `client`, so its TLS settings apply to the
        token endpoint too. Raises AuthError when the request cannot be authenticated."""
        if auth is None:
            return request
        if isinstance(auth, BasicAuth):
            return _with_basic_auth(request, auth)
        if isinstance(auth, OAuth1Auth):
            return await _signed_oauth1(request, auth)
        if isinstance(auth, OAuth2Auth):
            token = await self._oauth2_access_token(auth, client)
            return _with_bearer_token(request, token, auth.token_location or "auth_header")
        if isinstance(auth, ClientCertificateAuth):
            self._check_client_certificate_loaded()
            return request
        raise AuthError(f"unsupported auth_type {getattr(auth, 'auth_type', type(auth).__name__)!r}")

    def _check_client_certificate_loaded(self) -> None:
        """The certificate is in the client's SSL context already (see the module doc); a
        client_certificate request only needs it to be there."""
        self._ssl_context()
        if self._certificate_pem is None:
            raise AuthError("auth_type client_certificate needs the environment's clientCertificate, which is empty")
        if not self._certificate_loaded:
            raise AuthError(self._certificate_problem or "the environment's clientCertificate could not be loaded")

    # --- OAuth 2.0 tokens -------------------------------------------------------------------

    async def _oauth2_access_token(self, auth: OAuth2Auth, client: httpx.AsyncClient) -> str:
        grant = auth.grant_type
        if grant in _OAUTH2_GRANT_NAMES:
            fields = {"grant_type": _OAUTH2_GRANT_NAMES[grant]}
            if grant == "password_credentials":
                fields.update(username=auth.username or "", password=auth.password or "")
            if auth.scope:
                fields["scope"] = auth.scope
            return await self._cached_token(
                auth, client, obtain=lambda: self._token_request(auth, fields, client), grant_after_refresh=True
            )
        # No grant, or one that needs a browser (authorization code, PKCE, implicit): only the
        # tokens in the model can be used.
        refresh_token = auth.refresh_token or None
        if refresh_token and (auth.is_auto_refresh_token or not auth.access_token):
            return await self._cached_token(
                auth, client, obtain=lambda: self._refresh(auth, refresh_token, client), grant_after_refresh=False
            )
        if auth.access_token:
            return auth.access_token
        raise AuthError(
            f"oauth_2 grantType {grant} obtains a token through a browser, which a run does not have: "
            "set accessToken, or refreshToken with isAutoRefreshToken"
        )

    async def _cached_token(
        self, auth: OAuth2Auth, client: httpx.AsyncClient, obtain, grant_after_refresh: bool
    ) -> str:
        """The run's token for `auth`: the cached one while fresh, then a refreshed one (when
        the endpoint gave a refresh token), else a new one from `obtain()`."""
        # Keyed by every field of the model, hashed so that no secret is kept as a key.
        key = hashlib.sha256(auth.model_dump_json().encode()).hexdigest()
        async with self._token_locks.setdefault(key, asyncio.Lock()):
            token = self._tokens.get(key)
            if token is not None and token.is_fresh():
                return token.access_token
            if token is not None and token.refresh_token:
                try:
                    token = await self._refresh(auth, token.refresh_token, client)
                except AuthError:
                    if not grant_after_refresh:
                        raise
                    token = await obtain()
            else:
                token = await obtain()
            self._tokens[key] = token
            return token.access_token

    async def _refresh(self, auth: OAuth2Auth, refresh_token: str, client: httpx.AsyncClient) -> _Token:
        fields = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        token = await self._token_request(auth, fields, client)
        if token.refresh_token is None:  # the server does not rotate refresh tokens
            token.refresh_token = refresh_token
        return token

    async def _token_request(self, auth: OAuth2Auth, fields: dict[str, str], client: httpx.AsyncClient) -> _Token:
        what = f"OAuth 2.0 token request (grant_type={fields['grant_type']})"
        if not auth.access_token_url:
            raise AuthError(f"{what} needs accessTokenUrl")
        fields = dict(fields)
        headers = {"Accept": "application/json", "Content-Type": FORM_CONTENT_TYPE}
        client_id, client_secret = auth.client_id, auth.client_secret or None
        if client_id is not None:
            if (auth.client_authentication or "basic_auth_header") == "basic_auth_header" and client_secret:
                # RFC 6749 2.3.1: id and secret are form-encoded before they are joined.
                credentials = f"{quote_plus(client_id)}:{quote_plus(client_secret)}".encode()
                headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode("ascii")
            else:  # client authentication in the body, or a public client without a secret
                fields["client_id"] = client_id
                if client_secret:
                    fields["client_secret"] = client_secret
        where = _without_secrets(auth.access_token_url)
        try:
            # A bare Request, not client.build_request(): the run's cookies and default headers
            # are not for the token endpoint. No redirects: the credentials go where configured.
            request = httpx.Request("POST", auth.access_token_url, headers=headers, content=urlencode(fields).encode())
            started = _now()
            response = await client.send(request, follow_redirects=False)
        except (httpx.HTTPError, httpx.InvalidURL, ssl.SSLError) as exc:
            # ssl.SSLError: a TLS 1.3 server refusing a client certificate after the handshake
            # reaches httpx unwrapped (anyio 4 TLSStream.receive, httpcore 1.0).
            raise AuthError(f"{what} to {where} failed: {type(exc).__name__}: {exc}") from None
        body = _token_response_fields(response)
        access_token = body.get("access_token")
        if not response.is_success or not isinstance(access_token, str) or not access_token:
            raise AuthError(
                f"{what} to {where} failed: HTTP {response.status_code} {response.reason_phrase}, "
                f"{_oauth2_error(response, body)}"
            )
        token_type = body.get("token_type")
        if isinstance(token_type, str) and token_type.lower() != "bearer":
            raise AuthError(f"{what} to {where} returned token_type {token_type!r}; only Bearer tokens can be sent")
        refresh_token = body.get("refresh_token")
        return _Token(
            access_token=access_token,
            refresh_token=refresh_token if isinstance(refresh_token, str) and refresh_token else None,
            expires_at=_expiry(started, body.get("expires_in")),
        )


# --- basic, bearer and client certificates ----------------------------------------------------


def _with_basic_auth(request: httpx.Request, auth: BasicAuth) -> httpx.Request:
    credentials = f"{auth.username}:{auth.password or ''}".encode("utf-8")
    request.headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode("ascii")
    return request


def _with_bearer_token(request: httpx.Request, token: str, location: str) -> httpx.Request:
    if location == "query":  # RFC 6750 2.3
        request.url = _with_query_params(request.url, [("access_token", token)])
    else:  # RFC 6750 2.1
        request.headers["Authorization"] = f"Bearer {token}"
    return request


def _check_client_certificate(pem: bytes) -> None:
    """Raise AuthError saying what is wrong with a clientCertificate, in words ssl does not
    have ("PEM lib")."""
    prefix = "the environment's clientCertificate"
    try:
        certificate = x509.load_pem_x509_certificates(pem)[0]
    except ValueError:
        raise AuthError(f"{prefix} holds no PEM certificate (-----BEGIN CERTIFICATE-----)") from None
    match = _PRIVATE_KEY_PEM.search(pem)
    if match is None:
        raise AuthError(f"{prefix} holds no PEM private key: it needs the certificate and its private key")
    try:
        key = serialization.load_pem_private_key(match.group(0), password=None)
    except TypeError:
        raise AuthError(f"{prefix} has an encrypted private key; only unencrypted keys can be used") from None
    except (ValueError, UnsupportedAlgorithm):
        raise AuthError(f"{prefix} has a private key that cannot be read") from None
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if key.public_key().public_bytes(*spki) != certificate.public_key().public_bytes(*spki):
        raise AuthError(f"{prefix}: the private key does not belong to the first certificate")


# --- OAuth 1.0a -------------------------------------------------------------------------------


async def _signed_oauth1(request: httpx.Request, auth: OAuth1Auth) -> httpx.Request:
    """The request signed with HMAC-SHA1, the signature where `signature_type` says.

    Form fields are part of the signature only for a form-encoded body (RFC 5849 3.4.1.3.1),
    and only such a body can carry the signature (3.5.2). oauthlib re-encodes the query and
    body it signs; the request keeps its own and only gains the oauth_* parameters."""
    content = await request.aread()
    method = request.method.upper()
    media_type = request.headers.get("Content-Type", "").partition(";")[0].strip().lower()
    is_form = media_type == FORM_CONTENT_TYPE and not (method in ("GET", "HEAD") and not content)
    if auth.signature_type == "body" and not is_form:
        if not content:
            found = "an empty body"
        else:
            found = f"a {media_type} body" if media_type else "a body without Content-Type"
        raise AuthError(
            f"oauth_1 signatureType body needs a form-encoded body (Content-Type: {FORM_CONTENT_TYPE}); "
            f"this {method} request has {found}"
        )
    try:
        form = content.decode("utf-8") if is_form else None
    except UnicodeDecodeError:
        raise AuthError("oauth_1 cannot sign the form body: it is not UTF-8") from None
    signer = oauth1.Client(
        auth.consumer_key,
        client_secret=auth.consumer_secret,
        resource_owner_key=auth.access_token or None,
        resource_owner_secret=auth.token_secret or None,
        signature_method=oauth1.SIGNATURE_HMAC_SHA1,
        signature_type=_OAUTH1_SIGNATURE_TYPES[auth.signature_type],
    )
    try:
        signed_uri, signed_headers, signed_body = signer.sign(
            str(request.url), method, body=form, headers={"Content-Type": FORM_CONTENT_TYPE} if is_form else None
        )
    except ValueError as exc:
        # oauthlib quotes the undecodable query or body after " in the string:"; keep it out.
        reason = str(exc).split(" in the string:")[0]
        raise AuthError(f"oauth_1 cannot sign the {method} request: {reason}") from None
    if auth.signature_type == "auth_header":
        request.headers["Authorization"] = signed_headers["Authorization"]
        return request
    if auth.signature_type == "query":
        request.url = _with_query_params(request.url, _oauth_params(urlsplit(signed_uri).query))
        return request
    extra = urlencode(_oauth_params(signed_body), quote_via=quote).encode("ascii")
    return _with_content(request, content + b"&" + extra if content else extra)


def _oauth_params(encoded: str) -> list[tuple[str, str]]:
    return [(k, v) for k, v in parse_qsl(encoded, keep_blank_values=True) if k.startswith("oauth_")]


# --- helpers ----------------------------------------------------------------------------------


def _with_query_params(url: httpx.URL, params: list[tuple[str, str]]) -> httpx.URL:
    """`url` with `params` appended to its query as it is, percent-encoded per RFC 3986."""
    extra = urlencode(params, quote_via=quote)
    query = url.query.decode("ascii")
    return url.copy_with(query=(f"{query}&{extra}" if query else extra).encode("ascii"))


def _with_content(request: httpx.Request, content: bytes) -> httpx.Request:
    """A copy of `request` with another body (and so another Content-Length)."""
    headers = [
        (k, v) for k, v in request.headers.multi_items() if k.lower() not in ("content-length", "transfer-encoding")
    ]
    return httpx.Request(
        request.method, request.url, headers=headers, content=content, extensions=dict(request.extensions)
    )


def _without_secrets(url: str) -> str:
    """The URL for a message: no user info, query or fragment, which may carry credentials."""
    try:
        return str(httpx.URL(url).copy_with(userinfo=b"", query=None, fragment=None))
    except httpx.InvalidURL:
        return "an invalid accessTokenUrl"


def _token_response_fields(response: httpx.Response) -> dict:
    """The token endpoint's answer: a JSON object (RFC 6749 5.1), or the form-encoded fields
    some older servers send; {} when it is neither."""
    if response.headers.get("Content-Type", "").partition(";")[0].strip().lower() == FORM_CONTENT_TYPE:
        return dict(parse_qsl(response.text, keep_blank_values=True))
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _oauth2_error(response: httpx.Response, body: dict) -> str:
    """What went wrong, from the endpoint's `error` and `error_description` only: the rest of
    the body may echo the credentials back (think of an echo service at the wrong URL)."""
    error = body.get("error")
    if error:
        description = body.get("error_description")
        text = f"error {str(error)[:100]!r}"
        return f"{text}: {str(description)[:300]}" if description else text
    if response.is_success:
        return "the response has no access_token"
    return "no OAuth error field in the response"


def _expiry(started: float, expires_in) -> Optional[float]:
    try:
        lifetime = float(expires_in)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(lifetime):
        return None
    return started + lifetime - min(EXPIRY_MARGIN_SECONDS, lifetime / 10)
