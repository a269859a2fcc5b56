"""`python -m assay.runner.report build|compare`, run as the real command."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

from assay.runner.report import read_report, verify_result_archive
from tests.unit.test_report_factory import START, make_run, run_engine, write_shards

LOADTEST = """\
apiVersion: assay.dev/v1alpha1
kind: LoadTest
metadata: {name: shop-checkout}
spec:
  flows: [{name: browse, requests: [{url: "http://127.0.0.1:1/"}]}]
  criteria: ["p95 < 60s"]
"""


def run_cli(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "assay.runner.report", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_build_writes_both_archives_and_judges_criteria_on_the_merged_run(tmp_path):
    shards, expected = make_run(run_id="run/42", shards=2, seconds=3)
    paths = write_shards(shards, tmp_path / "shards")
    (tmp_path / "loadtest.yaml").write_text(LOADTEST)
    done = run_cli(
        "build",
        *paths,
        "--out",
        tmp_path / "out",
        "--spec",
        tmp_path / "loadtest.yaml",
        "--criterion",
        "error_rate < 0.1%",
        "--label",
        "nightly",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    result, report = (tmp_path / "out" / "result-run-42.zip"), (tmp_path / "out" / "report-run-42.zip")
    assert done.stdout.split() == [str(result), str(report)]

    manifest = verify_result_archive(result)
    assert manifest["runId"] == "run/42" and manifest["loadTest"] == "shop-checkout" and manifest["shards"] == 2
    summary = read_report(report)
    assert summary["run"]["label"] == "nightly" and summary["run"]["loadTest"] == "shop-checkout"
    assert summary["total"]["count"] == expected["total"]["count"]
    assert summary["total"]["p99Ms"] == expected["total"]["p99Ms"]
    assert [(c["criterion"], c["passed"]) for c in summary["criteria"]] == [
        ("p95 < 60s", True),
        ("error_rate < 0.1%", False),
    ]
    assert summary["criteria"][1]["observed"] == round(100 * summary["total"]["errors"] / summary["total"]["count"], 6)
    assert summary["verdict"] == "failed"


def test_compare_takes_the_older_run_as_baseline_unless_reversed(tmp_path):
    for run_id, started in (("new", START + 3600), ("old", START)):
        shards, _ = make_run(run_id=run_id, shards=1, seconds=2, started=started)
        assert (
            run_cli("build", *write_shards(shards, tmp_path / run_id), "--out", tmp_path, cwd=tmp_path).returncode == 0
        )
    done = run_cli(
        "compare", tmp_path / "report-new.zip", tmp_path / "report-old.zip", "--out", tmp_path / "cmp.zip", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    with zipfile.ZipFile(tmp_path / "cmp.zip") as zf:
        assert json.loads(zf.read("comparison.json"))["baseline"]["runId"] == "old"
    done = run_cli(
        "compare",
        tmp_path / "report-new.zip",
        tmp_path / "report-old.zip",
        "--out",
        tmp_path / "rev.zip",
        "--reverse",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    with zipfile.ZipFile(tmp_path / "rev.zip") as zf:
        assert json.loads(zf.read("comparison.json"))["baseline"]["runId"] == "new"


def test_bad_input_is_reported_without_a_traceback(tmp_path):
    (tmp_path / "junk.json").write_text("{}")
    done = run_cli("build", tmp_path / "junk.json", "--out", tmp_path, "--criterion", "p95 < fast", cwd=tmp_path)
    assert done.returncode == 2
    assert "invalid criterion 'p95 < fast'" in done.stderr and "Traceback" not in done.stderr
    done = run_cli("compare", tmp_path / "junk.json", tmp_path / "junk.json", "--out", tmp_path / "c.zip", cwd=tmp_path)
    assert done.returncode == 2 and "not a report archive" in done.stderr
    assert not (tmp_path / "c.zip").exists()


def test_build_from_a_real_load_engine_run(tmp_path):
    from assay.runner.load import ShardMetrics, evaluate, merge

    shards = run_engine(run_id="real-1", delay=0.002, duration="1s", users=2)
    paths = write_shards(shards, tmp_path / "shards")
    done = run_cli("build", *paths, "--out", tmp_path, "--criterion", "p99 < 60s", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    merged = merge(ShardMetrics.from_json(p.read_bytes()) for p in paths)
    summary = read_report(tmp_path / "report-real-1.zip")
    assert summary["total"]["count"] == merged.total.count > 0
    assert summary["total"]["p95Ms"] == merged.total.to_dict()["p95Ms"]
    assert summary["run"]["startedAt"][:19] == merged.to_dict()["startedAt"][:19]
    assert summary["run"]["durationS"] == round(merged.duration_s, 3)
    assert [r["name"] for r in summary["requests"]] == ["GET /items", "POST /orders"]
    assert summary["criteria"] == [c.to_dict() for c in evaluate(["p99 < 60s"], merged)]
    assert summary["verdict"] == "passed"
    assert len(summary["timeline"]) == len(merged.timeline)
