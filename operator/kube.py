"""Kubernetes I/O for the handlers: create-if-absent, reads, status patches.

Handlers are sync functions that Kopf runs in its thread pool; the official client is
configured once at start-up (see __main__.startup)."""

from __future__ import annotations

import base64

import kubernetes
from kubernetes.client.rest import ApiException

from .names import GROUP, VERSION


def _api_client() -> kubernetes.client.ApiClient:
    return kubernetes.client.ApiClient()


def to_dict(obj) -> dict:
    """A client model object as the plain dict the API server sent (camelCase keys)."""
    return _api_client().sanitize_for_serialization(obj)


def create_if_absent(body: dict) -> tuple[dict, bool]:
    """Create `body` unless an object of that name exists; returns (object, created).

    A 409 means an earlier attempt (a retried handler, a restarted operator) already
    created it, which is the point: the name is deterministic, so this is idempotent."""
    kind = body["kind"]
    namespace = body["metadata"]["namespace"]
    name = body["metadata"]["name"]
    if kind == "Job":
        api = kubernetes.client.BatchV1Api()
        create, read = api.create_namespaced_job, api.read_namespaced_job
    elif kind == "ConfigMap":
        api = kubernetes.client.CoreV1Api()
        create, read = api.create_namespaced_config_map, api.read_namespaced_config_map
    elif kind == "Secret":
        api = kubernetes.client.CoreV1Api()
        create, read = api.create_namespaced_secret, api.read_namespaced_secret
    else:
        raise ValueError(f"create_if_absent does not handle {kind}")
    try:
        return to_dict(create(namespace, body)), True
    except ApiException as exc:
        if exc.status != 409 and kind == "Secret":
            raise ApiException(status=exc.status, reason=exc.reason) from None  # the body may echo the data
        if exc.status != 409:
            raise
    return to_dict(read(name, namespace)), False


def read_job(namespace: str, name: str) -> dict | None:
    try:
        return to_dict(kubernetes.client.BatchV1Api().read_namespaced_job(name, namespace))
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def list_jobs(namespace: str, labels: dict[str, str]) -> list[dict]:
    selector = ",".join(f"{k}={v}" for k, v in labels.items())
    jobs = kubernetes.client.BatchV1Api().list_namespaced_job(namespace, label_selector=selector)
    return [to_dict(j) for j in jobs.items]


def read_config_map(namespace: str, name: str) -> dict | None:
    try:
        return to_dict(kubernetes.client.CoreV1Api().read_namespaced_config_map(name, namespace))
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def read_secret_data(namespace: str, name: str) -> dict[str, bytes] | None:
    """A Secret's data, decoded; None when there is no such Secret."""
    try:
        secret = kubernetes.client.CoreV1Api().read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise ApiException(status=exc.status, reason=exc.reason) from None  # the body may echo the data
    return {key: base64.b64decode(value) for key, value in (secret.data or {}).items()}


def list_job_pods(namespace: str, job_name: str) -> list[dict]:
    pods = kubernetes.client.CoreV1Api().list_namespaced_pod(
        namespace, label_selector=f"batch.kubernetes.io/job-name={job_name}")
    return [to_dict(p) for p in pods.items]


def read_custom(plural: str, namespace: str, name: str) -> dict | None:
    try:
        return kubernetes.client.CustomObjectsApi().get_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def list_custom(plural: str, namespace: str) -> list[dict]:
    return kubernetes.client.CustomObjectsApi().list_namespaced_custom_object(
        GROUP, VERSION, namespace, plural)["items"]


class Conflict(Exception):
    """The object changed since it was read: read it again and recompute."""


def patch_status(plural: str, namespace: str, name: str, status: dict,
                 resource_version: str | None = None) -> None:
    """Merge-patch .status. With `resource_version`, only if the object is still at that
    version (optimistic concurrency: two handlers computing status from different reads
    cannot overwrite the newer one with the older one); raises Conflict otherwise."""
    body: dict = {"status": status}
    if resource_version is not None:
        body["metadata"] = {"resourceVersion": resource_version}
    try:
        kubernetes.client.CustomObjectsApi().patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, plural, name, body)
    except ApiException as exc:
        if exc.status == 409 and resource_version is not None:
            raise Conflict(f"{plural}/{name} changed since resourceVersion {resource_version}") from exc
        raise
