"""Live progress in the result store: one row per (run, shard), replaced by each report, gone
when the run finishes and refused after; and all shards merged into one view."""

from __future__ import annotations

import time

import pytest

from assay.api.store import ProgressRecord, RunRecord, merge_progress
from assay.api.store.progress import STALE_AFTER_SECONDS, progress_sample
from assay.api.store.store import PROGRESS_MAX_AGE_SECONDS
from assay.crds.contracts.histogram import Histogram
from assay.crds.contracts.progress import ShardProgress

RUN = "checkout-1a2b3c4d"


@pytest.fixture
def store(tmp_path, make_store):
    with make_store(tmp_path / "store") as s:
        yield s


def report(
    requests: int, errors: int = 0, *, latencies_ms=(), window_s: int = 5, users: int = 2, done: bool = False
) -> dict:
    """A shard's report as the gateway stores it, its window holding `latencies_ms`."""
    window = Histogram()
    window.record_many(int(ms * 1000) for ms in latencies_ms)
    return ShardProgress(
        requests=requests,
        errors=errors,
        active_users=users,
        window_s=window_s,
        window_requests=len(latencies_ms),
        rps=len(latencies_ms) / window_s,
        p95_ms=window.value_at_percentile(95) / 1000 if window.total else None,
        window_histogram=window.encode() if window.total else None,
        done=done,
    ).model_dump(mode="json", by_alias=True)


def loadtest_run(state: str = "running") -> RunRecord:
    return RunRecord(
        run_id=RUN, kind="LoadTest", project="shop", owner_name="checkout", owner_uid="uid-1", state=state, shards=2
    )


# --- the table --------------------------------------------------------------------------------


def test_a_shards_next_report_replaces_its_last_one(store):
    assert store.put_progress(RUN, 0, report(10), now=100.0)
    assert store.put_progress(RUN, 1, report(7), now=101.0)
    assert store.put_progress(RUN, 0, report(25), now=102.0)
    rows = store.list_progress(RUN)
    assert [(r.shard, r.doc["requests"], r.updated_at) for r in rows] == [(0, 25, 102.0), (1, 7, 101.0)]
    assert store._conn().execute("SELECT count(*) FROM run_progress").fetchone()[0] == 2


def test_progress_arrives_before_the_run_has_a_record(store):
    # Shards report while they run; the run's record appears with its first result document.
    assert store.get_run(RUN) is None
    assert store.put_progress(RUN, 0, report(3))
    assert store.list_progress(RUN)[0].doc["requests"] == 3


def test_finishing_the_run_drops_its_progress_and_later_reports_are_refused(store):
    store.upsert_run(loadtest_run("running"))
    store.put_progress(RUN, 0, report(10))
    store.put_progress(RUN, 1, report(12))
    store.put_progress("other-run", 0, report(5))
    store.upsert_run(loadtest_run("succeeded"))
    assert store.list_progress(RUN) == []
    assert store.put_progress(RUN, 0, report(11)) is False  # a late push cannot bring them back
    assert store.list_progress(RUN) == []
    assert len(store.list_progress("other-run")) == 1


def test_progress_nobody_updates_for_a_day_is_purged(store):
    store.put_progress("dead-run", 0, report(1), now=1000.0)
    store.put_progress(RUN, 0, report(1), now=1000.0 + PROGRESS_MAX_AGE_SECONDS)
    store.purge_expired(now=1000.0 + PROGRESS_MAX_AGE_SECONDS + 1)
    assert store.list_progress("dead-run") == []
    assert len(store.list_progress(RUN)) == 1


def test_a_run_id_that_is_not_a_safe_name_is_refused(store):
    with pytest.raises(ValueError):
        store.put_progress("../etc", 0, report(1))


# --- merging ------------------------------------------------------------------------------------


def record(shard: int, doc: dict, updated_at: float = 1000.0) -> ProgressRecord:
    return ProgressRecord(run_id=RUN, shard=shard, doc=doc, updated_at=updated_at)


def test_no_reports_merge_to_nothing():
    assert merge_progress([], now=1000.0) is None


def test_counts_and_throughput_add_and_p95_comes_from_the_merged_windows():
    fast = [10.0] * 97  # shard 0: every request 10 ms
    slow = [200.0] * 3  # shard 1: every request 200 ms
    merged = merge_progress(
        [
            record(0, report(900, 3, latencies_ms=fast, users=4), 999.0),
            record(1, report(100, 1, latencies_ms=slow, users=1), 1000.0),
        ],
        now=1000.5,
    )
    assert (merged["requests"], merged["errors"], merged["activeUsers"]) == (1000, 4, 5)
    assert merged["rps"] == pytest.approx((97 + 3) / 5)
    assert (merged["shardsReporting"], merged["shardsDone"], merged["updatedAt"]) == (2, 0, 1000.0)
    # The union's p95 (10 ms: 97 of 100 requests), not the higher shard p95 (200 ms) nor an
    # average of the two: the histograms add.
    expected = Histogram()
    expected.record_many(int(ms * 1000) for ms in fast + slow)
    assert merged["p95Ms"] == pytest.approx(expected.value_at_percentile(95) / 1000, rel=0.01)
    assert merged["p95Ms"] < 11


def test_p95_is_of_the_union_when_the_tail_is_split_across_shards():
    a = [float(ms) for ms in range(1, 101)]  # 1..100 ms
    b = [float(ms) for ms in range(101, 201)]  # 101..200 ms
    merged = merge_progress(
        [record(0, report(100, latencies_ms=a)), record(1, report(100, latencies_ms=b))], now=1000.0
    )
    assert merged["p95Ms"] == pytest.approx(190.0, rel=0.01)  # 95% of 1..200


def test_finished_and_silent_shards_keep_their_totals_but_add_no_throughput():
    running = report(50, latencies_ms=[5.0] * 20, users=3)
    done = report(80, 2, latencies_ms=[900.0] * 20, users=0, done=True)
    silent = report(30, latencies_ms=[900.0] * 20, users=3)
    merged = merge_progress(
        [record(0, running, 1000.0), record(1, done, 1000.0), record(2, silent, 1000.0 - STALE_AFTER_SECONDS - 1)],
        now=1000.0,
    )
    assert (merged["requests"], merged["errors"]) == (160, 2)
    assert (merged["rps"], merged["activeUsers"], merged["shardsReporting"], merged["shardsDone"]) == (4.0, 3, 1, 1)
    assert merged["p95Ms"] < 6  # the 900 ms windows are over


def test_an_idle_window_has_no_p95():
    merged = merge_progress([record(0, report(10, latencies_ms=[]))], now=1000.0)
    assert merged["p95Ms"] is None and merged["rps"] == 0 and merged["requests"] == 10


# --- the live samples -----------------------------------------------------------------------------


def test_a_sample_adds_errors_per_second_and_p50_p99_of_the_merged_windows():
    a = {**report(100, 5, latencies_ms=[float(ms) for ms in range(1, 101)]), "windowErrors": 5}
    b = {**report(100, 0, latencies_ms=[float(ms) for ms in range(101, 201)], window_s=2), "windowErrors": 0}
    sample = progress_sample([record(0, a), record(1, b)], now=1000.0)
    assert sample["errorsPerSecond"] == pytest.approx(5 / 5)
    assert sample["p50Ms"] == pytest.approx(100.0, rel=0.01)
    assert sample["p95Ms"] == pytest.approx(190.0, rel=0.01)
    assert sample["p99Ms"] == pytest.approx(198.0, rel=0.01)
    merged = merge_progress([record(0, a), record(1, b)], now=1000.0)
    assert {k: v for k, v in sample.items() if k in merged} == merged
    assert set(sample) - set(merged) == {"errorsPerSecond", "p50Ms", "p99Ms"}


def test_samples_are_spaced_bounded_and_purged_with_their_run(store):
    for second in range(0, 20):  # two shards reporting every second: one sample per 2 s
        for shard in (0, 1):
            store.add_progress_sample(RUN, {"rps": second}, min_interval=2.0, keep=5, now=100.0 + second + shard / 10)
    samples = store.list_progress_samples(RUN)
    assert [s["rps"] for s in samples] == [10, 12, 14, 16, 18]  # the newest 5, oldest first
    assert [s["at"] for s in samples] == [110.0, 112.0, 114.0, 116.0, 118.0]
    store.upsert_run(loadtest_run("succeeded"))
    assert len(store.list_progress_samples(RUN)) == 5, "the finished run keeps its curve"
    store.retention_days = 1
    store.purge_expired(now=time.time() + 2 * 86400)
    assert store.list_progress_samples(RUN) == []


def test_samples_of_a_run_never_recorded_go_after_a_day(store):
    store.add_progress_sample(RUN, {"rps": 1}, min_interval=2.0, keep=5, now=1000.0)
    store.purge_expired(now=1000.0 + PROGRESS_MAX_AGE_SECONDS - 1)
    assert len(store.list_progress_samples(RUN)) == 1
    store.purge_expired(now=1000.0 + PROGRESS_MAX_AGE_SECONDS + 1)
    assert store.list_progress_samples(RUN) == []
