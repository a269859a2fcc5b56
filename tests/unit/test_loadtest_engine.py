"""The load engine behind `loadtest`/`run` against a real loopback target: exact counts,
shard splits, and the termination-message summary the operator reads."""

import pytest

from assay.crds.contracts.summary import ShardSummary, merge
from assay.crds.loadtest import LoadTestSpec
from assay.runner.load import run, run_load_shard
from assay.runner.load.engine import resolve_url
from assay.runner.load.profile import share, weighted_order
from tests.support.targets import CountingTarget


@pytest.mark.parametrize("total,parts", [(10, 3), (2, 5), (7, 7), (1, 1), (100, 64)])
def test_shares_add_up_and_differ_by_at_most_one(total, parts):
    shares = [share(total, parts, i) for i in range(parts)]
    assert sum(shares) == total
    assert max(shares) - min(shares) <= 1


def test_weighted_order_follows_the_weights_and_spreads_them():
    order = weighted_order([3, 1])
    assert sorted(order) == [0, 0, 0, 1]
    assert order != [1, 0, 0, 0] and order.count(1) == 1
    assert weighted_order([1]) == [0]


def test_relative_urls_join_the_base_url():
    assert resolve_url("http://h:1/api", "/items") == "http://h:1/api/items"
    assert resolve_url("http://h:1/api/", "items") == "http://h:1/api/items"
    assert resolve_url("http://h:1", "http://other/x") == "http://other/x"
    assert resolve_url(None, "http://h/x") == "http://h/x"


def spec(url, users, iterations, weights=(1,), shards=1):
    return LoadTestSpec.model_validate(
        {
            "shards": shards,
            "baseUrl": url,
            "load": {"users": users, "iterations": iterations},
            "flows": [{"name": f"f{i}", "weight": w, "requests": [{"url": f"/f{i}"}]} for i, w in enumerate(weights)],
        }
    )


def summary_of(s, shard, shards):
    return run(run_load_shard(s, shard, shards)).summary()


def test_three_shards_send_exactly_the_configured_requests():
    with CountingTarget() as target:
        s = spec(target.url, users=5, iterations=4, weights=(3, 1), shards=3)
        results = [summary_of(s, i, 3) for i in range(3)]
    total = merge(results)
    assert target.total == total.requests == 20
    assert [r.requests for r in results] == [8, 8, 4]
    # The mix over all shards is exactly the weights' 3:1.
    assert target.counts[("GET", "/f0")] == 15 and target.counts[("GET", "/f1")] == 5
    assert total.failures == 0 and total.min_ms <= total.avg_ms <= total.max_ms
    assert total.min_ms <= total.p95_ms <= total.max_ms * 1.01


def test_error_statuses_and_refused_connections_count_as_failures():
    with CountingTarget(status=503) as target:
        result = summary_of(spec(target.url, 1, 3), 0, 1)
    assert (result.requests, result.failures, result.errors) == (3, 3, {"status": 3})
    refused = summary_of(spec("http://127.0.0.1:9", 1, 2), 0, 1)
    assert (refused.requests, refused.failures, refused.errors) == (2, 2, {"connect": 2})


def test_summary_survives_the_termination_message_round_trip():
    s = ShardSummary(shard=1)
    for latency in (3.0, 1.0, 2.0):
        s.record(latency, ok=latency != 2.0)
    back = ShardSummary.from_message(s.to_message())
    assert back == s and back.avg_ms == 2.0 and back.failures == 1
    assert ShardSummary.from_message("not json") is None
