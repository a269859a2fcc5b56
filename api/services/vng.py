"""The VNG API test platform's business rules: session types, consumer sessions whose exposed
URLs forward to the session type's APIs and record every call, and provider runs.

Ids
    VNG numbers sessions and provider runs (`id`) and gives each a `uuid` for its badge. The
    number is allocated per namespace in the store's counters (`vng-sessions`,
    `vng-provider-runs`, keyed by the uuid), so it is never reused, and a number only means
    something in the caller's namespace: another account's session is simply not found.

Records (store collections)
    vng-sessions            uuid -> the session: its type (name, suite, uid), services,
                            scenario cases and variables as they were when it started, status
    vng-calls/<uuid>        call number -> one forwarded call (request and response, bodies
                            cut at MAX_RECORDED_BODY), at most MAX_CALLS per session
    vng-provider-runs       uuid -> the provider run: scenario, endpoints, the suite run id

A session's scenario is copied when it starts, so editing or deleting the session type later
does not change the result of a session that already ran against it.

Provider runs
    A provider run is a run of the TestSuite named by `test_scenario`, requested through the
    suite's run-request annotation (SuiteService.request_run) with every flow and the run's
    endpoints as overrideParameters: `{"name": "quotes", "value": "https://..."}` sets the
    suite parameter `quotes`, which the suite's URLs use as `{{quotes}}`.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Optional

from . import InvalidInput, NotFound
from .shields import badge
from .suites import PLURAL, SuiteService
from .vng_scenario import (
    FAILED,
    NO_CASES,
    SESSION_TYPE_LABEL,
    SUCCESS,
    SessionTypeError,
    case_view,
    scenario_cases,
    session_result,
    session_type_name,
    session_type_services,
)

SESSIONS = "vng-sessions"
PROVIDER_RUNS = "vng-provider-runs"
SESSION_TYPE_NUMBERS = "vng-session-types"
EXPOSED_PREFIX = "/vng/exposed"
MAX_CALLS = 1000
MAX_RECORDED_BODY = 64 * 1024
RUNNING, STOPPED = "running", "stopped"
PROVIDER_RUN_UNDERWAY = {"Information": "The tests against the provider-run is undergoing."}
NOT_FOUND = "Not found."


class FieldErrors(InvalidInput):
    """DRF's validation error: {field: [messages]}, carried as JSON in the message."""

    CODE = "invalid_fields"

    def __init__(self, fields: dict[str, Any]):
        super().__init__(json.dumps(fields))
        self.code = self.CODE
        self.fields = fields


def calls_collection(session_uuid: str) -> str:
    return f"vng-calls/{session_uuid}"


def iso(epoch: Optional[float]) -> Optional[str]:
    """DRF's DateTimeField output for a UTC time."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat().replace("+00:00", "Z")


def number_in(ref: str) -> Optional[int]:
    # isdigit() alone also accepts digits int() refuses, such as "²".
    return int(ref) if ref.isascii() and ref.isdigit() and len(ref) <= 12 else None


def exposed_url(public_url: str, session_uuid: str, service: str) -> str:
    return f"{public_url.rstrip('/')}{EXPOSED_PREFIX}/{session_uuid}/{service}/"


def session_view(record: dict, public_url: str) -> dict:
    """A session in VNG's Session shape (plus `exposed_urls`, the URLs alone)."""
    urls = [
        {"vng_endpoint": name, "exposed_url": exposed_url(public_url, record["uuid"], name)}
        for name in record["services"]
    ]
    return {
        "id": record["id"],
        "uuid": record["uuid"],
        "session_type": record["sessionType"]["name"],
        "started": iso(record["started"]),
        "stopped": iso(record.get("stopped")),
        "status": record["status"],
        "exposedurl_set": urls,
        "exposed_urls": [u["exposed_url"] for u in urls],
        "build_version": record.get("buildVersion"),
        "sandbox": record.get("sandbox", False),
    }


def session_type_view(suite: dict, number: int) -> dict:
    services = {}
    problem = None
    try:
        services = session_type_services(suite)
    except SessionTypeError as exc:
        problem = str(exc)
    view = {
        "id": number,
        "name": session_type_name(suite),
        "description": (suite.get("spec") or {}).get("description") or "",
        "vngendpoint_set": [{"name": name, "url": url} for name, url in services.items()],
    }
    if problem:
        view["error"] = problem
    return view


def session_badge(record: dict, result: dict) -> dict:
    if record["status"] != STOPPED:
        return badge("Running", "blue")
    if result["result"] == NO_CASES:
        return badge("No scenario cases", "lightgrey")
    return badge("Success", "green") if result["result"] == SUCCESS else badge("Failed", "red")


def percentage(progress: Optional[str]) -> int:
    """`3/4` as 75."""
    done, _, total = (progress or "").partition("/")
    try:
        return int(100 * int(done) / int(total)) if int(total) else 0
    except ValueError:
        return 0


def provider_endpoints(body: dict) -> tuple[list[dict], Optional[dict]]:
    """The run's endpoints ([{"name", "value"}]) from `endpoints` or `environment.endpoints`,
    and the environment as given. Raises FieldErrors in DRF's shape."""
    environment = body.get("environment")
    if environment is not None and not isinstance(environment, dict):
        raise FieldErrors({"environment": {"non_field_errors": ["Invalid data. Expected a dictionary."]}})
    raw = body.get("endpoints")
    where = "endpoints"
    if raw is None and environment is not None:
        raw, where = environment.get("endpoints"), "environment"
    if raw is None:
        return [], environment
    if not isinstance(raw, list):
        raise FieldErrors({where: ['Expected a list of items but got type "%s".' % type(raw).__name__]})
    endpoints, problems = [], []
    for item in raw:
        problem = {}
        if not isinstance(item, dict):
            problems.append({"non_field_errors": ["Invalid data. Expected a dictionary."]})
            continue
        for key in ("name", "value"):
            if not isinstance(item.get(key), str) or not item[key].strip():
                problem[key] = ["This field is required."]
        problems.append(problem)
        if not problem:
            endpoints.append({"name": item["name"].strip(), "value": item["value"]})
    if any(problems):
        raise FieldErrors({where: problems} if where == "endpoints" else {where: {"endpoints": problems}})
    return endpoints, environment


class VngService:
    def __init__(
        self, kube, store, public_url: str, suites: Optional[SuiteService] = None, exposed_base: Optional[str] = None
    ):
        self.kube = kube
        self.store = store
        self.public_url = public_url
        self.exposed_base = exposed_base or public_url
        self.suites = suites or SuiteService(kube, store)

    # session types

    def _type_suites(self, namespace: str) -> list[dict]:
        return self.kube.list(PLURAL, namespace, label_selector=f"{SESSION_TYPE_LABEL}=true")

    def _type_number(self, namespace: str, suite: dict) -> int:
        return self.store.number_for(namespace, SESSION_TYPE_NUMBERS, suite["metadata"]["uid"])

    def session_types(self, namespace: str) -> list[dict]:
        views = [session_type_view(s, self._type_number(namespace, s)) for s in self._type_suites(namespace)]
        return sorted(views, key=lambda v: v["id"])

    def session_type(self, namespace: str, ref: str) -> dict:
        return session_type_view(*self._find_type(namespace, ref))

    def _find_type(self, namespace: str, ref: Any) -> tuple[dict, int]:
        """The session type named `ref` (VNG sends the name), or numbered `ref`."""
        suites = self._type_suites(namespace)
        number = number_in(str(ref))
        for suite in suites:
            if session_type_name(suite) == ref or suite["metadata"]["name"] == ref:
                return suite, self._type_number(namespace, suite)
        if number is not None:
            uid = self.store.key_for_number(namespace, SESSION_TYPE_NUMBERS, number)
            for suite in suites:
                if suite["metadata"]["uid"] == uid:
                    return suite, number
        raise NotFound(NOT_FOUND)

    # sessions

    def create_session(self, namespace: str, body: Any, requester: str) -> dict:
        if not isinstance(body, dict):
            raise FieldErrors(
                {"non_field_errors": ["Invalid data. Expected a dictionary, but got %s." % type(body).__name__]}
            )
        ref = body.get("session_type")
        if ref in (None, ""):
            raise FieldErrors({"session_type": ["This field is required."]})
        if not isinstance(ref, (str, int)) or isinstance(ref, bool):
            raise FieldErrors({"session_type": ["Invalid value."]})
        build_version = body.get("build_version")
        if build_version is not None and not isinstance(build_version, str):
            raise FieldErrors({"build_version": ["Not a valid string."]})
        sandbox = body.get("sandbox", False)
        if not isinstance(sandbox, bool):
            raise FieldErrors({"sandbox": ["Must be a valid boolean."]})
        try:
            suite, _ = self._find_type(namespace, ref)
        except NotFound:
            raise FieldErrors({"session_type": [f"Object with name={ref} does not exist."]}) from None
        try:
            services = session_type_services(suite)
            cases = scenario_cases(suite.get("spec") or {}, services)
        except SessionTypeError as exc:
            raise FieldErrors({"session_type": [f"Session type {ref} cannot start: {exc}"]}) from None
        spec = suite.get("spec") or {}
        variables = dict(spec.get("parameters") or {})
        variables.update(services)
        session_uuid = str(uuid.uuid4())
        record = {
            "uuid": session_uuid,
            "id": self.store.number_for(namespace, SESSIONS, session_uuid),
            "namespace": namespace,
            "sessionType": {
                "name": session_type_name(suite),
                "suite": suite["metadata"]["name"],
                "uid": suite["metadata"]["uid"],
            },
            "services": services,
            "cases": cases,
            "variables": variables,
            "started": time.time(),
            "stopped": None,
            "status": RUNNING,
            "buildVersion": build_version,
            "sandbox": sandbox,
            "requester": requester,
        }
        self.store.put_record(SESSIONS, session_uuid, record, project=namespace)
        return session_view(record, self.exposed_base)

    def _session(self, namespace: str, ref: str) -> dict:
        number = number_in(ref)
        key = self.store.key_for_number(namespace, SESSIONS, number) if number is not None else None
        record = self.store.get_record(SESSIONS, key) if key else None
        if record is None or record.get("namespace") != namespace:
            raise NotFound(NOT_FOUND)
        return record

    def sessions(self, namespace: str) -> list[dict]:
        return [session_view(r, self.exposed_base) for r in self.store.list_records(SESSIONS, project=namespace)]

    def session(self, namespace: str, ref: str) -> dict:
        return session_view(self._session(namespace, ref), self.exposed_base)

    def stop_session(self, namespace: str, ref: str) -> list[dict]:
        """Stop the session (its exposed URLs answer 404 from now on); VNG answers with the
        session's scenario cases."""
        record = self._session(namespace, ref)
        if record["status"] != STOPPED:
            record.update(status=STOPPED, stopped=time.time())
            self.store.put_record(SESSIONS, record["uuid"], record, project=namespace)
        return [case_view(case) for case in record["cases"]]

    def _result(self, record: dict) -> dict:
        calls = self.store.list_records(calls_collection(record["uuid"]))
        calls.sort(key=lambda c: c.get("n", 0))
        return session_result(record["cases"], calls, record["variables"], sandbox=record.get("sandbox", False))

    def session_result(self, namespace: str, ref: str) -> dict:
        record = self._session(namespace, ref)
        result = self._result(record)
        result["test_session_url"] = f"{self.public_url.rstrip('/')}/api/v1/testsessions/{record['id']}"
        result["status"] = record["status"]
        return result

    def session_shield(self, session_uuid: str) -> dict:
        record = self.store.get_record(SESSIONS, session_uuid.lower()) if _is_uuid(session_uuid) else None
        if record is None:
            raise NotFound(NOT_FOUND)
        return session_badge(record, self._result(record))

    # exposed URLs

    def running_session(self, session_uuid: str, service: str) -> tuple[dict, str]:
        """(the session, the target base URL of `service`) for a call to an exposed URL."""
        record = self.store.get_record(SESSIONS, session_uuid.lower()) if _is_uuid(session_uuid) else None
        if record is None or service not in record["services"]:
            raise NotFound(NOT_FOUND)
        if record["status"] != RUNNING:
            raise NotFound("This session is stopped.")
        return record, record["services"][service]

    def record_call(self, record: dict, call: dict) -> Optional[int]:
        """Keep one forwarded call; its number, or None once the session has MAX_CALLS."""
        collection = calls_collection(record["uuid"])
        if self.store.key_for_number(record["namespace"], collection, MAX_CALLS) is not None:
            return None  # full; checked first so that a busy client cannot grow the counters either
        number = self.store.number_for(record["namespace"], collection, uuid.uuid4().hex)
        if number > MAX_CALLS:
            return None
        self.store.put_record(collection, f"{number:06d}", {**call, "n": number}, project=record["namespace"])
        return number

    # provider runs

    def create_provider_run(self, namespace: str, body: Any, requester: str) -> dict:
        if not isinstance(body, dict):
            raise FieldErrors(
                {"non_field_errors": ["Invalid data. Expected a dictionary, but got %s." % type(body).__name__]}
            )
        scenario = body.get("test_scenario")
        if scenario in (None, ""):
            raise FieldErrors({"test_scenario": ["This field is required."]})
        if not isinstance(scenario, str):
            raise FieldErrors({"test_scenario": ["Invalid value."]})
        endpoints, environment = provider_endpoints(body)
        software_version = body.get("software_version", body.get("build_version"))
        if software_version is not None and not isinstance(software_version, str):
            raise FieldErrors({"software_version": ["Not a valid string."]})
        try:
            suite = self.suites.find(namespace, scenario)
        except NotFound:
            raise FieldErrors({"test_scenario": [f"Object with name={scenario} does not exist."]}) from None
        run_uuid = str(uuid.uuid4())
        run_id = self.suites.request_run(
            namespace,
            suite["metadata"]["name"],
            force_all_flows=True,
            additional_description=f"(VNG provider run {run_uuid})",
            override_parameters={e["name"]: e["value"] for e in endpoints},
            requester=requester,
        )
        record = {
            "uuid": run_uuid,
            "id": self.store.number_for(namespace, PROVIDER_RUNS, run_uuid),
            "namespace": namespace,
            "testScenario": suite["metadata"]["name"],
            "runId": run_id,
            "endpoints": endpoints,
            "environment": environment,
            "softwareVersion": software_version,
            "started": time.time(),
            "requester": requester,
        }
        self.store.put_record(PROVIDER_RUNS, run_uuid, record, project=namespace)
        return self._provider_view(record)

    def _provider_run(self, namespace: str, ref: str) -> dict:
        number = number_in(ref)
        key = self.store.key_for_number(namespace, PROVIDER_RUNS, number) if number is not None else None
        record = self.store.get_record(PROVIDER_RUNS, key) if key else None
        if record is None or record.get("namespace") != namespace:
            raise NotFound(NOT_FOUND)
        return record

    def _suite_run(self, record: dict) -> dict:
        return self.suites.suite_run([record["namespace"]], record["runId"])

    def _provider_view(self, record: dict, suite_run: Optional[dict] = None) -> dict:
        state = (suite_run or {}).get("status", "RUNNING")
        end = (suite_run or {}).get("endTime")
        view = {
            "id": record["id"],
            "uuid": record["uuid"],
            "test_scenario": record["testScenario"],
            "started": iso(record["started"]),
            "stopped": iso(end / 1000) if state != "RUNNING" and end else None,
            "status": RUNNING if state == "RUNNING" else STOPPED,
            "percentage_exec": percentage((suite_run or {}).get("progress")),
            "status_exec": state,
            "endpoints": record["endpoints"],
            "software_version": record.get("softwareVersion"),
            "suite_run_id": record["runId"],
        }
        if record.get("environment") is not None:
            view["environment"] = record["environment"]
        return view

    def provider_runs(self, namespace: str) -> list[dict]:
        return [
            self._provider_view(r, self._suite_run(r))
            for r in self.store.list_records(PROVIDER_RUNS, project=namespace)
        ]

    def provider_run(self, namespace: str, ref: str) -> dict:
        record = self._provider_run(namespace, ref)
        return self._provider_view(record, self._suite_run(record))

    def provider_result(self, namespace: str, ref: str) -> Any:
        """While running VNG's notice; then one entry per flow run of the suite run."""
        record = self._provider_run(namespace, ref)
        run = self._suite_run(record)
        if run.get("status") == "RUNNING":
            return dict(PROVIDER_RUN_UNDERWAY)
        entries = [
            {
                "time": iso(flow["startTime"] / 1000) if flow.get("startTime") else None,
                "name": flow.get("description"),
                "status": SUCCESS if flow.get("status") == "PASSED" else FAILED,
                "numOfRequests": flow.get("numOfRequests"),
                "duration": flow.get("duration"),
            }
            for flow in run.get("testSuiteFlowRuns") or []
        ]
        if not entries:
            entries = [
                {
                    "time": iso(run["startTime"] / 1000) if run.get("startTime") else None,
                    "name": record["testScenario"],
                    "status": SUCCESS if run.get("status") == "PASSED" else FAILED,
                    "error": (run.get("error") or {}).get("message"),
                }
            ]
        return entries

    def provider_shield(self, run_uuid: str) -> dict:
        record = self.store.get_record(PROVIDER_RUNS, run_uuid.lower()) if _is_uuid(run_uuid) else None
        if record is None:
            raise NotFound(NOT_FOUND)
        state = self._suite_run(record).get("status")
        if state == "RUNNING":
            return badge("Running", "blue")
        return badge("Success", "green") if state == "PASSED" else badge("Failed", "red")


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text.lower()
    except ValueError:
        return False
