"""VNG session types as TestSuites, and a consumer session's recorded calls checked against
its scenario. Pure functions: no Kubernetes, no store.

A session type is a TestSuite labelled `assay.dev/vng-session-type=true` with the annotation
`assay.dev/vng-services`, a JSON object naming each API the session exposes and the base URL
calls to it are forwarded to:

    metadata:
      labels: {assay.dev/vng-session-type: "true"}
      annotations:
        assay.dev/vng-services: '{"quotes": "https://demo.example/api/v2"}'
        assay.dev/vng-name: "Demo API test"        # optional; the suite's name otherwise

Its scenario cases are the requests of its flows. A request URL that starts with
`{{<service>}}` (or with the service's base URL) belongs to that service; the rest of the URL
is the path the case expects, where `{{variable}}` and VNG's `{param}` match one path segment:
`{{quotes}}/quotes/{{id}}` is the case `GET /quotes/{id}` of `quotes`. The same suite runs
unchanged as an ordinary suite (the service names are parameters).

A case passes when it was called and every matching call passed: no transport error, a status
below 400 (unless the case asserts on the status itself), and the request's assertions hold
on the recorded response. In a sandbox session only the latest matching call counts, as in
VNG ("the result of the call is overridden every time").
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any, Optional
from urllib.parse import urlsplit

from pydantic import ValidationError

from assay.crds import Assertion
from assay.crds.testsuite import TestSuiteSpec
from assay.runner.apitest.assertions import evaluate
from assay.runner.apitest.http import Exchange

SESSION_TYPE_LABEL = "assay.dev/vng-session-type"
SERVICES_ANNOTATION = "assay.dev/vng-services"
NAME_ANNOTATION = "assay.dev/vng-name"

SUCCESS, FAILED = "success", "failed"
NO_CASES = "No scenario cases available"

_SERVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_LEADING_VARIABLE = re.compile(r"^\{\{\s*([A-Za-z_][\w.\-]*)\s*\}\}(.*)$", re.S)
_PLACEHOLDER = re.compile(r"\{\{[^}]*\}\}|\{[^{}/]+\}")


class SessionTypeError(ValueError):
    """A TestSuite marked as a session type that cannot be one; the message says why."""


def session_type_name(suite: dict) -> str:
    meta = suite["metadata"]
    return ((meta.get("annotations") or {}).get(NAME_ANNOTATION) or meta["name"]).strip()


def session_type_services(suite: dict) -> dict[str, str]:
    """{service name: target base URL} from the suite's annotation."""
    raw = ((suite["metadata"].get("annotations") or {}).get(SERVICES_ANNOTATION) or "").strip()
    if not raw:
        raise SessionTypeError(
            f"annotation {SERVICES_ANNOTATION} is missing: a JSON object of service name -> target base URL"
        )
    try:
        services = json.loads(raw)
    except ValueError as exc:
        raise SessionTypeError(f"annotation {SERVICES_ANNOTATION} is not JSON: {exc}") from None
    if not isinstance(services, dict) or not services:
        raise SessionTypeError(f"annotation {SERVICES_ANNOTATION} must be a non-empty JSON object")
    out = {}
    for name, url in services.items():
        if not _SERVICE_NAME.fullmatch(name):
            raise SessionTypeError(
                f"{SERVICES_ANNOTATION}: service name {name!r} must be 1-63 letters, digits, '.', '_' or '-'"
            )
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise SessionTypeError(f"{SERVICES_ANNOTATION}: service {name!r} needs an http(s) base URL")
        out[name] = url.rstrip("/")
    return out


def split_case_url(url: str, services: dict[str, str]) -> tuple[Optional[str], str]:
    """(service, path template without the query) of a request URL of the scenario."""
    service, path = None, url
    leading = _LEADING_VARIABLE.match(url)
    if leading and leading.group(1) in services:
        service, path = leading.group(1), leading.group(2)
    else:
        for name, base in services.items():
            if url == base or url.startswith(base + "/") or url.startswith(base + "?"):
                service, path = name, url[len(base) :]
                break
        else:
            parts = urlsplit(url)
            if parts.scheme and parts.netloc:
                path = parts.path
            elif len(services) == 1:
                service = next(iter(services))
    return service, "/" + path.split("?", 1)[0].split("#", 1)[0].strip("/")


def display_path(template: str) -> str:
    """`/quotes/{{id}}` as VNG shows a case URL: `/quotes/{id}`."""
    return _PLACEHOLDER.sub(lambda m: "{" + m.group(0).strip("{} ") + "}", template)


def path_pattern(template: str) -> str:
    """A regular expression for the paths a case template matches, both without the slashes
    at either end; each placeholder matches one non-empty path segment (or part of one)."""
    parts, last = [], 0
    body = template.strip("/")
    for match in _PLACEHOLDER.finditer(body):
        parts.append(re.escape(body[last : match.start()]))
        parts.append("[^/]+")
        last = match.end()
    parts.append(re.escape(body[last:]))
    return "".join(parts)


def scenario_cases(spec: dict, services: dict[str, str]) -> list[dict]:
    """The scenario cases of a session type's TestSuite spec, in flow and request order."""
    try:
        suite = TestSuiteSpec.model_validate(spec)
    except ValidationError as exc:
        raise SessionTypeError(f"the test suite is not valid: {exc.errors()[0].get('msg')}") from None
    cases = []
    for flow in suite.flows:
        for request in flow.requests:
            service, template = split_case_url(str(request.url), services)
            cases.append(
                {
                    "url": display_path(template),
                    "http_method": request.method,
                    "vng_endpoint": service,
                    "pattern": path_pattern(template),
                    "flow": flow.name,
                    "name": request.name or f"{request.method} {display_path(template)}",
                    "assertions": [
                        a.model_dump(mode="json", by_alias=True, exclude_none=True) for a in request.assertions
                    ],
                }
            )
    return cases


def case_view(case: dict) -> dict:
    """A case in VNG's ScenarioCase shape."""
    return {"url": case["url"], "http_method": case["http_method"], "vng_endpoint": case["vng_endpoint"]}


def case_matches(case: dict, call: dict) -> bool:
    if case["http_method"].upper() != str(call.get("method", "")).upper():
        return False
    if case["vng_endpoint"] is not None and case["vng_endpoint"] != call.get("service"):
        return False
    return re.fullmatch(case["pattern"], str(call.get("path", "")).strip("/")) is not None


def exchange_of(call: dict) -> Exchange:
    """A recorded call as the runner's Exchange, so the runner's assertions read it."""
    return Exchange(
        call.get("method", ""),
        call.get("url", ""),
        request_headers=[tuple(h) for h in call.get("requestHeaders") or []],
        request_body=body_bytes(call, "request"),
        status=call.get("status"),
        reason=call.get("reason") or "",
        response_headers=[tuple(h) for h in call.get("responseHeaders") or []],
        body=body_bytes(call, "response"),
        response_time_ms=float(call.get("responseTimeMs") or 0.0),
        error=call.get("error"),
    )


def body_bytes(call: dict, which: str) -> bytes:
    body = call.get(f"{which}Body") or ""
    if call.get(f"{which}BodyEncoding") == "base64":
        return base64.b64decode(body)
    return body.encode()


def check_call(case: dict, call: dict, variables: dict[str, str]) -> tuple[list[dict], list[str]]:
    """(assertion results, reasons the call fails the case) for one matching call."""
    reasons = []
    if call.get("error"):
        return [], [f"the call got no answer: {call['error']}"]
    asserts_status = any(a.get("source") == "response_status" for a in case["assertions"])
    status = call.get("status") or 0
    if not asserts_status and status >= 400:
        reasons.append(f"HTTP {status}")
    exchange = exchange_of(call)
    results = []
    for index, raw in enumerate(case["assertions"]):
        outcome = evaluate(Assertion.model_validate(raw), exchange, variables, field=f"assertions[{index}]")
        results.append(outcome.to_runscope())
        if outcome.result != "pass":
            reasons.append(outcome.error or f"assertion {index + 1} failed")
    if call.get("responseTruncated") and any(not r.get("result") == "pass" for r in results):
        reasons.append("the recorded response was cut at the record limit")
    return results, reasons


def case_report(case: dict, calls: list[dict], variables: dict[str, str], *, sandbox: bool = False) -> dict:
    matching = [call for call in calls if case_matches(case, call)]
    if sandbox:
        matching = matching[-1:]
    entry: dict[str, Any] = {
        "scenario_case": case_view(case),
        "result": None,
        "calls": len(matching),
        "assertions": [],
        "reasons": [],
    }
    if not matching:
        entry["reasons"] = ["not called"]
        return entry
    for call in matching:
        results, reasons = check_call(case, call, variables)
        entry["assertions"] = results  # the latest matching call's
        entry["reasons"] += [f"call {call.get('n')}: {r}" for r in reasons]
    entry["result"] = FAILED if entry["reasons"] else SUCCESS
    return entry


def session_result(cases: list[dict], calls: list[dict], variables: dict[str, str], *, sandbox: bool = False) -> dict:
    """{"result": success | failed | "No scenario cases available", "report": [...]}."""
    if not cases:
        return {"result": NO_CASES, "report": []}
    report = [case_report(case, calls, variables, sandbox=sandbox) for case in cases]
    overall = SUCCESS if all(entry["result"] == SUCCESS for entry in report) else FAILED
    return {"result": overall, "report": report}
