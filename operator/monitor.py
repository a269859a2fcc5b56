"""Monitor handlers: start a requested monitor run once, mirror its Jobs into the status, and
keep the Monitor's gauges and notifications in step with its status.

A run is requested with the `assay.dev/run-request` annotation (assay.crds.runrequest has the
contract): a request id, or `{"id", "environment", "params"}` as the gateway's Runscope
trigger writes it. The run uses the named environment (by name or id; default: the Monitor's
default environment, else its first); monitorruns.py plans and starts it.
"""

from __future__ import annotations

import kopf

from assay.crds.runrequest import InvalidRunRequest, MonitorRunRequest, parse_run_request

from . import metrics, notify
from .monitorruns import request_state, spec_problem, start_requested_run
from .names import GROUP, LABEL_KIND, RUN_REQUEST_ANNOTATION, VERSION, run_id_for_request
from .runjob import owner_of
from .runs import PENDING_RETRY_SECONDS, controller_owner, reconcile_status
from .runsecrets import SECRET_NOT_FOUND, MissingSecret
from .settings import get_settings

KIND = "Monitor"
PLURAL = "monitors"


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.field(GROUP, VERSION, PLURAL, field=("metadata", "annotations", RUN_REQUEST_ANNOTATION))
def run_requested(body, name, namespace, status, logger, **_):
    owner = owner_of(body)
    settings = get_settings()
    pending, request = None, None
    try:
        request = parse_run_request(owner["metadata"].get("annotations"), MonitorRunRequest)
        if request is not None:
            start_requested_run(owner, request, dict(status), settings, logger)
    except InvalidRunRequest:
        pass  # the RunRequest condition says why
    except MissingSecret as exc:
        pending = f"run {run_id_for_request(name, owner['metadata']['uid'], request.id)}: {exc}"
    reconcile_status(KIND, namespace, name, request_state, settings, logger, pending, SECRET_NOT_FOUND)
    if request is not None and (invalid := spec_problem(owner)) is not None:
        # Written into the RunRequest condition; a new request after fixing the spec runs it.
        raise kopf.PermanentError(invalid)
    if pending:
        raise kopf.TemporaryError(pending, delay=PENDING_RETRY_SECONDS)


@kopf.on.event("batch", "v1", "jobs", labels={LABEL_KIND: KIND})
def mirror_job(body, namespace, logger, **_):
    owner = controller_owner(body, KIND)
    if owner is not None:
        reconcile_status(KIND, namespace, owner["name"], request_state, get_settings(), logger)


@kopf.on.event(GROUP, VERSION, PLURAL)
def monitor_seen(type, body, namespace, name, status, **_):
    """The level-based side of runevents.status_written: on every Monitor event (including
    the listing a restarted or newly leading operator starts with) the Monitor's gauges from
    its status, and finished runs that were never notified handed over."""
    if type == "DELETED":
        metrics.monitor_deleted(namespace, name)
        return
    metrics.monitor_observed(namespace, name, dict(status))
    if not notify.has_notifications(body.get("spec") or {}):
        return
    settings = get_settings()
    owner = {"spec": dict(body.get("spec") or {}), "status": dict(status)}
    pending = [
        run_id
        for run_id in notify.runs_to_notify(dict(status), not_before=notify.catch_up_since(settings))
        if notify.has_something_to_send(owner, run_id, bool(settings.smtp_host))
    ]
    if pending:
        notify.notifier().submit(namespace, name, pending)


@kopf.on.cleanup()
def stop_notifications(**_):
    notify.shutdown()
