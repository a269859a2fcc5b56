"""Kopf's last-handled configuration without secret values.

Kopf keeps the state it last handled in an annotation of the resource
(`kopf.zalando.org/last-handled-configuration`) to tell what changed. Whoever may read a
Monitor or TestSuite may read that annotation, which need not include reading Secrets, so
the stored state carries, in place of each inline secret value (assay.crds.secrets), an
HMAC of it: a changed password is still a change of the spec, but the value is not there,
and a guessable one cannot be confirmed by hashing guesses without the key.

The key is derived from the upload key every replica shares, so a restart or a handover to
another replica sees the same digests. Without an upload key it is random per process: after a
restart every resource with inline secrets looks changed once, and the handlers that run then
are idempotent, so that costs a reconcile, not a second run.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import secrets

import kopf
from pydantic import ValidationError

from assay.crds.secrets import SPEC_MODELS, secret_fields

DIGEST_PREFIX = "hmac-sha256:"


def _digest(key: bytes, text: str) -> str:
    return DIGEST_PREFIX + hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def essence_without_secrets(kind: str | None, essence: dict, key: bytes) -> dict:
    """`essence` (Kopf's stored state: spec, labels, annotations) with each inline secret
    value of a Monitor's or TestSuite's spec replaced by its HMAC under `key`. A spec its
    model rejects is stored as one HMAC of the whole spec: its secret fields cannot be found."""
    if kind not in SPEC_MODELS or not isinstance(essence.get("spec"), dict):
        return essence
    try:
        fields = secret_fields({"kind": kind, "spec": essence["spec"]})
    except ValidationError:
        return {**essence, "spec": {"digest": _digest(key, json.dumps(essence["spec"], sort_keys=True))}}
    redacted = copy.deepcopy(essence)
    for field in fields:
        if field.value is None:
            continue
        parent = redacted
        for part in field.path[:-1]:
            parent = parent[part]
        parent[field.path[-1]] = _digest(key, field.value)
    return redacted


def diffbase_key(settings) -> bytes | None:
    """A key of its own for the digests, derived from the shared upload key (None without one)."""
    upload_key = settings.upload_key.get_secret_value() if settings.upload_key else ""
    return hmac.new(upload_key.encode(), b"assay diff-base digests", hashlib.sha256).digest() if upload_key else None


class SecretFreeDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """Kopf's annotation diff-base storage (same annotation), storing no secret value."""

    def __init__(self, key: bytes | None = None) -> None:
        super().__init__()
        self._key = key or secrets.token_bytes(32)

    def build(self, *, body, extra_fields=None):
        essence = super().build(body=body, extra_fields=extra_fields)
        return essence_without_secrets(body.get("kind"), essence, self._key)
