"""Who may call the gateway, and what they may reach.

Credentials
    Every API client is a ClientCredential (crds/clientcredential.py). The operator generates
    its client id and secret, writes them once into the Secret `<credential>-secret` and keeps
    only `sha256:<hex>` of the secret in `status.secretHash`. The gateway keeps a watch-backed
    index of all credentials (keyed by `status.clientId`, never by a label) and of all
    namespaces, and re-checks the credential on EVERY request: deleting it (from the moment
    its deletionTimestamp is set), its `expiresAt` passing (by the gateway's clock, not waiting
    for the operator's phase flip), or a project disabling it ends tokens already issued,
    within the watch's latency. Secrets are compared as hashes with `hmac.compare_digest`; an
    unknown client id costs the same comparison as a wrong secret.

Access tokens (XTC, Runscope)
    `POST /oauth/token` (routers/oauth.py) issues JWTs, HS256 with settings.token_signing_key
    (a random per-process key when unset), header typ `at+jwt`, claims sub (client id), scope,
    jti, iat, exp (settings.token_ttl_seconds, 1 h) and cred (the credential's uid, so a
    credential deleted and recreated under the same name does not inherit tokens). Requests
    send `Authorization: Bearer <token>`; `require_bearer(*scopes)` wants every listed scope.

Static API tokens (Loadmill, VNG)
    `<client-id>.<client-secret>` (format_static_token), for credentials with the static_token
    grant: the id finds the credential without a scan, the secret is checked against its hash.
    Loadmill sends `Authorization: <token>`, VNG `Authorization: Token <token>`;
    `require_static_token(family)` also wants the family's scope (`loadmill`, `vng`).

Tenancy
    organization   the namespaces labelled `<settings.org_label>=<org>` (default assay.dev/org)
    project        one namespace of that organization; its name is the project's short name
    project-level  a credential reaches only the namespace it lives in
    org-level      a credential reaches every namespace of its organization, except those
                   whose annotation `assay.dev/disabled-org-credentials: "<client-id>,..."`
                   lists it (XTC's "disable org credentials in a project")
    org-admin      org-level credentials are honoured ONLY when they live in a namespace
                   labelled `assay.dev/org-admin=<org>`. Anyone allowed to create a
                   ClientCredential in some project namespace could otherwise mint access to
                   the whole organization; labelling namespaces is a cluster-admin act.

    The other API families map the same way:
      XTC org / project                        -> org label / one namespace of it
      Runscope team / bucket                   -> org label / one namespace (Tenancy.namespaces_for)
      Loadmill account, VNG account            -> the namespaces the token reaches (namespaces_for):
                                                  one for a project credential, the org's for an
                                                  org credential
    Unreachable projects answer 404 exactly like missing ones, so callers learn nothing about
    projects they cannot use.

Operational notes
    The gateway's service account needs list/watch on clientcredentials.assay.dev (all
    namespaces) and on namespaces; nobody but the operator may write
    clientcredentials/status (it holds the hash). Disabling org credentials in a project
    means patching the namespace's annotation, which needs patch on that namespace.
    Authorization codes of the Runscope web flow (60 s) and the tokens revoked for a replayed
    code live in the store's index (api/store), so every gateway replica sharing it honours
    them: a code is used once, whichever replica receives the exchange.
"""

from __future__ import annotations

from .dependencies import require_bearer, require_static_token
from .index import (
    DISABLED_ORG_CREDENTIALS_ANNOTATION,
    ORG_ADMIN_LABEL,
    CredentialIndex,
    CredentialRecord,
    NamespaceRecord,
)
from .policy import Principal
from .service import AuthError, Authenticator, IssuedToken, NotReady
from .tenancy import Tenancy
from .tokens import format_static_token, hash_secret, parse_static_token

__all__ = [
    "AuthError",
    "Authenticator",
    "CredentialIndex",
    "CredentialRecord",
    "DISABLED_ORG_CREDENTIALS_ANNOTATION",
    "IssuedToken",
    "NamespaceRecord",
    "NotReady",
    "ORG_ADMIN_LABEL",
    "Principal",
    "Tenancy",
    "format_static_token",
    "hash_secret",
    "parse_static_token",
    "require_bearer",
    "require_static_token",
]
