"""The result archive's XLT layout, read by Xceptance XLT's own report generator.

A real two-shard run against a loopback target (latencies spread over 2-120 ms, some 500s),
its result and report archives, `xlt/` extracted and XLT 8.1.0's ReportGeneratorMain run on
it (hack/install-xlt.sh fetches XLT from Maven Central into ~/.cache/assay): XLT's request
counts and errors equal Assay's, its mean, min and max agree to the millisecond XLT writes,
and its percentiles, which XLT takes from 10 ms buckets (RuntimeHistogram(10)), are the
bucket Assay's percentile falls in.
"""

from __future__ import annotations

import csv
import itertools
import json
import random
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

from assay.crds.loadtest import LoadTestSpec
from assay.runner.load import run, run_load_shard
from assay.runner.report import build_report_archive, build_result_archive, load_shards, read_report
from tests.unit.test_load_servers import LoadTarget

ROOT = Path(__file__).resolve().parents[2]
XLT_MAIN = "com.xceptance.xlt.report.ReportGeneratorMain"
# XLT's distribution ships its config/ (report providers, style sheets); the jar does not. This
# is the least the report generator needs to write testreport.xml: the two record types Assay
# writes and the providers of the figures compared here.
REPORT_PROPERTIES = """\
com.xceptance.xlt.reportgenerator.dataRecords.R = com.xceptance.xlt.api.engine.RequestData
com.xceptance.xlt.reportgenerator.dataRecords.T = com.xceptance.xlt.api.engine.TransactionData
com.xceptance.xlt.reportgenerator.providers.general = com.xceptance.xlt.report.providers.GeneralReportProvider
com.xceptance.xlt.reportgenerator.providers.requests = com.xceptance.xlt.report.providers.RequestsReportProvider
com.xceptance.xlt.reportgenerator.providers.transactions = com.xceptance.xlt.report.providers.TransactionsReportProvider
com.xceptance.xlt.reportgenerator.requests.removeIndexes = false
"""
XLT_BUCKET_MS = 10


def xlt_lib() -> Path:
    if shutil.which("java") is None:
        pytest.skip("Java is not installed: XLT's report generator needs a Java 17+ runtime")
    out = subprocess.run(["bash", str(ROOT / "hack/install-xlt.sh")], capture_output=True, text=True, check=False)
    assert out.returncode == 0, f"hack/install-xlt.sh failed:\n{out.stderr}"
    return Path(out.stdout.strip()) / "lib"


def xlt_home(tmp: Path) -> Path:
    home = tmp / "xlt-home"
    (home / "config" / "testreport").mkdir(parents=True)
    (home / "config" / "reportgenerator.properties").write_text(REPORT_PROPERTIES)
    (home / "config" / "mastercontroller.properties").write_text("")
    return home


def answerer():
    seen = itertools.count()

    def answer(method: str, path: str, body: bytes) -> int:
        # Each request name its own spread, so the percentiles differ between names and from XLT's buckets.
        low, high = {"/items": (0.002, 0.04), "/items/1": (0.01, 0.12), "/orders": (0.02, 0.08)}[path]
        time.sleep(random.uniform(low, high))
        return 500 if next(seen) % 17 == 0 else 200

    return answer


def spec(url: str) -> LoadTestSpec:
    return LoadTestSpec.model_validate(
        {
            "baseUrl": url,
            "shards": 2,
            "load": {"users": 6, "duration": "4s"},
            "timers": {"enabled": True},
            "flows": [
                {"name": "browse", "weight": 2, "requests": [{"name": "list", "url": "/items"}, {"url": "/items/1"}]},
                {"name": "buy", "requests": [{"name": "order", "method": "POST", "url": "/orders", "body": "{}"}]},
            ],
        }
    )


def timers(report: ET.Element, section: str, kind: str) -> dict[str, ET.Element]:
    return {el.findtext("name"): el for el in report.findall(f"{section}/{kind}")}


def test_xlt_report_generator_reads_the_archive_and_agrees_with_assay(tmp_path):
    lib = xlt_lib()
    with LoadTarget(status=answerer()) as target:
        load = spec(target.url)
        paths = []
        for shard in range(2):
            metrics = run(run_load_shard(load, shard, 2, run_id="xlt-1"))
            path = tmp_path / f"shard-{shard}.json"
            path.write_text(metrics.to_json())
            paths.append(path)
    result = build_result_archive(paths, tmp_path / "result.zip", meta={})
    report = read_report(build_report_archive(load_shards(paths), tmp_path / "report.zip", meta={}))

    results = tmp_path / "results"
    with zipfile.ZipFile(result) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        names = [n for n in zf.namelist() if n.startswith("xlt/")]
        zf.extractall(results, names)
    assert [(x["agent"], x["sampled"]) for x in manifest["xlt"]] == [("shard-0000", False), ("shard-0001", False)]
    assert {"xlt/shard-0000/browse/0/timers.csv", "xlt/shard-0001/buy/1/timers.csv"} <= set(names)

    out = tmp_path / "xlt-report"
    started = time.monotonic()
    proc = subprocess.run(
        [
            "java",
            f"-Dcom.xceptance.xlt.home={xlt_home(tmp_path)}",
            "-cp",
            f"{lib}/*",
            XLT_MAIN,
            "-o",
            str(out),
            "-noCharts",
            str(results / "xlt"),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    print(f"XLT report generator: {time.monotonic() - started:.1f}s")
    xml = ET.parse(out / "testreport.xml").getroot()

    xlt_requests = timers(xml, "requests", "request")
    assay_requests = {row["name"]: row for row in report["requests"]}
    assert set(xlt_requests) == set(assay_requests) == {"list", "GET /items/1", "order"}
    for name, row in assay_requests.items():
        mine = xlt_requests[name]
        figures = {k: float(mine.findtext(k)) for k in ("count", "errors", "mean", "min", "max")}
        percentiles = {p: float(mine.findtext(f"percentiles/p{p}")) for p in (50, 95, 99)}
        print(name, {k: row[k] for k in ("count", "errors", "meanMs", "minMs", "maxMs", "p50Ms", "p95Ms", "p99Ms")})
        print(name, "XLT", figures, percentiles)
        assert row["count"] > 50 and figures["count"] == row["count"]
        assert figures["errors"] == row["errors"] > 0
        # XLT rounds each time to whole ms; Assay's histogram keeps 3 significant digits.
        assert figures["mean"] == pytest.approx(row["meanMs"], abs=0.5 + row["meanMs"] * 0.001)
        for xlt_key, assay_key in (("min", "minMs"), ("max", "maxMs")):
            assert figures[xlt_key] == pytest.approx(row[assay_key], abs=0.5 + row[assay_key] * 0.001)
        # XLT's percentile is the lower bound of the 10 ms bucket Assay's falls in, or, when
        # n*p is whole, the mean of two neighbouring buckets' bounds: half a bucket lower.
        for p, value in percentiles.items():
            assay = row[f"p{p}Ms"]
            assert value - XLT_BUCKET_MS / 2 - 1 <= assay < value + XLT_BUCKET_MS + 1, (name, p, value, assay)

    transactions = timers(xml, "transactions", "transaction")
    assert set(transactions) == {"browse", "buy"}
    # One transaction per iteration: every browse iteration starts with `list`, every buy is one `order`.
    assert int(transactions["browse"].findtext("count")) == assay_requests["list"]["count"]
    assert int(transactions["buy"].findtext("count")) == assay_requests["order"]["count"]
    assert int(transactions["buy"].findtext("errors")) == assay_requests["order"]["errors"]


def test_timer_log_keeps_every_record_up_to_its_cap_then_a_uniform_sample():
    from assay.runner.load.metrics import TimerLog

    log = TimerLog(["r"], ["f"], 1000)
    for i in range(1000):
        log.request(0, 0, 0, 1_000 + i, i, -1, 200, 1, 2)
    assert not log.sampled and [r[4] for r in log.records] == list(range(1_000, 2_000))
    for i in range(1000, 10_000):
        log.request(0, 0, 0, 1_000 + i, i, -1, 200, 1, 2)
    assert log.sampled and log.seen == 10_000 and len(log.records) == 1000
    # Uniform over all 10,000: about a tenth of the sample from the first thousand, mean near 5,000.
    kept = [r[5] for r in log.records]
    assert 60 < sum(1 for v in kept if v < 1000) < 140
    assert 4_500 < sum(kept) / len(kept) < 5_500
    back = TimerLog.from_dict(json.loads(json.dumps(log.to_dict())))
    assert back.records == log.records and back.seen == 10_000 and back.sampled


def test_xlt_lines_have_the_columns_of_xlt_8_data_records():
    from assay.runner.load.metrics import TimerLog
    from assay.runner.report.xlt import shard_timer_files

    log = TimerLog(["GET /a,b"], ["check out"], 10)
    log.request(0, 0, 3, 1_700_000_000_123, 12_499, -1, 200, 70, 150)
    log.request(0, 0, 3, 1_700_000_000_200, 12_500, 2, 0, 0, 0)
    log.iteration(0, 3, 1_700_000_000_100, 150_000, True)
    files, info = shard_timer_files(1, log.to_dict())
    assert info == {"agent": "shard-0001", "seen": 3, "kept": 3, "sampled": False}
    [(path, content)] = files
    assert path == "xlt/shard-0001/check_out/3/timers.csv"
    lines = content.decode().splitlines()
    assert lines == [
        "T,check out,1700000000100,150,true,,,3,",
        'R,"GET /a,b",1700000000123,12,false,70,150,200,,,0,0,0,0,0,0,,,,,0,,,',
        'R,"GET /a,b",1700000000200,13,true,0,0,0,,,0,0,0,0,0,0,,,,,0,,,',
    ]
    # RequestData reads 24 fields (XLT 7+), TransactionData 9, once the quoted name is one field.
    assert [len(next(csv.reader([line]))) for line in lines] == [9, 24, 24]


def test_shards_without_timer_records_leave_the_result_archive_as_it_was(tmp_path):
    with LoadTarget() as target:
        load = LoadTestSpec.model_validate(
            {"baseUrl": target.url, "load": {"iterations": 2}, "flows": [{"name": "f", "requests": [{"url": "/"}]}]}
        )
        metrics = run(run_load_shard(load, 0, 1, run_id="plain"))
    assert "timers" not in json.loads(metrics.to_json())
    path = tmp_path / "shard-0.json"
    path.write_text(metrics.to_json())
    with zipfile.ZipFile(build_result_archive([path], tmp_path / "result.zip", meta={})) as zf:
        assert zf.namelist() == ["manifest.json", "shards/shard-0000.json"]
        assert "xlt" not in json.loads(zf.read("manifest.json"))


def test_the_timer_logs_of_a_shards_processes_merge_into_one():
    from assay.runner.load.metrics import ShardMetrics, TimerLog, merge

    parts = []
    for process in range(2):
        log = TimerLog(["r"], ["f"], 5)
        for i in range(7):
            log.request(0, 0, process, 1_000 + i, i, -1, 200, 1, 2)
        parts.append(ShardMetrics(shard=process, timers=log))
    merged = merge(parts, shard=0)
    assert merged.timers is not None and merged.timers.seen == 14 and merged.timers.cap == 10
    assert sorted(r[3] for r in merged.timers.records) == [0] * 5 + [1] * 5 and merged.timers.sampled


def test_open_model_records_every_request_and_one_transaction_per_arrival():
    with LoadTarget(delay=0.01) as target:
        load = LoadTestSpec.model_validate(
            {
                "baseUrl": target.url,
                "load": {"model": "open", "arrivalRate": 40, "duration": "1s"},
                "timers": {"enabled": True},
                "flows": [{"name": "f", "requests": [{"url": "/a"}, {"url": "/b"}]}],
            }
        )
        metrics = run(run_load_shard(load, 0, 1))
    assert metrics.timers is not None
    requests = [r for r in metrics.timers.records if r[0] == "R"]
    transactions = [r for r in metrics.timers.records if r[0] == "T"]
    assert len(requests) == metrics.total.count == target.total == 2 * len(transactions) == 80
    # The user number is the worker that ran the iteration: a few, not one per arrival.
    assert {r[3] for r in requests} == {t[2] for t in transactions} and len({t[2] for t in transactions}) < 10
