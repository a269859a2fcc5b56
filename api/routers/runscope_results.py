"""The Runscope API's results, metrics and request counts (seeds/003: Results, Metrics, Usage).

    GET /buckets/{key}/tests/{test_id}/results                       Test Result List
    GET /buckets/{key}/tests/{test_id}/results/{test_run_id|latest}  Test Result Detail
    GET /buckets/{key}/tests/{test_id}/results/{run}/steps/{step}    Test Result Step Detail
    GET /buckets/{key}/tests/{test_id}/metrics                       Test Metrics
    GET /buckets/{key}/requests                                      Bucket Request Count
    GET /team/{team_id}/requests                                     Team Request Count

Each also under `/v1`, with `/test/` for `/tests/` and `/teams/` for `/team/`, as the document
spells them both ways. A run in several regions is one result per region (same test_run_id);
the detail and step detail take `?region=` to pick one, else the first location's.
Scopes: api:read (+ test:read for a test's results and metrics); team:read for a team's count.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Callable, Optional

from fastapi import APIRouter, Depends, FastAPI, Query
from starlette.concurrency import run_in_threadpool

from .. import openapi
from ..auth import Principal, require_bearer
from ..services import NotFound
from ..services.runscope_results import ALL, RunscopeResults, check_count, usage_window
from ..services.runscope_teams import RunscopeTeams, team_buckets, team_creator
from ..services.runscope_tests import created_by, monitor_by_test_id
from .runscope_wire import FAMILY, bucket_namespace, install_error_shape, ok


def spellings(path: str) -> list[str]:
    """Every way the document writes `path`: with and without /v1, /test/ and /tests/,
    /team/ and /teams/ (the singular only without /v1, as the document has it)."""
    variants = {path}
    for one, other in (("/tests/", "/test/"), ("/team/", "/teams/")):
        variants |= {v.replace(one, other) for v in variants} | {v.replace(other, one) for v in variants}
    return sorted(variants | {"/v1" + v for v in variants if not v.startswith("/team/")})


def route(router: APIRouter, path: str, **kwargs) -> Callable:
    def register(endpoint: Callable) -> Callable:
        for variant in spellings(path):
            router.add_api_route(variant, endpoint, methods=["GET"], **kwargs)
        return endpoint

    return register


def build_router(services) -> APIRouter:
    results = RunscopeResults(services.store, services.settings.public_url)
    teams = RunscopeTeams(services.store)
    router = APIRouter(tags=["runscope"])
    test_reader = require_bearer("api:read", "test:read")

    def test_monitor(principal: Principal, bucket_key: str, test_id: str) -> tuple[str, dict]:
        namespace = bucket_namespace(services, principal, bucket_key)
        monitor = monitor_by_test_id(services.kube, namespace, test_id)
        if monitor is None:
            raise NotFound(f"test {test_id!r} not found in bucket {bucket_key!r}")
        return namespace, monitor

    def test_namespace(principal: Principal, bucket_key: str, test_id: str) -> str:
        return test_monitor(principal, bucket_key, test_id)[0]

    def run_by(monitor: dict) -> Optional[str]:
        return (created_by(monitor) or {}).get("name")

    @route(router, "/buckets/{bucket_key}/tests/{test_id}/results")
    async def list_results(
        bucket_key: str,
        test_id: str,
        count: Optional[int] = None,
        since: Optional[float] = None,
        before: Optional[float] = None,
        subtests: bool = False,
        principal: Principal = Depends(test_reader),
    ):
        count = check_count(count)

        def answer():
            namespace, monitor = test_monitor(principal, bucket_key, test_id)
            return results.list_results(
                namespace, test_id, count=count, since=since, before=before, subtests=subtests, run_by=run_by(monitor)
            )

        return ok(await run_in_threadpool(answer))

    @route(router, "/buckets/{bucket_key}/tests/{test_id}/results/{test_run_id}")
    async def result_detail(
        bucket_key: str,
        test_id: str,
        test_run_id: str,
        region: Optional[str] = None,
        principal: Principal = Depends(test_reader),
    ):
        def answer():
            namespace, monitor = test_monitor(principal, bucket_key, test_id)
            return results.result(namespace, test_id, test_run_id, region, run_by=run_by(monitor))

        return ok(await run_in_threadpool(answer))

    @route(router, "/buckets/{bucket_key}/tests/{test_id}/results/{test_run_id}/steps/{step_id}")
    async def step_detail(
        bucket_key: str,
        test_id: str,
        test_run_id: str,
        step_id: str,
        region: Optional[str] = None,
        principal: Principal = Depends(test_reader),
    ):
        def answer():
            namespace = test_namespace(principal, bucket_key, test_id)
            return results.step(namespace, test_id, test_run_id, step_id, region)

        return ok(await run_in_threadpool(answer))

    @route(router, "/buckets/{bucket_key}/tests/{test_id}/metrics")
    async def test_metrics(
        bucket_key: str,
        test_id: str,
        timeframe: str = "day",
        environment_uuid: str = ALL,
        region: str = ALL,
        marshal_result: bool = False,
        principal: Principal = Depends(test_reader),
    ):
        def answer():
            namespace = test_namespace(principal, bucket_key, test_id)
            return results.metrics(
                namespace,
                test_id,
                now=time.time(),
                timeframe=timeframe,
                environment_uuid=environment_uuid,
                region=region,
            )

        # The document shows the metrics object itself, without the envelope; API clients ask
        # for the envelope with marshal_result=true.
        metrics = await run_in_threadpool(answer)
        return ok(metrics) if marshal_result else metrics

    def period(date: Optional[str], days: Optional[int], from_: Optional[str], to: Optional[str]):
        today = datetime.now(timezone.utc).date()
        return usage_window(today, date_=date, days=days, from_=from_, to=to)

    @route(router, "/buckets/{bucket_key}/requests")
    async def bucket_requests(
        bucket_key: str,
        date: Optional[str] = None,
        days: Optional[int] = None,
        from_: Optional[str] = Query(None, alias="from"),
        to: Optional[str] = None,
        principal: Principal = Depends(require_bearer("api:read")),
    ):
        start, end = period(date, days, from_, to)

        def answer():
            return results.bucket_usage(bucket_namespace(services, principal, bucket_key), start, end)

        return ok(await run_in_threadpool(answer))

    @route(router, "/team/{team_id}/requests")
    async def team_requests(
        team_id: str,
        date: Optional[str] = None,
        days: Optional[int] = None,
        from_: Optional[str] = Query(None, alias="from"),
        to: Optional[str] = None,
        principal: Principal = Depends(require_bearer("team:read")),
    ):
        start, end = period(date, days, from_, to)

        def answer():
            buckets = team_buckets(principal, services.auth.tenancy.index.namespaces(), team_id)
            per_bucket = [results.bucket_usage(key, start, end) for key in buckets]
            per_bucket.sort(key=lambda b: b["requests_count"], reverse=True)
            return {
                "team_uuid": team_id,
                "requests_count": sum(b["requests_count"] for b in per_bucket),
                "from_date": start.isoformat(),
                "to_date": end.isoformat(),
                **team_creator(teams.people(team_id), principal),
                "buckets": per_bucket,
            }

        return ok(await run_in_threadpool(answer))

    return router


def install(app: FastAPI, services) -> None:
    install_error_shape(app)
    router = build_router(services)
    app.include_router(router)
    openapi.publish(app, FAMILY, router.routes)
