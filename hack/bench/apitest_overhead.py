"""What the API-test engine adds to one request step, measured against bare httpx.

    .venv/bin/python hack/bench/apitest_overhead.py [--n 500] [--warmup 50]

One loopback HTTP server (a minimal asyncio server in a child process, so that it does not
compete with the measured client for the GIL) answers a small JSON document. In one run,
alternating so that drift hits both sides alike, the script measures:

  bare    `await client.get(url)` on a fresh `httpx.AsyncClient` (a new connection, as a
          Monitor run has), timed around the call;
  plain   a Monitor with one request step and nothing else: the step's own duration as the
          engine records it (`StepResult.duration_ms`: templating, request building, the
          timed send, the step detail, counting);
  typical a Monitor with one request step with a templated URL and header, a variable and
          two assertions (status and a JSON path).

Engine overhead per step = median(step) - median(bare). Client creation, the run's setup
and teardown are outside both measurements; a full garbage collection runs before each
sample (outside the timing), so that one sample's garbage is not collected inside the next.
Goal: under 1 ms median overhead per step.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import subprocess
import sys
import time

BODY = b'{"data": {"items": [{"id": 1, "name": "first"}, {"id": 2, "name": "second"}], "count": 2}}'


async def _serve(port_file: str) -> None:
    response = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(BODY)).encode()
        + b"\r\n\r\n"
        + BODY
    )

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if length:
                    await reader.readexactly(length)
                writer.write(response)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.sockets[0].getsockname()[1]))
    os.replace(port_file + ".tmp", port_file)
    async with server:
        await server.serve_forever()


def start_server() -> tuple[subprocess.Popen, str]:
    import tempfile

    port_file = os.path.join(tempfile.mkdtemp(prefix="assay-bench-"), "port")
    proc = subprocess.Popen([sys.executable, __file__, "--serve", port_file])
    deadline = time.monotonic() + 10
    while not os.path.exists(port_file):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise SystemExit("the benchmark server did not start")
        time.sleep(0.01)
    with open(port_file) as f:
        return proc, f"http://127.0.0.1:{f.read().strip()}"


def monitors(url: str):
    from assay.crds import Monitor

    plain = Monitor.model_validate(
        {"metadata": {"name": "plain"}, "spec": {"steps": [{"stepType": "request", "url": f"{url}/json"}]}}
    )
    typical = Monitor.model_validate(
        {
            "metadata": {"name": "typical"},
            "spec": {
                "environments": [{"name": "bench", "initialVariables": {"base": url, "token": "t-1"}}],
                "steps": [
                    {
                        "stepType": "request",
                        "url": "{{base}}/json?token={{token}}",
                        "headers": {"Authorization": ["Bearer {{token}}"]},
                        "variables": [{"name": "first", "source": "response_json", "property": "data.items[0].name"}],
                        "assertions": [
                            {"source": "response_status", "comparison": "equal_number", "value": 200},
                            {
                                "source": "response_json",
                                "property": "data.count",
                                "comparison": "equal_number",
                                "value": 2,
                            },
                        ],
                    }
                ],
            },
        }
    )
    return plain, typical


async def measure(url: str, n: int, warmup: int) -> dict[str, list[float]]:
    import httpx

    from assay.runner.apitest.monitor import run_monitor

    plain, typical = monitors(url)
    samples: dict[str, list[float]] = {"bare": [], "plain": [], "typical": []}
    for i in range(warmup + n):
        # A full collection before each sample, outside the timed part: otherwise the garbage
        # of one sample (a client, its SSL context, a run) is collected inside the next one.
        gc.collect()
        async with httpx.AsyncClient() as client:
            began = time.perf_counter()
            response = await client.get(f"{url}/json")
            bare = (time.perf_counter() - began) * 1000.0
            assert response.status_code == 200
        gc.collect()
        plain_run = await run_monitor(plain)
        gc.collect()
        typical_run = await run_monitor(typical)
        assert plain_run.passed and typical_run.passed, typical_run.to_runscope()
        if i >= warmup:
            samples["bare"].append(bare)
            samples["plain"].append(plain_run.requests[0].duration_ms)
            samples["typical"].append(typical_run.requests[0].duration_ms)
    return samples


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=500, help="measured runs per kind (default 500)")
    parser.add_argument("--warmup", type=int, default=50, help="unmeasured runs first (default 50)")
    parser.add_argument("--serve", metavar="PORT_FILE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(_serve(args.serve))
        return 0
    proc, url = start_server()
    try:
        samples = asyncio.run(measure(url, args.n, args.warmup))
    finally:
        proc.terminate()
        proc.wait(5)
    bare = statistics.median(samples["bare"])
    print(
        f"API-test engine overhead per request step, loopback, n={args.n} (warm-up {args.warmup}), "
        f"Python {sys.version.split()[0]}"
    )
    print(f"{'':<34}{'median ms':>10}{'p90 ms':>10}{'ratio':>8}{'overhead ms':>13}")
    rows = [
        ("bare httpx get (fresh client)", "bare"),
        ("Monitor step, plain", "plain"),
        ("Monitor step, typical", "typical"),
    ]
    for label, key in rows:
        median = statistics.median(samples[key])
        overhead = "" if key == "bare" else f"{median - bare:13.3f}"
        ratio = "" if key == "bare" else f"{median / bare:8.2f}"
        print(f"{label:<34}{median:10.3f}{p90(samples[key]):10.3f}{ratio:>8}{overhead:>13}")
    worst = statistics.median(samples["typical"]) - bare
    verdict = "met" if worst < 1.0 else "NOT met"
    print(f"goal: < 1 ms median overhead per step — {verdict} ({worst:.3f} ms for the typical step)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
