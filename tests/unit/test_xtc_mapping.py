"""The XTC API's pure parts: LoadTest -> wire models, numbering in creation order, copies, the
OpenAPI document and the error shape. The cluster tests (tests/cluster/test_xtc_api.py) run
the same endpoints against a real control plane."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient

from assay.api.auth import Authenticator, CredentialIndex
from assay.api.errors import install_error_handlers
from assay.api.routers import loadmill, xtc
from assay.api.services.loadtests import (
    ANNOTATION_ORIGINAL,
    ANNOTATION_RESERVATION,
    LABEL_COPIED_FROM,
    LABEL_NUMBER,
    RESERVATIONS,
    Archive,
    LoadTestService,
    NumberedLoadTest,
    build_copy,
    copy_name,
    copy_root_name,
    creation_order,
    elapsed_seconds,
    run_figures,
)
from assay.api.settings import GatewaySettings
from assay.api.store import Store

SPEC = {
    "description": "checkout under load",
    "shards": 2,
    "baseUrl": "http://shop.test",
    "load": {"users": 4, "duration": "5m", "rampUp": "30s"},
    "flows": [
        {"name": "browse", "weight": 3, "requests": [{"url": "/"}, {"url": "/items"}]},
        {"name": "buy", "requests": [{"url": "/cart", "method": "POST"}]},
    ],
    "criteria": ["p95 < 300ms"],
}


def loadtest(name: str, uid: str, created: str, status: dict | None = None, **meta) -> dict:
    return {
        "apiVersion": "assay.dev/v1alpha1",
        "kind": "LoadTest",
        "metadata": {"name": name, "namespace": "shop", "uid": uid, "creationTimestamp": created, **meta},
        "spec": SPEC,
        "status": status or {},
    }


@pytest.mark.parametrize(
    ("phase", "state"),
    [(None, "NEW"), ("Pending", "STARTING"), ("Running", "RUNNING"), ("Succeeded", "FINISHED"), ("Failed", "FAILED")],
)
def test_state_follows_the_loadtest_phase(phase, state):
    assert xtc.xtc_state({"phase": phase} if phase else {}) == state


@pytest.mark.parametrize(
    ("result", "expected"), [(None, None), ("Passed", "PASSED"), ("Failed", "FAILED"), ("Aborted", "ABORTED")]
)
def test_result_is_the_verdict_in_upper_case(result, expected):
    assert xtc.xtc_result({"result": result} if result else {}) == expected


def test_creation_order_is_by_timestamp_then_name():
    items = [
        loadtest("b", "2", "2024-01-01T00:00:05Z"),
        loadtest("c", "3", "2024-01-01T00:00:01Z"),
        loadtest("a", "1", "2024-01-01T00:00:05Z"),
    ]
    assert [i["metadata"]["name"] for i in creation_order(items)] == ["c", "a", "b"]


def test_numbers_follow_creation_order_and_never_change(tmp_path):
    store = Store(tmp_path)
    service = LoadTestService(kube=None, store=store)
    first = [loadtest("late", "u-late", "2024-01-02T00:00:00Z"), loadtest("early", "u-early", "2024-01-01T00:00:00Z")]
    assert [(n.number, n.name) for n in service.numbered("shop", first)] == [(1, "early"), (2, "late")]
    # A new LoadTest gets the next number; a deleted one's number is not reused.
    later = [first[0], loadtest("new", "u-new", "2024-01-03T00:00:00Z")]
    fresh = LoadTestService(kube=None, store=store)  # another gateway process on the same store
    assert [(n.number, n.name) for n in fresh.numbered("shop", later)] == [(2, "late"), (3, "new")]
    # Numbers are per project.
    assert [n.number for n in fresh.numbered("other", later)] == [1, 2]
    store.close()


def test_a_copy_keeps_its_reserved_number_and_a_clone_of_it_does_not(tmp_path):
    store = Store(tmp_path)
    service = LoadTestService(kube=None, store=store)
    original = loadtest("checkout", "u-1", "2024-01-01T00:00:00Z")
    assert service.numbered("shop", [original])[0].number == 1
    reservation = "copy:abc"
    number = store.number_for("shop", "loadtest", reservation)
    store.put_record(
        RESERVATIONS, reservation, {"number": number, "name": "checkout-2", "namespace": "shop"}, project="shop"
    )
    body = build_copy(original, number, 1, reservation, "checkout-2")
    copy = {**body, "metadata": {**body["metadata"], "uid": "u-2", "creationTimestamp": "2024-01-02T00:00:00Z"}}
    clone = {
        **body,
        "metadata": {**body["metadata"], "name": "my-clone", "uid": "u-3", "creationTimestamp": "2024-01-03T00:00:00Z"},
    }
    numbered = {n.name: n.number for n in service.numbered("shop", [original, copy, clone])}
    assert numbered == {"checkout": 1, "checkout-2": 2, "my-clone": 3}
    assert store.get_record(RESERVATIONS, reservation)["uid"] == "u-2"
    # Re-applied under the same name after a delete: a new object, a new number.
    again = {**copy, "metadata": {**copy["metadata"], "uid": "u-4", "creationTimestamp": "2024-01-04T00:00:00Z"}}
    assert LoadTestService(kube=None, store=store).numbered("shop", [again])[0].number == 4
    store.close()


def test_build_copy_keeps_the_spec_and_user_labels_and_records_its_origin():
    source = loadtest(
        "checkout",
        "u-1",
        "2024-01-01T00:00:00Z",
        labels={"team": "web", "assay.dev/x": "y"},
        annotations={"kubectl.kubernetes.io/last-applied-configuration": "{}"},
    )
    body = build_copy(source, 7, 3, "copy:r", "checkout-7")
    assert body["spec"] == SPEC and body["spec"] is not SPEC
    assert body["metadata"]["name"] == "checkout-7"
    assert body["metadata"]["namespace"] == "shop"
    assert body["metadata"]["labels"] == {"team": "web", LABEL_NUMBER: "7", LABEL_COPIED_FROM: "3"}
    assert body["metadata"]["annotations"] == {
        ANNOTATION_ORIGINAL: "checkout",
        "assay.dev/copied-from": "checkout",
        ANNOTATION_RESERVATION: "copy:r",
    }
    assert "status" not in body
    # A copy of a copy is named after the original.
    assert copy_root_name(body) == "checkout"


def test_copy_names_fit_kubernetes_like_the_operators_names():
    long = "x" * 70
    assert copy_name("checkout", 12) == "checkout-12"
    assert len(copy_name(long, 12)) <= 63 and copy_name(long, 12).endswith("-12")
    assert copy_name("checkout", 12, attempt=1).startswith("checkout-12-")


def test_run_figures_prefer_the_ingested_summary_and_derive_the_error_rate():
    status = {"requests": 10, "failures": 1, "minMs": 1.0, "avgMs": 2.0, "maxMs": 9.0}
    assert run_figures(status, None) == {**status, "errorRate": 10.0}
    ingested = {
        "requests": 12,
        "failures": 0,
        "errorRatePct": 0.0,
        "throughputRps": 40.5,
        "meanMs": 2.5,
        "p95Ms": 7.0,
        "criteria": [],
        "passed": True,
    }
    figures = run_figures(status, ingested)
    assert figures == {
        "requests": 12,
        "failures": 0,
        "errorRate": 0.0,
        "rps": 40.5,
        "minMs": 1.0,
        "avgMs": 2.5,
        "maxMs": 9.0,
        "p95Ms": 7.0,
    }
    assert run_figures(None, None) == {}


def test_elapsed_seconds_run_to_the_end_or_now():
    assert elapsed_seconds({"startTime": "2024-01-01T00:00:00Z", "completionTime": "2024-01-01T00:01:30Z"}) == 90.0
    assert elapsed_seconds({}) is None
    assert elapsed_seconds({"startTime": "2024-01-01T00:00:00Z"}) > 0


def finished_item() -> NumberedLoadTest:
    status = {
        "phase": "Succeeded",
        "result": "Passed",
        "runId": "checkout-1a2b3c4d",
        "startTime": "2024-01-01T00:00:10Z",
        "completionTime": "2024-01-01T00:05:40Z",
        "shards": {"total": 2, "active": 0, "succeeded": 2, "failed": 0},
        "summary": {"requests": 200, "failures": 0, "minMs": 1.0, "avgMs": 3.0, "maxMs": 20.0},
    }
    return NumberedLoadTest(
        5, loadtest("checkout", "u-1", "2024-01-01T00:00:00Z", status, labels={LABEL_COPIED_FROM: "2"})
    )


ARCHIVES = [Archive("report", 1, "2024-01-01T00:06:00Z", 2048, "ab" * 32), Archive("result", 1, None, 4096, "cd" * 32)]


def test_details_map_the_loadtest_and_its_archives_onto_the_wire_model():
    links = xtc.Links("http://gw.test/", "acme", "shop")
    details = xtc.details_of(finished_item(), ARCHIVES, {"p95Ms": 12.5, "throughputRps": 33.0}, links)
    wire = json.loads(details.model_dump_json(by_alias=True))
    base = "http://gw.test/public/api/v1/orgs/acme/projects/shop/loadTests/5"
    assert wire["number"] == 5 and wire["name"] == "checkout" and wire["description"] == "checkout under load"
    assert (wire["state"], wire["result"]) == ("FINISHED", "PASSED")
    assert (wire["createdAt"], wire["startedAt"], wire["finishedAt"]) == (
        "2024-01-01T00:00:00Z",
        "2024-01-01T00:00:10Z",
        "2024-01-01T00:05:40Z",
    )
    assert wire["copiedFrom"] == 2
    assert wire["links"] == {"details": base, "status": base + "/status", "runCopy": base + "/runCopy"}
    assert wire["load"] == {
        "model": "closed",
        "users": 4,
        "arrivalRate": None,
        "maxUsers": None,
        "iterations": None,
        "duration": "5m",
        "rampUp": "30s",
        "rampDown": "0s",
        "stages": 0,
    }
    assert wire["flows"] == [
        {"name": "browse", "weight": 3, "requests": 2},
        {"name": "buy", "weight": 1, "requests": 1},
    ]
    assert wire["shards"] == {"total": 2, "active": 0, "succeeded": 2, "failed": 0}
    assert wire["summary"]["requests"] == 200 and wire["summary"]["p95Ms"] == 12.5 and wire["summary"]["rps"] == 33.0
    assert wire["summary"]["errorRate"] == 0.0
    assert wire["reports"] == [
        {
            "number": 1,
            "createdAt": "2024-01-01T00:06:00Z",
            "size": 2048,
            "sha256": "ab" * 32,
            "downloadUrl": base + "/reports/1/download",
        }
    ]
    assert wire["results"][0]["downloadUrl"] == base + "/results/1/download"
    assert wire["criteria"] == ["p95 < 300ms"] and wire["failedCriteria"] == []


def test_status_is_small_and_names_the_newest_archives():
    status = xtc.status_of(finished_item(), ARCHIVES + [Archive("report", 2, None, 1, "")])
    wire = json.loads(status.model_dump_json(by_alias=True))
    assert wire == {
        "number": 5,
        "state": "FINISHED",
        "result": "PASSED",
        "message": None,
        "startedAt": "2024-01-01T00:00:10Z",
        "finishedAt": "2024-01-01T00:05:40Z",
        "elapsedSeconds": 330.0,
        "shards": {"total": 2, "active": 0, "succeeded": 2, "failed": 0},
        "requests": 200,
        "failures": 0,
        "latestResultNumber": 1,
        "latestReportNumber": 2,
    }


def test_a_new_loadtest_has_no_figures_yet():
    item = NumberedLoadTest(1, loadtest("fresh", "u", "2024-01-01T00:00:00Z"))
    details = xtc.details_of(item, [], None, xtc.Links("http://gw", "acme", "shop"))
    assert details.state == "NEW" and details.result is None and details.summary is None
    assert details.shards.total == 2


@pytest.fixture
def app() -> FastAPI:
    settings = GatewaySettings(token_signing_key="k" * 40, store_dir="/nonexistent", public_url="http://gw.test")
    auth = Authenticator(settings, None, None, index=CredentialIndex("assay.dev/org"))
    services = SimpleNamespace(settings=settings, kube=None, store=None, auth=auth)
    app = FastAPI()
    install_error_handlers(app)
    app.state.services = services
    xtc.install(app, services)
    loadmill.install(app, services)
    return app


DOCUMENTED_PATHS = {
    ("get", "/loadTests"): "LOADTEST_LIST",
    ("get", "/loadTests/{loadTestNumber}"): "LOADTEST_DETAILS",
    ("get", "/loadTests/{loadTestNumber}/status"): "LOADTEST_STATUS",
    ("post", "/loadTests/{loadTestNumber}/runCopy"): "LOADTEST_COPY_RUN",
    ("get", "/loadTests/{loadTestNumber}/reports/{reportNumber}/download"): "LOADTEST_REPORT_DOWNLOAD",
    ("get", "/loadTests/{loadTestNumber}/results/{resultNumber}/download"): "LOADTEST_RESULT_DOWNLOAD",
}


def test_openapi_document_has_exactly_the_documented_endpoints_with_their_scopes(app):
    with TestClient(app) as client:
        document = client.get("/public/api/json").json()
        as_yaml = yaml.safe_load(client.get("/public/api/yaml").text)
    assert as_yaml == document
    prefix = "/public/api/v1/orgs/{org}/projects/{project}"
    found = {
        (method, path.removeprefix(prefix)): op for path, ops in document["paths"].items() for method, op in ops.items()
    }
    assert set(found) == set(DOCUMENTED_PATHS)
    for key, scope in DOCUMENTED_PATHS.items():
        operation = found[key]
        assert operation["security"][0] == {"xtcOAuth2": [scope]}
        assert "422" not in operation["responses"]
        assert operation["responses"]["401"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/XtcError"
        }
    flows = document["components"]["securitySchemes"]["xtcOAuth2"]["flows"]["clientCredentials"]
    assert flows["tokenUrl"] == "http://gw.test/oauth/token" and set(flows["scopes"]) == set(DOCUMENTED_PATHS.values())
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert "HTTPValidationError" not in document["components"]["schemas"]
    assert found[("get", "/loadTests/{loadTestNumber}/reports/{reportNumber}/download")]["responses"]["200"][
        "content"
    ] == {"application/zip": {"schema": {"type": "string", "format": "binary"}}}
    details = document["components"]["schemas"]["LoadTestDetails"]["properties"]
    assert {"number", "state", "result", "createdAt", "results", "reports", "summary", "load"} <= set(details)


def test_errors_under_public_api_have_the_xtc_shape(app):
    with TestClient(app) as client:
        missing_token = client.get("/public/api/v1/orgs/acme/projects/shop/loadTests")
        wrong_method = client.get("/public/api/v1/orgs/acme/projects/shop/loadTests/1/runCopy")
        unknown = client.get("/public/api/v2/nothing")
        loadmill_error = client.get("/api/v1/labels")
    assert missing_token.status_code == 401
    assert missing_token.headers["www-authenticate"].startswith("Bearer")
    body = missing_token.json()
    assert set(body) == {"timestamp", "status", "error", "code", "message", "path"}
    assert (body["status"], body["error"], body["path"]) == (
        401,
        "Unauthorized",
        "/public/api/v1/orgs/acme/projects/shop/loadTests",
    )
    assert wrong_method.status_code == 405 and wrong_method.json()["error"] == "Method Not Allowed"
    assert unknown.status_code == 404 and unknown.json()["status"] == 404
    assert loadmill_error.status_code == 401 and set(loadmill_error.json()) == {"message"}
