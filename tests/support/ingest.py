"""The gateway's ingest router in process, on a real store in a temporary folder."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from assay.api.bodies import install_body_limits
from assay.api.errors import install_error_handlers
from assay.api.routers import ingest
from assay.api.settings import GatewaySettings
from assay.api.store import Store


@contextlib.contextmanager
def ingest_client(store_dir: Path, upload_key: str, **settings) -> Iterator[TestClient]:
    """A client of the ingest endpoints; its `store` attribute is the store behind them.
    `settings` are further gateway settings (quotas). No cluster: a tick group's token is
    refused, its tick's runs cannot be read."""
    store = Store(store_dir)
    settings = GatewaySettings(
        store_dir=store_dir, upload_key=SecretStr(upload_key), upload_max_bytes=1 << 20, **settings
    )
    app = FastAPI()
    install_error_handlers(app)
    install_body_limits(app, settings)
    ingest.install(app, SimpleNamespace(store=store, kube=None, settings=settings))
    try:
        with TestClient(app) as client:
            client.store = store
            yield client
    finally:
        store.close()
