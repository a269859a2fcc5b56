"""run_load_shard against real loopback targets: what the target counts is what the engine
counts, per request name, for the closed and open models and across shards; pools,
templating, extractions, assertions and timeouts."""

from __future__ import annotations

import json

import pytest

from assay.crds.loadtest import LoadTestSpec
from assay.runner.load import merge, run, run_load_shard
from assay.runner.load.engine import LoadSpecError
from assay.runner.load.profile import weighted_order
from tests.unit.test_load_servers import LoadTarget


def make_spec(url: str, load: dict, flows: list[dict] | None = None, **extra) -> LoadTestSpec:
    flows = flows or [
        {
            "name": "browse",
            "weight": 3,
            "requests": [{"name": "list", "url": "/items"}, {"name": "one", "url": "/items/1"}],
        },
        {"name": "buy", "weight": 1, "requests": [{"name": "order", "method": "POST", "url": "/orders", "body": "{}"}]},
    ]
    return LoadTestSpec.model_validate({"baseUrl": url, "load": load, "flows": flows, **extra})


def counts_by_name(metrics) -> dict[str, int]:
    return {name: stats.count for name, stats in metrics.requests.items()}


def target_by_name(target) -> dict[str, int]:
    names = {("GET", "/items"): "list", ("GET", "/items/1"): "one", ("POST", "/orders"): "order"}
    out: dict[str, int] = {}
    for key, n in target.counts.items():
        out[names[key]] = out.get(names[key], 0) + n
    return out


def test_closed_model_by_iterations_sends_exactly_users_times_iterations():
    with LoadTarget() as target:
        metrics = run(run_load_shard(make_spec(target.url, {"users": 4, "iterations": 8}), 0, 1))
    # 32 iterations in the 3:1 mix: 24 browse (2 requests each) and 8 buy.
    assert counts_by_name(metrics) == target_by_name(target) == {"list": 24, "one": 24, "order": 8}
    assert metrics.total.count == target.total == 56 and metrics.total.error_count == 0
    assert metrics.total.bytes_sent > 0 and metrics.total.bytes_received > 0


def test_closed_model_by_duration_counts_every_request_the_target_saw():
    with LoadTarget(delay=0.005) as target:
        spec = make_spec(target.url, {"users": 6, "duration": "1500ms"})
        metrics = run(run_load_shard(spec, 0, 1))
    assert metrics.total.count == target.total > 100
    assert counts_by_name(metrics) == target_by_name(target)
    assert 1.4 < metrics.duration_s < 2.0
    assert sum(e.total.count for e in metrics.timeline) == metrics.total.count


def test_open_model_starts_exactly_the_scheduled_iterations():
    with LoadTarget() as target:
        spec = make_spec(target.url, {"model": "open", "arrivalRate": 50, "duration": "2s"})
        metrics = run(run_load_shard(spec, 0, 1))
    # 100 iterations: 75 browse (2 requests) and 25 buy.
    assert counts_by_name(metrics) == target_by_name(target) == {"list": 75, "one": 75, "order": 25}
    assert metrics.dropped_iterations == 0


@pytest.mark.parametrize(
    "load",
    [
        {"users": 5, "iterations": 4},
        {"users": 7, "duration": "1s"},
        {"model": "open", "arrivalRate": 45, "duration": "1s"},
    ],
)
def test_three_shards_add_up_to_the_whole_per_request_name(load):
    with LoadTarget() as target:
        spec = make_spec(target.url, load, shards=3)
        parts = [run(run_load_shard(spec, i, 3, run_id="r1")) for i in range(3)]
    merged = merge(parts)
    assert counts_by_name(merged) == target_by_name(target)
    assert merged.total.count == target.total == sum(p.total.count for p in parts)
    if "iterations" in load:
        assert counts_by_name(merged) == {"list": 15, "one": 15, "order": 5}  # 20 iterations, 3:1
    if load.get("model") == "open":
        browse = sum(1 for j in range(45) if weighted_order([3, 1])[j % 4] == 0)
        assert counts_by_name(merged) == {"list": browse, "one": browse, "order": 45 - browse}
    assert merged.run_id == "r1" and merged.shard is None and merged.shards == 3


def test_open_model_iterations_split_exactly_across_shards():
    spec = make_spec("http://127.0.0.1:1", {"model": "open", "arrivalRate": 45, "duration": "1s"}, shards=3)
    from assay.runner.load.profile import OpenSchedule

    schedule = OpenSchedule.from_profile(spec.load)
    numbers = sorted(j for s in range(3) for j, _ in schedule.arrivals(s, 3))
    assert numbers == list(range(45)) == list(range(schedule.total()))


def test_parameter_pools_give_each_shard_its_own_rows_and_templates_render_them():
    csv = "user,password\n" + "".join(f"u{i},p{i}\n" for i in range(6))
    flows = [
        {
            "name": "login",
            "requests": [
                {
                    "name": "login",
                    "method": "POST",
                    "url": "/login/{{user}}",
                    "headers": {"X-User": "{{user}}"},
                    "body": '{"u": "{{user}}", "p": "{{password}}"}',
                }
            ],
        }
    ]
    with LoadTarget() as target:
        spec = make_spec(
            target.url,
            {"users": 3, "iterations": 2},
            flows,
            shards=3,
            parameterPools=[{"name": "accounts", "csv": csv}],
        )
        for shard in range(3):
            run(run_load_shard(spec, shard, 3))
    paths = sorted(path for (_, path) in target.counts)
    assert paths == [f"/login/u{i}" for i in range(6)]  # every row once: shard s took rows s, s+3
    bodies = sorted((d["u"], d["p"]) for d in map(json.loads, target.bodies))
    assert bodies == [(f"u{i}", f"p{i}") for i in range(6)]


def test_extractions_feed_later_requests_and_assertions_fail_as_assertion_errors():
    def body(method, path, received):
        if path == "/login":
            return b'{"token": "t-123", "items": [{"id": 17}]}'
        return json.dumps({"path": path}).encode()

    def status(method, path, received):
        return 404 if path == "/missing" else 200

    flows = [
        {
            "name": "f",
            "requests": [
                {
                    "name": "login",
                    "method": "POST",
                    "url": "/login",
                    "extract": [
                        {"name": "token", "source": "response_json", "property": "token"},
                        {"name": "item", "source": "response_json", "property": "items[0].id"},
                        {"name": "kind", "source": "response_headers", "property": "content-type"},
                    ],
                },
                {
                    "name": "item",
                    "url": "/items/{{item}}?t={{token}}",
                    "assertions": [
                        {
                            "source": "response_json",
                            "property": "path",
                            "comparison": "contains",
                            "value": "/items/{{item}}",
                        }
                    ],
                },
                {
                    "name": "wrong",
                    "url": "/other",
                    "assertions": [
                        {"source": "response_json", "property": "path", "comparison": "equal", "value": "/nope"}
                    ],
                },
                {
                    "name": "expected 404",
                    "url": "/missing",
                    "assertions": [{"source": "response_status", "comparison": "equal_number", "value": 404}],
                },
                {"name": "plain 404", "url": "/missing"},
            ],
        }
    ]
    with LoadTarget(body=body, status=status) as target:
        metrics = run(run_load_shard(make_spec(target.url, {"users": 2, "iterations": 3}, flows), 0, 1))
    assert target.counts[("GET", "/items/17?t=t-123")] == 6
    errors = {name: stats.errors_by_kind() for name, stats in metrics.requests.items()}
    assert sum(errors["login"].values()) == 0 and sum(errors["item"].values()) == 0
    assert errors["wrong"]["assertion"] == 6
    assert sum(errors["expected 404"].values()) == 0
    assert errors["plain 404"]["status"] == 6
    # The first error of each kind is kept, to say what went wrong.
    assert metrics.error_samples == {
        "assertion": "wrong: response_json path equal /nope",
        "status": "plain 404: HTTP 404",
    }


def test_request_timeouts_are_timeout_errors_and_their_wait_is_recorded():
    flows = [{"name": "slow", "requests": [{"name": "slow", "url": "/slow", "timeout": "200ms"}]}]
    with LoadTarget(delay=0.6) as target:
        metrics = run(run_load_shard(make_spec(target.url, {"users": 2, "iterations": 2}, flows), 0, 1))
    stats = metrics.requests["slow"]
    assert stats.errors_by_kind()["timeout"] == 4 and stats.count == 4
    assert 190 <= stats.latency_ms("min") and stats.latency_ms("max") < 400


def test_open_model_measures_latency_from_the_intended_start():
    # One user at most and a target that takes 100 ms: 10 iterations a second cannot keep
    # up, so later iterations wait. Their latency must include the wait (coordinated
    # omission), and what never started in time is counted as dropped.
    flows = [{"name": "f", "requests": [{"name": "r", "url": "/r"}]}]
    with LoadTarget(delay=0.1) as target:
        spec = make_spec(target.url, {"model": "open", "arrivalRate": 20, "duration": "1s", "maxUsers": 1}, flows)
        metrics = run(run_load_shard(spec, 0, 1))
    stats = metrics.requests["r"]
    served = target.total
    assert stats.count == served and 8 <= served <= 12
    assert metrics.dropped_iterations == 20 - served
    assert stats.latency_ms("min") >= 95
    assert stats.latency_ms("max") > 400  # the 10th started ~0.5 s after it was due


def test_progress_is_reported_about_once_a_second():
    seen = []
    with LoadTarget() as target:
        spec = make_spec(target.url, {"users": 2, "duration": "2500ms"})
        run(run_load_shard(spec, 0, 1, on_progress=seen.append))
    assert 3 <= len(seen) <= 5
    busy = [p for p in seen[:-1] if p.window_requests]
    assert busy and all(p.rps > 0 and p.p95_ms is not None for p in busy)
    assert seen[-1].requests == target.total
    assert "req/s" in seen[0].line()


def test_metrics_json_has_the_contract_keys():
    with LoadTarget() as target:
        metrics = run(
            run_load_shard(
                make_spec(target.url, {"users": 1, "iterations": 2}, criteria=["p95 < 5s", "error_rate < 1%"]),
                0,
                1,
                run_id="run-7",
            )
        )
    doc = json.loads(metrics.to_json())
    assert {
        "version",
        "runId",
        "shard",
        "shards",
        "startedAt",
        "finishedAt",
        "requests",
        "total",
        "timeline",
        "criteria",
        "aborted",
        "abortReason",
    } <= set(doc)
    assert doc["version"] == 1 and doc["runId"] == "run-7" and doc["aborted"] is False and doc["abortReason"] is None
    stats_keys = {
        "count",
        "errors",
        "bytesSent",
        "bytesReceived",
        "redirects",
        "histogram",
        "minMs",
        "meanMs",
        "p50Ms",
        "p90Ms",
        "p95Ms",
        "p99Ms",
        "maxMs",
    }
    assert set(doc["total"]) == stats_keys
    assert set(doc["total"]["errors"]) == {"status", "timeout", "connect", "assertion", "other"}
    entry = doc["timeline"][0]
    assert set(entry) == {"second", "requests", "total", "activeUsers"} and isinstance(entry["second"], int)
    assert [c["criterion"] for c in doc["criteria"]] == ["p95 < 5s", "error_rate < 1%"]
    assert all(c["passed"] for c in doc["criteria"])


def test_a_relative_url_without_base_url_is_refused_before_the_run():
    spec = LoadTestSpec.model_validate(
        {"load": {"iterations": 1}, "flows": [{"name": "f", "requests": [{"url": "/x/{{id}}"}]}]}
    )
    with pytest.raises(LoadSpecError, match="baseUrl"):
        run(run_load_shard(spec, 0, 1))
