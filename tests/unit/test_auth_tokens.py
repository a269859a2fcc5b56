"""Secrets, access tokens, scopes, static tokens and authorization codes: the pure parts."""

from __future__ import annotations

import importlib
import time

import jwt
import pytest

from assay.api.auth.tokens import (
    AuthorizationCodes,
    ScopeError,
    TokenError,
    TokenSigner,
    format_static_token,
    hash_secret,
    parse_scope,
    parse_static_token,
    resolve_scopes,
    secret_matches,
)

operator_credentials = importlib.import_module("assay.operator.clientcredential")
KEY = b"k" * 32


def test_secret_hash_is_sha256_of_a_generated_secret():
    secret = operator_credentials.generate_client_secret()
    assert hash_secret(secret).startswith("sha256:") and len(hash_secret(secret)) == 7 + 64
    assert hash_secret(secret) != hash_secret(secret + "x")


def test_secret_matches_only_the_hashed_secret_and_never_without_a_hash():
    stored = hash_secret("right")
    assert secret_matches("right", stored)
    assert not secret_matches("wrong", stored)
    assert not secret_matches("right", None)
    assert not secret_matches("", stored)


def test_issued_token_verifies_with_its_claims():
    signer = TokenSigner(KEY, 3600)
    token, issued = signer.issue("ac_x", "uid-1", ["A", "B"])
    claims = signer.verify(token)
    assert claims == issued
    assert claims.expires_at - claims.issued_at == 3600
    payload = jwt.decode(token, KEY, algorithms=["HS256"])
    assert set(payload) == {"sub", "scope", "jti", "iat", "exp", "cred"}
    assert payload["scope"] == "A B" and payload["cred"] == "uid-1" and payload["sub"] == "ac_x"
    assert jwt.get_unverified_header(token)["typ"] == "at+jwt"


def test_every_token_has_its_own_jti():
    signer = TokenSigner(KEY, 3600)
    assert signer.issue("c", "u", [])[1].jti != signer.issue("c", "u", [])[1].jti


def test_expired_token_is_refused():
    signer = TokenSigner(KEY, 3600)
    token, _ = signer.issue("ac_x", "uid", ["A"], now=time.time() - 3601)
    with pytest.raises(TokenError, match="expired"):
        signer.verify(token)


def test_token_from_another_key_is_refused():
    token, _ = TokenSigner(b"o" * 32, 3600).issue("ac_x", "uid", ["A"])
    with pytest.raises(TokenError, match="invalid"):
        TokenSigner(KEY, 3600).verify(token)


def test_tampered_claims_are_refused():
    signer = TokenSigner(KEY, 3600)
    token, _ = signer.issue("ac_x", "uid", ["A"])
    header, payload, signature = token.split(".")
    forged_payload = jwt.encode(
        {"sub": "ac_x", "scope": "A B C", "jti": "j", "iat": 1, "exp": 2**40, "cred": "uid"}, b"x" * 32
    ).split(".")[1]
    with pytest.raises(TokenError):
        signer.verify(".".join([header, forged_payload, signature]))


def test_unsigned_and_other_algorithm_tokens_are_refused():
    signer = TokenSigner(KEY, 3600)
    claims = {
        "sub": "ac_x",
        "scope": "A",
        "jti": "j",
        "iat": int(time.time()),
        "exp": int(time.time()) + 60,
        "cred": "uid",
    }
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"typ": "at+jwt"})
    with pytest.raises(TokenError):
        signer.verify(unsigned)
    hs512 = jwt.encode(claims, KEY * 2, algorithm="HS512", headers={"typ": "at+jwt"})
    with pytest.raises(TokenError):
        signer.verify(hs512)


def test_a_jwt_of_another_type_is_not_an_access_token():
    claims = {
        "sub": "ac_x",
        "scope": "A",
        "jti": "j",
        "iat": int(time.time()),
        "exp": int(time.time()) + 60,
        "cred": "uid",
    }
    other = jwt.encode(claims, KEY, algorithm="HS256")  # typ JWT
    with pytest.raises(TokenError, match="not an access token"):
        TokenSigner(KEY, 3600).verify(other)


def test_token_missing_the_credential_uid_is_refused():
    claims = {"sub": "ac_x", "scope": "A", "jti": "j", "iat": int(time.time()), "exp": int(time.time()) + 60}
    token = jwt.encode(claims, KEY, algorithm="HS256", headers={"typ": "at+jwt"})
    with pytest.raises(TokenError):
        TokenSigner(KEY, 3600).verify(token)


def test_garbage_is_refused():
    for junk in ("", "a.b.c", "not a token", "ac_x.secret"):
        with pytest.raises(TokenError):
            TokenSigner(KEY, 3600).verify(junk)


@pytest.mark.parametrize(
    "value, expected",
    [
        (None, ()),
        ("", ()),
        ("A", ("A",)),
        ("A  B", ("A", "B")),
        ("B A B", ("B", "A")),
    ],
)
def test_parse_scope_splits_on_spaces_and_drops_duplicates(value, expected):
    assert parse_scope(value) == expected


def test_scope_subset_is_granted_in_the_credentials_order():
    assert resolve_scopes("LOADTEST_STATUS LOADTEST_LIST", ("LOADTEST_LIST", "LOADTEST_STATUS", "X")) == (
        "LOADTEST_LIST",
        "LOADTEST_STATUS",
    )


def test_no_requested_scope_means_all_granted_scopes():
    assert resolve_scopes(None, ("A", "B")) == ("A", "B")
    assert resolve_scopes("", ("A", "B")) == ("A", "B")


def test_more_scopes_than_granted_are_refused():
    with pytest.raises(ScopeError, match="LOADTEST_COPY_RUN"):
        resolve_scopes("LOADTEST_LIST LOADTEST_COPY_RUN", ("LOADTEST_LIST",))


def test_scopes_are_case_sensitive():
    with pytest.raises(ScopeError):
        resolve_scopes("loadtest_list", ("LOADTEST_LIST",))


def test_static_token_round_trips_and_splits_unambiguously():
    client_id = operator_credentials.generate_client_id()
    secret = operator_credentials.generate_client_secret()
    token = format_static_token(client_id, secret)
    assert parse_static_token(token) == (client_id, secret)
    assert parse_static_token(" " + token + " ") == (client_id, secret)


@pytest.mark.parametrize("token", ["", "ac_x", "ac_x.", ".secret", "a.b.c"])
def test_malformed_static_tokens_do_not_parse(token):
    assert parse_static_token(token) is None


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def any_client(grant):
    """A check that accepts every grant."""


def only_for(client_id):
    def check(grant):
        if grant.client_id != client_id:
            raise PermissionError(grant.client_id)

    return check


def test_authorization_code_is_single_use():
    codes = AuthorizationCodes(60)
    code = codes.issue("ac_x", "uid", "https://cb", ("api:read",))
    grant, _ = codes.redeem(code, any_client)
    assert grant.client_id == "ac_x" and grant.redirect_uri == "https://cb" and grant.scopes == ("api:read",)
    assert codes.redeem(code, any_client) == (None, [])


def test_authorization_code_expires_after_its_ttl():
    clock = FakeClock()
    codes = AuthorizationCodes(60, clock=clock)
    code = codes.issue("ac_x", "uid", "https://cb", ())
    clock.now += 60
    assert codes.redeem(code, any_client) == (None, [])


def test_replayed_authorization_code_reports_the_tokens_issued_for_it():
    codes = AuthorizationCodes(60)
    code = codes.issue("ac_x", "uid", "https://cb", ())
    codes.redeem(code, any_client)
    codes.record_token(code, "jti-1", 123)
    assert codes.redeem(code, any_client) == (None, [("jti-1", 123)])


def test_unknown_authorization_code_is_refused():
    assert AuthorizationCodes(60).redeem("nope", any_client) == (None, [])


def test_generated_ids_and_secrets_have_the_documented_shape():
    client_id = operator_credentials.generate_client_id()
    assert client_id.startswith("ac_") and len(client_id) == 23 and "." not in client_id
    secret = operator_credentials.generate_client_secret()
    assert len(secret) == 43 and "." not in secret  # 32 bytes, URL-safe base64 without padding
    assert operator_credentials.generate_client_secret() != secret


def test_a_refused_check_leaves_the_code_to_its_own_client():
    codes = AuthorizationCodes(60)
    code = codes.issue("ac_x", "uid", "https://cb", ())
    with pytest.raises(PermissionError):
        codes.redeem(code, only_for("ac_other"))
    grant, _ = codes.redeem(code, only_for("ac_x"))
    assert grant.client_id == "ac_x"
    codes.record_token(code, "jti-1", 123)
    with pytest.raises(PermissionError):  # a replay by another client revokes nothing
        codes.redeem(code, only_for("ac_other"))
    assert codes.redeem(code, only_for("ac_x")) == (None, [("jti-1", 123)])
