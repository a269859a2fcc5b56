"""How closely the load engine follows an open-model schedule, second by second.

The tests (tests/unit/test_load_profile.py) bound each arrival's lag loosely enough to hold on a
busy CI machine; this measures the precision on a quiet one. A 20 s profile (ramp to 300/s over
5 s, hold 10 s, 3 s stage down to 100/s, 2 s ramp down) runs against a loopback server that
records when each request arrives; it prints the arrivals per second against the schedule, the
total deviation, and the arrival-lag percentiles.

    .venv/bin/python hack/bench/schedule_accuracy.py [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from assay.crds.loadtest import LoadTestSpec
from assay.runner.load import run, run_load_shard
from assay.runner.load.profile import OpenSchedule

PROFILE = {
    "model": "open",
    "arrivalRate": 300,
    "rampUp": "5s",
    "duration": "10s",
    "stages": [{"duration": "3s", "target": 100}],
    "rampDown": "2s",
}


class ArrivalRecorder:
    def __init__(self):
        self.arrivals: list[float] = []
        lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_GET(self):
                arrived = time.time()
                with lock:
                    recorder.arrivals.append(arrived)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    target = ArrivalRecorder()
    spec = LoadTestSpec.model_validate(
        {
            "baseUrl": target.url,
            "load": PROFILE,
            "requestTimeout": "5s",
            "flows": [{"name": "f", "requests": [{"url": "/"}]}],
        }
    )
    print(f"running a {OpenSchedule.from_profile(spec.load).end:g} s open-model profile against {target.url} ...")
    metrics = run(run_load_shard(spec, 0, 1))
    target.server.shutdown()
    schedule = OpenSchedule.from_profile(spec.load)
    relative = sorted(t - metrics.started_at for t in target.arrivals)
    lags = [got - planned for got, (_, planned) in zip(relative, schedule.arrivals())]
    rows, off = [], 0.0
    for second in range(int(math.ceil(schedule.end))):
        expected = schedule.expected_between(second, second + 1)
        got = sum(1 for t in relative if second <= t < second + 1)
        off += abs(got - expected)
        rows.append({"second": second, "expected": round(expected, 1), "got": got})
        print(f"  second {second:2d}: expected {expected:7.1f}, got {got:4d}")
    figures = {
        "requests": len(relative),
        "scheduled": schedule.total(),
        "perSecondDeviationPercent": round(100 * off / schedule.total(), 2),
        "lagMs": {
            name: round(1000 * percentile(lags, p), 1)
            for name, p in (("min", 0.0), ("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))
        },
        "seconds": rows,
    }
    print(
        f"{figures['requests']} of {figures['scheduled']} arrivals; per-second deviation "
        f"{figures['perSecondDeviationPercent']}%; lag ms {figures['lagMs']}"
    )
    if args.json:
        with open(args.json, "w") as out:
            json.dump(figures, out, indent=2)


if __name__ == "__main__":
    main()
