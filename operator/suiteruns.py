"""A TestSuite's runs, planned: the run a request asks for, and the suite with its parameter
pools inlined as the runner reads it. Shared by the TestSuite handlers and the Schedule
planner (a tick group's members)."""

from __future__ import annotations

import copy

from pydantic import ValidationError

from assay.crds.common import error_summary
from assay.crds.runrequest import InvalidRunRequest, SuiteRunRequest, parse_run_request
from assay.crds.testsuite import TestSuiteSpec

from . import kube
from .names import run_id_for_request
from .runhistory import RequestState
from .runs import RunPlan
from .status import INVALID_SPEC


class WaitingFor(Exception):
    """The run cannot start yet (a ConfigMap it reads is missing); retried."""


def request_state(owner: dict) -> RequestState:
    meta = owner["metadata"]
    try:
        request = parse_run_request(meta.get("annotations"), SuiteRunRequest)
    except InvalidRunRequest as exc:
        return RequestState(error=str(exc))
    if request is None:
        return RequestState()
    if (problem := spec_problem(owner)) is not None:
        return RequestState(error=problem, error_reason=INVALID_SPEC)
    return RequestState(run_id=run_id_for_request(meta["name"], meta["uid"], request.id))


def spec_problem(owner: dict) -> str | None:
    """Why the suite's spec cannot be run, or None. The API server's schema catches nearly
    everything; this is the backstop."""
    try:
        TestSuiteSpec.model_validate(owner["spec"])
    except ValidationError as exc:
        return f"invalid spec: {error_summary(exc)}"
    return None


def plan_run(owner: dict, request: SuiteRunRequest) -> RunPlan:
    meta = owner["metadata"]
    return RunPlan(
        run_id=run_id_for_request(meta["name"], meta["uid"], request.id),
        request_id=request.id,
        runner_args=["testsuite"],
        options=request.options(),
    )


def with_inline_pools(owner: dict) -> dict:
    """The owner with every `parameterPool.configMapRef` replaced by the CSV it names: the
    runner has no API access, and the run should use the pool as it was when it started."""
    resolved = copy.deepcopy(owner)
    namespace = owner["metadata"]["namespace"]
    for index, flow in enumerate(resolved["spec"].get("flows") or []):
        ref = (flow.get("parameterPool") or {}).get("configMapRef")
        if not ref:
            continue
        configmap = kube.read_config_map(namespace, ref["name"])
        data = (configmap or {}).get("data") or {}
        if ref["key"] not in data:
            what = f"ConfigMap {ref['name']!r}" + (f" key {ref['key']!r}" if configmap else "")
            raise WaitingFor(f"spec.flows[{index}].parameterPool: waiting for {what}")
        pool = flow["parameterPool"]
        pool.pop("configMapRef")
        pool["csv"] = data[ref["key"]]
    return resolved
