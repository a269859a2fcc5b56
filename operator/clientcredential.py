"""ClientCredential handlers: generate the client id and secret once, keep only a hash.

On create (and on resume, for a credential an earlier operator did not finish) the operator
generates a client id (`ac_` + 20 lowercase letters and digits) and a secret (32 random bytes, URL-safe
base64) and writes them ONCE into a Secret `<credential>-secret` owned by the credential (keys
`client-id`, `client-secret`). Only `sha256:<hex>` of the secret goes into the status, where
the gateway's index reads it. A plain SHA-256 is the right hash here: the secret is 256
random bits, so there is no dictionary to attack and nothing a salt or a slow KDF would add,
while a token request stays a microsecond hash plus a constant-time compare.

Secrets are never rotated behind a client's back:
- a credential whose status already has a client id and hash is settled; nothing is
  regenerated, even when its Secret was deleted (deleting it after copying the secret is fine);
- a credential without them (the operator died between creating the Secret and writing the
  status) takes id and secret from its own Secret, which is created only if absent;
- a Secret of that name that this credential does not control (a leftover of a deleted
  credential of the same name not yet garbage-collected, or someone else's object) is never
  adopted: its contents may be known to others. The handler retries until it is gone.

The plaintext appears only in the Secret: not in the status, events, logs or annotations
(Kopf's last-handled-configuration annotation holds the spec only). The client id is public
and goes on the credential as the label `assay.dev/client-id` for `kubectl get -l`; the
gateway keys its index on `status.clientId`, which only the operator writes, never on the
label, which anyone who can edit the credential's metadata can change.

Phases: Active, Expired (a daemon sleeps until `spec.expiresAt` and flips it; the daemon is
started again on resume, so an operator that was down at the moment catches up at once), and
Disabled, which only an administrator sets through the status subresource and the operator
keeps: it never re-enables a credential. The gateway does not wait for the Expired flip: it
compares `expiresAt` with its own clock on every request.
"""

from __future__ import annotations

import base64
import secrets
from datetime import datetime, timezone

import kopf
from kubernetes.client.rest import ApiException
from pydantic import ValidationError

from assay.crds.clientcredential import ClientCredentialSpec, hash_secret

from . import kube
from .names import GROUP, LABEL_KIND, LABEL_MANAGED_BY, LABEL_NAME, MANAGED_BY, VERSION, fit_name
from .runjob import owner_reference
from .status import reject_spec, set_condition, update_status

KIND = "ClientCredential"
PLURAL = "clientcredentials"
READY = "Ready"
LABEL_CLIENT_ID = "assay.dev/client-id"
SECRET_KEY_CLIENT_ID = "client-id"
SECRET_KEY_CLIENT_SECRET = "client-secret"
CLIENT_ID_PREFIX = "ac_"
MAX_SLEEP = 24 * 3600.0  # threading waits overflow on very long timeouts; wake daily instead


# --- pure parts: generation, hashing, builders, status ------------------------------------------

CLIENT_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def generate_client_id() -> str:
    """`ac_` + 20 lowercase letters and digits (103 random bits). Not URL-safe base64: the id
    is also a label value, which must end in a letter or digit, and a random `-` or `_` at
    the end would make the credential's Secret unwritable for good (the id is never
    regenerated)."""
    return CLIENT_ID_PREFIX + "".join(secrets.choice(CLIENT_ID_ALPHABET) for _ in range(20))


def generate_client_secret() -> str:
    return secrets.token_urlsafe(32)


def secret_name_for(credential: str) -> str:
    return fit_name(credential, "secret", limit=253)


def build_credential_secret(owner: dict, client_id: str, client_secret: str) -> dict:
    """The Secret that shows the generated secret to whoever may read Secrets in the namespace.
    Immutable: nothing can change what the stored hash was computed from."""
    meta = owner["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "immutable": True,
        "metadata": {
            "name": secret_name_for(meta["name"]),
            "namespace": meta["namespace"],
            "labels": {
                LABEL_MANAGED_BY: MANAGED_BY,
                LABEL_KIND: KIND,
                LABEL_NAME: meta["name"] if len(meta["name"]) <= 63 else fit_name(meta["name"][:40], "x"),
                LABEL_CLIENT_ID: client_id,
            },
            "ownerReferences": [owner_reference(owner)],
        },
        "data": {
            SECRET_KEY_CLIENT_ID: base64.b64encode(client_id.encode()).decode(),
            SECRET_KEY_CLIENT_SECRET: base64.b64encode(client_secret.encode()).decode(),
        },
    }


def controlled_by(obj: dict, uid: str) -> bool:
    return any(
        ref.get("controller") and ref.get("uid") == uid
        for ref in (obj.get("metadata") or {}).get("ownerReferences") or []
    )


def secret_contents(secret: dict) -> tuple[str, str]:
    data = secret.get("data") or {}
    try:
        return (
            base64.b64decode(data[SECRET_KEY_CLIENT_ID]).decode(),
            base64.b64decode(data[SECRET_KEY_CLIENT_SECRET]).decode(),
        )
    except (KeyError, ValueError) as exc:
        # Names only: never the values.
        raise kopf.PermanentError(
            f"Secret {secret['metadata']['name']} lacks valid {SECRET_KEY_CLIENT_ID}/{SECRET_KEY_CLIENT_SECRET} keys"
        ) from exc


def is_expired(expires_at: datetime | None, now: datetime) -> bool:
    return expires_at is not None and now >= expires_at


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


READY_BY_PHASE = {
    "Active": ("True", "SecretGenerated", "client id and secret generated; the secret is in secretRef"),
    "Expired": ("False", "Expired", "the credential passed its expiresAt and no longer authenticates"),
    "Disabled": ("False", "Disabled", "the credential was disabled and does not authenticate"),
}


def ready_conditions(conditions: list[dict] | None, phase: str, generation: int | None, now: datetime) -> list[dict]:
    status, reason, message = READY_BY_PHASE[phase]
    return set_condition(conditions, READY, status, reason, message, now=_iso(now), generation=generation)


def credential_status(
    spec: ClientCredentialSpec,
    client_id: str,
    secret_hash: str,
    secret_name: str,
    generation: int | None,
    now: datetime,
    created_at: str | None = None,
    disabled: bool = False,
    conditions: list[dict] | None = None,
) -> dict:
    """The whole status. `disabled`: an administrator set phase Disabled (through the status
    subresource); the operator keeps it, it never re-enables a credential."""
    expired = is_expired(spec.expires_at, now)
    phase = "Expired" if expired else "Disabled" if disabled else "Active"
    status = {
        "phase": phase,
        "clientId": client_id,
        "secretRef": {"name": secret_name},
        "secretHash": secret_hash,
        "createdAt": created_at or _iso(now),
        "observedGeneration": generation,
        "conditions": ready_conditions(conditions, phase, generation, now),
    }
    if spec.expires_at is not None:
        status["expiresAt"] = _iso(spec.expires_at)
    return status


# --- Kubernetes I/O for the Secret --------------------------------------------------------------


def _read_secret(namespace: str, name: str) -> dict | None:
    try:
        return kube.read_secret(namespace, name)
    except ApiException as exc:
        raise kopf.TemporaryError(f"reading Secret {name}: {exc.status} {exc.reason}", delay=5) from None


def _create_secret(body: dict) -> bool:
    """Create-if-absent; False when it already existed. Errors carry status and reason only:
    an API server error body may echo what was sent."""
    try:
        return kube.create_if_absent(body)[1]
    except ApiException as exc:
        raise kopf.TemporaryError(
            f"creating Secret {body['metadata']['name']}: {exc.status} {exc.reason}", delay=5
        ) from None


# --- handlers -----------------------------------------------------------------------------------


def _validated_spec(spec: dict, namespace: str, name: str) -> ClientCredentialSpec:
    try:
        return ClientCredentialSpec.model_validate(dict(spec))
    except ValidationError as exc:
        raise reject_spec(
            KIND, namespace, name, READY, f"invalid spec: {exc}", _iso(datetime.now(timezone.utc))
        ) from exc


def _owned_credentials(body, namespace: str, name: str, uid: str) -> tuple[str, str]:
    """The client id and secret in this credential's own Secret, creating it if absent."""
    secret_name = secret_name_for(name)
    owner = {"apiVersion": body["apiVersion"], "kind": body["kind"], "metadata": dict(body["metadata"])}
    for _ in range(2):
        existing = _read_secret(namespace, secret_name)
        if existing is None:
            client_id, client_secret = generate_client_id(), generate_client_secret()
            if _create_secret(build_credential_secret(owner, client_id, client_secret)):
                return client_id, client_secret
            continue  # lost a race with another attempt: read what it created
        if not controlled_by(existing, uid):
            # Adopting it would hand this credential a secret that someone else may know.
            raise kopf.TemporaryError(
                f"Secret {secret_name} exists but is not controlled by this credential "
                "(a deleted credential's Secret awaiting garbage collection, or a foreign object); "
                "waiting for it to go away",
                delay=5,
            )
        return secret_contents(existing)
    raise kopf.TemporaryError(f"Secret {secret_name} vanished while being created", delay=2)


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
def establish_credential(body, spec, name, namespace, uid, meta, status, patch, logger, **_):
    parsed = _validated_spec(spec, namespace, name)
    now = datetime.now(timezone.utc)
    generation = meta.get("generation")
    if status.get("clientId") and status.get("secretHash"):
        client_id, secret_hash = status["clientId"], status["secretHash"]
        secret_name = (status.get("secretRef") or {}).get("name") or secret_name_for(name)
    else:
        client_id, client_secret = _owned_credentials(body, namespace, name, uid)
        secret_hash, secret_name = hash_secret(client_secret), secret_name_for(name)
        logger.info(f"client {client_id}: secret generated into Secret {secret_name} (shown once)")
    new = credential_status(
        parsed,
        client_id,
        secret_hash,
        secret_name,
        generation,
        now,
        created_at=status.get("createdAt"),
        disabled=status.get("phase") == "Disabled",
        conditions=status.get("conditions"),
    )
    for key, value in new.items():
        if status.get(key) != value:
            patch.status[key] = value
    if (meta.get("labels") or {}).get(LABEL_CLIENT_ID) != client_id:
        # Overwrites whatever a copied manifest carried: the label follows the status.
        patch.metadata.setdefault("labels", {})[LABEL_CLIENT_ID] = client_id


def _expiry_pending(spec, status, **_) -> bool:
    return bool(spec.get("expiresAt")) and status.get("phase") != "Expired"


@kopf.daemon(GROUP, VERSION, PLURAL, when=_expiry_pending, cancellation_timeout=5)
def expire_credential(spec, name, namespace, meta, status, stopped, logger, **_):
    expires_at = _validated_spec(spec, namespace, name).expires_at
    while not stopped:
        remaining = (expires_at - datetime.now(timezone.utc)).total_seconds()
        if remaining <= 0:
            break
        stopped.wait(min(remaining, MAX_SLEEP))
    if stopped:
        return
    now = datetime.now(timezone.utc)

    def compute(current: dict) -> dict | None:
        status = current.get("status") or {}
        if current["metadata"]["uid"] != meta.get("uid") or not status.get("clientId"):
            return None  # not established yet: establish_credential will write the Expired phase itself
        return {
            "phase": "Expired",
            "conditions": ready_conditions(status.get("conditions"), "Expired", meta.get("generation"), now),
        }

    written = update_status(KIND, namespace, name, compute)
    if written is not None:
        logger.info(f"client {written.before['clientId']}: expired at {_iso(expires_at)}")
