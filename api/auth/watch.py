"""Keeps the CredentialIndex in step with the API server: list, then watch from the list's
resourceVersion, in one daemon thread per resource (ClientCredentials cluster-wide, namespaces;
kube.ResourceWatcher).

A broken watch resumes from the last resourceVersion seen; an expired one (410) or any error
relists, so objects deleted meanwhile leave the index. While a watcher cannot reach the API
server its index may miss a revocation, so after `kube.STALE_AFTER` seconds without a healthy
connection the index stops being `ready` and the gateway refuses to authenticate (503):
failing closed beats honouring a credential that may have been deleted.

RBAC: the gateway's service account needs list and watch on clientcredentials.assay.dev
(all namespaces) and on namespaces.
"""

from __future__ import annotations

import logging

from assay.crds import GROUP, VERSION

from ..kube import ResourceWatcher
from .index import CredentialIndex

log = logging.getLogger("assay.api.auth")


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
