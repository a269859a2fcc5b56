"""Monitor runs as Runscope results, metrics and request counts: the pure presentation over the
runner's own result documents, and a real store holding a run in two regions."""

from __future__ import annotations

import json
import time
from datetime import date, datetime, timedelta, timezone

import pytest

from assay.api.services import InvalidInput, NotFound
from assay.api.services.runscope_results import (
    Piece,
    RunscopeResults,
    check_count,
    percentile,
    result_detail,
    result_summary,
    select_window,
    step_detail,
    metrics_document,
    day_bounds,
    usage_window,
)
from assay.api.store import ResultIngest, RunRecord, Store, Upload
from assay.runner.apitest.results import AssertionResult, RunResult, StepDetail, StepResult, Timings

BASE = "https://gw.example"


def result_doc(*, run_id="health-0123456789", region="us1", result="pass", started=1000.0, wait_ms=40.0,
               env="env-1", requests=1) -> dict:
    """A result document as the runner uploads it (RunResult.to_runscope())."""
    steps = []
    for i in range(requests):
        step = StepResult(uuid=f"step-{i}", step_type="request", url=f"http://127.0.0.1:9/ping?n={i}&n=x",
                          method="GET", detail=StepDetail(uuid=f"step-{i}"),
                          timings=Timings(dial_ms=1.0, wait_for_response_ms=wait_ms - 1.0),
                          assertions=[AssertionResult(result=result, source="status_code",
                                                      comparison="equals_number", target_value=200,
                                                      actual_value="200")])
        step.count()
        steps.append(step)
    steps.append(StepResult(uuid="pause-1", step_type="pause"))
    run = RunResult(test_run_id=run_id, test_id="m-uid", bucket_key="shop", requests=steps, region=region,
                    environment_id=env, environment_name="Prod", started_at=started)
    run.finish()
    run.started_at, run.finished_at = started, started + 1.5
    return run.to_runscope()


def piece(doc: dict, run_id="health-0123456789", index=0, steps=None) -> Piece:
    run = RunRecord(run_id=run_id, kind="Monitor", project="shop", owner_name="health", owner_uid="m-uid",
                    state="succeeded", shards=2)
    return Piece(run=run, index=index, doc=doc, steps=steps)


def test_a_list_item_is_the_documented_header_with_the_result_url_and_no_requests():
    item = result_summary(piece(result_doc()), BASE)
    assert "requests" not in item and "source" not in item
    assert item["test_run_url"] == f"{BASE}/buckets/shop/tests/m-uid/results/health-0123456789"
    assert (item["region"], item["result"], item["requests_executed"], item["assertions_passed"]) == \
        ("us1", "pass", 1, 1)
    assert "subtest_detail" not in item and item["agent_expired"] is False
    with_subtests = result_summary(piece(result_doc()), BASE, subtests=True)
    assert with_subtests["subtests_count"] == 0 and set(with_subtests["subtest_detail"]) == {
        "name", "note", "result", "test_uuid", "test_run_uuid", "test_run_url", "started_at", "finished_at"}


def test_the_detail_keeps_every_step_and_steps_that_sent_nothing_are_null():
    detail = result_detail(piece(result_doc(requests=2)), BASE)
    assert [s["uuid"] for s in detail["requests"]] == ["step-0", "step-1", "pause-1"]
    assert detail["requests"][2]["result"] is None and detail["requests"][2]["url"] is None
    assert detail["requests"][0]["timings"]["wait_for_response_ms"] == 39.0
    assert detail["source"] is None and detail["test_run_id"] == "health-0123456789"


def test_a_step_detail_is_rebuilt_from_the_url_without_stored_details_and_served_as_stored_with_them():
    rebuilt = step_detail(piece(result_doc()), "step-0")
    assert rebuilt["request"]["host"] == "127.0.0.1" and rebuilt["request"]["path"] == "/ping"
    assert rebuilt["request"]["params"] == {"n": ["0", "x"]} and rebuilt["request"]["scheme"] == "http"
    assert rebuilt["response"] is None and rebuilt["bucket_key"] == "shop"
    assert step_detail(piece(result_doc()), "pause-1") is None
    assert step_detail(piece(result_doc()), "nope") is None
    stored = {"step-0": {"uuid": "step-0", "bucket_key": "shop", "request": {}, "response": {"status": 200}}}
    assert step_detail(piece(result_doc(), steps=stored), "step-0")["response"] == {"status": 200}


def test_the_window_is_exclusive_at_both_ends_newest_first_and_counted():
    items = [(float(t), t) for t in (10, 20, 30, 40)]
    assert select_window(items, since=10, before=40, count=10) == [30, 20]
    assert select_window(items, since=None, before=None, count=3) == [40, 30, 20]
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
    assert eu["change_from_last_period"]["total_test_runs"] is None  # nothing before to compare with
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
    for bad in ({"from_": "2019-10-01"}, {"date_": "15/11/2019"}, {"days": 0}, {"days": 36_601},
                {"days": 1_738_865_699},
                {"from_": "2019-10-03", "to": "2019-10-02"}, {"date_": "2019-02-30"}):
        with pytest.raises(InvalidInput):
            usage_window(today, **bad)


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "store") as s:
        yield s


def upload(ingest, run_id, name, doc, shards):
    ingest.accept(Upload(run_id=run_id, name=name, data=json.dumps(doc).encode(), kind="Monitor", project="shop",
                         owner_name="health", owner_uid="m-uid", shards=shards))


def test_a_run_in_two_regions_is_two_results_and_the_detail_picks_a_region(store):
    ingest = ResultIngest(store)
    t = time.time() - 1000  # results are recorded as they arrive, after they started
    upload(ingest, "health-1111111111", "monitor-result.json", result_doc(run_id="health-1111111111", started=t), 1)
    upload(ingest, "health-2222222222", "monitor-result-0.json",
           result_doc(run_id="health-2222222222", region="us1", started=t + 100), 2)
    upload(ingest, "health-2222222222", "monitor-result-1.json",
           result_doc(run_id="health-2222222222", region="eu1", started=t + 101, result="fail"), 2)
    results = RunscopeResults(store, BASE)

    items = results.list_results("shop", "m-uid", count=10, since=None, before=None, subtests=False)
    assert [(i["test_run_id"], i["region"], i["result"]) for i in items] == [
        ("health-2222222222", "eu1", "fail"), ("health-2222222222", "us1", "pass"),
        ("health-1111111111", "us1", "pass")]
    assert results.list_results("shop", "m-uid", count=1, since=t, before=None, subtests=False)[0]["region"] == "eu1"
    assert results.result("shop", "m-uid", "health-2222222222", "eu1")["result"] == "fail"
    assert results.result("shop", "m-uid", "health-2222222222")["region"] == "us1"
    assert results.result("shop", "m-uid", "latest")["test_run_id"] == "health-2222222222"
    for args in (("shop", "m-uid", "health-2222222222", "ap1"), ("shop", "other-uid", "health-1111111111", None),
                 ("other", "m-uid", "health-1111111111", None), ("shop", "m-uid", "../etc", None)):
        with pytest.raises(NotFound):
            results.result(*args)
    older = results.list_results("shop", "m-uid", count=10, since=None, before=t + 101, subtests=False)
    assert [(i["test_run_id"], i["region"]) for i in older] == [("health-2222222222", "us1"),
                                                                ("health-1111111111", "us1")]
    today = datetime.fromtimestamp(t + 101, timezone.utc).date()
    assert results.bucket_usage("shop", today - timedelta(days=1), today)["requests_count"] == 3
    assert results.bucket_usage("shop", date(2019, 11, 14), date(2019, 11, 15))["requests_count"] == 0


def test_a_long_history_is_read_only_as_far_back_as_the_page_needs(store):
    ingest = ResultIngest(store)
    for n in range(6):
        run_id = f"health-{n:010d}"
        upload(ingest, run_id, "monitor-result.json", result_doc(run_id=run_id, started=604800.0 * n + 10), 1)
    # Recorded a week apart, each just after it started: older runs cannot make the first page.
    with store._write() as tx:
        tx.execute("UPDATE runs SET created_at = CAST(substr(run_id, 8) AS REAL) * 604800 + 20")
    results = RunscopeResults(store, BASE)
    read = []
    pieces = results.pieces
    results.pieces = lambda run, **kw: (read.append(run.run_id), pieces(run, **kw))[1]
    page = results.list_results("shop", "m-uid", count=2, since=None, before=None, subtests=False)
    assert [i["test_run_id"] for i in page] == ["health-0000000005", "health-0000000004"]
    assert read == ["health-0000000005", "health-0000000004"]
