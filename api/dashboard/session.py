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

A signed-in page's actions (actions.py) are POSTs carrying the session's action token in a
hidden field: an HMAC of the session cookie, which a page of another site can neither read nor
compute, compared in constant time, on top of the same-origin check and the SameSite cookie.
What they may do follows the credential's own scopes (`Session.scopes`), read afresh on every
request, though the session token itself carries none.
"""

from __future__ import annotations

import hashlib
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
    scopes: frozenset[str] = frozenset()
    """The credential's scopes: which actions the pages offer and accept."""
    action_token: str = ""


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
        record = self.auth.lookup_client(principal.client_id)
        scopes = frozenset(record.scopes) if record is not None else frozenset()
        return Session(principal=principal, expires_at=expires_at, scopes=scopes, action_token=action_token(token))

    @staticmethod
    def action_token_matches(current: Session, presented: str) -> bool:
        return bool(current.action_token) and hmac.compare_digest(current.action_token.encode(), presented.encode())


def action_token(session_cookie: str) -> str:
    return hmac.new(session_cookie.encode(), b"assay-dashboard-action", hashlib.sha256).hexdigest()
