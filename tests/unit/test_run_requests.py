"""Asking for a TestSuite or Monitor run: the run-request contract the gateway and the operator
share (assay.crds.runrequest), the gateway's one way to set it (api/services/runs.py) and the
gateway's shared read-change-write loop. The cluster tests run them against an API server."""

from __future__ import annotations

import json

import pytest
from kubernetes.client.rest import ApiException

from assay.api.services import Conflict, InvalidInput, update
from assay.api.services.runs import RunRequests
from assay.crds.runrequest import (
    RUN_REQUEST_ANNOTATION,
    MonitorRunRequest,
    SuiteRunRequest,
    parse_run_request,
    pending_run_id,
    recorded_run_ids,
    requested_id,
    run_id_for_request,
)

# --- the contract ------------------------------------------------------------------------------


def test_the_annotation_is_what_the_operator_reads():
    suite = SuiteRunRequest(
        id="r-1",
        force_all_flows=True,
        additional_description="nightly",
        override_parameters={"baseUrl": "https://staging.test", "n": "3"},
    )
    value = suite.annotation()
    assert parse_run_request({RUN_REQUEST_ANNOTATION: value}, SuiteRunRequest) == suite
    assert set(json.loads(value)) == {"id", "forceAllFlows", "additionalDescription", "overrideParameters"}
    monitor = MonitorRunRequest(id="r-2", params={"user": "alice"})
    assert json.loads(monitor.annotation()) == {"id": "r-2", "params": {"user": "alice"}}
    assert parse_run_request({RUN_REQUEST_ANNOTATION: monitor.annotation()}, MonitorRunRequest) == monitor
    with_environment = MonitorRunRequest(id="r-3", environment="env-1")
    assert (
        parse_run_request({RUN_REQUEST_ANNOTATION: with_environment.annotation()}, MonitorRunRequest)
        == with_environment
    )
    placed = MonitorRunRequest(id="r-4", regions=["us1"], remote_agents=[])
    assert json.loads(placed.annotation()) == {"id": "r-4", "params": {}, "regions": ["us1"], "remoteAgents": []}
    assert parse_run_request({RUN_REQUEST_ANNOTATION: placed.annotation()}, MonitorRunRequest) == placed
    assert placed.places() and not monitor.places()


def test_the_request_id_is_read_whatever_the_options():
    assert requested_id({RUN_REQUEST_ANNOTATION: SuiteRunRequest(id="r-1").annotation()}) == "r-1"
    assert requested_id({RUN_REQUEST_ANNOTATION: '{"id": "r-1", "unknown": true}'}) == "r-1"
    assert requested_id({RUN_REQUEST_ANNOTATION: "1700000000"}) == "1700000000"
    assert requested_id({RUN_REQUEST_ANNOTATION: "{bad"}) is None and requested_id({}) is None


def owner(annotation: str | None = None, status: dict | None = None, version: str = "1") -> dict:
    annotations = {RUN_REQUEST_ANNOTATION: annotation} if annotation else {}
    return {
        "metadata": {"name": "checkout", "uid": "u-1", "resourceVersion": version, "annotations": annotations},
        "status": status or {},
    }


def test_a_request_is_pending_until_the_operator_records_its_run():
    value = SuiteRunRequest(id="r-1").annotation()
    run_id = run_id_for_request("checkout", "u-1", "r-1")
    assert pending_run_id(owner()) is None
    assert pending_run_id(owner(value)) == run_id
    assert pending_run_id(owner(value, {"lastRun": {"runId": run_id, "phase": "Running"}})) is None
    assert pending_run_id(owner(value, {"history": [{"runId": run_id}], "lastRun": {"runId": "other"}})) is None
    refused = {"conditions": [{"type": "RunRequest", "status": "False", "reason": "InvalidRequest"}]}
    assert pending_run_id(owner(value, refused)) is None
    started = {"conditions": [{"type": "RunRequest", "status": "True", "message": f"started run {run_id}"}]}
    assert pending_run_id(owner(value, started)) is None
    waiting = {"conditions": [{"type": "RunRequest", "status": "Unknown", "reason": "Pending"}]}
    assert pending_run_id(owner(value, waiting)) == run_id
    assert recorded_run_ids({"lastRun": {"runId": "a"}, "history": [{"runId": "b"}, {}]}) == {"a", "b"}


# --- the gateway's request ---------------------------------------------------------------------


def conflict() -> ApiException:
    return ApiException(status=409, reason="Conflict")


class Kube:
    """One TestSuite; a patch with a stale resourceVersion is refused like the API server's.
    `on_read` lets the operator (or another gateway) act between reads."""

    def __init__(self, obj: dict, on_read=None):
        self.obj, self.on_read, self.patches, self.reads = obj, on_read, [], 0

    def get(self, plural, namespace, name):
        assert (plural, namespace, name) == ("testsuites", "shop", "checkout")
        self.reads += 1
        if self.on_read:
            self.on_read(self)
        return json.loads(json.dumps(self.obj))

    def patch(self, plural, namespace, name, patch):
        self.patches.append(patch)
        meta = self.obj["metadata"]
        if patch["metadata"]["resourceVersion"] != meta["resourceVersion"]:
            raise conflict()
        meta["annotations"].update(patch["metadata"]["annotations"])
        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)
        return self.obj


def requests(kube: Kube, waits: list) -> RunRequests:
    return RunRequests(kube, sleep=waits.append, pending_wait=0.5)


def ask(runs: RunRequests, **options) -> str:
    return runs.request("TestSuite", "shop", "checkout", options or {"force_all_flows": True}, busy="still busy")


def written(kube: Kube) -> SuiteRunRequest:
    return parse_run_request(kube.obj["metadata"]["annotations"], SuiteRunRequest)


def test_a_request_sets_the_annotation_and_answers_the_operators_run_id():
    kube, waits = Kube(owner()), []
    run_id = ask(requests(kube, waits), force_all_flows=True, override_parameters={"a": "1"})
    request = written(kube)
    assert request.force_all_flows and request.override_parameters == {"a": "1"}
    assert run_id == run_id_for_request("checkout", "u-1", request.id)
    assert kube.patches[0]["metadata"]["resourceVersion"] == "1" and waits == []


def test_the_object_the_caller_read_is_not_read_again():
    kube = Kube(owner())
    requests(kube, []).request("TestSuite", "shop", "checkout", {}, busy="x", owner=owner())
    assert kube.reads == 0 and len(kube.patches) == 1


def test_a_request_waits_for_the_pending_one_to_be_taken():
    previous = SuiteRunRequest(id="earlier").annotation()
    taken = run_id_for_request("checkout", "u-1", "earlier")

    def operator(kube):
        if kube.reads == 3:  # the operator records the earlier run
            kube.obj["status"] = {"lastRun": {"runId": taken}}

    kube, waits = Kube(owner(previous), on_read=operator), []
    run_id = ask(requests(kube, waits))
    assert len(waits) == 2 and len(kube.patches) == 1
    assert run_id == run_id_for_request("checkout", "u-1", written(kube).id) != taken


def test_a_request_that_stays_pending_is_refused_with_retry_after():
    kube, waits = Kube(owner(SuiteRunRequest(id="earlier").annotation())), []
    runs = RunRequests(kube, sleep=waits.append, pending_wait=0)
    with pytest.raises(Conflict) as refused:
        ask(runs)
    assert (refused.value.status, refused.value.message, refused.value.headers) == (
        409,
        "still busy",
        {"Retry-After": "2"},
    )
    assert kube.patches == [] and written(kube).id == "earlier"


def test_a_concurrent_write_means_read_again_and_never_overwrite_another_request():
    kube = Kube(owner(version="2"))  # changed since the caller read version 1
    run_id = requests(kube, []).request("TestSuite", "shop", "checkout", {}, busy="x", owner=owner(version="1"))
    assert [p["metadata"]["resourceVersion"] for p in kube.patches] == ["1", "2"]
    assert run_id == run_id_for_request("checkout", "u-1", written(kube).id)


def test_options_the_operator_would_refuse_are_refused_before_writing():
    kube = Kube(owner())
    with pytest.raises(InvalidInput):
        ask(requests(kube, []), additional_description="x" * 2000)
    with pytest.raises(InvalidInput):
        ask(requests(kube, []), environment="staging")  # a Monitor's option
    assert kube.patches == []


def test_other_api_errors_are_not_retried():
    kube = Kube(owner())

    def refuse(*args):
        raise ApiException(status=403, reason="Forbidden")

    kube.patch = refuse
    with pytest.raises(ApiException):
        ask(requests(kube, []))


# --- the shared read-change-write loop ---------------------------------------------------------


def test_an_object_that_keeps_changing_is_the_familys_conflict():
    writes = []

    def write(current, change):
        writes.append(change)
        raise conflict()

    with pytest.raises(Conflict) as refused:
        update(lambda: {}, lambda current: 1, write, exhausted="kept changing", retry_after=1)
    assert (refused.value.status, refused.value.message, refused.value.headers) == (
        409,
        "kept changing",
        {"Retry-After": "1"},
    )
    assert len(writes) > 1


def test_the_loop_passes_other_errors_and_the_written_result_through():
    assert (
        update(lambda: {"v": 1}, lambda current: current["v"] + 1, lambda current, change: change, exhausted="x") == 2
    )

    def write(current, change):
        raise InvalidInput("refused")

    with pytest.raises(InvalidInput):
        update(lambda: {}, lambda current: 1, write, exhausted="x")


def test_a_familys_own_conflict_is_not_taken_for_the_api_servers():
    writes = []

    def write(current, change):
        writes.append(change)
        raise Conflict("the load test has run already")

    with pytest.raises(Conflict, match="has run already"):
        update(lambda: {}, lambda current: 1, write, exhausted="kept changing")
    assert writes == [1]
