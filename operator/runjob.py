"""Pure builders for the objects behind a run: the spec ConfigMap and the runner Job.

They take plain data and return plain dicts, so tests read exactly what the operator sends.
"""

from __future__ import annotations

import json

from .names import GROUP, VERSION, job_name_for, run_labels, spec_configmap_name_for
from .settings import OperatorSettings

SPEC_MOUNT = "/etc/assay/run"
SPEC_FILE = "manifest.json"
TERMINATION_LOG = "/dev/termination-log"


def owner_reference(owner: dict) -> dict:
    meta = owner["metadata"]
    return {
        "apiVersion": owner.get("apiVersion", f"{GROUP}/{VERSION}"),
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def build_spec_configmap(owner: dict, run_id: str) -> dict:
    """The owner's manifest as the runner reads it. A ConfigMap, not an env var, because
    parameter pools make specs large (up to 1 MiB) and a file is what the CLI reads too."""
    manifest = {
        "apiVersion": owner.get("apiVersion", f"{GROUP}/{VERSION}"),
        "kind": owner["kind"],
        "metadata": {"name": owner["metadata"]["name"], "namespace": owner["metadata"]["namespace"]},
        "spec": owner["spec"],
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": spec_configmap_name_for(run_id),
            "namespace": owner["metadata"]["namespace"],
            "labels": run_labels(owner["kind"], owner["metadata"]["name"], run_id),
            "ownerReferences": [owner_reference(owner)],
        },
        "data": {SPEC_FILE: json.dumps(manifest, sort_keys=True)},
    }


def build_runner_job(owner: dict, run_id: str, shards: int, settings: OperatorSettings,
                     runner_args: list[str]) -> dict:
    """An Indexed Job of `shards` pods, all at once, each running one shard of the run.

    A failed shard is not retried (backoffLimit 0): retrying a load shard would send its
    requests twice and make the counts lie."""
    namespace = owner["metadata"]["namespace"]
    labels = run_labels(owner["kind"], owner["metadata"]["name"], run_id)
    container = {
        "name": "runner",
        "image": settings.runner_image,
        "imagePullPolicy": settings.runner_image_pull_policy,
        "command": ["python", "-m", "assay.runner"],
        "args": [*runner_args, "--spec", f"{SPEC_MOUNT}/{SPEC_FILE}"],
        "env": [
            {"name": "ASSAY_RUN_ID", "value": run_id},
            {"name": "ASSAY_SHARDS", "value": str(shards)},
            {"name": "ASSAY_TERMINATION_LOG", "value": TERMINATION_LOG},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [{"name": "spec", "mountPath": SPEC_MOUNT, "readOnly": True}],
        "resources": {
            "requests": {"cpu": settings.runner_cpu_request, "memory": settings.runner_memory_request},
            "limits": {"memory": settings.runner_memory_limit},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    pod_spec = {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": [{"name": "spec", "configMap": {"name": spec_configmap_name_for(run_id)}}],
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "automountServiceAccountToken": False,
    }
    if settings.runner_service_account:
        pod_spec["serviceAccountName"] = settings.runner_service_account
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name_for(run_id),
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": {
            "completionMode": "Indexed",
            "completions": shards,
            "parallelism": shards,
            "backoffLimit": 0,
            "activeDeadlineSeconds": settings.run_deadline_seconds,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }
