"""The Loadmill REST API (seeds/002) under `/api/v1`: test-suite runs, suite-run and flow-run
results, load tests from a JSON configuration, flow parameter pools from CSV, team labels;
and what Loadmill's CLI (loadmill-node) calls besides: test-plan runs and JUnit reports.

The same routes are served under `/api` too, where Loadmill's CLI and node module send them.

Authentication is Loadmill's: `Authorization: <token>`, or `Authorization: Basic
base64("<token>:")` as the CLI sends it, with a static API token of a ClientCredential that
has the `loadmill` scope. A Loadmill account is one namespace: the
credential's own (a project credential reaches only it; for an org credential it is the
namespace the credential lives in, if the credential reaches it). Errors are `{"message"}`.
Request and response shapes are the documented ones; api/README.md lists the mappings and
what is partial.
"""

from __future__ import annotations

from typing import Annotated, Optional, Union

from fastapi import APIRouter, Body, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.concurrency import run_in_threadpool

from .. import openapi
from ..auth import Principal, require_static_token
from ..bodies import JsonBody, body_limit
from ..errors import ApiError
from ..services import UnsupportedMediaType
from ..services.loadmill import LoadmillTestService
from ..services.loadmill_runs import LoadmillRuns
from ..services.suites import MAX_ADDITIONAL_DESCRIPTION, MAX_POOL_BYTES, SuiteService, text_parameters

PREFIX = "/api/v1"
CLI_PREFIX = "/api"
"""Where Loadmill's CLI and node module send the same calls (no version in the path)."""
ERROR_PREFIXES = tuple(
    f"{prefix}/{family}" for prefix in (PREFIX, CLI_PREFIX) for family in ("test", "labels", "reports")
)
"""tests, test-suites, test-suites-runs, test-plans, test-plans-runs, labels and reports under
both prefixes; other API families (VNG) live under /api/v1 too, so only these prefixes get
Loadmill's errors."""
CI_ENABLED_FILTER = "CI_enabled"

ParameterValue = Union[str, int, float, bool, None]

FAMILY = openapi.ApiFamily(
    name="loadmill",
    title="Assay Loadmill API",
    description="Loadmill's REST API, served by Assay: test-suite and test-plan runs, load tests from a "
    "configuration, flow parameter pools, team labels, JUnit reports. Send the static API token "
    "`<client-id>.<client-secret>` as `Authorization: <token>` or as the user of Basic authentication "
    "(empty password). Every path is served under `/api` too, as Loadmill's CLI calls it. "
    'Errors are `{"message"}`.',
    security_schemes=lambda public_url: {
        "loadmillToken": {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "The static API token of a ClientCredential with the `loadmill` scope, without a scheme.",
        },
        "loadmillBasic": {
            "type": "http",
            "scheme": "basic",
            "description": "The static API token as the user name, with an empty password (Loadmill's CLI).",
        },
    },
    error_name="LoadmillError",
    error_schema={"type": "object", "required": ["message"], "properties": {"message": {"type": "string"}}},
    errors={
        400: "Invalid parameters or body.",
        401: "Missing, unknown or expired API token.",
        403: "The token lacks the `loadmill` scope or reaches no Loadmill account.",
        404: "No such test suite, test plan, run, flow, load test or JUnit report in the account.",
    },
)


class RunSuiteBody(BaseModel):
    """The body of "Run Test Suite" (and of the CLI's "run test plan"). `labels` run only the
    flows carrying one of them, `pool` names the parameter pool flows run over; the other
    options Loadmill added (parallel, tags, branch, ...) are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")

    additionalDescription: Optional[str] = Field(None, max_length=MAX_ADDITIONAL_DESCRIPTION)
    overrideParameters: Optional[Union[dict[str, ParameterValue], list[dict[str, ParameterValue]]]] = None
    labels: Optional[list[Annotated[str, StringConstraints(min_length=1, max_length=253)]]] = Field(None, max_length=50)
    pool: Optional[str] = Field(None, min_length=1, max_length=253)


class JUnitReportBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    testId: str = Field(max_length=200)
    runType: str = Field(max_length=32)


CSV_BODY = {"requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}}}
"""The pool endpoint reads its body itself (the CSV as the runner reads it); this documents it."""


def render_error(request: Request, status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status)


def account_namespaces(services, principal: Principal) -> list[str]:
    """The Loadmill account of the token, as a one-element list of namespaces."""
    reachable = services.auth.tenancy.namespaces_for(principal)
    if principal.namespace in reachable:
        return [principal.namespace]
    if len(reachable) == 1:
        return reachable
    raise ApiError(403, "this API token does not reach a Loadmill account (its credential's namespace)", "forbidden")


def build_router(services, prefix: str = PREFIX, *, include_in_schema: bool = True) -> APIRouter:
    suites = SuiteService(services.kube, services.store)
    tests = LoadmillTestService(services.kube, services.store)
    runs = LoadmillRuns(services.kube, services.store, suites)
    router = APIRouter(prefix=prefix, tags=["loadmill"], include_in_schema=include_in_schema)
    authenticated = require_static_token("loadmill")

    def account(principal: Principal) -> list[str]:
        return account_namespaces(services, principal)

    @router.post(
        "/test-suites/{id}/run",
        responses={409: {"description": "The previous run request is not taken up yet; see Retry-After."}},
    )
    def run_test_suite(
        id: str,
        forceAllFlows: bool = False,
        body: Optional[RunSuiteBody] = Body(None),
        principal: Principal = Depends(authenticated),
    ) -> dict:
        namespace = account(principal)[0]
        body = body or RunSuiteBody()
        run_id = suites.request_run(
            namespace,
            id,
            force_all_flows=forceAllFlows,
            additional_description=body.additionalDescription or "",
            override_parameters=text_parameters(body.overrideParameters),
            labels=body.labels,
            pool=body.pool,
            requester=principal.credential,
        )
        return {"testSuiteRunId": run_id}

    @router.post(
        "/test-plans/{id}/run",
        responses={409: {"description": "A suite's previous run request is not taken up yet; see Retry-After."}},
    )
    def run_test_plan(
        id: str, body: Optional[RunSuiteBody] = Body(None), principal: Principal = Depends(authenticated)
    ) -> dict:
        body = body or RunSuiteBody()
        plan_run_id = runs.run_plan(
            account(principal)[0],
            id,
            additional_description=body.additionalDescription or "",
            override_parameters=text_parameters(body.overrideParameters),
            labels=body.labels,
            pool=body.pool,
            requester=principal.credential,
        )
        return {"testPlanRunId": plan_run_id}

    @router.get("/test-plans-runs/{id}")
    def get_plan_run(id: str, principal: Principal = Depends(authenticated)) -> dict:
        return runs.plan_run(account(principal), id)

    @router.post("/reports/junit")
    def request_junit_report(body: JUnitReportBody, principal: Principal = Depends(authenticated)) -> dict:
        return {"junitReportId": runs.request_junit(account(principal), body.testId, body.runType)}

    @router.get("/reports/junit/{id}", responses={404: {"description": "No such report, or it is not ready yet."}})
    def get_junit_report(id: str, principal: Principal = Depends(authenticated)) -> dict:
        return {"junitReport": runs.junit(account(principal), id)}

    @router.get("/test-suites-runs/flows/{id}")
    def get_flow_run(id: str, principal: Principal = Depends(authenticated)) -> dict:
        return suites.flow_run(account(principal), id)

    @router.get("/test-suites-runs/{id}")
    def get_suite_run(id: str, principal: Principal = Depends(authenticated)) -> dict:
        return suites.suite_run(account(principal), id)

    @router.patch(
        "/test-suites/{suiteId}/flows/{flowId}/pools",
        openapi_extra=CSV_BODY,
        responses={
            413: {"description": "The CSV is larger than 1 MiB."},
            415: {"description": "The body is not text/csv."},
        },
    )
    @body_limit(MAX_POOL_BYTES)
    async def set_flow_pool(
        suiteId: str,
        flowId: str,
        request: Request,
        name: Optional[str] = Query(None, max_length=253),
        principal: Principal = Depends(authenticated),
    ) -> Response:
        media_type, _, params = request.headers.get("content-type", "").partition(";")
        if media_type.strip().lower() != "text/csv":
            raise UnsupportedMediaType(f"content-type must be text/csv, not {media_type.strip() or 'missing'!r}")
        charset = None
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.lower() == "charset" and value:
                charset = value.strip('"')
        body = await request.body()
        await run_in_threadpool(
            suites.set_flow_pool, account(principal)[0], suiteId, flowId, body, charset, name or None
        )
        return Response(status_code=200)

    @router.post("/tests")
    def create_load_test(body: JsonBody, principal: Principal = Depends(authenticated)) -> dict:
        # Documented as {"config": {...}}; Loadmill's own clients send the configuration itself.
        conf = (
            body.get("config")
            if isinstance(body, dict) and isinstance(body.get("config"), dict) and "requests" not in body
            else body
        )
        return {"testId": tests.create(account(principal)[0], conf)}

    @router.put("/tests/{id}/load", responses={409: {"description": "The load test has run already."}})
    def run_load_test(id: str, principal: Principal = Depends(authenticated)) -> Response:
        tests.start(account(principal), id)
        return Response(status_code=200)

    @router.get("/tests/{id}")
    def get_load_test(id: str, principal: Principal = Depends(authenticated)) -> dict:
        return tests.view(account(principal), id)

    @router.get("/labels")
    def team_labels(filter: Optional[str] = Query(None), principal: Principal = Depends(authenticated)) -> dict:
        if filter not in (None, "", CI_ENABLED_FILTER):
            raise ApiError(400, f"unknown filter {filter!r}; the only filter is {CI_ENABLED_FILTER}", "invalid_request")
        return {"teamLabels": suites.labels(account(principal), ci_enabled_only=filter == CI_ENABLED_FILTER)}

    return router


def install(app: FastAPI, services) -> None:
    router = build_router(services)
    app.include_router(router)
    # The same routes where the CLI calls them; the document names each operation once, under
    # /api/v1, and its description says /api serves them too.
    app.include_router(build_router(services, CLI_PREFIX, include_in_schema=False))
    openapi.publish(app, FAMILY, router.routes)
    for prefix in ERROR_PREFIXES:
        app.state.error_shapes.register(prefix, render_error)
