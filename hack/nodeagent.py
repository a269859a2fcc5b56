#!/usr/bin/env python3
"""A stand-in kubelet and scheduler for the local control plane (development and tests only).

hack/localkube.py runs etcd, kube-apiserver and kube-controller-manager, but no scheduler, no
kubelet and no container runtime. This agent plays both missing parts for one node:

* it registers the Node and keeps its Lease and Ready heartbeat fresh;
* it binds the unscheduled pods whose nodeSelector (and required node affinity) match its
  labels, so one agent per region behaves like a multi-region cluster;
* it runs each pod bound to it as a local process and reports its status as a kubelet does;
* it finishes graceful deletions: SIGTERM, SIGKILL after the grace period, final delete.

It runs only this project's own programs. The image is ignored: a command whose first word
is `python`, `python3` or `python3.X` runs with --python (the project's venv by default), any
other word is looked up on PATH. The container's volume mounts and termination message file
live in a per-pod folder, and command words, env values and workingDir naming those paths
are rewritten to it. Only the first container runs; init containers, sidecars, probes,
resources, security contexts, ports and `kubectl logs/exec` are not supported, because
Assay's runner pods need none of them.

    python hack/nodeagent.py --kubeconfig .assay/kubeconfig --node assay-local \\
        --label topology.kubernetes.io/region=local
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import platform
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

log = logging.getLogger("nodeagent")

HOST_IP = "127.0.0.1"
DEFAULT_TERMINATION_PATH = "/dev/termination-log"
DEFAULT_GRACE_SECONDS = 30
POLL_SECONDS = 0.2  # how soon a process exit is noticed when no event arrives
HEARTBEAT_SECONDS = 10
RESYNC_SECONDS = 30
CONFIG_RETRY_SECONDS = 5
MAX_RESTART_BACKOFF_SECONDS = 10
SHUTDOWN_GRACE_SECONDS = 3  # localkube's `down` SIGKILLs the agent after 10 s
TERMINATION_MESSAGE_BYTES = 4096
LOG_TAIL_LINES, LOG_TAIL_BYTES = 80, 2048  # what a kubelet falls back to
NODE_LEASE_NAMESPACE = "kube-node-lease"
STARTUP_TAINTS = {"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"}
PYTHON_COMMAND = re.compile(r"python(3(\.\d+)?)?")
SUBSCRIPTED_FIELD = re.compile(r"metadata\.(labels|annotations)\['(.*)'\]")

# (kind, name) -> the object's data as bytes by key, or None when it does not exist;
# kind is "configmap" or "secret", in the pod's namespace.
Lookup = Callable[[str, str], Optional[dict]]


class MissingSource(Exception):
    """A configMap or secret (or key) the pod needs does not exist yet: wait, as a kubelet does."""


class UnsupportedSpec(Exception):
    """The pod asks for something this agent cannot do: the pod fails with StartError."""


# --- Pure parts: scheduling, env, paths, status patches ---------------------------------


def rfc3339(moment: float | None = None) -> str:
    return datetime.fromtimestamp(moment or time.time(), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_time() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def pod_key(pod: dict) -> str:
    return f"{pod['metadata'].get('namespace')}/{pod['metadata']['name']}"


def wants_scheduling(pod: dict) -> bool:
    """An unbound, live pod meant for the default scheduler, which this agent stands in for."""
    spec, meta = pod["spec"], pod["metadata"]
    return (
        not spec.get("nodeName")
        and not meta.get("deletionTimestamp")
        and spec.get("schedulerName", "default-scheduler") == "default-scheduler"
        and not spec.get("schedulingGates")
        and (pod.get("status") or {}).get("phase", "Pending") == "Pending"
    )


def node_fits(pod: dict, labels: dict[str, str]) -> bool:
    """The pod's nodeSelector and required node affinity accept this node's labels. Taints
    are not checked: the agent's node has none (it lifts the not-ready taint admission adds)."""
    spec = pod["spec"]
    if any(labels.get(key) != value for key, value in (spec.get("nodeSelector") or {}).items()):
        return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms")
    # An empty term matches nothing; matchFields (DaemonSets only) and Gt/Lt match nothing here.
    return not terms or any(
        term.get("matchExpressions")
        and not term.get("matchFields")
        and all(expression_matches(expression, labels) for expression in term["matchExpressions"])
        for term in terms
    )


def expression_matches(expression: dict, labels: dict[str, str]) -> bool:
    key, operator, wanted = expression["key"], expression["operator"], expression.get("values") or []
    return {
        "In": labels.get(key) in wanted,
        "NotIn": labels.get(key) not in wanted,
        "Exists": key in labels,
        "DoesNotExist": key not in labels,
    }.get(operator, False)


def expand_vars(text: str, env: dict[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: a defined variable is replaced, an undefined one stays
    as written, `$$` is an escaped `$`, and any other `$` is kept."""
    out, i = [], 0
    while i < len(text):
        if text[i] != "$" or i + 1 == len(text):
            out.append(text[i])
            i += 1
        elif text[i + 1] == "$":
            out.append("$")
            i += 2
        elif text[i + 1] == "(" and (close := text.find(")", i + 2)) != -1:
            out.append(env.get(text[i + 2 : close], text[i : close + 1]))
            i = close + 1
        else:
            out.append(text[i : i + 2])
            i += 2
    return "".join(out)


def resolve_field_ref(pod: dict, field_path: str, host_ip: str = HOST_IP) -> str:
    """The downward API value of `field_path`. Every process shares the host's network, so
    the pod's IP is the node's, known before the pod reports it."""
    meta, spec = pod["metadata"], pod["spec"]
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.podIP": host_ip,
        "status.podIPs": host_ip,
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
    }
    if field_path in simple:
        return simple[field_path] or ""
    if match := SUBSCRIPTED_FIELD.fullmatch(field_path):
        return (meta.get(match[1]) or {}).get(match[2], "")
    if field_path in ("metadata.labels", "metadata.annotations"):  # volumes only: k="v" lines
        items = meta.get(field_path.split(".")[1]) or {}
        return "\n".join(f"{key}={json.dumps(value)}" for key, value in sorted(items.items()))
    raise UnsupportedSpec(f"fieldRef {field_path!r} is not supported by the node agent")


def read_source(kind: str, ref: dict, lookup: Lookup) -> dict[str, bytes] | None:
    """A configMap's or secret's data, None when it is missing but optional."""
    data = lookup(kind, ref["name"])
    if data is None and not ref.get("optional"):
        raise MissingSource(f"{kind} {ref['name']!r} not found")
    return data


def read_key(kind: str, ref: dict, lookup: Lookup) -> str | None:
    data = read_source(kind, ref, lookup)
    if data is None or ref["key"] not in data:
        if ref.get("optional"):
            return None
        raise MissingSource(f"{kind} {ref['name']!r} has no key {ref['key']!r}")
    return data[ref["key"]].decode("utf-8", "replace")


def resolve_value_from(pod: dict, value_from: dict, lookup: Lookup, host_ip: str) -> str | None:
    if "fieldRef" in value_from:
        return resolve_field_ref(pod, value_from["fieldRef"]["fieldPath"], host_ip)
    if "configMapKeyRef" in value_from:
        return read_key("configmap", value_from["configMapKeyRef"], lookup)
    if "secretKeyRef" in value_from:
        return read_key("secret", value_from["secretKeyRef"], lookup)
    raise UnsupportedSpec(f"env valueFrom {sorted(value_from)} is not supported by the node agent")


def env_from_source(source: dict, lookup: Lookup) -> dict[str, str]:
    kind, ref = ("configmap", source["configMapRef"]) if "configMapRef" in source else ("secret", source["secretRef"])
    data = read_source(kind, ref, lookup) or {}
    prefix = source.get("prefix", "")
    # A kubelet skips keys that cannot be variable names; `=` is the one a process cannot take.
    return {prefix + key: value.decode("utf-8", "replace") for key, value in data.items() if "=" not in key}


def resolve_env(
    pod: dict, container: dict, lookup: Lookup, path_map: dict[str, str] | None = None, host_ip: str = HOST_IP
) -> dict[str, str]:
    """The container's variables as a kubelet builds them: envFrom first, then env in order,
    each `value` expanded against the variables before it; values naming a mounted path
    point to the local copy."""
    path_map = path_map or {}
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        env.update({name: remap_path(value, path_map) for name, value in env_from_source(source, lookup).items()})
    for var in container.get("env") or []:
        if "valueFrom" in var:
            value = resolve_value_from(pod, var["valueFrom"], lookup, host_ip)
            if value is None:  # an optional key that is missing defines nothing
                continue
            env[var["name"]] = remap_path(value, path_map)
        else:
            # Remap before expanding, so a value built from an already remapped one is not
            # remapped twice.
            env[var["name"]] = expand_vars(remap_path(var.get("value", ""), path_map), env)
    return env


def build_path_map(container: dict, volume_dirs: dict[str, Path], pod_dir: Path) -> dict[str, str]:
    """Where each path the container would see lives on this host: its volume mounts (with
    subPath) and its termination message file."""
    termination_path = container.get("terminationMessagePath") or DEFAULT_TERMINATION_PATH
    paths = {termination_path: str(pod_dir / "termination-log")}
    for mount in container.get("volumeMounts") or []:
        local = volume_dirs[mount["name"]]
        if mount.get("subPath"):
            local = local / mount["subPath"]
        paths[mount["mountPath"].rstrip("/") or "/"] = str(local)
    return paths


def remap_path(value: str, path_map: dict[str, str]) -> str:
    """`value` with a leading mounted path (whole path components) replaced by its local
    folder; the longest mount wins, as the innermost mount would in a container."""
    for mount in sorted(path_map, key=len, reverse=True):
        if value == mount or value.startswith(mount + "/"):
            return path_map[mount] + value[len(mount) :]
    return value


def build_argv(container: dict, env: dict[str, str], path_map: dict[str, str], python: str) -> list[str]:
    """command + args with paths remapped and `$(VAR)` expanded; a python runs as `python`."""
    if not container.get("command"):
        raise UnsupportedSpec("the container has no command, and the node agent cannot read an image's entrypoint")
    argv = [
        expand_vars(remap_path(word, path_map), env) for word in container["command"] + (container.get("args") or [])
    ]
    if PYTHON_COMMAND.fullmatch(os.path.basename(argv[0])):
        argv[0] = python
    return argv


def working_dir(container: dict, path_map: dict[str, str], pod_dir: Path) -> str:
    """The remapped workingDir, or the pod's folder: the image's own folders do not exist here."""
    wanted = container.get("workingDir")
    if wanted and (local := remap_path(wanted, path_map)) != wanted:
        return local
    return str(pod_dir)


def volume_files(volume: dict, pod: dict, lookup: Lookup, host_ip: str = HOST_IP) -> dict[str, tuple[bytes, int]]:
    """The files of a configMap, secret, downwardAPI or projected volume: relative path ->
    (content, mode)."""
    if "configMap" in volume:
        return source_files("configmap", volume["configMap"], lookup)
    if "secret" in volume:
        return source_files("secret", {**volume["secret"], "name": volume["secret"]["secretName"]}, lookup)
    if "downwardAPI" in volume:
        return downward_files(volume["downwardAPI"], pod, host_ip)
    if "projected" in volume:
        mode = volume["projected"].get("defaultMode", 0o644)
        files = {}
        for source in volume["projected"].get("sources") or []:
            # A service-account token is of no use here: in-cluster clients read it from a
            # fixed path the agent cannot remap, and cannot reach the service IP anyway.
            for kind, spec in source.items():
                if kind != "serviceAccountToken":
                    files.update(volume_files({kind: {"defaultMode": mode, **spec}}, pod, lookup, host_ip))
        return files
    kinds = sorted(set(volume) - {"name"})
    raise UnsupportedSpec(f"volume {volume['name']!r} of type {kinds} is not supported by the node agent")


def source_files(kind: str, ref: dict, lookup: Lookup) -> dict[str, tuple[bytes, int]]:
    data = read_source(kind, ref, lookup) or {}
    mode = ref.get("defaultMode", 0o644)
    if not ref.get("items"):
        return {key: (value, mode) for key, value in data.items()}
    files = {}
    for item in ref["items"]:
        if item["key"] in data:
            files[item["path"]] = (data[item["key"]], item.get("mode", mode))
        elif not ref.get("optional"):
            raise MissingSource(f"{kind} {ref['name']!r} has no key {item['key']!r}")
    return files


def downward_files(spec: dict, pod: dict, host_ip: str) -> dict[str, tuple[bytes, int]]:
    mode = spec.get("defaultMode", 0o644)
    files = {}
    for item in spec.get("items") or []:
        if "fieldRef" not in item:
            raise UnsupportedSpec("downwardAPI resourceFieldRef is not supported by the node agent")
        value = resolve_field_ref(pod, item["fieldRef"]["fieldPath"], host_ip)
        files[item["path"]] = (value.encode(), item.get("mode", mode))
    return files


def pod_conditions(ready: bool, now: str, reason: str | None = None, scheduled: bool = True) -> list[dict]:
    def condition(kind: str, status: bool) -> dict:
        entry = {"type": kind, "status": str(status), "lastTransitionTime": now}
        return {**entry, "reason": reason} if reason and not status else entry

    started = [condition("PodScheduled", True), condition("Initialized", True)] if scheduled else []
    return started + [condition("ContainersReady", ready), condition("Ready", ready)]


def container_status(
    container: dict, state: dict, restart_count: int, pid: int | None = None, last_state: dict | None = None
) -> dict:
    status = {
        "name": container["name"],
        "image": container.get("image", ""),
        "imageID": "",
        "ready": "running" in state,
        "started": "running" in state,
        "restartCount": restart_count,
        "state": state,
    }
    if pid:
        status["containerID"] = f"nodeagent://{pid}"
    if last_state:
        status["lastState"] = last_state
    return status


def terminated_state(
    exit_code: int, message: str, started_at: str, finished_at: str, reason: str | None = None
) -> dict:
    state = {
        "exitCode": exit_code,
        "reason": reason or ("Completed" if exit_code == 0 else "Error"),
        "startedAt": started_at,
        "finishedAt": finished_at,
    }
    return {"terminated": {**state, "message": message} if message else state}


def build_running_status(
    container: dict, *, start_time: str, started_at: str, restart_count: int, pid: int, last_state: dict | None = None
) -> dict:
    """The pods/status patch for a container that has just (re)started."""
    running = {"running": {"startedAt": started_at}}
    return {
        "status": {
            "phase": "Running",
            "startTime": start_time,
            "hostIP": HOST_IP,
            "hostIPs": [{"ip": HOST_IP}],
            "podIP": HOST_IP,
            "podIPs": [{"ip": HOST_IP}],
            "conditions": pod_conditions(ready=True, now=started_at),
            "containerStatuses": [container_status(container, running, restart_count, pid, last_state)],
        }
    }


def build_terminated_status(
    container: dict, terminated: dict, *, restart_count: int, pod_reason: str | None = None, pid: int | None = None
) -> dict:
    """The pods/status patch for a container that will not run again: Succeeded on exit 0,
    else Failed. `pod_reason` marks failures of the pod itself (StartError, NodeShutdown)."""
    details = terminated["terminated"]
    status = {
        "phase": "Succeeded" if details["exitCode"] == 0 else "Failed",
        "conditions": pod_conditions(False, details["finishedAt"], "PodCompleted", scheduled=False),
        "containerStatuses": [container_status(container, terminated, restart_count, pid)],
    }
    if pod_reason:
        status.update(reason=pod_reason, message=details.get("message", pod_reason))
    return {"status": status}


def build_waiting_status(
    container: dict,
    *,
    phase: str,
    reason: str,
    message: str,
    now: str,
    restart_count: int = 0,
    last_state: dict | None = None,
) -> dict:
    """The pods/status patch for a container that is not running for now: its configuration
    is missing (Pending) or it waits to restart (Running, CrashLoopBackOff)."""
    waiting = {"waiting": {"reason": reason, "message": message}}
    return {
        "status": {
            "phase": phase,
            "conditions": pod_conditions(False, now, "ContainersNotReady", scheduled=False),
            "containerStatuses": [container_status(container, waiting, restart_count, last_state=last_state)],
        }
    }


def termination_message(container: dict, exit_code: int, message_file: Path, log_file: Path) -> str:
    """What the container left in its termination message file, or with
    FallbackToLogsOnError and a failure, the tail of its log."""
    message = read_head(message_file, TERMINATION_MESSAGE_BYTES)
    if not message and exit_code != 0 and container.get("terminationMessagePolicy") == "FallbackToLogsOnError":
        message = read_tail(log_file, LOG_TAIL_LINES, LOG_TAIL_BYTES)
    return message


def read_head(path: Path, limit: int) -> str:
    try:
        with open(path, "rb") as file:
            return file.read(limit).decode("utf-8", "replace")
    except OSError:
        return ""


def read_tail(path: Path, lines: int, limit: int) -> str:
    try:
        with open(path, "rb") as file:
            file.seek(max(0, os.path.getsize(path) - limit))
            tail = file.read()
    except OSError:
        return ""
    return b"\n".join(tail.splitlines()[-lines:]).decode("utf-8", "replace")


def exit_code_of(returncode: int) -> int:
    """A container's exit code: a signal N shows as 128 + N, as a shell would report it."""
    return returncode if returncode >= 0 else 128 - returncode


# --- The API calls, on plain dicts ---------------------------------------------------


def read_json(response) -> dict:
    return json.loads(response.data)


class Cluster:
    """The few calls the agent makes. Everything is a dict, as the API sends it."""

    def __init__(self, api_client: client.ApiClient):
        self.core = client.CoreV1Api(api_client)
        self.leases = client.CoordinationV1Api(api_client)
        self.version = client.VersionApi(api_client)

    def list_pods(self) -> list[dict]:
        return read_json(self.core.list_pod_for_all_namespaces(_preload_content=False))["items"]

    def lookup(self, namespace: str) -> Lookup:
        def read(kind: str, name: str) -> dict[str, bytes] | None:
            try:
                if kind == "configmap":
                    found = read_json(self.core.read_namespaced_config_map(name, namespace, _preload_content=False))
                    text = {key: value.encode() for key, value in (found.get("data") or {}).items()}
                    binary = found.get("binaryData") or {}
                else:
                    found = read_json(self.core.read_namespaced_secret(name, namespace, _preload_content=False))
                    text, binary = {}, found.get("data") or {}
            except ApiException as error:
                if error.status == 404:
                    return None
                raise
            return {**text, **{key: base64.b64decode(value) for key, value in binary.items()}}

        return read

    def bind(self, pod: dict, node: str) -> bool:
        """Bind the pod to the node; False when another agent (or anyone) was faster."""
        binding = client.V1Binding(
            metadata=client.V1ObjectMeta(name=pod["metadata"]["name"]),
            target=client.V1ObjectReference(api_version="v1", kind="Node", name=node),
        )
        try:
            # The client cannot deserialize the binding response (a Status, not a Binding).
            self.core.create_namespaced_pod_binding(
                pod["metadata"]["name"], pod["metadata"]["namespace"], binding, _preload_content=False
            )
        except ApiException as error:
            if error.status in (404, 409):
                return False
            raise
        return True

    def patch_status(self, pod: dict, patch: dict) -> None:
        try:
            self.core.patch_namespaced_pod_status(
                pod["metadata"]["name"], pod["metadata"]["namespace"], patch, _preload_content=False
            )
        except ApiException as error:
            if error.status != 404:  # deleted meanwhile: nothing left to report on
                raise

    def delete_now(self, pod: dict) -> None:
        """The kubelet's last step of a graceful deletion. The uid precondition keeps a pod
        recreated under the same name safe."""
        options = client.V1DeleteOptions(
            grace_period_seconds=0, preconditions=client.V1Preconditions(uid=pod["metadata"]["uid"])
        )
        try:
            self.core.delete_namespaced_pod(
                pod["metadata"]["name"], pod["metadata"]["namespace"], body=options, _preload_content=False
            )
        except ApiException as error:
            if error.status not in (404, 409):
                raise


# --- The node: registration, lease and heartbeat -------------------------------------


def go_arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def node_labels(node: str, extra: dict[str, str]) -> dict[str, str]:
    return {"kubernetes.io/hostname": node, "kubernetes.io/os": "linux", "kubernetes.io/arch": go_arch(), **extra}


def build_node_status(node: str, now: str, kubelet_version: str) -> dict:
    # Generous capacity: the agent does not enforce resources, so it should not refuse pods.
    capacity = {"cpu": "64", "memory": "256Gi", "pods": "1000", "ephemeral-storage": "1Ti"}
    return {
        "status": {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "the assay node agent is running",
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                }
            ],
            "addresses": [{"type": "InternalIP", "address": HOST_IP}, {"type": "Hostname", "address": node}],
            "nodeInfo": {
                "kubeletVersion": kubelet_version,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": go_arch(),
                "containerRuntimeVersion": "nodeagent://local",
                "osImage": platform.platform(),
                "kernelVersion": platform.release(),
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
        }
    }


def register_node(cluster: Cluster, node: str, labels: dict[str, str]) -> str:
    """Create or update the Node, report it Ready, and return its uid (the Lease's owner)."""
    try:
        cluster.core.create_node(
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node, "labels": labels}}, _preload_content=False
        )
    except ApiException as error:
        if error.status != 409:
            raise
        cluster.core.patch_node(node, {"metadata": {"labels": labels}}, _preload_content=False)
    version = cluster.version.get_code().git_version
    cluster.core.patch_node_status(node, build_node_status(node, rfc3339(), version), _preload_content=False)
    found = read_json(cluster.core.read_node(node, _preload_content=False))
    # Admission taints a new node not-ready; the node lifecycle controller that would lift the
    # taint is off in localkube, so the agent lifts it itself.
    taints = found["spec"].get("taints") or []
    kept = [taint for taint in taints if taint["key"] not in STARTUP_TAINTS]
    if kept != taints:
        cluster.core.patch_node(node, {"spec": {"taints": kept or None}}, _preload_content=False)
    return found["metadata"]["uid"]


def renew_lease(cluster: Cluster, node: str, node_uid: str) -> None:
    spec = {"holderIdentity": node, "leaseDurationSeconds": 40, "renewTime": micro_time()}
    try:
        cluster.leases.patch_namespaced_lease(node, NODE_LEASE_NAMESPACE, {"spec": spec}, _preload_content=False)
    except ApiException as error:
        if error.status != 404:
            raise
        owner = {"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid}
        cluster.leases.create_namespaced_lease(
            NODE_LEASE_NAMESPACE,
            {"metadata": {"name": node, "namespace": NODE_LEASE_NAMESPACE, "ownerReferences": [owner]}, "spec": spec},
            _preload_content=False,
        )


def heartbeat_forever(
    cluster: Cluster, node: str, labels: dict[str, str], node_uid: str, stop: threading.Event
) -> None:
    while not stop.wait(HEARTBEAT_SECONDS):
        try:
            ready = {"type": "Ready", "status": "True", "lastHeartbeatTime": rfc3339()}
            cluster.core.patch_node_status(node, {"status": {"conditions": [ready]}}, _preload_content=False)
            renew_lease(cluster, node, node_uid)
        except ApiException as error:
            if error.status == 404:  # someone deleted the node: register it again
                node_uid = guarded(register_node, cluster, node, labels) or node_uid
            else:
                log.warning("heartbeat failed: %s", error.reason)
        except Exception as error:  # the API server restarting, most likely
            log.warning("heartbeat failed: %s", error)


def pod_events(cluster: Cluster, resource_version: str | None):
    """One watch connection's events as dicts. Read raw: the client's own Watch cannot report
    an expired version (410) without deserializing every pod into models."""
    response = cluster.core.list_pod_for_all_namespaces(
        watch=True,
        resource_version=resource_version,
        timeout_seconds=300,
        allow_watch_bookmarks=True,
        _preload_content=False,
    )
    try:
        for line in watch.watch.iter_resp_lines(response):
            if line.strip():
                yield json.loads(line)
    finally:
        response.close()
        response.release_conn()


def watch_pods(cluster: Cluster, events: queue.Queue, stop: threading.Event) -> None:
    """Feed every pod event to `events`. Watching without a resourceVersion starts with every
    existing pod as ADDED, so a fresh start after an expired (410) version is also a resync."""
    resource_version = None
    while not stop.is_set():
        try:
            for event in pod_events(cluster, resource_version):
                if event["type"] == "ERROR":
                    status = event["object"]
                    raise ApiException(status=status.get("code"), reason=status.get("message"))
                resource_version = event["object"]["metadata"]["resourceVersion"]
                if event["type"] != "BOOKMARK":
                    events.put((event["type"], event["object"]))
        except ApiException as error:
            if error.status == 410:
                log.info("pod watch expired; watching from the current state")
                resource_version = None
            else:
                log.warning("pod watch failed: %s %s", error.status, error.reason)
                stop.wait(1)
        except Exception as error:  # the API server restarting, most likely
            log.warning("pod watch failed: %s", error)
            stop.wait(1)


def guarded(function, *args):
    """Run one step; log its failure instead of stopping the agent (the next resync retries)."""
    try:
        return function(*args)
    except ApiException as error:
        log.warning("%s failed: %s %s %s", function.__name__, error.status, error.reason, error.body or "")
    except Exception:
        log.exception("%s failed", function.__name__)
    return None


# --- Processes ------------------------------------------------------------------------


@dataclass
class Launch:
    argv: list[str]
    env: dict[str, str]
    cwd: str


@dataclass
class PodProcess:
    """A pod this agent runs: its latest object, its folder and its current process."""

    pod: dict
    container: dict
    pod_dir: Path
    launch: Launch
    start_time: str
    process: subprocess.Popen | None = None
    started_at: str = ""
    restart_count: int = 0
    last_state: dict | None = None
    restart_at: float | None = None  # when a restart's backoff ends
    kill_at: float | None = None  # when SIGTERM's grace period ends


@dataclass
class Waiting:
    """A pod whose configMap or secret is missing: retried until it appears or is deleted."""

    pod: dict
    problem: str
    retry_at: float


def has_exited(process: subprocess.Popen) -> bool:
    """Whether the process exited, without reaping it: while it stays a zombie its pid
    cannot be reused, so killing its process group afterwards is safe."""
    try:
        return os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def kill_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def process_start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks (/proc/PID/stat field 22): with the pid, it
    identifies a process across an agent restart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def kill_leftover(pod_dir: Path) -> None:
    """Kill the process a previous agent started for this pod, if it still runs."""
    try:
        recorded = json.loads((pod_dir / "process.json").read_text())
    except (OSError, ValueError):
        return
    if process_start_ticks(recorded["pid"]) == recorded["start"]:
        kill_group(recorded["pid"], signal.SIGKILL)


def base_env(pod: dict, pod_dir: Path) -> dict[str, str]:
    """What an image would provide: a PATH, a HOME and a hostname; nothing of the agent's own
    environment leaks into the pod."""
    return {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(pod_dir), "HOSTNAME": pod["metadata"]["name"]}


def materialise_volumes(pod: dict, pod_dir: Path, lookup: Lookup) -> dict[str, Path]:
    """Write the pod's volumes under pod_dir/volumes and return each volume's local folder."""
    dirs = {}
    for volume in pod["spec"].get("volumes") or []:
        if "hostPath" in volume:
            dirs[volume["name"]] = Path(volume["hostPath"]["path"])
            continue
        target = dirs[volume["name"]] = pod_dir / "volumes" / volume["name"]
        target.mkdir(parents=True, exist_ok=True)
        if "emptyDir" in volume:
            continue
        for relative, (content, mode) in volume_files(volume, pod, lookup).items():
            path = target / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.unlink(missing_ok=True)  # a read-only copy from an earlier attempt
            path.write_bytes(content)
            path.chmod(mode)
    return dirs


# --- The agent ------------------------------------------------------------------------


class NodeAgent:
    """One node's scheduler and kubelet. A single thread owns all state: the watch thread
    only queues events, and process exits are noticed by polling between events."""

    def __init__(
        self,
        cluster: Cluster,
        node: str,
        labels: dict[str, str],
        workdir: Path,
        python: str,
        egress_env: dict[str, str] | None = None,
    ):
        self.cluster, self.node, self.labels = cluster, node, labels
        self.workdir, self.python = workdir, python
        # Pods here are processes of the host, in the gateway's network position: they get its
        # egress policy (assay.runner.egress), and no pod spec can override it.
        self.egress_env = egress_env or {}
        self.running: dict[str, PodProcess] = {}  # by pod uid
        self.waiting: dict[str, Waiting] = {}
        # Pods whose final status this agent reported, and those it finished deleting: later
        # events about them are stale.
        self.finished: set[str] = set()
        self.deleted: set[str] = set()
        self.events: queue.Queue = queue.Queue()
        self.stop = threading.Event()
        self.next_resync = time.monotonic() + RESYNC_SECONDS

    def run(self) -> None:
        node_uid = register_node(self.cluster, self.node, self.labels)
        renew_lease(self.cluster, self.node, node_uid)
        log.info("node %s registered with labels %s", self.node, self.labels)
        for target, args in (
            (watch_pods, (self.cluster, self.events, self.stop)),
            (heartbeat_forever, (self.cluster, self.node, self.labels, node_uid, self.stop)),
        ):
            threading.Thread(target=target, args=args, daemon=True, name=target.__name__).start()
        while not self.stop.is_set():
            try:
                kind, pod = self.events.get(timeout=POLL_SECONDS)
                guarded(self.forget if kind == "DELETED" else self.reconcile, pod)
            except queue.Empty:
                pass
            guarded(self.tick)
        self.shutdown()

    # Reacting to pods

    def reconcile(self, pod: dict) -> None:
        node = pod["spec"].get("nodeName")
        if not node and wants_scheduling(pod) and node_fits(pod, self.labels):
            if self.cluster.bind(pod, self.node):
                log.info("%s bound to %s", pod_key(pod), self.node)
        elif node == self.node:
            self.reconcile_own(pod)

    def reconcile_own(self, pod: dict) -> None:
        uid, meta = pod["metadata"]["uid"], pod["metadata"]
        phase = (pod.get("status") or {}).get("phase", "Pending")
        if uid in self.running:
            self.running[uid].pod = pod
            if meta.get("deletionTimestamp"):
                self.terminate(self.running[uid])
        elif meta.get("deletionTimestamp"):
            self.waiting.pop(uid, None)
            if uid not in self.deleted and meta.get("deletionGracePeriodSeconds") != 0:
                self.delete_now(pod)
        elif uid in self.waiting:
            self.waiting[uid].pod = pod
        elif uid in self.finished:
            return
        elif phase == "Pending":
            self.start(pod)
        elif phase == "Running":
            self.fail_orphan(pod)

    def forget(self, pod: dict) -> None:
        """The pod is gone from the API: kill what is left of it (a forced deletion) and drop
        its volumes, which may hold secrets; its log stays for debugging."""
        uid = pod["metadata"]["uid"]
        self.finished.discard(uid)
        self.deleted.discard(uid)
        self.waiting.pop(uid, None)
        entry = self.running.pop(uid, None)
        if entry and entry.process:
            kill_group(entry.process.pid, signal.SIGKILL)
            entry.process.wait()
            log.info("%s deleted while running: killed", pod_key(pod))
        shutil.rmtree(self.pod_dir(pod) / "volumes", ignore_errors=True)

    def tick(self) -> None:
        now = time.monotonic()
        for entry in list(self.running.values()):
            if entry.process and has_exited(entry.process):
                self.on_exit(entry)
            elif entry.process and entry.kill_at is not None and now >= entry.kill_at:
                kill_group(entry.process.pid, signal.SIGKILL)
            elif entry.restart_at is not None and now >= entry.restart_at:
                entry.restart_count += 1
                self.launch(entry)
        for waiting in list(self.waiting.values()):
            if now >= waiting.retry_at:
                self.start(waiting.pod)
        if now >= self.next_resync:
            self.next_resync = now + RESYNC_SECONDS
            self.resync()

    def resync(self) -> None:
        """Level-based safety net for anything the watch missed."""
        pods = self.cluster.list_pods()
        present = {pod["metadata"]["uid"] for pod in pods}
        for entry in [e for uid, e in self.running.items() if uid not in present]:
            self.forget(entry.pod)
        self.finished &= present
        self.deleted &= present
        for pod in pods:
            guarded(self.reconcile, pod)

    # Starting

    def pod_dir(self, pod: dict) -> Path:
        meta = pod["metadata"]
        return self.workdir / f"{meta['namespace']}_{meta['name']}_{meta['uid'][:8]}"

    def start(self, pod: dict) -> None:
        containers = pod["spec"]["containers"]
        container, pod_dir = containers[0], self.pod_dir(pod)
        # Init containers are skipped and only the first container runs: Assay's runner pods
        # have exactly one, and a second would need a second process per pod to supervise.
        if len(containers) > 1:
            log.warning("%s has %d containers; only %r runs", pod_key(pod), len(containers), container["name"])
        try:
            launch = self.prepare(pod, container, pod_dir)
        except MissingSource as missing:
            self.wait_for_config(pod, container, str(missing))
            return
        except (UnsupportedSpec, OSError) as error:
            self.waiting.pop(pod["metadata"]["uid"], None)
            self.fail_pod(pod, container, "StartError", str(error), exit_code=128)
            return
        self.waiting.pop(pod["metadata"]["uid"], None)
        entry = PodProcess(pod, container, pod_dir, launch, start_time=rfc3339())
        self.running[pod["metadata"]["uid"]] = entry
        self.launch(entry)

    def prepare(self, pod: dict, container: dict, pod_dir: Path) -> Launch:
        lookup = self.cluster.lookup(pod["metadata"]["namespace"])
        pod_dir.mkdir(parents=True, exist_ok=True)
        path_map = build_path_map(container, materialise_volumes(pod, pod_dir, lookup), pod_dir)
        env = resolve_env(pod, container, lookup, path_map)
        return Launch(
            argv=build_argv(container, env, path_map, self.python),
            env={**base_env(pod, pod_dir), **env, **self.egress_env},
            cwd=working_dir(container, path_map, pod_dir),
        )

    def wait_for_config(self, pod: dict, container: dict, problem: str) -> None:
        uid = pod["metadata"]["uid"]
        previous = self.waiting.get(uid)
        self.waiting[uid] = Waiting(pod, problem, time.monotonic() + CONFIG_RETRY_SECONDS)
        if previous is None or previous.problem != problem:
            log.info("%s waiting: %s", pod_key(pod), problem)
            self.cluster.patch_status(
                pod,
                build_waiting_status(
                    container, phase="Pending", reason="CreateContainerConfigError", message=problem, now=rfc3339()
                ),
            )

    def launch(self, entry: PodProcess) -> None:
        entry.restart_at = None
        (entry.pod_dir / "termination-log").write_bytes(b"")  # a fresh file per container run
        try:
            with open(entry.pod_dir / "container.log", "ab") as log_file:
                entry.process = subprocess.Popen(
                    entry.launch.argv,
                    env=entry.launch.env,
                    cwd=entry.launch.cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        except OSError as error:
            self.running.pop(entry.pod["metadata"]["uid"], None)
            message = f"cannot run {entry.launch.argv[0]!r} in {entry.launch.cwd!r}: {error.strerror}"
            self.fail_pod(
                entry.pod, entry.container, "StartError", message, exit_code=128, restart_count=entry.restart_count
            )
            return
        entry.started_at = rfc3339()
        pid = entry.process.pid
        (entry.pod_dir / "process.json").write_text(json.dumps({"pid": pid, "start": process_start_ticks(pid)}))
        log.info("%s started (pid %d, restart %d)", pod_key(entry.pod), pid, entry.restart_count)
        self.cluster.patch_status(
            entry.pod,
            build_running_status(
                entry.container,
                start_time=entry.start_time,
                started_at=entry.started_at,
                restart_count=entry.restart_count,
                pid=pid,
                last_state=entry.last_state,
            ),
        )

    # Stopping

    def on_exit(self, entry: PodProcess) -> None:
        # What the process left behind dies with it, as it would with its container.
        kill_group(entry.process.pid, signal.SIGKILL)
        pid, exit_code = entry.process.pid, exit_code_of(entry.process.wait())
        entry.process = None
        message = termination_message(
            entry.container, exit_code, entry.pod_dir / "termination-log", entry.pod_dir / "container.log"
        )
        terminated = terminated_state(exit_code, message, entry.started_at, rfc3339())
        policy = entry.pod["spec"].get("restartPolicy", "Always")
        restarts = policy == "Always" or (policy == "OnFailure" and exit_code != 0)
        if restarts and not entry.pod["metadata"].get("deletionTimestamp"):
            self.schedule_restart(entry, terminated)
        else:
            self.complete(entry, terminated, pid)

    def schedule_restart(self, entry: PodProcess, terminated: dict) -> None:
        backoff = min(MAX_RESTART_BACKOFF_SECONDS, 2**entry.restart_count)
        entry.last_state, entry.restart_at = terminated, time.monotonic() + backoff
        log.info("%s exited %d; restarting in %ds", pod_key(entry.pod), terminated["terminated"]["exitCode"], backoff)
        self.cluster.patch_status(
            entry.pod,
            build_waiting_status(
                entry.container,
                phase="Running",
                reason="CrashLoopBackOff",
                now=rfc3339(),
                message=f"back-off {backoff}s restarting failed container",
                restart_count=entry.restart_count,
                last_state=terminated,
            ),
        )

    def complete(self, entry: PodProcess, terminated: dict, pid: int | None = None) -> None:
        """Report the final status and, when the pod is being deleted, finish the deletion:
        a pod reaches a terminal phase before it goes, as with a kubelet."""
        self.running.pop(entry.pod["metadata"]["uid"], None)
        self.finished.add(entry.pod["metadata"]["uid"])
        patch = build_terminated_status(entry.container, terminated, restart_count=entry.restart_count, pid=pid)
        log.info("%s exited %d: %s", pod_key(entry.pod), terminated["terminated"]["exitCode"], patch["status"]["phase"])
        self.cluster.patch_status(entry.pod, patch)
        if entry.pod["metadata"].get("deletionTimestamp"):
            self.delete_now(entry.pod)

    def terminate(self, entry: PodProcess) -> None:
        meta, spec = entry.pod["metadata"], entry.pod["spec"]
        grace = meta.get("deletionGracePeriodSeconds")
        grace = spec.get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS) if grace is None else grace
        already_terminating = entry.kill_at is not None
        # A second delete may shorten the grace period, never lengthen it.
        entry.kill_at = min(entry.kill_at or float("inf"), time.monotonic() + grace)
        if already_terminating:
            return
        if entry.process is None:  # waiting to restart: nothing to stop
            self.complete(entry, entry.last_state or terminated_state(137, "", rfc3339(), rfc3339()))
            return
        log.info("%s deleting: SIGTERM, SIGKILL after %ss", pod_key(entry.pod), grace)
        kill_group(entry.process.pid, signal.SIGTERM)

    def delete_now(self, pod: dict) -> None:
        self.cluster.delete_now(pod)
        self.deleted.add(pod["metadata"]["uid"])
        log.info("%s deleted", pod_key(pod))

    def fail_pod(
        self, pod: dict, container: dict, reason: str, message: str, exit_code: int, restart_count: int = 0
    ) -> None:
        now = rfc3339()
        terminated = terminated_state(exit_code, message, now, now, reason=reason)
        self.finished.add(pod["metadata"]["uid"])
        log.info("%s failed: %s: %s", pod_key(pod), reason, message)
        self.cluster.patch_status(
            pod, build_terminated_status(container, terminated, restart_count=restart_count, pod_reason=reason)
        )
        if pod["metadata"].get("deletionTimestamp"):
            self.delete_now(pod)

    def fail_orphan(self, pod: dict) -> None:
        """A pod Running on this node with no process of this agent's: a previous agent
        started it. Its process may still run; kill it and report the loss."""
        kill_leftover(self.pod_dir(pod))
        self.fail_pod(
            pod,
            pod["spec"]["containers"][0],
            "NodeAgentRestarted",
            "the node agent restarted and lost the pod's process",
            exit_code=137,
        )

    def shutdown(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL after a short grace) and report the
        pods Failed: the node is going away."""
        entries = [entry for entry in self.running.values() if entry.process]
        for entry in entries:
            kill_group(entry.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS
        for entry in entries:
            try:
                entry.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            kill_group(entry.process.pid, signal.SIGKILL)
            code = exit_code_of(entry.process.wait())
            guarded(
                self.fail_pod,
                entry.pod,
                entry.container,
                "NodeShutdown",
                "the node agent shut down",
                code,
                entry.restart_count,
            )
        log.info("node agent stopped")


def parse_labels(pairs: list[str]) -> dict[str, str]:
    labels = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--label wants key=value, got {pair!r}")
        labels[key] = value
    return labels


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kubeconfig", required=True, help="admin kubeconfig of the cluster")
    parser.add_argument("--node", required=True, help="the Node name to register")
    parser.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an extra node label, e.g. topology.kubernetes.io/region=us1 (repeatable)",
    )
    parser.add_argument("--workdir", type=Path, help="where pod folders go (default: a temp folder per node)")
    parser.add_argument("--egress-allow", help="ASSAY_EGRESS_ALLOW for every pod (see assay.runner.egress)")
    parser.add_argument("--egress-deny", default="", help="ASSAY_EGRESS_DENY for every pod")
    parser.add_argument(
        "--python", default=sys.executable, help="the interpreter for `python` commands (default: this one)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format=f"%(asctime)s nodeagent[{args.node}] %(levelname)s %(message)s"
    )
    workdir = (args.workdir or Path(tempfile.gettempdir()) / f"assay-nodeagent-{args.node}").resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    api_client = config.new_client_from_config(config_file=args.kubeconfig)
    labels = node_labels(args.node, parse_labels(args.label))
    egress_env = (
        {}
        if args.egress_allow is None
        else {"ASSAY_EGRESS_ALLOW": args.egress_allow, "ASSAY_EGRESS_DENY": args.egress_deny}
    )
    agent = NodeAgent(Cluster(api_client), args.node, labels, workdir, args.python, egress_env)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: agent.stop.set())
    agent.run()


if __name__ == "__main__":
    main()
