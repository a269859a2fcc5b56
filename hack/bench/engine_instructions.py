#!/usr/bin/env python3
"""Instructions per request of the Assay load engine and of wrk, counted by valgrind's
callgrind: a measure that does not move with the machine's load, to compare changes to the
engine's hot path where CPU-time benchmarks (load_vs_wrk.py) are too noisy.

    python hack/bench/engine_instructions.py [--users 1] [--iterations 2000] [--wrk-seconds 4]
                                             [--skip-wrk] [--only plain|scenario] [--json OUT]

The target is load_vs_wrk.py's (nginx when installed, else its uvloop server), started
outside valgrind, so only the load tool is counted. Workloads are load_vs_wrk.py's: plain
GET, and the scenario (cookie jar, one JSON check, one templated header).

Engine: `run_load_shard` in one process under callgrind, closed-model users doing
`iterations` requests each, counting only inside the event loop's run_forever (the
interpreter's start and imports are left out); run twice, with `iterations` and twice that,
and the difference divided by the extra requests is the per-request count (connecting, the
spec's compilation and the final metrics cancel out). wrk: `wrk -t1 -cUSERS` for
`wrk-seconds` and twice that, the same difference.

One user by default: each request is then one wake of the event loop, and the count does not
depend on how many responses a wake finds (with 50 users that depends on how promptly the
target answers). What still moves with the machine's load is the work done per wall-clock
interval (such as the timer wheel's timer per 10 ms slot), which valgrind's slowdown makes
weigh per request: on a busy 2-core machine runs of the same code at different times differed
by up to 15 %. Compare two versions in runs made side by side (a second checkout with its
own venv, both started at once). The ratio to wrk is the instruction-count companion of
load_vs_wrk.py's CPU ratio, without the kernel's share (the syscalls, about the same for
both), which is most of wrk's CPU time: so the instruction ratio is far above the CPU-time
ratio, and it is for comparing versions of the engine, not tools.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_vs_wrk import PYTHON, REPO, WRK_SCENARIO, Target, have, scenario_yaml  # noqa: E402

# Counting is on inside uvloop's run_forever only: the engine's run, not the interpreter's
# start and imports around it (which cost ten times a run's worth of instructions).
TOGGLE = "__pyx_pw_6uvloop_4loop_4Loop_25run_forever"

# The once-a-second ticker (progress, watchdog, the second's histograms) is off: under
# callgrind a second holds a hundredth of the requests it holds natively, so its work would
# count a hundred times over per request and vary with how busy the machine is. The run's
# end still turns every latency into the histograms (recorder.finish).
ENGINE_CHILD = """
import asyncio, json, sys, yaml
from assay.crds.loadtest import LoadTestSpec
from assay.runner.load import engine, run, run_load_shard
async def idle(self):
    await asyncio.Event().wait()
engine._ShardRun._ticker = idle
spec = LoadTestSpec.model_validate(yaml.safe_load(open(sys.argv[1]))["spec"])
metrics = run(run_load_shard(spec, 0, 1))
print(json.dumps({"requests": metrics.total.count, "errors": metrics.total.error_count}))
"""


def callgrind(args: list[str], out: Path, toggle: str | None = None) -> tuple[int, str]:
    """Run `args` under callgrind; the instructions counted and the program's stdout."""
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    if toggle:
        command += ["--collect-atstart=no", f"--toggle-collect={toggle}"]
    env = dict(os.environ, PYTHONHASHSEED="0")
    result = subprocess.run(command + args, capture_output=True, text=True, env=env, cwd=REPO)
    if result.returncode:
        raise RuntimeError(f"{args[0]} failed under callgrind: {result.stderr[-2000:]}")
    totals = re.search(r"^(?:totals|summary): (\d+)", out.read_text(), re.M)
    return int(totals.group(1)), result.stdout


def engine_spec(text: str, users: int, iterations: int) -> str:
    document = yaml.safe_load(text)
    document["spec"]["load"] = {"model": "closed", "users": users, "iterations": iterations}
    return yaml.safe_dump(document)


def engine(name: str, text: str, users: int, iterations: int, workdir: Path) -> dict:
    child = workdir / "engine_child.py"
    child.write_text(ENGINE_CHILD)
    counts = []
    for n in (iterations, 2 * iterations):
        spec = workdir / f"{name}-{n}.yaml"
        spec.write_text(engine_spec(text, users, n))
        ir, out = callgrind([PYTHON, str(child), str(spec)], workdir / f"{name}-{n}.cg", TOGGLE)
        result = json.loads(out.strip().splitlines()[-1])
        if result["requests"] != users * n or result["errors"]:
            raise RuntimeError(f"{name}: {result} (expected {users * n} requests, no errors)")
        counts.append((ir, result["requests"]))
    (ir1, n1), (ir2, n2) = counts
    return {"workload": name, "tool": "assay", "ir_per_request": (ir2 - ir1) / (n2 - n1), "requests": n2}


def wrk(name: str, url: str, users: int, seconds: int, workdir: Path) -> dict:
    args = ["wrk", "-t1", f"-c{users}"]
    if name == "scenario":
        (workdir / "scenario.lua").write_text(WRK_SCENARIO)
        args += ["-s", str(workdir / "scenario.lua")]
        url = url.rsplit("/", 1)[0] + "/scenario.json"
    counts = []
    for d in (seconds, 2 * seconds):
        ir, out = callgrind([*args, f"-d{d}s", url], workdir / f"wrk-{name}-{d}.cg")
        counts.append((ir, int(re.search(r"(\d+) requests in", out).group(1))))
    (ir1, n1), (ir2, n2) = counts
    return {"workload": name, "tool": "wrk", "ir_per_request": (ir2 - ir1) / (n2 - n1), "requests": n2}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=2000, help="per user, in the shorter of the two runs")
    parser.add_argument("--wrk-seconds", type=int, default=4, help="the shorter of wrk's two runs")
    parser.add_argument("--skip-wrk", action="store_true")
    parser.add_argument("--only", choices=("plain", "scenario"))
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    for tool in ["valgrind"] + ([] if args.skip_wrk else ["wrk"]):
        if not have(tool):
            print(f"{tool} is not installed", file=sys.stderr)
            return 2
    rows = []
    with tempfile.TemporaryDirectory(prefix="assay-instructions-") as tmp:
        workdir = Path(tmp)
        with Target(workdir) as target:
            base = target.url.rsplit("/", 1)[0]
            workloads = {
                "plain": scenario_yaml(target.url, args.users, "1s", check=False, header=False),
                "scenario": scenario_yaml(f"{base}/scenario.json", args.users, "1s"),
            }
            if target.kind != "nginx":
                del workloads["scenario"]  # the scenario's cookie and JSON come from nginx's config
            for name, text in workloads.items():
                if args.only not in (None, name):
                    continue
                rows.append(engine(name, text, args.users, args.iterations, workdir))
                print(f"{name:<9} assay {rows[-1]['ir_per_request']:>9.0f} Ir/request", flush=True)
                if not args.skip_wrk:
                    rows.append(wrk(name, target.url, args.users, args.wrk_seconds, workdir))
                    print(f"{name:<9} wrk   {rows[-1]['ir_per_request']:>9.0f} Ir/request", flush=True)
    wrk_rows = {row["workload"]: row for row in rows if row["tool"] == "wrk"}
    for row in rows:
        if row["tool"] == "assay" and "plain" in wrk_rows:
            row["ratio_to_wrk_plain"] = row["ir_per_request"] / wrk_rows["plain"]["ir_per_request"]
            print(f"{row['workload']:<9} assay / wrk plain GET: {row['ratio_to_wrk_plain']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
