"""Recording a tick's runs against a real API server: many Monitors' statuses written
concurrently, on the operator's one client, all recorded exactly once, with no more writes
in flight than settings.status_writers, a write that conflicts read again and recorded."""

from __future__ import annotations

import json
import logging
import threading
import time

import kubernetes
import pytest

from assay.operator import kube, ticks

pytestmark = pytest.mark.cluster

MONITORS = 150
BOUND = 6


def monitor(name: str) -> dict:
    return {
        "apiVersion": "assay.dev/v1alpha1",
        "kind": "Monitor",
        "metadata": {"name": name},
        "spec": {"steps": [{"stepType": "request", "url": f"http://127.0.0.1:9/{name}"}]},
    }


def entry(name: str) -> dict:
    return {
        "runId": f"{name}-tick-1",
        "phase": "Succeeded",
        "result": "Passed",
        "startTime": "2026-01-01T00:01:00Z",
        "completionTime": "2026-01-01T00:01:02Z",
        "responseTimeMs": 12,
        "schedule": f"every-{name}",
        "message": f"run {name}-tick-1 scheduled by every-{name}: passed",
    }


@pytest.fixture
def operator_client(cluster, monkeypatch):
    monkeypatch.setattr(
        kube, "load_cluster_config", lambda: kubernetes.config.load_kube_config(config_file=str(cluster.kubeconfig))
    )
    monkeypatch.setenv("ASSAY_STATUS_WRITERS", str(BOUND))
    monkeypatch.setattr(ticks, "_writers", None)
    kube.configure()
    yield
    ticks.writers().shutdown(wait=True)


def test_a_ticks_statuses_are_written_concurrently_within_the_bound_and_all_recorded(
    cluster, namespace, operator_client, monkeypatch
):
    names = [f"m{i:03d}" for i in range(MONITORS)]
    body = {"apiVersion": "v1", "kind": "List", "items": [monitor(n) for n in names]}
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))
    listed = {("Monitor", m["metadata"]["name"]): m for m in kube.list_custom("monitors", namespace)}
    # Others change ten of them after the list: their writes conflict and are computed again.
    for name in names[:10]:
        cluster.kubectl("annotate", "monitor", name, "-n", namespace, "changed=yes")

    in_flight, most, lock = 0, 0, threading.Lock()
    patch_status = kube.patch_status

    def counting(*args, **kwargs):
        nonlocal in_flight, most
        with lock:
            in_flight += 1
            most = max(most, in_flight)
        try:
            time.sleep(0.01)  # long enough for the writers to overlap on any machine
            return patch_status(*args, **kwargs)
        finally:
            with lock:
                in_flight -= 1

    monkeypatch.setattr(kube, "patch_status", counting)
    entries = [("Monitor", name, entry(name)) for name in names]
    logger = logging.getLogger("test")

    assert ticks.write_runs(namespace, entries, listed, logger) == MONITORS
    assert 1 < most <= BOUND

    recorded = {m["metadata"]["name"]: m.get("status") or {} for m in kube.list_custom("monitors", namespace)}
    assert set(recorded) == set(names)
    for name, status in recorded.items():
        assert status["lastRun"]["runId"] == f"{name}-tick-1", name
        assert [e["runId"] for e in status["history"]] == [f"{name}-tick-1"], name

    # The same tick read again (a replayed event, a restarted operator) writes nothing.
    assert ticks.write_runs(namespace, entries, {}, logger) == 0
