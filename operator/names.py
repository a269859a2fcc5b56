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
LABEL_LOCATION = "assay.dev/location"

# Set by users and the gateway on a TestSuite or Monitor to request a run (see runrequest.py).
RUN_REQUEST_ANNOTATION = "assay.dev/run-request"
# On every run Job: what was asked for and when, so the run's status can be rebuilt from it.
REQUEST_ID_ANNOTATION = "assay.dev/request-id"
REQUESTED_AT_ANNOTATION = "assay.dev/requested-at"
LOCATION_ANNOTATION = "assay.dev/location"
ENVIRONMENT_ANNOTATION = "assay.dev/environment"

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


def run_id_for_request(name: str, uid: str, request_id: str) -> str:
    """The run id of a requested run (TestSuite, Monitor): the owner's name plus ten hex
    characters of sha256("<uid>/<request id>").

    A repeated or replayed request yields the same id, hence the same Job name, so it never
    starts a second run; a new request id is a new run. The gateway computes the same id to
    answer "run started" with the id the run will have."""
    digest = hashlib.sha256(f"{uid}/{request_id}".encode()).hexdigest()[:10]
    return _fit(name, digest, limit=52)


def job_name_for(run_id: str, location: str | None = None) -> str:
    """The run's Job; a run in several regions has one Job per region, `<run-id>-<region>`.

    52 characters at most, as run ids: an Indexed Job's pods are named and host-named
    `<job>-<index>`, which must stay a valid DNS label."""
    return run_id if location is None else _fit(run_id, location, limit=52)


def spec_configmap_name_for(run_id: str) -> str:
    return _fit(run_id, "spec")


def upload_secret_name_for(run_id: str) -> str:
    return _fit(run_id, "upload")


def name_label(name: str) -> str:
    # Label values are limited to 63 characters like names; owners' names may be longer.
    return name if len(name) <= MAX_NAME else _fit(name, "x")


def run_labels(kind: str, name: str, run_id: str) -> dict[str, str]:
    return {
        LABEL_APP: "assay-runner",
        LABEL_COMPONENT: kind.lower(),
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_KIND: kind,
        LABEL_NAME: name_label(name),
        LABEL_RUN_ID: run_id,
    }
