"""Schedule handlers: Monitors and TestSuites run on Runscope intervals or cron expressions,
in tick groups (tickplan.py plans them, tickobjects.py builds their objects).

`reconcile_groups(namespace)` is level-based and idempotent: from all Schedules and Monitors
of the namespace it computes the wanted CronJobs, their members' ConfigMaps, upload Secrets
and the Secrets with the members' secret values (runsecrets.py: the ConfigMap refers to
them), makes the cluster match (objects carrying LABEL_TICK_GROUP are ours), and writes
each Schedule's status. Handlers never run it themselves: they ask `reconciler` (a
workqueue.NamespaceQueue) for it, which coalesces a burst of changes into one pass per
namespace. A CronJob lists every member Schedule as a (non-controller) owner, so the garbage
collector removes it once all of them are gone, even while the operator is down.

TestSuite targets are planned with their parameter pools inlined from their ConfigMaps as a
requested run's are; the batch runner runs them beside the Monitors.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Callable

import kopf
from kubernetes.client.rest import ApiException

from assay.crds.monitor import SHARED_ENVIRONMENTS_CONFIGMAP

from . import kube, metrics
from .monitorruns import with_parent_environments
from .names import GROUP, LABEL_TICK_GROUP, VERSION
from .runsecrets import build_values_secret, namespace_reader
from .settings import OperatorSettings, get_settings
from .status import update_status
from .suiteruns import WaitingFor, with_inline_pools
from .tickobjects import (
    HASH_ANNOTATION,
    build_group_secret,
    build_members_configmap,
    build_tick_cronjob,
    cronjob_owner,
    mounts_secret,
    tick_labels,
    values_secret_name,
)
from .tickplan import Group, Placement, move_member_secrets, plan_groups, schedule_status, status_changed
from .workqueue import NamespaceQueue

KIND = "Schedule"
PLURAL = "schedules"
MONITORS = "monitors"
SUITES = "testsuites"
RESYNC_SECONDS = 60.0

log = logging.getLogger("assay.operator.schedule")


def _same_hash(have: dict, want: dict) -> bool:
    return (have["metadata"].get("annotations") or {}).get(HASH_ANNOTATION) == want["metadata"]["annotations"][
        HASH_ANNOTATION
    ]


def _apply(wanted: dict, same: Callable[[dict, dict], bool], existing: dict | None = None) -> dict:
    """Create `wanted`, or replace the object of its name unless `same(existing, wanted)`;
    `existing` is the object as already listed, if it was."""
    if existing is None:
        existing, created = kube.create_if_absent(wanted)
        if created:
            return existing
    if same(existing, wanted):
        return existing
    return kube.replace(wanted, existing["metadata"]["resourceVersion"])


def _write_schedule_status(schedule: dict, placement: Placement, cronjobs: dict[str, dict], now: dt.datetime) -> None:
    meta = schedule["metadata"]

    def compute(current: dict) -> dict | None:
        if current["metadata"].get("generation") != meta.get("generation"):
            # The spec changed since this pass planned it: the next pass places it anew.
            reconciler.request(meta["namespace"])
            return None
        new = schedule_status(current, placement, cronjobs, now)
        return new if status_changed(current.get("status") or {}, new) else None

    try:
        update_status(KIND, meta["namespace"], meta["name"], compute, first=schedule)
    except ApiException as exc:
        if exc.status != 404:
            raise


def reconcile_groups(
    namespace: str, settings: OperatorSettings | None = None, now: dt.datetime | None = None
) -> dict[str, Group]:
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
    existing = kube.list_cronjobs(namespace, LABEL_TICK_GROUP)
    cronjobs: dict[str, dict] = {}
    for name, group in groups.items():
        values = secret_values[name]
        cronjob = _apply(build_tick_cronjob(namespace, group, settings, bool(values)), _same_hash, existing.get(name))
        cronjobs[name] = cronjob
        _apply(
            build_members_configmap(namespace, group, settings.tick_chunk, cronjob),
            lambda have, want: (have.get("binaryData"), have.get("data")) == (want["binaryData"], None),
        )
        if values:
            _apply(
                build_values_secret(
                    values_secret_name(name), namespace, tick_labels(name), [cronjob_owner(cronjob)], values
                ),
                lambda have, want: have.get("data") == want["data"],
            )
        elif mounts_secret(existing.get(name), values_secret_name(name)):
            kube.delete_secret(namespace, values_secret_name(name))
        if settings.uploads_enabled:
            kube.create_if_absent(build_group_secret(namespace, name, settings, cronjob))
        if name not in existing:
            log.info(
                f"{namespace}/{name}: tick group on {group.cron!r}"
                f"{' in ' + group.location.name if group.location else ''}: {len(group.members)} members"
            )
    for name in set(existing) - set(groups):
        kube.delete_cronjob(namespace, name)
        log.info(f"{namespace}/{name}: tick group removed (no members)")
    observed = []
    for schedule in schedules:
        placement = placements.get(schedule["metadata"]["uid"])
        if placement is not None:
            _write_schedule_status(schedule, placement, cronjobs, now)
            status = schedule_status(schedule, placement, cronjobs, now)
            observed.append({**schedule, "status": {**(schedule.get("status") or {}), **status}})
    metrics.schedules_observed(namespace, observed)
    return groups


reconciler = NamespaceQueue(reconcile_groups, "tick groups")


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
