"""Authentication of API-test requests, against real servers on loopback: basic, OAuth 1.0a,
OAuth 2.0 (fixed tokens, grants, refresh), TLS verification and client certificates."""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import tempfile
import time
from typing import Any, Optional

import httpx
import pytest

from assay.crds.monitor import BasicAuth, ClientCertificateAuth, OAuth1Auth, OAuth2Auth
from assay.runner.apitest import auth as auth_module
from assay.runner.apitest.auth import AuthError, AuthSession
from tests.support.secure_servers import (
    BasicAuthServer,
    CertificateAuthority,
    HttpsServer,
    MutualTlsServer,
    OAuth1Server,
    OAuth2Server,
)

FORM = "application/x-www-form-urlencoded"


def request(method: str, url: str, auth=None, **kwargs: Any) -> tuple:
    return (method, url, auth, kwargs)


def send(session: AuthSession, *requests: tuple) -> list[httpx.Response]:
    """Send the requests in order through one client of the session, as the engine does:
    built by the client, passed through apply(), sent."""

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(**session.client_kwargs(), timeout=10) as client:
            responses = []
            for method, url, auth, kwargs in requests:
                built = client.build_request(method, url, **kwargs)
                responses.append(await client.send(await session.apply(built, auth, client)))
            return responses

    return asyncio.run(run())


@pytest.fixture
def session():
    sessions: list[AuthSession] = []

    def make(client_certificate: Optional[str] = None, verify_ssl: bool = True) -> AuthSession:
        sessions.append(AuthSession(client_certificate, verify_ssl))
        return sessions[-1]

    yield make
    for s in sessions:
        s.close()


@pytest.fixture
def clock(monkeypatch):
    """The clock OAuth 2.0 token lifetimes are measured on, moved by hand."""
    now = [1000.0]
    monkeypatch.setattr(auth_module, "_now", lambda: now[0])
    return now


# --- basic ------------------------------------------------------------------------------------


def test_basic_auth_with_the_right_password_is_accepted(session):
    with BasicAuthServer("ada", "pässword") as server:
        auth = BasicAuth(auth_type="basic", username="ada", password="pässword")
        [response] = send(session(), request("GET", server.url + "/private", auth))
    assert response.status_code == 200, response.text
    assert response.json() == {"user": "ada"}


def test_basic_auth_with_a_wrong_password_is_rejected(session):
    with BasicAuthServer("ada", "right") as server:
        auth = BasicAuth(auth_type="basic", username="ada", password="wrong")
        [response] = send(session(), request("GET", server.url, auth))
    assert response.status_code == 401


def test_basic_auth_replaces_an_authorization_header_of_the_step(session):
    with BasicAuthServer("ada", "right") as server:
        auth = BasicAuth(auth_type="basic", username="ada", password="right")
        [response] = send(session(), request("GET", server.url, auth, headers={"Authorization": "Bearer x"}))
    assert response.status_code == 200


# --- OAuth 1.0a -------------------------------------------------------------------------------


def oauth1(server: OAuth1Server, signature_type: str = "auth_header", **overrides: Any) -> OAuth1Auth:
    fields = dict(
        auth_type="oauth_1",
        consumer_key=server.consumer_key,
        consumer_secret=server.consumer_secret,
        access_token=server.access_token,
        token_secret=server.token_secret,
        signature_type=signature_type,
    )
    return OAuth1Auth(**{**fields, **overrides})


@pytest.mark.parametrize("signature_type", ["auth_header", "query", "body"])
def test_oauth1_signature_of_a_form_post_is_accepted_in_each_location(session, signature_type):
    with OAuth1Server() as server:
        [response] = send(
            session(),
            request(
                "POST",
                server.url + "/items?page=2&q=a%20b",
                oauth1(server, signature_type),
                content=b"name=Ada+Lovelace&tags=a&tags=b",
                headers={"Content-Type": FORM},
            ),
        )
        received = server.requests[-1]
    assert response.status_code == 200, response.text
    assert response.json()["signature_location"] == signature_type
    assert response.json()["form"] == {"name": "Ada Lovelace", "tags": "b"}
    # The request keeps its own query and body; the oauth_* parameters are only added.
    assert received.target.startswith("/items?page=2&q=a%20b")
    assert received.body.startswith(b"name=Ada+Lovelace&tags=a&tags=b")


@pytest.mark.parametrize("signature_type", ["auth_header", "query"])
def test_oauth1_signature_of_a_get_is_accepted(session, signature_type):
    with OAuth1Server() as server:
        [response] = send(session(), request("GET", server.url + "/items?id=7", oauth1(server, signature_type)))
    assert response.status_code == 200, response.text
    assert response.json()["signature_location"] == signature_type


def test_oauth1_header_signature_of_a_json_post_leaves_the_body_out_of_the_signature(session):
    with OAuth1Server() as server:
        [response] = send(session(), request("POST", server.url + "/items", oauth1(server), json={"a": "b=c"}))
    assert response.status_code == 200, response.text


def test_oauth1_without_access_token_signs_with_the_consumer_only(session):
    with OAuth1Server() as server:
        auth = oauth1(server, access_token=None, token_secret=None)
        [response] = send(session(), request("GET", server.url, auth))
    assert response.status_code == 200, response.text
    assert response.json()["token"] is None


@pytest.mark.parametrize("signature_type", ["auth_header", "query", "body"])
@pytest.mark.parametrize("wrong", ["consumer_secret", "token_secret"])
def test_oauth1_signature_with_a_wrong_secret_is_rejected(session, signature_type, wrong):
    with OAuth1Server() as server:
        auth = oauth1(server, signature_type, **{wrong: "not-the-secret"})
        [response] = send(session(), request("POST", server.url, auth, content=b"a=1", headers={"Content-Type": FORM}))
    assert response.status_code == 401


@pytest.mark.parametrize(
    "kwargs, found",
    [
        ({"json": {"a": 1}}, "application/json body"),
        ({}, "empty body"),
    ],
)
def test_oauth1_body_signature_refuses_a_request_without_form_body(session, kwargs, found):
    with OAuth1Server() as server:
        with pytest.raises(AuthError, match=f"form-encoded body .* has an? {found}") as error:
            send(session(), request("POST", server.url, oauth1(server, "body"), **kwargs))
        assert server.requests == []
    assert server.consumer_secret not in str(error.value)


def test_oauth1_signing_logs_no_token_even_at_debug_level(session, caplog):
    caplog.set_level(logging.DEBUG)
    with OAuth1Server() as server:
        [response] = send(
            session(), request("POST", server.url, oauth1(server), content=b"pin=1234", headers={"Content-Type": FORM})
        )
    assert response.status_code == 200
    assert server.access_token not in caplog.text
    assert "1234" not in caplog.text


# --- OAuth 2.0 --------------------------------------------------------------------------------


def oauth2(**fields: Any) -> OAuth2Auth:
    return OAuth2Auth(auth_type="oauth_2", **fields)


def grant(server: OAuth2Server, grant_type: str, **fields: Any) -> OAuth2Auth:
    defaults: dict[str, Any] = dict(
        access_token_url=server.token_url, client_id=server.client_id, client_secret=server.client_secret
    )
    if grant_type == "password_credentials":
        defaults.update(username="ada", password="lovelace")
    return oauth2(grant_type=grant_type, **{**defaults, **fields})


@pytest.mark.parametrize(
    "location, expected", [(None, "auth_header"), ("auth_header", "auth_header"), ("query", "query")]
)
def test_oauth2_access_token_is_sent_where_token_location_says(session, location, expected):
    with OAuth2Server() as server:
        auth = oauth2(access_token=server.issue_access_token(), token_location=location)
        [response] = send(session(), request("GET", server.resource_url + "?keep=1", auth))
        received = server.requests[-1]
    assert response.status_code == 200, response.text
    assert response.json()["token_location"] == expected
    assert received.query["keep"] == ["1"]
    assert server.token_request_count() == 0


def test_oauth2_unknown_access_token_is_rejected_by_the_server(session):
    with OAuth2Server() as server:
        [response] = send(session(), request("GET", server.resource_url, oauth2(access_token="made-up")))
    assert response.status_code == 401


@pytest.mark.parametrize("client_authentication", [None, "basic_auth_header", "body"])
def test_client_credentials_token_is_fetched_once_for_the_run(session, client_authentication):
    with OAuth2Server() as server:
        auth = grant(server, "client_credentials", client_authentication=client_authentication, scope="read write")
        responses = send(session(), *[request("GET", server.resource_url, auth)] * 3)
        token_requests = server.token_requests
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert len(token_requests) == 1
    assert token_requests[0].grant_type == "client_credentials"
    assert token_requests[0].client_authentication == (client_authentication or "basic_auth_header")
    assert token_requests[0].scope == "read write"
    assert responses[0].json()["scope"] == "read write"


def test_password_grant_token_is_fetched_once_for_the_run(session):
    with OAuth2Server() as server:
        auth = grant(server, "password_credentials", token_location="query")
        responses = send(session(), *[request("GET", server.resource_url, auth)] * 3)
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert responses[0].json()["token_location"] == "query"
    assert server.token_request_count("password") == 1
    assert server.token_request_count() == 1


def test_client_credentials_with_a_secret_that_needs_encoding_in_the_basic_header(session):
    with OAuth2Server(client_secret="s3cr:t/+ &=") as server:
        [response] = send(session(), request("GET", server.resource_url, grant(server, "client_credentials")))
    assert response.status_code == 200, response.text


def test_expired_client_credentials_token_is_fetched_again(session, clock):
    with OAuth2Server(expires_in=60) as server:
        auth = grant(server, "client_credentials")
        s = session()
        send(s, request("GET", server.resource_url, auth))
        clock[0] += 55  # still within the 60 s, but inside the renewal margin (a tenth of it)
        [response] = send(s, request("GET", server.resource_url, auth))
    assert response.status_code == 200
    assert server.token_request_count("client_credentials") == 2


def test_expired_password_grant_token_is_renewed_with_its_refresh_token(session, clock):
    with OAuth2Server(expires_in=3600) as server:
        auth = grant(server, "password_credentials")
        s = session()
        send(s, request("GET", server.resource_url, auth))
        clock[0] += 3600
        responses = send(s, *[request("GET", server.resource_url, auth)] * 2)
    assert [r.status_code for r in responses] == [200, 200]
    assert server.token_request_count("password") == 1
    assert server.token_request_count("refresh_token") == 1


def test_authorization_code_refresh_token_is_used_when_auto_refresh_is_on(session, clock):
    with OAuth2Server(expires_in=3600) as server:
        auth = grant(
            server,
            "authorization_code",
            auth_url="https://idp.example/authorize",
            access_token="stale-access-token",
            refresh_token=server.seed_refresh_token(scope="read"),
            is_auto_refresh_token=True,
        )
        s = session()
        first = send(s, *[request("GET", server.resource_url, auth)] * 2)
        clock[0] += 3600
        # The server rotates refresh tokens: this works only with the one it issued last.
        later = send(s, request("GET", server.resource_url, auth))
    assert [r.status_code for r in first + later] == [200, 200, 200]
    assert first[0].json()["scope"] == "read"
    assert server.token_request_count("refresh_token") == 2
    assert server.token_request_count() == 2


def test_authorization_code_without_auto_refresh_uses_the_given_access_token(session):
    with OAuth2Server() as server:
        auth = grant(
            server,
            "authorization_code",
            auth_url="https://idp.example/authorize",
            access_token=server.issue_access_token(),
            refresh_token=server.seed_refresh_token(),
        )
        [response] = send(session(), request("GET", server.resource_url, auth))
    assert response.status_code == 200
    assert server.token_request_count() == 0


def test_implicit_grant_without_access_token_fails_clearly(session):
    with OAuth2Server() as server:
        auth = oauth2(grant_type="implicit", client_id="c", auth_url="https://idp.example/authorize")
        with pytest.raises(AuthError, match="implicit obtains a token through a browser.*set accessToken"):
            send(session(), request("GET", server.resource_url, auth))


def test_token_endpoint_refusing_the_client_fails_with_status_and_error(session):
    with OAuth2Server() as server:
        auth = grant(server, "client_credentials", client_secret="wrong-secret-value")
        with pytest.raises(AuthError) as error:
            send(session(), request("GET", server.resource_url, auth))
        assert server.requests[-1].path == "/token"  # the resource was never asked
    message = str(error.value)
    assert f"grant_type=client_credentials) to {server.token_url} failed: HTTP 401 Unauthorized" in message
    assert "'invalid_client'" in message
    assert "wrong-secret-value" not in message


def test_password_grant_with_a_wrong_password_fails_with_invalid_grant(session):
    with OAuth2Server() as server:
        auth = grant(server, "password_credentials", password="not-lovelace", client_authentication="body")
        with pytest.raises(AuthError, match=r"HTTP 400 Bad Request, error 'invalid_grant': wrong username") as error:
            send(session(), request("GET", server.resource_url, auth))
    assert "not-lovelace" not in str(error.value)


def test_token_endpoint_without_oauth_error_says_so(session):
    with OAuth2Server() as server:
        auth = grant(server, "client_credentials", access_token_url=server.url + "/nowhere?api_key=secret-key")
        with pytest.raises(AuthError, match=r"/nowhere failed: HTTP 404 Not Found, error 'not_found'") as error:
            send(session(), request("GET", server.resource_url, auth))
    assert "secret-key" not in str(error.value)


def test_unreachable_token_endpoint_fails_clearly(session):
    auth = OAuth2Auth(
        auth_type="oauth_2",
        grant_type="client_credentials",
        client_id="c",
        client_secret="s",
        access_token_url="http://127.0.0.1:9/token",
    )
    with pytest.raises(AuthError, match=r"token request .* to http://127.0.0.1:9/token failed: ConnectError"):
        send(session(), request("GET", "http://127.0.0.1:9/resource", auth))


@pytest.mark.parametrize("verify_ssl", [False, True])
def test_token_endpoint_is_called_with_the_run_tls_settings(session, verify_ssl):
    with OAuth2Server(tls=True) as server:
        auth = grant(server, "client_credentials")
        if verify_ssl:
            with pytest.raises(AuthError, match="ConnectError: .*CERTIFICATE_VERIFY_FAILED"):
                send(session(verify_ssl=True), request("GET", server.resource_url, auth))
        else:
            [response] = send(session(verify_ssl=False), request("GET", server.resource_url, auth))
            assert response.status_code == 200


# --- TLS verification -------------------------------------------------------------------------


def test_verify_ssl_false_accepts_a_self_signed_server(session):
    with HttpsServer() as server:
        [response] = send(session(verify_ssl=False), request("GET", server.url + "/hello"))
    assert response.status_code == 200
    assert response.json() == {"ok": True, "path": "/hello"}


def test_verify_ssl_true_rejects_a_self_signed_server_with_a_certificate_error(session):
    with HttpsServer() as server:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED.*self-signed certificate"):
            send(session(verify_ssl=True), request("GET", server.url))


def test_verify_ssl_true_trusts_the_certificates_in_ssl_cert_file(session, monkeypatch):
    with HttpsServer() as server:
        monkeypatch.setenv("SSL_CERT_FILE", server.cert_path)
        [response] = send(session(verify_ssl=True), request("GET", server.url))
    assert response.status_code == 200


# --- client certificates ----------------------------------------------------------------------

CLIENT_CERTIFICATE = ClientCertificateAuth(auth_type="client_certificate")

# How a client learns that the server refused its certificate. With TLS 1.3 the refusal comes
# after the client's side of the handshake, on the first read: httpx.ReadError, or, racing with
# it, a bare ssl.SSLError that anyio 4's TLSStream.receive raises and httpcore 1.0 does not wrap.
REFUSED_BY_SERVER = (httpx.TransportError, ssl.SSLError)


def test_client_certificate_is_accepted_by_the_mtls_server(session, monkeypatch):
    with MutualTlsServer() as server:
        monkeypatch.setenv("SSL_CERT_FILE", server.ca_path)  # and the server is verified too
        s = session(server.issue_client_certificate("assay-runner"), verify_ssl=True)
        [response] = send(s, request("GET", server.url, CLIENT_CERTIFICATE))
    assert response.status_code == 200
    assert response.json() == {"client_common_name": "assay-runner"}


def test_mtls_server_rejects_a_client_without_certificate(session):
    with MutualTlsServer() as server:
        with pytest.raises(REFUSED_BY_SERVER):
            send(session(verify_ssl=False), request("GET", server.url))
        assert server.requests == []
        # The server records the failed handshake in its own thread, after it has sent the
        # alert the client just saw: give that thread a moment.
        deadline = time.monotonic() + 5
        while not server.tls_failures and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.tls_failures


def test_environment_certificate_is_offered_on_every_request_of_the_run(session):
    # The certificate belongs to the environment (see the module doc of auth): a server that
    # asks for one gets it on any request, whatever the request's own auth.
    with MutualTlsServer() as server:
        s = session(server.issue_client_certificate("assay-runner"), verify_ssl=False)
        [response] = send(s, request("GET", server.url, BasicAuth(auth_type="basic", username="u", password="p")))
    assert response.status_code == 200
    assert response.json() == {"client_common_name": "assay-runner"}


def test_mtls_server_rejects_a_certificate_from_another_ca(session):
    stranger = CertificateAuthority("Some Other CA").issue("intruder", client=True).pem
    with MutualTlsServer() as server:
        with pytest.raises(REFUSED_BY_SERVER):
            send(session(stranger, verify_ssl=False), request("GET", server.url, CLIENT_CERTIFICATE))
        assert server.requests == []


def test_client_certificate_auth_without_environment_certificate_fails_clearly(session):
    with MutualTlsServer() as server:
        with pytest.raises(AuthError, match="needs the environment's clientCertificate, which is empty"):
            send(session("", verify_ssl=False), request("GET", server.url, CLIENT_CERTIFICATE))


@pytest.mark.parametrize(
    "mangle, problem",
    [
        pytest.param(
            lambda pem: pem[: pem.index("-----BEGIN PRIVATE KEY")], "holds no PEM private key", id="certificate-only"
        ),
        pytest.param(lambda pem: pem[pem.index("-----BEGIN PRIVATE KEY") :], "holds no PEM certificate", id="key-only"),
        pytest.param(
            lambda pem: pem[: pem.index("-----BEGIN PRIVATE KEY")] + CertificateAuthority().issue("x").key_pem,
            "private key does not belong to the first certificate",
            id="someone-else's-key",
        ),
    ],
)
def test_unusable_client_certificate_fails_only_the_requests_that_use_it(session, mangle, problem):
    with MutualTlsServer() as server, HttpsServer() as plain:
        s = session(mangle(server.issue_client_certificate()), verify_ssl=False)
        with pytest.raises(AuthError, match=problem):
            send(s, request("GET", server.url, CLIENT_CERTIFICATE))
        [response] = send(s, request("GET", plain.url))
    assert response.status_code == 200


def test_client_certificate_file_is_private_and_gone_after_loading(session, monkeypatch, tmp_path):
    created: list[tuple[str, int]] = []
    real_mkstemp = tempfile.mkstemp

    def recording_mkstemp(*args, **kwargs):
        fd, path = real_mkstemp(*args, dir=tmp_path, **kwargs)
        created.append((path, os.stat(path).st_mode & 0o777))
        return fd, path

    monkeypatch.setattr(auth_module.tempfile, "mkstemp", recording_mkstemp)
    with MutualTlsServer() as server:
        s = session(server.issue_client_certificate(), verify_ssl=False)
        [response] = send(s, request("GET", server.url, CLIENT_CERTIFICATE))
    assert response.status_code == 200
    assert [mode for _, mode in created] == [0o600]
    assert list(tmp_path.iterdir()) == []
