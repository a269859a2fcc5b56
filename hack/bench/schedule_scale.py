"""How many Monitors the operator runs every minute: scheduled ticks versus one pod per run.

    .venv/bin/python hack/bench/schedule_scale.py [--sizes 1000,2000,5000,10000] [--per-namespace 1000]
                                                  [--record-only] [--per-pod 0] [--kubeconfig FILE]
                                                  [--json OUT]

What it sets up, all real: a fresh control plane (`hack/localkube.py` in a temporary folder:
etcd, kube-apiserver, kube-controller-manager with its CronJob controller, one node agent
running pods as local processes), the CRDs, the operator (`python -m assay.operator`, all
namespaces, no gateway: results go to the Monitors' status only) and a loopback HTTP target.

For each N of --sizes, spread over ceil(N / --per-namespace) namespaces of their own: N
Monitors, each one GET to the target with a status assertion, and N Schedules on `1m`. Once
the operator has put every Monitor into its namespace's tick group, the next minute's ticks
(one Job per namespace, all scheduled for the same minute) are measured:

* pods: the tick Jobs' pods (ceil(N / chunk) per namespace);
* tick s: the slowest Job's startTime -> completionTime (pod start, the runs, termination
  messages);
* recorded s: the scheduled minute -> the last Monitor's status write of that tick's run
  (the Jobs' creation, the runs, and N status writes by the operator), to the second, from
  the status writes' managedFields times;
* in the minute: every Monitor recorded within 60 s of the scheduled minute, so the next
  tick finds nothing left over;
* from the scheduled minute to the last status recorded: the API server's CPU seconds
  (`process_cpu_seconds_total`) and its requests by verb (`apiserver_request_total`) from
  its /metrics, the operator's CPU seconds (/proc), and the machine's busy cores.

The namespaces are then deleted (the CronJobs go with them) before the next size.

With --record-only there are no Schedules and no tick pods: N runs are recorded at once
through the operator's own write path (ticks.write_runs, its shared bounded writers on its
one client, called from this process with one thread per namespace as the tick Job handlers
would), with the same load figures and this process's CPU as the writer's: what recording
costs alone. The results are in operator/README.md ("Scale, measured").

For comparison, --per-pod Monitors are run the existing way, one requested run each
(`assay.dev/run-request`, one Job and pod per Monitor), all requested at once: the time
until every status shows its finished run, and the pods it took.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import http.server  # noqa: E402

from tests.support.targets import CountingTarget  # noqa: E402

# socketserver's listen backlog is 5: dozens of Monitors connecting at once would wait out
# SYN retransmits (1 s, 3 s) at the target, which measures the target, not the ticks.
http.server.ThreadingHTTPServer.request_queue_size = 1024


def _load_localkube():
    spec = importlib.util.spec_from_file_location("hack_localkube", REPO / "hack" / "localkube.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Kube:
    def __init__(self, kubeconfig: str, bin_dir: Path | None):
        self.binary = str(bin_dir / "kubectl") if bin_dir else "kubectl"
        self.env = {**os.environ, "KUBECONFIG": kubeconfig}
        if bin_dir:
            self.env["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"

    def __call__(self, *args: str, input: str | None = None, check: bool = True) -> str:
        done = subprocess.run(
            [self.binary, *args], input=input, text=True, capture_output=True, env=self.env, timeout=600
        )
        if check and done.returncode != 0:
            raise SystemExit(f"kubectl {' '.join(args[:4])}...: {done.stderr}")
        return done.stdout

    def items(self, kind: str, namespace: str, *selector: str) -> list[dict]:
        return json.loads(self("get", kind, "-n", namespace, *selector, "-o", "json"))["items"]


def wait_for(what: str, check, timeout: float, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")


def monitor(name: str, url: str) -> dict:
    return {
        "apiVersion": "assay.dev/v1alpha1",
        "kind": "Monitor",
        "metadata": {"name": name},
        "spec": {
            "steps": [
                {
                    "stepType": "request",
                    "url": f"{url}/{name}",
                    "assertions": [{"source": "response_status", "comparison": "equal", "value": 200}],
                }
            ],
            "environments": [{"name": "local"}],
        },
    }


def schedule(name: str, target: str) -> dict:
    return {
        "apiVersion": "assay.dev/v1alpha1",
        "kind": "Schedule",
        "metadata": {"name": name},
        "spec": {"target": {"kind": "Monitor", "name": target}, "interval": "1m"},
    }


def apply(kube: Kube, namespace: str, objects: list[dict]) -> None:
    # create, not apply: the namespaces are new, and apply would read each object first.
    for start in range(0, len(objects), 250):
        kube(
            "create",
            "-n",
            namespace,
            "-f",
            "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects[start : start + 250]}),
        )


def parse(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def new_namespace(kube: Kube, name: str) -> None:
    kube("create", "namespace", name)
    wait_for(
        "the default service account", lambda: kube("get", "serviceaccount", "default", "-n", name, check=False), 60
    )


class Load:
    """CPU and requests between two moments: the API server's from its /metrics, a local
    process's from /proc, the machine's from /proc/stat."""

    def __init__(self, kube: Kube, operator_pid: int, pods_pid: int | None = None):
        self.kube, self.operator_pid, self.pods_pid = kube, operator_pid, pods_pid

    def sample(self) -> dict:
        cpu, requests = 0.0, {}
        for line in self.kube("get", "--raw", "/metrics").splitlines():
            if line.startswith("process_cpu_seconds_total "):
                cpu = float(line.split()[1])
            elif line.startswith("apiserver_request_total{"):
                labels, value = line[len("apiserver_request_total{") :].rsplit("} ", 1)
                verb = next((p.split("=", 1)[1].strip('"') for p in labels.split(",") if p.startswith("verb=")), "?")
                requests[verb] = requests.get(verb, 0) + float(value)
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
        return {
            "apiserver_cpu": cpu,
            "requests": requests,
            "operator_cpu": _process_cpu(self.operator_pid),
            "pods_cpu": _process_cpu(self.pods_pid, children=True) if self.pods_pid else 0.0,
            "self_cpu": sum(os.times()[:2]),
            "machine_busy": sum(fields) - fields[3] - fields[4],  # all but idle and iowait
            "machine_all": sum(fields),
            "at": time.monotonic(),
        }

    @staticmethod
    def between(before: dict, after: dict) -> dict:
        requests = {v: after["requests"].get(v, 0) - before["requests"].get(v, 0) for v in after["requests"]}
        ticks = after["machine_all"] - before["machine_all"]
        return {
            "apiserver_cpu_s": round(after["apiserver_cpu"] - before["apiserver_cpu"], 1),
            "requests": {v: int(n) for v, n in sorted(requests.items()) if n >= 1},
            "operator_cpu_s": round(after["operator_cpu"] - before["operator_cpu"], 1),
            "pods_cpu_s": round(after["pods_cpu"] - before["pods_cpu"], 1),
            "writer_cpu_s": round(after["self_cpu"] - before["self_cpu"], 1),
            "machine_busy_cores": round((after["machine_busy"] - before["machine_busy"]) / ticks * os.cpu_count(), 2)
            if ticks
            else 0.0,
        }


def _process_cpu(pid: int, children: bool = False) -> float:
    """utime + stime; with `children`, also of the children it has reaped (the node agent's
    pods, each a local process)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = [int(v) for v in stat.read().rsplit(")", 1)[1].split()[11:15]]
    return sum(fields if children else fields[:2]) / os.sysconf("SC_CLK_TCK")


def create_all(kube: Kube, namespaces: dict[str, list[str]], url: str, schedules: bool = True) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def one(namespace: str) -> None:
        new_namespace(kube, namespace)
        names = namespaces[namespace]
        apply(kube, namespace, [monitor(name, url) for name in names])
        if schedules:
            apply(kube, namespace, [schedule(f"every-{name}", name) for name in names])

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(one, namespaces))


def split(prefix: str, n: int, per_namespace: int) -> dict[str, list[str]]:
    count = -(-n // per_namespace)
    return {
        f"{prefix}-{n}-{k}": [f"m{i:05d}" for i in range(k * per_namespace, min(n, (k + 1) * per_namespace))]
        for k in range(count)
    }


def run_entry(name: str, minute: str) -> dict:
    return {
        "runId": f"{name}-{minute}",
        "phase": "Succeeded",
        "result": "Passed",
        "startTime": f"{minute}:01Z",
        "completionTime": f"{minute}:02Z",
        "responseTimeMs": 3,
        "schedule": f"every-{name}",
        "message": f"run {name}-{minute} scheduled by every-{name}: passed",
    }


def measure_recording(kube: Kube, n: int, url: str, per_namespace: int, load: Load) -> dict:
    """N runs recorded by the operator's own write path (ticks.write_runs: the shared, bounded
    writers on the one client), as for N namespaces' ticks finishing at once, with no tick
    pods competing for the CPU: what recording alone costs."""
    from concurrent.futures import ThreadPoolExecutor

    import kubernetes

    from assay.operator import kube as operator_kube
    from assay.operator import ticks
    from assay.operator.settings import get_settings

    namespaces = split("record", n, per_namespace)
    t0 = time.monotonic()
    create_all(kube, namespaces, url, schedules=False)
    operator_kube.load_cluster_config = lambda: kubernetes.config.load_kube_config(config_file=kube.env["KUBECONFIG"])
    operator_kube.configure()
    listed = {}
    for namespace in namespaces:
        listed[namespace] = {
            ("Monitor", m["metadata"]["name"]): m for m in operator_kube.list_custom("monitors", namespace)
        }
    log(f"N={n}: created in {len(namespaces)} namespace(s) in {time.monotonic() - t0:.0f}s")
    time.sleep(10)  # the operator's handling of the creations settles
    minute = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M")
    before = load.sample()
    started = time.monotonic()
    with ThreadPoolExecutor(len(namespaces)) as tick_handlers:
        written = sum(
            tick_handlers.map(
                lambda ns: ticks.write_runs(
                    ns, [("Monitor", m, run_entry(m, minute)) for m in namespaces[ns]], listed[ns], _log
                ),
                namespaces,
            )
        )
    seconds = time.monotonic() - started
    after = load.sample()
    for namespace in namespaces:
        kube("delete", "namespace", namespace, "--wait=false")
    return {
        "n": n,
        "namespaces": len(namespaces),
        "writers": get_settings().status_writers,
        "written": written,
        "seconds": round(seconds, 1),
        "per_second": round(written / seconds),
        **Load.between(before, after),
    }


_log = logging.getLogger("bench")


def measure_ticks(kube: Kube, n: int, url: str, per_namespace: int, load: Load) -> dict:
    from assay.crds.contracts.tick import members_of

    namespaces = split("tick", n, per_namespace)
    count = len(namespaces)
    t0 = time.monotonic()
    create_all(kube, namespaces, url)

    def grouped():
        members = 0
        for namespace in namespaces:
            maps = kube.items("configmap", namespace, "-l", "assay.dev/tick-group")
            members += sum(len(members_of(m)["members"]) for m in maps)
        return members == n

    wait_for(f"all {n} Monitors in their tick groups", grouped, timeout=1800, interval=5)
    ready_at = dt.datetime.now(dt.timezone.utc)
    log(f"N={n}: created and grouped in {count} namespace(s) in {time.monotonic() - t0:.0f}s")
    # The first minute that starts after every group is in place: its ticks are the measured ones.
    scheduled = ready_at.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    time.sleep(max(0.0, (scheduled - dt.datetime.now(dt.timezone.utc)).total_seconds() - 2))
    before = load.sample()
    stamp = scheduled.strftime("%Y-%m-%dT%H:%M:%SZ")

    def recorded():
        done, monitors = 0, []
        for namespace in namespaces:
            listed = kube.items("monitor", namespace, "--show-managed-fields")
            monitors += listed
            done += sum(
                1
                for m in listed
                if ((m.get("status") or {}).get("lastRun") or {}).get("schedule")
                and (m["status"]["lastRun"].get("startTime") or "") >= stamp
            )
        return done == n and monitors

    monitors = wait_for(f"all {n} runs of the {stamp} ticks recorded", recorded, timeout=900, interval=2)
    after = load.sample()
    # When the last status was written, to the second, from the API server's own record of
    # each status write, not from when this loop happened to look.
    recorded_at = max(
        parse(f["time"])
        for m in monitors
        for f in m["metadata"].get("managedFields") or []
        if f.get("subresource") == "status" and f.get("time")
    )
    tick_s, pods = 0.0, 0
    for namespace in namespaces:
        for job in kube.items("job", namespace, "-l", "assay.dev/tick-group"):
            if tick_of_name(job["metadata"]["name"]) != scheduled:
                continue
            status = job.get("status") or {}
            if status.get("completionTime"):
                tick_s = max(tick_s, (parse(status["completionTime"]) - parse(status["startTime"])).total_seconds())
            pods += job["spec"]["completions"]
    recorded_s = (recorded_at - scheduled).total_seconds()
    passed = sum(1 for m in monitors if m["status"]["lastRun"]["result"] == "Passed")
    # A namespace's deletion takes its CronJob with it (deleting thousands of Schedules one
    # by one first would take minutes).
    for namespace in namespaces:
        kube("delete", "namespace", namespace, "--wait=false")
    return {
        "n": n,
        "namespaces": count,
        "pods": pods,
        "tick_s": round(tick_s, 1),
        "recorded_s": round(recorded_s, 1),
        "in_minute": recorded_s <= 60,
        "passed": passed,
        **Load.between(before, after),
    }


def tick_of_name(job_name: str) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(job_name.rsplit("-", 1)[1]) * 60, dt.timezone.utc)


def measure_per_pod(kube: Kube, n: int, url: str) -> dict:
    namespace = f"per-pod-{n}"
    new_namespace(kube, namespace)
    names = [f"m{i:04d}" for i in range(n)]
    apply(kube, namespace, [monitor(name, url) for name in names])
    time.sleep(5)  # let the operator see them before they are annotated
    started = time.monotonic()
    kube("annotate", "monitors", "--all", "-n", namespace, "assay.dev/run-request=bench", "--overwrite")

    def finished():
        monitors = kube.items("monitor", namespace)
        return (
            sum(
                1
                for m in monitors
                if ((m.get("status") or {}).get("lastRun") or {}).get("result") in ("Passed", "Failed")
            )
            == n
        )

    wait_for(f"{n} requested runs", finished, timeout=900, interval=2)
    elapsed = time.monotonic() - started
    jobs = kube.items("job", namespace, "-l", "assay.dev/kind=Monitor")
    kube("delete", "namespace", namespace, "--wait=false")
    return {"n": n, "pods": len(jobs), "seconds": round(elapsed, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,2000,5000,10000")
    parser.add_argument("--per-namespace", type=int, default=1000, help="Monitors per namespace")
    parser.add_argument("--per-pod", type=int, default=0, help="Monitors run one pod each, for comparison")
    parser.add_argument(
        "--record-only",
        action="store_true",
        help="no Schedules or tick pods: N runs recorded at once by the operator's write path",
    )
    parser.add_argument("--kubeconfig", help="an existing cluster instead of a fresh local one")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()
    localkube, state_dir, pods_pid = None, None, None
    if args.kubeconfig:
        kube, kubeconfig = Kube(args.kubeconfig, None), args.kubeconfig
    else:
        localkube = _load_localkube()
        state_dir = Path(tempfile.mkdtemp(prefix="schedule-scale-"))
        state = localkube.up(state_dir, log=log)
        kubeconfig = state.kubeconfig
        kube = Kube(kubeconfig, localkube.kube_bin_dir())
        pods_pid = next((pid for name, pid in state.pids.items() if name.startswith("nodeagent-")), None)
    operator = None
    try:
        crds = sorted(str(p) for p in (REPO / "crds").glob("*.yaml"))
        kube("apply", "--server-side", *sum((["-f", c] for c in crds), []))
        kube("wait", "--for=condition=Established", "--timeout=60s", *sum((["-f", c] for c in crds), []))
        operator_log = open(Path(tempfile.gettempdir()) / "schedule-scale-operator.log", "ab")
        operator = subprocess.Popen(
            [sys.executable, "-m", "assay.operator"],
            cwd="/",
            stdout=operator_log,
            stderr=subprocess.STDOUT,
            env={**kube.env, "ASSAY_RUNNER_IMAGE": "assay/runner:bench"},
        )
        from assay.operator.settings import OperatorSettings

        chunk = OperatorSettings().tick_chunk
        load = Load(kube, operator.pid, pods_pid)
        rows, per_pod = [], None
        if args.record_only:
            for n in (int(s) for s in args.sizes.split(",") if s):
                row = measure_recording(kube, n, "http://127.0.0.1:9", args.per_namespace, load)
                log(f"recording: {row}")
                rows.append(row)
            print(
                f"\nN runs recorded at once by ticks.write_runs, {args.per_namespace} Monitors per namespace, "
                "one tick handler per namespace, no tick pods:\n"
            )
            print(
                "| Monitors | namespaces | writers | all written s | statuses/s | API server CPU s "
                "| API server requests (by verb) | writer CPU s | operator CPU s (its watch events) | machine busy cores |"
            )
            print("|---|---|---|---|---|---|---|---|---|---|")
            for r in rows:
                verbs = ", ".join(f"{v} {c:,}" for v, c in r["requests"].items())
                print(
                    f"| {r['n']:,} | {r['namespaces']} | {r['writers']} | {r['seconds']} | {r['per_second']:,} | "
                    f"{r['apiserver_cpu_s']} | {sum(r['requests'].values()):,} ({verbs}) | {r['writer_cpu_s']} | "
                    f"{r['operator_cpu_s']} | {r['machine_busy_cores']} |"
                )
            if args.json:
                Path(args.json).write_text(json.dumps({"recording": rows}, indent=2))
            return
        with CountingTarget() as target:
            if args.per_pod:
                per_pod = measure_per_pod(kube, args.per_pod, target.url)
                log(f"one pod per Monitor: {per_pod}")
            for n in (int(s) for s in args.sizes.split(",") if s):
                row = measure_ticks(kube, n, target.url, args.per_namespace, load)
                log(f"ticks: {row}")
                rows.append(row)
        print(
            f"\nScheduled Monitors, all on 1m, {args.per_namespace} per namespace (chunk {chunk} per pod; "
            "load from the scheduled minute to the last status recorded):\n"
        )
        print(
            "| Monitors | namespaces | pods per tick | tick s (slowest Job start -> complete) "
            "| recorded s (after the minute) | all recorded in the minute | passed | API server CPU s "
            "| API server requests (by verb) | operator CPU s | tick pods CPU s | machine busy cores |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            verbs = ", ".join(f"{v} {c:,}" for v, c in r["requests"].items())
            print(
                f"| {r['n']:,} | {r['namespaces']} | {r['pods']} | {r['tick_s']} | {r['recorded_s']} | "
                f"{'yes' if r['in_minute'] else 'no'} | {r['passed']:,}/{r['n']:,} | {r['apiserver_cpu_s']} | "
                f"{sum(r['requests'].values()):,} ({verbs}) | {r['operator_cpu_s']} | {r['pods_cpu_s']} | "
                f"{r['machine_busy_cores']} |"
            )
        fits = [r["n"] for r in rows if r["in_minute"]]
        print(f"\nLargest N recorded inside the minute: {max(fits) if fits else 'none'}")
        if per_pod:
            ticks = next((r for r in rows if r["n"] >= per_pod["n"]), rows[0] if rows else None)
            print(
                f"\nOne pod per Monitor (requested runs): {per_pod['n']} Monitors took {per_pod['pods']} pods "
                f"and {per_pod['seconds']} s from request to the last status"
            )
            if ticks:
                print(
                    f"Ticks: {ticks['n']} Monitors took {ticks['pods']} pod(s); pods per Monitor "
                    f"{per_pod['pods'] / per_pod['n']:.2f} vs {ticks['pods'] / ticks['n']:.3f} "
                    f"(~{(per_pod['pods'] / per_pod['n']) / (ticks['pods'] / ticks['n']):.0f}x fewer)"
                )
        if args.json:
            Path(args.json).write_text(
                json.dumps(
                    {"chunk": chunk, "per_namespace": args.per_namespace, "ticks": rows, "per_pod": per_pod}, indent=2
                )
            )
    finally:
        if operator:
            operator.terminate()
            try:
                operator.wait(15)
            except subprocess.TimeoutExpired:
                operator.kill()
        if localkube and state_dir:
            localkube.down(state_dir, log=log)


if __name__ == "__main__":
    main()
