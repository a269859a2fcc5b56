"""Loadmill test plans and JUnit reports, over TestSuite runs.

Test plans
    Assay has no test-plan resource: a plan is the set of TestSuites of the account labelled
    `assay.dev/test-plan: <plan id>` (so a suite is in one plan at most; the plan id is a
    label value: up to 63 letters, digits, `-`, `_`, `.`). Running a plan asks for a run of each of its
    suites, in name order, with the plan run's options (labels, pool, overrides, description);
    a suite none of whose flows the options select is left out, as Loadmill runs only the
    suites that have flows with the labels. The plan run is a store record (`PLAN_RUNS`) of
    the suite runs it asked for; its status is RUNNING while one of them runs, then PASSED
    when all passed, else FAILED. A suite whose run cannot be requested (busy, deleted) fails
    the call after the earlier suites' runs were asked for: those run, and the answer names
    the suite.

JUnit reports
    `POST /reports/junit {testId, runType}` records which run (a suite run, `test-suite`, or a
    plan run, `test-plan`) the report is of and answers its id; `GET /reports/junit/{id}`
    answers `{"junitReport": "<xml>"}` once every suite run of it has ended, 404 until then
    (Loadmill's CLI polls on 404). The XML is the runner's own JUnit (report.suites_junit_xml):
    a <testsuite> per suite run, a <testcase> per flow run, its failing request and every
    request's status in the failure text.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Optional

from assay.runner.apitest.report import suites_junit_xml
from assay.runner.apitest.suite import SuiteRunResult

from . import InvalidInput, NotFound
from .loadtests import epoch_ms
from .suites import PLURAL, REQUESTS, SuiteService

PLAN_LABEL = "assay.dev/test-plan"
PLAN_RUNS = "loadmill-plan-runs"
"""Store collection: plan run id -> {id, namespace, planId, suiteRuns, requestedAt, description}."""
JUNIT_REPORTS = "loadmill-junit-reports"
"""Store collection: report id -> {id, namespace, testId, runType}."""
RUN_TYPES = ("test-suite", "test-plan")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$")


def plan_status(suite_runs: list[dict]) -> str:
    statuses = [run.get("status") for run in suite_runs]
    if "RUNNING" in statuses:
        return "RUNNING"
    return "PASSED" if statuses and all(s == "PASSED" for s in statuses) else "FAILED"


class LoadmillRuns:
    def __init__(self, kube, store, suites: SuiteService):
        self.kube = kube
        self.store = store
        self.suites = suites

    # test plans

    def plan_suites(self, namespace: str, plan_id: str) -> list[dict]:
        if not _LABEL_VALUE.match(plan_id):
            raise NotFound(f"no test plan {plan_id!r}")
        found = self.kube.list(PLURAL, namespace, label_selector=f"{PLAN_LABEL}={plan_id}")
        if not found:
            raise NotFound(f"no test plan {plan_id!r}: no TestSuite is labelled {PLAN_LABEL}={plan_id}")
        return sorted(found, key=lambda suite: suite["metadata"]["name"])

    def run_plan(
        self,
        namespace: str,
        plan_id: str,
        *,
        additional_description: str = "",
        override_parameters: Optional[dict[str, str]] = None,
        labels: Optional[list[str]] = None,
        pool: Optional[str] = None,
        requester: str = "",
    ) -> str:
        suites = self.plan_suites(namespace, plan_id)
        selected = []
        for suite in suites:
            try:
                self.suites.flows_to_run(suite, False, labels, pool)
            except InvalidInput:
                continue
            selected.append(suite)
        if not selected:
            raise InvalidInput(
                f"no test suite of plan {plan_id!r} has a flow to run with these options (CI toggle on"
                + (f", a label of {labels}" if labels else "")
                + (f", parameter pool {pool!r}" if pool is not None else "")
                + ")"
            )
        plan_run_id = str(uuid.uuid4())
        record = {
            "id": plan_run_id,
            "namespace": namespace,
            "planId": plan_id,
            "description": " ".join(p for p in (plan_id, additional_description) if p),
            "requestedAt": time.time(),
            "suiteRuns": [],
        }
        for suite in selected:
            run_id = self.suites.request_run(
                namespace,
                suite["metadata"]["name"],
                additional_description=additional_description,
                override_parameters=override_parameters,
                labels=labels,
                pool=pool,
                requester=requester,
            )
            record["suiteRuns"].append(run_id)
            self.store.put_record(PLAN_RUNS, plan_run_id, record, project=namespace)
        return plan_run_id

    def _plan_run(self, namespaces: list[str], plan_run_id: str) -> dict:
        record = self.store.get_record(PLAN_RUNS, plan_run_id) if len(plan_run_id) <= 200 else None
        if record is None or record.get("namespace") not in namespaces:
            raise NotFound(f"no test plan run {plan_run_id!r}")
        return record

    def plan_run(self, namespaces: list[str], plan_run_id: str) -> dict:
        """A plan run as Loadmill's clients read it: its status and `testSuitesRuns`."""
        record = self._plan_run(namespaces, plan_run_id)
        suite_runs = [self.suites.suite_run(namespaces, run_id) for run_id in record["suiteRuns"]]
        status = plan_status(suite_runs)
        ends = [run.get("endTime") for run in suite_runs]
        return {
            "id": record["id"],
            "testPlanId": record["planId"],
            "description": record["description"],
            "startTime": epoch_ms(record["requestedAt"]),
            "endTime": max(e for e in ends if e) if status != "RUNNING" and any(ends) else None,
            "status": status,
            "testSuitesRuns": suite_runs,
        }

    # JUnit reports

    def request_junit(self, namespaces: list[str], test_id: str, run_type: str) -> str:
        if run_type not in RUN_TYPES:
            raise InvalidInput(f"runType: {run_type!r}; JUnit reports are made for {' and '.join(RUN_TYPES)} runs")
        if run_type == "test-plan":
            namespace = self._plan_run(namespaces, test_id)["namespace"]
        else:
            self.suites.suite_run(namespaces, test_id)  # 404 unless the account's
            namespace = (self.store.get_record(REQUESTS, test_id) or {}).get("namespace") or namespaces[0]
        report_id = str(uuid.uuid4())
        self.store.put_record(
            JUNIT_REPORTS,
            report_id,
            {"id": report_id, "namespace": namespace, "testId": test_id, "runType": run_type},
            project=namespace,
        )
        return report_id

    def junit(self, namespaces: list[str], report_id: str) -> str:
        """The report's JUnit XML; NotFound until every suite run of it has ended."""
        record = self.store.get_record(JUNIT_REPORTS, report_id) if len(report_id) <= 200 else None
        if record is None or record.get("namespace") not in namespaces:
            raise NotFound(f"no JUnit report {report_id!r}")
        name = None
        run_ids = [record["testId"]]
        if record["runType"] == "test-plan":
            plan_run = self._plan_run(namespaces, record["testId"])
            name, run_ids = plan_run["planId"], plan_run["suiteRuns"]
        suites = []
        for run_id in run_ids:
            document = self.suites.suite_run(namespaces, run_id)
            if document.get("status") == "RUNNING":
                raise NotFound(f"JUnit report {report_id} is not ready: suite run {run_id} is still running")
            suite_name = (self.store.get_record(REQUESTS, run_id) or {}).get("suite") or run_id
            suites.append((suite_name, SuiteRunResult.from_loadmill(document, suite_name).junit_cases()))
        return suites_junit_xml(name or suites[0][0], suites)
