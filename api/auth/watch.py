"""Keeps the CredentialIndex in step with the API server: list, then watch from the list's
resourceVersion, in one daemon thread per resource (ClientCredentials cluster-wide, namespaces).

A broken watch resumes from the last resourceVersion seen; an expired one (410) or any error
relists, so objects deleted meanwhile leave the index. While a watcher cannot reach the API
server its index may miss a revocation, so after `STALE_AFTER` seconds without a healthy
connection the index stops being `ready` and the gateway refuses to authenticate (503):
failing closed beats honouring a credential that may have been deleted.

RBAC: the gateway's service account needs list and watch on clientcredentials.assay.dev
(all namespaces) and on namespaces.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable

import kubernetes

from assay.crds import GROUP, VERSION

from .index import CredentialIndex

log = logging.getLogger("assay.api.auth")

STALE_AFTER = 30.0
WATCH_SECONDS = 240
REQUEST_TIMEOUT = (10, WATCH_SECONDS + 30)


class ResourceWatcher:
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
        self._stopping = threading.Event()
        self._watch: kubernetes.watch.Watch | None = None
        self._thread: threading.Thread | None = None
        self._resource_version: str | None = None

    @property
    def healthy(self) -> bool:
        return self.synced and (self.broken_since is None or time.monotonic() - self.broken_since < STALE_AFTER)

    def sync(self) -> None:
        """List everything and replace this resource's part of the index."""
        resp = self.list_fn(*self.args, _preload_content=False, _request_timeout=(10, 30))
        body = json.loads(resp.data)
        self.reset(body.get("items") or [])
        self._resource_version = body["metadata"]["resourceVersion"]
        self.synced = True
        self.broken_since = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"auth-watch-{self.what}", daemon=True)
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
                if not self.synced or self._resource_version is None:
                    self.sync()
                self._watch_once()
                backoff = 0.5
            except Exception as exc:  # noqa: BLE001 - any failure: note it, back off, relist
                if self._stopping.is_set():
                    break
                if self.broken_since is None:
                    self.broken_since = time.monotonic()
                log.warning(
                    "watching %s failed (%s); relisting in %.1fs",
                    self.what,
                    getattr(exc, "status", None) or type(exc).__name__,
                    backoff,
                )
                self._resource_version = None
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def _watch_once(self) -> None:
        self._watch = kubernetes.watch.Watch()
        stream = self._watch.stream(
            self.list_fn,
            *self.args,
            resource_version=self._resource_version,
            timeout_seconds=WATCH_SECONDS,
            allow_watch_bookmarks=True,
            deserialize=False,
            _request_timeout=REQUEST_TIMEOUT,
        )
        for event in stream:
            if self._stopping.is_set():
                return
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                # 410 Gone (resourceVersion too old) and everything else: relist.
                raise RuntimeError(f"watch error {obj.get('code')}: {obj.get('reason')}")
            version = (obj.get("metadata") or {}).get("resourceVersion")
            if kind in ("ADDED", "MODIFIED"):
                self.put(obj)
            elif kind == "DELETED":
                self.drop(obj)
            if version:
                self._resource_version = version


class IndexWatchers:
    """The two watchers behind a CredentialIndex."""

    def __init__(self, kube, index: CredentialIndex):
        self.watchers = [
            ResourceWatcher(
                "clientcredentials",
                kube.custom.list_cluster_custom_object,
                (GROUP, VERSION, "clientcredentials"),
                index.reset_credentials,
                index.put_credential,
                index.drop_credential,
            ),
            ResourceWatcher(
                "namespaces",
                kube.core.list_namespace,
                (),
                index.reset_namespaces,
                index.put_namespace,
                index.drop_namespace,
            ),
        ]

    @property
    def ready(self) -> bool:
        return all(w.healthy for w in self.watchers)

    def start(self) -> None:
        for watcher in self.watchers:
            try:
                watcher.sync()  # before serving: the first requests already see every credential
            except Exception as exc:  # noqa: BLE001 - the thread keeps trying; requests get 503
                log.warning(
                    "initial list of %s failed (%s); retrying in the background",
                    watcher.what,
                    getattr(exc, "status", None) or type(exc).__name__,
                )
            watcher.start()

    def stop(self) -> None:
        for watcher in self.watchers:
            watcher._stopping.set()
        for watcher in self.watchers:
            watcher.stop()
