"""The Authenticator: client authentication, token issue and verification, authorization
codes, and the tenancy view, over the watch-backed index."""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ..logs import log_fields
from .index import CredentialIndex, CredentialRecord
from .policy import Principal, credential_problem, principal_for
from .tenancy import Tenancy
from .tokens import (
    AuthorizationCodes,
    AuthorizationGrant,
    StoredAuthorizationCodes,
    TokenError,
    TokenSigner,
    parse_static_token,
    resolve_scopes,
    secret_matches,
)
from .watch import IndexWatchers

log = logging.getLogger("assay.api.auth")


class AuthError(Exception):
    """Authentication or authorization failed. `code` is the RFC 6749 / 6750 error code;
    routers and dependencies map it onto their wire format."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class NotReady(Exception):
    """The index is not (or no longer) in step with the API server: refuse, do not guess."""


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int
    scopes: tuple[str, ...]
    jti: str
    expires_at: int


class Authenticator:
    """Created once per gateway. `start()` lists ClientCredentials and namespaces and keeps
    watching them; `stop()` ends the watches.

    `kube=None` gives an Authenticator over an index that the caller fills (unit tests, tools)."""

    def __init__(self, settings, kube, store=None, *, index: CredentialIndex | None = None, clock=time.time):
        self.settings = settings
        self.kube = kube
        self.store = store
        """Where authorization codes and revoked tokens live, shared by the gateway's replicas;
        without one (tests of other parts), in this process."""
        self.index = index or CredentialIndex(settings.org_label)
        self.tenancy = Tenancy(self.index)
        key = settings.token_signing_key.get_secret_value().encode() if settings.token_signing_key else None
        if key is None:
            log.warning(
                "ASSAY_TOKEN_SIGNING_KEY is unset: signing with a random key; tokens die with this "
                "process and are not shared between replicas"
            )
        elif len(key) < 32:
            log.warning("ASSAY_TOKEN_SIGNING_KEY is shorter than 32 bytes; use at least 32 random bytes")
        self.signer = TokenSigner(key or secrets.token_bytes(32), settings.token_ttl_seconds)
        ttl = settings.authorization_code_ttl_seconds
        self.codes = AuthorizationCodes(ttl) if store is None else StoredAuthorizationCodes(store, ttl)
        self._clock = clock
        self._revoked: dict[str, int] = {}  # jti -> exp, for tokens of replayed authorization codes
        self._revoked_lock = threading.Lock()
        self._watchers = IndexWatchers(kube, self.index) if kube is not None else None

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        if self._watchers is not None:
            self._watchers.start()

    def stop(self) -> None:
        if self._watchers is not None:
            self._watchers.stop()

    @property
    def ready(self) -> bool:
        return self._watchers is None or self._watchers.ready

    def _check_ready(self) -> None:
        if not self.ready:
            raise NotReady("the credential index is not in step with the Kubernetes API; try again shortly")

    # --- clients ---------------------------------------------------------------------------------

    def lookup_client(self, client_id: str) -> CredentialRecord | None:
        self._check_ready()
        return self.index.credential(client_id)

    def authenticate_client(self, client_id: str, client_secret: str) -> CredentialRecord:
        """The credential, if the secret is its secret and it can authenticate now. An unknown
        client and a wrong secret fail alike (and take the same time); a known client with the
        right secret learns why its credential is unusable."""
        record = self.lookup_client(client_id)
        if not self.secret_valid(record, client_secret) or record is None:
            log_fields(log, "client authentication failed", client_id=client_id[:64])
            raise AuthError("invalid_client", "client authentication failed")
        problem = self.problem(record)
        if problem:
            log_fields(log, "client authentication refused", client_id=client_id, reason=problem)
            raise AuthError("invalid_client", problem)
        return record

    @staticmethod
    def secret_valid(record: CredentialRecord | None, client_secret: str) -> bool:
        """Constant time, and as slow for an unknown client (None) as for a wrong secret."""
        return secret_matches(client_secret, record.secret_hash if record else None) and record is not None

    def problem(self, record: CredentialRecord) -> str | None:
        """Why this credential cannot authenticate right now, or None."""
        return credential_problem(record, self.index.namespace, self._clock())

    # --- access tokens ---------------------------------------------------------------------------

    def issue_token(self, record: CredentialRecord, scopes: Sequence[str]) -> IssuedToken:
        token, claims = self.signer.issue(record.client_id, record.uid, scopes, now=self._clock())
        log_fields(
            log,
            "access token issued",
            client_id=record.client_id,
            credential=record.key,
            scope=" ".join(claims.scopes),
            jti=claims.jti,
        )
        return IssuedToken(
            access_token=token,
            expires_in=self.signer.ttl_seconds,
            scopes=claims.scopes,
            jti=claims.jti,
            expires_at=claims.expires_at,
        )

    def client_credentials_token(self, record: CredentialRecord, requested_scope: str | None) -> IssuedToken:
        if "client_credentials" not in record.grant_types:
            raise AuthError("unauthorized_client", "this client may not use the client_credentials grant")
        return self.issue_token(record, self._scopes(record, requested_scope))

    @staticmethod
    def _scopes(record: CredentialRecord, requested_scope: str | None) -> tuple[str, ...]:
        try:
            return resolve_scopes(requested_scope, record.scopes)
        except ValueError as exc:
            raise AuthError("invalid_scope", str(exc)) from None

    def _current(self, client_id: str, credential_uid: str) -> CredentialRecord:
        record = self.lookup_client(client_id)
        if record is None:
            raise AuthError("invalid_token", "the client credential no longer exists")
        if record.uid != credential_uid:
            raise AuthError("invalid_token", "the client credential was replaced")
        problem = self.problem(record)
        if problem:
            raise AuthError("invalid_token", problem)
        return record

    def verify_access_token(self, token: str) -> Principal:
        """The principal behind a bearer token, re-checking its credential on every call:
        deleting, expiring or recreating the credential ends its tokens at once."""
        try:
            claims = self.signer.verify(token)
        except TokenError as exc:
            raise AuthError("invalid_token", str(exc)) from None
        if self._revoked_token(claims.jti):
            raise AuthError("invalid_token", "the access token was revoked")
        record = self._current(claims.client_id, claims.credential_uid)
        return principal_for(record, self.index.namespace, set(claims.scopes) & set(record.scopes))

    def verify_static_token(self, token: str) -> Principal:
        parsed = parse_static_token(token)
        if parsed is None:
            raise AuthError("invalid_token", "malformed API token")
        client_id, secret = parsed
        record = self.lookup_client(client_id)
        if not self.secret_valid(record, secret) or record is None:
            raise AuthError("invalid_token", "invalid API token")
        problem = self.problem(record)
        if problem:
            raise AuthError("invalid_token", problem)
        if "static_token" not in record.grant_types:
            raise AuthError("invalid_token", "this client credential does not allow static API tokens")
        return principal_for(record, self.index.namespace, record.scopes)

    # --- authorization codes (Runscope web flow) ----------------------------------------------------

    def issue_code(self, record: CredentialRecord, redirect_uri: str, scopes: Sequence[str]) -> str:
        try:
            code = self.codes.issue(record.client_id, record.uid, redirect_uri, scopes)
        except OverflowError:
            raise AuthError("temporarily_unavailable", "too many outstanding authorization codes") from None
        log_fields(log, "authorization code issued", client_id=record.client_id, scope=" ".join(scopes))
        return code

    def authorization_code_token(self, record: CredentialRecord, code: str, redirect_uri: str | None) -> IssuedToken:
        if "authorization_code" not in record.grant_types:
            raise AuthError("unauthorized_client", "this client may not use the authorization_code grant")
        grant, replayed_tokens = self.codes.redeem(code, lambda grant: self._check_grant(grant, record, redirect_uri))
        if grant is None:
            if replayed_tokens:
                self._revoke(replayed_tokens)
                log_fields(log, "authorization code replayed: its tokens are revoked", client_id=record.client_id)
            raise AuthError("invalid_grant", "the authorization code is invalid, expired or already used")
        issued = self.issue_token(record, grant.scopes)
        self.codes.record_token(code, issued.jti, issued.expires_at)
        return issued

    @staticmethod
    def _check_grant(grant: AuthorizationGrant, record: CredentialRecord, redirect_uri: str | None) -> None:
        """Before the code is used up: its own client, and (RFC 6749 4.1.3) the very redirect_uri
        of the authorization request, which is required when that request carried one."""
        if grant.client_id != record.client_id or grant.credential_uid != record.uid:
            raise AuthError("invalid_grant", "the authorization code was issued to another client")
        if grant.redirect_uri and redirect_uri is None:
            raise AuthError("invalid_grant", "redirect_uri is required: the authorization request had one")
        if redirect_uri is not None and redirect_uri != grant.redirect_uri:
            raise AuthError("invalid_grant", "redirect_uri does not match the authorization request")

    def _revoked_token(self, jti: str) -> bool:
        if self.store is not None:
            return self.store.token_revoked(jti)
        with self._revoked_lock:
            return jti in self._revoked

    def _revoke(self, tokens: list[tuple[str, int]]) -> None:
        now = int(self._clock())
        if self.store is not None:
            self.store.revoke_tokens(tokens, now)
            return
        with self._revoked_lock:
            for jti, exp in tokens:
                self._revoked[jti] = exp
            for jti in [j for j, exp in self._revoked.items() if exp <= now]:
                del self._revoked[jti]
