"""Runs on request (TestSuite, Monitor): start a planned run once, keep the owner's status.

The kind modules turn the owner and its run-request annotation into a `RunPlan`; this module
creates the run's objects and rebuilds the status, the same way for both kinds:

* start: the spec ConfigMap first, then the upload Secret, then the Job(s), then the Secret
  with the run's secret values (runsecrets.py; owned by the Jobs, so after them), each
  created only if absent. A Secret the spec references that does not exist stops the start
  before anything is created (MissingSecret). The ConfigMap also holds the plan
  (`plan.json`): when it exists already (a retried handler, a restarted operator) the Jobs
  are built from that plan, not from a spec that may have changed since, so a run is started
  once and as it was first planned.
* status: level-based, from the owner's Jobs (runhistory.history_status), written by
  status.update_status (optimistic concurrency: recomputed from a fresh read on a conflict).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, replace

from assay.crds.runrequest import recorded_run_ids  # noqa: F401  (the shared contract, for the kind modules)
from assay.crds.contracts.runner_settings import env_name

from . import kube, runevents
from .names import (
    ENVIRONMENT_ANNOTATION,
    LABEL_KIND,
    LABEL_NAME,
    LOCATION_ANNOTATION,
    REQUEST_ID_ANNOTATION,
    REQUESTED_AT_ANNOTATION,
    name_label,
    run_labels,
    run_secret_name_for,
)
from .runhistory import RequestState, history_status, now_iso, requested_at_now
from .runjob import build_runner_job, build_spec_configmap, build_upload_secret
from .runsecrets import build_values_secret, job_owner_reference, move_secrets, namespace_reader, resolve_values
from .settings import OperatorSettings
from .status import update_status

PLAN_FILE = "plan.json"
MANIFEST = "manifest"
"""The run's manifest among the documents whose secret values move to the run's Secret."""
PENDING_RETRY_SECONDS = 10
"""How soon a run waiting for a ConfigMap or Secret its spec names looks again."""


@dataclass(frozen=True)
class Location:
    """Where one Job of a run goes: a region or a remote agent, as node labels."""

    name: str
    """Label-safe id, the Job name's suffix: the region, or `agent-<name>`."""
    node_selector: dict[str, str]
    env: dict[str, str]
    """ASSAY_REGION or ASSAY_AGENT, which the runner writes into the result."""


@dataclass(frozen=True)
class RunPlan:
    """Everything a run's objects are built from; stored in the spec ConfigMap."""

    run_id: str
    request_id: str
    runner_args: list[str]
    options: dict
    """The runner's ASSAY_RUN_OPTIONS."""
    locations: list[Location] = field(default_factory=list)
    """One Job per location; none: one Job, on any node."""
    environment: str | None = None
    requested_at: str = ""

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> RunPlan:
        return cls(**{**data, "locations": [Location(**loc) for loc in data.get("locations") or []]})


def build_run_objects(
    owner: dict,
    plan: RunPlan,
    manifest_owner: dict,
    settings: OperatorSettings,
    extra_files: dict[str, object] | None = None,
    secret_name: str | None = None,
) -> tuple[dict, dict | None, list[dict]]:
    """(spec ConfigMap, upload Secret or None, Jobs) of a planned run. `manifest_owner` is the
    owner as the runner should see it (parameter pools resolved, secret values moved out);
    `secret_name` the Secret with the run's secret values, if it has any."""
    configmap = build_spec_configmap(manifest_owner, plan.run_id, {PLAN_FILE: plan.to_json(), **(extra_files or {})})
    secret = build_upload_secret(owner, plan.run_id, settings) if settings.uploads_enabled else None
    return configmap, secret, build_jobs(owner, plan, settings, secret_name)


def build_jobs(owner: dict, plan: RunPlan, settings: OperatorSettings, secret_name: str | None = None) -> list[dict]:
    annotations = {REQUEST_ID_ANNOTATION: plan.request_id, REQUESTED_AT_ANNOTATION: plan.requested_at}
    if plan.environment is not None:
        annotations[ENVIRONMENT_ANNOTATION] = plan.environment
    env = {env_name("run_options"): json.dumps(plan.options, sort_keys=True)}
    # Requested runs can come every minute for years: their Jobs go after a while (the status
    # keeps a finished run as recorded, the store keeps its result), so listing a resource's
    # Jobs stays cheap.
    ttl = settings.run_job_ttl_seconds
    if not plan.locations:
        return [
            build_runner_job(
                owner,
                plan.run_id,
                1,
                settings,
                plan.runner_args,
                env=env,
                annotations=annotations,
                ttl_seconds=ttl,
                secret_name=secret_name,
            )
        ]
    return [
        build_runner_job(
            owner,
            plan.run_id,
            1,
            settings,
            plan.runner_args,
            location=loc.name,
            node_selector=loc.node_selector,
            run_shards=len(plan.locations),
            env={**env, **loc.env, env_name("shard_index"): str(index)},
            annotations={**annotations, LOCATION_ANNOTATION: loc.name},
            ttl_seconds=ttl,
            secret_name=secret_name,
        )
        for index, loc in enumerate(plan.locations)
    ]


def start_run(
    owner: dict,
    plan: RunPlan,
    manifest_owner: dict,
    settings: OperatorSettings,
    logger: logging.Logger,
    extra_files: dict[str, object] | None = None,
) -> bool:
    """Create the run's objects unless they exist; True if this call started the run. Raises
    MissingSecret, having created nothing, when a Secret the spec references does not exist."""
    if not plan.requested_at:
        plan = replace(plan, requested_at=requested_at_now())
    meta = owner["metadata"]
    moved, fields = move_secrets({MANIFEST: manifest_owner, **(extra_files or {})}, run_secret_name_for(plan.run_id))
    manifest_owner = moved.pop(MANIFEST)
    values = resolve_values(fields, namespace_reader(meta["namespace"]))
    secret_name = run_secret_name_for(plan.run_id) if values else None
    configmap, secret, _ = build_run_objects(owner, plan, manifest_owner, settings, moved)
    existing, created = kube.create_if_absent(configmap)
    if not created and PLAN_FILE in (existing.get("data") or {}):
        plan = RunPlan.from_json(json.loads(existing["data"][PLAN_FILE]))
    if secret is not None:
        kube.create_if_absent(secret)
    started, jobs = False, []
    for job in build_jobs(owner, plan, settings, secret_name):
        job, job_created = kube.create_if_absent(job)
        jobs.append(job)
        started = started or job_created
    if secret_name:
        kube.create_if_absent(
            build_values_secret(
                secret_name,
                meta["namespace"],
                run_labels(owner["kind"], meta["name"], plan.run_id),
                [job_owner_reference(job) for job in jobs],
                values,
            )
        )
    if started:
        where = f" in {', '.join(loc.name for loc in plan.locations)}" if plan.locations else ""
        logger.info(f"run {plan.run_id} (request {plan.request_id!r}) started{where}")
    return started


def owner_jobs(kind: str, owner: dict) -> list[dict]:
    meta = owner["metadata"]
    selector = {LABEL_KIND: kind, LABEL_NAME: name_label(meta["name"])}
    return [
        job
        for job in kube.list_jobs(meta["namespace"], selector)
        if any(
            ref.get("uid") == meta["uid"] and ref.get("controller")
            for ref in job["metadata"].get("ownerReferences") or []
        )
    ]


def reconcile_status(
    kind: str,
    namespace: str,
    name: str,
    request_state,
    settings: OperatorSettings,
    logger: logging.Logger,
    pending: str | None = None,
    pending_reason: str = "Pending",
) -> dict | None:
    """Rebuild and write the owner's status; returns it (None if the owner is gone).

    `request_state(owner) -> RequestState` reads the run request (cheap, no I/O); `pending`
    says why the requested run has not started, with the condition reason `pending_reason`."""
    rebuilt: dict = {}

    def compute(owner: dict) -> dict | None:
        state: RequestState = request_state(owner)
        if pending and state.run_id and not state.error:
            state = RequestState(run_id=state.run_id, pending=pending, pending_reason=pending_reason)
        current = owner.get("status") or {}
        rebuilt["status"] = new = history_status(
            kind,
            owner_jobs(kind, owner),
            lambda job: kube.list_job_pods(namespace, job),
            current,
            state,
            limit=settings.run_history_limit,
            generation=owner["metadata"].get("generation"),
            now=now_iso(),
        )
        return None if all(current.get(k) == v for k, v in new.items()) else new

    written = update_status(kind, namespace, name, compute)
    if written is None:
        return rebuilt.get("status")
    runevents.status_written(kind, written.obj, written.before, written.after, logger)
    last, before = written.after.get("lastRun") or {}, written.before.get("lastRun") or {}
    state = last.get("result") or last.get("phase")
    if (last.get("runId"), state) != (before.get("runId"), before.get("result") or before.get("phase")):
        logger.info(f"run {last.get('runId')}: {state}")
    return written.after


def controller_owner(job: dict, kind: str) -> dict | None:
    return next(
        (
            ref
            for ref in (job.get("metadata") or {}).get("ownerReferences") or []
            if ref.get("kind") == kind and ref.get("controller")
        ),
        None,
    )
