"""How many Monitors one namespace can run every minute: scheduled ticks versus one pod per run.

    .venv/bin/python hack/bench/schedule_scale.py [--sizes 50,200,500,1000] [--per-pod 20]
                                                  [--kubeconfig FILE] [--json OUT]

What it sets up, all real: a fresh control plane (`hack/localkube.py` in a temporary folder:
etcd, kube-apiserver, kube-controller-manager with its CronJob controller, one node agent
running pods as local processes), the CRDs, the operator (`python -m assay.operator`, all
namespaces, no gateway: results go to the Monitors' status only) and a loopback HTTP target.

For each N of --sizes, in a namespace of its own: N Monitors, each one GET to the target with
a status assertion, and N Schedules on `1m`. Once the operator has put all N into the tick
group's ConfigMap, the next tick the CronJob controller starts is measured:

* pods: the tick Job's pods (ceil(N / chunk));
* tick s: the Job's startTime -> completionTime (pod start, N runs, termination messages);
* recorded s: the tick's scheduled minute -> the moment every Monitor's status.lastRun is
  that tick's run (the Job's creation, the runs, and N status writes by the operator);
* in the minute: every Monitor recorded within 60 s of the scheduled minute, so the next
  tick finds nothing left over.

The namespace is then deleted (the CronJob goes with it) before the next size.

For comparison, --per-pod Monitors are run the existing way, one requested run each
(`assay.dev/run-request`, one Job and pod per Monitor), all requested at once: the time
until every status shows its finished run, and the pods it took.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
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
    for start in range(0, len(objects), 250):
        kube(
            "apply",
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


def measure_ticks(kube: Kube, n: int, url: str) -> dict:
    namespace = f"tick-{n}"
    new_namespace(kube, namespace)
    names = [f"m{i:04d}" for i in range(n)]
    t0 = time.monotonic()
    apply(kube, namespace, [monitor(name, url) for name in names])
    apply(kube, namespace, [schedule(f"every-{name}", name) for name in names])

    def grouped():
        from assay.crds.contracts.tick import members_of

        maps = kube.items("configmap", namespace, "-l", "assay.dev/tick-group")
        return maps and len(members_of(maps[0])["members"]) == n

    wait_for(f"all {n} Monitors in the tick group", grouped, timeout=600, interval=2)
    ready_at = dt.datetime.now(dt.timezone.utc)
    log(f"N={n}: created and grouped in {time.monotonic() - t0:.0f}s")

    def next_job():
        jobs = [
            j
            for j in kube.items("job", namespace, "-l", "assay.dev/tick-group")
            if parse(j["metadata"]["creationTimestamp"]) > ready_at
        ]
        return min(jobs, key=lambda j: j["metadata"]["creationTimestamp"]) if jobs else None

    job = wait_for("the next tick Job", next_job, timeout=150)
    job_name = job["metadata"]["name"]
    scheduled = dt.datetime.fromtimestamp(int(job_name.rsplit("-", 1)[1]) * 60, dt.timezone.utc)

    def recorded():
        monitors = kube.items("monitor", namespace)
        done = sum(
            1
            for m in monitors
            if ((m.get("status") or {}).get("lastRun") or {}).get("schedule")
            and ((m["status"]["lastRun"].get("startTime") or "") >= scheduled.strftime("%Y-%m-%dT%H:%M:%SZ"))
        )
        return done == n and (dt.datetime.now(dt.timezone.utc), monitors)

    recorded_at, monitors = wait_for(f"all {n} runs of tick {job_name} recorded", recorded, timeout=600, interval=2)
    job = json.loads(kube("get", "job", job_name, "-n", namespace, "-o", "json"))
    pods = kube.items("pod", namespace, "-l", f"batch.kubernetes.io/job-name={job_name}")
    status = job.get("status") or {}
    tick_s = (
        (parse(status["completionTime"]) - parse(status["startTime"])).total_seconds()
        if status.get("completionTime")
        else float("nan")
    )
    recorded_s = (recorded_at - scheduled).total_seconds()
    passed = sum(1 for m in monitors if m["status"]["lastRun"]["result"] == "Passed")
    # The namespace's deletion takes the CronJob with it (deleting thousands of Schedules
    # one by one first would take minutes).
    kube("delete", "namespace", namespace, "--wait=false")
    return {
        "n": n,
        "pods": len(pods),
        "completions": job["spec"]["completions"],
        "tick_s": round(tick_s, 1),
        "recorded_s": round(recorded_s, 1),
        "in_minute": recorded_s <= 60,
        "passed": passed,
    }


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
    parser.add_argument("--sizes", default="50,200,500,1000")
    parser.add_argument("--per-pod", type=int, default=20, help="Monitors run one pod each, for comparison")
    parser.add_argument("--kubeconfig", help="an existing cluster instead of a fresh local one")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()
    localkube, state_dir = None, None
    if args.kubeconfig:
        kube, kubeconfig = Kube(args.kubeconfig, None), args.kubeconfig
    else:
        localkube = _load_localkube()
        state_dir = Path(tempfile.mkdtemp(prefix="schedule-scale-"))
        state = localkube.up(state_dir, log=log)
        kubeconfig = state.kubeconfig
        kube = Kube(kubeconfig, localkube.kube_bin_dir())
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
        rows, per_pod = [], None
        with CountingTarget() as target:
            if args.per_pod:
                per_pod = measure_per_pod(kube, args.per_pod, target.url)
                log(f"one pod per Monitor: {per_pod}")
            for n in (int(s) for s in args.sizes.split(",") if s):
                row = measure_ticks(kube, n, target.url)
                log(f"ticks: {row}")
                rows.append(row)
                if not row["in_minute"]:
                    break
        print(f"\nScheduled Monitors, all on 1m in one namespace (chunk {chunk} per pod):\n")
        print(
            "| Monitors | pods per tick | tick s (Job start -> complete) | recorded s (after the minute) "
            "| all recorded in the minute | passed |"
        )
        print("|---|---|---|---|---|---|")
        for r in rows:
            print(
                f"| {r['n']} | {r['pods']} | {r['tick_s']} | {r['recorded_s']} | "
                f"{'yes' if r['in_minute'] else 'no'} | {r['passed']}/{r['n']} |"
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
            Path(args.json).write_text(json.dumps({"chunk": chunk, "ticks": rows, "per_pod": per_pod}, indent=2))
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
