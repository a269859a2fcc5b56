"""Latency of the Runscope result list, latest result, metrics and request count with a big store.

    .venv/bin/python hack/bench/result_listing.py [--results 5000 20000] [--n 200] [--budget 30]
                                                  [--json OUT]

For each size in `--results`: a fresh store in a temporary folder, seeded through the real
write path (`ResultIngest.accept`, what the gateway's ingest endpoint calls) with that many
results of one Monitor, started over the last day (recorded now, as a busy monitor's are), and
another bucket with ten results of its own. Then, in this process, against the service the
routers call (`RunscopeResults`, without HTTP, tokens or the API server):

* `--n` calls of each of: the first page of the list (count 10), a page further back
  (`before` the middle of the day), `latest`, the day's metrics and the bucket's request
  count; at most `--budget` seconds per endpoint (at least 5 calls), p50 / p99 / mean in ms;
* ten first-page lists at once on ten threads (FastAPI's thread pool does the same), and
  meanwhile the other bucket's first page: how long the ten took, and how long the other
  bucket waited;
* with the index: how long the first start after an upgrade takes to index that many results
  from their documents (the store made to look as before the index, then opened again).

The numbers measured before and after the lists read the store's index (before: each list read
every result document of the last day) are in `hack/bench/README.md`.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from assay.api.services.runscope_results import RunscopeResults  # noqa: E402
from assay.api.store import ResultIngest, Store, Upload  # noqa: E402

BASE = "https://gw.example"
DAY = 86400.0
TEST_ID = "m-uid"
OTHER_TEST_ID = "other-uid"


def result_doc(run_id: str, test_id: str, bucket: str, started: float, n: int) -> dict:
    """A result document of the runner's shape (RunResult.to_runscope()): two steps."""
    steps = [
        {
            "uuid": f"step-{i}",
            "step_type": "request",
            "url": f"http://127.0.0.1:9/ping?n={i}",
            "method": "GET",
            "result": "pass",
            "status_code": 200,
            "response_size_bytes": 17,
            "assertions": [
                {
                    "result": "pass",
                    "source": "status_code",
                    "comparison": "equal_number",
                    "target_value": 200,
                    "actual_value": "200",
                    "error": None,
                    "property": None,
                }
            ],
            "assertions_defined": 1,
            "assertions_passed": 1,
            "assertions_failed": 0,
            "variables": [],
            "variables_defined": 0,
            "variables_passed": 0,
            "variables_failed": 0,
            "scripts": [],
            "scripts_defined": 0,
            "scripts_passed": 0,
            "scripts_failed": 0,
            "timings": {
                "dns_lookup_ms": 0.1,
                "dial_ms": 1.0,
                "send_headers_ms": 0.1,
                "send_body_ms": 0.0,
                "wait_for_response_ms": 20.0 + n % 50,
                "receive_response_ms": 0.5,
            },
        }
        for i in range(2)
    ]
    return {
        "agent": None,
        "agent_expired": False,
        "region": "us1",
        "region_name": "US East",
        "assertions_defined": 2,
        "assertions_failed": 0,
        "assertions_passed": 2,
        "bucket_key": bucket,
        "test_id": test_id,
        "test_run_id": run_id,
        "test_run_url": "",
        "environment_id": "env-1",
        "environment_name": "Prod",
        "started_at": started,
        "finished_at": started + 1.5,
        "result": "pass" if n % 7 else "fail",
        "requests_executed": 2,
        "scripts_defined": 0,
        "scripts_failed": 0,
        "scripts_passed": 0,
        "variables_defined": 0,
        "variables_failed": 0,
        "variables_passed": 0,
        "source": None,
        "subtests_count": 0,
        "subtests_passed": 0,
        "subtests_failed": 0,
        "subtests_others": 0,
        "subtest_detail": {},
        "requests": steps,
    }


def seed(store: Store, bucket: str, test_id: str, count: int, now: float) -> None:
    ingest = ResultIngest(store)
    for n in range(count):
        run_id = f"{test_id[:5]}-{n:010d}"
        started = now - DAY + DAY * (n + 1) / (count + 1)
        doc = result_doc(run_id, test_id, bucket, started, n)
        ingest.accept(
            Upload(
                run_id=run_id,
                name="monitor-result.json",
                data=json.dumps(doc).encode(),
                kind="Monitor",
                project=bucket,
                owner_name="health",
                owner_uid=test_id,
            )
        )


def timed(call, n: int, budget: float) -> list[float]:
    call()  # warm-up: connections, caches
    times, deadline = [], time.monotonic() + budget
    while len(times) < n and (len(times) < 5 or time.monotonic() < deadline):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return times


def figures(times: list[float]) -> dict:
    ordered = sorted(times)
    return {
        "n": len(times),
        "p50": statistics.median(ordered),
        "p99": ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))],
        "mean": statistics.fmean(ordered),
    }


def concurrent_lists(results: RunscopeResults) -> dict:
    """Ten first pages at once, and the other bucket's first page while they run."""
    started = threading.Barrier(11)

    def one_list():
        started.wait()
        t0 = time.perf_counter()
        results.list_results("busy", TEST_ID, count=10, since=None, before=None, subtests=False)
        return time.perf_counter() - t0

    with ThreadPoolExecutor(10) as pool:
        futures = [pool.submit(one_list) for _ in range(10)]
        started.wait()
        time.sleep(0.01)  # the ten are under way
        t0 = time.perf_counter()
        results.list_results("quiet", OTHER_TEST_ID, count=10, since=None, before=None, subtests=False)
        other = time.perf_counter() - t0
        ten = max(f.result() for f in futures)
    return {"ten_lists_s": ten, "other_bucket_ms": other * 1000}


def upgrade_seconds(root: Path) -> float | None:
    """Opening the store after removing its result index, as a store from before it; None
    when this version has no such index."""
    with sqlite3.connect(root / "index.sqlite3") as db:
        if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'monitor_results'").fetchone():
            return None
        db.execute("DROP TABLE monitor_results")
        db.execute("PRAGMA user_version = 1")
    start = time.perf_counter()
    Store(root).close()
    return time.perf_counter() - start


def measure(size: int, n: int, budget: float, log) -> dict:
    with tempfile.TemporaryDirectory(prefix="assay-bench-") as tmp:
        out = measure_store(Path(tmp) / "store", size, n, budget, log)
        out["upgrade_s"] = upgrade_seconds(Path(tmp) / "store")
        if out["upgrade_s"] is not None:
            log(f"  indexing {size + 10} results from their documents on upgrade: {out['upgrade_s']:.2f} s")
        return out


def measure_store(root: Path, size: int, n: int, budget: float, log) -> dict:
    with Store(root) as store:
        now = time.time()
        t0 = time.monotonic()
        seed(store, "busy", TEST_ID, size, now)
        seed(store, "quiet", OTHER_TEST_ID, 10, now)
        log(f"{size} results seeded in {time.monotonic() - t0:.1f}s")
        results = RunscopeResults(store, BASE)
        today = datetime.now(timezone.utc).date()
        calls = {
            "list (first page)": lambda: results.list_results(
                "busy", TEST_ID, count=10, since=None, before=None, subtests=False
            ),
            "list (before mid-day)": lambda: results.list_results(
                "busy", TEST_ID, count=10, since=None, before=now - DAY / 2, subtests=False
            ),
            "latest": lambda: results.result("busy", TEST_ID, "latest"),
            "metrics (day)": lambda: results.metrics(
                "busy", TEST_ID, now=time.time(), timeframe="day", environment_uuid="all", region="all"
            ),
            "bucket request count": lambda: results.bucket_usage("busy", today - timedelta(days=1), today),
        }
        out = {}
        for name, call in calls.items():
            out[name] = figures(timed(call, n, budget))
            log(f"  {name:24s} p50 {out[name]['p50']:9.2f} ms  p99 {out[name]['p99']:9.2f} ms  (n={out[name]['n']})")
        out["concurrent"] = concurrent_lists(results)
        log(
            f"  ten lists at once: {out['concurrent']['ten_lists_s']:.2f} s; the other bucket's list meanwhile: "
            f"{out['concurrent']['other_bucket_ms']:.1f} ms"
        )
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=int, nargs="+", default=[5000, 20000])
    parser.add_argument("--n", type=int, default=200, help="calls per endpoint")
    parser.add_argument("--budget", type=float, default=30.0, help="seconds per endpoint at most")
    parser.add_argument("--json", type=Path, help="write the numbers here too")
    args = parser.parse_args()
    report = {str(size): measure(size, args.n, args.budget, lambda m: print(m, flush=True)) for size in args.results}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
