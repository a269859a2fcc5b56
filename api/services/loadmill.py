"""Loadmill load tests: a Loadmill test configuration mapped onto a LoadTestSpec, created once
and run once.

The configuration (https://docs.loadmill.com, "Configuration Files") extends HAR: a list of
`requests` plus load settings, times in milliseconds. The mapping, in one place:

    Loadmill configuration                     LoadTestSpec
    description | meta.description            description
    concurrency (default 1)                     load.users (closed model)
    duration (ms)                               load.duration
    rampUp (ms)                                 load.rampUp
    iterations (Assay extension)                load.iterations
    neither duration nor iterations             load.iterations = 1 (one pass per user)
    requests[]                                  flows[0] "loadmill" (requests in order)
      url, method                                 url, method (upper case)
      description                                 name
      headers [{name: value}] | {name: value} | [{"name", "value"}]   headers {name: value}
      postData.text / postData.mimeType           body / Content-Type (unless a header sets it)
      timeout (ms)                                timeout
      extract [{param: {jsonPath: p}}]            extract {param, response_json, p}
      extract [{param: {header: h}}]              extract {param, response_headers, h}
      assert [{check: param, <op>: value}]        an assertion on the source `param` was extracted
                                                  from: equals equal, notEquals not_equal,
                                                  contains, notContains does_not_contain,
                                                  greater/greaterEquals/lesser/lesserEquals
                                                  is_greater_than(_or_equal)/is_less_than(_or_equal);
                                                  no operator: not_empty
      delay (ms)                                  flows[0].thinkTime = the largest delay
    parameters [{name: value}] | {name: value}  parameterPools[0] "parameters": one column per
      a list value [v1, v2, ...]                parameter; list values give the rows (cycled),
                                                  single values repeat on every row
    `${name}` in url, headers, body, values     `{{name}}`

Refused with 400, because running something else than asked would be worse than not running:
Loadmill built-in functions (`${__random_chars}`) and expressions (`${a + 1}`), extraction
types other than jsonPath and header, `matches` and other assertion operators, an assertion
on a parameter the request does not extract, non-empty `parameterPools`, more than 100
requests. Ignored, and listed in the stored record's `ignored`: every other top-level key
(meta, targetedCountries, cachePenetration, iterationDelay, cookies, domains, ...).

A created test is a store record (collection `loadmill-tests`, key the test id); `PUT
/tests/{id}/load` creates the LoadTest `loadmill-<test id>` from it. The name is deterministic,
so running twice — even from two gateways at once — meets the API server's 409 and is refused
as Loadmill documents it: a load test runs once.
"""

from __future__ import annotations

import csv
import io
import re
import time
import uuid
from typing import Any, Optional

from kubernetes.client.rest import ApiException
from pydantic import ValidationError

from assay.crds.loadtest import MAX_REQUESTS, LoadTestSpec

from ..kube import NotFound as KubeNotFound
from . import Conflict, InvalidInput, NotFound
from .loadtests import PLURAL as LOADTEST_PLURAL
from .loadtests import elapsed_seconds, epoch_ms

TESTS = "loadmill-tests"
LABEL_TEST_ID = "assay.dev/loadmill-test-id"
FLOW_NAME = "loadmill"
POOL_NAME = "parameters"

_PARAMETER = re.compile(r"\$\{\s*([A-Za-z_][A-Za-z0-9_.\-]*)\s*\}")
_ANY_EXPRESSION = re.compile(r"\$\{[^}]*\}?")
METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}
ASSERT_OPERATORS = {
    "equals": "equal",
    "notEquals": "not_equal",
    "contains": "contains",
    "notContains": "does_not_contain",
    "greater": "is_greater_than",
    "greaterEquals": "is_greater_than_or_equal",
    "lesser": "is_less_than",
    "lesserEquals": "is_less_than_or_equal",
}
EXTRACTORS = {"jsonPath": "response_json", "header": "response_headers"}
MAPPED_KEYS = {
    "description",
    "meta",
    "concurrency",
    "duration",
    "rampUp",
    "iterations",
    "requests",
    "parameters",
    "parameterPools",
}


def template(text: Any, where: str) -> str:
    """Loadmill's `${name}` as Assay's `{{name}}`; anything Assay cannot evaluate is refused."""
    if not isinstance(text, str):
        raise InvalidInput(f"{where}: expected a string")
    for name in _PARAMETER.findall(text):
        if name.startswith("__"):
            raise InvalidInput(
                f"{where}: Loadmill built-in functions such as ${{{name}}} are not supported; use a parameter instead"
            )
    converted = _PARAMETER.sub(lambda m: "{{" + m.group(1) + "}}", text)
    leftover = _ANY_EXPRESSION.search(converted)
    if leftover:
        raise InvalidInput(f"{where}: {leftover.group(0)!r}: only ${{name}} parameters are supported, not expressions")
    return converted


def milliseconds(value: Any, where: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum or value != value:
        raise InvalidInput(f"{where}: expected a number of milliseconds >= {minimum}")
    if value > 30 * 24 * 3600 * 1000:
        raise InvalidInput(f"{where}: at most 30 days")
    return int(value)


def duration(ms: int) -> str:
    """Milliseconds as an Assay duration: `600s` for 600000, `1500ms` for 1500."""
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def _pairs(value: Any, where: str) -> list[tuple[str, Any]]:
    """[{a: 1}, {b: 2}] or {a: 1, b: 2} or HAR [{"name": a, "value": 1}] as pairs."""
    if value is None:
        return []
    if isinstance(value, dict):
        return list(value.items())
    if isinstance(value, list):
        pairs = []
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                raise InvalidInput(f"{where}[{index}]: expected an object")
            if set(item) == {"name", "value"}:
                pairs.append((item["name"], item["value"]))
            else:
                pairs.extend(item.items())
        return pairs
    raise InvalidInput(f"{where}: expected a list of objects or an object")


def _headers(value: Any, where: str) -> dict[str, str]:
    headers = {}
    for name, text in _pairs(value, where):
        if not isinstance(name, str) or not name.strip():
            raise InvalidInput(f"{where}: header names must be non-empty strings")
        if isinstance(text, (dict, list)) or text is None:
            raise InvalidInput(f"{where}.{name}: expected a string")
        headers[name] = template(str(text), f"{where}.{name}")
    return headers


def _extractions(value: Any, where: str) -> list[dict]:
    out = []
    for name, how in _pairs(value, where):
        if not isinstance(how, dict) or len(how) != 1 or next(iter(how)) not in EXTRACTORS:
            kinds = ", ".join(EXTRACTORS)
            raise InvalidInput(
                f'{where}.{name}: only {kinds} extractions are supported, e.g. {{"{name}": {{"jsonPath": "data.id"}}}}'
            )
        kind, path = next(iter(how.items()))
        if not isinstance(path, str):
            raise InvalidInput(f"{where}.{name}.{kind}: expected a string")
        out.append({"name": name, "source": EXTRACTORS[kind], "property": path})
    return out


def _assertions(value: Any, extracted: list[dict], where: str) -> list[dict]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidInput(f"{where}: expected a list")
    by_name = {e["name"]: e for e in extracted}
    out = []
    for index, item in enumerate(value):
        here = f"{where}[{index}]"
        if not isinstance(item, dict) or not isinstance(item.get("check"), str):
            raise InvalidInput(f'{here}: expected {{"check": <parameter>, ...}}')
        source = by_name.get(item["check"])
        if source is None:
            raise InvalidInput(
                f"{here}.check: {item['check']!r} is not extracted by this request; Assay asserts on "
                "what the same request extracts"
            )
        operators = [k for k in item if k != "check"]
        if len(operators) > 1:
            raise InvalidInput(f"{here}: one operator per assertion, got {', '.join(operators)}")
        assertion = {"source": source["source"], "property": source["property"]}
        if not operators:
            assertion["comparison"] = "not_empty"
        elif operators[0] in ASSERT_OPERATORS:
            assertion["comparison"] = ASSERT_OPERATORS[operators[0]]
            target = item[operators[0]]
            if isinstance(target, bool) or not isinstance(target, (str, int, float)):
                raise InvalidInput(f"{here}.{operators[0]}: expected a string or number")
            assertion["value"] = (
                template(target, f"{here}.{operators[0]}")
                if isinstance(target, str)
                else (target if isinstance(target, int) else str(target))
            )
        else:
            raise InvalidInput(
                f"{here}: operator {operators[0]!r} is not supported; supported: "
                f"{', '.join(ASSERT_OPERATORS)} or none (the value must not be empty)"
            )
        out.append(assertion)
    return out


def _request(item: Any, where: str) -> tuple[dict, int]:
    if not isinstance(item, dict):
        raise InvalidInput(f"{where}: expected an object")
    if not isinstance(item.get("url"), str) or not item["url"].strip():
        raise InvalidInput(f"{where}.url: required")
    method = str(item.get("method") or "GET").upper()
    if method not in METHODS:
        raise InvalidInput(f"{where}.method: {method!r} is not one of {', '.join(sorted(METHODS))}")
    request: dict = {"method": method, "url": template(item["url"].strip(), f"{where}.url")}
    if item.get("description"):
        request["name"] = str(item["description"])[:256]
    headers = _headers(item.get("headers"), f"{where}.headers")
    post = item.get("postData")
    if post is not None:
        if not isinstance(post, dict):
            raise InvalidInput(f'{where}.postData: expected {{"text", "mimeType"}}')
        if post.get("text") is not None:
            request["body"] = template(str(post["text"]), f"{where}.postData.text")
        mime = post.get("mimeType")
        if mime and not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = str(mime)
    if headers:
        request["headers"] = headers
    if item.get("timeout") is not None:
        request["timeout"] = duration(milliseconds(item["timeout"], f"{where}.timeout", minimum=1))
    extracted = _extractions(item.get("extract"), f"{where}.extract")
    if extracted:
        request["extract"] = extracted
    assertions = _assertions(item.get("assert"), extracted, f"{where}.assert")
    if assertions:
        request["assertions"] = assertions
    delay = milliseconds(item["delay"], f"{where}.delay") if item.get("delay") is not None else 0
    return request, delay


def _parameter_pool(value: Any) -> Optional[dict]:
    columns: dict[str, list[str]] = {}
    for name, given in _pairs(value, "config.parameters"):
        if not isinstance(name, str) or not name:
            raise InvalidInput("config.parameters: parameter names must be non-empty strings")
        values = given if isinstance(given, list) else [given]
        if not values:
            raise InvalidInput(f"config.parameters.{name}: an empty list")
        texts = []
        for text in values:
            if isinstance(text, (dict, list)):
                raise InvalidInput(f"config.parameters.{name}: expected strings or numbers")
            text = (
                ""
                if text is None
                else text
                if isinstance(text, str)
                else str(text).lower()
                if isinstance(text, bool)
                else str(text)
            )
            if "${" in text:
                raise InvalidInput(f"config.parameters.{name}: {text!r}: parameter values cannot use ${{...}}")
            texts.append(text)
        columns[name] = texts
    if not columns:
        return None
    rows = max(len(v) for v in columns.values())
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in range(rows):
        writer.writerow(values[row % len(values)] for values in columns.values())
    return {"name": POOL_NAME, "csv": out.getvalue()}


def loadtest_spec_from_conf(conf: Any) -> tuple[LoadTestSpec, list[str]]:
    """(the LoadTestSpec, the top-level keys that were ignored). Raises InvalidInput naming the
    field for anything that cannot be mapped (see the module docstring)."""
    if not isinstance(conf, dict):
        raise InvalidInput("config: expected a JSON object")
    requests = conf.get("requests")
    if not isinstance(requests, list) or not requests:
        raise InvalidInput("config.requests: a list of at least one request is required")
    if len(requests) > MAX_REQUESTS:
        raise InvalidInput(f"config.requests: at most {MAX_REQUESTS} requests")
    if conf.get("parameterPools"):
        raise InvalidInput("config.parameterPools: not supported; use parameters (list values give the rows)")
    mapped = [_request(item, f"config.requests[{i}]") for i, item in enumerate(requests)]
    meta = conf.get("meta") if isinstance(conf.get("meta"), dict) else {}
    description = conf.get("description") or meta.get("description") or ""
    if not isinstance(description, str):
        raise InvalidInput("config.description: expected a string")
    users = conf.get("concurrency", 1)
    if isinstance(users, bool) or not isinstance(users, int) or users < 1:
        raise InvalidInput("config.concurrency: expected a whole number >= 1")
    load: dict = {"model": "closed", "users": users}
    if conf.get("duration") is not None:
        load["duration"] = duration(milliseconds(conf["duration"], "config.duration", minimum=1))
    if conf.get("rampUp") is not None:
        load["rampUp"] = duration(milliseconds(conf["rampUp"], "config.rampUp"))
    if conf.get("iterations") is not None:
        iterations = conf["iterations"]
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
            raise InvalidInput("config.iterations: expected a whole number >= 1")
        load["iterations"] = iterations
    if "duration" not in load and "iterations" not in load:
        load["iterations"] = 1
    flow: dict = {"name": FLOW_NAME, "requests": [request for request, _ in mapped]}
    think = max(delay for _, delay in mapped)
    if think:
        flow["thinkTime"] = duration(think)
    spec: dict = {"description": description[:4096], "load": load, "flows": [flow]}
    pool = _parameter_pool(conf.get("parameters"))
    if pool:
        spec["parameterPools"] = [pool]
    try:
        parsed = LoadTestSpec.model_validate(spec)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        raise InvalidInput(f"config does not make a valid load test: {problems}") from None
    ignored = sorted(k for k in conf if k not in MAPPED_KEYS)
    return parsed, ignored


def loadtest_name_for(test_id: str) -> str:
    return f"loadmill-{test_id}"


# --- the Loadmill view of a run -------------------------------------------------------------------


def loadmill_result(status: dict) -> Optional[str]:
    """done | failed | aborted once the run ended, None while it runs (Loadmill clients poll
    until `result` is set)."""
    if status.get("phase") not in ("Succeeded", "Failed"):
        return None
    if status.get("result") == "Aborted":
        return "aborted"
    if status.get("phase") == "Failed" or status.get("result") == "Failed":
        return "failed"
    return "done"


def iterations(spec: dict, status: dict) -> tuple[int, int]:
    """(successful, failed) iterations, estimated from request counts: the load engine counts
    requests, not iterations. An iteration is one pass over the flow's requests, so
    iterations = requests / requests per pass, and each failed request is taken to fail one
    iteration (exact when no iteration has two failing requests; at worst it overcounts)."""
    summary = status.get("summary") or {}
    requests, failures = int(summary.get("requests") or 0), int(summary.get("failures") or 0)
    flows = spec.get("flows") or []
    per_pass = len((flows[0] if flows else {}).get("requests") or []) or 1
    total = -(-requests // per_pass)  # a cut-off last pass still counts
    failed = min(failures, total)
    return total - failed, failed


def used_seconds(spec: dict, status: dict) -> int:
    """Seconds used by all sessions: run time times concurrent virtual users (closed model) or
    the open model's cap on concurrent iterations. An estimate, as Loadmill's own is."""
    seconds = elapsed_seconds(status) or 0.0
    load = spec.get("load") or {}
    users = load.get("users", 1) if load.get("model", "closed") == "closed" else load.get("maxUsers") or 1
    return int(round(seconds * users))


class LoadmillTestService:
    def __init__(self, kube, store):
        self.kube = kube
        self.store = store

    def create(self, namespace: str, conf: Any) -> str:
        spec, ignored = loadtest_spec_from_conf(conf)
        test_id = str(uuid.uuid4())
        self.store.put_record(
            TESTS,
            test_id,
            {
                "id": test_id,
                "namespace": namespace,
                "conf": conf,
                "spec": spec.to_k8s(),
                "description": spec.description,
                "ignored": ignored,
                "createdAt": time.time(),
            },
            project=namespace,
        )
        return test_id

    def _record(self, namespaces: list[str], test_id: str) -> dict:
        record = self.store.get_record(TESTS, test_id) if len(test_id) <= 200 else None
        if record is None or record.get("namespace") not in namespaces:
            raise NotFound(f"no load test {test_id!r}")
        return record

    def start(self, namespaces: list[str], test_id: str) -> dict:
        """Create the LoadTest of the test: once."""
        record = self._record(namespaces, test_id)
        refused = Conflict(
            f"load test {test_id} has already been run; a load test runs only once, "
            "create it again (POST /api/v1/tests) to run it again"
        )
        if record.get("loadTestUid"):
            raise refused
        namespace, name = record["namespace"], loadtest_name_for(test_id)
        body = {
            "apiVersion": "assay.dev/v1alpha1",
            "kind": "LoadTest",
            "metadata": {"name": name, "labels": {LABEL_TEST_ID: test_id}},
            "spec": record["spec"],
        }
        try:
            created = self.kube.create(LOADTEST_PLURAL, namespace, body)
        except ApiException as exc:
            if exc.status == 409:
                raise refused from None
            raise
        self.store.put_record(
            TESTS,
            test_id,
            {**record, "loadTest": name, "loadTestUid": created["metadata"]["uid"], "startedAt": time.time()},
            project=namespace,
        )
        return created

    def view(self, namespaces: list[str], test_id: str) -> dict:
        """Loadmill's "Get Load Test" shape."""
        record = self._record(namespaces, test_id)
        loadtest = None
        try:
            loadtest = self.kube.get(LOADTEST_PLURAL, record["namespace"], loadtest_name_for(test_id))
        except KubeNotFound:
            pass
        if loadtest is not None and record.get("loadTestUid") not in (None, loadtest["metadata"].get("uid")):
            loadtest = None  # not the LoadTest this test created (deleted, another of that name)
        status = (loadtest or {}).get("status") or {}
        spec = record["spec"]
        successful, failed = iterations(spec, status)
        return {
            "id": test_id,
            "startTime": epoch_ms(status.get("startTime")),
            "endTime": epoch_ms(status.get("completionTime")),
            "usedSeconds": used_seconds(spec, status),
            "description": record.get("description") or "",
            "conf": record.get("conf"),
            "result": loadmill_result(status),
            "failedIterations": failed,
            "successfulIterations": successful,
        }
