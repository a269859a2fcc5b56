"""Runscope buckets over namespaces and nodes: the v1 detail's location utilization."""

from __future__ import annotations

from types import SimpleNamespace

from assay.api.services.runscope_buckets import LOCATION_ANNOTATION, REGION_LABEL, RunscopeBuckets


class FakeKube:
    """Nodes in two regions and a bucket's Monitors with their last runs."""

    def __init__(self, monitors: list[dict]):
        self.monitors = monitors

    def nodes(self) -> list[dict]:
        return [
            {
                "metadata": {
                    "name": f"node-{code}",
                    "labels": {REGION_LABEL: code},
                    "annotations": {LOCATION_ANNOTATION: location},
                }
            }
            for code, location in (("us1", "US Virginia"), ("eu1", "EU Frankfurt"))
        ]

    def list(self, plural: str, namespace: str) -> list[dict]:
        assert (plural, namespace) == ("monitors", "shop")
        return self.monitors


def test_a_location_s_utilization_is_the_share_of_the_bucket_s_tests_running_there():
    def monitor(phase=None, regions=()):
        return {"status": {"lastRun": {"runId": "r", "phase": phase, "regions": list(regions)}}} if phase else {}

    kube = FakeKube(
        [
            monitor("Running", ["us1", "eu1"]),
            monitor("Pending", ["us1"]),
            monitor("Running", ["agent-laptop"]),
            monitor("Succeeded", ["eu1"]),  # finished: not running anywhere
            monitor(),
        ]
    )
    buckets = RunscopeBuckets(kube, None, SimpleNamespace(org_label="assay.dev/org"))
    assert buckets.locations_utilization("shop", 0) == {"EU Frankfurt": 20, "US Virginia": 40, "remote": 20}
    assert buckets.locations_utilization("shop", 21) == {"US Virginia": 40}
    assert buckets.locations_utilization("shop") == {}  # the document's default threshold, 85
    assert RunscopeBuckets(FakeKube([]), None, SimpleNamespace(org_label="x")).locations_utilization("shop", 0) == {}
