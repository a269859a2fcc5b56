"""Two operator replicas with Kopf peering on the real control plane: the one with the higher
priority works, the other waits; SIGKILL the worker while Monitor, TestSuite and LoadTest
runs are in flight and the other takes over: every run completes exactly once (one Job per
run, the targets hit once per planned request, one webhook post per Monitor run), and the
new leader's /metrics count every run it finished."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from assay.operator.names import run_id_for_request
from tests.conftest import OperatorProcess, localkube
from tests.support.receivers import WebhookReceiver
from tests.support.targets import CountingTarget

pytestmark = pytest.mark.cluster

ANNOTATION = "assay.dev/run-request"
PEERING = "assay-ha"
LOAD_USERS, LOAD_ITERATIONS = 2, 8


def monitor_manifest(name: str, base: str, hook: str) -> dict:
    return {
        "apiVersion": "assay.dev/v1alpha1",
        "kind": "Monitor",
        "metadata": {"name": name},
        "spec": {
            "steps": [
                {"stepType": "pause", "duration": 10},
                {
                    "stepType": "request",
                    "url": "{{base}}/ping",
                    "assertions": [{"source": "response_status", "comparison": "equal", "value": 200}],
                },
            ],
            "environments": [{"name": "local", "initialVariables": {"base": base}, "webhooks": [hook]}],
        },
    }


def suite_manifest(name: str, base: str) -> dict:
    return {
        "apiVersion": "assay.dev/v1alpha1",
        "kind": "TestSuite",
        "metadata": {"name": name},
        "spec": {
            "parameters": {"base": base},
            "flows": [
                {
                    "name": "browse",
                    "requests": [
                        {
                            "url": "{{base}}/",
                            "assertions": [{"source": "response_status", "comparison": "equal", "value": 200}],
                        }
                    ],
                },
                {"name": "buy", "requests": [{"method": "POST", "url": "{{base}}/orders", "body": "{}"}]},
            ],
        },
    }


def loadtest_manifest(name: str, base: str) -> dict:
    return {
        "apiVersion": "assay.dev/v1alpha1",
        "kind": "LoadTest",
        "metadata": {"name": name},
        "spec": {
            "shards": 1,
            "baseUrl": base,
            "load": {"users": LOAD_USERS, "iterations": LOAD_ITERATIONS},
            "flows": [
                {
                    "name": "browse",
                    "requests": [{"name": "home", "url": "/"}, {"name": "item", "method": "POST", "url": "/items"}],
                }
            ],
        },
    }


def get(cluster, kind: str, name: str, namespace: str) -> dict:
    return json.loads(cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout)


def keepalives(cluster, namespace: str) -> dict:
    out = cluster.kubectl("get", "kopfpeering", PEERING, "-n", namespace, "-o", "json", check=False)
    return (json.loads(out.stdout).get("status") or {}) if out.returncode == 0 else {}


def request_run(cluster, kind: str, namespace: str, name: str, request_id: str) -> str:
    cluster.kubectl("annotate", kind, name, "-n", namespace, f"{ANNOTATION}={request_id}", "--overwrite")
    return run_id_for_request(name, get(cluster, kind, name, namespace)["metadata"]["uid"], request_id)


def jobs(cluster, namespace: str, kind: str) -> list[dict]:
    out = cluster.kubectl("get", "jobs", "-n", namespace, "-l", f"assay.dev/kind={kind}", "-o", "json")
    return json.loads(out.stdout)["items"]


def running_pods(cluster, namespace: str) -> int:
    pods = json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-o", "json").stdout)["items"]
    return sum(p["status"].get("phase") == "Running" for p in pods)


def finished_history(cluster, kind: str, namespace: str, name: str, count: int):
    def check():
        history = (get(cluster, kind, name, namespace).get("status") or {}).get("history") or []
        return history if len(history) == count and all(e.get("result") for e in history) else None

    return check


def metric(port: int, name: str, **labels) -> float | None:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for family in text_string_to_metric_families(text):
        for series in family.samples:
            if series.name == name and series.labels == labels:
                return series.value
    return None


def test_killing_the_working_replica_mid_run_completes_every_run_exactly_once(cluster, namespace, tmp_path):
    leader = OperatorProcess(
        cluster, tmp_path / "leader.log", namespace, peering=PEERING, priority=100, metrics_port=localkube.free_port()
    )
    standby = OperatorProcess(
        cluster, tmp_path / "standby.log", namespace, peering=PEERING, priority=50, metrics_port=localkube.free_port()
    )
    with (
        CountingTarget() as monitor_target,
        CountingTarget(delay=4) as suite_target,
        CountingTarget(delay=0.5) as load_target,
        WebhookReceiver() as hooks,
    ):
        try:
            leader.start()
            # Kopf starts paused and resumes once the peering shows no peer above it.
            cluster.wait_for("the leader to work", lambda: "Resuming operations" in leader.log(), timeout=60)
            standby.start()
            cluster.wait_for("both keep-alives", lambda: len(keepalives(cluster, namespace)) == 2, timeout=60)
            time.sleep(2)
            assert "Resuming operations" not in standby.log(), "the standby works beside the leader"

            for manifest in (
                monitor_manifest("alpha", monitor_target.url, f"{hooks.url}/hook"),
                monitor_manifest("beta", monitor_target.url, f"{hooks.url}/hook"),
                suite_manifest("shop", suite_target.url),
                loadtest_manifest("load", load_target.url),
            ):
                cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))
            alpha_1 = request_run(cluster, "monitor", namespace, "alpha", "r-1")
            beta_1 = request_run(cluster, "monitor", namespace, "beta", "r-1")
            suite_1 = request_run(cluster, "testsuite", namespace, "shop", "r-1")
            cluster.wait_for(
                "four runner pods running", lambda: running_pods(cluster, namespace) == 4, timeout=90, interval=0.3
            )
            job_uids = sorted(
                j["metadata"]["uid"]
                for kind in ("Monitor", "TestSuite", "LoadTest")
                for j in jobs(cluster, namespace, kind)
            )
            assert len(job_uids) == 4
            assert "Resuming operations" not in standby.log()

            leader.kill()
            killed = time.monotonic()
            assert monitor_target.total == 0, "the Monitor runs finished before the kill; pause longer"
            cluster.wait_for(
                "the standby to take over", lambda: "Resuming operations" in standby.log(), timeout=90, interval=0.2
            )
            handover = time.monotonic() - killed
            print(f"handover: {handover:.1f}s after SIGKILL")
            assert handover < 45

            for kind, name, count in (("monitor", "alpha", 1), ("monitor", "beta", 1), ("testsuite", "shop", 1)):
                history = cluster.wait_for(
                    f"{kind} {name}", finished_history(cluster, kind, namespace, name, count), timeout=120
                )
                assert history[0]["runId"] == {"alpha": alpha_1, "beta": beta_1, "shop": suite_1}[name]
                assert history[0]["result"] == "Passed", history
            load = cluster.wait_for(
                "the LoadTest",
                lambda: (
                    s if (s := get(cluster, "loadtest", "load", namespace).get("status") or {}).get("result") else None
                ),
                timeout=120,
            )
            assert load["result"] == "Passed", load

            # Exactly once: the same four Jobs, each planned request made once.
            assert (
                sorted(
                    j["metadata"]["uid"]
                    for kind in ("Monitor", "TestSuite", "LoadTest")
                    for j in jobs(cluster, namespace, kind)
                )
                == job_uids
            )
            assert monitor_target.counts[("GET", "/ping")] == 2
            assert suite_target.counts == {("GET", "/"): 1, ("POST", "/orders"): 1}
            assert load_target.total == LOAD_USERS * LOAD_ITERATIONS * 2 == load["summary"]["requests"]
            cluster.wait_for("one webhook post per Monitor run", lambda: len(hooks.bodies("/hook")) == 2, timeout=60)

            # The new leader works on its own: a second run of alpha.
            alpha_2 = request_run(cluster, "monitor", namespace, "alpha", "r-2")
            history = cluster.wait_for(
                "alpha's second run", finished_history(cluster, "monitor", namespace, "alpha", 2), timeout=120
            )
            assert [e["runId"] for e in history] == [alpha_2, alpha_1]
            assert len(jobs(cluster, namespace, "Monitor")) == 3
            assert monitor_target.counts[("GET", "/ping")] == 3
            cluster.wait_for("the second run's webhook post", lambda: len(hooks.bodies("/hook")) == 3, timeout=60)
            time.sleep(2)  # a doubled post would have arrived by now
            assert sorted(b["test_run_id"] for b in hooks.bodies("/hook")) == sorted([alpha_1, alpha_2, beta_1])

            port = standby.metrics_port
            assert metric(port, "assay_operator_runs_total", kind="Monitor", outcome="passed") == 3
            assert metric(port, "assay_operator_runs_total", kind="TestSuite", outcome="passed") == 1
            assert metric(port, "assay_operator_runs_total", kind="LoadTest", outcome="passed") == 1
            assert metric(port, "assay_operator_run_duration_seconds_count", kind="LoadTest") == 1
            assert metric(port, "assay_monitor_success_ratio", namespace=namespace, monitor="alpha") == 1.0
        finally:
            standby.stop()
            leader.kill()
            print("--- leader\n" + leader.log()[-3000:] + "\n--- standby\n" + standby.log()[-5000:])
