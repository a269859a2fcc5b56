"""Secret values in Monitor and TestSuite specs.

Every secret field `x` of a spec has a sibling `xFrom` that reads the value from a key of a
Secret in the resource's namespace, as a container's env var does with `valueFrom`. Set one
of the two, not both:

```yaml
auth:
  authType: basic
  username: demo
  passwordFrom:
    secretKeyRef: {name: demo-credentials, key: password}
```

The secret fields: basic-auth `password`; OAuth 1 `consumerSecret` and `tokenSecret`; OAuth 2
`accessToken`, `clientSecret`, `password` and `refreshToken`; an environment's
`clientCertificate` (PEM certificate and key); an integration's `url` and `routingKey` (the
operator reads these itself when it notifies, see operator/integrations.py). Variables and parameters that are secrets go
in a Monitor environment's `secretVariables` and a TestSuite's `secretParameters`, each
`{name, value}` or `{name, valueFrom}`; they are used as `{{name}}` like the others, and run
reports leave them out.

Where the values go: a run's ConfigMap (its frozen manifest) and a tick group's members
ConfigMap never hold a secret value. The operator copies every secret value of the run, inline
or referenced, into a Secret of the run (`<run-id>-secrets`, owned by the run's Jobs;
`assay-tick-<hash>-secrets` for a tick group, owned by its CronJob), points the manifest's
field at that Secret's key, and mounts the Secret into the runner pods. A referenced Secret
that does not exist holds the run back: the Monitor's or TestSuite's `RunRequest` condition
says `SecretNotFound` and which field and Secret, and the run starts once the Secret is there
(a Schedule's `Ready` condition says the same, and its ticks leave the target out until then). Kopf's last-handled
configuration annotation stores an HMAC in place of each inline value.

Inline values keep working, but whoever may read the resource reads them, and a client-side
`kubectl apply` copies the whole object into its `kubectl.kubernetes.io/last-applied-configuration`
annotation: prefer `xFrom`, or `kubectl apply --server-side`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Iterator, Optional

from pydantic import BaseModel
from pydantic.alias_generators import to_camel

from .common import SecretSource
from .monitor import MonitorSpec
from .testsuite import TestSuiteSpec

SPEC_MODELS: dict[str, type[BaseModel]] = {"Monitor": MonitorSpec, "TestSuite": TestSuiteSpec}
FROM = "_from"

FieldPath = tuple
"""Keys and list indices from the document's root: `("spec", "environments", 0, "auth", "password")`."""


# How a run's manifest refers to its own Secret: `without_secret_values` moves every value out
# and points the field at a key named after the field's place (`spec.environments.0.auth.
# password`); the runner reads that Secret as files, one per key, and `with_secret_values`
# fills the values back in before the manifest is validated.


class SecretUnavailable(LookupError):
    """A secret field's value cannot be read: the message names the field and the Secret."""


@dataclass(frozen=True)
class SecretField:
    """One secret field of a manifest that is set: its value inline, or where it comes from."""

    path: FieldPath
    value: Optional[str]
    source: Optional[SecretSource]

    @property
    def key(self) -> str:
        """The field's key in a run's Secret: its path, dot-separated."""
        return ".".join(str(part) for part in self.path)

    @property
    def where(self) -> str:
        """The field as messages name it: `spec.environments[0].auth.password`."""
        text = ""
        for part in self.path:
            text += f"[{part}]" if isinstance(part, int) else f".{part}"
        return text.lstrip(".")


@lru_cache(maxsize=None)
def secret_names(model: type[BaseModel]) -> tuple[str, ...]:
    """The secret fields a model declares (Python names): those with an `<name>_from` sibling."""
    fields = model.model_fields
    return tuple(name for name in fields if f"{name}{FROM}" in fields)


def _walk(model: BaseModel, path: FieldPath) -> Iterator[SecretField]:
    cls = type(model)
    secrets = secret_names(cls)
    for name, info in cls.model_fields.items():
        value = getattr(model, name)
        wire = info.alias or to_camel(name)
        if name in secrets:
            source = getattr(model, f"{name}{FROM}")
            if value is not None or source is not None:
                yield SecretField(path + (wire,), value, source)
        elif isinstance(value, BaseModel):
            yield from _walk(value, path + (wire,))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, BaseModel):
                    yield from _walk(item, path + (wire, index))


def secret_fields(document: dict) -> list[SecretField]:
    """The set secret fields of a Monitor or TestSuite manifest (none for other kinds).
    Raises pydantic's ValidationError for a spec its model rejects."""
    model = SPEC_MODELS.get(document.get("kind") or "")
    if model is None:
        return []
    return list(_walk(model.model_validate(document.get("spec") or {}), ("spec",)))


def _parent(document: dict, path: FieldPath):
    node = document
    for part in path[:-1]:
        node = node[part]
    return node


def without_secret_values(document: dict, secret_name: str, key_prefix: str = "") -> tuple[dict, list[SecretField]]:
    """A copy of the manifest in which every secret field refers to key `<key_prefix><field
    key>` of the Secret `secret_name`, and the fields as they were (inline or referenced),
    whose values go into that Secret. Pure: no value is read here."""
    fields = secret_fields(document)
    moved = copy.deepcopy(document)
    for field in fields:
        parent, wire = _parent(moved, field.path), field.path[-1]
        parent.pop(wire, None)
        parent[f"{wire}From"] = {"secretKeyRef": {"name": secret_name, "key": key_prefix + field.key}}
    return moved, fields


def with_secret_values(document: dict, read_key: Callable[[str, str], Optional[str]]) -> dict:
    """A copy of the manifest with every `xFrom` replaced by `x`, the value `read_key(secret
    name, key)` returns. Raises SecretUnavailable when it returns None."""
    sourced = [(f, f.source) for f in secret_fields(document) if f.source is not None]
    if not sourced:
        return document
    filled = copy.deepcopy(document)
    for field, source in sourced:
        ref = source.secret_key_ref
        value = read_key(ref.name, ref.key)
        if value is None:
            raise SecretUnavailable(f"{field.where}From: key {ref.key!r} of Secret {ref.name!r} is not available")
        parent, wire = _parent(filled, field.path), field.path[-1]
        parent.pop(f"{wire}From")
        parent[wire] = value
    return filled
