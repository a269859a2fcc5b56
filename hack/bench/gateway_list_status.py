"""Latency of the XTC list and status endpoints with a big store behind the gateway.

    .venv/bin/python hack/bench/gateway_list_status.py [--runs 10000] [--loadtests 5] [--n 1000]
                                                       [--backends sqlite,postgresql] [--kubeconfig FILE]

What it sets up, all real:

* a control plane: `hack/localkube.py` in a temporary folder (or an existing cluster with
  `--kubeconfig`), the CRDs applied, a namespace labelled into an organization;
* a ClientCredential with the LOADTEST_LIST and LOADTEST_STATUS scopes, established by the
  real operator (started for that, then stopped: the LoadTests are not run);
* `--loadtests` LoadTest CRs, their status set as a finished two-shard run would leave it;
* the store, seeded directly through `Store`: `--runs` finished LoadTest runs in the same
  project (those of the LoadTests above and of many deleted ones), each with a result and a
  report archive, so the runs, counters and archives tables hold what a busy project's would;
* the gateway as a real uvicorn process (`python -m assay.api`) on that store.

For each store (`--backends`: SQLite and files, then PostgreSQL and S3 on servers started for
the run; a bulk-loaded PostgreSQL is analyzed and checkpointed first, as a database in service
would be) the gateway runs twice on the same cluster and store, one after the other: first
with `ASSAY_WATCH_CACHE=false` (every list of LoadTests reads the API server), then with the
watch-fed cache (api/kube.py WatchCache). Against each, with httpx from this process, one
request at a time (after a warm-up): `--n` calls of `GET .../loadTests` and `--n` of
`GET .../loadTests/{n}/status` (cycling over the load tests), each timed from sending to the
last byte. The table shows p50, p99, mean and max in milliseconds and requests per second,
side by side. Each request goes through token verification (the revocation check is a query
of the store's index), the tenancy check, the list of LoadTests (from the API server, or from
memory) and the store's queries.

Measured on the 2-core development machine (10,000 runs, 20,000 archives, 5 LoadTests, 1000
requests each); SQLite with other work running (load average ~2.9), PostgreSQL + S3 on its own
right after:

| endpoint                   | store      | reads  | requests |  p50 ms |  p99 ms | mean ms |  max ms |  req/s |
|----------------------------|------------|--------|----------|---------|---------|---------|---------|--------|
| GET /loadTests             | sqlite     | direct |     1000 |    3.39 |   10.20 |    3.63 |   13.47 |    276 |
| GET /loadTests             | sqlite     | cache  |     1000 |    1.20 |    4.84 |    1.61 |  132.53 |    621 |
| GET /loadTests             | postgresql | direct |     1000 |    2.61 |    6.58 |    2.85 |  101.84 |    351 |
| GET /loadTests             | postgresql | cache  |     1000 |    1.08 |    1.46 |    1.12 |   13.43 |    895 |
| GET /loadTests/{n}/status  | sqlite     | direct |     1000 |    3.10 |    8.42 |    3.34 |   20.95 |    300 |
| GET /loadTests/{n}/status  | sqlite     | cache  |     1000 |    1.15 |    3.90 |    1.24 |   13.11 |    808 |
| GET /loadTests/{n}/status  | postgresql | direct |     1000 |    2.87 |    6.60 |    3.02 |   19.35 |    332 |
| GET /loadTests/{n}/status  | postgresql | cache  |     1000 |    1.28 |    2.42 |    1.34 |    6.83 |    746 |

From the cache a request is token, tenancy, a sort of the namespace's LoadTests in memory and
the store's indexed queries: p50 1.1-1.3 ms on either store against 2.6-3.4 ms direct, p99
1.5-4.8 ms against 6.6-10.2 ms. The store's share does not grow with the number of runs
(every query is on an index: counters by key, archives by (project, load test)). Before the
gateway's first retention purge waited a few minutes after start-up, the PostgreSQL + S3 cache
figures had a p99 of 17-42 ms and maxima of 200 ms: the purge lists every stored object (30,000
keys from the bucket) right at start, in the middle of the measurement.
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.support.postgres import PostgresServer  # noqa: E402
from tests.support.s3 import S3Server  # noqa: E402

ORG = "bench-org"
PROJECT = "bench"
UPLOAD_KEY = "bench-upload-key-0123456789abcdef"
SIGNING_KEY = "bench-token-signing-key-0123456789abcdef"
SCOPES = "LOADTEST_LIST LOADTEST_STATUS"


def _load_localkube():
    spec = importlib.util.spec_from_file_location("hack_localkube", REPO / "hack" / "localkube.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class Kubectl:
    def __init__(self, kubeconfig: str, bin_dir: Path | None):
        self.kubeconfig = kubeconfig
        self.binary = str(bin_dir / "kubectl") if bin_dir else shutil.which("kubectl") or "kubectl"
        self.env = {**os.environ, "KUBECONFIG": kubeconfig}
        if bin_dir:
            self.env["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"

    def __call__(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [self.binary, *args], input=input, text=True, capture_output=True, env=self.env, timeout=120
        )
        if check and result.returncode != 0:
            raise SystemExit(f"kubectl {' '.join(args)}: {result.stderr}")
        return result

    def json(self, *args: str):
        out = self(*args, "-o", "json", check=False)
        return json.loads(out.stdout) if out.returncode == 0 else None


def wait_for(what: str, check, timeout: float = 60, interval: float = 0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise SystemExit(f"timed out waiting for {what}")


def loadtest(name: str) -> dict:
    return {
        "apiVersion": "assay.dev/v1alpha1",
        "kind": "LoadTest",
        "metadata": {"name": name},
        "spec": {
            "description": f"{name} under load",
            "shards": 2,
            "baseUrl": "http://127.0.0.1:9",
            "load": {"users": 10, "duration": "5m", "rampUp": "30s"},
            "flows": [{"name": "browse", "requests": [{"url": "/"}, {"url": "/items"}]}],
        },
    }


def finished_status(run_id: str) -> dict:
    return {
        "phase": "Succeeded",
        "result": "Passed",
        "runId": run_id,
        "jobName": run_id,
        "startTime": "2024-01-01T00:00:00Z",
        "completionTime": "2024-01-01T00:05:30Z",
        "shards": {"total": 2, "active": 0, "succeeded": 2, "failed": 0},
        "summary": {"requests": 120000, "failures": 12, "minMs": 0.8, "avgMs": 4.2, "maxMs": 310.0},
    }


def setup_cluster(kubectl: Kubectl, names: list[str], log) -> tuple[str, str, dict[str, str]]:
    crds = sorted(str(p) for p in (REPO / "crds").glob("*.yaml"))
    kubectl("apply", "--server-side", *sum((["-f", c] for c in crds), []))
    kubectl("wait", "--for=condition=Established", "--timeout=60s", *sum((["-f", c] for c in crds), []))
    kubectl("delete", "namespace", PROJECT, "--ignore-not-found", "--wait=true")
    kubectl("create", "namespace", PROJECT)
    kubectl("label", "namespace", PROJECT, f"assay.dev/org={ORG}")
    wait_for(
        "the default service account",
        lambda: kubectl("get", "serviceaccount", "default", "-n", PROJECT, check=False).returncode == 0,
    )
    kubectl(
        "apply",
        "-n",
        PROJECT,
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "assay.dev/v1alpha1",
                "kind": "ClientCredential",
                "metadata": {"name": "bench"},
                "spec": {"displayName": "bench", "scopes": SCOPES.split(), "grantTypes": ["client_credentials"]},
            }
        ),
    )
    log("starting the operator to establish the credential")
    operator = subprocess.Popen(
        [sys.executable, "-m", "assay.operator", "--namespace", PROJECT],
        cwd="/",
        env={**kubectl.env, "ASSAY_RUNNER_IMAGE": "assay/runner:bench"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        secret = wait_for(
            "the credential's Secret", lambda: kubectl.json("get", "secret", "bench-secret", "-n", PROJECT)
        )
    finally:
        operator.terminate()
        operator.wait(15)
    client_id = base64.b64decode(secret["data"]["client-id"]).decode()
    client_secret = base64.b64decode(secret["data"]["client-secret"]).decode()
    uids = {}
    for name in names:
        kubectl("apply", "-n", PROJECT, "-f", "-", input=json.dumps(loadtest(name)))
        uid = kubectl.json("get", "loadtest", name, "-n", PROJECT)["metadata"]["uid"]
        kubectl(
            "patch",
            "loadtest",
            name,
            "-n",
            PROJECT,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": finished_status(f"{name}-{uid[:8]}")}),
        )
        uids[name] = uid
    return client_id, client_secret, uids


def seed_store(store_dir: Path, backend: dict[str, str], runs: int, uids: dict[str, str], log) -> float:
    from assay.api.store import RunRecord, Store

    started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="bench-zip-"))
    store = Store(
        store_dir,
        retention_days=0,
        database_url=backend.get("ASSAY_DATABASE_URL"),
        objects_url=backend.get("ASSAY_OBJECTS_URL"),
    )
    try:
        owners = list(uids.items())
        now = time.time()
        for index in range(runs):
            if index < len(owners):
                name, uid = owners[index]
                run_id = f"{name}-{uid[:8]}"
            else:
                name, uid = f"deleted-{index}", str(uuid.uuid4())
                run_id = f"deleted-{index}-{uid[:8]}"
            created = now - (runs - index) * 60
            store.upsert_run(
                RunRecord(
                    run_id=run_id,
                    kind="LoadTest",
                    project=PROJECT,
                    owner_name=name,
                    owner_uid=uid,
                    state="succeeded",
                    result="passed",
                    created_at=created,
                    started_at=created,
                    finished_at=created + 330,
                    shards=2,
                    shards_received=2,
                    summary={
                        "requests": 120000,
                        "failures": 12,
                        "errorRatePct": 0.01,
                        "throughputRps": 363.6,
                        "meanMs": 4.2,
                        "p95Ms": 11.0,
                    },
                )
            )
            for kind in ("result", "report"):
                path = scratch / f"{kind}.zip"
                with zipfile.ZipFile(path, "w") as archive:
                    archive.writestr("index.html" if kind == "report" else "manifest.json", f"{run_id} {kind}")
                store.add_archive(run_id, kind, path, loadtest_uid=uid, project=PROJECT, move=True)
            if (index + 1) % 2000 == 0:
                log(f"  seeded {index + 1} runs")
    finally:
        store.close()
        shutil.rmtree(scratch, ignore_errors=True)
    return time.perf_counter() - started


def settle_postgres(url: str) -> None:
    """What a database in service has and one just bulk-loaded lacks: planner statistics for
    the new rows and their writes checkpointed, so neither autovacuum's analyze nor a
    checkpoint lands in the middle of the measurement."""
    import psycopg

    base, _, query = url.partition("?")
    schema = dict(part.split("=", 1) for part in query.split("&") if part).get("schema")
    with psycopg.connect(base, autocommit=True) as conn:
        if schema:
            conn.execute(f"SET search_path TO {schema}")
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")


def start_gateway(
    store_dir: Path, backend: dict[str, str], kubeconfig: str, port: int, log_path: Path, cached: bool
) -> subprocess.Popen:
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        **backend,
        "ASSAY_STORE_DIR": str(store_dir),
        "ASSAY_PUBLIC_URL": url,
        "ASSAY_UPLOAD_KEY": UPLOAD_KEY,
        "ASSAY_TOKEN_SIGNING_KEY": SIGNING_KEY,
        "ASSAY_KUBECONFIG": kubeconfig,
        "ASSAY_LOG_FORMAT": "json",
        "ASSAY_RETENTION_DAYS": "0",
        "ASSAY_WATCH_CACHE": "true" if cached else "false",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "assay.api", "--port", str(port)],
        cwd="/",
        env=env,
        stdout=open(log_path, "ab"),
        stderr=subprocess.STDOUT,
    )

    def healthy():
        if proc.poll() is not None:
            raise SystemExit(f"the gateway exited: see {log_path}")
        try:
            return httpx.get(url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for("the gateway", healthy, timeout=60, interval=0.2)
    return proc


def measure(client: httpx.Client, urls: list[str], n: int, warmup: int) -> list[float]:
    for i in range(warmup):
        client.get(urls[i % len(urls)]).raise_for_status()
    samples = []
    for i in range(n):
        url = urls[i % len(urls)]
        started = time.perf_counter()
        response = client.get(url)
        response.read()
        samples.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"GET {url}: {response.status_code} {response.text}")
    return samples


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, int(round(p / 100 * len(ordered) + 0.5)) - 1))]


def measure_gateway(url: str, client_id: str, client_secret: str, args) -> list[dict]:
    token = wait_for(
        "an access token",
        lambda: (lambda r: r.json().get("access_token") if r.status_code == 200 else None)(
            httpx.post(
                url + "/oauth/token",
                data={
                    "client_id": client_id,
                    "client_secret": client_secret,
                    "grant_type": "client_credentials",
                    "scope": SCOPES,
                },
            )
        ),
    )
    base = f"{url}/public/api/v1/orgs/{ORG}/projects/{PROJECT}/loadTests"
    rows = []
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        listing = client.get(base).json()
        numbers = [t["number"] for t in listing["loadTests"]]
        assert len(numbers) == args.loadtests, listing
        for label, urls in (
            ("GET /loadTests", [base]),
            ("GET /loadTests/{n}/status", [f"{base}/{n}/status" for n in numbers]),
        ):
            samples = measure(client, urls, args.n, args.warmup)
            rows.append(
                {
                    "endpoint": label,
                    "requests": len(samples),
                    "p50Ms": percentile(samples, 50),
                    "p99Ms": percentile(samples, 99),
                    "meanMs": statistics.fmean(samples),
                    "maxMs": max(samples),
                    "rps": len(samples) / (sum(samples) / 1000),
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10_000, help="runs seeded into the store")
    parser.add_argument("--loadtests", type=int, default=5, help="LoadTest CRs in the project")
    parser.add_argument("--n", type=int, default=1000, help="timed requests per endpoint")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--kubeconfig", help="use this cluster instead of starting hack/localkube.py")
    parser.add_argument(
        "--backends",
        default="sqlite,postgresql",
        help="the stores to measure, one after the other: sqlite (SQLite and files) and postgresql "
        "(PostgreSQL and S3, on servers started for the run)",
    )
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not backends or set(backends) - {"sqlite", "postgresql"}:
        parser.error("--backends takes sqlite, postgresql or both")

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    work = Path(tempfile.mkdtemp(prefix="assay-bench-gateway-"))
    localkube = None
    gateway = None
    servers: list = []
    try:
        if args.kubeconfig:
            kubeconfig, bin_dir = args.kubeconfig, None
        else:
            localkube = _load_localkube()
            state = localkube.up(work / "localkube", log=log)
            kubeconfig, bin_dir = state.kubeconfig, localkube.kube_bin_dir()
        kubectl = Kubectl(kubeconfig, bin_dir)
        names = [f"checkout-{i}" for i in range(1, args.loadtests + 1)]
        client_id, client_secret, uids = setup_cluster(kubectl, names, log)
        rows = []
        for name in backends:
            backend: dict[str, str] = {}
            if name == "postgresql":
                log("starting PostgreSQL and SeaweedFS's S3")
                postgres, s3 = PostgresServer(durable=True).start(), S3Server().start()
                servers += [postgres, s3]
                os.environ.update(s3.env)  # boto3's credentials, here and in the gateway
                backend = {"ASSAY_DATABASE_URL": postgres.fresh_url(), "ASSAY_OBJECTS_URL": s3.fresh_url()}
            store_dir = work / f"store-{name}"
            log(f"seeding {args.runs} runs with their archives ({name})")
            seed_seconds = seed_store(store_dir, backend, args.runs, uids, log)
            log(f"  {seed_seconds:.1f}s")
            if name == "postgresql":
                settle_postgres(backend["ASSAY_DATABASE_URL"])
            for mode, cached in (("direct", False), ("cache", True)):
                port = _load_localkube().free_port() if localkube is None else localkube.free_port()
                log_path = work / f"gateway-{name}-{mode}.log"
                gateway = start_gateway(store_dir, backend, kubeconfig, port, log_path, cached)
                rows += [
                    {"backend": name, "mode": mode, **row}
                    for row in measure_gateway(f"http://127.0.0.1:{port}", client_id, client_secret, args)
                ]
                gateway.terminate()
                gateway.wait(15)
                gateway = None
        print(
            f"\nXTC gateway latency: {args.runs:,} runs and {2 * args.runs:,} archives in the store, "
            f"{args.loadtests} LoadTests, one request at a time, {args.n} requests each; LoadTests read "
            "from the API server on every call (direct) and from the watch-fed cache (cache)\n"
        )
        print(
            f"| {'endpoint':<26} | {'store':<10} | {'reads':<6} | {'requests':>8} | {'p50 ms':>7} | {'p99 ms':>7} | "
            f"{'mean ms':>7} | {'max ms':>7} | {'req/s':>6} |"
        )
        print(f"|{'-' * 28}|{'-' * 12}|{'-' * 8}|{'-' * 10}|{'-' * 9}|{'-' * 9}|{'-' * 9}|{'-' * 9}|{'-' * 8}|")
        for row in sorted(rows, key=lambda r: (r["endpoint"], backends.index(r["backend"]), r["mode"] != "direct")):
            print(
                f"| {row['endpoint']:<26} | {row['backend']:<10} | {row['mode']:<6} | {row['requests']:>8} | "
                f"{row['p50Ms']:>7.2f} | {row['p99Ms']:>7.2f} | {row['meanMs']:>7.2f} | {row['maxMs']:>7.2f} | "
                f"{row['rps']:>6.0f} |"
            )
        if args.json:
            Path(args.json).write_text(
                json.dumps({"runs": args.runs, "loadtests": args.loadtests, "rows": rows}, indent=2)
            )
    finally:
        if gateway is not None:
            gateway.terminate()
            try:
                gateway.wait(15)
            except subprocess.TimeoutExpired:
                gateway.kill()
        for server in servers:
            server.stop()
        if localkube is not None:
            localkube.down(work / "localkube", log=log)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
