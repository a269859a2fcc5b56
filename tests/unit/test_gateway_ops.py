"""/healthz and /metrics: request metrics by route and runs by state from the real store."""

from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient
from fastapi import FastAPI

from assay.api.errors import install_error_handlers
from assay.api.ops import GatewayMetrics, install_request_metrics, ops_router
from assay.api.store import RunRecord, Store


def samples(text: str, name: str) -> dict[tuple, float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_metrics_count_requests_by_route_and_runs_by_state(tmp_path):
    store = Store(tmp_path / "store")
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
