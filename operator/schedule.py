"""Schedules: Monitors run on Runscope intervals or cron expressions, in tick groups.

Schedules of one namespace with the same effective cron schedule and the same location (a
region or remote agent of the chosen environment; none = any node) form a tick group, run by
ONE CronJob, `assay-tick-<hash>`. Each tick is one Indexed Job of ceil(members / chunk) pods
(`python -m assay.runner batch`), so 500 Monitors on `1m` cost a handful of pods a minute,
not 500. A Monitor whose environment has two regions is a member of two groups. Suspended
Schedules are members of none.

Restart from now: `status.anchorTime` is set when the operator first sees a Schedule and
whenever its generation changes; an interval's cron is anchored at that minute (UTC,
assay.crds.schedule.anchored_cron), so after a change the next run comes one full interval
later. Cron expressions run as given.

`reconcile_groups(namespace)` is level-based and idempotent: from all Schedules and Monitors
of the namespace it computes the wanted CronJobs, their members' ConfigMaps, upload Secrets
and the Secrets with the members' secret values (runsecrets.py: the ConfigMap refers to
them), makes the cluster match (objects carrying LABEL_TICK_GROUP are ours), and writes
each Schedule's status. Handlers never run it themselves: they ask `reconciler` for it, which
coalesces a burst of changes (1,000 Monitors applied at once) into one pass per namespace.
A CronJob lists every member Schedule as a (non-controller) owner, so the garbage collector
removes it once all of them are gone, even while the operator is down.

TestSuite targets join the same groups (they have no regions: the any-node group of their
timing), with their parameter pools inlined from their ConfigMaps as a requested run's are;
the batch runner runs them beside the Monitors.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import json
import logging
import math
import threading
import time
from dataclasses import dataclass, field

import kopf
from croniter import CroniterError, croniter
import kubernetes
from kubernetes.client.rest import ApiException
from pydantic import ValidationError

from assay.crds.common import error_summary
from assay.crds.contracts.runner_settings import field_ref, runner_env, runner_settings_of, secret_key_ref
from assay.crds.contracts.tick import MEMBERS_FILE, group_upload_token
from assay.crds.monitor import SHARED_ENVIRONMENTS_CONFIGMAP
from assay.crds.runrequest import InvalidRunRequest
from assay.crds.schedule import ScheduleSpec, anchored_cron, interval_seconds

from . import kube
from .monitor import (_subtest_targets, find_environment, locations_for, resolve_subtests,
                      with_parent_environments)
from .names import GROUP, LABEL_APP, LABEL_COMPONENT, LABEL_LOCATION, LABEL_MANAGED_BY, LABEL_TICK_GROUP, \
    MANAGED_BY, VERSION
from .runjob import SECRETS_MOUNT, TERMINATION_LOG, manifest_of, secret_volume
from .runs import Location
from .runsecrets import SECRET_NOT_FOUND, MissingSecret, SecretReader, build_values_secret, move_secrets, \
    namespace_reader, resolve_values
from .settings import OperatorSettings, get_settings
from .testsuite import WaitingFor, with_inline_pools

PLURAL = "schedules"
MONITORS = "monitors"
SUITES = "testsuites"
TICK_PREFIX = "assay-tick"
TICK_MOUNT = "/etc/assay/tick"
HASH_ANNOTATION = "assay.dev/config-hash"
READY = "Ready"
RESYNC_SECONDS = 60.0

log = logging.getLogger("assay.operator.schedule")


# --- pure: which groups, with which members ------------------------------------------------


def parse_time(value) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def iso(moment: dt.datetime | None) -> str | None:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def anchor_of(schedule: dict, now: dt.datetime) -> dt.datetime:
    """The Schedule's anchor: the recorded one while its generation is the observed one, else now."""
    meta, status = schedule["metadata"], schedule.get("status") or {}
    recorded = parse_time(status.get("anchorTime"))
    if recorded is not None and status.get("observedGeneration") == meta.get("generation"):
        return recorded
    return now


def group_name(cron: str, location: str | None) -> str:
    """`assay-tick-<8 hex>` from the cron schedule and the location: the same timing and
    place always map to the same CronJob, in any namespace."""
    digest = hashlib.sha256(f"{cron}\n{location or ''}".encode()).hexdigest()[:8]
    return f"{TICK_PREFIX}-{digest}"


@dataclass
class Group:
    name: str
    cron: str
    location: Location | None
    members: list[dict] = field(default_factory=list)
    schedules: list[dict] = field(default_factory=list)
    """The member Schedules (owners of the CronJob)."""


@dataclass(frozen=True)
class Placement:
    """What a Schedule's status says about where it runs."""

    cron: str | None
    anchor: dt.datetime
    cron_jobs: tuple[str, ...] = ()
    reason: str = "Scheduled"
    problem: str | None = None


def plan_groups(namespace: str, schedules: list[dict], monitors: list[dict], now: dt.datetime,
                suites: list[dict] = (), suite_problems: dict[str, str] | None = None,
                ) -> tuple[dict[str, Group], dict[str, Placement]]:
    """The tick groups the namespace's Schedules need, by CronJob name, and each Schedule's
    placement, by Schedule uid. Deleted (being deleted) Schedules are in neither. `suites`
    have their parameter pools inlined; `suite_problems` names those that could not be."""
    monitors_by_name = {m["metadata"]["name"]: m for m in monitors}
    suites_by_name = {s["metadata"]["name"]: s for s in suites}
    suite_problems = suite_problems or {}
    groups: dict[str, Group] = {}
    placements: dict[str, Placement] = {}
    for schedule in sorted(schedules, key=lambda s: s["metadata"]["name"]):
        meta = schedule["metadata"]
        if meta.get("deletionTimestamp"):
            continue
        anchor = anchor_of(schedule, now)
        try:
            spec = ScheduleSpec.model_validate(schedule["spec"])
        except ValidationError as exc:
            placements[meta["uid"]] = Placement(None, anchor, reason="InvalidSpec", problem=str(exc))
            continue
        cron = anchored_cron(spec.interval, anchor)
        if spec.target.kind == "TestSuite":
            placements[meta["uid"]] = _place_suite(namespace, schedule, spec, cron, anchor, groups,
                                                   suites_by_name, suite_problems)
            continue
        monitor = monitors_by_name.get(spec.target.name)
        if monitor is None:
            placements[meta["uid"]] = Placement(cron, anchor, reason="TargetNotFound",
                                                problem=f"Monitor {spec.target.name!r} does not exist in {namespace}")
            continue
        try:
            env = find_environment(_monitor_spec(monitor), spec.environment)
            locations = locations_for(env)
        except (InvalidRunRequest, ValidationError) as exc:
            placements[meta["uid"]] = Placement(cron, anchor, reason="InvalidEnvironment", problem=str(exc))
            continue
        if spec.suspend:
            placements[meta["uid"]] = Placement(cron, anchor, reason="Suspended", problem="suspended: no runs until spec.suspend is false")
            continue
        subtests = resolve_subtests(monitor, monitors) if _has_subtests(monitor) else []
        names = []
        for index, location in enumerate(locations or [None]):
            name = group_name(cron, location.name if location else None)
            group = groups.setdefault(name, Group(name, cron, location))
            group.members.append({
                "schedule": {"name": meta["name"], "uid": meta["uid"]},
                "kind": "Monitor",
                "monitor": manifest_of(monitor),
                "subtests": subtests,
                "environment": env.name if env else None,
                "location": location.name if location else None,
                "locationIndex": index,
                "locations": max(1, len(locations)),
            })
            if not any(s["metadata"]["uid"] == meta["uid"] for s in group.schedules):
                group.schedules.append(schedule)
            names.append(name)
        placements[meta["uid"]] = Placement(cron, anchor, tuple(names))
    return groups, placements


def _place_suite(namespace: str, schedule: dict, spec: ScheduleSpec, cron: str, anchor: dt.datetime,
                 groups: dict[str, Group], suites_by_name: dict[str, dict],
                 suite_problems: dict[str, str]) -> Placement:
    name = spec.target.name
    if name in suite_problems:
        return Placement(cron, anchor, reason="Pending", problem=suite_problems[name])
    suite = suites_by_name.get(name)
    if suite is None:
        return Placement(cron, anchor, reason="TargetNotFound",
                         problem=f"TestSuite {name!r} does not exist in {namespace}")
    if spec.suspend:
        return Placement(cron, anchor, reason="Suspended", problem="suspended: no runs until spec.suspend is false")
    meta = schedule["metadata"]
    group = groups.setdefault(group_name(cron, None), Group(group_name(cron, None), cron, None))
    group.members.append({"schedule": {"name": meta["name"], "uid": meta["uid"]}, "kind": "TestSuite",
                          "testSuite": manifest_of(suite), "location": None, "locationIndex": 0, "locations": 1})
    group.schedules.append(schedule)
    return Placement(cron, anchor, (group.name,))


def _monitor_spec(monitor: dict):
    from assay.crds.monitor import MonitorSpec

    return MonitorSpec.model_validate(monitor["spec"])


def _has_subtests(monitor: dict) -> bool:
    try:
        return bool(_subtest_targets(monitor["spec"]))
    except ValidationError:
        return False


def pods_per_tick(members: int, chunk: int) -> int:
    return max(1, math.ceil(members / chunk))


# --- pure: the objects of a group ----------------------------------------------------------


def tick_labels(group: str, location: str | None = None) -> dict[str, str]:
    labels = {LABEL_APP: "assay-runner", LABEL_COMPONENT: "schedule-tick", LABEL_MANAGED_BY: MANAGED_BY,
              LABEL_TICK_GROUP: group}
    if location:
        labels[LABEL_LOCATION] = location
    return labels


def upload_secret_name(group: str) -> str:
    return f"{group}-upload"


def values_secret_name(group: str) -> str:
    return f"{group}-secrets"


MEMBER_MANIFESTS = ("monitor", "testSuite", "subtests")
"""The keys of a member that hold manifests (a list of them for subtests)."""


def move_member_secrets(group: Group, read: SecretReader) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """Move the secret values of the group's members out of their manifests, into the group's
    values Secret (`values_secret_name`): the members are rewritten to refer to it, and the
    values returned by key. A member whose spec references a Secret that does not exist, or
    whose spec is invalid, leaves the group; its Schedule's uid maps to (reason, message)."""
    secret_name = values_secret_name(group.name)
    kept, values, problems = [], {}, {}
    for member in group.members:
        manifests = {key: member[key] for key in MEMBER_MANIFESTS if key in member}
        try:
            moved, fields = move_secrets(manifests, secret_name, f"members.{len(kept)}.")
            member_values = resolve_values(fields, read)
        except MissingSecret as exc:
            problems[member["schedule"]["uid"]] = (SECRET_NOT_FOUND, str(exc))
            continue
        except ValidationError as exc:
            problems[member["schedule"]["uid"]] = ("InvalidSpec", f"invalid spec: {error_summary(exc)}")
            continue
        kept.append({**member, **moved})
        values.update(member_values)
    group.members = kept
    return values, problems


def members_document(namespace: str, group: Group, chunk: int) -> dict:
    return {"group": group.name, "namespace": namespace, "chunk": chunk, "members": group.members}


def _schedule_owner(schedule: dict) -> dict:
    meta = schedule["metadata"]
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Schedule", "name": meta["name"], "uid": meta["uid"],
            "controller": False, "blockOwnerDeletion": False}


def _cronjob_owner(cronjob: dict) -> dict:
    meta = cronjob["metadata"]
    return {"apiVersion": "batch/v1", "kind": "CronJob", "name": meta["name"], "uid": meta["uid"],
            "controller": True, "blockOwnerDeletion": True}


def build_tick_cronjob(namespace: str, group: Group, settings: OperatorSettings, with_secrets: bool = False) -> dict:
    """The group's CronJob: one Indexed Job per tick, ceil(members / chunk) pods, each pod
    running its chunk of members (and, `with_secrets`, mounting the group's values Secret).
    Forbid: a tick still running holds the next one back rather than doubling the load on the
    targets. No retries (backoffLimit 0): a retried
    pod would call every API of its chunk a second time within the same tick."""
    completions = pods_per_tick(len(group.members), settings.tick_chunk)
    location = group.location
    labels = tick_labels(group.name, location.name if location else None)
    runner = runner_settings_of(location.env if location else {}).model_copy(update={
        "project": namespace, "tick_concurrency": settings.tick_concurrency, "termination_log": TERMINATION_LOG,
        "gateway_url": settings.gateway_url if settings.uploads_enabled else None,
        "secrets_dir": SECRETS_MOUNT if with_secrets else None})
    refs = {"job_name": field_ref("metadata.labels['batch.kubernetes.io/job-name']")}
    if settings.uploads_enabled:
        refs["upload_token"] = secret_key_ref(upload_secret_name(group.name), "token")
    env = [*runner_env(runner, **refs), {"name": "POD_NAME", "valueFrom": field_ref("metadata.name")}]
    container = {
        "name": "runner",
        "image": settings.runner_image,
        "imagePullPolicy": settings.runner_image_pull_policy,
        "command": ["python", "-m", "assay.runner"],
        "args": ["batch", "--spec", TICK_MOUNT],
        "env": env,
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "File",
        "volumeMounts": [{"name": "members", "mountPath": TICK_MOUNT, "readOnly": True}],
        "resources": settings.runner_resources,
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
    }
    volumes = [{"name": "members", "configMap": {"name": group.name}}]
    if with_secrets:
        volume, mount = secret_volume(values_secret_name(group.name))
        volumes.append(volume)
        container["volumeMounts"].append(mount)
    pod_spec = {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": volumes,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
        "automountServiceAccountToken": False,
    }
    if settings.runner_service_account:
        pod_spec["serviceAccountName"] = settings.runner_service_account
    if location and location.node_selector:
        pod_spec["nodeSelector"] = dict(location.node_selector)
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
                    "template": {"metadata": {"labels": labels}, "spec": pod_spec},
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
        "metadata": {"name": group.name, "namespace": namespace, "labels": tick_labels(group.name),
                     "ownerReferences": [_cronjob_owner(cronjob)]},
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
        "metadata": {"name": upload_secret_name(group), "namespace": namespace, "labels": tick_labels(group),
                     "ownerReferences": [_cronjob_owner(cronjob)]},
        "data": {"token": base64.b64encode(token.encode()).decode()},
    }


# --- pure: a Schedule's status -------------------------------------------------------------


def next_run_time(interval: str, anchor: dt.datetime, now: dt.datetime) -> dt.datetime | None:
    """The next tick after `now`: of the anchored interval, or of the cron expression (UTC, as
    the CronJob runs it); None for an expression croniter cannot read."""
    step = interval_seconds(interval)
    if step is None:
        try:
            return croniter(interval, now.astimezone(dt.timezone.utc)).get_next(dt.datetime)
        except (ValueError, KeyError, CroniterError):
            return None
    start = anchor.replace(second=0, microsecond=0)
    elapsed = (now - start).total_seconds()
    return start + dt.timedelta(seconds=step * (math.floor(elapsed / step) + 1))


def schedule_status(schedule: dict, placement: Placement, cronjobs: dict[str, dict], now: dt.datetime) -> dict:
    """The Schedule's status from its placement and its CronJobs as they are."""
    meta, current = schedule["metadata"], schedule.get("status") or {}
    generation = meta.get("generation")
    last_times = [t for name in placement.cron_jobs
                  if (t := parse_time(((cronjobs.get(name) or {}).get("status") or {}).get("lastScheduleTime")))]
    status: dict = {
        "cronJobName": placement.cron_jobs[0] if placement.cron_jobs else None,
        "cronJobs": list(placement.cron_jobs),
        "cronSchedule": placement.cron,
        "anchorTime": iso(placement.anchor),
        "observedGeneration": generation,
        "lastScheduleTime": iso(max(last_times)) if last_times else current.get("lastScheduleTime"),
        "nextRunTime": None,
    }
    if placement.problem is None:
        missing = [name for name in placement.cron_jobs if name not in cronjobs]
        if missing:
            condition = (READY, "False", "Pending", f"CronJob {', '.join(missing)} not created yet")
        else:
            interval = (schedule.get("spec") or {}).get("interval", "")
            status["nextRunTime"] = iso(next_run_time(interval, placement.anchor, now))
            condition = (READY, "True", "Scheduled",
                         f"runs on {placement.cron!r} (UTC) from CronJob {', '.join(placement.cron_jobs)}")
    else:
        condition = (READY, "False", placement.reason, placement.problem)
    previous = next((c for c in current.get("conditions") or [] if c.get("type") == READY), None)
    kind, state, reason, message = condition
    same = previous and (previous.get("status"), previous.get("reason"), previous.get("message")) == \
        (state, reason, message)
    ready = {"type": kind, "status": state, "reason": reason, "message": message[:1000],
             "lastTransitionTime": previous.get("lastTransitionTime") if same else iso(now),
             "observedGeneration": generation}
    others = [c for c in current.get("conditions") or [] if c.get("type") != READY]
    status["conditions"] = [*others, {k: v for k, v in ready.items() if v is not None}]
    return status


def status_changed(current: dict, new: dict) -> bool:
    return any(current.get(k) != v for k, v in new.items() if v is not None) or \
        any(current.get(k) is not None for k, v in new.items() if v is None)


# --- Kubernetes I/O ------------------------------------------------------------------------


def _batch() -> kubernetes.client.BatchV1Api:
    return kubernetes.client.BatchV1Api()


def _core() -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api()


def list_tick_cronjobs(namespace: str) -> dict[str, dict]:
    items = _batch().list_namespaced_cron_job(namespace, label_selector=LABEL_TICK_GROUP).items
    return {c.metadata.name: kube.to_dict(c) for c in items}


def _apply_cronjob(wanted: dict, existing: dict | None) -> dict:
    namespace, name = wanted["metadata"]["namespace"], wanted["metadata"]["name"]
    if existing is None:
        try:
            return kube.to_dict(_batch().create_namespaced_cron_job(namespace, wanted))
        except ApiException as exc:
            if exc.status != 409:
                raise
            existing = kube.to_dict(_batch().read_namespaced_cron_job(name, namespace))
    if (existing["metadata"].get("annotations") or {}).get(HASH_ANNOTATION) == \
            wanted["metadata"]["annotations"][HASH_ANNOTATION]:
        return existing
    body = {**wanted, "metadata": {**wanted["metadata"], "resourceVersion": existing["metadata"]["resourceVersion"]}}
    return kube.to_dict(_batch().replace_namespaced_cron_job(name, namespace, body))


def _apply_configmap(wanted: dict) -> None:
    namespace, name = wanted["metadata"]["namespace"], wanted["metadata"]["name"]
    existing, created = kube.create_if_absent(wanted)
    if created or (existing.get("binaryData"), existing.get("data")) == (wanted["binaryData"], None):
        return
    _core().replace_namespaced_config_map(name, namespace, {
        **wanted, "metadata": {**wanted["metadata"], "resourceVersion": existing["metadata"]["resourceVersion"]}})


def _apply_secret(wanted: dict) -> None:
    """Create or replace; errors carry status and reason only, as the body may echo the data."""
    namespace, name = wanted["metadata"]["namespace"], wanted["metadata"]["name"]
    existing, created = kube.create_if_absent(wanted)
    if created or existing.get("data") == wanted["data"]:
        return
    body = {**wanted, "metadata": {**wanted["metadata"], "resourceVersion": existing["metadata"]["resourceVersion"]}}
    try:
        _core().replace_namespaced_secret(name, namespace, body)
    except ApiException as exc:
        raise ApiException(status=exc.status, reason=exc.reason) from None


def _delete_secret(namespace: str, name: str) -> None:
    try:
        _core().delete_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise


def _mounts_secret(cronjob: dict | None, name: str) -> bool:
    pod = (cronjob or {}).get("spec", {}).get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {})
    volumes = pod.get("volumes") or []
    return any((v.get("secret") or {}).get("secretName") == name for v in volumes)


def _delete_cronjob(namespace: str, name: str) -> None:
    try:
        # Background: the Jobs, ConfigMap and Secret go with it through their owner references.
        _batch().delete_namespaced_cron_job(name, namespace, propagation_policy="Background")
    except ApiException as exc:
        if exc.status != 404:
            raise


def _write_schedule_status(schedule: dict, new: dict) -> None:
    meta = schedule["metadata"]
    try:
        kube.patch_status(PLURAL, meta["namespace"], meta["name"], new, meta.get("resourceVersion"))
    except kube.Conflict:
        reconciler.request(meta["namespace"])  # changed since it was read: look again
    except ApiException as exc:
        if exc.status != 404:
            raise


def reconcile_groups(namespace: str, settings: OperatorSettings | None = None,
                     now: dt.datetime | None = None) -> dict[str, Group]:
    """Make the namespace's tick CronJobs, ConfigMaps and Secrets what its Schedules and
    Monitors ask for, and write each Schedule's status. Idempotent: a second call with
    nothing changed writes nothing. Returns the groups."""
    settings = settings or get_settings()
    now = now or dt.datetime.now(dt.timezone.utc)
    schedules = kube.list_custom(PLURAL, namespace)
    monitors = kube.list_custom(MONITORS, namespace) if schedules else []
    if any(env.get("parentEnvironmentId") for m in monitors for env in m["spec"].get("environments") or []):
        # Members carry the merged spec, as a requested run does; a shared environment's
        # change reaches the next tick through the Schedules' timers.
        shared = kube.read_config_map(namespace, SHARED_ENVIRONMENTS_CONFIGMAP)
        monitors = [with_parent_environments(m, shared) for m in monitors]
    wanted_suites = {s["spec"]["target"]["name"] for s in schedules if s["spec"]["target"]["kind"] == "TestSuite"}
    suites, suite_problems = [], {}
    for suite in kube.list_custom(SUITES, namespace) if wanted_suites else []:
        if suite["metadata"]["name"] in wanted_suites:
            try:
                suites.append(with_inline_pools(suite))
            except WaitingFor as exc:
                suite_problems[suite["metadata"]["name"]] = str(exc)
    groups, placements = plan_groups(namespace, schedules, monitors, now, suites, suite_problems)
    read_secret, secret_values = namespace_reader(namespace), {}
    for name, group in list(groups.items()):
        secret_values[name], problems = move_member_secrets(group, read_secret)
        for uid, (reason, problem) in problems.items():
            placed = placements[uid]
            placements[uid] = Placement(placed.cron, placed.anchor, reason=reason, problem=problem)
        if not group.members:
            del groups[name]
    existing = list_tick_cronjobs(namespace)
    cronjobs: dict[str, dict] = {}
    for name, group in groups.items():
        values = secret_values[name]
        cronjob = _apply_cronjob(build_tick_cronjob(namespace, group, settings, bool(values)), existing.get(name))
        cronjobs[name] = cronjob
        _apply_configmap(build_members_configmap(namespace, group, settings.tick_chunk, cronjob))
        if values:
            _apply_secret(build_values_secret(values_secret_name(name), namespace, tick_labels(name),
                                              [_cronjob_owner(cronjob)], values))
        elif _mounts_secret(existing.get(name), values_secret_name(name)):
            _delete_secret(namespace, values_secret_name(name))
        if settings.uploads_enabled:
            kube.create_if_absent(build_group_secret(namespace, name, settings, cronjob))
        if name not in existing:
            log.info(f"{namespace}/{name}: tick group on {group.cron!r}"
                     f"{' in ' + group.location.name if group.location else ''}: {len(group.members)} members")
    for name in set(existing) - set(groups):
        _delete_cronjob(namespace, name)
        log.info(f"{namespace}/{name}: tick group removed (no members)")
    for schedule in schedules:
        placement = placements.get(schedule["metadata"]["uid"])
        if placement is None:
            continue
        current = schedule.get("status") or {}
        new = schedule_status(schedule, placement, cronjobs, now)
        if status_changed(current, new):
            _write_schedule_status(schedule, new)
    return groups


# --- the work queue: coalesced passes per namespace ----------------------------------------


class GroupReconciler:
    """Runs `reconcile_groups` for namespaces that asked for it, one pass per namespace at a
    time, on a thread of its own: a burst of requests within `delay` is one pass, and a
    failed pass is retried after `retry` seconds."""

    def __init__(self, delay: float = 1.0, retry: float = 10.0):
        self.delay, self.retry = delay, retry
        self._due: dict[str, float] = {}
        self._last: dict[str, float] = {}
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def request(self, namespace: str, *, unless_within: float | None = None) -> None:
        """Ask for a pass over `namespace`; with `unless_within`, only if none ran for that long."""
        with self._wake:
            if unless_within is not None and time.monotonic() - self._last.get(namespace, -1e9) < unless_within:
                return
            due = time.monotonic() + self.delay
            self._due[namespace] = min(self._due.get(namespace, due), due)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="tick-groups", daemon=True)
                self._thread.start()
            self._wake.notify()

    def _next(self) -> str:
        with self._wake:
            while True:
                now = time.monotonic()
                ready = [ns for ns, due in self._due.items() if due <= now]
                if ready:
                    namespace = min(ready, key=self._due.__getitem__)
                    del self._due[namespace]
                    self._last[namespace] = now
                    return namespace
                self._wake.wait(timeout=min(self._due.values(), default=now + 60) - now)

    def _run(self) -> None:
        while True:
            namespace = self._next()
            try:
                reconcile_groups(namespace)
            except Exception as exc:  # noqa: BLE001  (the queue outlives any one failure)
                log.warning(f"{namespace}: tick groups not reconciled ({type(exc).__name__}: {exc}); "
                            f"retrying in {self.retry:.0f}s")
                with self._wake:
                    self._due.setdefault(namespace, time.monotonic() + self.retry)
                    self._wake.notify()


reconciler = GroupReconciler()


# --- handlers ------------------------------------------------------------------------------


@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
def schedule_changed(namespace, **_):
    reconciler.request(namespace)


@kopf.timer(GROUP, VERSION, PLURAL, interval=RESYNC_SECONDS, initial_delay=RESYNC_SECONDS)
def schedule_resync(namespace, **_):
    # A safety net for missed events, and the CronJobs' lastScheduleTime into the status;
    # one pass a minute per namespace however many Schedules it has.
    reconciler.request(namespace, unless_within=RESYNC_SECONDS * 0.8)


@kopf.on.create(GROUP, VERSION, MONITORS)
@kopf.on.update(GROUP, VERSION, MONITORS, field="spec")
@kopf.on.delete(GROUP, VERSION, MONITORS, optional=True)
@kopf.on.create(GROUP, VERSION, SUITES)
@kopf.on.update(GROUP, VERSION, SUITES, field="spec")
@kopf.on.delete(GROUP, VERSION, SUITES, optional=True)
def target_changed(namespace, **_):
    # A target's spec is copied into its groups' members: the next tick must run the new one.
    reconciler.request(namespace)
