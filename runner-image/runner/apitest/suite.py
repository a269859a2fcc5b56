"""Running a TestSuite as Loadmill runs a test suite: one suite run made of flow runs.

A run takes the suite's flows in order — those with the CI toggle on, or all of them with
`force_all_flows` (Loadmill's `forceAllFlows`), narrowed to the flows carrying one of the
run's `labels` if it names any (`TestSuiteSpec.ci_flows`) — and runs each flow's requests in
order. A run naming a `pool` runs a flow over its parameter pool only if the pool has that
name (`SuiteFlow.pool_for_run`).
The result has Loadmill's shapes (seeds/002, "Get Test Suite Run" and "Get Test Suite Flow
Run"): `SuiteRunResult.to_loadmill()` and `FlowRunResult.to_loadmill()`.

Parameters, lowest to highest precedence, as Loadmill's "Parameter Execution Order" documents:

1. the suite's `parameters`, then its `secretParameters` (left out of the reported flow conf),
2. the flow's `parameters`,
3. the run's `override_parameters` (Loadmill's `overrideParameters`),
4. the flow run's parameter-pool row,
5. values extracted from earlier responses of the same flow run.

Extractions are flow-scoped: every flow run starts again from 1–4. All parameters are text;
an extracted number, boolean or JSON document becomes its JSON text (`extract.as_text`), a
missing header or a JSON null the empty string.

Decisions worth knowing:

- A flow with a parameter pool runs once per CSV row, and each row is its own flow run in
  `testSuiteFlowRuns` (description suffixed `(row 2/5)`, id derived from the row), so CI
  output and JUnit show which row failed. `progress` and `successRate` count flow runs.
  Only inline CSV is accepted: the operator resolves a `configMapRef` into `csv` before the
  run, and an unresolved one is refused with `SuiteInputError` before any request is sent.
- A request fails when it gets no response, when a template or an extraction fails, when an
  assertion fails, or — if it has no assertion on `response_status` — when the status is
  400 or more. With `stop_on_failure` the flow's remaining requests are reported `SKIPPED`.
- With `conf.use_cookies` each flow run has its own cookie jar, shared by its requests;
  without it no cookie is kept. Redirects are not followed, so a 3xx can be asserted on.
- The suite's `avgResTime` is the mean flow-run duration: in Loadmill's own example the
  suite's `avgResTime` ("422 ms") is its one flow's `duration`, not the flow's `avgResTime`
  (199). A flow run's `avgResTime` is the mean response time of its requests, in ms.
- A run with no flow selected (every CI toggle off) is refused with `SuiteInputError`
  rather than reported as a green run of nothing.
- `{{name}}` is rendered by `templating.render`, which renders an unknown parameter as ""
  (Loadmill would leave `${name}` as is); a request without `timeout` gets the client's
  default (`http.DEFAULT_TIMEOUT_S`). A TestSuite has no base URL: URLs must be absolute
  after templating, typically `{{baseUrl}}/path`.
- Ids: the suite run's id is `run_id` (a uuid4 without it); a flow run's is a UUID (version
  4 layout) hashed from `run_id`, the flow's position in `spec.flows` and the pool row, so
  re-uploading a run names the same flow runs.
- Durations print as whole milliseconds ("422 ms"); timestamps are epoch milliseconds.
- Extension: `FlowRunResult.to_loadmill()` adds `requests`, one entry per request of the
  flow (method, url, status, statusCode, resTime, assertions, error); Loadmill's keys are
  unchanged, so Loadmill clients ignore it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import time
import uuid
from dataclasses import dataclass, field
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any, Callable, Literal, Mapping, Optional

import httpx

from assay.crds.common import HttpRequest, ParameterPool, parse_duration
from assay.crds.testsuite import SuiteFlow, TestSuite

from .assertions import evaluate
from .extract import ExtractionError, as_text, extract
from .http import make_client, send
from ..templating import TemplateError, render

MAX_REPORTED_VALUE = 1000
"""Characters of an assertion's actual or target value kept in the report."""

LOADMILL_ASSERT_OPERATORS = {
    "equal": "equals",
    "not_equal": "notEquals",
    "contains": "contains",
    "does_not_contain": "notContains",
    "is_greater_than": "greater",
    "is_less_than": "lesser",
}
"""Assay comparisons Loadmill's reporters can name; any other is reported as a bare check."""

RunStatus = Literal["PASSED", "FAILED", "RUNNING"]
RequestStatus = Literal["PASSED", "FAILED", "SKIPPED"]
ProgressCallback = Callable[[dict[str, Any]], None]


class SuiteInputError(ValueError):
    """The suite cannot run as given (no flow selected, an unusable parameter pool). Raised
    before any request is sent; the message names the flow and the field."""


# --- results ----------------------------------------------------------------------------------


@dataclass
class RequestResult:
    """One request of a flow run, as sent (URL after templating) and as judged."""

    name: str
    method: str
    url: str
    status: RequestStatus
    status_code: Optional[int] = None
    response_time_ms: Optional[float] = None
    assertions: list[dict[str, Any]] = field(default_factory=list)
    error: Optional[str] = None

    def to_loadmill(self) -> dict[str, Any]:
        return {
            "description": self.name,
            "method": self.method,
            "url": self.url,
            "status": self.status,
            "statusCode": self.status_code,
            "resTime": None if self.response_time_ms is None else round(self.response_time_ms),
            "assertions": self.assertions,
            "error": self.error,
        }

    @classmethod
    def from_loadmill(cls, data: Mapping[str, Any]) -> "RequestResult":
        """The request back from its `to_loadmill()` form (a stored suite run)."""
        return cls(
            name=str(data.get("description") or ""),
            method=str(data.get("method") or ""),
            url=str(data.get("url") or ""),
            status=data.get("status") or "FAILED",
            status_code=data.get("statusCode"),
            response_time_ms=data.get("resTime"),
            assertions=list(data.get("assertions") or []),
            error=data.get("error"),
        )

    def failure_text(self) -> str:
        """The request and why it failed, in one line."""
        return f"{self.method} {self.url}: {self.reasons()}"

    def reasons(self) -> str:
        """Why the request failed: its error and failed assertions."""
        reasons = [self.error] if self.error else []
        reasons += [
            f"assertion {a['source']}{'.' + a['property'] if a['property'] else ''} {a['comparison']}"
            f" {a['targetValue']!r} failed (actual {a['actualValue']!r})" + (f": {a['error']}" if a["error"] else "")
            for a in self.assertions
            if a["result"] != "pass"
        ]
        if not reasons and self.status_code is not None:
            reasons.append(f"status {self.status_code}")
        return "; ".join(reasons or ["failed"])


@dataclass
class FlowRunResult:
    """One run of one flow (one row of its parameter pool, if it has one)."""

    id: str
    description: str
    flow_index: int
    """Position of the flow in the suite's `flows`."""
    flow_id: Optional[str]
    suite_id: Optional[str]
    conf: dict[str, Any]
    num_of_requests: int
    status: RunStatus = "RUNNING"
    start_time: Optional[int] = None
    end_time: Optional[int] = None
    requests: list[RequestResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.status == "PASSED"

    @property
    def duration_ms(self) -> Optional[int]:
        if self.start_time is None or self.end_time is None:
            return None
        return self.end_time - self.start_time

    @property
    def avg_res_time_ms(self) -> int:
        times = [
            r.response_time_ms for r in self.requests if r.status_code is not None and r.response_time_ms is not None
        ]
        return round(sum(times) / len(times)) if times else 0

    def failure_text(self) -> Optional[str]:
        """The first failing request and why, or None for a flow run that did not fail."""
        failed = next((r for r in self.requests if r.status == "FAILED"), None)
        return failed.failure_text() if failed else None

    def to_loadmill(self) -> dict[str, Any]:
        """Loadmill's "Get Test Suite Flow Run" shape, plus `requests` (an Assay extension)."""
        return {
            "id": self.id,
            "description": self.description,
            "conf": self.conf,
            "status": self.status,
            "startTime": self.start_time,
            "testSuiteFlowId": self.flow_id,
            "testSuiteId": self.suite_id,
            "requests": [r.to_loadmill() for r in self.requests],
        }

    def loadmill_result(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """(`result`, `redactableResult`) as Loadmill's clients read a flow run to report its
        failures: `result.resolvedRequests[i]` (description, method, url, `assert` keyed by
        name), `result.failures[i]` (`numFailures`, `histogram` of failed assertion names and
        errors) and `redactableResult[i].postParameters` (the actual values, by check)."""
        resolved, failures, redactable = [], {}, []
        for index, request in enumerate(self.requests):
            asserts, actual, histogram = {}, [], {}
            for number, assertion in enumerate(request.assertions):
                check = assertion["source"] + (f".{assertion['property']}" if assertion.get("property") else "")
                operator = LOADMILL_ASSERT_OPERATORS.get(assertion["comparison"])
                asserts[str(number)] = {"check": check, **({operator: assertion["targetValue"]} if operator else {})}
                actual.append({check: assertion["actualValue"]})
                if assertion["result"] != "pass":
                    histogram[str(number)] = 1
            if request.status == "FAILED":
                if request.error:
                    histogram[request.error] = 1
                elif not histogram:
                    histogram[request.reasons()] = 1
                failures[str(index)] = {"numFailures": 1, "histogram": histogram}
            resolved.append(
                {"description": request.name, "method": request.method, "url": request.url, "assert": asserts}
            )
            redactable.append({"postParameters": actual})
        return {"resolvedRequests": resolved, "failures": failures}, redactable

    def to_suite_entry(self) -> dict[str, Any]:
        """The flow run as an item of a suite run's `testSuiteFlowRuns`, with `result` and
        `redactableResult` (loadmill_result) and `requests`."""
        duration = self.duration_ms
        result, redactable = self.loadmill_result()
        return {
            "id": self.id,
            "startTime": self.start_time,
            "endTime": self.end_time,
            "conf": self.conf,
            "description": self.description,
            "status": self.status,
            "numOfRequests": self.num_of_requests,
            "avgResTime": self.avg_res_time_ms,
            "duration": None if duration is None else format_ms(duration),
            "result": result,
            "redactableResult": redactable,
            "requests": [r.to_loadmill() for r in self.requests],
        }


@dataclass(frozen=True)
class JUnitCase:
    """One flow run as a JUnit test case; `failure` is None when it passed."""

    classname: str
    name: str
    time: float
    """Seconds."""
    failure: Optional[str] = None
    """One line: the first failing request and why."""
    details: str = ""
    """Every request of the flow run, one per line."""


@dataclass
class SuiteRunResult:
    """A suite run: its flow runs in the order they ran."""

    id: str
    suite_name: str
    suite_id: Optional[str]
    description: str
    display_name: str
    use_cookies: bool
    total_flow_runs: int
    status: RunStatus = "RUNNING"
    start_time: Optional[int] = None
    end_time: Optional[int] = None
    flow_runs: list[FlowRunResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.status == "PASSED"

    @property
    def finished_flow_runs(self) -> list[FlowRunResult]:
        return [f for f in self.flow_runs if f.status != "RUNNING"]

    @property
    def progress(self) -> str:
        return f"{len(self.finished_flow_runs)}/{self.total_flow_runs}"

    @property
    def success_rate(self) -> float:
        """Percent of the finished flow runs that passed."""
        finished = self.finished_flow_runs
        return 100.0 * sum(f.passed for f in finished) / len(finished) if finished else 0.0

    @property
    def avg_res_time_ms(self) -> int:
        """Mean duration of the finished flow runs (see the module docstring)."""
        durations = [f.duration_ms for f in self.finished_flow_runs if f.duration_ms is not None]
        return round(sum(durations) / len(durations)) if durations else 0

    @classmethod
    def from_loadmill(cls, document: Mapping[str, Any], suite_name: str) -> "SuiteRunResult":
        """The suite run back from its `to_loadmill()` document (what the runner uploads), as
        far as reports need it: flow runs with their requests, times and statuses."""
        result = cls(
            id=str(document.get("id") or ""),
            suite_name=suite_name,
            suite_id=document.get("testSuiteId"),
            description=str(document.get("description") or ""),
            display_name=str(document.get("displayName") or ""),
            use_cookies=bool((document.get("conf") or {}).get("useCookies", True)),
            total_flow_runs=len(document.get("testSuiteFlowRuns") or []),
            status=document.get("status") or "RUNNING",
            start_time=document.get("startTime"),
            end_time=document.get("endTime"),
        )
        for index, entry in enumerate(document.get("testSuiteFlowRuns") or []):
            result.flow_runs.append(
                FlowRunResult(
                    id=str(entry.get("id") or ""),
                    description=str(entry.get("description") or ""),
                    flow_index=index,
                    flow_id=(entry.get("conf") or {}).get("id"),
                    suite_id=result.suite_id,
                    conf=entry.get("conf") or {},
                    num_of_requests=int(entry.get("numOfRequests") or 0),
                    status=entry.get("status") or "RUNNING",
                    start_time=entry.get("startTime"),
                    end_time=entry.get("endTime"),
                    requests=[RequestResult.from_loadmill(r) for r in entry.get("requests") or []],
                )
            )
        return result

    def to_loadmill(self) -> dict[str, Any]:
        """Loadmill's "Get Test Suite Run" shape."""
        return {
            "id": self.id,
            "description": self.description,
            "startTime": self.start_time,
            "endTime": self.end_time,
            "conf": {"useCookies": self.use_cookies},
            "status": self.status,
            "displayName": self.display_name,
            "testSuiteId": self.suite_id,
            "testSuiteFlowRuns": [f.to_suite_entry() for f in self.flow_runs],
            "progress": self.progress,
            "successRate": f"{_round_half_up(self.success_rate)}%",
            "avgResTime": format_ms(self.avg_res_time_ms),
        }

    def junit_cases(self) -> list[JUnitCase]:
        """One case per flow run, for the CLI's JUnit report."""
        return [
            JUnitCase(
                classname=self.suite_name,
                name=f.description,
                time=(f.duration_ms or 0) / 1000,
                failure=None if f.passed else (f.failure_text() or f"flow run {f.status}"),
                details="\n".join(
                    f"{r.status} {r.method} {r.url}"
                    + (f" -> {r.status_code}" if r.status_code is not None else "")
                    + (f" ({round(r.response_time_ms)} ms)" if r.response_time_ms is not None else "")
                    + (f": {r.reasons()}" if r.status == "FAILED" else "")
                    for r in f.requests
                ),
            )
            for f in self.flow_runs
        ]


def format_ms(milliseconds: float) -> str:
    """A duration as Loadmill prints it: `422 ms`."""
    return f"{_round_half_up(milliseconds)} ms"


def _round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


# --- planning ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _PlannedFlowRun:
    flow_index: int
    flow: SuiteFlow
    row: Optional[dict[str, str]] = None
    row_number: int = 0
    """1-based row of the parameter pool, 0 without a pool."""
    row_count: int = 0
    pool: Optional[ParameterPool] = None
    """The pool the rows come from (SuiteFlow.pool_for_run)."""


def parse_pool_csv(text: str, *, where: str) -> list[dict[str, str]]:
    """The rows of a CSV parameter pool (header line first) as name → value dicts.

    Blank lines are ignored; a row with a different number of fields than the header, an
    empty or repeated column name, or a pool without rows is an error naming `where`."""
    lines = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    if not lines:
        raise SuiteInputError(f"{where}: the CSV is empty; expected a header line and at least one row")
    header = [name.strip() for name in lines[0]]
    if any(not name for name in header):
        raise SuiteInputError(f"{where}: the CSV header has an empty column name: {lines[0]!r}")
    if len(set(header)) != len(header):
        raise SuiteInputError(f"{where}: the CSV header repeats a column name: {lines[0]!r}")
    if len(lines) == 1:
        raise SuiteInputError(f"{where}: the CSV has a header line but no rows")
    rows = []
    for number, values in enumerate(lines[1:], start=2):
        if len(values) != len(header):
            raise SuiteInputError(f"{where}: CSV line {number} has {len(values)} fields, the header has {len(header)}")
        rows.append(dict(zip(header, values)))
    return rows


def _pool_rows(pool: ParameterPool, where: str) -> list[dict[str, str]]:
    if pool.csv is None:
        raise SuiteInputError(
            f"{where}: parameter pool {pool.name!r} refers to ConfigMap "
            f"{pool.config_map_ref.name if pool.config_map_ref else '?'!r}; the runner accepts "
            "inline CSV only (the operator resolves configMapRef into csv before the run)"
        )
    return parse_pool_csv(pool.csv, where=f"{where} parameter pool {pool.name!r}")


def _plan(
    suite: TestSuite, force_all_flows: bool, labels: Optional[list[str]] = None, pool: Optional[str] = None
) -> list[_PlannedFlowRun]:
    planned = []
    selected = {id(flow) for flow in suite.spec.ci_flows(force_all_flows, labels)}
    for index, flow in enumerate(suite.spec.flows):
        if id(flow) not in selected:
            continue
        flow_pool = flow.pool_for_run(pool)
        if flow_pool is None:
            planned.append(_PlannedFlowRun(index, flow))
            continue
        rows = _pool_rows(flow_pool, f"spec.flows[{index}] ({flow.name!r})")
        planned += [_PlannedFlowRun(index, flow, row, n, len(rows), flow_pool) for n, row in enumerate(rows, start=1)]
    if not planned:
        if labels:
            raise SuiteInputError(f"no flow to run: no flow selected for this run carries a label of {labels}")
        raise SuiteInputError(
            "no flow to run: every flow has the CI toggle (ciEnabled) off; run with forceAllFlows to run them all"
        )
    return planned


def _flow_run_id(run_id: Optional[str], planned: _PlannedFlowRun) -> str:
    if run_id is None:
        return str(uuid.uuid4())
    # Derived, not random, so that uploading the same run again names the same flow runs.
    key = f"{run_id}/flows/{planned.flow_index}" + (f"/rows/{planned.row_number}" if planned.row_number else "")
    return str(uuid.UUID(bytes=hashlib.sha256(key.encode()).digest()[:16], version=4))


def _flow_conf(planned: _PlannedFlowRun, parameters: dict[str, str], use_cookies: bool) -> dict[str, Any]:
    """The executed flow conf: the flow as declared, with the parameters it started with and,
    instead of the whole pool, which row it ran."""
    conf = planned.flow.to_k8s()
    conf.pop("parameterPool", None)
    conf["parameters"] = dict(parameters)
    conf["useCookies"] = use_cookies
    if planned.pool is not None:
        conf["parameterPool"] = {
            "name": planned.pool.name,
            "row": planned.row_number,
            "rows": planned.row_count,
        }
    return conf


# --- running ----------------------------------------------------------------------------------


async def run_suite(
    suite: TestSuite,
    *,
    force_all_flows: bool = False,
    labels: Optional[list[str]] = None,
    pool: Optional[str] = None,
    override_parameters: Optional[Mapping[str, str]] = None,
    additional_description: str = "",
    run_id: Optional[str] = None,
    display_name: str = "Assay",
    on_progress: Optional[ProgressCallback] = None,
    clock: Callable[[], float] = time.time,
) -> SuiteRunResult:
    """Run the suite's flows in order and return the suite run.

    Raises SuiteInputError, before sending anything, when no flow is selected or a parameter
    pool cannot be used. `on_progress` receives `{"event": "flow_started" | "flow_finished",
    ...}` as each flow run starts and ends. `clock` gives epoch seconds."""
    planned = _plan(suite, force_all_flows, labels, pool)
    overrides = {name: str(value) for name, value in (override_parameters or {}).items()}
    spec = suite.spec
    use_cookies = spec.conf.use_cookies
    secrets = {p.name: p.value or "" for p in spec.secret_parameters}
    description = " ".join(p for p in (spec.description or suite.metadata.name or "", additional_description) if p)
    result = SuiteRunResult(
        id=run_id or str(uuid.uuid4()),
        suite_name=suite.metadata.name or spec.description or "TestSuite",
        suite_id=suite.metadata.uid,
        description=description,
        display_name=display_name,
        use_cookies=use_cookies,
        total_flow_runs=len(planned),
        start_time=_epoch_ms(clock),
    )
    for plan in planned:
        flow = plan.flow
        parameters = {**spec.parameters, **secrets, **flow.parameters, **overrides, **(plan.row or {})}
        label = flow.description or flow.name
        if plan.row_number:
            label += f" (row {plan.row_number}/{plan.row_count})"
        flow_run = FlowRunResult(
            id=_flow_run_id(run_id, plan),
            description=label,
            flow_index=plan.flow_index,
            flow_id=flow.id,
            suite_id=result.suite_id,
            conf=_flow_conf(plan, {k: v for k, v in parameters.items() if k not in secrets}, use_cookies),
            num_of_requests=len(flow.requests),
        )
        result.flow_runs.append(flow_run)
        flow_run.start_time = _epoch_ms(clock)
        _notify(on_progress, "flow_started", result, flow_run)
        await _run_flow(plan, parameters, use_cookies, flow_run)
        flow_run.end_time = _epoch_ms(clock)
        flow_run.status = "FAILED" if any(r.status == "FAILED" for r in flow_run.requests) else "PASSED"
        _notify(on_progress, "flow_finished", result, flow_run)
    result.end_time = _epoch_ms(clock)
    result.status = "PASSED" if all(f.passed for f in result.flow_runs) else "FAILED"
    return result


def _epoch_ms(clock: Callable[[], float]) -> int:
    return _round_half_up(clock() * 1000)


def _notify(
    on_progress: Optional[ProgressCallback], event: str, suite_run: SuiteRunResult, flow_run: FlowRunResult
) -> None:
    if on_progress is None:
        return
    message = {
        "event": event,
        "flowRunId": flow_run.id,
        "description": flow_run.description,
        "progress": suite_run.progress,
    }
    if event == "flow_finished":
        message["status"] = flow_run.status
        message["duration"] = format_ms(flow_run.duration_ms or 0)
        failure = flow_run.failure_text()
        if failure:
            message["failure"] = failure
    on_progress(message)


def _cookie_jar(use_cookies: bool) -> CookieJar:
    # An empty allow-list blocks every domain: the client then keeps no cookie at all.
    return CookieJar() if use_cookies else CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


async def _run_flow(
    plan: _PlannedFlowRun, parameters: dict[str, str], use_cookies: bool, flow_run: FlowRunResult
) -> None:
    variables = dict(parameters)  # extractions write here: they last for this flow run only
    stopped = False
    async with make_client(cookies=_cookie_jar(use_cookies)) as client:
        for index, request in enumerate(plan.flow.requests):
            if stopped:
                flow_run.requests.append(
                    RequestResult(name=_request_name(request), method=request.method, url=request.url, status="SKIPPED")
                )
                continue
            where = f"spec.flows[{plan.flow_index}].requests[{index}]"
            outcome = await _run_request(client, request, variables, where)
            flow_run.requests.append(outcome)
            stopped = outcome.status == "FAILED" and plan.flow.stop_on_failure


def _request_name(request: HttpRequest) -> str:
    return request.name or f"{request.method} {request.url}"


async def _run_request(
    client: httpx.AsyncClient, request: HttpRequest, variables: dict[str, str], where: str
) -> RequestResult:
    outcome = RequestResult(name=_request_name(request), method=request.method, url=request.url, status="FAILED")
    try:
        outcome.url = render(request.url, variables, field=f"{where}.url")
        headers = {
            render(name, variables, field=f"{where}.headers"): render(value, variables, field=f"{where}.headers.{name}")
            for name, value in request.headers.items()
        }
        body = None if request.body is None else render(request.body, variables, field=f"{where}.body")
    except TemplateError as exc:
        outcome.error = str(exc)
        return outcome
    if not outcome.url.startswith(("http://", "https://")):
        outcome.error = (
            f"{where}.url: {outcome.url!r} is not an absolute http(s) URL; a TestSuite has no "
            "base URL, so put it in a parameter, e.g. {{baseUrl}}/path"
        )
        return outcome

    timeout = parse_duration(request.timeout) if request.timeout else None  # None: the client's default
    exchange = await send(client, request.method, outcome.url, headers=headers, content=body, timeout=timeout)
    outcome.response_time_ms = exchange.response_time_ms
    if exchange.error:
        outcome.error = str(exchange.error)
        return outcome
    outcome.status_code = exchange.status

    # Extract before asserting: an assertion's value may name a parameter set just now.
    errors = []
    for variable in request.extract:
        try:
            # Parameters are text, as in Loadmill; a missing header or a JSON null is "".
            variables[variable.name] = as_text(extract(variable.source, variable.property, exchange)) or ""
        except ExtractionError as exc:
            errors.append(f"{where}.extract {variable.name!r}: {exc}")
    for number, assertion in enumerate(request.assertions):
        checked = evaluate(assertion, exchange, variables, field=f"{where}.assertions[{number}]")
        outcome.assertions.append(
            {
                "source": assertion.source,
                "property": assertion.property,
                "comparison": assertion.comparison,
                "targetValue": _reportable(checked.target_value),
                "actualValue": _reportable(checked.actual_value),
                "result": checked.result,
                "error": checked.error,
            }
        )
    checks_status = any(a.source == "response_status" for a in request.assertions)
    if exchange.status is not None and exchange.status >= 400 and not checks_status:
        errors.append(f"status {exchange.status}")
    if errors:
        outcome.error = "; ".join(errors)
    failed = errors or any(a["result"] != "pass" for a in outcome.assertions)
    outcome.status = "FAILED" if failed else "PASSED"
    return outcome


def _reportable(value: Any) -> Any:
    """A value the JSON report can hold, long text cut short."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if not isinstance(value, str):
        try:
            value = as_text(value)
        except (TypeError, ValueError):
            value = str(value)
    return value if len(value) <= MAX_REPORTED_VALUE else value[:MAX_REPORTED_VALUE] + "…"
