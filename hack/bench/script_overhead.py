"""What running scripts in worker processes costs per script, against the engine on the
calling thread (how scripts ran before the workers).

    .venv/bin/python hack/bench/script_overhead.py [--n 200] [--rounds 3]

For three kinds of small script (an empty one, a pre-request script that sets a header, a
post-response script that parses the body and asserts on it) it runs `--n` scripts through
`ScriptRunner.run` both ways, alternating rounds so that drift on a shared machine hits both
alike, and prints the median, 95th percentile and mean wall time per script (the best of
`--rounds` rounds by median) and the difference of the medians: the per-script overhead of
the worker. The first script through the workers is timed on its own: it starts a worker.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from assay.runner.apitest import script_engine
from assay.runner.apitest.scripts import ScriptRunner

REQUEST = {
    "method": "POST",
    "url": "https://api.example.com/v1/items?page=2",
    "headers": {"Content-Type": ["application/json"]},
    "body": '{"name": "widget"}',
}
RESPONSE = {
    "status": 201,
    "headers": {"Content-Type": ["application/json"]},
    "body": '{"id": 7, "tags": ["a", "b"]}',
    "response_time_ms": 41.5,
}

CASES = {
    "empty script": ("", {}),
    "pre-request header": ("request.headers['X-Sig'] = encode_base64(variables.get('k'))", {"request": REQUEST}),
    "post-response asserts": (
        "var d = JSON.parse(response.body); expect(response.status).to.equal(201); "
        "assert.lengthOf(d.tags, 2); variables.set('id', d.id)",
        {"request": REQUEST, "response": RESPONSE},
    ),
}


class InProcess(ScriptRunner):
    """The same runs with the engine on the calling thread, without a deadline from outside."""

    def _evaluate(self, source: str, inputs: str) -> dict:
        return json.loads(script_engine.evaluate(self._request(source, inputs)))


def _times(runner: ScriptRunner, source: str, kwargs: dict, n: int) -> list[float]:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        outcome = runner.run(source, variables={"k": "v"}, **kwargs)
        times.append((time.perf_counter() - started) * 1000)
        assert outcome.passed, outcome.error
    return times


def _summary(times: list[float]) -> str:
    return (
        f"median {statistics.median(times):6.3f}  p95 {statistics.quantiles(times, n=20)[-1]:6.3f}  "
        f"mean {statistics.fmean(times):6.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="scripts per kind, way and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    workers, in_process = ScriptRunner(), InProcess()

    started = time.perf_counter()
    workers.run("", variables={})
    print(f"first script (starts a worker): {(time.perf_counter() - started) * 1000:.1f} ms")
    print(f"{'ms per script':24s} {'in process':38s} {'in a worker':38s} overhead")
    for name, (source, kwargs) in CASES.items():
        rounds: dict[str, list[list[float]]] = {"in process": [], "worker": []}
        for _ in range(args.rounds):
            rounds["in process"].append(_times(in_process, source, kwargs, args.n))
            rounds["worker"].append(_times(workers, source, kwargs, args.n))
        before, after = (min(r, key=statistics.median) for r in rounds.values())
        print(
            f"{name:24s} {_summary(before):38s} {_summary(after):38s} "
            f"{statistics.median(after) - statistics.median(before):+.3f}"
        )


if __name__ == "__main__":
    main()
