"""Live progress through the gateway's ingest router on a real store: the PUT's wire contract,
the GET's per-shard and merged view, a run's `loadtest` pods pushing while they run, and
the operator's mapping of the merged view onto `status.progress`."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from assay.api.store import RunRecord
from assay.crds.contracts.progress import PROGRESS_MAX_BYTES
from assay.crds.contracts.upload import RunGrant, upload_token
from assay.crds.loadtest import LoadTestStatus
from assay.runner.progress import combine
from tests.support.ingest import ingest_client
from tests.unit.test_progress_pusher import progress
from tests.unit.test_upload import ingest_gateway  # noqa: F401  (a fixture)

RUN = "checkout-1a2b3c4d"
KEY = "k"


@pytest.fixture
def gateway(tmp_path):
    with ingest_client(tmp_path / "store", KEY) as client:
        yield client


def auth(run_id: str = RUN) -> dict:
    return {"Authorization": f"Bearer {upload_token(KEY, RunGrant('shop', 'LoadTest', 'checkout', 'uid-1', run_id))}"}


def body(requests: int, latencies_ms=(10.0,), **extra) -> bytes:
    report = combine([progress(requests, latencies_ms)])
    return report.model_copy(update=extra).to_body()


def test_shards_put_their_progress_and_the_run_shows_each_and_the_merge(gateway):
    assert gateway.put(f"/internal/v1/runs/{RUN}/progress/0", content=body(40), headers=auth()).status_code == 204
    assert gateway.put(f"/internal/v1/runs/{RUN}/progress/1", content=body(30), headers=auth()).status_code == 204
    assert gateway.put(f"/internal/v1/runs/{RUN}/progress/0", content=body(55), headers=auth()).status_code == 204
    answer = gateway.get(f"/internal/v1/runs/{RUN}", headers=auth())
    assert answer.status_code == 200, answer.text  # progress alone makes the run known
    view = answer.json()
    assert view["run"] is None and view["documents"] == []
    shards = view["progress"]["shards"]
    assert [(s["shard"], s["requests"]) for s in shards] == [(0, 55), (1, 30)]
    assert "windowHistogram" not in shards[0]
    merged = view["progress"]["merged"]
    assert (merged["requests"], merged["shardsReporting"]) == (85, 2)
    assert merged["p95Ms"] == pytest.approx(10.0, rel=0.01)
    assert merged["updatedAt"] == pytest.approx(time.time(), abs=10)


def test_reports_add_one_merged_sample_per_interval_to_the_runs_live_curve(gateway):
    for shard, requests in ((0, 40), (1, 30), (0, 55)):  # well within one interval
        assert (
            gateway.put(f"/internal/v1/runs/{RUN}/progress/{shard}", content=body(requests), headers=auth()).status_code
            == 204
        )
    [sample] = gateway.store.list_progress_samples(RUN)
    assert sample["requests"] == 40 and sample["p50Ms"] == pytest.approx(10.0, rel=0.01)
    assert sample["at"] == pytest.approx(time.time(), abs=10)


def test_a_finished_run_refuses_progress_and_shows_none(gateway):
    gateway.put(f"/internal/v1/runs/{RUN}/progress/0", content=body(40), headers=auth())
    gateway.store.upsert_run(
        RunRecord(
            run_id=RUN, kind="LoadTest", project="shop", owner_name="checkout", owner_uid="uid-1", state="succeeded"
        )
    )
    late = gateway.put(f"/internal/v1/runs/{RUN}/progress/0", content=body(41), headers=auth())
    assert late.status_code == 409 and late.json()["error"] == "run_finished"
    assert gateway.get(f"/internal/v1/runs/{RUN}", headers=auth()).json()["progress"] is None


@pytest.mark.parametrize(
    "content, status, code",
    [
        (b"{not json", 400, "invalid_request"),
        (b'{"requests": -1}', 400, "invalid_request"),
        (b'{"windowHistogram": "bm90IGEgaGlzdG9ncmFt"}', 400, "invalid_request"),
        (b'{"requests": 1, "pad": "' + b"x" * PROGRESS_MAX_BYTES + b'"}', 413, "too_large"),
    ],
)
def test_a_bad_report_is_refused_and_stores_nothing(gateway, content, status, code):
    answer = gateway.put(f"/internal/v1/runs/{RUN}/progress/0", content=content, headers=auth())
    assert (answer.status_code, answer.json()["error"]) == (status, code), answer.text
    assert gateway.store.list_progress(RUN) == []


def test_progress_needs_the_runs_own_token_and_a_shard_in_range(gateway):
    url = f"/internal/v1/runs/{RUN}/progress/0"
    assert gateway.put(url, content=body(1)).status_code == 401
    # Another run's genuine token is refused as not covering this run.
    assert gateway.put(url, content=body(1), headers=auth("other-run")).status_code == 403
    assert gateway.get(f"/internal/v1/runs/{RUN}", headers=auth("other-run")).status_code == 403
    assert gateway.put(f"/internal/v1/runs/{RUN}/progress/-1", content=body(1), headers=auth()).status_code == 400
    assert gateway.get(f"/internal/v1/runs/{RUN}", headers=auth()).status_code == 404
    assert gateway.store.list_progress(RUN) == []


# --- the runner's loadtest command pushing to the real router --------------------------------


def test_a_loadtest_pod_pushes_growing_progress_while_it_runs_and_none_remains_after(ingest_gateway, tmp_path):  # noqa: F811 (the fixture imported above)
    from tests.unit.test_load_cli import REPO, manifest
    from tests.unit.test_load_servers import LoadTarget

    run_id = "live-1a2b3c4d"
    env = {
        "ASSAY_GATEWAY_URL": ingest_gateway.url,
        "ASSAY_UPLOAD_TOKEN": upload_token("k", RunGrant("shop", "LoadTest", "live", "lt-uid", run_id)),
        "ASSAY_RUN_ID": run_id,
        "ASSAY_PROJECT": "shop",
        "ASSAY_OWNER_KIND": "LoadTest",
        "ASSAY_OWNER_NAME": "live",
        "ASSAY_OWNER_UID": "lt-uid",
        "ASSAY_SHARDS": "1",
        "JOB_COMPLETION_INDEX": "0",
        "ASSAY_TERMINATION_LOG": str(tmp_path / "termination-log"),
    }
    store = ingest_gateway.store
    seen = []
    with LoadTarget(delay=0.01) as target:
        path = manifest(tmp_path, target.url, shards=1, load={"users": 2, "duration": "5s"})
        proc = subprocess.Popen(
            [sys.executable, "-m", "assay.runner", "loadtest", "--spec", str(path)],
            cwd=REPO,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        while proc.poll() is None:
            rows = store.list_progress(run_id)
            if rows:
                seen.append(rows[0].doc["requests"])
            time.sleep(0.2)
        stdout, stderr = proc.communicate()
    assert proc.returncode == 0, stderr
    assert "progress push" not in stderr  # never failed
    distinct = sorted(set(seen))
    assert len(distinct) >= 2 and distinct[0] > 0, seen  # it grew while the shard ran
    assert seen == sorted(seen)
    run = store.get_run(run_id)
    assert run.state == "succeeded" and run.summary["requests"] == target.total
    assert max(seen) <= target.total
    assert store.list_progress(run_id) == []  # dropped when the run finished


# --- the operator's view --------------------------------------------------------------------


def test_the_operator_maps_the_merged_view_onto_status_progress():
    from assay.operator.loadtest import progress_status

    assert progress_status({"progress": None}) is None
    assert progress_status({}) is None
    merged = {
        "requests": 85,
        "errors": 2,
        "rps": 17.5,
        "p95Ms": 12.3,
        "activeUsers": 4,
        "shardsReporting": 2,
        "shardsDone": 0,
        "updatedAt": 1_700_000_000.6,
    }
    status = progress_status({"progress": {"shards": [], "merged": merged}})
    assert status == {
        "requests": 85,
        "errors": 2,
        "rps": 17.5,
        "p95Ms": 12.3,
        "activeUsers": 4,
        "shardsReporting": 2,
        "updatedAt": "2023-11-14T22:13:20Z",
    }
    LoadTestStatus.model_validate({"phase": "Running", "progress": status})  # what the CRD declares
    # An idle window: p95Ms is sent as null, so the merge patch removes the previous value.
    idle = progress_status({"progress": {"merged": {**merged, "p95Ms": None}}})
    assert "p95Ms" in idle and idle["p95Ms"] is None
