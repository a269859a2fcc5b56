"""Deterministic names and labels for everything the operator creates.

A child's name derives from its owner and run id only, so a repeated event, a retried handler
or a restarted operator finds the object it already created instead of starting a second run.
"""

from __future__ import annotations

import hashlib

GROUP = "assay.dev"
VERSION = "v1alpha1"
MANAGED_BY = "assay-operator"

LABEL_KIND = "assay.dev/kind"
LABEL_NAME = "assay.dev/name"
LABEL_RUN_ID = "assay.dev/run-id"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_APP = "app.kubernetes.io/name"

MAX_NAME = 63


def _fit(base: str, suffix: str, limit: int = MAX_NAME) -> str:
    """`base-suffix` within `limit` characters; a cut base gets a hash so two long names
    sharing a prefix still differ."""
    name = f"{base}-{suffix}"
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(base.encode()).hexdigest()[:6]
    keep = limit - len(suffix) - len(digest) - 2
    return f"{base[:keep].rstrip('-')}-{digest}-{suffix}"


def run_id_for(name: str, uid: str) -> str:
    """The run id of a one-shot resource (a LoadTest runs once): its name plus its uid's
    first eight characters, so a deleted and recreated LoadTest of the same name is a new run."""
    # Pod names of an Indexed Job are `<job>-<index>-<5 random>`; keep room for them.
    return _fit(name, uid.replace("-", "")[:8], limit=52)


def job_name_for(run_id: str) -> str:
    return run_id


def spec_configmap_name_for(run_id: str) -> str:
    return _fit(run_id, "spec")


def run_labels(kind: str, name: str, run_id: str) -> dict[str, str]:
    return {
        LABEL_APP: "assay-runner",
        LABEL_COMPONENT: kind.lower(),
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_KIND: kind,
        # Label values are limited to 63 characters like names; owners' names may be longer.
        LABEL_NAME: name if len(name) <= MAX_NAME else _fit(name[:40], "x"),
        LABEL_RUN_ID: run_id,
    }
