"""Schedules into tick groups: anchored cron schedules, group membership, the CronJob and
ConfigMap a group runs from, and the Schedule's status — read from the pure functions."""

from __future__ import annotations

import datetime as dt

import pytest

from assay.crds.schedule import anchored_cron
from assay.operator.tickobjects import build_members_configmap, build_tick_cronjob
from assay.operator.tickplan import group_name, next_run_time, plan_groups, schedule_status
from assay.crds.contracts.tick import members_of
from assay.operator.settings import OperatorSettings

NOW = dt.datetime(2026, 11, 23, 10, 7, 30, tzinfo=dt.timezone.utc)
CHUNK = 2


@pytest.mark.parametrize(
    "interval, cron",
    [
        ("1m", "* * * * *"),
        ("5m", "2-59/5 * * * *"),
        ("15m", "7-59/15 * * * *"),
        ("30m", "7-59/30 * * * *"),
        ("1h", "7 * * * *"),
        ("6h", "7 4-23/6 * * *"),
        ("1d", "7 10 * * *"),
        ("*/10 8-18 * * MON-FRI", "*/10 8-18 * * MON-FRI"),
    ],
)
def test_an_interval_is_anchored_at_the_minute_it_started_and_a_cron_expression_is_kept(interval, cron):
    assert anchored_cron(interval, NOW) == cron


def test_the_next_run_of_an_anchored_interval_is_one_full_interval_after_the_anchor():
    assert next_run_time("5m", NOW, NOW) == NOW.replace(minute=12, second=0)
    assert next_run_time("1h", NOW, NOW + dt.timedelta(minutes=70)) == NOW.replace(hour=12, minute=7, second=0)
    assert next_run_time("1m", NOW, NOW) == NOW.replace(minute=8, second=0)
    # A cron expression's next run is its own, whatever the anchor.
    assert next_run_time("*/10 * * * *", NOW, NOW) == NOW.replace(minute=10, second=0, microsecond=0)
    friday = dt.datetime(2026, 11, 27, 7, 0, tzinfo=dt.timezone.utc)
    assert next_run_time("30 6 * * MON-FRI", NOW, NOW) == dt.datetime(2026, 11, 24, 6, 30, tzinfo=dt.timezone.utc)
    assert next_run_time("30 6 * * MON-FRI", NOW, friday) == dt.datetime(2026, 11, 30, 6, 30, tzinfo=dt.timezone.utc)


def monitor(name: str, uid: str, regions=(), subtest: str | None = None) -> dict:
    steps = [{"stepType": "request", "url": "http://127.0.0.1:1/"}]
    if subtest:
        steps.append({"stepType": "subtest", "monitor": subtest})
    return {
        "apiVersion": "assay.dev/v1alpha1",
        "kind": "Monitor",
        "metadata": {"name": name, "namespace": "ns", "uid": uid},
        "spec": {
            "steps": steps,
            "environments": [{"name": "local"}, {"name": "world", "regions": list(regions)}],
            "defaultEnvironment": "local",
        },
    }


def schedule(
    name: str,
    uid: str,
    target: str,
    interval: str = "1m",
    *,
    environment=None,
    suspend=False,
    generation=1,
    status=None,
) -> dict:
    spec = {"target": {"kind": "Monitor", "name": target}, "interval": interval, "suspend": suspend}
    if environment:
        spec["environment"] = environment
    return {
        "apiVersion": "assay.dev/v1alpha1",
        "kind": "Schedule",
        "metadata": {"name": name, "namespace": "ns", "uid": uid, "generation": generation},
        "spec": spec,
        "status": status or {},
    }


MONITORS = [
    monitor("a", "aaaaaaaa-1"),
    monitor("b", "bbbbbbbb-1", regions=["us1", "eu1"], subtest="a"),
    monitor("c", "cccccccc-1"),
]


def test_schedules_with_the_same_timing_and_place_share_one_group_and_suspended_ones_are_in_none():
    schedules = [
        schedule("sa", "5a000000-1", "a"),
        schedule("sc", "5c000000-1", "c"),
        schedule("sb", "5b000000-1", "b", environment="world"),
        schedule("off", "50000000-1", "a", suspend=True),
        schedule("lost", "51000000-1", "nobody"),
    ]
    groups, placements = plan_groups("ns", schedules, MONITORS, NOW)

    anywhere = groups[group_name("* * * * *", None)]
    assert [m["monitor"]["metadata"]["name"] for m in anywhere.members] == ["a", "c"]
    # A Monitor in two regions is a member of two groups, one per location.
    us1, eu1 = groups[group_name("* * * * *", "us1")], groups[group_name("* * * * *", "eu1")]
    assert [m["location"] for m in us1.members + eu1.members] == ["us1", "eu1"]
    assert us1.location.node_selector == {"topology.kubernetes.io/region": "us1"}
    assert [s["metadata"]["name"] for s in us1.schedules] == ["sb"]
    # Subtests travel with the member, resolved as a requested run resolves them.
    assert [m["metadata"]["name"] for m in us1.members[0]["subtests"]] == ["a"]
    assert len(groups) == 3
    assert placements["5b000000-1"].cron_jobs == (us1.name, eu1.name)
    assert placements["50000000-1"].reason == "Suspended" and placements["50000000-1"].cron_jobs == ()
    assert placements["51000000-1"].reason == "TargetNotFound"
    assert "'nobody'" in placements["51000000-1"].problem


def test_a_changed_schedule_is_anchored_now_and_an_unchanged_one_keeps_its_anchor():
    old = "2026-11-23T09:03:00Z"
    kept = schedule("kept", "k0000000-1", "a", "5m", generation=2, status={"anchorTime": old, "observedGeneration": 2})
    changed = schedule(
        "changed", "c0000000-1", "c", "5m", generation=3, status={"anchorTime": old, "observedGeneration": 2}
    )
    groups, placements = plan_groups("ns", [kept, changed], MONITORS, NOW)
    assert placements["k0000000-1"].cron == "3-59/5 * * * *"
    assert placements["c0000000-1"].cron == "2-59/5 * * * *"
    assert placements["c0000000-1"].anchor == NOW
    assert len(groups) == 2  # different minutes, different CronJobs


def test_a_schedule_being_deleted_is_no_member():
    gone = schedule("gone", "g0000000-1", "a")
    gone["metadata"]["deletionTimestamp"] = "2026-11-23T10:00:00Z"
    groups, placements = plan_groups("ns", [gone], MONITORS, NOW)
    assert groups == {} and placements == {}


def test_the_cronjob_runs_ceil_members_over_chunk_pods_per_tick_one_at_a_time_with_bounded_history():
    schedules = [schedule(f"s{i}", f"{i}0000000-1", "a") for i in range(5)]
    groups, _ = plan_groups("ns", schedules, MONITORS, NOW)
    (group,) = groups.values()
    settings = OperatorSettings(tick_chunk=CHUNK, gateway_url="http://gw:8000", upload_key="key")
    cronjob = build_tick_cronjob("ns", group, settings)
    spec = cronjob["spec"]
    assert cronjob["metadata"]["name"] == group.name and group.name.startswith("assay-tick-")
    assert spec["schedule"] == "* * * * *" and spec["timeZone"] == "Etc/UTC"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["successfulJobsHistoryLimit"] == spec["failedJobsHistoryLimit"] == settings.tick_history_limit
    assert spec["startingDeadlineSeconds"] == settings.tick_starting_deadline_seconds
    job = spec["jobTemplate"]["spec"]
    assert (job["completionMode"], job["completions"], job["parallelism"], job["backoffLimit"]) == ("Indexed", 3, 3, 0)
    container = job["template"]["spec"]["containers"][0]
    assert container["args"] == ["batch", "--spec", "/etc/assay/tick"]
    env = {e["name"]: e for e in container["env"]}
    assert (
        env["ASSAY_JOB_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['batch.kubernetes.io/job-name']"
    )
    assert env["ASSAY_UPLOAD_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == f"{group.name}-upload"
    # Every member Schedule owns the CronJob: it goes when the last of them goes.
    assert sorted(r["name"] for r in cronjob["metadata"]["ownerReferences"]) == [f"s{i}" for i in range(5)]
    assert not any(r["controller"] for r in cronjob["metadata"]["ownerReferences"])

    configmap = build_members_configmap(
        "ns", group, CHUNK, {**cronjob, "metadata": {**cronjob["metadata"], "uid": "cj-uid"}}
    )
    document = members_of(configmap)
    assert document["chunk"] == CHUNK and len(document["members"]) == 5
    assert configmap["metadata"]["ownerReferences"][0]["uid"] == "cj-uid"


def test_a_region_group_pins_its_pods_to_the_region():
    groups, _ = plan_groups("ns", [schedule("sb", "5b000000-1", "b", environment="world")], MONITORS, NOW)
    group = groups[group_name("* * * * *", "eu1")]
    cronjob = build_tick_cronjob("ns", group, OperatorSettings())
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"topology.kubernetes.io/region": "eu1"}
    assert {"name": "ASSAY_REGION", "value": "eu1"} in pod["containers"][0]["env"]
    assert cronjob["spec"]["jobTemplate"]["metadata"]["labels"]["assay.dev/location"] == "eu1"


def test_tick_pods_carry_cpu_and_memory_limits():
    groups, _ = plan_groups("ns", [schedule("s0", "00000000-1", "a")], MONITORS, NOW)
    (group,) = groups.values()
    settings = OperatorSettings(runner_cpu_limit="750m", runner_memory_limit="768Mi")
    container = build_tick_cronjob("ns", group, settings)["spec"]["jobTemplate"]["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert container["resources"]["limits"] == {"cpu": "750m", "memory": "768Mi"}
    assert container["resources"]["requests"] == {"cpu": "250m", "memory": "256Mi"}
    defaults = build_tick_cronjob("ns", group, OperatorSettings())["spec"]["jobTemplate"]["spec"]["template"]["spec"][
        "containers"
    ][0]["resources"]
    assert defaults["limits"] == {"cpu": "1", "memory": "1Gi"}


def test_the_schedule_status_names_its_cronjob_and_says_why_when_it_cannot_run():
    schedules = [schedule("sa", "5a000000-1", "a", "5m"), schedule("lost", "51000000-1", "nobody")]
    groups, placements = plan_groups("ns", schedules, MONITORS, NOW)
    name = next(iter(groups))
    cronjobs = {name: {"status": {"lastScheduleTime": "2026-11-23T10:02:00Z"}}}
    status = schedule_status(schedules[0], placements["5a000000-1"], cronjobs, NOW)
    assert status["cronJobName"] == name and status["cronSchedule"] == "2-59/5 * * * *"
    assert status["anchorTime"] == "2026-11-23T10:07:30Z" and status["observedGeneration"] == 1
    assert status["lastScheduleTime"] == "2026-11-23T10:02:00Z"
    assert status["nextRunTime"] == "2026-11-23T10:12:00Z"
    (ready,) = status["conditions"]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "True", "Scheduled")

    lost = schedule_status(schedules[1], placements["51000000-1"], cronjobs, NOW)
    (ready,) = lost["conditions"]
    assert (ready["status"], ready["reason"]) == ("False", "TargetNotFound")
    assert "Monitor 'nobody' does not exist" in ready["message"]
    # The same condition again keeps its transition time: the status is stable.
    again = schedule_status(
        {**schedules[1], "status": lost}, placements["51000000-1"], cronjobs, NOW + dt.timedelta(minutes=5)
    )
    assert again["conditions"] == lost["conditions"]


SUITE = {
    "apiVersion": "assay.dev/v1alpha1",
    "kind": "TestSuite",
    "metadata": {"name": "checkout", "namespace": "ns", "uid": "d0000000-1"},
    "spec": {"flows": [{"name": "buy", "requests": [{"url": "http://127.0.0.1:1/"}]}]},
}


def suite_schedule(name: str, uid: str, target: str, **kwargs) -> dict:
    doc = schedule(name, uid, target, **kwargs)
    doc["spec"]["target"]["kind"] = "TestSuite"
    return doc


def test_a_testsuite_schedule_joins_the_any_node_group_of_its_timing_and_waits_for_its_pools():
    schedules = [
        schedule("sa", "5a000000-1", "a"),
        suite_schedule("ss", "55000000-1", "checkout"),
        suite_schedule("pools", "56000000-1", "pooled"),
        suite_schedule("lost", "57000000-1", "gone"),
    ]
    groups, placements = plan_groups(
        "ns",
        schedules,
        MONITORS,
        NOW,
        [SUITE],
        {"pooled": "spec.flows[0].parameterPool: waiting for ConfigMap 'users'"},
    )
    (group,) = groups.values()
    assert [(m["kind"], m.get("testSuite", m.get("monitor"))["metadata"]["name"]) for m in group.members] == [
        ("Monitor", "a"),
        ("TestSuite", "checkout"),
    ]
    assert placements["55000000-1"].cron_jobs == (group.name,)
    assert (placements["56000000-1"].reason, placements["57000000-1"].reason) == ("Pending", "TargetNotFound")


def test_a_group_of_thousands_of_monitors_fits_one_configmap():
    many = [monitor(f"m{i:05d}", f"{i:08x}-aaaa-bbbb-cccc-000011112222") for i in range(4000)]
    schedules = [schedule(f"every-m{i:05d}", f"{i:08x}-5555-bbbb-cccc-000011112222", f"m{i:05d}") for i in range(4000)]
    groups, _ = plan_groups("ns", schedules, many, NOW)
    (group,) = groups.values()
    configmap = build_members_configmap("ns", group, 64, {"metadata": {"name": group.name, "uid": "u"}})
    size = sum(len(v) for v in configmap["binaryData"].values())
    assert size < 1 << 20, size
    assert len(members_of(configmap)["members"]) == 4000
