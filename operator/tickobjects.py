"""Pure builders of a tick group's objects: its CronJob (the runner pod template is
runjob.runner_pod_template, as for a run Job), the ConfigMap with its members, and the Secret
with its upload token. Every one carries LABEL_TICK_GROUP; the CronJob is owned by every
member Schedule, the others by the CronJob."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import math
from typing import TYPE_CHECKING

from assay.crds.contracts.runner_settings import field_ref, runner_env, runner_settings_of, secret_key_ref
from assay.crds.contracts.tick import MEMBERS_FILE, group_upload_token

from .names import (
    GROUP,
    LABEL_APP,
    LABEL_COMPONENT,
    LABEL_LOCATION,
    LABEL_MANAGED_BY,
    LABEL_TICK_GROUP,
    MANAGED_BY,
    VERSION,
)
from .runjob import SECRETS_MOUNT, TERMINATION_LOG, runner_pod_template, secret_volume
from .settings import OperatorSettings

if TYPE_CHECKING:
    from .tickplan import Group

TICK_MOUNT = "/etc/assay/tick"
HASH_ANNOTATION = "assay.dev/config-hash"


def pods_per_tick(members: int, chunk: int) -> int:
    return max(1, math.ceil(members / chunk))


def members_document(namespace: str, group: Group, chunk: int) -> dict:
    return {"group": group.name, "namespace": namespace, "chunk": chunk, "members": group.members}


def tick_labels(group: str, location: str | None = None) -> dict[str, str]:
    labels = {
        LABEL_APP: "assay-runner",
        LABEL_COMPONENT: "schedule-tick",
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_TICK_GROUP: group,
    }
    if location:
        labels[LABEL_LOCATION] = location
    return labels


def upload_secret_name(group: str) -> str:
    return f"{group}-upload"


def values_secret_name(group: str) -> str:
    return f"{group}-secrets"


def _schedule_owner(schedule: dict) -> dict:
    meta = schedule["metadata"]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Schedule",
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": False,
        "blockOwnerDeletion": False,
    }


def cronjob_owner(cronjob: dict) -> dict:
    meta = cronjob["metadata"]
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def build_tick_cronjob(namespace: str, group: Group, settings: OperatorSettings, with_secrets: bool = False) -> dict:
    """The group's CronJob: one Indexed Job per tick, ceil(members / chunk) pods, each pod
    running its chunk of members (and, `with_secrets`, mounting the group's values Secret).
    Forbid: a tick still running holds the next one back rather than doubling the load on the
    targets. No retries (backoffLimit 0): a retried
    pod would call every API of its chunk a second time within the same tick."""
    completions = pods_per_tick(len(group.members), settings.tick_chunk)
    location = group.location
    labels = tick_labels(group.name, location.name if location else None)
    runner = runner_settings_of(location.env if location else {}).model_copy(
        update={
            "project": namespace,
            "tick_concurrency": settings.tick_concurrency,
            "termination_log": TERMINATION_LOG,
            "gateway_url": settings.gateway_url if settings.uploads_enabled else None,
            "secrets_dir": SECRETS_MOUNT if with_secrets else None,
        }
    )
    refs = {"job_name": field_ref("metadata.labels['batch.kubernetes.io/job-name']")}
    if settings.uploads_enabled:
        refs["upload_token"] = secret_key_ref(upload_secret_name(group.name), "token")
    env = [*runner_env(runner, **refs), {"name": "POD_NAME", "valueFrom": field_ref("metadata.name")}]
    volumes = [{"name": "members", "configMap": {"name": group.name}}]
    mounts = [{"name": "members", "mountPath": TICK_MOUNT, "readOnly": True}]
    if with_secrets:
        volume, mount = secret_volume(values_secret_name(group.name))
        volumes.append(volume)
        mounts.append(mount)
    template = runner_pod_template(
        settings,
        labels,
        ["batch", "--spec", TICK_MOUNT],
        env,
        volumes,
        mounts,
        termination_message_policy="File",
        node_selector=location.node_selector if location else None,
    )
    cronjob = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": group.name,
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [_schedule_owner(s) for s in group.schedules],
        },
        "spec": {
            "schedule": group.cron,
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": settings.tick_starting_deadline_seconds,
            "successfulJobsHistoryLimit": settings.tick_history_limit,
            "failedJobsHistoryLimit": settings.tick_history_limit,
            "suspend": False,
            "jobTemplate": {
                "metadata": {"labels": labels},
                "spec": {
                    "completionMode": "Indexed",
                    "completions": completions,
                    "parallelism": completions,
                    "backoffLimit": 0,
                    "activeDeadlineSeconds": settings.tick_deadline_seconds,
                    "template": template,
                },
            },
        },
    }
    cronjob["metadata"]["annotations"] = {HASH_ANNOTATION: content_hash(cronjob)}
    return cronjob


def content_hash(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def build_members_configmap(namespace: str, group: Group, chunk: int, cronjob: dict) -> dict:
    """The group's members as the runner reads them (`members.json.gz`); owned by the
    CronJob, rewritten when a member changes, read by each tick's pods when they start.
    Compressed because a ConfigMap holds 1 MiB and members repeat the same structure: a
    group of a few thousand Monitors fits."""
    document = json.dumps(members_document(namespace, group, chunk), sort_keys=True, separators=(",", ":"))
    packed = gzip.compress(document.encode(), compresslevel=9, mtime=0)  # mtime 0: same members, same bytes
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": group.name,
            "namespace": namespace,
            "labels": tick_labels(group.name),
            "ownerReferences": [cronjob_owner(cronjob)],
        },
        "binaryData": {f"{MEMBERS_FILE}.gz": base64.b64encode(packed).decode()},
    }


def build_group_secret(namespace: str, group: str, settings: OperatorSettings, cronjob: dict) -> dict:
    """The group's upload token (assay.crds.contracts.tick.group_upload_token): deterministic, so a
    re-created Secret holds the same token."""
    token = group_upload_token(settings.upload_key.get_secret_value(), namespace, group)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": upload_secret_name(group),
            "namespace": namespace,
            "labels": tick_labels(group),
            "ownerReferences": [cronjob_owner(cronjob)],
        },
        "data": {"token": base64.b64encode(token.encode()).decode()},
    }


def mounts_secret(cronjob: dict | None, name: str) -> bool:
    pod = (cronjob or {}).get("spec", {}).get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {})
    volumes = pod.get("volumes") or []
    return any((v.get("secret") or {}).get("secretName") == name for v in volumes)
