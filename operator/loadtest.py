"""LoadTest handlers: start the run once, mirror its Job into the LoadTest status, and show
the live figures of a running one.

A LoadTest runs exactly once. Starting is idempotent (deterministic names, create-if-absent,
nothing started for a finished LoadTest); the status is level-based: every event on the run's
Job recomputes it from the Job and its pods, so a restarted operator catches up on whatever
happened while it was away.

Live figures: the shards push their progress to the gateway (the runner never touches the
Kubernetes API), and while a LoadTest is Running a timer reads the merged progress from the
gateway every few seconds into `status.progress`. The operator stays the only writer of the
status; the mirror removes `progress` when the run finishes, as the gateway drops it then.
Both write through status.update_status; `start_run` sets the run id through Kopf's patch.
"""

from __future__ import annotations

import asyncio
import functools
from datetime import datetime, timezone

import httpx
import kopf
from pydantic import ValidationError

from assay.crds.contracts.upload import RunGrant, upload_token
from assay.crds.loadtest import LoadProgress, LoadTestSpec

from . import kube, runevents
from .names import GROUP, LABEL_KIND, VERSION, job_name_for, run_id_for
from .runjob import build_runner_job, build_spec_configmap, build_upload_secret
from .runhistory import COMPLETE, now_iso
from .runstatus import TERMINAL_PHASES, loadtest_status
from .settings import get_settings
from .status import reject_spec, update_status

KIND = "LoadTest"
PLURAL = "loadtests"
PROGRESS_INTERVAL_SECONDS = 3.0
GATEWAY_TIMEOUT_SECONDS = 2.0


def _validated_spec(spec: dict, namespace: str, name: str) -> LoadTestSpec:
    try:
        return LoadTestSpec.model_validate(dict(spec))
    except ValidationError as exc:
        # The API server's schema catches nearly everything; this is the backstop for rules
        # it cannot express.
        raise reject_spec(KIND, namespace, name, COMPLETE, f"invalid spec: {exc}", now_iso()) from exc


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
def start_run(body, spec, name, namespace, uid, status, logger, **_):
    if status.get("phase") in TERMINAL_PHASES:
        return
    parsed = _validated_spec(spec, namespace, name)
    run_id = run_id_for(name, uid)
    owner = {
        "apiVersion": body["apiVersion"],
        "kind": body["kind"],
        "metadata": dict(body["metadata"]),
        "spec": dict(spec),
    }
    settings = get_settings()
    kube.create_if_absent(build_spec_configmap(owner, run_id))
    if settings.uploads_enabled:
        kube.create_if_absent(build_upload_secret(owner, run_id, settings))
    pools = [
        (pool.config_map_ref.name, pool.config_map_ref.key) for pool in parsed.parameter_pools if pool.config_map_ref
    ]
    _, created = kube.create_if_absent(
        build_runner_job(owner, run_id, parsed.shards, settings, ["loadtest"], pool_config_maps=pools)
    )
    if created:
        logger.info(f"run {run_id}: started {parsed.shards} shard(s)")
    if status.get("runId") != run_id:
        # Through the one status path, onto the object as read: the Job's mirror may have
        # written Running meanwhile, which a blind patch of Pending would undo (and the
        # progress timer, which runs while Running, would stop with it).
        update_status(KIND, namespace, name, lambda loadtest: first_run_status(loadtest, run_id))


def first_run_status(loadtest: dict, run_id: str) -> dict | None:
    """The run's id and Job on a LoadTest that has not recorded them yet; its phase Pending
    unless the mirror already set one."""
    current = loadtest.get("status") or {}
    if current.get("runId") == run_id:
        return None
    return {"runId": run_id, "jobName": job_name_for(run_id), "phase": current.get("phase") or "Pending"}


@kopf.on.event("batch", "v1", "jobs", labels={LABEL_KIND: KIND})
def mirror_job(body, namespace, type, logger, **_):
    owner = next(
        (
            ref
            for ref in body["metadata"].get("ownerReferences", [])
            if ref.get("kind") == KIND and ref.get("controller")
        ),
        None,
    )
    if owner is None or type == "DELETED":
        return
    job_name = body["metadata"]["name"]
    pods: list[dict] = []

    def compute(loadtest: dict) -> dict | None:
        if loadtest["metadata"]["uid"] != owner["uid"]:
            return None
        current = loadtest.get("status") or {}
        if current.get("phase") in TERMINAL_PHASES:
            return None
        pods[:] = pods or kube.list_job_pods(namespace, job_name)
        new = loadtest_status(
            dict(body),
            pods,
            int(loadtest["spec"].get("shards", 1)),
            loadtest["metadata"].get("generation"),
            criteria=list(loadtest["spec"].get("criteria") or []),
        )
        new["runId"] = body["metadata"]["labels"].get("assay.dev/run-id", current.get("runId"))
        new["jobName"] = job_name
        if new["phase"] in TERMINAL_PHASES:
            # Live figures end with the run (`summary` has the final ones). Sent with the final
            # phase even when this read saw none: a progress tick may have landed since.
            new["progress"] = None
        return new if any(current.get(k) != v for k, v in new.items()) else None

    written = update_status(KIND, namespace, owner["name"], compute)
    if written is None:
        return
    runevents.status_written(KIND, written.obj, written.before, written.after, logger)
    before, new = written.before, written.after
    if new["phase"] != before.get("phase"):
        logger.info(
            f"run {new['runId']}: {before.get('phase', '-')} -> {new['phase']}"
            + (f" ({new['result']})" if new.get("result") else "")
        )


# --- live progress ------------------------------------------------------------------------------


def progress_status(answer: dict) -> dict | None:
    """`status.progress` from the gateway's answer about the run (GET /internal/v1/runs/<id>):
    its merged progress, or None when there is none (not started, or finished). Every field
    is present, unset ones as None, so that a merge patch also removes what went away."""
    merged = (answer.get("progress") or {}).get("merged")
    if not merged:
        return None
    updated = merged.get("updatedAt")
    progress = LoadProgress(
        requests=merged.get("requests") or 0,
        errors=merged.get("errors") or 0,
        rps=merged.get("rps") or 0.0,
        p95_ms=merged.get("p95Ms"),
        active_users=merged.get("activeUsers") or 0,
        shards_reporting=merged.get("shardsReporting") or 0,
        updated_at=datetime.fromtimestamp(int(updated), timezone.utc) if updated is not None else None,
    )
    return progress.model_dump(mode="json", by_alias=True)


@functools.cache
def _gateway() -> httpx.AsyncClient:
    """One connection pool for every LoadTest's timer. Asynchronous, so that a gateway that
    does not answer holds no thread of the pool the synchronous handlers run in."""
    return httpx.AsyncClient(base_url=get_settings().gateway_url, timeout=GATEWAY_TIMEOUT_SECONDS)


@kopf.on.cleanup()
async def close_gateway_client(**_):
    if _gateway.cache_info().currsize:
        await _gateway().aclose()
        _gateway.cache_clear()


def _running_with_gateway(status, **_) -> bool:
    return status.get("phase") == "Running" and get_settings().uploads_enabled


@kopf.timer(GROUP, VERSION, PLURAL, interval=PROGRESS_INTERVAL_SECONDS, when=_running_with_gateway)
async def refresh_progress(name, namespace, uid, meta, status, logger, **_):
    """Copy the run's merged live progress from the gateway into status.progress. Only while
    Running (Kopf stops the timer when the filter stops matching); a gateway that does not
    answer costs this tick only."""
    if status.get("phase") != "Running":  # the filter matched an older version of the object
        return
    run_id = status.get("runId") or run_id_for(name, uid)
    token = upload_token(
        get_settings().upload_key.get_secret_value(), RunGrant(namespace, "LoadTest", name, uid, run_id)
    )
    try:
        response = await _gateway().get(f"/internal/v1/runs/{run_id}", headers={"Authorization": f"Bearer {token}"})
    except httpx.HTTPError as exc:
        logger.debug(f"run {run_id}: no progress from the gateway ({type(exc).__name__}: {exc}); next tick")
        return
    if response.status_code != 200:
        # 404: no shard has reported yet.
        logger.debug(f"run {run_id}: no progress from the gateway (HTTP {response.status_code}); next tick")
        return
    try:
        progress = progress_status(response.json())
    except ValueError as exc:
        logger.debug(f"run {run_id}: the gateway's answer is not the run's ({exc}); next tick")
        return
    current = status.get("progress") or {}
    if progress is None or {k: v for k, v in progress.items() if v is not None} == current:
        return
    seen = {"metadata": dict(meta), "status": dict(status)}
    try:
        # Only onto the object as this tick saw it (one attempt: the next tick is the retry),
        # so a run that finished meanwhile keeps the mirror's final status, without live
        # figures written after it.
        await asyncio.to_thread(
            update_status, KIND, namespace, name, lambda _: {"progress": progress}, first=seen, attempts=1
        )
    except kube.Conflict:
        logger.debug(f"run {run_id}: the LoadTest changed meanwhile; progress on the next tick")
