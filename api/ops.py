"""Operations endpoints: /healthz and /metrics, and the request metrics middleware."""

from __future__ import annotations

import logging
import time

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from .logs import log_fields
from .store.progress import STALE_AFTER_SECONDS, merge_progress

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


class LoadTestProgress:
    """`assay_loadtests_*`: the running LoadTests' live figures together, merged from their
    shards' latest reports (store/progress.py) at scrape time. Only load tests with a shard that
    reported in the last STALE_AFTER_SECONDS count, and a run's reports are deleted when it
    finishes, so the figures follow the runs. No series names a namespace or a load test:
    /metrics answers anyone who reaches the gateway (its Ingress too), and tenants' names and
    traffic are theirs (SECURITY.md)."""

    FIGURES = (
        ("running", "assay_loadtests_running", "Load tests with a shard reporting in the last seconds"),
        ("requests", "assay_loadtests_requests", "Requests sent so far by the running load tests"),
        ("errors", "assay_loadtests_errors", "Failed requests so far of the running load tests"),
        ("rps", "assay_loadtests_requests_per_second", "Throughput of the running load tests' reporting shards"),
        (
            "p95Ms",
            "assay_loadtests_p95_seconds_max",
            "The highest 95th percentile latency among the running load tests",
        ),
        ("activeUsers", "assay_loadtests_active_users", "Virtual users of the running load tests"),
        ("shardsReporting", "assay_loadtests_shards_reporting", "Shards of the running load tests still reporting"),
    )

    def __init__(self, store) -> None:
        self.store = store

    def collect(self):
        totals = {key: 0.0 for key, _, _ in self.FIGURES}
        now = time.time()
        for run in self.store.runs_with_progress():
            if run.kind != "LoadTest":
                continue
            merged = merge_progress(self.store.list_progress(run.run_id), now=now)
            if merged is None or now - merged["updatedAt"] > STALE_AFTER_SECONDS:
                continue
            totals["running"] += 1
            for key in ("requests", "errors", "rps", "activeUsers", "shardsReporting"):
                totals[key] += merged[key] or 0
            if merged["p95Ms"] is not None:
                totals["p95Ms"] = max(totals["p95Ms"], merged["p95Ms"] / 1000.0)
        for key, name, help in self.FIGURES:
            yield GaugeMetricFamily(name, help, value=totals[key])


class GatewayMetrics:
    """The gateway's Prometheus metrics, in a registry of its own so that several apps in one
    process (tests) do not collide."""

    def __init__(self, store=None) -> None:
        self.registry = CollectorRegistry()
        if store is not None:
            self.registry.register(RunsByState(store))
            self.registry.register(LoadTestProgress(store))
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
