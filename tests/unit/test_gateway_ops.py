"""/healthz and /metrics: request metrics by route, runs by state and running load tests'
progress from the real store."""

import time

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient
from fastapi import FastAPI

from assay.api.errors import install_error_handlers
from assay.api.ops import GatewayMetrics, LoadTestProgress, install_request_metrics, ops_router
from assay.api.store import RunRecord


def samples(text: str, name: str) -> dict[tuple, float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_metrics_count_requests_by_route_and_runs_by_state(tmp_path, make_store):
    store = make_store(tmp_path / "store")
    store.upsert_run(RunRecord(run_id="a", kind="LoadTest", project="p", owner_name="x", owner_uid="u1"))
    store.upsert_run(
        RunRecord(
            run_id="b", kind="LoadTest", project="p", owner_name="x", owner_uid="u1", state="succeeded", result="passed"
        )
    )
    store.upsert_run(
        RunRecord(
            run_id="c",
            kind="TestSuite",
            project="p",
            owner_name="s",
            owner_uid="u2",
            state="succeeded",
            result="failed",
        )
    )
    app = FastAPI()
    metrics = GatewayMetrics(store)
    install_error_handlers(app)
    install_request_metrics(app, metrics)
    app.include_router(ops_router(metrics))

    @app.get("/things/{thing_id}")
    def thing(thing_id: int):
        return {"id": thing_id}

    with TestClient(app) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        for i in range(3):
            assert client.get(f"/things/{i}").status_code == 200
        assert client.get("/things/not-a-number").status_code == 400
        text = client.get("/metrics").text
    requests = samples(text, "assay_gateway_requests_total")
    assert requests[(("method", "GET"), ("route", "/things/{thing_id}"), ("status", "200"))] == 3
    assert requests[(("method", "GET"), ("route", "/things/{thing_id}"), ("status", "400"))] == 1
    runs = samples(text, "assay_runs")
    assert runs[(("kind", "LoadTest"), ("state", "pending"))] == 1
    assert runs[(("kind", "LoadTest"), ("state", "succeeded"))] == 1
    assert runs[(("kind", "TestSuite"), ("state", "succeeded"))] == 1
    store.close()


def test_running_load_tests_progress_gauges_sum_the_runs_name_no_tenant_and_end_with_the_run(tmp_path, make_store):
    from tests.unit.test_progress_store import report

    from assay.api.store.progress import STALE_AFTER_SECONDS

    store = make_store(tmp_path / "store")
    for run_id, project, name in (("lt-1", "shop", "checkout"), ("lt-2", "shop", "search"), ("lt-3", "bank", "login")):
        store.upsert_run(RunRecord(run_id=run_id, kind="LoadTest", project=project, owner_name=name, owner_uid=run_id))
    now = time.time()
    store.put_progress("lt-1", 0, report(100, 4, latencies_ms=[10] * 19 + [200], users=3), now=now)
    store.put_progress("lt-1", 1, report(50, 1, latencies_ms=[10] * 20, users=2), now=now)
    # A run that went quiet has no series, though its reports are still stored.
    store.put_progress("lt-2", 0, report(9), now=now - STALE_AFTER_SECONDS - 1)
    store.put_progress("lt-3", 0, report(30, 2, latencies_ms=[40] * 10, users=4), now=now)
    metrics = GatewayMetrics(store)

    def gauges() -> dict[str, dict[tuple, float]]:
        text = generate_latest(metrics.registry).decode()
        names = [name for _, name, _ in LoadTestProgress.FIGURES]
        return {name: samples(text, name) for name in names}

    figures = gauges()
    # lt-1's two shards and lt-3 together, p95 the higher one's; lt-2 went quiet and is not counted.
    assert {name: values.get(()) for name, values in figures.items()} == {
        "assay_loadtests_running": 2,
        "assay_loadtests_requests": 180,
        "assay_loadtests_errors": 7,
        "assay_loadtests_requests_per_second": 10.0,
        "assay_loadtests_p95_seconds_max": pytest.approx(0.040, rel=0.01),  # HdrHistogram, 2 digits
        "assay_loadtests_active_users": 9,
        "assay_loadtests_shards_reporting": 3,
    }
    # /metrics answers anyone who reaches the gateway: no tenant's names in it.
    text = generate_latest(metrics.registry).decode()
    assert not [word for word in ("shop", "bank", "checkout", "search", "login") if word in text]
    for run_id, project, name in (("lt-1", "shop", "checkout"), ("lt-3", "bank", "login")):
        store.upsert_run(
            RunRecord(
                run_id=run_id, kind="LoadTest", project=project, owner_name=name, owner_uid=run_id, state="succeeded"
            )
        )
    assert all(values == {(): 0} for values in gauges().values())
