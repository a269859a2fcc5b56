"""Operations endpoints: /healthz and /metrics, and the request metrics middleware."""

from __future__ import annotations

import logging
import time

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from .logs import log_fields

log = logging.getLogger("assay.api.access")


class RunsByState:
    """`assay_runs` by kind and state, read from the store at scrape time: the store is the
    record of runs, so the gauge is right after a restart and across replicas."""

    def __init__(self, store) -> None:
        self.store = store

    def collect(self):
        family = GaugeMetricFamily("assay_runs", "Runs in the result store by kind and state", labels=["kind", "state"])
        for (kind, state), count in sorted(self.store.count_runs().items()):
            family.add_metric([kind, state], count)
        yield family


class GatewayMetrics:
    """The gateway's Prometheus metrics, in a registry of its own so that several apps in one
    process (tests) do not collide."""

    def __init__(self, store=None) -> None:
        self.registry = CollectorRegistry()
        if store is not None:
            self.registry.register(RunsByState(store))
        self.requests = Counter(
            "assay_gateway_requests_total",
            "HTTP requests handled",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "assay_gateway_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=self.registry,
        )


def route_template(request: Request) -> str:
    """The matched route's path template, so metrics are labelled by endpoint, not by id."""
    route = request.scope.get("route")
    return getattr(route, "path", "unmatched")


def install_request_metrics(app, metrics: GatewayMetrics) -> None:
    @app.middleware("http")
    async def measure(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        elapsed = time.perf_counter() - started
        route = route_template(request)
        metrics.requests.labels(request.method, route, str(response.status_code)).inc()
        metrics.latency.labels(request.method, route).observe(elapsed)
        log_fields(
            log, "request", method=request.method, route=route, status=response.status_code, ms=round(elapsed * 1000, 2)
        )
        return response


def ops_router(metrics: GatewayMetrics) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    # async: answered on the event loop, never queued behind tenant work in the thread pool
    @router.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @router.get("/metrics")
    def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return router
