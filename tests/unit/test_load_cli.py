"""`python -m assay.runner loadtest` (a pod) and `run` (a laptop) with the load engine,
as real processes against a real loopback target."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from assay.crds.contracts.summary import TERMINATION_MESSAGE_LIMIT, ShardSummary
from assay.runner.load.metrics import ShardMetrics
from tests.unit.test_load_servers import LoadTarget

REPO = Path(__file__).resolve().parents[2]


def manifest(tmp_path: Path, url: str, **spec) -> Path:
    doc = {
        "apiVersion": "assay.dev/v1alpha1",
        "kind": "LoadTest",
        "metadata": {"name": "cli"},
        "spec": {
            "baseUrl": url,
            "flows": [
                {"name": "a", "weight": 2, "requests": [{"name": "get a", "url": "/a"}]},
                {"name": "b", "requests": [{"name": "get b", "url": "/b"}]},
            ],
            **spec,
        },
    }
    path = tmp_path / "loadtest.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def runner(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "assay.runner", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )


def test_run_prints_progress_and_a_table_and_writes_the_merged_metrics(tmp_path):
    out = tmp_path / "metrics.json"
    with LoadTarget() as target:
        path = manifest(
            tmp_path, target.url, shards=2, load={"users": 4, "duration": "2s"}, criteria=["error_rate < 1%"]
        )
        result = runner("run", str(path), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "req/s" in result.stderr and "p95" in result.stderr
    assert "get a" in result.stdout and "total" in result.stdout and "error_rate < 1%" in result.stdout
    metrics = ShardMetrics.from_json(out.read_text())
    assert metrics.shards == 2 and metrics.total.count == target.total
    assert metrics.requests["get a"].count == target.counts[("GET", "/a")]
    assert [c.passed for c in metrics.criteria] == [True]


def test_run_over_two_processes_sends_exactly_the_configured_iterations(tmp_path):
    with LoadTarget() as target:
        path = manifest(tmp_path, target.url, shards=3, load={"users": 6, "iterations": 5})
        result = runner("run", str(path), "--processes", "2", "--out", str(tmp_path / "m.json"))
    assert result.returncode == 0, result.stderr
    assert target.counts[("GET", "/a")] == 20 and target.counts[("GET", "/b")] == 10
    assert ShardMetrics.from_json((tmp_path / "m.json").read_text()).total.count == 30


def test_run_exits_1_when_a_criterion_fails(tmp_path):
    with LoadTarget(status=503) as target:
        path = manifest(tmp_path, target.url, load={"users": 1, "iterations": 3}, criteria=["error_rate < 1%"])
        result = runner("run", str(path))
    assert result.returncode == 1
    assert "FAILED" in result.stdout and "status 3" in result.stdout


def test_a_pod_shard_writes_its_metrics_and_a_termination_message(tmp_path):
    log = tmp_path / "termination-log"
    results = tmp_path / "results"
    env = {
        "ASSAY_TERMINATION_LOG": str(log),
        "ASSAY_RESULTS_DIR": str(results),
        "JOB_COMPLETION_INDEX": "1",
        "ASSAY_SHARDS": "2",
        "ASSAY_RUN_ID": "run-42",
    }
    with LoadTarget() as target:
        path = manifest(tmp_path, target.url, shards=2, load={"users": 4, "iterations": 3})
        result = runner("loadtest", "--spec", str(path), "--processes", "2", env=env)
    assert result.returncode == 0, result.stderr
    message = log.read_text()
    assert len(message.encode()) < TERMINATION_MESSAGE_LIMIT
    summary = ShardSummary.from_message(message)
    # Shard 1 of 2 runs users 1 and 3: 6 iterations.
    assert summary.shard == 1 and summary.requests == target.total == 6 and summary.p95_ms is not None
    metrics = ShardMetrics.from_json((results / "shard-1.json").read_text())
    assert (metrics.shard, metrics.shards, metrics.run_id) == (1, 2, "run-42")
    assert metrics.total.count == 6


def test_a_pod_with_an_unrunnable_spec_says_why_in_its_termination_message(tmp_path):
    log = tmp_path / "termination-log"
    path = manifest(
        tmp_path,
        "http://127.0.0.1:1",
        load={"iterations": 1},
        parameterPools=[{"name": "big", "configMapRef": {"name": "pools", "key": "big.csv"}}],
    )
    result = runner("loadtest", "--spec", str(path), env={"ASSAY_TERMINATION_LOG": str(log)})
    assert result.returncode == 2
    assert "ConfigMap pools/big.csv is not mounted" in json.loads(log.read_text())["error"]
