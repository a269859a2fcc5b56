"""The in-memory index the gateway authenticates against: ClientCredentials by client id and
namespaces by name, built from the objects exactly as the API server sends them (plain dicts).

The watchers (watch.py) feed it; unit tests feed it plain dicts. Reads take a snapshot under a
lock, so a request sees one consistent state of a credential.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import ValidationError

from assay.crds.clientcredential import ClientCredentialSpec

log = logging.getLogger("assay.api.auth")

ORG_ADMIN_LABEL = "assay.dev/org-admin"
"""A namespace labelled `assay.dev/org-admin=<org>` may hold org-level credentials of <org>."""
DISABLED_ORG_CREDENTIALS_ANNOTATION = "assay.dev/disabled-org-credentials"
"""On a project namespace: comma-separated client ids of org credentials disabled there."""


@dataclass(frozen=True)
class CredentialRecord:
    namespace: str
    name: str
    uid: str
    client_id: str
    phase: str | None
    secret_hash: str | None
    scopes: tuple[str, ...]
    grant_types: frozenset[str]
    level: str
    organization: str | None
    redirect_uris: tuple[str, ...]
    expires_at: float | None
    """Epoch seconds, from the spec: the gateway does not wait for the operator's phase flip."""
    deleting: bool
    """deletionTimestamp is set: revoked at once, even while a finalizer holds the object."""
    email: str | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class NamespaceRecord:
    name: str
    organization: str | None
    org_admin: str | None
    disabled_org_credentials: frozenset[str]


def credential_record(obj: dict) -> CredentialRecord | None:
    """The record for a ClientCredential, or None while it cannot authenticate anything (the
    operator has not written its client id yet) or its spec does not parse."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    client_id = status.get("clientId")
    if not client_id:
        return None
    try:
        spec = ClientCredentialSpec.model_validate(obj.get("spec") or {})
    except ValidationError:
        log.warning("ignoring ClientCredential %s/%s: its spec does not parse", meta.get("namespace"), meta.get("name"))
        return None
    return CredentialRecord(
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta["uid"],
        client_id=client_id,
        phase=status.get("phase"),
        secret_hash=status.get("secretHash"),
        scopes=tuple(spec.scopes),
        grant_types=frozenset(spec.grant_types),
        level=spec.level,
        organization=spec.organization,
        redirect_uris=tuple(spec.redirect_uris),
        expires_at=spec.expires_at.timestamp() if spec.expires_at else None,
        deleting=bool(meta.get("deletionTimestamp")),
        email=spec.email,
    )


def namespace_record(obj: dict, org_label: str) -> NamespaceRecord:
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    disabled = annotations.get(DISABLED_ORG_CREDENTIALS_ANNOTATION, "")
    return NamespaceRecord(
        name=meta["name"],
        organization=labels.get(org_label) or None,
        org_admin=labels.get(ORG_ADMIN_LABEL) or None,
        disabled_org_credentials=frozenset(c.strip() for c in disabled.split(",") if c.strip()),
    )


class CredentialIndex:
    def __init__(self, org_label: str):
        self.org_label = org_label
        self._lock = threading.Lock()
        self._credentials: dict[str, CredentialRecord] = {}  # "namespace/name" -> record
        self._by_client_id: dict[str, set[str]] = {}
        self._namespaces: dict[str, NamespaceRecord] = {}

    # --- feeding ---------------------------------------------------------------------------------

    def _drop_key(self, key: str) -> None:
        old = self._credentials.pop(key, None)
        if old is not None:
            keys = self._by_client_id.get(old.client_id, set())
            keys.discard(key)
            if not keys:
                self._by_client_id.pop(old.client_id, None)

    def _put(self, obj: dict) -> None:
        meta = obj.get("metadata") or {}
        key = f"{meta.get('namespace')}/{meta.get('name')}"
        self._drop_key(key)
        record = credential_record(obj)
        if record is not None:
            self._credentials[key] = record
            self._by_client_id.setdefault(record.client_id, set()).add(key)

    def put_credential(self, obj: dict) -> None:
        with self._lock:
            self._put(obj)

    def drop_credential(self, obj: dict) -> None:
        meta = obj.get("metadata") or {}
        with self._lock:
            self._drop_key(f"{meta.get('namespace')}/{meta.get('name')}")

    def reset_credentials(self, objs: Iterable[dict]) -> None:
        with self._lock:
            self._credentials.clear()
            self._by_client_id.clear()
            for obj in objs:
                self._put(obj)

    def put_namespace(self, obj: dict) -> None:
        if (obj.get("metadata") or {}).get("deletionTimestamp"):
            # A terminating namespace is gone for every API: it lingers for seconds while its
            # objects are removed, and nothing new can be created in it.
            self.drop_namespace(obj)
            return
        record = namespace_record(obj, self.org_label)
        with self._lock:
            self._namespaces[record.name] = record

    def drop_namespace(self, obj: dict) -> None:
        with self._lock:
            self._namespaces.pop((obj.get("metadata") or {}).get("name"), None)

    def reset_namespaces(self, objs: Iterable[dict]) -> None:
        records = {
            r.name: r
            for r in (
                namespace_record(o, self.org_label)
                for o in objs
                if not (o.get("metadata") or {}).get("deletionTimestamp")
            )
        }
        with self._lock:
            self._namespaces = records

    # --- reading ---------------------------------------------------------------------------------

    def credential(self, client_id: str) -> CredentialRecord | None:
        """The credential with this client id. Two credentials claiming one id (only possible
        through a forged status) authenticate neither: there is no safe way to pick."""
        with self._lock:
            keys = self._by_client_id.get(client_id)
            if not keys:
                return None
            if len(keys) > 1:
                log.warning("client id %s is claimed by %s: refusing both", client_id, sorted(keys))
                return None
            return self._credentials[next(iter(keys))]

    def namespace(self, name: str) -> NamespaceRecord | None:
        with self._lock:
            return self._namespaces.get(name)

    def namespaces(self) -> list[NamespaceRecord]:
        with self._lock:
            return list(self._namespaces.values())
