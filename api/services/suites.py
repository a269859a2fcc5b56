"""TestSuite runs as the REST APIs see them: ask for a run, read a suite run and its flow runs,
set a flow's parameter pool, list labels.

Asking for a run
    `request_run` checks the options and asks through api/services/runs.py, which sets the
    suite's run-request annotation and answers with the run id before the run exists; the
    request is kept (`REQUESTS`) to describe the run until its result is uploaded.

Reading a run
    The runner uploads the Loadmill-shaped result (`suite-run.json`) when the run ends; until
    then the run is reported RUNNING with the progress in the TestSuite's status. A run that
    ended without a document (the Job failed before the upload) is reported from the status,
    with `error.message` saying why.

Flow runs
    Flow-run ids are derived inside the runner and cannot be inverted, so the gateway keeps an
    index `flow run id -> run id`, filled when it serves a finished suite run and, for an id
    it has not seen, from the newest finished runs of the caller's namespaces.
"""

from __future__ import annotations

import csv
import json
import time
import uuid
from typing import Any, Callable, Optional

from kubernetes.client.rest import ApiException

from assay.crds.runs import RunCounts
from assay.crds.testsuite import TestSuiteSpec
from assay.runner.apitest.suite import SuiteInputError, parse_pool_csv

from ..kube import NotFound as KubeNotFound
from . import InvalidInput, NotFound, TooLarge, update
from assay.crds.runrequest import fit_name

from .loadtests import epoch_ms
from .runs import PENDING_WAIT_SECONDS, RunRequests

PLURAL = "testsuites"
SUITE_RUN_DOCUMENT = "suite-run.json"
REQUESTS = "suite-run-requests"
"""Store collection: run id -> the request as the gateway made it (namespace, suite, options)."""
FLOW_RUNS = "suite-flow-runs"
"""Store collection: flow run id -> {"runId", "namespace"}."""
INDEXED = "suite-runs-indexed"
"""Store collection: run ids whose flow runs are in FLOW_RUNS."""
LABEL_IDS = uuid.uuid5(uuid.NAMESPACE_DNS, "labels.assay.dev")
"""uuid5 namespace of label ids: a label's id is uuid5(LABEL_IDS, its text), stable everywhere."""

MAX_POOL_BYTES = 1024 * 1024
"""A parameter pool travels inline in the TestSuite (etcd keeps objects under 1.5 MiB)."""
MAX_OVERRIDES_BYTES = 64 * 1024
MAX_ADDITIONAL_DESCRIPTION = 1024
INDEX_SCAN_RUNS = 50


def label_id(text: str) -> str:
    return str(uuid.uuid5(LABEL_IDS, text))


def text_parameters(values: Any) -> dict[str, str]:
    """`overrideParameters` as name -> text. Loadmill documents both an object and a list of
    one-pair objects (`[{"a": "1"}, {"b": "2"}]`); numbers and booleans become JSON text."""
    if values is None:
        return {}
    pairs: list[tuple[Any, Any]] = []
    if isinstance(values, dict):
        pairs = list(values.items())
    elif isinstance(values, list) and all(isinstance(v, dict) for v in values):
        pairs = [pair for v in values for pair in v.items()]
    else:
        raise InvalidInput("overrideParameters: expected an object of name: value pairs")
    out = {}
    for name, value in pairs:
        if not isinstance(name, str) or not name:
            raise InvalidInput("overrideParameters: parameter names must be non-empty strings")
        if isinstance(value, (dict, list)):
            raise InvalidInput(f"overrideParameters.{name}: expected a string, number or boolean")
        out[name] = "" if value is None else value if isinstance(value, str) else json.dumps(value)
    return out


def run_entry(status: dict, run_id: str) -> Optional[dict]:
    for entry in [status.get("lastRun") or {}, *(status.get("history") or [])]:
        if entry.get("runId") == run_id:
            return entry
    return None


LOADMILL_STATUS = {"Passed": "PASSED", "Failed": "FAILED", "Aborted": "FAILED"}


def loadmill_status(entry: dict) -> str:
    """A run record's state as Loadmill spells a suite run's status."""
    return LOADMILL_STATUS.get(entry.get("result") or "", "RUNNING")


def flow_run_view(entry: dict, suite_run: dict) -> dict:
    """A flow run in Loadmill's "Get Test Suite Flow Run" shape, from its entry in the suite run
    (which also has endTime, numOfRequests, avgResTime and duration: kept, as extensions), with
    the `result` and `redactableResult` Loadmill's CLI reports a failed flow from."""
    conf = entry.get("conf") or {}
    return {
        "id": entry.get("id"),
        "description": entry.get("description"),
        "conf": conf,
        "status": entry.get("status"),
        "startTime": entry.get("startTime"),
        "testSuiteFlowId": conf.get("id"),
        "testSuiteId": suite_run.get("testSuiteId"),
        "endTime": entry.get("endTime"),
        "numOfRequests": entry.get("numOfRequests"),
        "avgResTime": entry.get("avgResTime"),
        "duration": entry.get("duration"),
        # Runs uploaded before flow runs carried their per-request detail have none.
        "result": entry.get("result") or {},
        "redactableResult": entry.get("redactableResult") or [],
        "requests": entry.get("requests") or [],
    }


def validated_csv(body: bytes, charset: Optional[str], where: str) -> str:
    if len(body) > MAX_POOL_BYTES:
        raise TooLarge(
            f"the CSV is {len(body)} bytes; a parameter pool holds at most {MAX_POOL_BYTES} bytes inline "
            "(put larger pools in a ConfigMap and refer to it with parameterPool.configMapRef)"
        )
    try:
        text = body.decode(charset or "utf-8")
    except (LookupError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"the CSV is not valid {charset or 'utf-8'} text: {exc}") from None
    if text.startswith("\ufeff"):
        text = text[1:]  # a byte-order mark from a spreadsheet export
    try:
        parse_pool_csv(text, where=where)
    except (SuiteInputError, csv.Error) as exc:
        raise InvalidInput(str(exc)) from None
    return text


class SuiteService:
    def __init__(
        self, kube, store, *, sleep: Callable[[float], None] = time.sleep, pending_wait: float = PENDING_WAIT_SECONDS
    ):
        self.kube = kube
        self.store = store
        self.runs = RunRequests(kube, sleep=sleep, pending_wait=pending_wait)

    # finding suites

    def find(self, namespace: str, ref: str) -> dict:
        """The TestSuite whose uid (Loadmill ids are UUIDs) or name is `ref`."""
        try:
            uuid.UUID(ref)
            is_uid = True
        except ValueError:
            is_uid = False
        if is_uid:
            for suite in self.kube.list(PLURAL, namespace):
                if suite["metadata"].get("uid") == ref.lower():
                    return suite
        if len(ref) <= 253:
            try:
                return self.kube.get(PLURAL, namespace, ref)
            except KubeNotFound:
                pass
            except ApiException as exc:
                if exc.status not in (400, 404, 422):
                    raise
        raise NotFound(f"no test suite {ref!r}")

    # running

    def request_run(
        self,
        namespace: str,
        ref: str,
        *,
        force_all_flows: bool = False,
        additional_description: str = "",
        override_parameters: Optional[dict[str, str]] = None,
        labels: Optional[list[str]] = None,
        pool: Optional[str] = None,
        requester: str = "",
    ) -> str:
        """Ask the operator to run the suite; returns the run id the run will have. `labels`
        narrow the run to the flows carrying one of them, `pool` names the parameter pool
        flows run over (TestSuiteSpec.ci_flows, SuiteFlow.pool_for_run)."""
        overrides = dict(override_parameters or {})
        if len(additional_description) > MAX_ADDITIONAL_DESCRIPTION:
            raise InvalidInput(f"additionalDescription: at most {MAX_ADDITIONAL_DESCRIPTION} characters")
        if len(json.dumps(overrides)) > MAX_OVERRIDES_BYTES:
            raise TooLarge(f"overrideParameters: at most {MAX_OVERRIDES_BYTES} bytes of JSON")
        suite = self.find(namespace, ref)
        meta = suite["metadata"]
        flows = self.flows_to_run(suite, force_all_flows, labels or None, pool)
        run_id = self.runs.request(
            "TestSuite",
            namespace,
            meta["name"],
            {
                "force_all_flows": force_all_flows,
                "additional_description": additional_description,
                "override_parameters": overrides,
                "labels": list(labels) if labels else None,
                "pool": pool,
            },
            owner=suite,
            busy="the previous run request of this test suite has not started yet (is the operator running?); "
            "try again shortly",
        )
        description = " ".join(
            p for p in ((suite.get("spec") or {}).get("description") or meta["name"], additional_description) if p
        )
        self.store.put_record(
            REQUESTS,
            run_id,
            {
                "runId": run_id,
                "namespace": namespace,
                "suite": meta["name"],
                "suiteUid": meta["uid"],
                "description": description,
                "flows": flows,
                "requester": requester,
                "requestedAt": time.time(),
                "forceAllFlows": force_all_flows,
            },
            project=namespace,
        )
        return run_id

    @staticmethod
    def flows_to_run(
        suite: dict, force_all_flows: bool, labels: Optional[list[str]] = None, pool: Optional[str] = None
    ) -> int:
        """How many flows a run of the suite with these options runs; InvalidInput if none, or
        if `pool` names no pool of those flows."""
        try:
            spec = TestSuiteSpec.model_validate(suite.get("spec") or {})
        except ValueError as exc:
            raise InvalidInput(f"test suite {suite['metadata']['name']!r} is not valid: {exc}") from None
        flows = spec.ci_flows(force_all_flows, labels)
        if not flows and labels and spec.ci_flows(force_all_flows):
            raise InvalidInput(f"no flow to run: no flow of the suite carries a label of {labels}")
        if not flows:
            raise InvalidInput(
                "no flow to run: every flow of the suite has the CI toggle off; "
                "run with forceAllFlows=true to run them all"
            )
        if pool is not None and not any(f.pool_for_run(pool) for f in flows):
            raise InvalidInput(f"pool: no flow to run has a parameter pool named {pool!r}")
        return len(flows)

    # reading runs

    def _namespace_of_run(self, run_id: str, namespaces: list[str]) -> tuple[str, Optional[dict], Any]:
        request = self.store.get_record(REQUESTS, run_id)
        run = self.store.get_run(run_id)
        namespace = (request or {}).get("namespace") or (run.project if run else None)
        if namespace is None or namespace not in namespaces or (run is not None and run.kind != "TestSuite"):
            raise NotFound(f"no test suite run {run_id!r}")
        return namespace, request, run

    def suite_run(self, namespaces: list[str], run_id: str) -> dict:
        """The suite run in Loadmill's "Get Test Suite Run" shape."""
        namespace, request, run = self._namespace_of_run(run_id, namespaces)
        document = self._document(run_id)
        if document is not None:
            self._index_flows(namespace, run_id, document)
            return document
        return self._unfinished_view(namespace, run_id, request, run)

    def _document(self, run_id: str) -> Optional[dict]:
        data = self.store.get_document(run_id, SUITE_RUN_DOCUMENT)
        if data is None:
            return None
        try:
            document = json.loads(data)
        except ValueError:
            return None
        return document if isinstance(document, dict) else None

    def _unfinished_view(self, namespace: str, run_id: str, request: Optional[dict], run) -> dict:
        suite_name = (request or {}).get("suite") or (run.owner_name if run else "")
        suite_uid = (request or {}).get("suiteUid") or (run.owner_uid if run else None)
        suite = None
        try:
            suite = self.kube.get(PLURAL, namespace, suite_name) if suite_name else None
        except KubeNotFound:
            suite = None
        if suite is not None and suite["metadata"].get("uid") != suite_uid:
            suite = None  # deleted and recreated under the same name: not this run's suite
        status = (suite or {}).get("status") or {}
        entry = run_entry(status, run_id) or {}
        state = loadmill_status(entry)
        requested_at = (request or {}).get("requestedAt") or (run.created_at if run else None)
        flows = (request or {}).get("flows")
        counts = RunCounts.model_validate(entry["counts"]) if entry.get("counts") else None
        view = {
            "id": run_id,
            "description": (request or {}).get("description") or suite_name,
            "startTime": epoch_ms(entry.get("startTime")) or epoch_ms(requested_at),
            "endTime": epoch_ms(entry.get("completionTime")),
            "conf": {"useCookies": (((suite or {}).get("spec") or {}).get("conf") or {}).get("useCookies", True)},
            "status": state,
            "displayName": (request or {}).get("requester") or "Assay",
            "testSuiteId": suite_uid if suite is not None else None,
            "testSuiteFlowRuns": [],
            "progress": counts.progress if counts else (f"0/{flows}" if flows else "0/0"),
            "successRate": f"{int(round(counts.success_rate))}%" if counts else "0%",
            "avgResTime": "0 ms",
        }
        if state == "FAILED":
            view["error"] = {"message": entry.get("message") or "the run ended without uploading its result"}
        elif suite is None and requested_at and not entry:
            view["status"] = "FAILED"
            view["endTime"] = view["startTime"]
            view["error"] = {"message": "the test suite was deleted before the run finished"}
        return view

    def flow_run(self, namespaces: list[str], flow_run_id: str) -> dict:
        where = self.store.get_record(FLOW_RUNS, flow_run_id)
        if where is None:
            for namespace in namespaces:
                self._index_recent(namespace)
            where = self.store.get_record(FLOW_RUNS, flow_run_id)
        if where is None or where.get("namespace") not in namespaces:
            raise NotFound(f"no test suite flow run {flow_run_id!r}")
        document = self._document(where["runId"]) or {}
        for entry in document.get("testSuiteFlowRuns") or []:
            if entry.get("id") == flow_run_id:
                return flow_run_view(entry, document)
        raise NotFound(f"no test suite flow run {flow_run_id!r}")

    def _index_flows(self, namespace: str, run_id: str, document: dict) -> None:
        if document.get("status") == "RUNNING" or self.store.get_record(INDEXED, run_id) is not None:
            return
        for entry in document.get("testSuiteFlowRuns") or []:
            if entry.get("id"):
                self.store.put_record(
                    FLOW_RUNS, str(entry["id"]), {"runId": run_id, "namespace": namespace}, project=namespace
                )
        self.store.put_record(INDEXED, run_id, {"runId": run_id}, project=namespace)

    def _index_recent(self, namespace: str) -> None:
        for run in self.store.list_runs(project=namespace, kind="TestSuite", limit=INDEX_SCAN_RUNS):
            if self.store.get_record(INDEXED, run.run_id) is None:
                document = self._document(run.run_id)
                if document is not None:
                    self._index_flows(namespace, run.run_id, document)

    # parameter pools

    def set_flow_pool(
        self,
        namespace: str,
        suite_ref: str,
        flow_ref: str,
        csv_body: bytes,
        charset: Optional[str] = None,
        pool_name: Optional[str] = None,
    ) -> dict:
        """Set the flow's parameter pool to the CSV, inline in the TestSuite's spec. The flow is
        named by its `id` or its name. Returns the pool as written.

        The whole `spec.flows` list is written back with the resourceVersion it was read at (a
        merge patch replaces lists whole), so a concurrent change is never overwritten: it
        makes the API server answer 409, and the pool is set again on the fresh suite."""

        def compute(suite: dict) -> tuple[list[dict], dict]:
            flows = [dict(f) for f in (suite.get("spec") or {}).get("flows") or []]
            index = next((i for i, f in enumerate(flows) if f.get("id") == flow_ref), None)
            if index is None:
                index = next((i for i, f in enumerate(flows) if f.get("name") == flow_ref), None)
            if index is None:
                raise NotFound(f"test suite {suite['metadata']['name']!r} has no flow {flow_ref!r}")
            flow = flows[index]
            text = validated_csv(csv_body, charset, f"flow {flow.get('name')!r}")
            current = flow.get("parameterPool") or {}
            name = (pool_name or current.get("name") or fit_name(flow.get("name") or "flow", "pool", limit=253))[:253]
            pool = {"name": name, "csv": text}
            flows[index] = {**flow, "parameterPool": pool}
            return flows, pool

        def write(suite: dict, change: tuple[list[dict], dict]) -> dict:
            flows, pool = change
            patch = {"metadata": {"resourceVersion": suite["metadata"]["resourceVersion"]}, "spec": {"flows": flows}}
            try:
                self.kube.patch(PLURAL, namespace, suite["metadata"]["name"], patch)
            except ApiException as exc:
                if exc.status == 422:
                    raise InvalidInput(f"the test suite refused the pool: {_api_message(exc)}") from None
                raise
            return pool

        return update(
            lambda: self.find(namespace, suite_ref),
            compute,
            write,
            exhausted="the test suite kept changing while the pool was being set; try again",
        )

    # labels

    def labels(self, namespaces: list[str], ci_enabled_only: bool = False) -> list[dict]:
        """Labels of the flows of every TestSuite (a suite's own labels count for all its flows),
        sorted by text; with `ci_enabled_only` only labels of flows whose CI toggle is on."""
        texts: set[str] = set()
        for namespace in namespaces:
            for suite in self.kube.list(PLURAL, namespace):
                spec = suite.get("spec") or {}
                flows = [f for f in spec.get("flows") or [] if not ci_enabled_only or f.get("ciEnabled", True)]
                for flow in flows:
                    texts.update(flow.get("labels") or [])
                if flows:
                    texts.update(spec.get("labels") or [])
        return [{"id": label_id(text), "description": text} for text in sorted(texts)]


def _api_message(exc: ApiException) -> str:
    try:
        return json.loads(exc.body or "{}").get("message") or str(exc.reason)
    except (ValueError, AttributeError):
        return str(exc.reason)
