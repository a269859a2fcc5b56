"""Several operator replicas (--peering NAME): Kopf's peering lets the replica with the highest
priority work and pauses the others; when its keep-alives stop, the next one takes over.

Kopf needs its peering CRDs (crds/kopf-peering.yaml, applied with the others) and a peering
object to write its keep-alives into, which it does not create: `ensure_peering_objects`
does, before Kopf starts — one ClusterKopfPeering for an operator of every namespace, one
KopfPeering per namespace for an operator of some namespaces. Runs survive a handover
because starting one is idempotent and every status is rebuilt from the world (runs.py).
"""

from __future__ import annotations

import logging

from kubernetes.client.rest import ApiException

from . import kube

KOPF_GROUP = "kopf.dev"
KOPF_VERSION = "v1"


def peering_objects(name: str, namespaces: list[str] | None) -> list[dict]:
    """The peering objects an operator of `namespaces` (None: all) uses. Glob patterns name
    no single namespace and are skipped."""
    if not namespaces:
        return [
            {"apiVersion": f"{KOPF_GROUP}/{KOPF_VERSION}", "kind": "ClusterKopfPeering", "metadata": {"name": name}}
        ]
    return [
        {
            "apiVersion": f"{KOPF_GROUP}/{KOPF_VERSION}",
            "kind": "KopfPeering",
            "metadata": {"name": name, "namespace": namespace},
        }
        for namespace in dict.fromkeys(namespaces)
        if not any(c in namespace for c in "*?[!")
    ]


def ensure_peering_objects(name: str, namespaces: list[str] | None, logger: logging.Logger) -> None:
    """Create the peering objects that do not exist; the replicas all try, one wins."""
    api = kube.custom()
    for body in peering_objects(name, namespaces):
        try:
            if body["kind"] == "ClusterKopfPeering":
                api.create_cluster_custom_object(KOPF_GROUP, KOPF_VERSION, "clusterkopfpeerings", body)
            else:
                api.create_namespaced_custom_object(
                    KOPF_GROUP, KOPF_VERSION, body["metadata"]["namespace"], "kopfpeerings", body
                )
        except ApiException as exc:
            if exc.status == 409:
                continue
            if exc.status == 404:
                raise SystemExit(
                    f"--peering {name}: Kopf's peering CRDs are not installed (kubectl apply -f crds/kopf-peering.yaml)"
                ) from exc
            raise
        logger.info(
            f"created {body['kind']} {name}"
            + (f" in {body['metadata']['namespace']}" if "namespace" in body["metadata"] else "")
        )
