"""Pure token and secret handling: secret hashes, access tokens (JWT), scopes, static tokens,
authorization codes. No Kubernetes, no HTTP; every function here is unit-tested directly.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import jwt

from assay.crds.clientcredential import SECRET_HASH_PREFIX, hash_secret

_DUMMY_HASH = SECRET_HASH_PREFIX + "0" * 64


# --- client secrets -----------------------------------------------------------------------------


def secret_matches(presented: str, stored_hash: str | None) -> bool:
    """Constant-time comparison of the presented secret's hash with the stored one. With no
    stored hash (unknown client) a dummy is compared, so both paths cost the same."""
    candidate = hash_secret(presented).encode()
    expected = (stored_hash or _DUMMY_HASH).encode()
    return hmac.compare_digest(candidate, expected) and stored_hash is not None


# --- static tokens (Loadmill, VNG) ------------------------------------------------------------------

STATIC_TOKEN_SEPARATOR = "."


def format_static_token(client_id: str, secret: str) -> str:
    """A static API token is `<client-id>.<client-secret>`: the client id part finds the
    credential without scanning, the secret part is verified against its hash. Neither part
    can contain a '.' (both are URL-safe base64), so the split is unambiguous; a JWT (two dots)
    is never mistaken for one."""
    return f"{client_id}{STATIC_TOKEN_SEPARATOR}{secret}"


def parse_static_token(token: str) -> tuple[str, str] | None:
    client_id, sep, secret = token.strip().partition(STATIC_TOKEN_SEPARATOR)
    if not sep or not client_id or not secret or STATIC_TOKEN_SEPARATOR in secret:
        return None
    return client_id, secret


# --- scopes ---------------------------------------------------------------------------------------


class ScopeError(ValueError):
    """A requested scope the credential does not have."""


def parse_scope(value: str | None) -> tuple[str, ...]:
    """RFC 6749 3.3: space-delimited, case-sensitive; duplicates dropped, order kept."""
    seen: dict[str, None] = {}
    for item in (value or "").split(" "):
        if item:
            seen.setdefault(item, None)
    return tuple(seen)


def resolve_scopes(requested: str | None, granted: Sequence[str]) -> tuple[str, ...]:
    """The scopes a token gets: the requested ones if all are granted (fewer is fine, more
    never), all granted ones when none are requested. Returned in the credential's order."""
    wanted = parse_scope(requested)
    if not wanted:
        return tuple(granted)
    extra = [s for s in wanted if s not in granted]
    if extra:
        raise ScopeError(f"scope(s) not granted to this client: {' '.join(extra)}")
    return tuple(s for s in granted if s in wanted)


# --- access tokens --------------------------------------------------------------------------------


class TokenError(ValueError):
    """An access token that is malformed, forged, or expired."""


@dataclass(frozen=True)
class AccessClaims:
    client_id: str
    credential_uid: str
    scopes: tuple[str, ...]
    jti: str
    issued_at: int
    expires_at: int


class TokenSigner:
    """Access tokens are JWTs, HS256, header `typ: at+jwt` (RFC 9068) so that no other JWT the
    gateway may ever sign with this key passes as one. Claims: sub (client id), scope, jti, iat,
    exp and cred (the credential's uid: a credential recreated under the same name does not
    inherit tokens). Only HS256 is accepted on the way in, so `alg: none` and algorithm
    confusion are refused."""

    ALGORITHM = "HS256"
    TYPE = "at+jwt"

    def __init__(self, key: bytes, ttl_seconds: int):
        if not key:
            raise ValueError("empty token signing key")
        self._key = key
        self.ttl_seconds = ttl_seconds

    def issue(
        self, client_id: str, credential_uid: str, scopes: Iterable[str], now: float | None = None
    ) -> tuple[str, AccessClaims]:
        issued_at = int(now if now is not None else time.time())
        claims = AccessClaims(
            client_id=client_id,
            credential_uid=credential_uid,
            scopes=tuple(scopes),
            jti=uuid.uuid4().hex,
            issued_at=issued_at,
            expires_at=issued_at + self.ttl_seconds,
        )
        payload = {
            "sub": claims.client_id,
            "scope": " ".join(claims.scopes),
            "jti": claims.jti,
            "iat": claims.issued_at,
            "exp": claims.expires_at,
            "cred": claims.credential_uid,
        }
        token = jwt.encode(payload, self._key, algorithm=self.ALGORITHM, headers={"typ": self.TYPE})
        return token, claims

    def verify(self, token: str) -> AccessClaims:
        try:
            header = jwt.get_unverified_header(token)
            if header.get("typ") != self.TYPE:
                raise TokenError("not an access token")
            payload = jwt.decode(
                token,
                self._key,
                algorithms=[self.ALGORITHM],
                options={"require": ["sub", "scope", "jti", "iat", "exp", "cred"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("access token expired") from None
        except jwt.PyJWTError:
            raise TokenError("invalid access token") from None
        if not all(isinstance(payload[k], str) for k in ("sub", "scope", "jti", "cred")):
            raise TokenError("invalid access token")
        return AccessClaims(
            client_id=payload["sub"],
            credential_uid=payload["cred"],
            scopes=parse_scope(payload["scope"]),
            jti=payload["jti"],
            issued_at=int(payload["iat"]),
            expires_at=int(payload["exp"]),
        )


# --- authorization codes (the Runscope web flow) ----------------------------------------------------


@dataclass(frozen=True)
class AuthorizationGrant:
    client_id: str
    credential_uid: str
    redirect_uri: str
    scopes: tuple[str, ...]
    expires_at: float


@dataclass
class _Redeemed:
    grant: AuthorizationGrant
    expires_at: float
    token_ids: list[tuple[str, int]]


def _code_key(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


class AuthorizationCodes:
    """Outstanding codes, kept in this process: 256 random bits each, stored under their hash,
    valid `ttl` seconds, redeemable once. A second redemption fails and returns the token ids
    issued on the first, which the caller revokes (RFC 6749 4.1.2: a replayed code means it
    leaked). In memory means per process; the gateway keeps them in its store instead
    (StoredAuthorizationCodes), which every replica shares."""

    MAX_OUTSTANDING = 10_000

    def __init__(self, ttl_seconds: float, clock=time.monotonic):
        self.ttl = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._open: dict[str, AuthorizationGrant] = {}
        self._redeemed: dict[str, _Redeemed] = {}

    _key = staticmethod(_code_key)

    def _prune(self, now: float) -> None:
        for table in (self._open, self._redeemed):
            for key in [k for k, v in table.items() if v.expires_at <= now]:
                del table[key]

    def issue(self, client_id: str, credential_uid: str, redirect_uri: str, scopes: Sequence[str]) -> str:
        code = secrets.token_urlsafe(32)
        with self._lock:
            now = self._clock()
            self._prune(now)
            if len(self._open) >= self.MAX_OUTSTANDING:
                raise OverflowError("too many outstanding authorization codes")
            self._open[self._key(code)] = AuthorizationGrant(
                client_id, credential_uid, redirect_uri, tuple(scopes), now + self.ttl
            )
        return code

    def redeem(
        self, code: str, check: Callable[[AuthorizationGrant], None]
    ) -> tuple[AuthorizationGrant | None, list[tuple[str, int]]]:
        """(grant, []) the first time; (None, token ids issued on the first use) on a replay;
        (None, []) for an unknown or expired code. `check(grant)` runs first, on a replay too:
        when it raises (another client, another redirect_uri) the exception propagates and the
        code stays as it was, so nobody but its own client can use it up or revoke its tokens."""
        key = self._key(code)
        with self._lock:
            now = self._clock()
            self._prune(now)
            grant = self._open.get(key)
            if grant is not None:
                check(grant)
                del self._open[key]
                self._redeemed[key] = _Redeemed(grant, grant.expires_at + self.ttl, [])
                return grant, []
            replayed = self._redeemed.get(key)
            if replayed is None:
                return None, []
            check(replayed.grant)
            return None, list(replayed.token_ids)

    def record_token(self, code: str, jti: str, expires_at: int) -> None:
        with self._lock:
            redeemed = self._redeemed.get(self._key(code))
            if redeemed is not None:
                redeemed.token_ids.append((jti, expires_at))


class StoredAuthorizationCodes:
    """AuthorizationCodes kept in the store's index (Store.add_code, redeem_code): a code one
    replica issued is redeemed once by whichever replica receives the exchange, the use-once
    decided by the index's write transaction; times are wall-clock, as replicas share them."""

    MAX_OUTSTANDING = AuthorizationCodes.MAX_OUTSTANDING

    def __init__(self, store, ttl_seconds: float, clock=time.time):
        self.store = store
        self.ttl = ttl_seconds
        self._clock = clock

    def issue(self, client_id: str, credential_uid: str, redirect_uri: str, scopes: Sequence[str]) -> str:
        code = secrets.token_urlsafe(32)
        now = self._clock()
        grant = {"client_id": client_id, "credential_uid": credential_uid, "redirect_uri": redirect_uri}
        grant["scopes"] = list(scopes)
        if not self.store.add_code(
            _code_key(code), grant, now + self.ttl, now=now, max_outstanding=self.MAX_OUTSTANDING
        ):
            raise OverflowError("too many outstanding authorization codes")
        return code

    def redeem(
        self, code: str, check: Callable[[AuthorizationGrant], None]
    ) -> tuple[AuthorizationGrant | None, list[tuple[str, int]]]:
        """As AuthorizationCodes.redeem."""

        def grant_of(doc: dict, expires_at: float = 0.0) -> AuthorizationGrant:
            return AuthorizationGrant(
                doc["client_id"], doc["credential_uid"], doc["redirect_uri"], tuple(doc["scopes"]), expires_at
            )

        doc, first, tokens = self.store.redeem_code(
            _code_key(code), now=self._clock(), keep_for=self.ttl, check=lambda doc: check(grant_of(doc))
        )
        if doc is None:
            return None, []
        return (grant_of(doc), []) if first else (None, tokens)

    def record_token(self, code: str, jti: str, expires_at: int) -> None:
        self.store.add_code_token(_code_key(code), jti, expires_at)
