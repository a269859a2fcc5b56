"""The operator's one way to write status and set conditions, with the Kubernetes reads and
writes replaced: a conflict recomputes on a fresh read, nothing to write writes nothing,
conditions follow metav1 rules, a bad spec is a condition and a permanent error; and every
typed API shares one ApiClient."""

from __future__ import annotations

import kopf
import pytest

from assay.operator import kube, monitorruns, status, suiteruns
from assay.operator.names import RUN_REQUEST_ANNOTATION
from assay.operator.runhistory import history_status
from assay.operator.runjob import build_runner_job
from assay.operator.settings import OperatorSettings
from assay.operator.tickobjects import build_tick_cronjob
from assay.operator.tickplan import Group


class Cluster:
    """One custom object whose resourceVersion moves on every write, and the writes."""

    def __init__(self, obj: dict | None):
        self.obj, self.writes, self.reads, self.conflicts = obj, [], 0, 0

    def read_custom(self, plural, namespace, name):
        self.reads += 1
        return None if self.obj is None else {**self.obj, "metadata": dict(self.obj["metadata"])}

    def patch_status(self, plural, namespace, name, new, resource_version=None):
        if self.conflicts:
            self.conflicts -= 1
            self.obj["metadata"]["resourceVersion"] = str(int(self.obj["metadata"]["resourceVersion"]) + 1)
            self.obj["status"] = {**(self.obj.get("status") or {}), "other": "writer"}
            raise kube.Conflict("changed")
        assert resource_version == self.obj["metadata"]["resourceVersion"]
        self.writes.append((plural, name, new))
        self.obj["status"] = {**(self.obj.get("status") or {}), **new}


@pytest.fixture
def cluster(monkeypatch):
    world = Cluster({"metadata": {"name": "m", "resourceVersion": "1", "generation": 3}, "status": {"n": 1}})
    monkeypatch.setattr(kube, "read_custom", world.read_custom)
    monkeypatch.setattr(kube, "patch_status", world.patch_status)
    return world


def test_a_conflict_recomputes_from_a_fresh_read(cluster):
    cluster.conflicts = 2
    seen = []

    def compute(obj):
        seen.append(dict(obj["status"]))
        return {"n": obj["status"]["n"] + 1}

    written = status.update_status("Monitor", "ns", "m", compute)
    assert seen == [{"n": 1}, {"n": 1, "other": "writer"}, {"n": 1, "other": "writer"}]
    assert cluster.writes == [("monitors", "m", {"n": 2})]
    assert (written.before, written.after) == ({"n": 1, "other": "writer"}, {"n": 2})


def test_nothing_to_write_and_a_missing_object_write_nothing(cluster):
    assert status.update_status("Schedule", "ns", "m", lambda obj: None) is None
    cluster.obj = None
    assert status.update_status("Schedule", "ns", "m", lambda obj: {"x": 1}) is None
    assert cluster.writes == []


def test_the_object_a_caller_has_saves_the_first_read_and_too_many_conflicts_raise(cluster):
    first = {"metadata": {"name": "m", "resourceVersion": "1"}, "status": {"n": 1}}
    status.update_status("LoadTest", "ns", "m", lambda obj: {"n": 5}, first=first)
    assert cluster.reads == 0 and cluster.writes == [("loadtests", "m", {"n": 5})]
    cluster.conflicts = 1
    with pytest.raises(kube.Conflict):
        status.update_status("LoadTest", "ns", "m", lambda obj: {"n": 6}, attempts=1)


def test_a_condition_keeps_its_transition_time_until_its_status_changes():
    first = status.set_condition(
        [{"type": "Other", "status": "True"}],
        "Ready",
        "False",
        "Pending",
        "wait",
        now="2026-01-01T00:00:00Z",
        generation=1,
    )
    assert first == [
        {"type": "Other", "status": "True"},
        {
            "type": "Ready",
            "status": "False",
            "reason": "Pending",
            "message": "wait",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
            "observedGeneration": 1,
        },
    ]
    reworded = status.set_condition(
        first, "Ready", "False", "Suspended", "other words", now="2026-01-02T00:00:00Z", generation=2
    )
    assert reworded[-1]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert (reworded[-1]["reason"], reworded[-1]["observedGeneration"]) == ("Suspended", 2)
    flipped = status.set_condition(reworded, "Ready", "True", "Scheduled", "ok", now="2026-01-03T00:00:00Z")
    assert flipped[-1]["lastTransitionTime"] == "2026-01-03T00:00:00Z" and "observedGeneration" not in flipped[-1]
    derived = status.set_condition(flipped, "Ready", "True", "Scheduled", "ok", now=None, since="2025-12-31T00:00:00Z")
    assert derived[-1]["lastTransitionTime"] == "2025-12-31T00:00:00Z"
    assert len(status.set_condition(None, "Ready", "True", "Scheduled", "x" * 5000, now=None)[0]["message"]) == 1000


def test_a_bad_spec_is_a_false_condition_then_a_permanent_error(cluster):
    error = status.reject_spec("LoadTest", "ns", "m", "Complete", "invalid spec: shards", "2026-01-01T00:00:00Z")
    assert isinstance(error, kopf.PermanentError) and str(error) == "invalid spec: shards"
    [(_, _, written)] = cluster.writes
    assert written["conditions"] == [
        {
            "type": "Complete",
            "status": "False",
            "reason": "InvalidSpec",
            "message": "invalid spec: shards",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
            "observedGeneration": 3,
        }
    ]
    status.reject_spec("LoadTest", "ns", "m", "Complete", "invalid spec: shards", "2026-01-02T00:00:00Z")
    assert len(cluster.writes) == 1  # said already: no second write


@pytest.mark.parametrize("plans, spec", [(monitorruns, {"environments": "none"}), (suiteruns, {"flows": "none"})])
def test_a_requested_run_of_a_bad_spec_says_so_in_its_run_request_condition(plans, spec):
    owner = {"metadata": {"name": "x", "uid": "u", "annotations": {RUN_REQUEST_ANNOTATION: "r-1"}}, "spec": spec}
    rebuilt = history_status(
        "Monitor", [], lambda job: [], {}, plans.request_state(owner), limit=10, now="2026-01-01T00:00:00Z"
    )
    [condition] = rebuilt["conditions"]
    assert (condition["type"], condition["status"], condition["reason"]) == ("RunRequest", "False", "InvalidSpec")
    assert condition["message"].startswith("invalid spec: ")


def test_every_typed_api_shares_one_client():
    assert kube.batch().api_client is kube.core().api_client is kube.custom().api_client is kube.api_client()
    assert kube.batch() is kube.batch()


def test_run_jobs_and_tick_cronjobs_have_the_same_pod_template_apart_from_what_they_run():
    settings = OperatorSettings(runner_service_account="runner")
    owner = {
        "apiVersion": "assay.dev/v1alpha1",
        "kind": "Monitor",
        "metadata": {"name": "m", "namespace": "ns", "uid": "u"},
        "spec": {},
    }
    job = build_runner_job(owner, "m-1", 1, settings, ["monitor"], node_selector={"r": "eu"})
    group = Group(name="assay-tick-0123abcd", cron="* * * * *", location=None, members=[{}])
    cronjob = build_tick_cronjob("ns", group, settings)
    run_pod = job["spec"]["template"]["spec"]
    tick_pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    differ = {"volumes", "nodeSelector"}
    assert {k: v for k, v in run_pod.items() if k not in differ | {"containers"}} == {
        k: v for k, v in tick_pod.items() if k not in differ | {"containers"}
    }
    [run_container], [tick_container] = run_pod["containers"], tick_pod["containers"]
    own = {"args", "env", "volumeMounts", "terminationMessagePolicy"}
    assert {k: v for k, v in run_container.items() if k not in own} == {
        k: v for k, v in tick_container.items() if k not in own
    }
    assert run_pod["serviceAccountName"] == "runner" and run_pod["nodeSelector"] == {"r": "eu"}
