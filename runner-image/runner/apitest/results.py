"""Results of a Monitor run, shaped as the Runscope results documents.

`RunResult.to_runscope()` is the `data` of *Test Result Detail*, `to_runscope_summary()` an
item of *Test Result List*, `step_detail(uuid)` the `data` of *Test Step Result Detail*.
Field names are the document's, snake_case.

The document names sources and comparisons differently in results than in step
definitions (`json` for `response_json`, `equals_number` for `equal_number`, ...); the
results use the result vocabulary, mapped here and nowhere else (`RESULT_SOURCES`,
`RESULT_COMPARISONS`). `response_text` has no name in the document; it reports as `text`.

Beyond the document's keys the models keep what the report and the operator need (step type,
skip reason, error, whether a condition held, the step detail, the subtest's own result,
retry/webhook settings); `to_runscope()` leaves those out.
"""

from __future__ import annotations

import base64
import time
from typing import Any, Iterator, Literal, Optional
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict, Field

from .http import Exchange

RESULT_SOURCES: dict[str, str] = {
    "response_status": "status_code",
    "response_headers": "response_headers",
    "response_json": "json",
    "response_xml": "xml",
    "response_text": "text",
    "response_time": "response_time_ms",
    "response_size": "response_size_bytes",
}

RESULT_COMPARISONS: dict[str, str] = {
    "equal": "equals",
    "not_equal": "does_not_equal",
    "empty": "is_empty",
    "not_empty": "is_not_empty",
    "contains": "contains",
    "does_not_contain": "does_not_contain",
    "is_a_number": "is_a_number",
    "equal_number": "equals_number",
    "is_less_than": "less_than",
    "is_less_than_or_equal": "less_than_or_equal",
    "is_greater_than": "greater_than",
    "is_greater_than_or_equal": "greater_than_or_equal",
    "has_key": "has_key",
    "has_value": "has_value",
    "is_null": "is_null",
}

Outcome = Literal["pass", "fail"]


class _ResultModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False)


class _CheckResult(_ResultModel):
    """An assertion, variable or script outcome: pass or fail, in the result document's shape."""

    # `passed` and `to_runscope` are looked up on the class: the subclasses have a field named
    # `property`, which hides the builtin decorator in their own bodies.
    @property
    def passed(self) -> bool:
        return self.result == "pass"

    def to_runscope(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class AssertionResult(_CheckResult):
    result: Outcome
    source: str
    property: Optional[str] = None
    comparison: str
    target_value: Any = None
    actual_value: Optional[str] = None
    error: Optional[str] = None
    """Why the assertion failed; None when it passed."""


class VariableResult(_CheckResult):
    result: Outcome
    source: str
    property: Optional[str] = None
    name: str
    value: Optional[str] = None
    error: Optional[str] = None


class ScriptResult(_CheckResult):
    result: Outcome
    output: str = ""
    """The script's log lines, one per line."""
    error: Optional[str] = None


class Timings(_ResultModel):
    dns_lookup_ms: float = 0.0
    dial_ms: float = 0.0
    send_headers_ms: float = 0.0
    send_body_ms: float = 0.0
    wait_for_response_ms: float = 0.0
    receive_response_ms: float = 0.0


# --- step detail (Test Step Result Detail) ----------------------------------------------------


def group_headers(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    """Header pairs as the document shows them: name -> values, names in first-seen case."""
    grouped: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    for name, value in pairs:
        key = names.setdefault(name.lower(), name)
        grouped.setdefault(key, []).append(value)
    return grouped


def encode_body(body: bytes) -> tuple[str, Literal["plaintext", "base64"]]:
    """UTF-8 text without NUL bytes reads as plaintext; anything else is base64, as documented
    for binary content such as images."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(body).decode("ascii"), "base64"
    if "\x00" in text:
        return base64.b64encode(body).decode("ascii"), "base64"
    return text, "plaintext"


class RequestDetail(_ResultModel):
    body: str = ""
    body_encoding: Literal["plaintext", "base64"] = "plaintext"
    headers: dict[str, list[str]] = {}
    host: str = ""
    method: str = ""
    params: dict[str, list[str]] = {}
    path: str = ""
    scheme: str = ""
    timestamp: float = 0.0


class ResponseDetail(_ResultModel):
    body: str = ""
    body_encoding: Literal["plaintext", "base64"] = "plaintext"
    headers: dict[str, list[str]] = {}
    reason: str = ""
    size_bytes: int = 0
    status: int = 0
    timestamp: float = 0.0


class StepDetail(_ResultModel):
    bucket_key: Optional[str] = None
    uuid: str
    request: Optional[RequestDetail] = None
    response: Optional[ResponseDetail] = None
    """None when no response arrived (the step's error says why)."""

    @classmethod
    def from_exchange(cls, uuid: str, exchange: Exchange, bucket_key: Optional[str] = None) -> StepDetail:
        parts = urlsplit(exchange.url)
        body, encoding = encode_body(exchange.request_body)
        request = RequestDetail(
            body=body,
            body_encoding=encoding,
            headers=group_headers(exchange.request_headers),
            host=parts.hostname or "",
            method=exchange.method,
            params=parse_qs(parts.query, keep_blank_values=True),
            path=parts.path or "/",
            scheme=parts.scheme,
            timestamp=exchange.started_at,
        )
        response = None
        if exchange.status is not None:
            body, encoding = encode_body(exchange.body)
            response = ResponseDetail(
                body=body,
                body_encoding=encoding,
                headers=group_headers(exchange.response_headers),
                reason=exchange.reason,
                size_bytes=exchange.size,
                status=exchange.status,
                timestamp=exchange.finished_at,
            )
        return cls(bucket_key=bucket_key, uuid=uuid, request=request, response=response)

    def to_runscope(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# --- one step (an item of requests[]) ----------------------------------------------------------

RUNSCOPE_REQUEST_KEYS = (
    "url",
    "method",
    "uuid",
    "result",
    "variables",
    "assertions",
    "scripts",
    "assertions_defined",
    "assertions_passed",
    "assertions_failed",
    "variables_defined",
    "variables_passed",
    "variables_failed",
    "scripts_defined",
    "scripts_passed",
    "scripts_failed",
    "timings",
)

StepStatus = Literal["pass", "fail", "skipped", "not_run"]


class StepResult(_ResultModel):
    """One step of the run. The Runscope keys are those of an item of `requests[]`; a step that
    sends nothing (pause, condition, skipped) has them null, as in the document."""

    url: Optional[str] = None
    method: Optional[str] = None
    uuid: str
    result: Optional[Outcome] = None
    variables: list[VariableResult] = []
    assertions: list[AssertionResult] = []
    scripts: list[ScriptResult] = []
    assertions_defined: int = 0
    assertions_passed: int = 0
    assertions_failed: int = 0
    variables_defined: int = 0
    variables_passed: int = 0
    variables_failed: int = 0
    scripts_defined: int = 0
    scripts_passed: int = 0
    scripts_failed: int = 0
    timings: Optional[Timings] = None

    # Not in the document: for the report, the operator and the step-detail endpoint.
    step_type: str
    name: str = ""
    """A label for reports: the note, else method and URL, else the step type."""
    path: str = ""
    """Where the step is in the spec, e.g. `steps[2]` or `steps[3].steps[0]`."""
    parent_uuid: Optional[str] = None
    """The condition step this step is nested in."""
    skipped: bool = False
    skip_reason: Optional[str] = None
    error: Optional[str] = None
    """Why the step failed beyond its assertions: transport error, template, auth, subtest."""
    condition_met: Optional[bool] = None
    """Condition steps: whether the comparison held and the nested steps ran."""
    status_code: Optional[int] = None
    response_time_ms: Optional[float] = None
    duration_ms: float = 0.0
    """Wall time of the whole step: scripts, templating, request, assertions."""
    detail: Optional[StepDetail] = Field(default=None, repr=False)
    subtest: Optional["RunResult"] = Field(default=None, repr=False)

    @property
    def status(self) -> StepStatus:
        if self.skipped:
            return "skipped"
        if self.result is None:
            return "not_run" if self.step_type == "condition" and not self.condition_met else "pass"
        return self.result

    @property
    def failed(self) -> bool:
        return self.result == "fail"

    def count(self) -> None:
        """Set the counters from the lists and the result from everything recorded."""
        self.assertions_defined = len(self.assertions)
        self.assertions_passed = sum(a.passed for a in self.assertions)
        self.assertions_failed = self.assertions_defined - self.assertions_passed
        self.variables_defined = len(self.variables)
        self.variables_passed = sum(v.passed for v in self.variables)
        self.variables_failed = self.variables_defined - self.variables_passed
        self.scripts_defined = len(self.scripts)
        self.scripts_passed = sum(s.passed for s in self.scripts)
        self.scripts_failed = self.scripts_defined - self.scripts_passed
        failed = bool(self.error or self.assertions_failed or self.variables_failed or self.scripts_failed)
        self.result = "fail" if failed else "pass"

    def to_runscope(self) -> dict[str, Any]:
        if self.result is None:
            out: dict[str, Any] = dict.fromkeys(RUNSCOPE_REQUEST_KEYS)
            out["uuid"] = self.uuid
            return out
        return {
            "url": self.url,
            "method": self.method,
            "uuid": self.uuid,
            "result": self.result,
            "variables": [v.to_runscope() for v in self.variables],
            "assertions": [a.to_runscope() for a in self.assertions],
            "scripts": [s.to_runscope() for s in self.scripts],
            "assertions_defined": self.assertions_defined,
            "assertions_passed": self.assertions_passed,
            "assertions_failed": self.assertions_failed,
            "variables_defined": self.variables_defined,
            "variables_passed": self.variables_passed,
            "variables_failed": self.variables_failed,
            "scripts_defined": self.scripts_defined,
            "scripts_passed": self.scripts_passed,
            "scripts_failed": self.scripts_failed,
            "timings": self.timings.model_dump() if self.timings is not None else None,
        }


# --- the run (Test Result Detail) ---------------------------------------------------------------


class SubtestDetail(_ResultModel):
    name: Optional[str] = None
    note: Optional[str] = None
    result: Optional[str] = None
    test_uuid: Optional[str] = None
    test_run_uuid: Optional[str] = None
    test_run_url: Optional[str] = None
    started_at: Optional[float] = None
    finished_at: Optional[float] = None


RunOutcome = Literal["pass", "fail", "working"]

_RUN_COUNTERS = (
    "assertions_defined",
    "assertions_passed",
    "assertions_failed",
    "variables_defined",
    "variables_passed",
    "variables_failed",
    "scripts_defined",
    "scripts_passed",
    "scripts_failed",
)


class RunResult(_ResultModel):
    requests: list[StepResult] = []
    assertions_defined: int = 0
    assertions_passed: int = 0
    assertions_failed: int = 0
    bucket_key: Optional[str] = None
    started_at: float = Field(default_factory=time.time)
    variables_defined: int = 0
    variables_passed: int = 0
    variables_failed: int = 0
    finished_at: Optional[float] = None
    requests_executed: int = 0
    agent: Optional[str] = None
    scripts_defined: int = 0
    scripts_passed: int = 0
    scripts_failed: int = 0
    result: RunOutcome = "working"
    test_id: Optional[str] = None
    test_run_id: str
    parent_test_uuid: Optional[str] = None
    source: Optional[str] = None
    region: Optional[str] = None
    test_run_url: Optional[str] = None
    environment_id: Optional[str] = None
    environment_name: Optional[str] = None
    run_by: Optional[str] = None
    subtests_count: int = 0
    subtests_passed: int = 0
    subtests_failed: int = 0
    subtests_others: int = 0
    agent_expired: bool = False
    subtest_detail: SubtestDetail = SubtestDetail()

    # Not in the document: for the operator and the report.
    test_name: Optional[str] = None
    variables: dict[str, str] = {}
    """The variables when the run ended."""
    environment_script: Optional[ScriptResult] = None
    """The environment's initial script, run before the first step."""
    error: Optional[str] = None
    """A failure of the run as a whole (the environment script), not of one step."""
    retry_on_failure: bool = False
    """The environment asks for one more run right after a failed scheduled run; the operator
    schedules it."""
    stop_on_failure: bool = False
    webhooks: list[str] = []
    """URLs the operator posts this result to."""

    @property
    def passed(self) -> bool:
        return self.result == "pass"

    @property
    def duration_s(self) -> float:
        return max(0.0, (self.finished_at or time.time()) - self.started_at)

    def finish(self) -> None:
        """Add the steps' counters up and decide the run's result."""
        for name in _RUN_COUNTERS:
            setattr(self, name, sum(getattr(step, name) for step in self.requests))
        if self.environment_script is not None:
            self.scripts_defined += 1
            self.scripts_passed += self.environment_script.passed
            self.scripts_failed += not self.environment_script.passed
        # Sent, whatever came back; a step that failed before sending (template, auth) was not.
        self.requests_executed = sum(1 for s in self.requests if s.step_type == "request" and s.detail is not None)
        subtests = [s for s in self.requests if s.step_type == "subtest" and s.result is not None]
        self.subtests_count = len(subtests)
        self.subtests_passed = sum(1 for s in subtests if s.subtest is not None and s.subtest.passed)
        self.subtests_failed = sum(1 for s in subtests if s.subtest is not None and not s.subtest.passed)
        self.subtests_others = sum(1 for s in subtests if s.subtest is None)
        failed = self.error is not None or any(s.failed for s in self.requests)
        self.result = "fail" if failed else "pass"
        self.finished_at = time.time()

    def steps(self) -> Iterator[StepResult]:
        return iter(self.requests)

    def step(self, uuid: str) -> Optional[StepResult]:
        return next((s for s in self.requests if s.uuid == uuid), None)

    def step_detail(self, uuid: str) -> Optional[dict[str, Any]]:
        """The `data` of Test Step Result Detail for a request step, None for other steps."""
        step = self.step(uuid)
        if step is None or step.detail is None:
            return None
        return step.detail.to_runscope()

    def step_details(self) -> dict[str, dict[str, Any]]:
        """Every request step's detail by step uuid: what the gateway serves as Test Step
        Result Detail (`monitor-steps.json` beside `monitor-result.json`)."""
        return {step.uuid: step.detail.to_runscope() for step in self.requests if step.detail is not None}

    def _header(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "assertions_defined": self.assertions_defined,
            "assertions_failed": self.assertions_failed,
            "assertions_passed": self.assertions_passed,
            "bucket_key": self.bucket_key,
            "finished_at": self.finished_at,
            "region": self.region,
            "requests_executed": self.requests_executed,
            "result": self.result,
            "scripts_defined": self.scripts_defined,
            "scripts_failed": self.scripts_failed,
            "scripts_passed": self.scripts_passed,
            "started_at": self.started_at,
            "test_run_id": self.test_run_id,
            "parent_test_uuid": self.parent_test_uuid,
            "test_run_url": self.test_run_url,
            "test_id": self.test_id,
            "variables_defined": self.variables_defined,
            "variables_failed": self.variables_failed,
            "variables_passed": self.variables_passed,
            "environment_id": self.environment_id,
            "environment_name": self.environment_name,
            "run_by": self.run_by,
            "subtests_count": self.subtests_count,
            "subtests_passed": self.subtests_passed,
            "subtests_failed": self.subtests_failed,
            "subtests_others": self.subtests_others,
            "agent_expired": self.agent_expired,
            "subtest_detail": self.subtest_detail.model_dump(),
        }

    def to_runscope(self) -> dict[str, Any]:
        """The `data` object of Test Result Detail."""
        return {"requests": [step.to_runscope() for step in self.requests], **self._header(), "source": self.source}

    def to_runscope_summary(self) -> dict[str, Any]:
        """One item of Test Result List."""
        return self._header()


StepResult.model_rebuild()
