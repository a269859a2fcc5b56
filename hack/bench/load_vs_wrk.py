#!/usr/bin/env python3
"""The Assay load engine side by side with wrk, bombardier, vegeta and Locust, against the
same loopback target: requests/s and CPU time per request of each.

    python hack/bench/load_vs_wrk.py [--duration 10] [--users 50] [--skip-locust] [--scenario]
                                     [--skip-extra | --skip-scaling | --skip-features] [--json OUT]

One run of each, in turn, against nginx serving a small static file (a uvloop Python server
when nginx is missing), the target pinned to core 0 and each load tool to core 1, closed
loop (each connection or user sends its next request when the last response is in):

    wrk         taskset -c 1 wrk -t1 -c50 -d10s URL
    bombardier  taskset -c 1 bombardier -c50 -d10s URL
    vegeta      taskset -c 1 vegeta attack -rate=0 -workers=50 -max-workers=50 -duration=10s
    locust      taskset -c 1 locust --headless -u 50 -r 50 -t 10s (FastHttpUser, no wait)
    assay       taskset -c 1 python -m assay.runner run bench.yaml  (50 closed-model users, 10 s,
                latency histograms and status checks on, as always)

With --scenario, the same with the users behaving like users, where the tool can: each keeps
the session cookie the target sets on every response and sends it back, sends an
`X-User: user-N` header (Assay: templated from a per_user pool) and checks one JSON path of
the body. wrk does it in Lua (a substring search of the body, not a JSON parse), Locust in
its user class; bombardier and vegeta send one fixed request, so they run plain GET only.

CPU time per request: the tool's user+sys CPU (its process tree, from getrusage of the reaped
child) / requests completed; for the engine, the CPU sampled from /proc over its load window
(startedAt-finishedAt of its metrics), without the interpreter's start. Ratios are to wrk on
the same workload. Then, engine only:

    features the cost of each engine feature as CPU µs per request, each step adding one:
             plain; + cookies (the target sets one); + one JSON check; + one templated
             header (the scenario); + a redirect followed (302 to the scenario's file)
    memory   resident memory per virtual user with 10,000 users, mostly idle in think time:
             (RSS with all users running - RSS before the run) / users
    scaling  the engine as 1 process vs 2 processes with half the users each
             (`--processes 2`): both on core 1 (what splitting costs), and on cores 0-1
             (what a second core gives - on this 2-core box it shares core 0 with nginx)

`hack/bench/install.sh` installs nginx, wrk and Locust, and builds bombardier and vegeta.
Everything stays on 127.0.0.1.
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
import threading
import time
from pathlib import Path
from typing import Optional

from assay.crds.times import epoch

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
        location = /cookie.txt {{
            add_header Set-Cookie "sid=bench-session; Path=/; Max-Age=3600";
        }}
        location = /redirect {{
            absolute_redirect off;
            return 302 /scenario.json;
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
        (workdir / "www" / "cookie.txt").write_bytes(BODY)
        (workdir / "www" / "scenario.json").write_bytes(SCENARIO_BODY)
        # nginx started as root serves as `nobody`, which must be able to read the files.
        for path in (workdir, workdir / "www", *(workdir / "www").iterdir()):
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

TOOLS_DIR = Path(os.environ.get("ASSAY_CACHE", Path.home() / ".cache" / "assay")) / "bench-tools"


def tool_path(name: str) -> Optional[str]:
    """bombardier and vegeta as hack/bench/install.sh builds them, else from PATH."""
    built = TOOLS_DIR / name
    return str(built) if built.exists() else shutil.which(name)


def _tree_cpu(pid: int, tick: int) -> float:
    """CPU seconds of a process and its descendants so far; children already reaped are in
    the parent's cutime/cstime."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    total = sum(int(f) for f in fields[11:15]) / tick
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            children = task.read_text().split()
        except OSError:
            continue
        total += sum(_tree_cpu(int(child), tick) for child in children)
    return total


class Sampler(threading.Thread):
    """The CPU time of a tool's process tree against the wall clock, every 50 ms: the part
    spent between two instants (an engine's load window, without its interpreter start)."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.tick = pid, os.sysconf("SC_CLK_TCK")
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            self.samples.append((time.time(), _tree_cpu(self.pid, self.tick)))

    def cpu_at(self, when: float) -> float:
        samples = self.samples
        if not samples:
            return 0.0
        for (t0, c0), (t1, c1) in zip(samples, samples[1:]):
            if t0 <= when <= t1:
                return c0 + (c1 - c0) * (when - t0) / max(t1 - t0, 1e-9)
        return samples[0][1] if when < samples[0][0] else samples[-1][1]

    def between(self, start: float, end: float) -> float:
        return self.cpu_at(end) - self.cpu_at(start)


def run_tool(args: list[str], timeout: float, cwd: Optional[Path] = None) -> tuple[str, str, float, Sampler]:
    """Run one load tool; its stdout, stderr, user+sys CPU seconds (its whole process tree,
    from the kernel's accounting of reaped children) and the sampled CPU over time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)
    sampler = Sampler(proc.pid)
    sampler.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        sampler.stop.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return out, err, cpu, sampler


def measured(target: Target, run) -> Optional[dict]:
    """Run one tool and add how busy it and the target were: a tool below 100% of its core
    while the target is below 100% of its own is waiting on round trips, not on CPU; and the
    tool's CPU time per completed request. None for a tool that is not installed."""
    target_before = target.cpu_seconds()
    started = time.monotonic()
    row = run()
    if row is None:
        return None
    wall = time.monotonic() - started
    row["tool_cpu"] = row["cpu_seconds"] / wall
    row["target_cpu"] = (target.cpu_seconds() - target_before) / wall
    row["cpu_us_per_request_whole"] = row["cpu_seconds"] * 1e6 / max(row["requests"], 1)
    # The load window when the tool reports one (the engine's interpreter start and spec
    # parsing are not per-request work); the whole process otherwise (wrk, bombardier and
    # vegeta start in milliseconds; Locust's start, about a second, stays in).
    window = row.get("window_cpu_seconds", row["cpu_seconds"])
    row["cpu_us_per_request"] = window * 1e6 / max(row["requests"], 1)
    return row


WRK_SCENARIO = """
-- The scenario as far as wrk goes: the session cookie echoed, the X-User header from a
-- counter, the body searched for the id (a substring, not a JSON parse). One Lua state
-- per thread, so the 50 connections of -t1 share one cookie, as the target sets one value.
cookie = nil
n = 0
check_failures = 0
local threads = {}

function setup(thread)
    table.insert(threads, thread)
end

request = function()
    n = n + 1
    local headers = {["X-User"] = "user-" .. (n % 50)}
    if cookie then headers["Cookie"] = cookie end
    return wrk.format("GET", "/scenario.json", headers)
end

response = function(status, headers, body)
    local set = headers["Set-Cookie"]
    if set then cookie = set:match("^[^;]+") end
    if not body:find('"id": 17', 1, true) then check_failures = check_failures + 1 end
end

done = function(summary, latency, requests)
    local failures = 0
    for _, thread in ipairs(threads) do failures = failures + thread:get("check_failures") end
    io.write("check failures: " .. failures .. "\\n")
end
"""


def run_wrk(url: str, users: int, duration: int, workdir: Path, scenario: bool = False) -> dict:
    args = ["wrk", "-t1", f"-c{users}", f"-d{duration}s", "--latency"]
    if scenario:
        (workdir / "scenario.lua").write_text(WRK_SCENARIO)
        args += ["-s", str(workdir / "scenario.lua")]
        url = url.rsplit("/", 1)[0] + "/scenario.json"
    args.append(url)
    out, _, cpu, _ = run_tool(pinned("1", args), timeout=duration + 60)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    failures = re.search(r"check failures: (\d+)", out)
    return {
        "tool": "wrk",
        "workload": "scenario" if scenario else "plain",
        "command": "taskset -c 1 "
        + " ".join(args[:-1] + ([] if not scenario else []) + [url]).replace(str(workdir) + "/", ""),
        "rps": rps,
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "cpu_seconds": cpu,
        "p99": f"{p99.group(1)}{p99.group(2)}" if p99 else None,
        "errors": (int(errors.group(1)) if errors else 0) + (int(failures.group(1)) if failures else 0),
        "note": "Lua: cookie echo, X-User header, substring check of the body" if scenario else "",
    }


def run_bombardier(url: str, users: int, duration: int) -> Optional[dict]:
    binary = tool_path("bombardier")
    if binary is None:
        return None
    args = [binary, f"-c{users}", f"-d{duration}s", "-l", "-o", "j", "-p", "r", url]
    out, _, cpu, _ = run_tool(pinned("1", args), timeout=duration + 60)
    result = json.loads(out)["result"]
    ok = result["req2xx"] + result["req3xx"]
    total = ok + result["req1xx"] + result["req4xx"] + result["req5xx"] + result["others"]
    p99 = result["latency"].get("percentiles", {}).get("99")
    return {
        "tool": "bombardier",
        "workload": "plain",
        "command": f"taskset -c 1 bombardier -c{users} -d{duration}s -l -o j -p r {url}",
        "rps": total / result["timeTakenSeconds"],
        "requests": total,
        "cpu_seconds": cpu,
        "p99": f"{p99 / 1000:.2f}ms" if p99 is not None else None,
        "errors": total - ok,
        "note": "",
    }


def run_vegeta(url: str, users: int, duration: int, workdir: Path) -> Optional[dict]:
    binary = tool_path("vegeta")
    if binary is None:
        return None
    (workdir / "vegeta-targets.txt").write_text(f"GET {url}\n")
    results = workdir / "vegeta.bin"
    # -rate=0 with a fixed set of workers: closed-loop, each worker sends its next request
    # when its response is in, as the other tools do.
    args = [
        binary, "attack", "-rate=0", f"-workers={users}", f"-max-workers={users}", f"-duration={duration}s",
        "-targets", str(workdir / "vegeta-targets.txt"), "-output", str(results),
    ]  # fmt: skip
    _, err, cpu, _ = run_tool(pinned("1", args), timeout=duration + 60)
    if not results.exists():
        raise RuntimeError(f"vegeta failed: {err[-2000:]}")
    report = json.loads(
        subprocess.run([binary, "report", "-type=json", str(results)], capture_output=True, text=True).stdout
    )
    return {
        "tool": "vegeta",
        "workload": "plain",
        "command": f"taskset -c 1 vegeta attack -rate=0 -workers={users} -max-workers={users} -duration={duration}s",
        "rps": report["rate"],
        "requests": report["requests"],
        "cpu_seconds": cpu,
        "p99": f"{report['latencies']['99th'] / 1e6:.2f}ms",
        "errors": report["requests"] - round(report["success"] * report["requests"]),
        "note": "",
    }


LOCUSTFILE = """
import itertools

from locust import FastHttpUser, constant, task

numbers = itertools.count()


class Reader(FastHttpUser):
    wait_time = constant(0)

    @task
    def read(self):
        self.client.get("/index.txt")


class Scenario(FastHttpUser):
    # FastHttpUser keeps each user's cookies (its session's cookie jar) and sends them back.
    wait_time = constant(0)

    def on_start(self):
        self.header = {"X-User": f"user-{next(numbers) % 50}"}

    @task
    def read(self):
        with self.client.get("/scenario.json", headers=self.header, catch_response=True) as response:
            if response.json()["user"]["id"] != 17:
                response.failure("user.id is not 17")
"""


def run_locust(base: str, users: int, duration: int, workdir: Path, scenario: bool = False) -> Optional[dict]:
    locust = Path(PYTHON).with_name("locust")
    if not locust.exists():
        return None
    (workdir / "locustfile.py").write_text(LOCUSTFILE)
    user_class = "Scenario" if scenario else "Reader"
    prefix = workdir / f"locust-{user_class}"
    args = [
        str(locust), "-f", str(workdir / "locustfile.py"), "--headless", "-u", str(users), "-r", str(users),
        "-t", f"{duration}s", "-H", base, "--only-summary", "--csv", str(prefix), "--loglevel", "ERROR", user_class,
    ]  # fmt: skip
    _, _, cpu, _ = run_tool(pinned("1", args), timeout=duration + 60, cwd=workdir)
    rows = (prefix.parent / (prefix.name + "_stats.csv")).read_text().splitlines()
    header = rows[0].split(",")
    total = next(r.split(",") for r in rows[1:] if ",Aggregated," in r)
    stats = dict(zip(header, total))
    return {
        "tool": "locust",
        "workload": "scenario" if scenario else "plain",
        "command": f"taskset -c 1 locust --headless -u {users} -r {users} -t {duration}s {user_class} "
        "(FastHttpUser, constant(0))",
        "rps": float(stats["Requests/s"]),
        "requests": int(stats["Request Count"]),
        "cpu_seconds": cpu,
        "p99": f"{stats['99%']}ms",
        "errors": int(stats["Failure Count"]),
        "note": "cookie jar, X-User header, JSON check (response.json())" if scenario else "",
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


def scenario_yaml(url: str, users: int, duration: str, *, check: bool = True, header: bool = True) -> str:
    """The scenario's request; without `check` or `header`, the steps of the feature costs.
    Cookies are on, as by default: they cost only where the target sets one."""
    request = [f'url: "{url}"']
    if header:
        request.append('headers: {X-User: "user-{{user}}"}')
    if check:
        request += [
            "assertions:",
            "  - {source: response_json, property: user.id, comparison: equal_number, value: 17}",
        ]
    lines = [
        "apiVersion: assay.dev/v1alpha1",
        "kind: LoadTest",
        "metadata: {name: bench-scenario}",
        "spec:",
        f"  load: {{model: closed, users: {users}, duration: {duration}}}",
        "  requestTimeout: 10s",
        "  flows:",
        "    - name: read",
        "      requests:",
        "        - name: scenario",
        *(f"          {line}" for line in request),
    ]
    if header:
        lines += ["  parameterPools:", "    - name: users", "      mode: per_user", "      csv: |", "        user"]
        lines += [f"        {k}" for k in range(users)]
    return "\n".join(lines) + "\n"


# The feature costs: each step adds one feature to the one before (the path and what the
# request does), so the difference between two steps is the cost of the feature added.
FEATURE_STEPS = [
    ("plain", "/index.txt", {}),
    ("+ cookies", "/cookie.txt", {"check": False, "header": False}),
    ("+ JSON check", "/scenario.json", {"check": True, "header": False}),
    ("+ templated header", "/scenario.json", {"check": True, "header": True}),
    ("+ redirect followed", "/redirect", {"check": True, "header": True}),
]


def run_assay(
    url: str,
    users: int,
    duration: int,
    workdir: Path,
    *,
    processes: int = 1,
    cores: str = "1",
    label: str = "assay",
    spec_text: Optional[str] = None,
    workload: str = "plain",
) -> dict:
    stem = label if workload == "plain" else f"{label}-{workload}"
    spec = workdir / f"{stem}.yaml"
    spec.write_text(spec_text or loadtest_yaml(url, users, f"{duration}s"))
    out = workdir / f"{stem}.json"
    args = [PYTHON, "-m", "assay.runner", "run", str(spec), "--out", str(out), "--processes", str(processes)]
    _, err, cpu, sampler = run_tool(pinned(cores, args), timeout=duration + 120, cwd=REPO)
    if not out.exists():
        raise RuntimeError(f"assay run failed: {err[-2000:]}")
    metrics = json.loads(out.read_text())
    total = metrics["total"]
    started, finished = epoch(metrics["startedAt"]), epoch(metrics["finishedAt"])
    command = f"taskset -c {cores} python -m assay.runner run {spec.name} --processes {processes}"
    return {
        "tool": label,
        "workload": workload,
        "command": command,
        "rps": total["count"] / (finished - started),
        "requests": total["count"],
        "cpu_seconds": cpu,
        "window_cpu_seconds": sampler.between(started, finished),
        "p99": f"{total['p99Ms']}ms",
        "errors": sum(total["errors"].values()),
        "note": "cookie jar, X-User header from a per_user pool, JSON path check" if workload == "scenario" else "",
    }


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


def print_rows(rows: list[dict], wrk: dict[str, dict]) -> None:
    print(
        f"\n{'workload':<9} {'tool':<11} {'requests/s':>11} {'vs wrk':>7} {'CPU µs/req':>11} {'vs wrk':>7} "
        f"{'(whole)':>8} {'p99':>10} {'errors':>7} {'tool CPU':>9} {'target CPU':>11}"
    )
    for row in rows:
        ref = wrk[row["workload"]]
        row["rps_ratio_to_wrk"] = row["rps"] / ref["rps"]
        row["cpu_ratio_to_wrk"] = row["cpu_us_per_request"] / ref["cpu_us_per_request"]
        print(
            f"{row['workload']:<9} {row['tool']:<11} {row['rps']:>11.0f} {row['rps_ratio_to_wrk']:>7.2f} "
            f"{row['cpu_us_per_request']:>11.1f} {row['cpu_ratio_to_wrk']:>7.2f} "
            f"{row['cpu_us_per_request_whole']:>8.1f} {row['p99'] or '-':>10} {row['errors']:>7} "
            f"{row['tool_cpu']:>9.0%} {row['target_cpu']:>11.0%}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--memory-users", type=int, default=10_000)
    parser.add_argument("--skip-locust", action="store_true")
    parser.add_argument("--skip-extra", action="store_true", help="only the tools' table")
    parser.add_argument("--skip-scaling", action="store_true", help="no 2-process runs")
    parser.add_argument("--skip-features", action="store_true", help="no feature-cost runs")
    parser.add_argument("--scenario", action="store_true", help="also the scenario runs (cookies, check, template)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if not have("wrk"):
        print("wrk is not installed: run hack/bench/install.sh", file=sys.stderr)
        return 2
    results: dict = {"cores": os.cpu_count(), "load_average_before": os.getloadavg()}
    duration, users = args.duration, args.users
    with tempfile.TemporaryDirectory(prefix="assay-bench-") as tmp:
        workdir = Path(tmp)
        with Target(workdir) as target:
            base = target.url.rsplit("/", 1)[0]
            results["target"] = target.kind
            nginx = target.kind == "nginx"
            print(
                f"target: {target.kind} on core 0 at {target.url}; load tools on core 1; "
                f"{users} connections/users, {duration} s each; load average "
                + " ".join(f"{x:.2f}" for x in os.getloadavg()),
                flush=True,
            )
            plain = [
                lambda: run_wrk(target.url, users, duration, workdir),
                lambda: run_bombardier(target.url, users, duration),
                lambda: run_vegeta(target.url, users, duration, workdir),
                None if args.skip_locust else lambda: run_locust(base, users, duration, workdir),
                lambda: run_assay(target.url, users, duration, workdir),
            ]
            rows = [row for run in plain if run for row in [measured(target, run)] if row]
            if args.scenario and not nginx:
                print("the scenario runs need nginx (hack/bench/install.sh): skipped", file=sys.stderr)
            elif args.scenario:
                scenario_url = f"{base}/scenario.json"
                scenario = [
                    lambda: run_wrk(target.url, users, duration, workdir, scenario=True),
                    None if args.skip_locust else lambda: run_locust(base, users, duration, workdir, scenario=True),
                    lambda: run_assay(
                        target.url, users, duration, workdir, label="assay", workload="scenario",
                        spec_text=scenario_yaml(scenario_url, users, f"{duration}s"),
                    ),
                ]  # fmt: skip
                rows += [row for run in scenario if run for row in [measured(target, run)] if row]
            wrk = {row["workload"]: row for row in rows if row["tool"] == "wrk"}
            print_rows(rows, wrk)
            for row in rows:
                print(
                    f"  {row['workload']} {row['tool']}: {row['command']}"
                    + (f" - {row['note']}" if row["note"] else "")
                )
            if args.scenario and nginx:
                print(
                    "  scenario: bombardier and vegeta send a fixed request (no cookie jar, no per-request header,"
                    " no body check): plain GET only"
                )
            print("  CPU µs/req: the engine's load window (startedAt-finishedAt); the whole process for the others")
            results["throughput"] = rows
            assay = {row["workload"]: row for row in rows if row["tool"] == "assay"}
            goals = {
                "plain_rps_ratio": assay["plain"]["rps"] / wrk["plain"]["rps"],
                "plain_cpu_ratio": assay["plain"]["cpu_us_per_request"] / wrk["plain"]["cpu_us_per_request"],
            }
            if "scenario" in assay:
                goals["scenario_rps_to_wrk_plain"] = assay["scenario"]["rps"] / wrk["plain"]["rps"]
            if not args.skip_extra and not args.skip_features and nginx:
                steps = []
                for number, (name, path, options) in enumerate(FEATURE_STEPS):
                    if name == "plain":
                        row = assay["plain"]
                    elif path == "/scenario.json" and options["header"] and "scenario" in assay:
                        row = assay["scenario"]
                    else:
                        spec_text = scenario_yaml(f"{base}{path}", users, f"{duration}s", **options)
                        row = measured(
                            target,
                            lambda text=spec_text, label=f"feature{number}": run_assay(
                                target.url, users, duration, workdir, label=label, spec_text=text
                            ),
                        )
                    steps.append({"step": name, "path": path, "rps": row["rps"], "errors": row["errors"],
                                  "cpu_us_per_request": row["cpu_us_per_request"]})  # fmt: skip
                results["features"] = steps
                print(f"\nfeature costs (Assay, {users} users, {duration} s each; each step adds to the one above)")
                print(f"{'step':<22} {'path':<15} {'requests/s':>11} {'CPU µs/req':>11} {'added µs':>9} {'errors':>7}")
                for before, step in zip([None, *steps], steps):
                    added = step["cpu_us_per_request"] - before["cpu_us_per_request"] if before else 0.0
                    step["added_us"] = added
                    print(
                        f"{step['step']:<22} {step['path']:<15} {step['rps']:>11.0f} "
                        f"{step['cpu_us_per_request']:>11.1f} {added:>+9.1f} {step['errors']:>7}"
                    )
            if not args.skip_extra:
                memory = measure_memory(target.url, args.memory_users, workdir)
                results["memory"] = memory
                goals["memory_kib_per_user"] = memory["per_user_bytes"] / 1024
                print(
                    f"\nmemory: {memory['users']} users: RSS {memory['rss_before_kib'] / 1024:.1f} MiB before, "
                    f"{memory['rss_with_users_kib'] / 1024:.1f} MiB with all running -> "
                    f"{memory['per_user_bytes'] / 1024:.2f} KiB per virtual user "
                    f"({memory['rps_while_full']:.0f} req/s while full, {memory['errors']} errors)"
                )
            if not args.skip_extra and not args.skip_scaling:
                one = assay["plain"]
                two_same = measured(
                    target,
                    lambda: run_assay(
                        target.url, users, duration, workdir, processes=2, cores="1", label="assay-2p-core1"
                    ),
                )
                two_both = measured(
                    target,
                    lambda: run_assay(
                        target.url, users, duration, workdir, processes=2, cores="0,1", label="assay-2p-cores01"
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
            results["goals"] = goals
            print("\ngoals: " + "; ".join(f"{k} {v:.2f}" for k, v in goals.items()))
            print("  (plain_rps_ratio >= 0.80, plain_cpu_ratio <= 1.3, scenario_rps_to_wrk_plain >= 0.5, memory <= 3)")
    results["load_average_after"] = os.getloadavg()
    print("load average " + " ".join(f"{x:.2f}" for x in results["load_average_after"]))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
