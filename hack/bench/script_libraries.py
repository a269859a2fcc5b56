"""What the bundled script libraries (CryptoJS, Underscore, Moment) cost, side by side.

    .venv/bin/python hack/bench/script_libraries.py [--n 200]

In this process (CPU ms, median of `--n`): a bare QuickJS context; whole engine runs
(`script_engine.evaluate`: context, prelude, script, read-back) of an empty script, of one that
names the three libraries without touching them (their sources are copied in), and of ones
that touch one or all three (evaluating them); and a context with all three evaluated, the
alternative of loading them up front for every run. Then whole `ScriptRunner.run` calls
through the workers (wall ms, median and p95).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import quickjs

from assay.runner.apitest import script_engine
from assay.runner.apitest.scripts import ScriptRunner

INPUTS = json.dumps({"variables": {}, "request": None, "response": None})


def _cpu_ms(make: Callable[[], object], n: int) -> float:
    times = []
    for _ in range(n):
        started = time.process_time()
        make()
        times.append((time.process_time() - started) * 1000)
    return statistics.median(times)


def _engine_run(source: str) -> Callable[[], object]:
    request = ScriptRunner()._request(source, INPUTS)

    def run() -> object:
        reply = json.loads(script_engine.evaluate(request))
        assert reply["error"] is None, reply["error"]
        return reply

    return run


def _eager() -> quickjs.Context:
    ctx = quickjs.Context()
    for library in script_engine.bundled_libraries():
        ctx.eval(f"{library.source}\n;void 0")
    return ctx


ENGINE_RUNS = {
    "engine run: empty script": "",
    "... naming all three, touching none": "// CryptoJS _ moment",
    "... touching CryptoJS": "CryptoJS",
    "... touching _": "_",
    "... touching moment": "moment",
    "... touching all three": "CryptoJS; _; moment",
}

RUNS = {
    "no library": "variables.set('a', '1')",
    "CryptoJS (HmacSHA256 + Base64)": "variables.set('s', CryptoJS.enc.Base64.stringify(CryptoJS.HmacSHA256('m', 'k')))",
    "_ (map)": "variables.set('m', _.map([1, 2], String).join())",
    "moment (format)": "variables.set('d', moment.utc(0).format('YYYY-MM-DD'))",
    "all three": "CryptoJS.MD5(''); _.size([]); moment();",
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    missing = [lib.name for lib in script_engine.bundled_libraries() if lib.source is None]
    if missing:
        raise SystemExit(f"not vendored: {', '.join(missing)}; run {script_engine.BUNDLED_INSTALL_COMMAND}")

    print("in process (CPU ms, median)")
    rows: dict[str, Callable[[], object]] = {"bare QuickJS context": quickjs.Context}
    rows.update({label: _engine_run(source) for label, source in ENGINE_RUNS.items()})
    rows["all three evaluated in a bare context"] = _eager
    for label, make in rows.items():
        print(f"  {label:<40} {_cpu_ms(make, args.n):7.3f}")

    runner = ScriptRunner()
    runner.run("", variables={})  # starts a worker
    print("ScriptRunner.run through the workers (wall ms: median, p95)")
    for label, source in RUNS.items():
        times = []
        for _ in range(args.n):
            started = time.perf_counter()
            outcome = runner.run(source, variables={})
            times.append((time.perf_counter() - started) * 1000)
            assert outcome.passed, outcome.error
        times.sort()
        print(f"  {label:<40} {statistics.median(times):7.2f} {times[int(len(times) * 0.95)]:7.2f}")


if __name__ == "__main__":
    main()
