"""A running LoadTest's live figures end to end: shard pods push progress to the real gateway,
the real operator copies the merged view into status.progress while the run is Running, and
the final summary replaces it once the run has finished."""

from __future__ import annotations

import time

import httpx
import pytest

from assay.crds.contracts.upload import RunGrant, upload_token
from tests.cluster.test_loadtest_run import get, loadtest_manifest
from tests.conftest import GatewayProcess
from tests.support.targets import CountingTarget

pytestmark = pytest.mark.cluster


def test_a_running_loadtest_shows_growing_progress_and_finishes_with_the_targets_count(
    cluster, namespace, gateway, operator_with_gateway
):
    with CountingTarget(delay=0.01) as target:
        cluster.kubectl(
            "apply",
            "-n",
            namespace,
            "-f",
            "-",
            input=loadtest_manifest("live", target.url, shards=2, users=2, duration="12s"),
        )
        samples = []  # status.progress seen while the phase was Running
        deadline = time.monotonic() + 120
        while True:
            status = (get(cluster, "loadtest", "live", namespace) or {}).get("status") or {}
            if status.get("phase") == "Running" and status.get("progress"):
                samples.append(status["progress"])
            if status.get("phase") in ("Succeeded", "Failed"):
                break
            assert time.monotonic() < deadline, f"the LoadTest did not finish: {status}"
            time.sleep(0.5)

        requests = [p["requests"] for p in samples]
        assert len(set(requests)) >= 2 and requests[0] > 0, samples  # it showed up, and grew
        assert requests == sorted(requests), requests
        assert max(requests) <= target.total
        assert any(p["shardsReporting"] == 2 for p in samples), samples  # both shards, merged
        assert all(p["rps"] > 0 and p["updatedAt"] for p in samples if p["activeUsers"]), samples
        assert any(p.get("p95Ms", 0) >= 10 for p in samples), samples  # the target's 10 ms delay

        assert status["phase"] == "Succeeded" and status["result"] == "Passed", status
        assert status["summary"]["requests"] == target.total
        assert status["summary"]["requests"] >= max(requests)
        assert "progress" not in status  # the live figures end with the run
        # The timer's finalizer (Kopf stops a timer before deletion) goes with the Running phase.
        cluster.wait_for(
            "the LoadTest to lose its finalizer",
            lambda: not get(cluster, "loadtest", "live", namespace)["metadata"].get("finalizers"),
            timeout=30,
        )

        run_id = status["runId"]
        uid = get(cluster, "loadtest", "live", namespace)["metadata"]["uid"]
        token = upload_token(GatewayProcess.UPLOAD_KEY, RunGrant(namespace, "LoadTest", "live", uid, run_id))
        answer = httpx.get(f"{gateway.url}/internal/v1/runs/{run_id}", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200, answer.text
        stored = answer.json()
        assert stored["progress"] is None  # dropped when the run finished
        assert stored["run"]["summary"]["requests"] == target.total


def test_a_loadtest_whose_spec_abort_is_set_stops_early_and_ends_aborted_with_what_it_measured(
    cluster, namespace, gateway, operator_with_gateway
):
    with CountingTarget(delay=0.01) as target:
        cluster.kubectl(
            "apply",
            "-n",
            namespace,
            "-f",
            "-",
            input=loadtest_manifest("stopped", target.url, shards=2, users=2, duration="300s"),
        )
        cluster.wait_for(
            "the LoadTest to show live progress",
            lambda: ((get(cluster, "loadtest", "stopped", namespace) or {}).get("status") or {}).get("progress"),
            timeout=120,
        )
        asked = time.monotonic()
        cluster.kubectl(
            "patch", "loadtest", "stopped", "-n", namespace, "--type", "merge", "-p", '{"spec":{"abort":true}}'
        )
        cluster.wait_for(
            "the aborted LoadTest to finish",
            lambda: (
                ((get(cluster, "loadtest", "stopped", namespace) or {}).get("status") or {}).get("phase")
                in ("Succeeded", "Failed")
            ),
            timeout=90,
        )
        took = time.monotonic() - asked
        status = get(cluster, "loadtest", "stopped", namespace)["status"]
    assert took < 60, took  # not the 300 s the spec asked for
    assert status["result"] == "Aborted", status
    assert "aborted on request" in status.get("message", ""), status
    assert 0 < status["summary"]["requests"] == target.total  # every shard reported what it sent
