"""What one Runscope-style script costs the runner, from `ScriptRunner.run` to its outcome.

    .venv/bin/python hack/bench/script_overhead.py [--n 200] [--rounds 3]

Runs `--n` small scripts of three kinds (an empty script, a pre-request script that sets a
header, a post-response script that parses the body and asserts on it), `--rounds` times,
and prints the median, 95th percentile and mean wall time per script of each kind, the
best round's. The first script of the process is timed on its own: it pays for starting
the engine (and, where scripts run in worker processes, the first worker).
"""

from __future__ import annotations

import argparse
import statistics
import time

from assay.runner.apitest.scripts import ScriptRunner

REQUEST = {"method": "POST", "url": "https://api.example.com/v1/items?page=2",
           "headers": {"Content-Type": ["application/json"]}, "body": '{"name": "widget"}'}
RESPONSE = {"status": 201, "headers": {"Content-Type": ["application/json"]},
            "body": '{"id": 7, "tags": ["a", "b"]}', "response_time_ms": 41.5}

CASES = {
    "empty script": ("", {}),
    "pre-request header": ("request.headers['X-Sig'] = encode_base64(variables.get('k'))", {"request": REQUEST}),
    "post-response asserts": ("var d = JSON.parse(response.body); expect(response.status).to.equal(201); "
                              "assert.lengthOf(d.tags, 2); variables.set('id', d.id)",
                              {"request": REQUEST, "response": RESPONSE}),
}


def _times(runner: ScriptRunner, source: str, kwargs: dict, n: int) -> list[float]:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        outcome = runner.run(source, variables={"k": "v"}, **kwargs)
        times.append((time.perf_counter() - started) * 1000)
        assert outcome.passed, outcome.error
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="scripts per kind and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    runner = ScriptRunner()

    started = time.perf_counter()
    runner.run("", variables={})
    print(f"{'first script':24s} {(time.perf_counter() - started) * 1000:8.2f} ms")
    for name, (source, kwargs) in CASES.items():
        best = min((_times(runner, source, kwargs, args.n) for _ in range(args.rounds)), key=statistics.median)
        p95 = statistics.quantiles(best, n=20)[-1]
        print(f"{name:24s} median {statistics.median(best):6.3f} ms   p95 {p95:6.3f} ms   "
              f"mean {statistics.fmean(best):6.3f} ms   ({args.n} scripts)")


if __name__ == "__main__":
    main()
