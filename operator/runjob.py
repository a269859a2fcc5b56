"""Pure builders for the objects behind a run: the spec ConfigMap, the upload Secret and the
runner Job(s); and the pod template of every runner pod (tickobjects.py builds a tick
CronJob's from it too).

They take plain data and return plain dicts, so tests read exactly what the operator sends.

Every runner container gets its settings (assay.crds.contracts.runner_settings) as ASSAY_*
variables: ASSAY_RUN_ID, ASSAY_SHARDS, ASSAY_PROJECT (the namespace) and
ASSAY_OWNER_KIND/NAME/UID; when the operator has a gateway URL and an upload key, also
ASSAY_GATEWAY_URL and ASSAY_UPLOAD_TOKEN, the latter from the run's `<run-id>-upload` Secret
(the token names the namespace, owner and run, with an HMAC under the upload key over them:
it lets the pod upload results of this run of this owner only).
"""

from __future__ import annotations

import base64
import json

from assay.crds.contracts.runner_settings import field_ref, runner_env, runner_settings_of, secret_key_ref

from .names import (
    GROUP,
    LABEL_LOCATION,
    VERSION,
    job_name_for,
    run_labels,
    spec_configmap_name_for,
    upload_secret_name_for,
)
from .settings import OperatorSettings

SPEC_MOUNT = "/etc/assay/run"
POOLS_MOUNT = "/etc/assay/pools"
SECRETS_MOUNT = "/etc/assay/secrets"
SPEC_FILE = "manifest.json"
TERMINATION_LOG = "/dev/termination-log"


def owner_of(body) -> dict:
    """A plain-dict copy of a Kopf body: the owner as the builders take it."""
    return {
        "apiVersion": body["apiVersion"],
        "kind": body["kind"],
        "metadata": dict(body["metadata"]),
        "spec": dict(body["spec"]),
    }


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


def manifest_of(owner: dict) -> dict:
    """The owner as the runner reads it: kind, name, namespace, uid and spec, no status."""
    meta = owner["metadata"]
    return {
        "apiVersion": owner.get("apiVersion", f"{GROUP}/{VERSION}"),
        "kind": owner["kind"],
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            **({"uid": meta["uid"]} if meta.get("uid") else {}),
        },
        "spec": owner["spec"],
    }


def build_spec_configmap(owner: dict, run_id: str, extra_files: dict[str, object] | None = None) -> dict:
    """The owner's manifest as the runner reads it. A ConfigMap, not an env var, because
    parameter pools make specs large (up to 1 MiB) and a file is what the CLI reads too.

    It is created once per run and never updated, so it is also the run's frozen input: a
    spec edited while a run starts does not change that run. `extra_files` are further JSON
    documents beside the manifest (a Monitor's subtests, the run's plan)."""
    data = {SPEC_FILE: json.dumps(manifest_of(owner), sort_keys=True)}
    for name, document in (extra_files or {}).items():
        data[name] = json.dumps(document, sort_keys=True)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": spec_configmap_name_for(run_id),
            "namespace": owner["metadata"]["namespace"],
            "labels": run_labels(owner["kind"], owner["metadata"]["name"], run_id),
            "ownerReferences": [owner_reference(owner)],
        },
        "data": data,
    }


def run_grant(owner: dict, run_id: str):
    """What the run's pods may upload: this run of this owner in its namespace."""
    from assay.crds.contracts.upload import RunGrant

    meta = owner["metadata"]
    return RunGrant(meta["namespace"], owner["kind"], meta["name"], meta["uid"], run_id)


def build_upload_secret(owner: dict, run_id: str, settings: OperatorSettings) -> dict:
    """The run's upload token, for the runner's ASSAY_UPLOAD_TOKEN. Deterministic (an HMAC of
    the run's grant), so a re-created Secret holds the same token."""
    from assay.crds.contracts.upload import upload_token

    token = upload_token(settings.upload_key.get_secret_value(), run_grant(owner, run_id))
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": upload_secret_name_for(run_id),
            "namespace": owner["metadata"]["namespace"],
            "labels": run_labels(owner["kind"], owner["metadata"]["name"], run_id),
            "ownerReferences": [owner_reference(owner)],
        },
        "data": {"token": base64.b64encode(token.encode()).decode()},
    }


def secret_volume(secret_name: str) -> tuple[dict, dict]:
    """(volume, mount) that give a runner container the Secret with its run's secret values as
    files, one per key, in SECRETS_MOUNT (its ASSAY_SECRETS_DIR; assay.crds.secrets)."""
    return (
        {"name": "secrets", "secret": {"secretName": secret_name}},
        {"name": "secrets", "mountPath": SECRETS_MOUNT, "readOnly": True},
    )


def runner_pod_template(
    settings: OperatorSettings,
    labels: dict[str, str],
    args: list[str],
    env: list[dict],
    volumes: list[dict],
    mounts: list[dict],
    *,
    termination_message_policy: str,
    node_selector: dict[str, str] | None = None,
) -> dict:
    """The pod template of every runner pod, a run Job's or a tick CronJob's: one container
    running `python -m assay.runner <args>` with `env`, unprivileged and with a read-only
    root, the settings' resources and service account, no API token (runners never call the
    Kubernetes API), never restarted (a retried pod would call the tested APIs twice)."""
    container = {
        "name": "runner",
        "image": settings.runner_image,
        "imagePullPolicy": settings.runner_image_pull_policy,
        "command": ["python", "-m", "assay.runner"],
        "args": args,
        "env": env,
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": termination_message_policy,
        # The root is read-only; /tmp (HOME) takes what must be a file, e.g. a client
        # certificate that ssl loads only from a path (runner/apitest/auth.py).
        "volumeMounts": [*mounts, {"name": "tmp", "mountPath": "/tmp"}],
        "resources": settings.runner_resources,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    pod_spec = {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": [*volumes, {"name": "tmp", "emptyDir": {}}],
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "automountServiceAccountToken": False,
    }
    if settings.runner_service_account:
        pod_spec["serviceAccountName"] = settings.runner_service_account
    if node_selector:
        pod_spec["nodeSelector"] = dict(node_selector)
    return {"metadata": {"labels": labels}, "spec": pod_spec}


def _run_env(
    owner: dict, run_id: str, shards: int, settings: OperatorSettings, env: dict[str, str], pools: bool, secrets: bool
) -> list[dict]:
    meta = owner["metadata"]
    runner = runner_settings_of(env).model_copy(
        update={
            "run_id": run_id,
            "shards": shards,
            "project": meta["namespace"],
            "owner_kind": owner["kind"],
            "owner_name": meta["name"],
            "owner_uid": meta["uid"],
            "termination_log": TERMINATION_LOG,
            "gateway_url": settings.gateway_url if settings.uploads_enabled else None,
            "pools_dir": POOLS_MOUNT if pools else None,
            "secrets_dir": SECRETS_MOUNT if secrets else None,
        }
    )
    token = (
        {"upload_token": secret_key_ref(upload_secret_name_for(run_id), "token")} if settings.uploads_enabled else {}
    )
    return runner_env(runner, **token)


def build_runner_job(
    owner: dict,
    run_id: str,
    shards: int,
    settings: OperatorSettings,
    runner_args: list[str],
    *,
    location: str | None = None,
    node_selector: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    run_shards: int | None = None,
    pool_config_maps: list[tuple[str, str]] = (),
    ttl_seconds: int | None = None,
    secret_name: str | None = None,
) -> dict:
    """An Indexed Job of `shards` pods, all at once, each running one shard of the run.
    `ttl_seconds`: how long the Job and its pods stay after they finish.

    A failed shard is not retried (backoffLimit 0): retrying a load shard would send its
    requests twice and make the counts lie, and retrying an API test would call the tested
    API twice. A run placed in a region (`location`, `node_selector`) gets its own Job,
    `<run-id>-<location>`, because all pods of one Job share one node selector; its pods see
    the run's shard count (`run_shards`, ASSAY_SHARDS), not the Job's. Parameter pools kept
    in ConfigMaps (`pool_config_maps`) are mounted, not copied: they may be as large as a
    ConfigMap can be, and the runner reads only its own shard's rows. They are projected into
    one folder, `<configmap>/<key>` under ASSAY_POOLS_DIR, so a single mount serves them all.
    `secret_name`: the Secret with the run's secret values, mounted (see secret_volume)."""
    namespace = owner["metadata"]["namespace"]
    labels = run_labels(owner["kind"], owner["metadata"]["name"], run_id)
    if location is not None:
        labels[LABEL_LOCATION] = location
    pod_env = [
        *_run_env(owner, run_id, run_shards or shards, settings, env or {}, bool(pool_config_maps), bool(secret_name)),
        {"name": "POD_NAME", "valueFrom": field_ref("metadata.name")},
    ]
    volumes = [{"name": "spec", "configMap": {"name": spec_configmap_name_for(run_id)}}]
    mounts = [{"name": "spec", "mountPath": SPEC_MOUNT, "readOnly": True}]
    if pool_config_maps:
        keys_by_map: dict[str, set[str]] = {}
        for name, key in pool_config_maps:
            keys_by_map.setdefault(name, set()).add(key)
        sources = [
            {"configMap": {"name": name, "items": [{"key": k, "path": f"{name}/{k}"} for k in sorted(keys)]}}
            for name, keys in sorted(keys_by_map.items())
        ]
        volumes.append({"name": "pools", "projected": {"sources": sources}})
        mounts.append({"name": "pools", "mountPath": POOLS_MOUNT, "readOnly": True})
    if secret_name:
        volume, mount = secret_volume(secret_name)
        volumes.append(volume)
        mounts.append(mount)
    template = runner_pod_template(
        settings,
        labels,
        [*runner_args, "--spec", f"{SPEC_MOUNT}/{SPEC_FILE}"],
        pod_env,
        volumes,
        mounts,
        termination_message_policy="FallbackToLogsOnError",
        node_selector=node_selector,
    )
    metadata = {
        "name": job_name_for(run_id, location),
        "namespace": namespace,
        "labels": labels,
        "ownerReferences": [owner_reference(owner)],
    }
    if annotations:
        metadata["annotations"] = dict(annotations)
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "completionMode": "Indexed",
            "completions": shards,
            "parallelism": shards,
            "backoffLimit": 0,
            "activeDeadlineSeconds": settings.run_deadline_seconds,
            "template": template,
        },
    }
    if ttl_seconds is not None:
        job["spec"]["ttlSecondsAfterFinished"] = ttl_seconds
    return job
