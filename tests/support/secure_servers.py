"""Real TLS and authenticating servers on loopback, for tests of how Assay authenticates.

Every server is a `RecordingServer`: a loopback server (tests/support/loopback.py) that records
the requests it gets and answers JSON. Certificates are made on the fly with `cryptography` (EC P-256, valid for a day);
PEM files live in a private temporary folder removed on exit.

- `HttpsServer`: HTTPS with a self-signed certificate (`cert_path` trusts it).
- `MutualTlsServer`: HTTPS that requires a client certificate signed by its own test CA
  (`ca_path`); `issue_client_certificate()` gives the PEM (certificate + key) a client needs.
- `BasicAuthServer`: HTTP basic authentication.
- `OAuth1Server`: OAuth 1.0a HMAC-SHA1 signatures verified by `oauthlib`, in the
  Authorization header, the query or a form body.
- `OAuth2Server`: a token endpoint (client_credentials, password and refresh_token grants;
  client authentication in a basic header or the body) that records every token request,
  and a resource endpoint taking the bearer token from the header or the query.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import secrets
import ssl
import tempfile
import time
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any, Optional
from urllib.parse import parse_qs, parse_qsl, unquote_plus, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from oauthlib.oauth1 import RequestValidator, SignatureOnlyEndpoint

from tests.support.loopback import LoopbackServer, QuietHandler

LOOPBACK_HOSTS = ("127.0.0.1", "localhost")

# --- certificates -----------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate and its private key, both PEM."""

    cert_pem: str
    key_pem: str

    @property
    def pem(self) -> str:
        """Certificate followed by its key: the form of an environment's clientCertificate."""
        return self.cert_pem + self.key_pem

    @property
    def common_name(self) -> str:
        cert = x509.load_pem_x509_certificate(self.cert_pem.encode())
        return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _san(hosts: tuple[str, ...]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _build_certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: Optional[x509.Certificate],
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    server_hosts: tuple[str, ...] = (),
    client: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    public_key = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.subject if issuer else _name(subject))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server_hosts else []) + (
            [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        )
        # RFC 5280 (4.2.1.12) allows no empty extendedKeyUsage; a leaf without usages simply
        # carries none (such a key is only ever used as "someone else's key" in the tests).
        if usages:
            builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if server_hosts:
        builder = builder.add_extension(_san(server_hosts), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def self_signed_certificate(hosts: tuple[str, ...] = LOOPBACK_HOSTS) -> IssuedCertificate:
    """A server certificate that is its own issuer: what `verifySsl: false` is for."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _build_certificate("assay-test-self-signed", key, None, key, server_hosts=hosts)
    return IssuedCertificate(cert.public_bytes(serialization.Encoding.PEM).decode(), _key_pem(key))


class CertificateAuthority:
    """A throwaway CA that issues server and client certificates."""

    def __init__(self, common_name: str = "Assay Test CA"):
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._cert = _build_certificate(common_name, self._key, None, self._key, ca=True)
        self.cert_pem = self._cert.public_bytes(serialization.Encoding.PEM).decode()

    def issue(self, common_name: str, *, server_hosts: tuple[str, ...] = (), client: bool = False) -> IssuedCertificate:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _build_certificate(common_name, key, self._cert, self._key, server_hosts=server_hosts, client=client)
        return IssuedCertificate(cert.public_bytes(serialization.Encoding.PEM).decode(), _key_pem(key))


# --- the server skeleton ----------------------------------------------------------------------


@dataclass
class ReceivedRequest:
    method: str
    target: str
    """Path and query as sent."""
    headers: Message
    body: bytes
    absolute_uri: str
    peer_common_name: Optional[str] = None
    """Common name of the client certificate, when the client presented one."""

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query, keep_blank_values=True)


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class RecordingServer(LoopbackServer):
    """A loopback server that records every request in `requests` and answers JSON from
    `respond()`. With `certificate` it speaks TLS only; with `client_ca_pem` as well it requires
    a client certificate signed by that CA."""

    def __init__(self, certificate: Optional[IssuedCertificate] = None, client_ca_pem: Optional[str] = None):
        self._files = tempfile.TemporaryDirectory(prefix="assay-secure-server-")
        self._dir = Path(self._files.name)
        self.requests: list[ReceivedRequest] = []
        self.cert_path: Optional[str] = None
        """The server certificate (PEM), for clients that want to trust it."""
        ssl_context = None
        if certificate is not None:
            self.cert_path = self._write("server.pem", certificate.cert_pem)
            key_path = self._write("server-key.pem", certificate.key_pem)
            ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ssl_context.load_cert_chain(self.cert_path, key_path)
            if client_ca_pem is not None:
                ssl_context.verify_mode = ssl.CERT_REQUIRED
                ssl_context.load_verify_locations(cadata=client_ca_pem)
        super().__init__(_Handler, ssl_context=ssl_context)

    def _write(self, name: str, text: str) -> str:
        path = self._dir / name
        path.write_text(text)
        path.chmod(0o600)
        return str(path)

    def respond(self, request: ReceivedRequest) -> Reply:
        return Reply(200, {"ok": True, "path": request.path})

    def __exit__(self, *exc) -> None:
        super().__exit__(*exc)
        self._files.cleanup()


class _Handler(QuietHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10

    def _handle(self):
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        peer = None
        if isinstance(self.connection, ssl.SSLSocket):
            cert = self.connection.getpeercert()
            if cert:
                peer = dict(item[0] for item in cert["subject"]).get("commonName")
        received = ReceivedRequest(
            method=self.command,
            target=self.path,
            headers=self.headers,
            body=body,
            absolute_uri=f"{owner.url}{self.path}",
            peer_common_name=peer,
        )
        with owner.lock:
            owner.requests.append(received)
        reply = owner.respond(received)
        payload = json.dumps(reply.body).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle


# --- TLS servers ------------------------------------------------------------------------------


class HttpsServer(RecordingServer):
    """HTTPS with a self-signed certificate for 127.0.0.1 and localhost; `cert_path` trusts it."""

    def __init__(self):
        super().__init__(certificate=self_signed_certificate())


class MutualTlsServer(RecordingServer):
    """HTTPS that completes the handshake only for clients presenting a certificate signed by
    its test CA. Answers with the client certificate's common name."""

    def __init__(self):
        self.ca = CertificateAuthority("Assay mTLS Test CA")
        super().__init__(
            certificate=self.ca.issue("assay-mtls-server", server_hosts=LOOPBACK_HOSTS),
            client_ca_pem=self.ca.cert_pem,
        )
        self.ca_path = self._write("ca.pem", self.ca.cert_pem)
        """The CA that signed the server certificate and accepts client certificates."""

    def issue_client_certificate(self, common_name: str = "assay-runner") -> str:
        """PEM text holding a client certificate this server accepts and its private key."""
        return self.ca.issue(common_name, client=True).pem

    def respond(self, request: ReceivedRequest) -> Reply:
        return Reply(200, {"client_common_name": request.peer_common_name})


# --- basic authentication ---------------------------------------------------------------------


def _basic_credentials(request: ReceivedRequest) -> Optional[tuple[str, str]]:
    scheme, _, value = (request.headers.get("Authorization") or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        username, sep, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except ValueError:
        return None
    return (username, password) if sep else None


class BasicAuthServer(RecordingServer):
    """Every path requires HTTP basic authentication with the given username and password."""

    def __init__(self, username: str = "ada", password: str = "analytical-engine"):
        super().__init__()
        self.username, self.password = username, password

    def respond(self, request: ReceivedRequest) -> Reply:
        if _basic_credentials(request) != (self.username, self.password):
            return Reply(401, {"error": "unauthorized"}, {"WWW-Authenticate": 'Basic realm="assay-test"'})
        return Reply(200, {"user": self.username})


# --- OAuth 1.0a -------------------------------------------------------------------------------


class _OAuth1Validator(RequestValidator):
    """Knows one consumer and one access token; rejects replayed nonces."""

    enforce_ssl = False
    allowed_signature_methods = ("HMAC-SHA1",)
    safe_characters = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
    client_key_length = (3, 64)
    access_token_length = (3, 64)
    nonce_length = (8, 64)
    dummy_client = "dummy-client"
    dummy_access_token = "dummy-token"

    def __init__(self, server: OAuth1Server):
        super().__init__()
        self.server = server
        self.nonces: set[tuple[str, str, str]] = set()

    def validate_timestamp_and_nonce(
        self, client_key, timestamp, nonce, request, request_token=None, access_token=None
    ):
        key = (client_key, timestamp, nonce)
        with self.server.lock:
            if key in self.nonces:
                return False
            self.nonces.add(key)
        return True

    def validate_client_key(self, client_key, request):
        return client_key == self.server.consumer_key

    def get_client_secret(self, client_key, request):
        return self.server.consumer_secret if client_key == self.server.consumer_key else "dummy-secret"

    def get_access_token_secret(self, client_key, token, request):
        return self.server.token_secret if token == self.server.access_token else "dummy-secret"


class OAuth1Server(RecordingServer):
    """Every path requires an OAuth 1.0a HMAC-SHA1 signature made with the consumer key and
    secret and, when the request carries an oauth_token, the access token and its secret.
    Answers where the signature was (`auth_header`, `query` or `body`) and the form fields."""

    def __init__(
        self,
        consumer_key: str = "assay-consumer",
        consumer_secret: str = "consumer-secret-1",
        access_token: str = "assay-token",
        token_secret: str = "token-secret-1",
    ):
        super().__init__()
        self.consumer_key, self.consumer_secret = consumer_key, consumer_secret
        self.access_token, self.token_secret = access_token, token_secret
        self.endpoint = SignatureOnlyEndpoint(_OAuth1Validator(self))

    def respond(self, request: ReceivedRequest) -> Reply:
        headers = dict(request.headers.items())
        valid, oauth_request = self.endpoint.validate_request(
            request.absolute_uri, request.method, request.body.decode("utf-8"), headers
        )
        token = oauth_request.resource_owner_key if oauth_request else None
        if not valid or (token is not None and token != self.access_token):
            return Reply(401, {"error": "invalid OAuth 1.0a signature"}, {"WWW-Authenticate": "OAuth"})
        if (request.headers.get("Authorization") or "").startswith("OAuth "):
            location = "auth_header"
        elif "oauth_signature" in request.query:
            location = "query"
        else:
            location = "body"
        form = {}
        if "application/x-www-form-urlencoded" in (request.headers.get("Content-Type") or ""):
            form = {
                k: v for k, v in parse_qsl(request.body.decode(), keep_blank_values=True) if not k.startswith("oauth_")
            }
        return Reply(200, {"signature_location": location, "token": token, "form": form})


# --- OAuth 2.0 --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenRequest:
    """One call of the token endpoint, as the server understood it."""

    grant_type: str
    client_authentication: str
    """`basic_auth_header`, `body` or `none`."""
    scope: Optional[str]
    status: int


@dataclass
class _IssuedToken:
    expires_at: float
    scope: Optional[str]


class OAuth2Server(RecordingServer):
    """An OAuth 2.0 authorization server and resource server in one.

    `POST /token` serves the client_credentials, password and refresh_token grants for one
    client (secret in a basic Authorization header, or client_id/client_secret in the body).
    Refresh tokens are issued for the password and refresh_token grants (not for
    client_credentials, per RFC 6749 4.4.3) and rotate: each is good once. `seed_refresh_token()`
    makes one as if an authorization-code flow had happened earlier.
    `GET /resource` needs a live access token as `Authorization: Bearer` or `?access_token=`.
    `tls=True` serves both over HTTPS with a self-signed certificate (`cert_path`)."""

    def __init__(
        self,
        client_id: str = "assay-client",
        client_secret: str = "client-secret-1",
        users: Optional[dict[str, str]] = None,
        expires_in: int = 3600,
        tls: bool = False,
    ):
        super().__init__(certificate=self_signed_certificate() if tls else None)
        self.client_id, self.client_secret = client_id, client_secret
        self.users = {"ada": "lovelace"} if users is None else users
        self.expires_in = expires_in
        self.token_requests: list[TokenRequest] = []
        self._access_tokens: dict[str, _IssuedToken] = {}
        self._refresh_tokens: dict[str, Optional[str]] = {}
        self.token_url = f"{self.url}/token"
        self.resource_url = f"{self.url}/resource"

    def token_request_count(self, grant_type: Optional[str] = None) -> int:
        with self.lock:
            return sum(1 for r in self.token_requests if grant_type in (None, r.grant_type))

    def seed_refresh_token(self, scope: Optional[str] = None) -> str:
        token = "seed-" + secrets.token_urlsafe(12)
        with self.lock:
            self._refresh_tokens[token] = scope
        return token

    def issue_access_token(self, scope: Optional[str] = None) -> str:
        """An access token the resource endpoint accepts, as if obtained out of band."""
        return self._issue(scope, refresh=False)["access_token"]

    def respond(self, request: ReceivedRequest) -> Reply:
        if request.path == "/token":
            return self._token(request)
        if request.path == "/resource":
            return self._resource(request)
        return Reply(404, {"error": "not_found"})

    def _token(self, request: ReceivedRequest) -> Reply:
        form = dict(parse_qsl(request.body.decode(), keep_blank_values=True))
        grant_type = form.get("grant_type", "")
        reply, client_auth = self._grant(request, form, grant_type)
        with self.lock:
            self.token_requests.append(TokenRequest(grant_type, client_auth, form.get("scope"), reply.status))
        reply.headers.update({"Cache-Control": "no-store", "Pragma": "no-cache"})
        return reply

    def _grant(self, request: ReceivedRequest, form: dict[str, str], grant_type: str) -> tuple[Reply, str]:
        if request.method != "POST":
            return Reply(405, {"error": "invalid_request"}), "none"
        basic = None
        if request.headers.get("Authorization"):
            raw = _basic_credentials(request)
            # RFC 6749 2.3.1: the client id and secret are form-encoded before base64.
            basic = (unquote_plus(raw[0]), unquote_plus(raw[1])) if raw else ("", "")
        if basic and "client_secret" in form:
            return Reply(
                400, {"error": "invalid_request", "error_description": "more than one client authentication method"}
            ), "both"
        client_auth = "basic_auth_header" if basic else ("body" if "client_secret" in form else "none")
        client_id, client_secret = basic or (form.get("client_id"), form.get("client_secret"))
        if (client_id, client_secret) != (self.client_id, self.client_secret):
            return Reply(
                401,
                {"error": "invalid_client", "error_description": "client authentication failed"},
                {"WWW-Authenticate": 'Basic realm="token"'},
            ), client_auth
        scope = form.get("scope")
        if grant_type == "client_credentials":
            return Reply(200, self._issue(scope, refresh=False)), client_auth
        if grant_type == "password":
            username = form.get("username", "")
            if username not in self.users or self.users[username] != form.get("password"):
                return Reply(
                    400, {"error": "invalid_grant", "error_description": "wrong username or password"}
                ), client_auth
            return Reply(200, self._issue(scope, refresh=True)), client_auth
        if grant_type == "refresh_token":
            with self.lock:
                known = form.get("refresh_token", "") in self._refresh_tokens
                original_scope = self._refresh_tokens.pop(form.get("refresh_token", ""), None)
            if not known:
                return Reply(
                    400, {"error": "invalid_grant", "error_description": "unknown or used refresh token"}
                ), client_auth
            return Reply(200, self._issue(scope or original_scope, refresh=True)), client_auth
        return Reply(400, {"error": "unsupported_grant_type"}), client_auth

    def _issue(self, scope: Optional[str], refresh: bool) -> dict[str, Any]:
        access = "at-" + secrets.token_urlsafe(16)
        body: dict[str, Any] = {"access_token": access, "token_type": "Bearer", "expires_in": self.expires_in}
        with self.lock:
            self._access_tokens[access] = _IssuedToken(time.monotonic() + self.expires_in, scope)
            if refresh:
                body["refresh_token"] = "rt-" + secrets.token_urlsafe(16)
                self._refresh_tokens[body["refresh_token"]] = scope
        if scope:
            body["scope"] = scope
        return body

    def _resource(self, request: ReceivedRequest) -> Reply:
        scheme, _, header_token = (request.headers.get("Authorization") or "").partition(" ")
        query_token = request.query.get("access_token", [None])[0]
        if scheme.lower() == "bearer" and header_token:
            token, location = header_token.strip(), "auth_header"
        elif query_token:
            token, location = query_token, "query"
        else:
            return Reply(401, {"error": "invalid_request"}, {"WWW-Authenticate": 'Bearer realm="assay-test"'})
        with self.lock:
            issued = self._access_tokens.get(token)
        if issued is None or issued.expires_at < time.monotonic():
            return Reply(401, {"error": "invalid_token"}, {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return Reply(200, {"token_location": location, "scope": issued.scope})
