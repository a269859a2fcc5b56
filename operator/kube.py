"""The operator's one path to the Kubernetes API: the client, the typed APIs built on it, and
the reads and writes the handlers use.

Handlers are sync functions that Kopf runs in its thread pool. One ApiClient (one connection
pool) serves them all: a client per call would open a TLS connection per call. `configure`
loads the cluster's configuration and builds it (__main__.startup); the ApiClient copies the
configuration it is built from, so nothing builds one before that."""

from __future__ import annotations

import base64
import threading

import kubernetes
from kubernetes.client.rest import ApiException

from .names import GROUP, VERSION

POOL_SIZE = 96
"""Connections kept open: Kopf's handler threads and the tick writers (at most 64,
settings.status_writers) share them; past it urllib3 opens extra connections and drops them
after use."""

_client: kubernetes.client.ApiClient | None = None
_apis: dict[type, object] = {}
_lock = threading.Lock()


def load_cluster_config() -> None:
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()


def configure() -> None:
    """Load the cluster's configuration and build the one ApiClient on it."""
    global _client
    load_cluster_config()
    with _lock:
        _client = _new_client()
        _apis.clear()


def _new_client() -> kubernetes.client.ApiClient:
    configuration = kubernetes.client.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = max(configuration.connection_pool_maxsize or 0, POOL_SIZE)
    return kubernetes.client.ApiClient(configuration)


def api_client() -> kubernetes.client.ApiClient:
    global _client
    with _lock:
        if _client is None:  # a process that loaded the configuration itself (peering, tools)
            _client = _new_client()
        return _client


def _api(cls):
    api = _apis.get(cls)
    if api is None:
        client = api_client()
        with _lock:
            api = _apis.setdefault(cls, cls(client))
    return api


def batch() -> kubernetes.client.BatchV1Api:
    return _api(kubernetes.client.BatchV1Api)


def core() -> kubernetes.client.CoreV1Api:
    return _api(kubernetes.client.CoreV1Api)


def custom() -> kubernetes.client.CustomObjectsApi:
    return _api(kubernetes.client.CustomObjectsApi)


def to_dict(obj) -> dict:
    """A client model object as the plain dict the API server sent (camelCase keys)."""
    return api_client().sanitize_for_serialization(obj)


def _absent_is_none(read):
    try:
        return read()
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _without_body(exc: ApiException) -> ApiException:
    """The error of a Secret call with status and reason only: its body may echo the data."""
    return ApiException(status=exc.status, reason=exc.reason)


def create_if_absent(body: dict) -> tuple[dict, bool]:
    """Create `body` unless an object of that name exists; returns (object, created).

    A 409 means an earlier attempt (a retried handler, a restarted operator) already
    created it, which is the point: the name is deterministic, so this is idempotent."""
    kind = body["kind"]
    namespace = body["metadata"]["namespace"]
    name = body["metadata"]["name"]
    if kind == "Job":
        create, read = batch().create_namespaced_job, batch().read_namespaced_job
    elif kind == "CronJob":
        create, read = batch().create_namespaced_cron_job, batch().read_namespaced_cron_job
    elif kind == "ConfigMap":
        create, read = core().create_namespaced_config_map, core().read_namespaced_config_map
    elif kind == "Secret":
        create, read = core().create_namespaced_secret, core().read_namespaced_secret
    else:
        raise ValueError(f"create_if_absent does not handle {kind}")
    try:
        return to_dict(create(namespace, body)), True
    except ApiException as exc:
        if exc.status != 409 and kind == "Secret":
            raise _without_body(exc) from None
        if exc.status != 409:
            raise
    return to_dict(read(name, namespace)), False


def replace(body: dict, resource_version: str) -> dict:
    """Replace the object `body` names, only if it is still at `resource_version`."""
    kind, meta = body["kind"], body["metadata"]
    body = {**body, "metadata": {**meta, "resourceVersion": resource_version}}
    if kind == "CronJob":
        return to_dict(batch().replace_namespaced_cron_job(meta["name"], meta["namespace"], body))
    if kind == "ConfigMap":
        return to_dict(core().replace_namespaced_config_map(meta["name"], meta["namespace"], body))
    if kind == "Secret":
        try:
            return to_dict(core().replace_namespaced_secret(meta["name"], meta["namespace"], body))
        except ApiException as exc:
            raise _without_body(exc) from None
    raise ValueError(f"replace does not handle {kind}")


def delete_secret(namespace: str, name: str) -> None:
    _absent_is_none(lambda: core().delete_namespaced_secret(name, namespace))


def delete_cronjob(namespace: str, name: str) -> None:
    # Background: the Jobs, ConfigMap and Secret go with it through their owner references.
    _absent_is_none(lambda: batch().delete_namespaced_cron_job(name, namespace, propagation_policy="Background"))


def read_job(namespace: str, name: str) -> dict | None:
    return _absent_is_none(lambda: to_dict(batch().read_namespaced_job(name, namespace)))


def list_jobs(namespace: str, labels: dict[str, str]) -> list[dict]:
    selector = ",".join(f"{k}={v}" for k, v in labels.items())
    return [to_dict(j) for j in batch().list_namespaced_job(namespace, label_selector=selector).items]


def list_cronjobs(namespace: str, selector: str) -> dict[str, dict]:
    """The CronJobs that match the label selector, by name."""
    items = batch().list_namespaced_cron_job(namespace, label_selector=selector).items
    return {c.metadata.name: to_dict(c) for c in items}


def read_config_map(namespace: str, name: str) -> dict | None:
    return _absent_is_none(lambda: to_dict(core().read_namespaced_config_map(name, namespace)))


def read_secret(namespace: str, name: str) -> dict | None:
    """A Secret as sent (data base64-encoded); None when there is no such Secret."""
    try:
        return to_dict(core().read_namespaced_secret(name, namespace))
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise _without_body(exc) from None


def read_secret_data(namespace: str, name: str) -> dict[str, bytes] | None:
    """A Secret's data, decoded; None when there is no such Secret."""
    secret = read_secret(namespace, name)
    if secret is None:
        return None
    return {key: base64.b64decode(value) for key, value in (secret.get("data") or {}).items()}


def read_namespace(name: str) -> dict:
    return to_dict(core().read_namespace(name))


def list_job_pods(namespace: str, job_name: str) -> list[dict]:
    pods = core().list_namespaced_pod(namespace, label_selector=f"batch.kubernetes.io/job-name={job_name}")
    return [to_dict(p) for p in pods.items]


def read_custom(plural: str, namespace: str, name: str) -> dict | None:
    return _absent_is_none(lambda: custom().get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name))


def list_custom(plural: str, namespace: str) -> list[dict]:
    return custom().list_namespaced_custom_object(GROUP, VERSION, namespace, plural)["items"]


class Conflict(Exception):
    """The object changed since it was read: read it again and recompute."""

    status = 409  # what assay.crds.contracts.optimistic.is_conflict looks for


def patch_status(plural: str, namespace: str, name: str, status: dict, resource_version: str | None = None) -> None:
    """Merge-patch .status. With `resource_version`, only if the object is still at that
    version (optimistic concurrency: two handlers computing status from different reads
    cannot overwrite the newer one with the older one); raises Conflict otherwise."""
    body: dict = {"status": status}
    if resource_version is not None:
        body["metadata"] = {"resourceVersion": resource_version}
    try:
        custom().patch_namespaced_custom_object_status(GROUP, VERSION, namespace, plural, name, body)
    except ApiException as exc:
        if exc.status == 409 and resource_version is not None:
            raise Conflict(f"{plural}/{name} changed since resourceVersion {resource_version}") from exc
        raise
