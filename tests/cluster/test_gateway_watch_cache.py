"""The gateway's LoadTest cache (api/kube.py WatchCache) against a real API server: it sees
what others (kubectl) create, change and delete, answers as a direct read does, lists again
after its watch expires (410 Gone), and has the gateway's own writes at once."""

from __future__ import annotations

import json
import threading

import pytest

from assay.api.kube import KubeClient, WatchCache

pytestmark = pytest.mark.cluster

PLURAL = "loadtests"


def manifest(name: str, labels: dict[str, str] | None = None) -> dict:
    return {
        "apiVersion": "assay.dev/v1alpha1",
        "kind": "LoadTest",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {
            "baseUrl": "http://127.0.0.1:9",
            "load": {"users": 1, "duration": "5s"},
            "flows": [{"name": "f", "requests": [{"url": "/"}]}],
        },
    }


def apply(cluster, namespace: str, body: dict) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))


def names(items: list[dict]) -> list[str]:
    return [i["metadata"]["name"] for i in items]


@pytest.fixture
def kube(cluster):
    client = KubeClient(cluster.kubeconfig, cached=(PLURAL,))
    cache = client.caches[PLURAL].start()
    assert cache.wait_synced(30)
    yield client
    cache.stop()


def test_the_cache_follows_kubectl_and_answers_as_the_api_server_does(cluster, namespace, other_account, kube):
    apply(cluster, namespace, manifest("alpha", {"team": "a"}))
    apply(cluster, namespace, manifest("beta", {"team": "b"}))
    apply(cluster, other_account, manifest("gamma", {"team": "a"}))

    def settled(*selector: str):
        def same():
            cached = kube.list(PLURAL, namespace, *selector)
            return cached == kube.list_direct(PLURAL, namespace, *selector) and cached

        return same

    assert names(cluster.wait_for("the creates in the cache", settled(), timeout=10)) == ["alpha", "beta"]
    assert names(kube.list(PLURAL, namespace, "team=a")) == ["alpha"]  # the tenant's own only
    assert names(kube.list(PLURAL, other_account)) == ["gamma"]
    everywhere = [i for i in kube.list(PLURAL) if i["metadata"]["namespace"] in (namespace, other_account)]
    direct = [i for i in kube.list_direct(PLURAL) if i["metadata"]["namespace"] in (namespace, other_account)]
    assert everywhere == direct and len(everywhere) == 3

    cluster.kubectl(
        "patch",
        "loadtest",
        "beta",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"phase": "Succeeded", "result": "Passed", "runId": "beta-1"}}),
    )
    cluster.kubectl("label", "loadtest", "alpha", "-n", namespace, "team=b", "--overwrite")

    def updated():
        items = {i["metadata"]["name"]: i for i in settled()() or []}
        return items and items["beta"].get("status", {}).get("runId") == "beta-1" and items

    items = cluster.wait_for("the status and the label in the cache", updated, timeout=10)
    assert items["beta"]["status"]["phase"] == "Succeeded"
    assert names(kube.list(PLURAL, namespace, "team=b")) == ["alpha", "beta"]
    assert kube.list(PLURAL, namespace, "team=b") == kube.list_direct(PLURAL, namespace, "team=b")

    cluster.kubectl("delete", "loadtest", "beta", "-n", namespace)
    cluster.wait_for("the delete in the cache", lambda: names(kube.list(PLURAL, namespace)) == ["alpha"], timeout=10)
    assert kube.list(PLURAL, namespace) == kube.list_direct(PLURAL, namespace)


def test_the_gateways_own_create_and_delete_are_in_its_next_list(cluster, namespace, kube):
    created = kube.create(PLURAL, namespace, manifest("mine"))
    assert created in kube.list(PLURAL, namespace)  # no waiting for the watch
    kube.delete(PLURAL, namespace, "mine")
    assert kube.list(PLURAL, namespace) == []
    # The watch's events for both arrive later and change nothing.
    apply(cluster, namespace, manifest("marker"))
    cluster.wait_for("the watch to catch up", lambda: names(kube.list(PLURAL, namespace)) == ["marker"], timeout=10)
    assert kube.list(PLURAL, namespace) == kube.list_direct(PLURAL, namespace)


class ExpiringOnce(WatchCache):
    """Its first watch starts from resourceVersion 1, long compacted away: the API server
    answers 410 Gone, as it does to a watch resumed after a long disconnection."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.go = threading.Event()
        self.resumed = False

    def _watch_once(self) -> None:
        if not self.resumed:
            self.go.wait(30)
            self.resumed = True
            self.resource_version = "1"
        super()._watch_once()


def test_an_expired_watch_lists_again_and_misses_nothing(cluster, namespace):
    client = KubeClient(cluster.kubeconfig)
    cache = ExpiringOnce(client.custom, PLURAL)
    cache.start()
    try:
        assert cache.wait_synced(30) and cache.lists == 1
        apply(cluster, namespace, manifest("while-away"))  # after the list, before any watch
        assert names(cache.list(namespace)) == []
        cache.go.set()
        cluster.wait_for("the relist after 410", lambda: cache.lists == 2, timeout=15)
        assert cache.expired == 1
        assert names(cache.list(namespace)) == ["while-away"]
        apply(cluster, namespace, manifest("after"))  # and the watch runs again
        cluster.wait_for(
            "the watch after the relist", lambda: names(cache.list(namespace)) == ["after", "while-away"], timeout=10
        )
        assert cache.list(namespace) == client.list_direct(PLURAL, namespace)
    finally:
        cache.stop()
