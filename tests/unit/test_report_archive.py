"""Result and report archives: what they contain, that their numbers are the merged metrics',
that they are reproducible, and that a failed write leaves nothing half-written behind."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile

import pytest

from assay.runner.report import (
    ArchiveError,
    build_report_archive,
    build_result_archive,
    read_report,
    summarize,
    verify_result_archive,
)
from tests.unit.test_report_factory import ERROR_KINDS, START, make_run, write_shards

META = {"loadTest": "shop-checkout", "label": "nightly", "createdAt": "2024-01-02T03:04:05Z"}
CRITERIA = [
    {"criterion": "p95 < 100 ms", "observed": "81 ms", "passed": True},
    {"criterion": "errors < 1 %", "observed": "2.3 %", "passed": False},
]


@pytest.fixture(scope="module")
def run():
    return make_run(run_id="run-7", shards=3, seconds=10, criteria=CRITERIA)


@pytest.fixture
def report_zip(run, tmp_path):
    _, merged = run
    return build_report_archive(merged, tmp_path / "report.zip", meta=META)


def _csv_rows(archive, name):
    with zipfile.ZipFile(archive) as zf:
        return list(csv.DictReader(io.StringIO(zf.read(name).decode())))


# --- result archive -----------------------------------------------------------------------------


def test_result_archive_holds_every_shard_file_unchanged_with_a_manifest(run, tmp_path):
    shards, _ = run
    paths = write_shards(shards, tmp_path / "in")
    archive = build_result_archive(list(reversed(paths)), tmp_path / "out" / "result.zip", meta=META)

    with zipfile.ZipFile(archive) as zf:
        assert zf.namelist() == [
            "manifest.json",
            "shards/shard-0000.json",
            "shards/shard-0001.json",
            "shards/shard-0002.json",
        ]
        manifest = json.loads(zf.read("manifest.json"))
        for entry, path in zip(manifest["files"], paths):
            assert zf.read(entry["path"]) == path.read_bytes()
            assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
            assert entry["source"] == path.name and entry["bytes"] == path.stat().st_size
    assert manifest["runId"] == "run-7"
    assert manifest["loadTest"] == "shop-checkout"
    assert manifest["shards"] == 3
    assert manifest["createdAt"] == "2024-01-02T03:04:05Z"
    assert verify_result_archive(archive) == manifest


def test_result_archive_checksums_catch_a_changed_file(run, tmp_path):
    shards, _ = run
    archive = build_result_archive(write_shards(shards, tmp_path), tmp_path / "result.zip", meta=META)
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(tampered, "w") as dst:
        for name in src.namelist():
            content = src.read(name)
            dst.writestr(name, content.replace(b'"shard": 1', b'"shard": 9') if name.endswith("0001.json") else content)
    with pytest.raises(ArchiveError, match="shard-0001.json does not match its checksum"):
        verify_result_archive(tampered)


def test_result_archive_refuses_shards_of_different_runs_or_the_same_shard_twice(run, tmp_path):
    shards, _ = run
    other, _ = make_run(run_id="run-8", shards=3, seconds=2)
    with pytest.raises(ArchiveError, match="different runs: run-7, run-8"):
        build_result_archive(write_shards([shards[0], other[1]], tmp_path / "mixed"), tmp_path / "r.zip", meta={})
    twice = write_shards([shards[0]], tmp_path / "one") + write_shards([shards[0]], tmp_path / "two")
    with pytest.raises(ArchiveError, match="shard 0 is given more than once"):
        build_result_archive(twice, tmp_path / "r.zip", meta={})
    (tmp_path / "junk.json").write_text("not json")
    with pytest.raises(ArchiveError, match="junk.json: not shard metrics JSON"):
        build_result_archive([tmp_path / "junk.json"], tmp_path / "r.zip", meta={})
    assert not (tmp_path / "r.zip").exists()


# --- report archive -----------------------------------------------------------------------------


def test_report_archive_has_the_static_report_files_in_a_fixed_order(report_zip):
    with zipfile.ZipFile(report_zip) as zf:
        assert zf.namelist() == ["index.html", "report.json", "requests.csv", "timeline.csv", "errors.csv"]
        assert zf.read("index.html").startswith(b"<!DOCTYPE html>")


def test_report_json_numbers_are_the_merged_metrics(run, report_zip):
    _, merged = run
    summary = read_report(report_zip)
    assert summary["run"]["runId"] == "run-7"
    assert summary["run"]["loadTest"] == "shop-checkout" and summary["run"]["label"] == "nightly"
    assert summary["run"]["durationS"] == 10
    assert summary["run"]["startedAt"] == "2023-11-14T22:13:20.000Z"
    assert [r["name"] for r in summary["requests"]] == sorted(merged["requests"])
    for row in [*summary["requests"], summary["total"]]:
        stats = merged["total"] if row["name"] is None else merged["requests"][row["name"]]
        assert row["count"] == stats["count"]
        assert row["errorsByKind"] == stats["errors"]
        assert row["errors"] == sum(stats["errors"].values())
        for field in ("minMs", "meanMs", "p50Ms", "p90Ms", "p95Ms", "p99Ms", "maxMs", "bytesSent", "bytesReceived"):
            assert row[field] == stats[field], field
        assert row["throughputRps"] == pytest.approx(stats["count"] / 10, abs=1e-6)
        assert row["errorRatePct"] == pytest.approx(100 * row["errors"] / stats["count"], abs=1e-6)
    assert summary["criteria"] == CRITERIA
    assert summary["verdict"] == "failed"
    assert summary["run"]["peakUsers"] == max(e["activeUsers"] for e in merged["timeline"])


def test_requests_csv_matches_the_merged_metrics(run, report_zip):
    _, merged = run
    rows = _csv_rows(report_zip, "requests.csv")
    assert [r["scope"] for r in rows] == ["request"] * len(merged["requests"]) + ["total"]
    for row in rows:
        stats = merged["total"] if row["scope"] == "total" else merged["requests"][row["name"]]
        assert int(row["count"]) == stats["count"]
        assert int(row["errors"]) == sum(stats["errors"].values())
        for kind in ERROR_KINDS:
            assert int(row[f"errors_{kind}"]) == stats["errors"][kind]
        for field in ("p50Ms", "p90Ms", "p95Ms", "p99Ms", "maxMs"):
            assert float(row[field]) == stats[field]


def test_timeline_csv_has_one_row_per_second_with_the_merged_numbers(run, report_zip):
    _, merged = run
    rows = _csv_rows(report_zip, "timeline.csv")
    assert len(rows) == len(merged["timeline"]) == 10
    for row, entry in zip(rows, merged["timeline"]):
        assert int(row["second"]) == entry["second"]
        assert float(row["elapsedS"]) == entry["second"] - START
        assert int(row["activeUsers"]) == entry["activeUsers"]
        assert int(row["requests"]) == entry["total"]["count"]
        assert int(row["errors"]) == sum(entry["total"]["errors"].values())
        assert float(row["p95Ms"]) == entry["total"]["p95Ms"]


def test_errors_csv_lists_every_non_zero_error_count(run, report_zip):
    _, merged = run
    rows = _csv_rows(report_zip, "errors.csv")
    expected = {
        (name, kind): n for name, stats in merged["requests"].items() for kind, n in stats["errors"].items() if n
    }
    assert {(r["name"], r["kind"]): int(r["count"]) for r in rows if r["scope"] == "request"} == expected
    totals = {r["kind"]: int(r["count"]) for r in rows if r["scope"] == "total"}
    assert totals == {k: n for k, n in merged["total"]["errors"].items() if n}


def test_the_same_input_gives_the_same_archive_bytes(run, tmp_path):
    shards, merged = run
    paths = write_shards(shards, tmp_path / "in")
    first = build_report_archive(merged, tmp_path / "a.zip", meta=META).read_bytes()
    assert build_report_archive(merged, tmp_path / "b.zip", meta=META).read_bytes() == first
    first = build_result_archive(paths, tmp_path / "c.zip", meta=META).read_bytes()
    assert build_result_archive(paths, tmp_path / "d.zip", meta=META).read_bytes() == first


def test_a_failed_write_keeps_the_old_archive_and_leaves_no_partial_file(run, tmp_path, monkeypatch):
    _, merged = run
    out = tmp_path / "report.zip"
    out.write_bytes(b"the previous archive")
    real_writestr = zipfile.ZipFile.writestr
    written = []

    def failing_writestr(self, info, data, *args, **kwargs):
        if written:
            raise OSError("disk full")
        written.append(info)
        return real_writestr(self, info, data, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "writestr", failing_writestr)
    with pytest.raises(OSError, match="disk full"):
        build_report_archive(merged, out, meta=META)
    with pytest.raises(OSError, match="disk full"):
        build_report_archive(merged, tmp_path / "new.zip", meta=META)
    assert written, "the write failed part-way, after its first entry"
    assert out.read_bytes() == b"the previous archive"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.zip"]


def test_read_report_refuses_other_zips(run, tmp_path):
    shards, _ = run
    result = build_result_archive(write_shards(shards, tmp_path), tmp_path / "result.zip", meta=META)
    with pytest.raises(ArchiveError, match="not a report archive"):
        read_report(result)
    (tmp_path / "plain.txt").write_text("x")
    with pytest.raises(ArchiveError, match="not a report archive"):
        read_report(tmp_path / "plain.txt")


# --- summary edge cases -------------------------------------------------------------------------


def test_summary_reads_epoch_times_and_marks_aborted_runs():
    _, merged = make_run(seconds=3)
    merged.update(startedAt=START, finishedAt=(START + 3) * 1000, aborted=True, abortReason="target unreachable")
    summary = summarize(merged, {"createdAt": "2024-01-01T00:00:00Z"})
    assert summary["run"]["startedAt"] == "2023-11-14T22:13:20.000Z"
    assert summary["run"]["durationS"] == 3
    assert summary["verdict"] == "aborted"
    assert summary["run"]["abortReason"] == "target unreachable"


def test_summary_of_a_run_without_requests_has_no_rates_or_percentiles():
    empty = {
        "version": 1,
        "runId": "r",
        "shard": 0,
        "shards": 1,
        "startedAt": None,
        "finishedAt": None,
        "requests": {},
        "total": {
            "count": 0,
            "errors": dict.fromkeys(ERROR_KINDS, 0),
            "bytesSent": 0,
            "bytesReceived": 0,
            "histogram": "",
            "minMs": None,
            "meanMs": None,
            "p50Ms": None,
            "p90Ms": None,
            "p95Ms": None,
            "p99Ms": None,
            "maxMs": None,
        },
        "timeline": [],
        "criteria": [],
        "aborted": False,
        "abortReason": None,
    }
    summary = summarize(empty)
    assert summary["total"]["throughputRps"] is None and summary["total"]["p99Ms"] is None
    assert summary["total"]["errorRatePct"] == 0.0
    assert summary["verdict"] == "passed" and summary["requests"] == [] and summary["timeline"] == []


def test_summary_takes_the_load_engines_object_as_well_as_its_dict():
    _, merged = make_run(seconds=2)

    class EngineMetrics:  # the shape of assay.runner.load.metrics' object: it serialises itself
        def to_dict(self):
            return merged

    assert summarize(EngineMetrics(), META) == summarize(merged, META)
