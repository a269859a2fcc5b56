"""The Runscope trigger URLs' parameters: what `runscope_environment`, `runscope_region` and
`runscope_agent` become in the Monitor's run request, and the batch trigger's runs. The API
server is a fake that takes a run request at once, as a quick operator would."""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace

import pytest

from assay.api.services import InvalidInput, NotFound
from assay.api.services.runscope_tests import RunscopeTests, TriggerSet
from assay.crds.runrequest import RUN_REQUEST_ANNOTATION, requested_id, run_id_for_request

UID = "0f3d2a1b-4c5d-6e7f-8a9b-0c1d2e3f4a5b"
MONITOR = {
    "metadata": {"name": "health", "namespace": "shop", "uid": UID, "resourceVersion": "1", "annotations": {}},
    "spec": {
        "displayName": "Health",
        "defaultEnvironment": "staging",
        "environments": [
            {"id": "env-1", "name": "staging", "regions": ["us1"]},
            {
                "id": "env-2",
                "name": "prod",
                "regions": ["us1", "eu1"],
                "remoteAgents": [{"name": "dc-berlin", "uuid": "agent-uuid-1"}],
                "parentEnvironmentId": "shared-1",
            },
        ],
    },
}


def node(name: str, uid: str, **labels) -> dict:
    return {"metadata": {"name": name, "uid": uid, "labels": labels}}


class Kube:
    """One Monitor; each run request is recorded as the operator's last run at once."""

    def __init__(self):
        self.monitor = copy.deepcopy(MONITOR)
        self.requests: list[dict] = []
        self.nodes_ = [
            node("n-us1", "u1", **{"topology.kubernetes.io/region": "us1"}),
            node("n-ap1", "u2", **{"topology.kubernetes.io/region": "ap1"}),
            node("lab-ours", "node-uid-ours", **{"assay.dev/agent": "lab", "assay.dev/org": "acme"}),
            node("lab-theirs", "node-uid-theirs", **{"assay.dev/agent": "other-lab", "assay.dev/org": "rival"}),
        ]

    def list(self, plural, namespace=None):
        return [copy.deepcopy(self.monitor)] if plural == "monitors" else []

    def get(self, plural, namespace, name):
        return copy.deepcopy(self.monitor)

    def patch(self, plural, namespace, name, patch):
        meta = self.monitor["metadata"]
        assert patch["metadata"]["resourceVersion"] == meta["resourceVersion"]
        value = patch["metadata"]["annotations"][RUN_REQUEST_ANNOTATION]
        self.requests.append(json.loads(value))
        meta["annotations"][RUN_REQUEST_ANNOTATION] = value
        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)
        run_id = run_id_for_request(meta["name"], meta["uid"], requested_id(meta["annotations"]))
        self.monitor["status"] = {"lastRun": {"runId": run_id}}

    def nodes(self, label_selector=""):
        wanted = [part.partition("=") for part in label_selector.split(",") if part]
        return [
            n
            for n in self.nodes_
            if all(k in n["metadata"]["labels"] and (not eq or n["metadata"]["labels"][k] == v) for k, eq, v in wanted)
        ]

    def namespace(self, name):
        return {"metadata": {"name": name, "uid": "ns-uid", "labels": {"assay.dev/org": "acme"}}}

    def namespaces(self):
        return [self.namespace("shop")]

    def read_config_map(self, namespace, name):
        return None


class Store:
    def put_record(self, collection, key, record, project=None):
        pass


@pytest.fixture
def kube():
    return Kube()


@pytest.fixture
def tests(kube, monkeypatch):
    settings = SimpleNamespace(token_signing_key=None, public_url="https://gw/", org_label="assay.dev/org")
    service = RunscopeTests(kube, Store(), settings, sleep=lambda _: None)
    # No shared environments in this bucket: a parent that is gone leaves the environment as it is.
    monkeypatch.setattr(service, "_shared", lambda namespace: (None, {}))
    return service


def trigger_id(tests) -> str:
    return tests.trigger_url(MONITOR).split("/radar/")[1].split("/")[0]


def test_parameters_split_into_controls_and_variables_and_a_body_replaces_the_query():
    run = TriggerSet.of(
        [("runscope_region", "us1, eu1"), ("runscope_region", "us1"), ("baseUrl", "q"), ("runscope_environment", "a")],
        [("baseUrl", "b"), ("runscope_notification_url", "https://x"), ("runscope_agent", "lab")],
    )
    assert (run.environment, run.regions, run.agents, run.params) == ("a", ["us1", "eu1"], ["lab"], {"baseUrl": "b"})
    assert TriggerSet.of([("runscope_region", "")], [("runscope_region", "ap1")]).regions == ["ap1"]
    assert TriggerSet.of([("runscope_region", "")]).regions is None  # the environment's regions


def test_without_location_parameters_the_run_goes_where_its_environment_says(tests, kube):
    started = tests.trigger(trigger_id(tests), TriggerSet.of([("runscope_environment", "prod")]))
    assert [(r["region"], r["agent"]) for r in started["runs"]] == [
        ("us1", None),
        ("eu1", None),
        (None, "agent-uuid-1"),
    ]
    assert started["runs_started"] == 3 and started["runs_total"] == 3
    assert len({r["test_run_id"] for r in started["runs"]}) == 1
    assert "regions" not in kube.requests[0] and kube.requests[0]["environment"] == "env-2"


def test_a_region_and_an_agent_replace_the_environments_locations(tests, kube):
    run = TriggerSet.of([("runscope_environment", "env-2"), ("runscope_region", "ap1"), ("runscope_agent", "lab")])
    started = tests.trigger(trigger_id(tests), run)
    assert [(r["region"], r["agent"]) for r in started["runs"]] == [("ap1", None), (None, "node-uid-ours")]
    assert (kube.requests[0]["regions"], kube.requests[0]["remoteAgents"]) == (["ap1"], ["lab"])
    # The environment's agent by its uuid; the run then goes to no region.
    tests.trigger(
        trigger_id(tests), TriggerSet.of([("runscope_environment", "prod"), ("runscope_agent", "agent-uuid-1")])
    )
    assert (kube.requests[1]["regions"], kube.requests[1]["remoteAgents"]) == ([], ["dc-berlin"])
    # A team agent by its agent id (the node's uid).
    tests.trigger(trigger_id(tests), TriggerSet.of([("runscope_agent", "node-uid-ours")]))
    assert kube.requests[2]["remoteAgents"] == ["lab"]


@pytest.mark.parametrize(
    "pairs, says",
    [
        ([("runscope_region", "mars1")], "runscope_region"),
        ([("runscope_region", "eu1")], "runscope_region"),  # prod's region, not staging's nor a node's
        ([("runscope_agent", "other-lab")], "runscope_agent"),  # another team's agent
        ([("runscope_agent", "node-uid-theirs")], "runscope_agent"),
        ([("runscope_environment", "qa")], "runscope_environment"),
    ],
)
def test_an_unknown_region_agent_or_environment_starts_nothing(tests, kube, pairs, says):
    with pytest.raises(InvalidInput, match=says):
        tests.trigger(trigger_id(tests), TriggerSet.of(pairs))
    assert kube.requests == []


def test_a_batch_is_one_run_per_set_and_a_bad_set_starts_none(tests, kube):
    sets = [
        TriggerSet.of([("runscope_environment", "prod"), ("runscope_region", "eu1"), ("n", "1")]),
        TriggerSet.of([("n", "2")]),
    ]
    started = tests.trigger_batch(trigger_id(tests), sets)
    assert (started["runs_started"], started["runs_failed"], started["runs_total"]) == (2, 0, 2)
    assert [(r["environment_id"], r["region"], r["variables"]) for r in started["runs"]] == [
        ("env-2", "eu1", {"n": "1"}),
        ("env-1", "us1", {"n": "2"}),
    ]
    assert len({r["test_run_id"] for r in started["runs"]}) == 2
    assert started["consolidated_test_results_url"] == f"https://gw/buckets/shop/tests/{UID}/results"
    assert [r["params"] for r in kube.requests] == [{"n": "1"}, {"n": "2"}]
    with pytest.raises(InvalidInput):
        tests.trigger_batch(trigger_id(tests), [TriggerSet(), TriggerSet.of([("runscope_region", "mars1")])])
    assert len(kube.requests) == 2
    with pytest.raises(NotFound):
        tests.trigger_batch("00000000-0000-0000-0000-000000000000", [TriggerSet()])


def test_the_bucket_trigger_passes_the_region_to_each_test_and_counts_one_it_cannot_place(tests, kube):
    bucket_id = tests.bucket_trigger_id(kube.namespace("shop"))
    started = tests.trigger_bucket(bucket_id, TriggerSet.of([("runscope_region", "ap1")]))
    assert [(r["region"], r["test_id"]) for r in started["runs"]] == [("ap1", UID)]
    assert kube.requests[0]["regions"] == ["ap1"]
    refused = tests.trigger_bucket(bucket_id, TriggerSet.of([("runscope_region", "mars1")]))
    assert (refused["runs_started"], refused["runs_failed"], refused["runs_total"]) == (0, 1, 1)
    assert len(kube.requests) == 1
