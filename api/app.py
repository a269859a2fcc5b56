"""The gateway application: wiring only. Business rules live in the services, wire formats
in the routers (one per API family), storage in `store/`, Kubernetes I/O in `kube.py`."""

from __future__ import annotations

import asyncio
import logging
import random
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from assay.runner.egress import EgressPolicy

from . import openapi
from .auth import Authenticator
from .bodies import install_body_limits
from .errors import install_error_handlers
from .kube import KubeClient
from .ops import GatewayMetrics, install_request_metrics, ops_router
from .services.loadtests import PLURAL as LOADTESTS
from .services.outbound import Outbound
from .routers import dashboard, ingest, loadmill, oauth, runscope, runscope_results, runscope_teams, vng, xtc
from .settings import GatewaySettings
from .store import Store


log = logging.getLogger("assay.api")
PURGE_INTERVAL_SECONDS = 3600
PURGE_FIRST_DELAY_SECONDS = (60, 300)


async def purge_expired_forever(store: Store) -> None:
    """Retention: hourly is plenty for a limit counted in days, and each purge is resumable.
    The first purge waits a minute or a few: a purge reads every stored object's key (in S3,
    tens of thousands of listed keys parsed for seconds of CPU), which would slow the first
    requests of a gateway just (re)started, and replicas restarted together by a rollout
    spread their purges instead of all listing the bucket at once."""
    await asyncio.sleep(random.uniform(*PURGE_FIRST_DELAY_SECONDS))
    while True:
        try:
            purged = await run_in_threadpool(store.purge_expired)
            if purged:
                log.info("retention: purged %d expired runs", purged)
        except Exception:  # a failed purge must not take the gateway down; the next one retries
            log.exception("retention: purge failed")
        await asyncio.sleep(PURGE_INTERVAL_SECONDS)


@dataclass
class Services:
    """Everything a router may use, created once per app."""

    settings: GatewaySettings
    kube: KubeClient
    store: Store
    auth: Authenticator
    metrics: GatewayMetrics
    outbound: Outbound


def build_services(settings: GatewaySettings) -> Services:
    kube = KubeClient(settings.kubeconfig, cached=(LOADTESTS,) if settings.watch_cache else ())
    database_url = settings.database_url.get_secret_value() if settings.database_url else None
    store = Store(
        settings.store_dir,
        retention_days=settings.retention_days,
        database_url=database_url,
        objects_url=settings.objects_url,
    )
    outbound = Outbound(
        EgressPolicy.parse(settings.egress_allow, settings.egress_deny),
        per_tenant=settings.outbound_per_tenant,
        deadline_seconds=settings.outbound_deadline_seconds,
    )
    return Services(
        settings=settings,
        kube=kube,
        store=store,
        auth=Authenticator(settings, kube, store),
        metrics=GatewayMetrics(store),
        outbound=outbound,
    )


def create_app(settings: GatewaySettings, services: Services | None = None) -> FastAPI:
    services = services or build_services(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        services.auth.start()
        purge = asyncio.create_task(purge_expired_forever(services.store))
        try:
            yield
        finally:
            purge.cancel()
            await services.outbound.aclose()
            services.auth.stop()
            services.store.close()

    app = FastAPI(title="Assay gateway", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.services = services
    install_error_handlers(app)
    install_body_limits(app, settings)
    install_request_metrics(app, services.metrics)
    app.include_router(ops_router(services.metrics))
    openapi.install(app)
    for family in (oauth, ingest, xtc, loadmill, runscope, runscope_results, runscope_teams, vng):
        family.install(app, services)
    dashboard.install(app, services)
    return app
