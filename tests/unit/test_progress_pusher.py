"""The runner's progress pusher: one body per shard from its processes' progress, the latest
only, off the engine's thread, and never a failure that reaches the run."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from assay.crds.contracts.histogram import Histogram
from assay.crds.contracts.progress import ShardProgress, progress_path
from assay.crds.contracts.runner_settings import RunnerSettings
from assay.runner.load.engine import Progress
from assay.runner.progress import ProgressPusher, combine, pusher_for

RUN = "checkout-1a2b3c4d"


def progress(
    requests: int, latencies_ms=(), *, errors: int = 0, users: int = 2, window_s: int = 5, elapsed: float = 3.0
) -> Progress:
    window = Histogram()
    window.record_many(int(ms * 1000) for ms in latencies_ms)
    return Progress(
        shard=0,
        elapsed_s=elapsed,
        second=int(time.time()),
        active_users=users,
        requests=requests,
        errors=errors,
        window_s=window_s,
        window_requests=len(latencies_ms),
        window_errors=0,
        window_histogram=window,
    )


class Gateway:
    """An httpx transport that records the PUTs and answers from `answer(request)`."""

    def __init__(self, answer=lambda request: httpx.Response(204)):
        self.answer = answer
        self.bodies: list[dict] = []
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.bodies.append(json.loads(request.content))
        return self.answer(request)

    def pusher(self, **kwargs) -> ProgressPusher:
        return ProgressPusher("http://gateway:8000/", RUN, "tok", 3, transport=httpx.MockTransport(self), **kwargs)


def test_a_shards_processes_combine_into_one_report():
    first = progress(100, [10.0] * 50, errors=2, users=3, elapsed=4.0)
    second = progress(60, [10.0] * 30 + [400.0] * 20, users=2, window_s=4, elapsed=4.2)
    combined = combine([first, second])
    assert (combined.requests, combined.errors, combined.active_users) == (160, 2, 5)
    assert (combined.window_s, combined.window_requests, combined.rps) == (5, 100, 20.0)
    assert combined.elapsed_s == 4.2 and not combined.done
    # p95 of the union: 20 of 100 are 400 ms, so the 95th is one of them.
    assert combined.p95_ms == pytest.approx(400.0, rel=0.01)
    assert combined.histogram().total == 100


def test_a_report_round_trips_in_camel_case():
    report = combine([progress(7, [1.0, 2.0])], done=True)
    body = json.loads(report.to_body())
    assert {"requests", "activeUsers", "windowHistogram", "p95Ms", "done"} <= body.keys()
    assert ShardProgress.model_validate(body) == report


def test_the_pusher_sends_only_news_and_marks_its_last_report_done():
    gateway = Gateway()
    pusher = gateway.pusher()
    assert pusher.push() is False and gateway.bodies == []  # nothing to say yet
    pusher.update(0, progress(10, [5.0]))
    pusher.update(0, progress(20, [5.0]))  # replaces the first: only the latest goes out
    pusher.update(1, progress(5, [5.0]))
    assert pusher.push() is True
    assert pusher.push() is False  # no news
    pusher.stop()
    assert [(b["requests"], b["done"]) for b in gateway.bodies] == [(25, False), (25, True)]
    request = gateway.requests[0]
    assert request.url.path == progress_path(RUN, 3) == f"/internal/v1/runs/{RUN}/progress/3"
    assert request.method == "PUT" and request.headers["authorization"] == "Bearer tok"


def test_the_pusher_thread_pushes_every_interval_while_the_shard_runs():
    gateway = Gateway()
    with gateway.pusher(interval=0.05) as pusher:
        for n in range(1, 6):
            pusher.update(0, progress(n * 10, [1.0]))
            time.sleep(0.08)
    requests = [b["requests"] for b in gateway.bodies]
    assert len(requests) >= 4 and requests == sorted(requests) and requests[-1] == 50
    assert gateway.bodies[-1]["done"]


@pytest.mark.parametrize(
    "answer",
    [
        lambda request: httpx.Response(503, text="busy"),
        lambda request: httpx.Response(401, json={"error": "unauthorized"}),
        lambda request: (_ for _ in ()).throw(httpx.ConnectError("refused", request=request)),
        lambda request: (_ for _ in ()).throw(RuntimeError("a bug in the transport")),
    ],
)
def test_a_failing_gateway_never_reaches_the_run_and_is_logged_once(answer):
    logged = []
    gateway = Gateway(answer)
    pusher = gateway.pusher(log=logged.append)
    for n in range(3):
        pusher.update(0, progress(n, [1.0]))
        assert pusher.push() is False
    pusher.stop()  # the final push fails as quietly
    assert len(gateway.requests) == 4 and len(logged) == 1 and "the run goes on" in logged[0]


def test_the_pusher_says_when_the_gateway_is_back():
    logged = []
    answers = iter([httpx.Response(503), httpx.Response(204), httpx.Response(503)])
    pusher = Gateway(lambda request: next(answers)).pusher(log=logged.append)
    for n in range(3):
        pusher.update(0, progress(n, [1.0]))
        pusher.push()
    assert len(logged) == 3 and "again" in logged[1]


def test_a_hanging_gateway_does_not_slow_the_engines_callback():
    release = threading.Event()

    def hang(request):
        release.wait(5)
        return httpx.Response(204)

    pusher = Gateway(hang).pusher(interval=0.01)
    pusher.update(0, progress(1, [1.0] * 1000))
    pusher.start()
    time.sleep(0.05)  # the thread is now inside a PUT that does not answer
    started = time.perf_counter()
    for n in range(1000):
        pusher.update(0, progress(n, [1.0]))
    assert time.perf_counter() - started < 0.5
    release.set()
    pusher.stop(final=False)


def test_without_a_gateway_there_is_no_pusher():
    env = {"ASSAY_GATEWAY_URL": "http://gw", "ASSAY_UPLOAD_TOKEN": "tok", "ASSAY_RUN_ID": RUN}
    assert pusher_for(RunnerSettings.from_env({}), 0) is None
    for missing in env:
        assert pusher_for(RunnerSettings.from_env({k: v for k, v in env.items() if k != missing}), 0) is None
    pusher = pusher_for(RunnerSettings.from_env(env), 2)
    assert pusher is not None and pusher.url == f"http://gw/internal/v1/runs/{RUN}/progress/2"
    pusher.stop(final=False)


def test_a_pod_shard_over_two_processes_hands_each_ones_progress_to_the_pusher(tmp_path):
    from assay.runner.load.cli import run_pod_shard
    from assay.runner.manifest import load_manifest, loadtest_spec
    from tests.unit.test_load_cli import manifest
    from tests.unit.test_load_servers import LoadTarget

    seen: dict[int, list[int]] = {}
    with LoadTarget() as target:
        path = manifest(tmp_path, target.url, shards=1, load={"users": 2, "duration": "2s"})
        spec = loadtest_spec(load_manifest(str(path)), str(path))
        metrics = run_pod_shard(
            spec, 0, 1, processes=2, on_progress=lambda unit, p: seen.setdefault(unit, []).append(p.requests)
        )
    assert sorted(seen) == [0, 1]
    final = combine([progress(seen[0][-1]), progress(seen[1][-1])])
    assert final.requests == metrics.total.count == target.total


def test_the_gateways_abort_answer_is_kept_for_the_engine():
    answers = iter(
        [httpx.Response(204), httpx.Response(200, text="not json"), httpx.Response(200, json={"abort": "x"})]
    )
    gateway = Gateway(lambda request: next(answers))
    pusher = gateway.pusher()
    for requests in (1, 2):
        pusher.update(0, progress(requests, [5.0]))
        assert pusher.push() is True and pusher.abort_reason is None
    pusher.update(0, progress(3, [5.0]))
    assert pusher.push() is True and pusher.abort_reason == "x"
    pusher.stop(final=False)


@pytest.mark.parametrize("processes", [1, 2])
def test_a_pod_shard_asked_to_abort_stops_within_seconds_with_what_it_measured(tmp_path, processes):
    from assay.runner.load.cli import run_pod_shard
    from assay.runner.manifest import load_manifest, loadtest_spec
    from tests.unit.test_load_cli import manifest
    from tests.unit.test_load_servers import LoadTarget

    asked = time.monotonic() + 1.5
    with LoadTarget() as target:
        path = manifest(tmp_path, target.url, shards=1, load={"users": 2, "duration": "60s"})
        spec = loadtest_spec(load_manifest(str(path)), str(path))
        started = time.monotonic()
        metrics = run_pod_shard(
            spec,
            0,
            1,
            processes=processes,
            abort_requested=lambda: "aborted on request" if time.monotonic() > asked else None,
        )
        took = time.monotonic() - started
    assert took < 10, took
    assert metrics.aborted and metrics.abort_reason.endswith("aborted on request")
    assert 0 < metrics.total.count == target.total
