"""Schedules into tick groups, pure: which groups a namespace's Schedules need, with which
members, and what each Schedule's status says.

Schedules of one namespace with the same effective cron schedule and the same location (a
region or remote agent of the chosen environment; none = any node) form a tick group, run by
ONE CronJob, `assay-tick-<hash>` (tickobjects.py builds it). A Monitor whose environment has
two regions is a member of two groups. Suspended Schedules are members of none. TestSuite
targets join the same groups (they have no regions: the any-node group of their timing).

Restart from now: `status.anchorTime` is set when the operator first sees a Schedule and
whenever its generation changes; an interval's cron is anchored at that minute (UTC,
assay.crds.schedule.anchored_cron), so after a change the next run comes one full interval
later. Cron expressions run as given.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from dataclasses import dataclass, field

from croniter import CroniterError, croniter
from pydantic import ValidationError

from assay.crds.common import error_summary
from assay.crds.monitor import MonitorSpec
from assay.crds.runrequest import InvalidRunRequest
from assay.crds.schedule import ScheduleSpec, anchored_cron, interval_seconds
from assay.crds.times import iso, parse_time

from .monitorruns import find_environment, locations_for, resolve_subtests, subtest_targets
from .runjob import manifest_of
from .runs import Location
from .runsecrets import SECRET_NOT_FOUND, MissingSecret, SecretReader, move_secrets, resolve_values
from .status import INVALID_SPEC, set_condition
from .tickobjects import values_secret_name

TICK_PREFIX = "assay-tick"
READY = "Ready"


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


def plan_groups(
    namespace: str,
    schedules: list[dict],
    monitors: list[dict],
    now: dt.datetime,
    suites: list[dict] = (),
    suite_problems: dict[str, str] | None = None,
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
            placements[meta["uid"]] = Placement(None, anchor, reason=INVALID_SPEC, problem=str(exc))
            continue
        cron = anchored_cron(spec.interval, anchor)
        if spec.target.kind == "TestSuite":
            placements[meta["uid"]] = _place_suite(
                namespace, schedule, spec, cron, anchor, groups, suites_by_name, suite_problems
            )
            continue
        monitor = monitors_by_name.get(spec.target.name)
        if monitor is None:
            placements[meta["uid"]] = Placement(
                cron,
                anchor,
                reason="TargetNotFound",
                problem=f"Monitor {spec.target.name!r} does not exist in {namespace}",
            )
            continue
        try:
            env = find_environment(_monitor_spec(monitor), spec.environment)
            locations = locations_for(env)
        except (InvalidRunRequest, ValidationError) as exc:
            placements[meta["uid"]] = Placement(cron, anchor, reason="InvalidEnvironment", problem=str(exc))
            continue
        if spec.suspend:
            placements[meta["uid"]] = Placement(
                cron, anchor, reason="Suspended", problem="suspended: no runs until spec.suspend is false"
            )
            continue
        subtests = resolve_subtests(monitor, monitors) if _has_subtests(monitor) else []
        names = []
        for index, location in enumerate(locations or [None]):
            name = group_name(cron, location.name if location else None)
            group = groups.setdefault(name, Group(name, cron, location))
            group.members.append(
                {
                    "schedule": {"name": meta["name"], "uid": meta["uid"]},
                    "kind": "Monitor",
                    "monitor": manifest_of(monitor),
                    "subtests": subtests,
                    "environment": env.name if env else None,
                    "location": location.name if location else None,
                    "locationIndex": index,
                    "locations": max(1, len(locations)),
                }
            )
            if not any(s["metadata"]["uid"] == meta["uid"] for s in group.schedules):
                group.schedules.append(schedule)
            names.append(name)
        placements[meta["uid"]] = Placement(cron, anchor, tuple(names))
    return groups, placements


def _place_suite(
    namespace: str,
    schedule: dict,
    spec: ScheduleSpec,
    cron: str,
    anchor: dt.datetime,
    groups: dict[str, Group],
    suites_by_name: dict[str, dict],
    suite_problems: dict[str, str],
) -> Placement:
    name = spec.target.name
    if name in suite_problems:
        return Placement(cron, anchor, reason="Pending", problem=suite_problems[name])
    suite = suites_by_name.get(name)
    if suite is None:
        return Placement(
            cron, anchor, reason="TargetNotFound", problem=f"TestSuite {name!r} does not exist in {namespace}"
        )
    if spec.suspend:
        return Placement(cron, anchor, reason="Suspended", problem="suspended: no runs until spec.suspend is false")
    meta = schedule["metadata"]
    group = groups.setdefault(group_name(cron, None), Group(group_name(cron, None), cron, None))
    group.members.append(
        {
            "schedule": {"name": meta["name"], "uid": meta["uid"]},
            "kind": "TestSuite",
            "testSuite": manifest_of(suite),
            "location": None,
            "locationIndex": 0,
            "locations": 1,
        }
    )
    group.schedules.append(schedule)
    return Placement(cron, anchor, (group.name,))


def _monitor_spec(monitor: dict) -> MonitorSpec:
    return MonitorSpec.model_validate(monitor["spec"])


def _has_subtests(monitor: dict) -> bool:
    try:
        return bool(subtest_targets(monitor["spec"]))
    except ValidationError:
        return False


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
            problems[member["schedule"]["uid"]] = (INVALID_SPEC, f"invalid spec: {error_summary(exc)}")
            continue
        kept.append({**member, **moved})
        values.update(member_values)
    group.members = kept
    return values, problems


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
    last_times = [
        t
        for name in placement.cron_jobs
        if (t := parse_time(((cronjobs.get(name) or {}).get("status") or {}).get("lastScheduleTime")))
    ]
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
            condition = (
                READY,
                "True",
                "Scheduled",
                f"runs on {placement.cron!r} (UTC) from CronJob {', '.join(placement.cron_jobs)}",
            )
    else:
        condition = (READY, "False", placement.reason, placement.problem)
    status["conditions"] = set_condition(current.get("conditions"), *condition, now=iso(now), generation=generation)
    return status


def status_changed(current: dict, new: dict) -> bool:
    return any(current.get(k) != v for k, v in new.items() if v is not None) or any(
        current.get(k) is not None for k, v in new.items() if v is None
    )
