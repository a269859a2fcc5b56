"""TestSuite handlers: start a requested suite run once, mirror its Job into the status.

A run is requested with the `assay.dev/run-request` annotation (assay.crds.runrequest has the
contract): a request id, or `{"id", "forceAllFlows", "additionalDescription",
"overrideParameters"}` as the gateway's Loadmill API writes it. The run is one Job,
`<run-id>`, running `python -m assay.runner testsuite`; its status (`lastRun`, `history`) is
rebuilt from the Jobs on every change (runs.py, runhistory.py).
"""

from __future__ import annotations

import copy

import kopf
from pydantic import ValidationError

from assay.crds.common import error_summary
from assay.crds.runrequest import InvalidRunRequest, SuiteRunRequest, parse_run_request
from assay.crds.testsuite import TestSuiteSpec

from . import kube
from .names import GROUP, LABEL_KIND, RUN_REQUEST_ANNOTATION, VERSION, run_id_for_request
from .runhistory import RequestState
from .runjob import owner_of
from .runs import (PENDING_RETRY_SECONDS, RunPlan, controller_owner, reconcile_status, recorded_run_ids,
                   start_run)
from .runsecrets import SECRET_NOT_FOUND, MissingSecret
from .settings import get_settings

KIND = "TestSuite"
PLURAL = "testsuites"


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
    return RequestState(run_id=run_id_for_request(meta["name"], meta["uid"], request.id))


def plan_run(owner: dict, request: SuiteRunRequest) -> RunPlan:
    meta = owner["metadata"]
    return RunPlan(run_id=run_id_for_request(meta["name"], meta["uid"], request.id), request_id=request.id,
                   runner_args=["testsuite"], options=request.options())


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



@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.field(GROUP, VERSION, PLURAL, field=("metadata", "annotations", RUN_REQUEST_ANNOTATION))
def run_requested(body, name, namespace, status, logger, **_):
    owner = owner_of(body)
    settings = get_settings()
    pending, reason = None, "Pending"
    try:
        request = parse_run_request(owner["metadata"].get("annotations"), SuiteRunRequest)
    except InvalidRunRequest:
        request = None  # the RunRequest condition says why
    if request is not None:
        plan = plan_run(owner, request)
        if plan.run_id not in recorded_run_ids(dict(status)):
            try:
                TestSuiteSpec.model_validate(owner["spec"])
                start_run(owner, plan, with_inline_pools(owner), settings, logger)
            except ValidationError as exc:
                # The API server's schema catches nearly everything; this is the backstop.
                # Permanent: a new request (a new id) after fixing the spec runs it.
                message = f"run {plan.run_id}: invalid spec: {error_summary(exc)}"
                reconcile_status(KIND, PLURAL, namespace, name, request_state, settings, logger, message)
                raise kopf.PermanentError(message) from None
            except WaitingFor as exc:
                pending = f"run {plan.run_id}: {exc}"
            except MissingSecret as exc:
                pending, reason = f"run {plan.run_id}: {exc}", SECRET_NOT_FOUND
    reconcile_status(KIND, PLURAL, namespace, name, request_state, settings, logger, pending, reason)
    if pending:
        raise kopf.TemporaryError(pending, delay=PENDING_RETRY_SECONDS)


@kopf.on.event("batch", "v1", "jobs", labels={LABEL_KIND: KIND})
def mirror_job(body, namespace, logger, **_):
    owner = controller_owner(body, KIND)
    if owner is not None:
        reconcile_status(KIND, PLURAL, namespace, owner["name"], request_state, get_settings(), logger)
