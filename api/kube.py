"""Kubernetes I/O for the gateway: the custom resources, namespaces and Secrets it touches.

One client for the process, created from the in-cluster service account or a kubeconfig.
Plain dicts in and out, as the API server speaks them (camelCase)."""

from __future__ import annotations

from pathlib import Path

import kubernetes
from kubernetes.client.rest import ApiException

from assay.crds import GROUP, VERSION


class NotFound(LookupError):
    pass


def present(items: list[dict]) -> list[dict]:
    """`items` without those being deleted: a DELETE the API answered is gone to its caller,
    even while a finalizer (the operator's) still holds the object."""
    return [item for item in items if not (item.get("metadata") or {}).get("deletionTimestamp")]


class KubeClient:
    def __init__(self, kubeconfig: Path | None = None):
        if kubeconfig:
            self.api_client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
        else:
            try:
                kubernetes.config.load_incluster_config()
            except kubernetes.config.ConfigException:
                kubernetes.config.load_kube_config()
            self.api_client = kubernetes.client.ApiClient()
        self.custom = kubernetes.client.CustomObjectsApi(self.api_client)
        self.core = kubernetes.client.CoreV1Api(self.api_client)

    def get(self, plural: str, namespace: str, name: str) -> dict:
        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
        except ApiException as exc:
            if exc.status == 404:
                raise NotFound(f"{plural}/{name} not found in {namespace}") from exc
            raise

    def list(self, plural: str, namespace: str | None = None, label_selector: str = "") -> list[dict]:
        if namespace:
            out = self.custom.list_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, label_selector=label_selector
            )
        else:
            out = self.custom.list_cluster_custom_object(GROUP, VERSION, plural, label_selector=label_selector)
        return out["items"]

    def create(self, plural: str, namespace: str, body: dict) -> dict:
        return self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)

    def patch(self, plural: str, namespace: str, name: str, patch: dict) -> dict:
        return self.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, plural, name, patch)

    def patch_status(self, plural: str, namespace: str, name: str, status: dict) -> dict:
        return self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, plural, name, {"status": status}
        )

    def replace(self, plural: str, namespace: str, name: str, body: dict) -> dict:
        """PUT the whole object; its metadata.resourceVersion makes a concurrent change a 409."""
        return self.custom.replace_namespaced_custom_object(GROUP, VERSION, namespace, plural, name, body)

    def delete(self, plural: str, namespace: str, name: str) -> None:
        try:
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def namespaces(self, label_selector: str = "") -> list[dict]:
        items = self.core.list_namespace(label_selector=label_selector).items
        return [self.api_client.sanitize_for_serialization(ns) for ns in items]

    def nodes(self, label_selector: str = "") -> list[dict]:
        items = self.core.list_node(label_selector=label_selector).items
        return [self.api_client.sanitize_for_serialization(node) for node in items]

    def namespace(self, name: str) -> dict:
        try:
            return self.api_client.sanitize_for_serialization(self.core.read_namespace(name))
        except ApiException as exc:
            if exc.status == 404:
                raise NotFound(f"namespace {name} not found") from exc
            raise

    def create_namespace(self, name: str, labels: dict[str, str], annotations: dict[str, str]) -> dict:
        body = {"metadata": {"name": name, "labels": labels, "annotations": annotations}}
        return self.api_client.sanitize_for_serialization(self.core.create_namespace(body))

    def delete_namespace(self, name: str) -> None:
        try:
            self.core.delete_namespace(name)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def config_map(self, namespace: str, name: str) -> dict | None:
        try:
            return self.api_client.sanitize_for_serialization(self.core.read_namespaced_config_map(name, namespace))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def write_config_map(self, namespace: str, body: dict) -> dict:
        """Create the ConfigMap, or replace it when body's metadata.resourceVersion is set (409
        when it changed meanwhile)."""
        if body["metadata"].get("resourceVersion"):
            out = self.core.replace_namespaced_config_map(body["metadata"]["name"], namespace, body)
        else:
            out = self.core.create_namespaced_config_map(namespace, body)
        return self.api_client.sanitize_for_serialization(out)

    def job(self, namespace: str, name: str) -> dict | None:
        try:
            job = kubernetes.client.BatchV1Api(self.api_client).read_namespaced_job(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return self.api_client.sanitize_for_serialization(job)
