"""The OAuth endpoints and the auth dependencies in-process, over an Authenticator whose index
is fed plain dicts (no cluster): wire format, RFC 6749 errors, scopes, revocation by index."""

from __future__ import annotations

import base64
import time
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from assay.api.auth import Authenticator, CredentialIndex, Principal, require_bearer, require_static_token
from assay.api.auth.tokens import format_static_token, hash_secret
from assay.api.errors import install_error_handlers
from assay.api.routers import oauth
from assay.api.settings import GatewaySettings

KEY = "unit-test-signing-key-0123456789abcdef"
SECRET = "s3cret-abcdefghijklmnopqrstuvwxyz0123456789AB"
XTC = ["LOADTEST_LIST", "LOADTEST_STATUS", "LOADTEST_DETAILS"]


def credential(
    name="ci",
    namespace="shop",
    client_id="ac_ci",
    *,
    scopes=XTC,
    uid=None,
    grant_types=("client_credentials",),
    redirect_uris=(),
    expires_at=None,
    level="project",
    organization=None,
    phase="Active",
    secret=SECRET,
) -> dict:
    spec = {"displayName": name, "scopes": list(scopes), "grantTypes": list(grant_types), "level": level}
    if redirect_uris:
        spec["redirectUris"] = list(redirect_uris)
    if expires_at:
        spec["expiresAt"] = expires_at
    if organization:
        spec["organization"] = organization
    return {
        "metadata": {"name": name, "namespace": namespace, "uid": uid or f"uid-{name}"},
        "spec": spec,
        "status": {"phase": phase, "clientId": client_id, "secretHash": hash_secret(secret)},
    }


@pytest.fixture
def index():
    index = CredentialIndex("assay.dev/org")
    index.reset_namespaces([{"metadata": {"name": "shop", "labels": {"assay.dev/org": "acme"}}}])
    index.put_credential(credential())
    return index


@pytest.fixture
def client(index):
    settings = GatewaySettings(token_signing_key=KEY, store_dir="/nonexistent")
    auth = Authenticator(settings, None, None, index=index)
    app = FastAPI()
    install_error_handlers(app)
    app.state.services = SimpleNamespace(auth=auth, settings=settings)
    oauth.install(app, app.state.services)

    @app.get("/probe/list")
    def probe_list(principal: Principal = Depends(require_bearer("LOADTEST_LIST"))):
        return {
            "client": principal.client_id,
            "scopes": sorted(principal.scopes),
            "org": principal.organization,
            "projects": auth.tenancy.namespaces_for(principal),
        }

    @app.get("/probe/copy")
    def probe_copy(principal: Principal = Depends(require_bearer("LOADTEST_LIST", "LOADTEST_COPY_RUN"))):
        return {"client": principal.client_id}

    @app.get("/probe/loadmill")
    def probe_loadmill(principal: Principal = Depends(require_static_token("loadmill"))):
        return {"client": principal.client_id}

    @app.get("/probe/vng")
    def probe_vng(principal: Principal = Depends(require_static_token("vng"))):
        return {"client": principal.client_id}

    with TestClient(app) as client:
        yield client


def token(client, **form):
    data = {"grant_type": "client_credentials", "client_id": "ac_ci", "client_secret": SECRET, **form}
    return client.post("/oauth/token", data={k: v for k, v in data.items() if v is not None})


def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_client_credentials_token_has_both_key_spellings_and_no_caching(client):
    response = token(client, scope="LOADTEST_LIST LOADTEST_STATUS")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["access_token"] == body["accessToken"]
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["scope"] == "LOADTEST_LIST LOADTEST_STATUS"
    assert response.headers["cache-control"] == "no-store" and response.headers["pragma"] == "no-cache"
    claims = jwt.decode(body["access_token"], KEY, algorithms=["HS256"])
    assert claims["sub"] == "ac_ci" and claims["cred"] == "uid-ci" and claims["exp"] - claims["iat"] == 3600


def test_no_scope_requested_grants_all_of_the_credentials_scopes(client):
    assert token(client).json()["scope"] == " ".join(XTC)


def test_more_scopes_than_the_credential_has_is_invalid_scope(client):
    response = token(client, scope="LOADTEST_LIST LOADTEST_COPY_RUN")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"
    assert "LOADTEST_COPY_RUN" in response.json()["error_description"]


def test_wrong_secret_is_invalid_client_in_rfc6749_shape(client):
    response = token(client, client_secret="wrong")
    assert response.status_code == 401
    assert response.json() == {"error": "invalid_client", "error_description": "client authentication failed"}
    assert response.headers["www-authenticate"].startswith("Basic")
    assert response.headers["cache-control"] == "no-store"


def test_unknown_client_fails_exactly_like_a_wrong_secret(client):
    wrong = token(client, client_secret="wrong")
    unknown = token(client, client_id="ac_nobody")
    assert (unknown.status_code, unknown.json()) == (wrong.status_code, wrong.json())


def test_http_basic_client_authentication_is_accepted(client):
    response = client.post("/oauth/token", data={"grant_type": "client_credentials"}, headers=basic("ac_ci", SECRET))
    assert response.status_code == 200, response.text


def test_two_client_authentication_methods_at_once_are_refused(client):
    response = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_secret": SECRET},
        headers=basic("ac_ci", SECRET),
    )
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


def test_missing_client_authentication_is_invalid_client(client):
    response = client.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": "ac_ci"})
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"


def test_unknown_grant_type_is_unsupported_grant_type(client):
    response = token(client, grant_type="password")
    assert response.status_code == 400 and response.json()["error"] == "unsupported_grant_type"


def test_missing_grant_type_is_invalid_request(client):
    response = token(client, grant_type=None)
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


def test_repeated_parameters_are_invalid_request(client):
    response = client.post(
        "/oauth/token",
        content=f"grant_type=client_credentials&client_id=ac_ci&client_id=ac_ci&client_secret={SECRET}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


def test_credential_without_the_grant_is_unauthorized_client(client, index):
    index.put_credential(credential(grant_types=("static_token",)))
    response = token(client)
    assert response.status_code == 400 and response.json()["error"] == "unauthorized_client"


def test_expired_credential_gets_no_token_and_says_why(client, index):
    index.put_credential(credential(expires_at="2001-01-01T00:00:00Z"))
    response = token(client)
    assert response.status_code == 401 and "expired" in response.json()["error_description"]


def test_unknown_oauth_path_answers_in_the_oauth_shape(client):
    response = client.get("/oauth/nothing")
    assert response.status_code == 404 and set(response.json()) == {"error", "error_description"}


def bearer(client, scope=None):
    return {"Authorization": "Bearer " + token(client, scope=scope).json()["access_token"]}


def test_bearer_token_authenticates_with_its_scopes_and_tenancy(client):
    response = client.get("/probe/list", headers=bearer(client, "LOADTEST_LIST"))
    assert response.status_code == 200, response.text
    assert response.json() == {"client": "ac_ci", "scopes": ["LOADTEST_LIST"], "org": "acme", "projects": ["shop"]}


def test_missing_scope_is_403_insufficient_scope(client):
    response = client.get("/probe/copy", headers=bearer(client))
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


def test_a_token_narrowed_at_issue_lacks_the_other_scopes(client):
    response = client.get("/probe/list", headers=bearer(client, "LOADTEST_STATUS"))
    assert response.status_code == 403


@pytest.mark.parametrize("header", [None, "Bearer", "Basic abc", "Bearer not-a-jwt"])
def test_missing_or_malformed_bearer_is_401_with_a_challenge(client, header):
    response = client.get("/probe/list", headers={"Authorization": header} if header else {})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Bearer realm="assay"')


def test_deleting_the_credential_ends_its_tokens_at_once(client, index):
    headers = bearer(client)
    assert client.get("/probe/list", headers=headers).status_code == 200
    index.drop_credential({"metadata": {"namespace": "shop", "name": "ci"}})
    response = client.get("/probe/list", headers=headers)
    assert response.status_code == 401 and "no longer exists" in response.json()["message"]


def test_a_recreated_credential_with_the_same_client_id_does_not_inherit_tokens(client, index):
    headers = bearer(client)
    index.put_credential(credential(uid="uid-recreated"))
    assert client.get("/probe/list", headers=headers).status_code == 401


def test_a_credential_expiring_ends_its_tokens(client, index):
    headers = bearer(client)
    index.put_credential(credential(phase="Expired"))
    assert client.get("/probe/list", headers=headers).status_code == 401


def test_a_credential_being_deleted_ends_its_tokens(client, index):
    headers = bearer(client)
    deleting = credential()
    deleting["metadata"]["deletionTimestamp"] = "2030-01-01T00:00:00Z"
    index.put_credential(deleting)
    assert client.get("/probe/list", headers=headers).status_code == 401


def test_an_expired_token_is_refused(client):
    auth = client.app.state.services.auth
    record = auth.index.credential("ac_ci")
    old, _ = auth.signer.issue(record.client_id, record.uid, record.scopes, now=time.time() - 7200)
    response = client.get("/probe/list", headers={"Authorization": f"Bearer {old}"})
    assert response.status_code == 401 and "expired" in response.json()["message"]


def test_static_tokens_work_for_their_family_with_the_static_grant(client, index):
    index.put_credential(credential(scopes=["loadmill"], grant_types=["static_token"]))
    static = format_static_token("ac_ci", SECRET)
    assert client.get("/probe/loadmill", headers={"Authorization": static}).status_code == 200
    vng = client.get("/probe/vng", headers={"Authorization": f"Token {static}"})
    assert vng.status_code == 403  # no `vng` scope
    index.put_credential(credential(scopes=["vng"], grant_types=["static_token"]))
    assert client.get("/probe/vng", headers={"Authorization": f"Token {static}"}).status_code == 200
    assert client.get("/probe/vng", headers={"Authorization": static}).status_code == 401


def test_static_token_needs_the_static_grant_and_the_right_secret(client, index):
    static = format_static_token("ac_ci", SECRET)
    index.put_credential(credential(scopes=["loadmill"], grant_types=["client_credentials"]))
    assert client.get("/probe/loadmill", headers={"Authorization": static}).status_code == 401
    index.put_credential(credential(scopes=["loadmill"], grant_types=["static_token"]))
    wrong = format_static_token("ac_ci", "nope")
    assert client.get("/probe/loadmill", headers={"Authorization": wrong}).status_code == 401


def test_loadmill_takes_the_static_token_as_the_basic_user_with_an_empty_password(client, index):
    index.put_credential(credential(scopes=["loadmill", "vng"], grant_types=["static_token"]))
    static = format_static_token("ac_ci", SECRET)
    ok = client.get("/probe/loadmill", headers=basic(static, ""))
    assert ok.status_code == 200 and ok.json() == {"client": "ac_ci"}
    for refused in (
        basic(format_static_token("ac_ci", "nope"), ""),  # the secret is still checked
        basic(static, "x"),  # a password is not the Loadmill form
        basic("", static),
        {"Authorization": "Basic not-base64!"},
        {"Authorization": "Basic "},
    ):
        response = client.get("/probe/loadmill", headers=refused)
        assert response.status_code == 401, refused
        assert SECRET not in response.text
    # Only the Loadmill family reads the Basic form.
    assert client.get("/probe/vng", headers=basic(static, "")).status_code == 401


def test_a_static_token_is_not_a_bearer_token(client, index):
    index.put_credential(credential(grant_types=["static_token", "client_credentials"]))
    static = format_static_token("ac_ci", SECRET)
    assert client.get("/probe/list", headers={"Authorization": f"Bearer {static}"}).status_code == 401


# --- the Runscope web flow --------------------------------------------------------------------------

CALLBACK = "https://app.example/callback?x=1"


@pytest.fixture
def web_app(index):
    index.put_credential(
        credential(
            name="app",
            client_id="ac_app",
            scopes=["api:read", "test:read"],
            grant_types=["authorization_code"],
            redirect_uris=[CALLBACK],
        )
    )


def authorize(client, *, auth=("ac_app", SECRET), **params):
    query = {"client_id": "ac_app", "redirect_uri": CALLBACK, "response_type": "code", "state": "xyz", **params}
    return client.get(
        "/signin/oauth/authorize",
        params={k: v for k, v in query.items() if v is not None},
        headers=basic(*auth) if auth else {},
        follow_redirects=False,
    )


def redirected(response) -> dict:
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith("https://app.example/callback?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def exchange(client, code, **params):
    query = {
        "client_id": "ac_app",
        "client_secret": SECRET,
        "code": code,
        "grant_type": "authorization_code",
        "redirect_uri": CALLBACK,
        **params,
    }
    return client.post(
        "/signin/oauth/access_token",
        params={k: v for k, v in query.items() if v is not None},
        headers={"Content-Type": "application/json"},
    )


def test_web_flow_authorize_redirects_with_code_and_state_then_exchanges(client, web_app):
    query = redirected(authorize(client, scope="api:read"))
    assert query["state"] == "xyz" and query["x"] == "1" and query["code"]
    response = exchange(client, query["code"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer" and body["scope"] == "api:read"
    assert body["access_token"] == body["accessToken"]


def test_authorize_needs_the_applications_own_secret(client, web_app):
    for auth in (None, ("ac_app", "wrong"), ("ac_ci", SECRET)):
        response = authorize(client, auth=auth)
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Basic")


def test_authorize_never_redirects_to_an_unregistered_uri(client, web_app):
    response = authorize(client, redirect_uri="https://evil.example/")
    assert response.status_code == 400 and "location" not in response.headers
    assert response.json()["error"] == "invalid_request"
    assert authorize(client, client_id="ac_nobody").status_code == 400


def test_authorize_with_wrong_response_type_or_scope_redirects_an_error(client, web_app):
    assert redirected(authorize(client, response_type="token"))["error"] == "unsupported_response_type"
    query = redirected(authorize(client, scope="test:write"))
    assert query["error"] == "invalid_scope" and query["state"] == "xyz"


def test_code_is_single_use_and_a_replay_revokes_its_token(client, web_app):
    code = redirected(authorize(client))["code"]
    first = exchange(client, code)
    assert first.status_code == 200
    auth_header = {"Authorization": "Bearer " + first.json()["access_token"]}
    index_client = client.app.state.services.auth
    assert index_client.verify_access_token(first.json()["access_token"]).client_id == "ac_app"
    second = exchange(client, code)
    assert second.status_code == 400 and second.json()["error"] == "invalid_grant"
    assert client.get("/probe/list", headers=auth_header).status_code == 401


def test_code_exchange_checks_redirect_uri_and_client(client, web_app, index):
    code = redirected(authorize(client))["code"]
    assert exchange(client, code, redirect_uri="https://app.example/other").json()["error"] == "invalid_grant"
    code = redirected(authorize(client))["code"]
    index.put_credential(
        credential(name="other", client_id="ac_other", grant_types=["authorization_code"], redirect_uris=[CALLBACK])
    )
    response = exchange(client, code, client_id="ac_other")
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_code_exchange_works_on_the_token_endpoint_too_and_needs_the_redirect_uri(client, web_app):
    code = redirected(authorize(client))["code"]
    without = client.post(
        "/oauth/token", data={"grant_type": "authorization_code", "code": code}, headers=basic("ac_app", SECRET)
    )
    assert without.status_code == 400 and without.json()["error"] == "invalid_grant"
    response = client.post(
        "/oauth/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK},
        headers=basic("ac_app", SECRET),
    )
    assert response.status_code == 200, response.text


def test_client_credentials_are_not_accepted_on_the_runscope_exchange(client, web_app):
    response = exchange(client, "x", grant_type="client_credentials")
    assert response.status_code == 400 and response.json()["error"] == "unsupported_grant_type"
