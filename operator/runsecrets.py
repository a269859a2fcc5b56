"""The Secret that carries a run's (or a tick group's) secret values to its pods.

Run ConfigMaps are readable by roles that cannot read Secrets, so the manifests they hold
carry no secret value: `move_secrets` points every secret field of the manifests at a key of
the run's own Secret (assay.crds.secrets), and `resolve_values` gathers what goes under those
keys: inline values as they are, referenced ones read from the resource's namespace. The
Secret is mounted at SECRETS_MOUNT (runjob.secret_volume) and owned by the Job or CronJob
that reads it, so it goes when they go.
"""

from __future__ import annotations

import base64
import functools
from typing import Callable

from assay.crds.secrets import SecretField, without_secret_values

from . import kube

SECRET_NOT_FOUND = "SecretNotFound"
"""The condition reason (a Monitor's or TestSuite's RunRequest, a Schedule's Ready) while a
Secret that the spec references does not exist."""

SecretReader = Callable[[str], "dict[str, bytes] | None"]
"""A Secret's decoded data by name, None when it does not exist."""


class MissingSecret(Exception):
    """A Secret (or a key of it) that a spec references does not exist: the run waits for it."""


def _is_manifest(value: object) -> bool:
    return isinstance(value, dict) and "spec" in value


def move_secrets(
    documents: dict[str, object],
    secret_name: str,
    key_prefix: str = "",
) -> tuple[dict[str, object], dict[str, SecretField]]:
    """`documents` by name (a manifest, a list of manifests such as a Monitor's subtests, or
    anything else, kept as it is) with every secret field pointing at a key of `secret_name`,
    and the fields by that key: `<key_prefix><name>[.<index>].<field path>`, the name without
    `.json`. Pure."""
    moved: dict[str, object] = {}
    by_key: dict[str, SecretField] = {}

    def move(document: dict, prefix: str) -> dict:
        result, fields = without_secret_values(document, secret_name, prefix)
        by_key.update({prefix + field.key: field for field in fields})
        return result

    for name, document in documents.items():
        stem = key_prefix + name.removesuffix(".json")
        if _is_manifest(document):
            moved[name] = move(document, f"{stem}.")
        elif isinstance(document, list) and document and all(_is_manifest(d) for d in document):
            moved[name] = [move(item, f"{stem}.{index}.") for index, item in enumerate(document)]
        else:
            moved[name] = document
    return moved, by_key


def resolve_values(fields: dict[str, SecretField], read: SecretReader) -> dict[str, str]:
    """The value for each key: inline, or from the Secret the field references. Raises
    MissingSecret naming the first field whose Secret or key does not exist."""
    values: dict[str, str] = {}
    for key, field in fields.items():
        if field.source is None:
            values[key] = field.value or ""
            continue
        ref = field.source.secret_key_ref
        data = read(ref.name)
        if data is None:
            raise MissingSecret(f"{field.where}From: Secret {ref.name!r} does not exist")
        if ref.key not in data:
            raise MissingSecret(f"{field.where}From: Secret {ref.name!r} has no key {ref.key!r}")
        values[key] = data[ref.key].decode("utf-8", errors="replace")
    return values


def namespace_reader(namespace: str) -> SecretReader:
    """Reads the namespace's Secrets, each once: a reader serves one run start or one pass
    over a namespace's tick groups, whose members often share a Secret."""
    return functools.lru_cache(maxsize=None)(lambda name: kube.read_secret_data(namespace, name))


def build_values_secret(
    name: str, namespace: str, labels: dict[str, str], owners: list[dict], values: dict[str, str]
) -> dict:
    """The Secret holding `values` (key -> text), owned by `owners` (owner references)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels), "ownerReferences": owners},
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in sorted(values.items())},
    }


def job_owner_reference(job: dict) -> dict:
    """A run Job as a Secret's owner. Not the controller: a run in several regions has several
    Jobs, each an owner, and the Secret goes when the last of them does."""
    meta = job["metadata"]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": False,
        "blockOwnerDeletion": False,
    }
