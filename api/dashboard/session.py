"""Dashboard sessions: a ClientCredential's id and secret, exchanged once at the login form for
a signed access token that travels in an HttpOnly, SameSite=Strict cookie.

The token is one of the Authenticator's own (HS256, checked against its credential on every
request), issued with the scope `dashboard` only. No ClientCredential can hold that scope, so
the token's principal has no API scope at all: a session cookie cannot be replayed as an XTC
or Runscope bearer token, and an API token cannot stand in for a session (the scope is
checked). A session lasts `SESSION_SECONDS` from login (less if the token TTL is shorter).

The login form carries a random value that must match a cookie set with the form
(double-submit), and a POST whose Origin is another site's is refused: nobody can log a
browser in from elsewhere. Logout is a POST too; nothing changes state on a GET.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass

from fastapi import Request, Response

from ..auth import AuthError, Authenticator, Principal
from ..auth.tokens import TokenError

SESSION_COOKIE = "assay_dashboard"
LOGIN_COOKIE = "assay_dashboard_login"
SESSION_SCOPE = "dashboard"
SESSION_SECONDS = 1800
LOGIN_FORM_SECONDS = 900
PATH = "/dashboard"


@dataclass(frozen=True)
class Session:
    principal: Principal
    expires_at: int


class SessionExpired(Exception):
    """No session, or one that is no longer valid: the caller logs in again."""


class DashboardSessions:
    def __init__(self, auth: Authenticator, public_url: str):
        self.auth = auth
        self.secure = public_url.lower().startswith("https://")
        self.lifetime = min(SESSION_SECONDS, auth.signer.ttl_seconds)

    # --- login form ----------------------------------------------------------------------------------

    @staticmethod
    def new_form_token() -> str:
        return secrets.token_urlsafe(32)

    def set_form_cookie(self, response: Response, value: str) -> None:
        response.set_cookie(
            LOGIN_COOKIE,
            value,
            max_age=LOGIN_FORM_SECONDS,
            path=PATH + "/login",
            httponly=True,
            samesite="strict",
            secure=self.secure,
        )

    @staticmethod
    def form_token_matches(request: Request, presented: str) -> bool:
        expected = request.cookies.get(LOGIN_COOKIE) or ""
        # compare_digest on the bytes: both sides are attacker-supplied text of any length
        return bool(expected) and hmac.compare_digest(expected.encode(), presented.encode())

    @staticmethod
    def same_origin(request: Request) -> bool:
        """Browsers say where a POST comes from (Sec-Fetch-Site, Origin): refuse another site.
        Neither header (a non-browser client) is fine: the form token still has to match."""
        if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            return False
        origin = request.headers.get("origin")
        if origin is None:
            return True
        own = f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"
        return origin.lower() == own.lower()

    # --- sessions ----------------------------------------------------------------------------------------

    def log_in(self, response: Response, client_id: str, client_secret: str) -> Principal:
        """Authenticate the credential and set the session cookie; AuthError when it fails."""
        record = self.auth.authenticate_client(client_id, client_secret)
        issued = self.auth.issue_token(record, (SESSION_SCOPE,))
        response.set_cookie(
            SESSION_COOKIE,
            issued.access_token,
            max_age=self.lifetime,
            path=PATH,
            httponly=True,
            samesite="strict",
            secure=self.secure,
        )
        response.delete_cookie(LOGIN_COOKIE, path=PATH + "/login", httponly=True, samesite="strict", secure=self.secure)
        return self.auth.verify_access_token(issued.access_token)

    def log_out(self, response: Response) -> None:
        response.delete_cookie(SESSION_COOKIE, path=PATH, httponly=True, samesite="strict", secure=self.secure)

    def current(self, request: Request) -> Session:
        """The session behind the request's cookie; SessionExpired without a valid one. The
        credential is re-checked each time (NotReady propagates: the index is not in step)."""
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            raise SessionExpired("not signed in")
        try:
            claims = self.auth.signer.verify(token)
        except TokenError:
            raise SessionExpired("the session is invalid or has expired") from None
        if claims.scopes != (SESSION_SCOPE,):
            raise SessionExpired("not a dashboard session")
        expires_at = claims.issued_at + self.lifetime
        if time.time() >= expires_at:
            raise SessionExpired("the session has expired")
        try:
            principal = self.auth.verify_access_token(token)
        except AuthError as exc:
            raise SessionExpired(exc.message) from None
        return Session(principal=principal, expires_at=expires_at)
