"""Monitor runs as Runscope results, metrics and request counts: the pure presentation over the
runner's own result documents, and a real store holding a run in two regions, a long history
and thousands of results, whose lists must not read the documents."""

from __future__ import annotations

import builtins
import json
import pathlib
import sqlite3
import time
from datetime import date, datetime, timedelta, timezone

import pytest

from assay.api.services import InvalidInput, NotFound
from assay.api.services.runscope_results import (
    Piece,
    RunscopeResults,
    check_count,
    percentile,
    record_source,
    result_detail,
    result_summary,
    step_detail,
    metrics_document,
    day_bounds,
    usage_window,
)
from assay.api.store import ResultIngest, RunRecord, Store
from assay.api.store import backends
from assay.api.store import store as store_module
from tests.support.monitor_results import result_doc, upload

BASE = "https://gw.example"


def piece(doc: dict, run_id="health-0123456789", index=0, steps=None) -> Piece:
    run = RunRecord(
        run_id=run_id,
        kind="Monitor",
        project="shop",
        owner_name="health",
        owner_uid="m-uid",
        state="succeeded",
        shards=2,
    )
    return Piece(run=run, index=index, doc=doc, steps=steps)


def test_a_list_item_is_the_documented_header_with_the_result_url_and_no_requests():
    item = result_summary(piece(result_doc()), BASE)
    assert "requests" not in item and item["source"] is None
    assert item["test_run_url"] == f"{BASE}/buckets/shop/tests/m-uid/results/health-0123456789"
    assert (item["region"], item["result"], item["requests_executed"], item["assertions_passed"]) == (
        "us1",
        "pass",
        1,
        1,
    )
    assert "subtest_detail" not in item and item["agent_expired"] is False
    with_subtests = result_summary(piece(result_doc()), BASE, subtests=True)
    assert with_subtests["subtests_count"] == 0 and set(with_subtests["subtest_detail"]) == {
        "name",
        "note",
        "result",
        "test_uuid",
        "test_run_uuid",
        "test_run_url",
        "started_at",
        "finished_at",
    }


def test_the_detail_keeps_every_step_and_steps_that_sent_nothing_are_null():
    detail = result_detail(piece(result_doc(requests=2)), BASE)
    assert [s["uuid"] for s in detail["requests"]] == ["step-0", "step-1", "pause-1"]
    assert detail["requests"][2]["result"] is None and detail["requests"][2]["url"] is None
    assert detail["requests"][0]["timings"]["wait_for_response_ms"] == 39.0
    assert detail["source"] is None and detail["test_run_id"] == "health-0123456789"
    triggered = result_detail(Piece(**{**piece(result_doc()).__dict__, "source": "trigger"}), BASE)
    assert triggered["source"] == "trigger"
    ran_as_subtest = piece(result_doc())
    ran_as_subtest.doc["source"] = "subtest"
    assert result_summary(Piece(**{**ran_as_subtest.__dict__, "source": "trigger"}), BASE)["source"] == "subtest"


def test_a_step_detail_is_rebuilt_from_the_url_without_stored_details_and_served_as_stored_with_them():
    rebuilt = step_detail(piece(result_doc()), "step-0")
    assert rebuilt["request"]["host"] == "127.0.0.1" and rebuilt["request"]["path"] == "/ping"
    assert rebuilt["request"]["params"] == {"n": ["0", "x"]} and rebuilt["request"]["scheme"] == "http"
    assert rebuilt["response"] is None and rebuilt["bucket_key"] == "shop"
    assert step_detail(piece(result_doc()), "pause-1") is None
    assert step_detail(piece(result_doc()), "nope") is None
    stored = {"step-0": {"uuid": "step-0", "bucket_key": "shop", "request": {}, "response": {"status": 200}}}
    assert step_detail(piece(result_doc(), steps=stored), "step-0")["response"] == {"status": 200}


def test_a_run_names_who_ran_it_and_its_parent_test():
    item = result_summary(piece(result_doc()), BASE, run_by="shop/team")
    detail = result_detail(piece(result_doc()), BASE, run_by="shop/team")
    for out in (item, detail):
        # A top-level run is its own tree's root; the test's creator stands for who ran it.
        assert (out["parent_test_uuid"], out["run_by"]) == ("m-uid", "shop/team")
    sub = result_detail(
        piece({**result_doc(), "parent_test_uuid": "parent-uid", "run_by": "Jane Doe"}), BASE, run_by="x"
    )
    assert (sub["parent_test_uuid"], sub["run_by"]) == ("parent-uid", "Jane Doe")


def test_counts_are_checked():
    assert check_count(None) == 10 and check_count(50) == 50
    for bad in (0, 51):
        with pytest.raises(InvalidInput):
            check_count(bad)


def test_percentiles_interpolate_between_ranks():
    assert percentile([], 50) is None
    assert percentile([10.0, 20.0, 30.0, 40.0], 50) == 25.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 101.0], 99) == pytest.approx(97.12)  # rank 3.96: 4 + 0.96 * 97


def test_metrics_bucket_the_period_and_compare_it_with_the_one_before():
    now = 10 * 86400.0
    docs = [
        result_doc(started=now - 3600 * 2 + 10, wait_ms=40.0),
        result_doc(started=now - 3600 * 2 + 20, wait_ms=60.0, result="fail"),
        result_doc(started=now - 600, wait_ms=100.0, region="eu1"),
        result_doc(started=now - 86400 - 100, wait_ms=50.0),  # the day before
        result_doc(started=now - 3 * 86400, wait_ms=999.0),  # outside both periods
    ]
    out = metrics_document(docs, now=now, timeframe="day")
    assert [p["timestamp"] for p in out["response_times"]] == [now - 7200, now - 3600]
    assert out["response_times"][0] == {"success_ratio": 0.5, "timestamp": now - 7200, "avg_response_time_ms": 50}
    assert out["this_time_period"]["total_test_runs"] == 3
    assert out["this_time_period"]["response_time_50th_percentile"] == 60.0
    assert out["change_from_last_period"]["total_test_runs"] == 2.0
    assert out["change_from_last_period"]["response_time_50th_percentile"] == pytest.approx(0.2)
    assert (out["environment_uuid"], out["region"], out["timeframe"]) == ("all", "all", "day")

    eu = metrics_document(docs, now=now, timeframe="day", region="eu1")
    assert eu["this_time_period"]["total_test_runs"] == 1
    # Nothing before to compare with: no change, as a number like every other change.
    assert eu["change_from_last_period"] == {
        "response_time_50th_percentile": 0.0,
        "response_time_95th_percentile": 0.0,
        "response_time_99th_percentile": 0.0,
        "total_test_runs": 0.0,
    }
    assert metrics_document(docs, now=now, environment_uuid="other")["response_times"] == []
    hour = metrics_document(docs, now=now, timeframe="hour")
    assert [p["timestamp"] for p in hour["response_times"]] == [now - 600]
    with pytest.raises(InvalidInput):
        metrics_document(docs, now=now, timeframe="year")


def test_usage_periods_default_to_the_last_day():
    today = date(2019, 11, 15)
    assert usage_window(today) == (date(2019, 11, 14), today)
    assert usage_window(today, days=10) == (date(2019, 11, 5), today)
    assert usage_window(today, date_="2019-11-01") == (date(2019, 11, 1), today)
    assert usage_window(today, from_="2019-10-01", to="2019-10-02") == (date(2019, 10, 1), date(2019, 10, 2))
    # The widest periods there are: up to the last day of year 9999, a century back.
    assert usage_window(today, from_="0001-01-01", to="9999-12-31") == (date.min, date.max)
    assert day_bounds(date.max, date.max)[1] - day_bounds(date.max, date.max)[0] == 86400
    assert usage_window(today, days=36_600)[0] == date(1919, 9, 1)
    # days=1738865699 overflowed the date arithmetic (a 500).
    for bad in (
        {"from_": "2019-10-01"},
        {"date_": "15/11/2019"},
        {"days": 0},
        {"days": 36_601},
        {"days": 1_738_865_699},
        {"from_": "2019-10-03", "to": "2019-10-02"},
        {"date_": "2019-02-30"},
        {"date_": "2019-11-01\n"},
    ):
        with pytest.raises(InvalidInput):
            usage_window(today, **bad)


@pytest.fixture
def store(tmp_path, make_store):
    with make_store(tmp_path / "store") as s:
        yield s


def test_a_run_in_two_regions_is_two_results_and_the_detail_picks_a_region(store):
    ingest = ResultIngest(store)
    t = time.time() - 1000  # results are recorded as they arrive, after they started
    upload(ingest, "health-1111111111", "monitor-result.json", result_doc(run_id="health-1111111111", started=t), 1)
    upload(
        ingest,
        "health-2222222222",
        "monitor-result-0.json",
        result_doc(run_id="health-2222222222", region="us1", started=t + 100),
        2,
    )
    upload(
        ingest,
        "health-2222222222",
        "monitor-result-1.json",
        result_doc(run_id="health-2222222222", region="eu1", started=t + 101, result="fail"),
        2,
    )
    results = RunscopeResults(store, BASE)
    record_source(store, "shop", "health-2222222222", "trigger")

    items = results.list_results("shop", "m-uid", count=10, since=None, before=None, subtests=False)
    assert [(i["test_run_id"], i["region"], i["result"], i["source"]) for i in items] == [
        ("health-2222222222", "eu1", "fail", "trigger"),
        ("health-2222222222", "us1", "pass", "trigger"),
        ("health-1111111111", "us1", "pass", "scheduled"),
    ]
    assert results.result("shop", "m-uid", "health-1111111111")["source"] == "scheduled"
    assert results.list_results("shop", "m-uid", count=1, since=t, before=None, subtests=False)[0]["region"] == "eu1"
    assert results.result("shop", "m-uid", "health-2222222222", "eu1")["result"] == "fail"
    assert results.result("shop", "m-uid", "health-2222222222")["region"] == "us1"
    assert results.result("shop", "m-uid", "health-2222222222")["source"] == "trigger"
    assert results.result("shop", "m-uid", "latest")["test_run_id"] == "health-2222222222"
    for args in (
        ("shop", "m-uid", "health-2222222222", "ap1"),
        ("shop", "other-uid", "health-1111111111", None),
        ("other", "m-uid", "health-1111111111", None),
        ("shop", "m-uid", "../etc", None),
    ):
        with pytest.raises(NotFound):
            results.result(*args)
    older = results.list_results("shop", "m-uid", count=10, since=None, before=t + 101, subtests=False)
    assert [(i["test_run_id"], i["region"]) for i in older] == [
        ("health-2222222222", "us1"),
        ("health-1111111111", "us1"),
    ]
    today = datetime.fromtimestamp(t + 101, timezone.utc).date()
    assert results.bucket_usage("shop", today - timedelta(days=1), today)["requests_count"] == 3
    assert results.bucket_usage("shop", date(2019, 11, 14), date(2019, 11, 15))["requests_count"] == 0


def test_the_window_is_exclusive_at_both_ends_newest_first_and_counted(store):
    ingest = ResultIngest(store)
    for t in (10, 20, 30, 40):
        upload(ingest, f"health-{t:010d}", "monitor-result.json", result_doc(run_id=f"health-{t:010d}", started=t), 1)
    results = RunscopeResults(store, BASE)

    def window(**kw):
        return [i["started_at"] for i in results.list_results("shop", "m-uid", subtests=False, **kw)]

    assert window(since=10, before=40, count=10) == [30, 20]
    assert window(since=None, before=None, count=3) == [40, 30, 20]


def test_purged_runs_leave_the_list_and_the_counts(tmp_path, make_store):
    with make_store(tmp_path / "store", retention_days=1) as store:
        ingest = ResultIngest(store)
        t = time.time() - 1000
        for n in range(2):
            upload(
                ingest,
                f"health-{n:010d}",
                "monitor-result.json",
                result_doc(run_id=f"health-{n:010d}", started=t + n),
                1,
            )
        with store._write() as tx:
            tx.execute("UPDATE runs SET finished_at = 0 WHERE run_id = 'health-0000000000'")
        assert store.purge_expired() == 1
        results = RunscopeResults(store, BASE)
        listed = results.list_results("shop", "m-uid", count=10, since=None, before=None, subtests=False)
        assert [i["test_run_id"] for i in listed] == ["health-0000000001"]
        today = datetime.fromtimestamp(t, timezone.utc).date()
        assert results.bucket_usage("shop", today - timedelta(days=1), today)["requests_count"] == 1


@pytest.fixture
def document_reads(monkeypatch):
    """`document_reads(store)`: the store's files opened since, counted as the store reads
    them (Path.open under its runs folder) and however else (open)."""
    opened: list[pathlib.Path] = []
    path_open, plain_open = pathlib.Path.open, builtins.open

    def counting_path_open(self, *args, **kwargs):
        opened.append(pathlib.Path(self))
        return path_open(self, *args, **kwargs)

    def counting_open(file, *args, **kwargs):
        if isinstance(file, (str, pathlib.Path)):
            opened.append(pathlib.Path(file))
        return plain_open(file, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "open", counting_path_open)
    monkeypatch.setattr(builtins, "open", counting_open)

    def reads(store: Store) -> list[pathlib.Path]:
        runs = store.runs_dir.resolve()
        found = [p for p in opened if runs in p.resolve().parents]
        opened.clear()
        return found

    return reads


def test_a_long_history_is_listed_without_reading_a_document(store, document_reads):
    ingest = ResultIngest(store)
    for n in range(6):
        run_id = f"health-{n:010d}"
        upload(ingest, run_id, "monitor-result.json", result_doc(run_id=run_id, started=604800.0 * n + 10), 1)
    # Recorded a week apart, each just after it started.
    with store._write() as tx:
        tx.execute("UPDATE runs SET created_at = CAST(substr(run_id, 8) AS REAL) * 604800 + 20")
    results = RunscopeResults(store, BASE)
    document_reads(store)
    page = results.list_results("shop", "m-uid", count=2, since=None, before=None, subtests=False)
    assert [i["test_run_id"] for i in page] == ["health-0000000005", "health-0000000004"]
    assert document_reads(store) == []


def test_results_of_a_store_from_before_the_index_are_listed_after_the_upgrade(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "_INDEX_BATCH", 2)  # several batches, as a big store has
    root = tmp_path / "store"
    with Store(root) as old:
        ingest = ResultIngest(old)
        t = time.time() - 1000
        upload(ingest, "health-1111111111", "monitor-result.json", result_doc(run_id="health-1111111111", started=t), 1)
        for i, region in enumerate(("us1", "eu1")):
            upload(
                ingest,
                "health-2222222222",
                f"monitor-result-{i}.json",
                result_doc(run_id="health-2222222222", region=region, started=t + 100 + i),
                2,
            )
        expected = RunscopeResults(old, BASE).list_results(
            "shop", "m-uid", count=10, since=None, before=None, subtests=True
        )
    # What the gateway before the index left: the same tables without monitor_results, version 1.
    with sqlite3.connect(root / "index.sqlite3") as db:
        db.execute("DROP TABLE monitor_results")
        db.execute("PRAGMA user_version = 1")
    with Store(root) as upgraded:
        results = RunscopeResults(upgraded, BASE)
        listed = results.list_results("shop", "m-uid", count=10, since=None, before=None, subtests=True)
        assert json.dumps(listed) == json.dumps(expected) and len(listed) == 3
        assert results.result("shop", "m-uid", "latest")["test_run_id"] == "health-2222222222"
        today = datetime.fromtimestamp(t, timezone.utc).date()
        assert results.bucket_usage("shop", today - timedelta(days=1), today)["requests_count"] == 3
    with Store(root) as again:  # the upgrade ran once: the version says so
        assert again._conn().execute("PRAGMA user_version").fetchone()[0] == backends.SCHEMA_VERSION


MANY = 5000


@pytest.fixture(scope="module")
def busy_store(tmp_path_factory):
    """A store with MANY results of one test, written as the gateway writes uploads, started
    over the last day (every 17 s), one run in five in two regions; and when each started."""
    with Store(tmp_path_factory.mktemp("busy") / "store") as store:
        ingest = ResultIngest(store)
        now = time.time()
        starts = []
        for n in range(0, MANY, 10):
            for m in range(n, n + 8):
                run_id, started = f"health-{m:010d}", now - 86400 + 17.0 * m
                upload(ingest, run_id, "monitor-result.json", result_doc(run_id=run_id, started=started), 1)
                starts.append(started)
            run_id, started = f"health-{n + 8:010d}", now - 86400 + 17.0 * (n + 8)
            for i, region in enumerate(("us1", "eu1")):
                upload(
                    ingest,
                    run_id,
                    f"monitor-result-{i}.json",
                    result_doc(run_id=run_id, region=region, started=started + i),
                    2,
                )
                starts.append(started + i)
        yield store, now, starts


def vm_steps(store: Store, call) -> int:
    """How many SQLite virtual machine steps `call` takes on this thread's connection: the
    work its queries do, however busy the machine is."""
    steps = [0]

    def count():
        steps[0] += 1
        return 0

    conn = store._conn()
    conn.set_progress_handler(count, 1)
    try:
        call()
    finally:
        conn.set_progress_handler(None, 1)
    return steps[0]


def test_a_page_of_thousands_of_results_reads_no_document_and_a_bounded_part_of_the_index(busy_store, document_reads):
    store, now, starts = busy_store
    results = RunscopeResults(store, BASE)
    assert store._conn().execute("SELECT COUNT(*) FROM monitor_results").fetchone()[0] == MANY

    def page(**kw):
        return results.list_results(
            "shop", "m-uid", subtests=False, **{"count": 10, "since": None, "before": None, **kw}
        )

    document_reads(store)
    first = page()
    assert document_reads(store) == []
    assert [i["started_at"] for i in first] == sorted((i["started_at"] for i in first), reverse=True)
    assert [(i["test_run_id"], i["region"]) for i in first[:3]] == [
        (f"health-{MANY - 2:010d}", "eu1"),
        (f"health-{MANY - 2:010d}", "us1"),
        (f"health-{MANY - 3:010d}", "us1"),
    ]
    middle = page(before=now - 43200, count=50)
    assert document_reads(store) == []
    assert [i["started_at"] for i in middle] == sorted((t for t in starts if t < now - 43200), reverse=True)[:50]
    recent = page(since=starts[-3] - 0.5)
    assert [i["started_at"] for i in recent] == [starts[-1], starts[-2], starts[-3]]

    # The work of a page does not grow with the history: about 600 steps for a page of 10
    # with 100, 1,000 or 5,000 results behind it, where visiting every row takes several
    # steps per row (sorting them all took 215,000).
    steps_first, steps_deep = vm_steps(store, page), vm_steps(store, lambda: page(before=now - 43200))
    assert steps_first < 2000 and steps_deep < 2000, (steps_first, steps_deep)

    latest = results.result("shop", "m-uid", "latest")
    assert (latest["test_run_id"], latest["region"]) == (f"health-{MANY - 2:010d}", "us1")
    assert len(document_reads(store)) == 1
    metrics = results.metrics("shop", "m-uid", now=now, timeframe="hour", environment_uuid="all", region="all")
    assert metrics["this_time_period"]["total_test_runs"] == sum(1 for t in starts if now - 3600 <= t <= now)
    today = datetime.fromtimestamp(now, timezone.utc).date()
    assert results.bucket_usage("shop", today - timedelta(days=1), today)["requests_count"] == MANY
    assert document_reads(store) == []
    assert vm_steps(store, lambda: results.bucket_usage("shop", today, today)) < 10 * MANY
