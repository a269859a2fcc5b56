"""Kubernetes I/O for the gateway: the custom resources, namespaces and Secrets it touches.

One client for the process, created from the in-cluster service account or a kubeconfig.
Plain dicts in and out, as the API server speaks them (camelCase).

Lists of the `cached` kinds (LoadTests: the XTC and Loadmill lists and statuses read them on
every call) come from a WatchCache once it has listed, the API server being read only until
then; the client's own writes of those kinds go into the cache as they are answered."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import kubernetes
import kubernetes.watch
from kubernetes.client.rest import ApiException

from assay.crds import GROUP, VERSION

log = logging.getLogger("assay.api.kube")


class NotFound(LookupError):
    pass


def present(items: list[dict]) -> list[dict]:
    """`items` without those being deleted: a DELETE the API answered is gone to its caller,
    even while a finalizer (the operator's) still holds the object."""
    return [item for item in items if not (item.get("metadata") or {}).get("deletionTimestamp")]


class KubeClient:
    def __init__(self, kubeconfig: Path | None = None, cached: tuple[str, ...] = ()):
        if kubeconfig:
            self.api_client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
        else:
            try:
                kubernetes.config.load_incluster_config()
            except kubernetes.config.ConfigException:
                kubernetes.config.load_kube_config()
            self.api_client = kubernetes.client.ApiClient()
        self.custom = kubernetes.client.CustomObjectsApi(self.api_client)
        self.core = kubernetes.client.CoreV1Api(self.api_client)
        # Started by the first list: processes that never list a kind never watch it.
        self.caches = {plural: WatchCache(self.custom, plural) for plural in cached}

    def get(self, plural: str, namespace: str, name: str) -> dict:
        cache = self.caches.get(plural)
        if cache is not None and (item := cache.start().get(namespace, name)) is not None:
            return item
        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
        except ApiException as exc:
            if exc.status == 404:
                raise NotFound(f"{plural}/{name} not found in {namespace}") from exc
            raise

    def list(self, plural: str, namespace: str | None = None, label_selector: str = "") -> list[dict]:
        cache = self.caches.get(plural)
        if cache is not None:
            items = cache.start().list(namespace, label_selector)
            if items is not None:
                return items
        return self.list_direct(plural, namespace, label_selector)

    def list_direct(self, plural: str, namespace: str | None = None, label_selector: str = "") -> list[dict]:
        if namespace:
            out = self.custom.list_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, label_selector=label_selector
            )
        else:
            out = self.custom.list_cluster_custom_object(GROUP, VERSION, plural, label_selector=label_selector)
        return out["items"]

    def _written(self, plural: str, obj: dict) -> dict:
        cache = self.caches.get(plural)
        if cache is not None:
            cache.remember(obj)
        return obj

    def create(self, plural: str, namespace: str, body: dict) -> dict:
        return self._written(
            plural, self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)
        )

    def patch(self, plural: str, namespace: str, name: str, patch: dict) -> dict:
        return self._written(
            plural, self.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, plural, name, patch)
        )

    def patch_status(self, plural: str, namespace: str, name: str, status: dict) -> dict:
        return self._written(
            plural,
            self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, plural, name, {"status": status}
            ),
        )

    def replace(self, plural: str, namespace: str, name: str, body: dict) -> dict:
        """PUT the whole object; its metadata.resourceVersion makes a concurrent change a 409."""
        return self._written(
            plural, self.custom.replace_namespaced_custom_object(GROUP, VERSION, namespace, plural, name, body)
        )

    def delete(self, plural: str, namespace: str, name: str) -> None:
        try:
            left = self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
        except ApiException as exc:
            if exc.status != 404:
                raise
            left = None
        cache = self.caches.get(plural)
        if cache is None:
            return
        # A finalizer holds the object (with its deletionTimestamp) as a list shows it; else it is gone.
        meta = (left or {}).get("metadata") or {}
        if meta.get("deletionTimestamp") and meta.get("finalizers") and meta.get("name") == name:
            cache.remember(left)
        else:
            cache.forget(namespace, name)

    def namespaces(self, label_selector: str = "") -> list[dict]:
        items = self.core.list_namespace(label_selector=label_selector).items
        return [self.api_client.sanitize_for_serialization(ns) for ns in items]

    def nodes(self, label_selector: str = "") -> list[dict]:
        items = self.core.list_node(label_selector=label_selector).items
        return [self.api_client.sanitize_for_serialization(node) for node in items]

    def namespace(self, name: str) -> dict:
        try:
            return self.api_client.sanitize_for_serialization(self.core.read_namespace(name))
        except ApiException as exc:
            if exc.status == 404:
                raise NotFound(f"namespace {name} not found") from exc
            raise

    def create_namespace(self, name: str, labels: dict[str, str], annotations: dict[str, str]) -> dict:
        body = {"metadata": {"name": name, "labels": labels, "annotations": annotations}}
        return self.api_client.sanitize_for_serialization(self.core.create_namespace(body))

    def delete_namespace(self, name: str) -> None:
        try:
            self.core.delete_namespace(name)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def config_map(self, namespace: str, name: str) -> dict | None:
        try:
            return self.api_client.sanitize_for_serialization(self.core.read_namespaced_config_map(name, namespace))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def write_config_map(self, namespace: str, body: dict) -> dict:
        """Create the ConfigMap, or replace it when body's metadata.resourceVersion is set (409
        when it changed meanwhile)."""
        if body["metadata"].get("resourceVersion"):
            out = self.core.replace_namespaced_config_map(body["metadata"]["name"], namespace, body)
        else:
            out = self.core.create_namespaced_config_map(namespace, body)
        return self.api_client.sanitize_for_serialization(out)

    def job(self, namespace: str, name: str) -> dict | None:
        try:
            job = kubernetes.client.BatchV1Api(self.api_client).read_namespaced_job(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return self.api_client.sanitize_for_serialization(job)


STALE_AFTER = 30.0
WATCH_SECONDS = 240
REQUEST_TIMEOUT = (10, WATCH_SECONDS + 30)


class ResourceWatcher:
    """Keeps `reset`, `put` and `drop` told of one resource's objects, in a daemon thread:
    list (`reset` with every item), then watch from the list's resourceVersion (`put` each
    added or changed object, `drop` each deleted one). A watch the server ends resumes from
    the last version seen; one it ends with 410 Gone (that version compacted away) lists
    again at once; any other failure lists again after a backoff, and `broken_since` says
    since when no watch has been healthy."""

    def __init__(
        self,
        what: str,
        list_fn: Callable,
        args: tuple,
        reset: Callable[[Iterable[dict]], None],
        put: Callable[[dict], None],
        drop: Callable[[dict], None],
    ):
        self.what, self.list_fn, self.args = what, list_fn, args
        self.reset, self.put, self.drop = reset, put, drop
        self.synced = False
        self.broken_since: float | None = None
        self.resource_version: str | None = None
        """The list's version while `reset` runs; then the last version seen."""
        self.lists = 0
        self.expired = 0
        """Watches the API server ended with 410 Gone."""
        self._stopping = threading.Event()
        self._watch: kubernetes.watch.Watch | None = None
        self._thread: threading.Thread | None = None

    @property
    def healthy(self) -> bool:
        return self.synced and (self.broken_since is None or time.monotonic() - self.broken_since < STALE_AFTER)

    def sync(self) -> None:
        """List everything and replace this resource's part of the index."""
        resp = self.list_fn(*self.args, _preload_content=False, _request_timeout=(10, 30))
        body = json.loads(resp.data)
        self.resource_version = body["metadata"]["resourceVersion"]
        self.reset(body.get("items") or [])
        self.lists += 1
        self.synced = True
        self.broken_since = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"watch-{self.what}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        watch = self._watch
        if watch is not None:
            watch.stop()
            resp = getattr(watch, "_resp", None)  # interrupts a blocked read; best effort
            try:
                if resp is not None:
                    resp.close()
            except Exception:  # noqa: BLE001 - closing from another thread may race; harmless
                pass
        if self._thread is not None:
            self._thread.join(timeout=2)

    def _run(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                if not self.synced or self.resource_version is None:
                    self.sync()
                self._watch_once()
                backoff = 0.5
            except ApiException as exc:
                if exc.status == 410 and not self._stopping.is_set():
                    self.expired += 1
                    self.resource_version = None
                    continue
                if self._failed(exc, backoff):
                    break
                backoff = min(backoff * 2, 10.0)
            except Exception as exc:  # noqa: BLE001 - any failure: note it, back off, relist
                if self._failed(exc, backoff):
                    break
                backoff = min(backoff * 2, 10.0)

    def _failed(self, exc: Exception, backoff: float) -> bool:
        """Note the failure and wait out the backoff; True when stopping."""
        if self._stopping.is_set():
            return True
        if self.broken_since is None:
            self.broken_since = time.monotonic()
        log.warning(
            "watching %s failed (%s); relisting in %.1fs",
            self.what,
            getattr(exc, "status", None) or type(exc).__name__,
            backoff,
        )
        self.resource_version = None
        self._stopping.wait(backoff)
        return self._stopping.is_set()

    def _watch_once(self) -> None:
        # "object": events as the plain dicts the server sent, and an ERROR event (410 Gone
        # among them) raised as an ApiException with its code.
        self._watch = kubernetes.watch.Watch(return_type="object")
        stream = self._watch.stream(
            self.list_fn,
            *self.args,
            resource_version=self.resource_version,
            timeout_seconds=WATCH_SECONDS,
            allow_watch_bookmarks=True,
            _request_timeout=REQUEST_TIMEOUT,
        )
        for event in stream:
            if self._stopping.is_set():
                return
            if not event:
                continue
            kind, obj = event.get("type"), event.get("object") or {}
            version = (obj.get("metadata") or {}).get("resourceVersion")
            if kind in ("ADDED", "MODIFIED"):
                self.put(obj)
            elif kind == "DELETED":
                self.drop(obj)
            if version:
                self.resource_version = version


class WatchCache(ResourceWatcher):
    """One custom resource's objects in every namespace, as a ResourceWatcher keeps them.

    The caller's own writes go in at once (`remember`, `forget`): a LoadTest created through
    this replica is in its next list, whatever the watch's lag. An object is replaced only by
    a newer version of itself, so an event that arrives after the write that superseded it
    cannot bring the older one back. Lists are answered from here only while the watch is
    healthy; else from the API server."""

    def __init__(self, custom: kubernetes.client.CustomObjectsApi, plural: str):
        super().__init__(
            plural, custom.list_cluster_custom_object, (GROUP, VERSION, plural), self._reset, self._put, self._drop
        )
        self.plural = plural
        self._items: dict[tuple[str, str], dict] = {}
        self._gone: set[str] = set()
        """uids this process deleted whose DELETED event has not arrived yet."""
        self._lock = threading.Lock()

    def start(self) -> WatchCache:
        with self._lock:
            if self._thread is None:
                super().start()
        return self

    @property
    def serving(self) -> bool:
        return self.synced and self.broken_since is None

    def wait_synced(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.serving and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.serving

    def list(self, namespace: str | None, label_selector: str = "") -> list[dict] | None:
        """The objects as the API server would list them; None when the cache cannot answer
        (not listed yet, its watch broken, or a selector it does not read). The objects are
        the cache's own, shared with every caller: read them, never change them."""
        wanted = parse_selector(label_selector)
        if wanted is None or not self.serving:
            return None
        with self._lock:
            items = [
                item
                for (ns, _), item in self._items.items()
                if (namespace is None or ns == namespace) and _matches(item, wanted)
            ]
        # In the API server's order: by storage key, `<namespace>/<name>`.
        return sorted(items, key=lambda i: f"{i['metadata'].get('namespace', '')}/{i['metadata']['name']}")

    def get(self, namespace: str, name: str) -> dict | None:
        """The object, shared as `list` shares it; None when the cache cannot answer or has not
        seen it (it may be newer than the watch: the caller reads the API server)."""
        if not self.serving:
            return None
        with self._lock:
            return self._items.get((namespace, name))

    def remember(self, obj: dict) -> None:
        with self._lock:
            self._keep(obj)

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            item = self._items.pop((namespace, name), None)
            if item is not None:
                self._gone.add(item["metadata"]["uid"])

    def _keep(self, obj: dict) -> None:
        meta = obj["metadata"]
        if meta.get("uid") in self._gone:
            return
        key = (meta.get("namespace", ""), meta["name"])
        have = self._items.get(key)
        if have is None or not _older(meta, have["metadata"]):
            self._items[key] = obj

    def _reset(self, items: Iterable[dict]) -> None:
        fresh = {(i["metadata"].get("namespace", ""), i["metadata"]["name"]): i for i in items}
        with self._lock:
            # A write of this process newer than the list stays: the watch brings its event.
            for key, item in self._items.items():
                if key not in fresh and _newer_than(item["metadata"], self.resource_version or ""):
                    fresh[key] = item
            self._gone &= {i["metadata"]["uid"] for i in fresh.values()}
            self._items = fresh

    def _put(self, obj: dict) -> None:
        with self._lock:
            self._keep(obj)

    def _drop(self, obj: dict) -> None:
        meta = obj.get("metadata") or {}
        with self._lock:
            key = (meta.get("namespace", ""), meta["name"])
            have = self._items.get(key)
            if have is not None and have["metadata"].get("uid") == meta.get("uid"):
                del self._items[key]
            self._gone.discard(meta.get("uid"))


def parse_selector(selector: str) -> dict[str, str | None] | None:
    """An equality label selector (`a=b,c==d,e`) as {label: value or None for "exists"};
    None for any other form (the cache leaves those to the API server)."""
    wanted: dict[str, str | None] = {}
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if any(c in term for c in "!()<> ") or term.count("=") not in (0, 1, 2):
            return None
        key, sep, value = term.partition("==") if "==" in term else term.partition("=")
        wanted[key] = value if sep else None
    return wanted


def _matches(item: dict, wanted: dict[str, str | None]) -> bool:
    labels = item["metadata"].get("labels") or {}
    return all(k in labels and (v is None or labels[k] == v) for k, v in wanted.items())


def _version(meta: dict) -> int | None:
    value = meta.get("resourceVersion")
    return int(value) if isinstance(value, str) and value.isdigit() else None


def _older(meta: dict, than: dict) -> bool:
    # resourceVersions are opaque to clients in principle; every API server backed by etcd
    # hands out its revision, an integer that only grows, which is what makes ordering safe.
    # One that is not an integer is taken as newer.
    mine, theirs = _version(meta), _version(than)
    return mine is not None and theirs is not None and mine < theirs


def _newer_than(meta: dict, version: str) -> bool:
    mine = _version(meta)
    return mine is not None and version.isdigit() and mine > int(version)
