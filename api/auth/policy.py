"""Pure decisions: is a credential usable right now, who is its principal, which namespaces
may that principal reach. Inputs are index records; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .index import ORG_ADMIN_LABEL, CredentialRecord, NamespaceRecord

NamespaceLookup = Callable[[str], "NamespaceRecord | None"]


@dataclass(frozen=True)
class Principal:
    """Who is calling: the credential behind the token, with the scopes this token carries."""

    client_id: str
    credential: str
    """"namespace/name" of the ClientCredential."""
    credential_uid: str
    level: str
    """"org" | "project"."""
    organization: str | None
    """An org credential's organization; a project credential's namespace's org label (or None)."""
    namespace: str
    """Where the credential lives."""
    scopes: frozenset[str]
    email: str | None = None
    """The credential's contact e-mail (spec.email), if it has one."""


def credential_problem(record: CredentialRecord, namespace_of: NamespaceLookup, now: float) -> str | None:
    """Why this credential cannot authenticate now, or None when it can. Checked on every token
    request and on every API request, so deletion, expiry and withdrawal of the org-admin label
    take effect on tokens already issued."""
    if record.deleting:
        return "the client credential is being deleted"
    if record.expires_at is not None and now >= record.expires_at:
        return "the client credential has expired"
    if record.phase != "Active" or not record.secret_hash:
        return f"the client credential is {(record.phase or 'not ready').lower()}"
    if record.level == "org":
        home = namespace_of(record.namespace)
        if not record.organization or home is None or home.org_admin != record.organization:
            # Otherwise anyone allowed to create a ClientCredential in any namespace could mint
            # access to a whole organization.
            return (
                f"org-level credentials of {record.organization!r} are honoured only in a namespace "
                f"labelled {ORG_ADMIN_LABEL}={record.organization}"
            )
    return None


def principal_for(record: CredentialRecord, namespace_of: NamespaceLookup, scopes: Iterable[str]) -> Principal:
    if record.level == "org":
        organization = record.organization
    else:
        home = namespace_of(record.namespace)
        organization = home.organization if home else None
    return Principal(
        client_id=record.client_id,
        credential=record.key,
        credential_uid=record.uid,
        level=record.level,
        organization=organization,
        namespace=record.namespace,
        scopes=frozenset(scopes),
        email=record.email,
    )


def can_reach(principal: Principal, namespace: NamespaceRecord | None) -> bool:
    """A project credential reaches its own namespace; an org credential every namespace of its
    organization that has not disabled it."""
    if namespace is None:
        return False
    if principal.level == "project":
        return namespace.name == principal.namespace
    return (
        principal.level == "org"
        and principal.organization is not None
        and namespace.organization == principal.organization
        and principal.client_id not in namespace.disabled_org_credentials
    )


def project_namespace(principal: Principal, org: str, project: str, namespace_of: NamespaceLookup) -> str | None:
    """The namespace behind `orgs/<org>/projects/<project>`, or None when it does not exist, is
    not in that org, or this principal cannot reach it (callers answer 404 for all three)."""
    namespace = namespace_of(project)
    if namespace is None or namespace.organization is None or namespace.organization != org:
        return None
    return namespace.name if can_reach(principal, namespace) else None


def reachable_namespaces(principal: Principal, namespaces: Iterable[NamespaceRecord]) -> list[str]:
    return sorted(ns.name for ns in namespaces if can_reach(principal, ns))
