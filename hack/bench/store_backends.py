"""The store on SQLite and files (the default), on PostgreSQL and files, and on PostgreSQL and S3,
side by side: result ingest per second, and the latency of the run list and of one run's status
with many runs.

    .venv/bin/python hack/bench/store_backends.py [--runs 10000] [--uploads 1000] [--threads 8]
                                                  [--n 2000] [--json OUT]

PostgreSQL is Debian's (hack/install-postgres.sh), a throwaway server on a loopback port with
fsync on, as a production one runs (SQLite runs with synchronous=FULL, as the gateway's does);
S3 is SeaweedFS (hack/install-seaweedfs.sh), also on loopback. For each:

* ingest: `--uploads` Monitor results through the real write path (`ResultIngest.accept`, what
  the gateway's ingest endpoint calls), from `--threads` threads (FastAPI's pool does the
  same); on PostgreSQL also with two stores over the same database (and bucket), as two
  replicas taking half the uploads each: uploads per second in all, and per replica;
* reads, with `--runs` runs of 50 projects in the index: `--n` calls each of the first page of a
  project's runs (50, newest first; what the load-test list reads), the first page of all runs,
  and one run by id (a run's status): p50 and p99 in ms, one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from assay.api.store import ResultIngest, Store, Upload  # noqa: E402
from assay.api.store.store import _UPSERT_RUN  # noqa: E402
from tests.support.postgres import PostgresServer  # noqa: E402
from tests.support.s3 import S3Server  # noqa: E402

PROJECTS = [f"team-{i}" for i in range(50)]


def result_upload(n: int) -> Upload:
    doc = {"result": "pass", "started_at": time.time(), "finished_at": time.time() + 0.2, "requests_executed": 2}
    return Upload(
        run_id=f"health-{n:08d}",
        name="monitor-result.json",
        data=json.dumps(doc).encode(),
        kind="Monitor",
        project=PROJECTS[n % len(PROJECTS)],
        owner_name="health",
        owner_uid=f"m-{n % 100}",
    )


def ingest(stores: list[Store], uploads: int, threads: int, offset: int) -> float:
    """Uploads per second through `stores`, spread evenly."""
    ingests = [ResultIngest(store) for store in stores]
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda n: ingests[n % len(ingests)].accept(result_upload(offset + n)), range(uploads)))
    return uploads / (time.perf_counter() - start)


def seed_runs(store: Store, runs: int) -> list[str]:
    """`runs` load-test runs in one transaction (their ingest is measured above)."""
    now = time.time()
    ids = []
    with store._write() as tx:
        for n in range(runs):
            run_id = f"lt-{n:08d}"
            ids.append(run_id)
            created = now - (runs - n)
            tx.execute(
                _UPSERT_RUN,
                (
                    run_id,
                    "LoadTest",
                    PROJECTS[n % len(PROJECTS)],
                    "checkout",
                    f"lt-uid-{n % 200}",
                    "succeeded",
                    "passed",
                    created,
                    created,
                    created + 60,
                    2,
                    2,
                    json.dumps({"requests": 1000, "p95Ms": 12.5}),
                    "{}",
                    created,
                ),
            )
    return ids


def latency(call, n: int) -> dict:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return {
        "p50Ms": round(statistics.median(samples), 3),
        "p99Ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))], 3),
    }


def bench(name: str, make, args) -> dict:
    out: dict = {"index": name}
    with make() as store:
        out["ingestPerS"] = round(ingest([store], args.uploads, args.threads, 0), 1)
    if name != "sqlite":
        replicas = [make(), make()]
        try:
            total = ingest(replicas, args.uploads, args.threads, args.uploads)
        finally:
            for store in replicas:
                store.close()
        out["ingestPerSTwoReplicas"] = round(total, 1)
        out["ingestPerSPerReplica"] = round(total / 2, 1)
    with make() as store:
        ids = seed_runs(store, args.runs)
        rng = random.Random(1)
        out["listProject"] = latency(lambda: store.list_runs(project=rng.choice(PROJECTS), limit=50), args.n)
        out["listAll"] = latency(lambda: store.list_runs(limit=50), args.n)
        out["status"] = latency(lambda: store.get_run(rng.choice(ids)), args.n)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--uploads", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "sqlite"
        results.append(bench("sqlite", lambda: Store(root), args))
        server, s3 = PostgresServer(durable=True).start(), S3Server().start()
        os.environ.update(s3.env)
        try:
            url = server.fresh_url()
            results.append(bench("postgresql", lambda: Store(Path(tmp) / "pg", database_url=url), args))
            url, objects = server.fresh_url(), s3.fresh_url()
            results.append(bench("pg+s3", lambda: Store(Path(tmp) / "s3", database_url=url, objects_url=objects), args))
        finally:
            server.stop()
            s3.stop()
    print(f"{'index':<11} {'ingest/s':>9} {'2 replicas/s':>13} {'list p50/p99 ms':>17} {'list all':>14} {'status':>14}")
    for r in results:
        two = (
            f"{r['ingestPerSTwoReplicas']:.0f} ({r['ingestPerSPerReplica']:.0f} each)"
            if "ingestPerSTwoReplicas" in r
            else "-"
        )
        print(
            f"{r['index']:<11} {r['ingestPerS']:>9.0f} {two:>13} "
            f"{r['listProject']['p50Ms']:>8.2f}/{r['listProject']['p99Ms']:<8.2f} "
            f"{r['listAll']['p50Ms']:>6.2f}/{r['listAll']['p99Ms']:<7.2f} "
            f"{r['status']['p50Ms']:>6.3f}/{r['status']['p99Ms']:<7.3f}"
        )
    if args.json:
        args.json.write_text(json.dumps({"runs": args.runs, "uploads": args.uploads, "results": results}, indent=2))


if __name__ == "__main__":
    main()
