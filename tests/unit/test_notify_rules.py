"""Which Monitor runs notify, and whom: Runscope's notifyOn rules over the status history."""

from __future__ import annotations

import pytest

from assay.crds.monitor import Emails
from assay.operator.notify import (
    failure_streaks,
    has_notifications,
    has_something_to_send,
    recipients,
    runs_to_notify,
    team_addresses,
    wants_mail,
)
from assay.operator.runevents import finished_runs


def history(*results: str) -> list[dict]:
    """Newest first, as the status keeps it: history("Failed", "Passed") is r2 failed after r1 passed."""
    count = len(results)
    return [
        {"runId": f"r{count - i}", "result": r, "completionTime": f"2026-11-23T10:00:{count - i:02d}Z"}
        for i, r in enumerate(results)
    ]


def emails(notify_on: str, threshold: int | None = None, **more) -> Emails:
    return Emails(notify_on=notify_on, notify_threshold=threshold, recipients=[{"email": "ops@example.com"}], **more)


def test_failure_streaks_count_the_failures_ending_at_the_run_and_just_before_it():
    runs = history("Passed", "Failed", "Failed", "Passed", "Failed")  # r5 .. r1
    assert failure_streaks(runs, "r5") == (0, 2)
    assert failure_streaks(runs, "r4") == (2, 1)
    assert failure_streaks(runs, "r3") == (1, 0)
    assert failure_streaks(runs, "r1") == (1, 0)
    assert failure_streaks(runs, "r9") == (0, 0)


def test_a_running_entry_neither_breaks_nor_counts_in_a_streak():
    runs = [{"runId": "r4", "phase": "Running"}, *history("Failed", "Failed", "Passed")]
    assert failure_streaks(runs, "r3") == (2, 1)


@pytest.mark.parametrize(
    "rule, threshold, mailed",
    [
        ("all", None, ["r1", "r2", "r3", "r4", "r5", "r6"]),
        ("failures", None, ["r2", "r3", "r4", "r6"]),
        ("threshold", 2, ["r3", "r4"]),
        ("threshold", 1, ["r2", "r3", "r4", "r6"]),
        ("switch", 2, ["r3", "r5"]),
        ("switch", 1, ["r2", "r5", "r6"]),
    ],
)
def test_notify_on_rules_over_a_pass_fail_fail_fail_pass_fail_sequence(rule, threshold, mailed):
    results = ["Passed", "Failed", "Failed", "Failed", "Passed", "Failed"]  # r1 .. r6
    got = []
    for n in range(1, len(results) + 1):
        runs = history(*reversed(results[:n]))
        if wants_mail(emails(rule, threshold), runs, f"r{n}"):
            got.append(f"r{n}")
    assert got == mailed


def test_no_emails_settings_send_no_mail():
    assert not wants_mail(None, history("Failed"), "r1")


def test_runs_to_notify_are_finished_unnotified_and_recent_oldest_first():
    status = {
        "history": [{"runId": "r4", "phase": "Running"}, *history("Failed", "Passed", "Passed")],
        "notifiedRuns": ["r2"],
    }
    assert runs_to_notify(status) == ["r1", "r3"]
    assert runs_to_notify(status, not_before="2026-11-23T10:00:02Z") == ["r3"]
    assert runs_to_notify({}) == []


def test_recipients_add_the_team_only_with_notify_all_and_once_each():
    team = team_addresses(
        {"metadata": {"annotations": {"assay.dev/team-emails": "lead@example.com, ops@example.com,not-an-address"}}}
    )
    assert team == ["lead@example.com", "ops@example.com"]
    assert recipients(emails("all"), team) == ["ops@example.com"]
    assert recipients(emails("all", notify_all=True), team) == ["ops@example.com", "lead@example.com"]
    assert team_addresses({"metadata": {}}) == []


def test_has_notifications_looks_at_every_environment():
    assert not has_notifications({"environments": [{"name": "a"}]})
    assert has_notifications({"environments": [{"name": "a"}, {"name": "b", "webhooks": ["http://x/"]}]})
    assert has_notifications({"environments": [{"name": "a", "emails": {"notifyOn": "all"}}]})
    assert not has_notifications({})


def test_finished_runs_are_those_that_finished_in_this_write():
    before = {
        "lastRun": {"runId": "r2", "phase": "Running", "startTime": "2026-11-23T10:00:00Z"},
        "history": [{"runId": "r2", "phase": "Running"}, {"runId": "r1", "result": "Passed"}],
    }
    after = {
        "lastRun": {
            "runId": "r2",
            "result": "Failed",
            "startTime": "2026-11-23T10:00:00Z",
            "completionTime": "2026-11-23T10:00:07Z",
        },
        "history": [
            {
                "runId": "r2",
                "result": "Failed",
                "startTime": "2026-11-23T10:00:00Z",
                "completionTime": "2026-11-23T10:00:07Z",
            },
            {"runId": "r1", "result": "Passed"},
        ],
    }
    assert finished_runs("Monitor", before, after) == [("r2", "Failed", 7.0)]
    assert finished_runs("Monitor", after, after) == []
    suite_after = {
        "history": [
            {
                "runId": "s1",
                "result": "Passed",
                "startTime": "2026-11-23T10:00:00Z",
                "completionTime": "2026-11-23T10:01:00Z",
            }
        ]
    }
    assert finished_runs("TestSuite", {}, suite_after) == [("s1", "Passed", 60.0)]
    load_after = {
        "runId": "l1",
        "phase": "Failed",
        "result": "Aborted",
        "startTime": "2026-11-23T10:00:00Z",
        "completionTime": "2026-11-23T10:00:30Z",
    }
    assert finished_runs("LoadTest", {"phase": "Running"}, load_after) == [("l1", "Aborted", 30.0)]
    assert finished_runs("LoadTest", load_after, load_after) == []


def test_something_to_send_depends_on_the_runs_environment_and_rule():
    owner = {
        "spec": {
            "environments": [
                {"name": "quiet"},
                {"name": "hooked", "webhooks": ["http://127.0.0.1:1/h"]},
                {"name": "mailed", "emails": {"notifyOn": "failures", "recipients": [{"email": "a@example.com"}]}},
            ]
        },
        "status": {
            "history": [
                {"runId": "r3", "result": "Failed", "environment": "mailed"},
                {"runId": "r2", "result": "Passed", "environment": "mailed"},
                {"runId": "r1", "result": "Passed", "environment": "hooked"},
                {"runId": "r0", "result": "Failed", "environment": "quiet"},
                {"runId": "r4", "phase": "Running", "environment": "hooked"},
            ]
        },
    }
    assert has_something_to_send(owner, "r1", mail_enabled=False)
    assert has_something_to_send(owner, "r3", mail_enabled=True)
    assert not has_something_to_send(owner, "r3", mail_enabled=False)
    assert not has_something_to_send(owner, "r2", mail_enabled=True)
    assert not has_something_to_send(owner, "r0", mail_enabled=True)
    assert not has_something_to_send(owner, "r4", mail_enabled=True)
    assert not has_something_to_send(owner, "r9", mail_enabled=True)


def test_peering_objects_one_cluster_object_or_one_per_named_namespace():
    from assay.operator.peering import peering_objects

    [cluster_wide] = peering_objects("assay", None)
    assert (cluster_wide["apiVersion"], cluster_wide["kind"], cluster_wide["metadata"]) == (
        "kopf.dev/v1",
        "ClusterKopfPeering",
        {"name": "assay"},
    )
    namespaced = peering_objects("assay", ["team-a", "team-b", "team-a", "team-*"])
    assert [(o["kind"], o["metadata"]["namespace"]) for o in namespaced] == [
        ("KopfPeering", "team-a"),
        ("KopfPeering", "team-b"),
    ]


def test_only_a_run_with_something_to_send_reaches_the_notifier(monkeypatch):
    import logging

    from assay.operator import notify, runevents

    submitted = []

    class Recording:
        def submit(self, namespace, name, run_ids):
            submitted.append((name, run_ids))

    monkeypatch.setattr(notify, "notifier", lambda: Recording())
    run = {"runId": "r1", "phase": "Succeeded", "result": "Failed", "completionTime": "2026-11-23T10:00:01Z"}
    after = {"lastRun": run, "history": [run]}

    def owner(name: str, environment: dict) -> dict:
        steps = [{"stepType": "request", "url": "http://127.0.0.1:9/"}]
        spec = {"steps": steps, "environments": [{"name": "local", **environment}]}
        return {"metadata": {"name": name, "namespace": "ns"}, "spec": spec}

    logger = logging.getLogger("test")
    runevents.status_written("Monitor", owner("quiet", {}), {}, after, logger)
    runevents.status_written("Monitor", owner("hooked", {"webhooks": ["http://127.0.0.1:9/hook"]}), {}, after, logger)
    assert submitted == [("hooked", ["r1"])]
