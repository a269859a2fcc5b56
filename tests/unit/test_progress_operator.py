"""The operator's progress timer and the mirror's end of it, with the gateway and the
Kubernetes calls replaced: what is patched, when nothing is, and that an unreachable gateway
costs one quiet tick."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from assay.crds.contracts.upload import RunGrant, upload_token
from assay.operator import kube
from assay.operator import loadtest as handlers
from assay.operator.settings import OperatorSettings
from tests.unit.test_runstatus import job, pod, summary

RUN = "live-1a2b3c4d"
MERGED = {
    "requests": 85,
    "errors": 0,
    "rps": 17.5,
    "p95Ms": 12.3,
    "activeUsers": 4,
    "shardsReporting": 2,
    "shardsDone": 0,
    "updatedAt": 1_700_000_000.0,
}
PROGRESS = {
    "requests": 85,
    "errors": 0,
    "rps": 17.5,
    "p95Ms": 12.3,
    "activeUsers": 4,
    "shardsReporting": 2,
    "updatedAt": "2023-11-14T22:13:20Z",
}


@pytest.fixture
def world(monkeypatch):
    """Settings with a gateway, the gateway's answers (`world.answer`), and the status patches."""
    world = type("World", (), {})()
    world.patches, world.requests = [], []
    world.answer = lambda request: httpx.Response(
        200, json={"runId": RUN, "progress": {"shards": [], "merged": MERGED}}
    )

    def transport(request):
        world.requests.append(request)
        return world.answer(request)

    settings = OperatorSettings(gateway_url="http://gateway:8000", upload_key="key")
    monkeypatch.setattr(handlers, "get_settings", lambda: settings)
    monkeypatch.setattr(
        handlers,
        "_gateway",
        lambda: httpx.AsyncClient(base_url=settings.gateway_url, transport=httpx.MockTransport(transport)),
    )

    def patch_status(plural, namespace, name, status, resource_version=None):
        world.patches.append((name, status, resource_version))

    monkeypatch.setattr(kube, "patch_status", patch_status)
    return world


def tick(status, resource_version="41"):
    asyncio.run(
        handlers.refresh_progress(
            name="live",
            namespace="shop",
            uid="0f0e0d0c-aaaa",
            status=status,
            meta={"resourceVersion": resource_version},
            logger=logging.getLogger("test"),
        )
    )


def test_a_tick_copies_the_merged_progress_onto_the_status_as_seen(world):
    tick({"phase": "Running", "runId": RUN})
    request = world.requests[0]
    assert request.url.path == f"/internal/v1/runs/{RUN}"
    assert (
        request.headers["authorization"]
        == f"Bearer {upload_token('key', RunGrant('shop', 'LoadTest', 'live', '0f0e0d0c-aaaa', RUN))}"
    )
    assert world.patches == [("live", {"progress": PROGRESS}, "41")]


def test_nothing_new_patches_nothing(world):
    tick({"phase": "Running", "runId": RUN, "progress": PROGRESS})
    assert world.patches == []


@pytest.mark.parametrize(
    "answer",
    [
        lambda request: (_ for _ in ()).throw(httpx.ConnectError("refused", request=request)),
        lambda request: (_ for _ in ()).throw(httpx.ReadTimeout("slow", request=request)),
        lambda request: httpx.Response(404, json={"error": "not_found"}),  # no shard reported yet
        lambda request: httpx.Response(503, text="starting"),
        lambda request: httpx.Response(200, text="<html>"),
        lambda request: httpx.Response(200, json={"runId": RUN, "progress": None}),  # finished
    ],
)
def test_a_gateway_without_progress_costs_one_quiet_tick(world, answer, caplog):
    world.answer = answer
    with caplog.at_level(logging.DEBUG, logger="test"):
        tick({"phase": "Running", "runId": RUN})
    assert world.patches == []
    assert all(r.levelno <= logging.DEBUG for r in caplog.records)


def test_a_loadtest_that_changed_meanwhile_is_left_to_the_next_tick(world, monkeypatch):
    def conflict(*args, **kwargs):
        raise kube.Conflict("changed")

    monkeypatch.setattr(kube, "patch_status", conflict)
    tick({"phase": "Running", "runId": RUN})  # no exception: Kopf would retry with a backoff


def test_only_a_running_loadtest_with_a_gateway_is_ticked(world, monkeypatch):
    assert handlers._running_with_gateway(status={"phase": "Running"})
    assert not handlers._running_with_gateway(status={"phase": "Pending"})
    assert not handlers._running_with_gateway(status={})
    tick({"phase": "Succeeded", "runId": RUN})  # a stale match of the filter
    assert world.requests == [] and world.patches == []
    monkeypatch.setattr(handlers, "get_settings", lambda: OperatorSettings())
    assert not handlers._running_with_gateway(status={"phase": "Running"})


def test_the_mirror_removes_progress_with_the_final_status(world, monkeypatch):
    loadtest = {
        "metadata": {"name": "live", "uid": "uid-1", "generation": 1},
        "spec": {"shards": 1},
        "status": {"phase": "Running", "runId": RUN, "progress": PROGRESS},
    }
    finished = job([("Complete", {})], succeeded=1, completionTime="2026-01-01T00:01:00Z")
    finished["metadata"] = {
        "name": f"{RUN}-job",
        "labels": {"assay.dev/run-id": RUN},
        "ownerReferences": [{"kind": "LoadTest", "name": "live", "uid": "uid-1", "controller": True}],
    }
    monkeypatch.setattr(kube, "read_custom", lambda plural, namespace, name: loadtest)
    monkeypatch.setattr(kube, "list_job_pods", lambda namespace, name: [pod(0, "Succeeded", summary(0, 90))])
    handlers.mirror_job(body=finished, namespace="shop", type="MODIFIED", logger=logging.getLogger("test"))
    ((name, status, _),) = world.patches
    assert status["phase"] == "Succeeded" and status["summary"]["requests"] == 90
    assert "progress" in status and status["progress"] is None  # null: the merge patch deletes it

    world.patches.clear()
    running = {**finished, "status": {"active": 1}}
    loadtest["status"] = {"phase": "Pending", "runId": RUN}
    monkeypatch.setattr(kube, "list_job_pods", lambda namespace, name: [pod(0, "Running")])
    handlers.mirror_job(body=running, namespace="shop", type="MODIFIED", logger=logging.getLogger("test"))
    ((name, status, _),) = world.patches
    assert status["phase"] == "Running" and "progress" not in status  # the timer's field, untouched


def test_the_first_run_status_never_undoes_a_phase_the_mirror_wrote():
    # The creation handler records the run id after the Job exists; the Job's mirror may have
    # written the run (phase Running) first.
    fresh = {"metadata": {"name": "live"}, "status": {}}
    assert handlers.first_run_status(fresh, RUN) == {
        "runId": RUN,
        "jobName": handlers.job_name_for(RUN),
        "phase": "Pending",
    }
    mirrored = {"metadata": {"name": "live"}, "status": {"runId": RUN, "jobName": "j", "phase": "Running"}}
    assert handlers.first_run_status(mirrored, RUN) is None
    phase_only = {"metadata": {"name": "live"}, "status": {"phase": "Running"}}
    assert handlers.first_run_status(phase_only, RUN)["phase"] == "Running"
