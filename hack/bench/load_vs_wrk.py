#!/usr/bin/env python3
"""The Assay load engine side by side with wrk and Locust, against the same loopback target.

    python hack/bench/load_vs_wrk.py [--duration 10] [--users 50] [--skip-locust] [--scenario]
                                     [--skip-extra | --skip-scaling] [--json OUT]

One run of each, in turn, against nginx serving a small static file (a uvloop Python server
when nginx is missing), the target pinned to core 0 and each load tool to core 1:

    wrk      taskset -c 1 wrk -t1 -c50 -d10s URL
    locust   taskset -c 1 locust --headless -u 50 -r 50 -t 10s (FastHttpUser, no wait)
    assay    taskset -c 1 python -m assay.runner run bench.yaml  (50 closed-model users, 10 s,
             latency histograms and status checks on, as always)
    scenario (--scenario) the same 50 users as users: each keeps the session cookie the
             target sets on every response (a refreshed session) and sends it back, sends
             an `X-User: user-{{user}}` header templated from a per_user pool, and checks
             one JSON path of the body; the ratio is to plain wrk, which does none of this

then prints requests/s and the ratio to wrk. And two engine-only measurements:

    memory   resident memory per virtual user with 10,000 users, mostly idle in think time:
             (RSS with all users running - RSS before the run) / users
    scaling  the engine as 1 process vs 2 processes with half the users each
             (`--processes 2`): both on core 1 (what splitting costs), and on cores 0-1
             (what a second core gives - on this 2-core box it shares core 0 with nginx)

`hack/bench/install.sh` installs nginx, wrk and Locust. Everything stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
BODY = b"Hello from the Assay benchmark target.\n" * 3  # 117 bytes
SCENARIO_BODY = b'{"ok": true, "user": {"id": 17, "name": "bench"}, "items": [1, 2, 3]}\n'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def have(tool: str) -> bool:
    return shutil.which(tool) is not None or Path(f"/usr/sbin/{tool}").exists()


def pinned(core: str, args: list[str]) -> list[str]:
    return ["taskset", "-c", core, *args] if have("taskset") else args


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"target did not listen on {port}")


# --- the target -------------------------------------------------------------------------------

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 120s;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {dir}/www;
        location / {{ }}
        location = /scenario.json {{
            default_type application/json;
            add_header Set-Cookie "sid=bench-session; Path=/; Max-Age=3600";
        }}
    }}
}}
"""

FALLBACK_SERVER = """
import asyncio, sys, uvloop
BODY = open(sys.argv[2], "rb").read()
RESPONSE = (b"HTTP/1.1 200 OK\\r\\nContent-Type: text/plain\\r\\nContent-Length: %d\\r\\n\\r\\n" % len(BODY)) + BODY
class P(asyncio.Protocol):
    def connection_made(self, t): self.t, self.buf = t, b""
    def data_received(self, d):
        self.buf += d
        n = self.buf.count(b"\\r\\n\\r\\n")
        if n:
            self.buf = self.buf[self.buf.rfind(b"\\r\\n\\r\\n") + 4:]
            self.t.write(RESPONSE * n)
async def main():
    server = await asyncio.get_running_loop().create_server(P, "127.0.0.1", int(sys.argv[1]), backlog=4096)
    await server.serve_forever()
uvloop.run(main())
"""


class Target:
    def __init__(self, workdir: Path):
        self.dir = workdir
        self.port = free_port()
        (workdir / "www").mkdir()
        (workdir / "www" / "index.txt").write_bytes(BODY)
        (workdir / "www" / "scenario.json").write_bytes(SCENARIO_BODY)
        # nginx started as root serves as `nobody`, which must be able to read the files.
        for path in (workdir, workdir / "www", workdir / "www" / "index.txt", workdir / "www" / "scenario.json"):
            path.chmod(0o755)
        self.url = f"http://127.0.0.1:{self.port}/index.txt"
        self.kind = "nginx" if have("nginx") else "python-uvloop"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Target:
        if self.kind == "nginx":
            conf = self.dir / "nginx.conf"
            conf.write_text(NGINX_CONF.format(dir=self.dir, port=self.port))
            nginx = shutil.which("nginx") or "/usr/sbin/nginx"
            args = [nginx, "-c", str(conf), "-p", str(self.dir), "-e", str(self.dir / "error.log")]
        else:
            script = self.dir / "server.py"
            script.write_text(FALLBACK_SERVER)
            args = [PYTHON, str(script), str(self.port), str(self.dir / "www" / "index.txt")]
        self.proc = subprocess.Popen(
            pinned("0", args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        wait_for_port(self.port)
        return self

    def cpu_seconds(self) -> float:
        """CPU time used so far by the target's processes (nginx master and workers)."""
        total = 0.0
        tick = os.sysconf("SC_CLK_TCK")
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            pid, ppid = int(stat.parent.name), int(fields[1])
            if self.proc and self.proc.pid in (pid, ppid):
                total += (int(fields[11]) + int(fields[12])) / tick
        return total

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


# --- the tools --------------------------------------------------------------------------------


def measured(target: Target, run) -> dict:
    """Run one tool and add how busy it and the target were: a tool below 100% of its core
    while the target is below 100% of its own is waiting on round trips, not on CPU."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    target_before = target.cpu_seconds()
    started = time.monotonic()
    row = run()
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    tool = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    row["tool_cpu"] = tool / wall
    row["target_cpu"] = (target.cpu_seconds() - target_before) / wall
    return row


def run_wrk(url: str, users: int, duration: int) -> dict:
    out = subprocess.run(
        pinned("1", ["wrk", "-t1", f"-c{users}", f"-d{duration}s", "--latency", url]),
        capture_output=True,
        text=True,
        timeout=duration + 60,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "tool": "wrk",
        "command": f"taskset -c 1 wrk -t1 -c{users} -d{duration}s --latency {url}",
        "rps": rps,
        "p99": f"{p99.group(1)}{p99.group(2)}" if p99 else None,
        "errors": int(errors.group(1)) if errors else 0,
    }


LOCUSTFILE = """
from locust import FastHttpUser, constant, task

class Reader(FastHttpUser):
    wait_time = constant(0)

    @task
    def read(self):
        self.client.get("/index.txt")
"""


def run_locust(base: str, users: int, duration: int, workdir: Path) -> dict | None:
    locust = Path(PYTHON).with_name("locust")
    if not locust.exists():
        return None
    (workdir / "locustfile.py").write_text(LOCUSTFILE)
    prefix = workdir / "locust"
    args = [
        str(locust),
        "-f",
        str(workdir / "locustfile.py"),
        "--headless",
        "-u",
        str(users),
        "-r",
        str(users),
        "-t",
        f"{duration}s",
        "-H",
        base,
        "--only-summary",
        "--csv",
        str(prefix),
        "--loglevel",
        "ERROR",
    ]
    subprocess.run(pinned("1", args), capture_output=True, text=True, timeout=duration + 60, cwd=workdir)
    rows = (prefix.parent / (prefix.name + "_stats.csv")).read_text().splitlines()
    header = rows[0].split(",")
    total = next(r.split(",") for r in rows[1:] if ",Aggregated," in r)
    stats = dict(zip(header, total))
    return {
        "tool": "locust",
        "command": f"taskset -c 1 locust --headless -u {users} -r {users} -t {duration}s (FastHttpUser, constant(0))",
        "rps": float(stats["Requests/s"]),
        "p99": f"{stats['99%']}ms",
        "errors": int(stats["Failure Count"]),
    }


def loadtest_yaml(url: str, users: int, duration: str, think: str = "0s", ramp_up: str = "0s") -> str:
    return textwrap.dedent(f"""\
        apiVersion: assay.dev/v1alpha1
        kind: LoadTest
        metadata: {{name: bench}}
        spec:
          load: {{model: closed, users: {users}, duration: {duration}, rampUp: {ramp_up}}}
          requestTimeout: 10s
          flows:
            - name: read
              thinkTime: {think}
              requests: [{{name: index, url: "{url}"}}]
        """)


def scenario_yaml(url: str, users: int, duration: str) -> str:
    rows = "".join(f"        {k}\n" for k in range(users))
    return (
        textwrap.dedent(f"""\
        apiVersion: assay.dev/v1alpha1
        kind: LoadTest
        metadata: {{name: bench-scenario}}
        spec:
          load: {{model: closed, users: {users}, duration: {duration}}}
          requestTimeout: 10s
          flows:
            - name: read
              requests:
                - name: scenario
                  url: "{url}"
                  headers: {{X-User: "user-{{{{user}}}}"}}
                  assertions:
                    - {{source: response_json, property: user.id, comparison: equal_number, value: 17}}
          parameterPools:
            - name: users
              mode: per_user
              csv: |
                user
        """)
        + rows
    )


def run_assay(
    url: str,
    users: int,
    duration: int,
    workdir: Path,
    *,
    processes: int = 1,
    cores: str = "1",
    label: str = "assay",
    scenario: bool = False,
) -> dict:
    spec = workdir / f"{label}.yaml"
    if scenario:
        spec.write_text(scenario_yaml(url.rsplit("/", 1)[0] + "/scenario.json", users, f"{duration}s"))
    else:
        spec.write_text(loadtest_yaml(url, users, f"{duration}s"))
    out = workdir / f"{label}.json"
    args = [PYTHON, "-m", "assay.runner", "run", str(spec), "--out", str(out), "--processes", str(processes)]
    result = subprocess.run(pinned(cores, args), capture_output=True, text=True, timeout=duration + 120, cwd=REPO)
    if not out.exists():
        raise RuntimeError(f"assay run failed: {result.stderr[-2000:]}")
    metrics = json.loads(out.read_text())
    total = metrics["total"]
    started = _epoch(metrics["startedAt"])
    finished = _epoch(metrics["finishedAt"])
    command = f"taskset -c {cores} python -m assay.runner run {spec.name} --processes {processes}"
    return {
        "tool": label,
        "command": command,
        "rps": total["count"] / (finished - started),
        "p99": f"{total['p99Ms']}ms",
        "errors": sum(total["errors"].values()),
        "requests": total["count"],
    }


def _epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# --- memory per virtual user ------------------------------------------------------------------

MEMORY_CHILD = """
import asyncio, json, sys, time
from assay.crds.loadtest import LoadTestSpec
from assay.runner.load import run, run_load_shard
import yaml

def rss_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

spec = LoadTestSpec.model_validate(yaml.safe_load(open(sys.argv[1]))["spec"])
users = spec.load.users
samples = []
def progress(p):
    samples.append((p.active_users, rss_kib(), p.rps))
# Warm up: one short run of a few users so the imports and first allocations are in the baseline.
warm = spec.model_copy(deep=True)
warm.load.users, warm.load.duration, warm.load.ramp_up = 10, "1s", "0s"
run(run_load_shard(warm, 0, 1))
before = rss_kib()
metrics = run(run_load_shard(spec, 0, 1, on_progress=progress))
full = [s for s in samples if s[0] >= users]
peak = max(s[1] for s in full) if full else max(s[1] for s in samples)
print(json.dumps({"users": users, "rss_before_kib": before, "rss_with_users_kib": peak,
                  "per_user_bytes": (peak - before) * 1024 / users, "requests": metrics.total.count,
                  "errors": metrics.total.error_count, "rps_while_full": sum(s[2] for s in full) / max(len(full), 1)}))
"""


def measure_memory(url: str, users: int, workdir: Path) -> dict:
    spec = workdir / "memory.yaml"
    spec.write_text(loadtest_yaml(url, users, "8s", think="5s", ramp_up="4s"))
    script = workdir / "memory_child.py"
    script.write_text(MEMORY_CHILD)
    result = subprocess.run(
        pinned("1", [PYTHON, str(script), str(spec)]), capture_output=True, text=True, timeout=120, cwd=REPO
    )
    if result.returncode:
        raise RuntimeError(result.stderr[-2000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


# --- main -------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--memory-users", type=int, default=10_000)
    parser.add_argument("--skip-locust", action="store_true")
    parser.add_argument("--skip-extra", action="store_true", help="only wrk / locust / assay")
    parser.add_argument("--skip-scaling", action="store_true", help="no 2-process runs")
    parser.add_argument("--scenario", action="store_true", help="also the scenario run (cookies, check, template)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if not have("wrk"):
        print("wrk is not installed: run hack/bench/install.sh", file=sys.stderr)
        return 2
    results: dict = {"cores": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="assay-bench-") as tmp:
        workdir = Path(tmp)
        with Target(workdir) as target:
            base = target.url.rsplit("/", 1)[0]
            results["target"] = target.kind
            print(
                f"target: {target.kind} on core 0 at {target.url}; load tools on core 1; "
                f"{args.users} connections/users, {args.duration} s each",
                flush=True,
            )
            rows = [measured(target, lambda: run_wrk(target.url, args.users, args.duration))]
            if not args.skip_locust and Path(PYTHON).with_name("locust").exists():
                rows.append(measured(target, lambda: run_locust(base, args.users, args.duration, workdir)))
            rows.append(measured(target, lambda: run_assay(target.url, args.users, args.duration, workdir)))
            if args.scenario:
                if target.kind != "nginx":
                    print("the scenario run needs nginx (hack/bench/install.sh): skipped", file=sys.stderr)
                else:
                    rows.append(
                        measured(
                            target,
                            lambda: run_assay(
                                target.url, args.users, args.duration, workdir, label="scenario", scenario=True
                            ),
                        )
                    )
            wrk_rps = rows[0]["rps"]
            print(
                f"\n{'tool':<10} {'requests/s':>12} {'vs wrk':>8} {'p99':>10} {'errors':>7} {'tool CPU':>9} "
                f"{'target CPU':>11}"
            )
            for row in rows:
                row["ratio_to_wrk"] = row["rps"] / wrk_rps
                print(
                    f"{row['tool']:<10} {row['rps']:>12.0f} {row['ratio_to_wrk']:>7.0%} {row['p99'] or '-':>10} "
                    f"{row['errors']:>7} {row['tool_cpu']:>9.0%} {row['target_cpu']:>11.0%}"
                )
            for row in rows:
                print(f"  {row['tool']}: {row['command']}")
            results["throughput"] = rows
            if not args.skip_extra:
                memory = measure_memory(target.url, args.memory_users, workdir)
                results["memory"] = memory
                print(
                    f"\nmemory: {memory['users']} users: RSS {memory['rss_before_kib'] / 1024:.1f} MiB before, "
                    f"{memory['rss_with_users_kib'] / 1024:.1f} MiB with all running -> "
                    f"{memory['per_user_bytes'] / 1024:.2f} KiB per virtual user "
                    f"({memory['rps_while_full']:.0f} req/s while full, {memory['errors']} errors)"
                )
            if not args.skip_extra and not args.skip_scaling:
                one = next(row for row in rows if row["tool"] == "assay")
                two_same = measured(
                    target,
                    lambda: run_assay(
                        target.url, args.users, args.duration, workdir, processes=2, cores="1", label="assay-2p-core1"
                    ),
                )
                two_both = measured(
                    target,
                    lambda: run_assay(
                        target.url,
                        args.users,
                        args.duration,
                        workdir,
                        processes=2,
                        cores="0,1",
                        label="assay-2p-cores01",
                    ),
                )
                results["scaling"] = {
                    "one_process": one,
                    "two_processes_core1": two_same,
                    "two_processes_cores01": two_both,
                }
                print(
                    f"scaling: 1 process {one['rps']:.0f} req/s; 2 processes on core 1 {two_same['rps']:.0f} "
                    f"({two_same['rps'] / one['rps']:.2f}x); 2 processes on cores 0-1 (with nginx on 0) "
                    f"{two_both['rps']:.0f} ({two_both['rps'] / one['rps']:.2f}x; engine CPU "
                    f"{two_both['tool_cpu']:.0%}, nginx {two_both['target_cpu']:.0%})"
                )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
