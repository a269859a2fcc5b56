"""The XTC load-test API (seeds/000 and 001): `/public/api/v1/orgs/{org}/projects/{project}/loadTests`.

An XTC organization is a group of namespaces (the org label), a project one namespace of it;
`services.auth.tenancy` decides which a token reaches and answers 404 for the rest. Load tests
are LoadTests addressed by their per-project number (services/loadtests.py). XTC's formal
OpenAPI document is not public, so the response models below are Assay's own design, served
as OpenAPI at `/public/api/json` and `/public/api/yaml` and described in api/README.md.

Errors have one shape under `/public/api` (XtcError): `{"timestamp", "status", "error",
"code", "message", "path"}` — the Spring Boot error body an XTC client already parses, plus a
machine-readable `code`.
"""

from __future__ import annotations

import datetime as dt
from http import HTTPStatus
from typing import Annotated, Literal, Optional

import yaml
from fastapi import APIRouter, Depends, FastAPI, Path, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from .. import openapi
from ..auth import Principal, require_bearer
from ..services.loadtests import Archive, LoadTestService, NumberedLoadTest, elapsed_seconds, iso, run_figures

PREFIX = "/public/api"
BASE = PREFIX + "/v1/orgs/{org}/projects/{project}/loadTests"
MAX_NUMBER = 2**31 - 1
ORG_PATTERN = r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
PROJECT_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"

SCOPES = {
    "LOADTEST_LIST": "List the load tests of a project",
    "LOADTEST_DETAILS": "Read a load test's details",
    "LOADTEST_STATUS": "Read a load test's status",
    "LOADTEST_COPY_RUN": "Copy a load test and run the copy",
    "LOADTEST_REPORT_DOWNLOAD": "Download report archives",
    "LOADTEST_RESULT_DOWNLOAD": "Download result archives",
}
SECURITY_SCHEME = "xtcOAuth2"

STATE_OF_PHASE = {None: "NEW", "Pending": "STARTING", "Running": "RUNNING", "Succeeded": "FINISHED", "Failed": "FAILED"}
RESULT_OF = {"Passed": "PASSED", "Failed": "FAILED", "Aborted": "ABORTED"}

State = Literal["NEW", "STARTING", "RUNNING", "FINISHED", "FAILED"]
Result = Literal["PASSED", "FAILED", "ABORTED"]


# --- wire models ------------------------------------------------------------------------------


class XtcModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class XtcError(XtcModel):
    """Every error under /public/api."""

    timestamp: str = Field(description="When the error happened, ISO 8601 UTC.")
    status: int = Field(description="The HTTP status code.")
    error: str = Field(description="The HTTP reason phrase, e.g. `Not Found`.")
    code: str = Field(description="Machine-readable, e.g. `not_found`, `insufficient_scope`, `invalid_token`.")
    message: str = Field(description="What went wrong, for people.")
    path: str = Field(description="The request path.")


class LoadTestLinks(XtcModel):
    details: str
    status: str
    run_copy: str = Field(description="POST here to copy the load test and run the copy.")


class LoadTestSummary(XtcModel):
    """A load test in the project's list."""

    number: int = Field(description="The load test's number, unique in the project and never reused.")
    name: str = Field(description="The LoadTest resource's name.")
    description: str
    state: State = Field(
        description="NEW (not started), STARTING (runner pods scheduled), RUNNING, "
        "FINISHED (ran to the end, whatever the result), FAILED (could not run to "
        "the end)."
    )
    result: Optional[Result] = Field(
        description="The verdict of a finished run: PASSED, FAILED (failed requests "
        "or criteria) or ABORTED; null until the run ends."
    )
    created_at: Optional[str] = Field(description="ISO 8601 UTC.")
    started_at: Optional[str]
    finished_at: Optional[str]
    copied_from: Optional[int] = Field(description="The number of the load test this one was copied from.")
    links: LoadTestLinks


class LoadTestList(XtcModel):
    load_tests: list[LoadTestSummary] = Field(description="Every load test of the project, by number.")
    total: int


class ShardProgress(XtcModel):
    total: int = 0
    active: int = 0
    succeeded: int = 0
    failed: int = 0


class LoadProfileSummary(XtcModel):
    """How much load, as the LoadTest's spec.load says."""

    model: Literal["closed", "open"] = Field(
        description="closed: a fixed number of virtual users; open: iterations started at a fixed arrival rate."
    )
    users: Optional[int] = Field(description="Virtual users (closed model).")
    arrival_rate: Optional[float] = Field(description="Iterations started per second (open model).")
    max_users: Optional[int]
    iterations: Optional[int] = Field(description="Iterations per virtual user, if the run is bounded by them.")
    duration: Optional[str] = Field(description="How long the load is held after ramp-up, e.g. `5m`.")
    ramp_up: str
    ramp_down: str
    stages: int = Field(description="Number of ramp stages.")


class FlowSummary(XtcModel):
    name: str
    weight: int
    requests: int


class RunSummary(XtcModel):
    """Totals of the run over all shards; latencies in milliseconds."""

    requests: int = 0
    failures: int = 0
    error_rate: Optional[float] = Field(None, description="Percent of requests that failed.")
    rps: Optional[float] = None
    min_ms: Optional[float] = None
    avg_ms: Optional[float] = None
    max_ms: Optional[float] = None
    p50_ms: Optional[float] = None
    p90_ms: Optional[float] = None
    p95_ms: Optional[float] = None
    p99_ms: Optional[float] = None


class ArchiveLink(XtcModel):
    number: int = Field(description="Numbered per load test, from 1.")
    created_at: Optional[str]
    size: Optional[int] = Field(description="Bytes.")
    sha256: Optional[str]
    download_url: str


class LoadTestDetails(LoadTestSummary):
    run_id: Optional[str]
    message: Optional[str] = Field(description="Why the run failed, or what the last step was.")
    shards: ShardProgress
    load: LoadProfileSummary
    flows: list[FlowSummary]
    criteria: list[str]
    failed_criteria: list[str]
    summary: Optional[RunSummary] = Field(description="null until the first shard reports.")
    results: list[ArchiveLink] = Field(description="Result archives: the raw per-shard metrics and a manifest.")
    reports: list[ArchiveLink] = Field(description="Report archives: index.html, report.json and CSV tables.")


class LoadTestStatus(XtcModel):
    number: int
    state: State
    result: Optional[Result]
    message: Optional[str]
    started_at: Optional[str]
    finished_at: Optional[str]
    elapsed_seconds: Optional[float] = Field(description="Since the start; until the end once finished.")
    shards: ShardProgress
    requests: int = Field(description="Requests sent so far (from the shards that have reported).")
    failures: int
    latest_result_number: Optional[int] = Field(description="The newest result archive, once there is one.")
    latest_report_number: Optional[int] = Field(description="The newest report archive, once there is one.")


class RunCopyResponse(XtcModel):
    number: int = Field(description="The new load test's number.")
    name: str
    copied_from: int
    state: State
    links: LoadTestLinks


# --- mapping LoadTests onto the wire models -------------------------------------------------------


def xtc_state(status: dict) -> str:
    return STATE_OF_PHASE.get(status.get("phase"), "NEW")


def xtc_result(status: dict) -> Optional[str]:
    return RESULT_OF.get(status.get("result"))


class Links:
    """Absolute URLs of a project's load tests, from the gateway's public URL."""

    def __init__(self, public_url: str, org: str, project: str):
        self.base = f"{public_url.rstrip('/')}{PREFIX}/v1/orgs/{org}/projects/{project}/loadTests"

    def load_test(self, number: int) -> LoadTestLinks:
        return LoadTestLinks(
            details=f"{self.base}/{number}",
            status=f"{self.base}/{number}/status",
            run_copy=f"{self.base}/{number}/runCopy",
        )

    def archive(self, number: int, kind: str, archive_number: int) -> str:
        return f"{self.base}/{number}/{kind}s/{archive_number}/download"


def summary_of(item: NumberedLoadTest, links: Links) -> LoadTestSummary:
    status = item.status
    return LoadTestSummary(
        number=item.number,
        name=item.name,
        description=item.spec.get("description") or "",
        state=xtc_state(status),
        result=xtc_result(status),
        created_at=iso(item.meta.get("creationTimestamp")),
        started_at=iso(status.get("startTime")),
        finished_at=iso(status.get("completionTime")),
        copied_from=item.copied_from,
        links=links.load_test(item.number),
    )


def load_profile_of(spec: dict) -> LoadProfileSummary:
    load = spec.get("load") or {"iterations": 1}
    model = load.get("model", "closed")
    return LoadProfileSummary(
        model=model,
        users=load.get("users", 1) if model == "closed" else None,
        arrival_rate=load.get("arrivalRate"),
        max_users=load.get("maxUsers"),
        iterations=load.get("iterations"),
        duration=load.get("duration"),
        ramp_up=load.get("rampUp", "0s"),
        ramp_down=load.get("rampDown", "0s"),
        stages=len(load.get("stages") or []),
    )


def shards_of(item: NumberedLoadTest) -> ShardProgress:
    shards = item.status.get("shards") or {}
    return ShardProgress(
        total=shards.get("total", item.spec.get("shards", 1)),
        active=shards.get("active", 0),
        succeeded=shards.get("succeeded", 0),
        failed=shards.get("failed", 0),
    )


def archive_links(item: NumberedLoadTest, archives: list[Archive], kind: str, links: Links) -> list[ArchiveLink]:
    return [
        ArchiveLink(
            number=a.number,
            created_at=a.created_at,
            size=a.size,
            sha256=a.sha256,
            download_url=links.archive(item.number, kind, a.number),
        )
        for a in archives
        if a.kind == kind
    ]


def details_of(
    item: NumberedLoadTest, archives: list[Archive], record_summary: Optional[dict], links: Links
) -> LoadTestDetails:
    status, spec = item.status, item.spec
    figures = run_figures(status.get("summary"), record_summary)
    return LoadTestDetails(
        **summary_of(item, links).model_dump(),
        run_id=status.get("runId"),
        message=status.get("message"),
        shards=shards_of(item),
        load=load_profile_of(spec),
        flows=[
            FlowSummary(name=f.get("name", ""), weight=f.get("weight", 1), requests=len(f.get("requests") or []))
            for f in spec.get("flows") or []
        ],
        criteria=list(spec.get("criteria") or []),
        failed_criteria=list(status.get("failedCriteria") or []),
        summary=RunSummary(**figures) if figures else None,
        results=archive_links(item, archives, "result", links),
        reports=archive_links(item, archives, "report", links),
    )


def status_of(item: NumberedLoadTest, archives: list[Archive]) -> LoadTestStatus:
    status = item.status
    summary = status.get("summary") or {}

    def latest(kind: str) -> Optional[int]:
        numbers = [a.number for a in archives if a.kind == kind]
        return max(numbers) if numbers else None

    return LoadTestStatus(
        number=item.number,
        state=xtc_state(status),
        result=xtc_result(status),
        message=status.get("message"),
        started_at=iso(status.get("startTime")),
        finished_at=iso(status.get("completionTime")),
        elapsed_seconds=elapsed_seconds(status),
        shards=shards_of(item),
        requests=int(summary.get("requests") or 0),
        failures=int(summary.get("failures") or 0),
        latest_result_number=latest("result"),
        latest_report_number=latest("report"),
    )


# --- errors -----------------------------------------------------------------------------------------


def render_error(request: Request, status: int, code: str, message: str) -> JSONResponse:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    body = XtcError(
        timestamp=dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        status=status,
        error=phrase,
        code=code,
        message=message,
        path=request.url.path,
    )
    return JSONResponse(body.model_dump(by_alias=True), status_code=status)


# --- the router ---------------------------------------------------------------------------------------


def security_schemes(public_url: str) -> dict:
    return {
        SECURITY_SCHEME: {
            "type": "oauth2",
            "description": "XTC client credentials; the token is a JWT sent as `Authorization: Bearer <token>`.",
            "flows": {"clientCredentials": {"tokenUrl": f"{public_url}/oauth/token", "scopes": dict(SCOPES)}},
        },
        "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
    }


FAMILY = openapi.ApiFamily(
    name="xtc",
    title="Assay XTC API",
    security_schemes=security_schemes,
    description="Xceptance XTC's load-test API, served by Assay. Get a token with the client-credentials grant at "
    "/oauth/token, then send `Authorization: Bearer <token>`. Errors under /public/api have the "
    "XtcError shape.",
    error_name="XtcError",
    error_schema=XtcError.model_json_schema(ref_template="#/components/schemas/{model}"),
    errors={
        400: "Invalid path or query parameters.",
        401: "Missing, malformed, expired or revoked access token.",
        403: "The token lacks the scope this endpoint needs.",
        404: "No such project (or not reachable with this token), load test or archive.",
    },
)

Org = Annotated[
    str,
    Path(
        min_length=1,
        max_length=63,
        pattern=ORG_PATTERN,
        description="The organization's short name (the value of the namespaces' org label).",
    ),
]
Project = Annotated[
    str,
    Path(min_length=1, max_length=63, pattern=PROJECT_PATTERN, description="The project's short name (its namespace)."),
]
LoadTestNumber = Annotated[
    int, Path(alias="loadTestNumber", ge=1, le=MAX_NUMBER, description="The load test's number in the project.")
]
ReportNumber = Annotated[
    int, Path(alias="reportNumber", ge=1, le=MAX_NUMBER, description="The report archive's number.")
]
ResultNumber = Annotated[
    int, Path(alias="resultNumber", ge=1, le=MAX_NUMBER, description="The result archive's number.")
]


def build_router(services) -> APIRouter:
    loadtests = LoadTestService(services.kube, services.store)
    public_url = services.settings.public_url
    tenancy = services.auth.tenancy
    router = APIRouter(prefix=BASE, tags=["load tests"])

    def namespace_of(principal: Principal, org: str, project: str) -> str:
        return tenancy.project_namespace(principal, org, project)

    @router.get(
        "", response_model=LoadTestList, operation_id="listLoadTests", summary="List all load tests in a project"
    )
    def list_load_tests(
        org: Org, project: Project, principal: Principal = Depends(require_bearer("LOADTEST_LIST"))
    ) -> LoadTestList:
        namespace = namespace_of(principal, org, project)
        links = Links(public_url, org, project)
        items = [summary_of(item, links) for item in loadtests.list(namespace)]
        return LoadTestList(load_tests=items, total=len(items))

    @router.get(
        "/{loadTestNumber}",
        response_model=LoadTestDetails,
        operation_id="getLoadTest",
        summary="The details of a load test",
    )
    def load_test_details(
        org: Org,
        project: Project,
        load_test_number: LoadTestNumber,
        principal: Principal = Depends(require_bearer("LOADTEST_DETAILS")),
    ) -> LoadTestDetails:
        namespace = namespace_of(principal, org, project)
        item = loadtests.get(namespace, load_test_number)
        record = loadtests.run_record(item)
        return details_of(
            item, loadtests.archives(namespace, item), getattr(record, "summary", None), Links(public_url, org, project)
        )

    @router.get(
        "/{loadTestNumber}/status",
        response_model=LoadTestStatus,
        operation_id="getLoadTestStatus",
        summary="The status of a load test",
    )
    def load_test_status(
        org: Org,
        project: Project,
        load_test_number: LoadTestNumber,
        principal: Principal = Depends(require_bearer("LOADTEST_STATUS")),
    ) -> LoadTestStatus:
        namespace = namespace_of(principal, org, project)
        item = loadtests.get(namespace, load_test_number)
        return status_of(item, loadtests.archives(namespace, item))

    @router.post(
        "/{loadTestNumber}/runCopy",
        response_model=RunCopyResponse,
        status_code=201,
        operation_id="runCopyOfLoadTest",
        summary="Copy the load test and run the copy",
        description="Creates a new LoadTest with the same spec under the project's next number, named "
        "`<original name>-<number>`; the operator starts it at once. The response's "
        "`Location` header is the new load test's details URL.",
    )
    def run_copy(
        response: Response,
        org: Org,
        project: Project,
        load_test_number: LoadTestNumber,
        principal: Principal = Depends(require_bearer("LOADTEST_COPY_RUN")),
    ) -> RunCopyResponse:
        namespace = namespace_of(principal, org, project)
        source, copy = loadtests.run_copy(namespace, load_test_number)
        links = Links(public_url, org, project).load_test(copy.number)
        response.headers["Location"] = links.details
        return RunCopyResponse(
            number=copy.number, name=copy.name, copied_from=source.number, state=xtc_state(copy.status), links=links
        )

    def download(
        kind: str, org: str, project: str, number: int, archive_number: int, principal: Principal
    ) -> FileResponse:
        namespace = namespace_of(principal, org, project)
        item = loadtests.get(namespace, number)
        record = loadtests.archive(namespace, item, kind, archive_number)
        filename = f"{project}-loadtest-{number}-{kind}-{archive_number}.zip"
        return FileResponse(record.path, media_type="application/zip", filename=filename)

    zip_response = {
        200: {
            "description": "The archive (a zip file).",
            "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
        }
    }

    @router.get(
        "/{loadTestNumber}/reports/{reportNumber}/download",
        response_class=FileResponse,
        operation_id="downloadReportArchive",
        summary="Download a report archive",
        responses=zip_response,
    )
    def download_report(
        org: Org,
        project: Project,
        load_test_number: LoadTestNumber,
        report_number: ReportNumber,
        principal: Principal = Depends(require_bearer("LOADTEST_REPORT_DOWNLOAD")),
    ):
        return download("report", org, project, load_test_number, report_number, principal)

    @router.get(
        "/{loadTestNumber}/results/{resultNumber}/download",
        response_class=FileResponse,
        operation_id="downloadResultArchive",
        summary="Download a result archive",
        responses=zip_response,
    )
    def download_result(
        org: Org,
        project: Project,
        load_test_number: LoadTestNumber,
        result_number: ResultNumber,
        principal: Principal = Depends(require_bearer("LOADTEST_RESULT_DOWNLOAD")),
    ):
        return download("result", org, project, load_test_number, result_number, principal)

    return router


def install(app: FastAPI, services) -> None:
    router = build_router(services)
    app.include_router(router)
    app.state.error_shapes.register(PREFIX, render_error)
    openapi.publish(app, FAMILY, router.routes)

    # Where XTC clients look for it; the same document as /openapi/xtc.json.
    @app.get(PREFIX + "/json", include_in_schema=False)
    def openapi_json() -> JSONResponse:
        return JSONResponse(openapi.document(app, FAMILY.name))

    @app.get(PREFIX + "/yaml", include_in_schema=False)
    def openapi_yaml() -> Response:
        return Response(
            yaml.safe_dump(openapi.document(app, FAMILY.name), sort_keys=False, allow_unicode=True),
            media_type="application/yaml",
        )
