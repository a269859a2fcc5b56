"""Deterministic names and labels for everything the operator creates.

A child's name derives from its owner and run id only, so a repeated event, a retried handler
or a restarted operator finds the object it already created instead of starting a second run.
"""

from __future__ import annotations

from assay.crds.runrequest import (  # noqa: F401  (the shared contract, re-exported for the handlers)
    RUN_REQUEST_ANNOTATION,
    fit_name,
    run_id_for,
    run_id_for_request,
)

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
LABEL_TICK_GROUP = "assay.dev/tick-group"
"""On a tick CronJob, its ConfigMap, Secret, Jobs and pods: the group they run."""

# On every run Job: what was asked for and when, so the run's status can be rebuilt from it.
REQUEST_ID_ANNOTATION = "assay.dev/request-id"
REQUESTED_AT_ANNOTATION = "assay.dev/requested-at"
LOCATION_ANNOTATION = "assay.dev/location"
ENVIRONMENT_ANNOTATION = "assay.dev/environment"

MAX_NAME = 63


def job_name_for(run_id: str, location: str | None = None) -> str:
    """The run's Job; a run in several regions has one Job per region, `<run-id>-<region>`.

    52 characters at most, as run ids: an Indexed Job's pods are named and host-named
    `<job>-<index>`, which must stay a valid DNS label."""
    return run_id if location is None else fit_name(run_id, location, limit=52)


def spec_configmap_name_for(run_id: str) -> str:
    return fit_name(run_id, "spec")


def upload_secret_name_for(run_id: str) -> str:
    return fit_name(run_id, "upload")


def run_secret_name_for(run_id: str) -> str:
    """The Secret holding the run's secret values (assay.crds.secrets)."""
    return fit_name(run_id, "secrets")


def name_label(name: str) -> str:
    # Label values are limited to 63 characters like names; owners' names may be longer.
    return name if len(name) <= MAX_NAME else fit_name(name, "x")


def run_labels(kind: str, name: str, run_id: str) -> dict[str, str]:
    return {
        LABEL_APP: "assay-runner",
        LABEL_COMPONENT: kind.lower(),
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_KIND: kind,
        LABEL_NAME: name_label(name),
        LABEL_RUN_ID: run_id,
    }
