"""TestSuite handlers: start a requested suite run once, mirror its Job into the status.

A run is requested with the `assay.dev/run-request` annotation (assay.crds.runrequest has the
contract): a request id, or `{"id", "forceAllFlows", "additionalDescription",
"overrideParameters", "labels", "pool"}` as the gateway's Loadmill API writes it. The run is one Job,
`<run-id>`, running `python -m assay.runner testsuite`; its status (`lastRun`, `history`) is
rebuilt from the Jobs on every change (runs.py, runhistory.py); suiteruns.py plans it.
"""

from __future__ import annotations

import kopf

from assay.crds.runrequest import InvalidRunRequest, SuiteRunRequest, parse_run_request

from .names import GROUP, LABEL_KIND, RUN_REQUEST_ANNOTATION, VERSION
from .runjob import owner_of
from .runs import PENDING_RETRY_SECONDS, controller_owner, reconcile_status, recorded_run_ids, start_run
from .runsecrets import SECRET_NOT_FOUND, MissingSecret
from .settings import get_settings
from .suiteruns import WaitingFor, plan_run, request_state, spec_problem, with_inline_pools

KIND = "TestSuite"
PLURAL = "testsuites"


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
            if (invalid := spec_problem(owner)) is not None:
                # Written into the RunRequest condition; a new request (a new id) after fixing
                # the spec runs it.
                reconcile_status(KIND, namespace, name, request_state, settings, logger)
                raise kopf.PermanentError(f"run {plan.run_id}: {invalid}")
            try:
                start_run(owner, plan, with_inline_pools(owner), settings, logger)
            except WaitingFor as exc:
                pending = f"run {plan.run_id}: {exc}"
            except MissingSecret as exc:
                pending, reason = f"run {plan.run_id}: {exc}", SECRET_NOT_FOUND
    reconcile_status(KIND, namespace, name, request_state, settings, logger, pending, reason)
    if pending:
        raise kopf.TemporaryError(pending, delay=PENDING_RETRY_SECONDS)


@kopf.on.event("batch", "v1", "jobs", labels={LABEL_KIND: KIND})
def mirror_job(body, namespace, logger, **_):
    owner = controller_owner(body, KIND)
    if owner is not None:
        reconcile_status(KIND, namespace, owner["name"], request_state, get_settings(), logger)
