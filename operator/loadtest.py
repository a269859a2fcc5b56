"""LoadTest handlers: start the run once, mirror its Job into the LoadTest status.

A LoadTest runs exactly once. Starting is idempotent (deterministic names, create-if-absent,
nothing started for a finished LoadTest); the status is level-based: every event on the run's
Job recomputes it from the Job and its pods, so a restarted operator catches up on whatever
happened while it was away.
"""

from __future__ import annotations

import kopf
from pydantic import ValidationError

from assay.crds.loadtest import LoadTestSpec

from . import kube
from .names import GROUP, LABEL_KIND, VERSION, job_name_for, run_id_for
from .runjob import build_runner_job, build_spec_configmap, build_upload_secret
from .runstatus import TERMINAL_PHASES, loadtest_status
from .settings import get_settings

PLURAL = "loadtests"


def _validated_spec(spec: dict) -> LoadTestSpec:
    try:
        return LoadTestSpec.model_validate(dict(spec))
    except ValidationError as exc:
        # The API server's schema catches nearly everything; this is the backstop for rules
        # it cannot express. Permanent: retrying a bad spec cannot fix it.
        raise kopf.PermanentError(f"invalid spec: {exc}") from exc


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
def start_run(body, spec, name, uid, status, patch, logger, **_):
    if status.get("phase") in TERMINAL_PHASES:
        return
    parsed = _validated_spec(spec)
    run_id = run_id_for(name, uid)
    owner = {"apiVersion": body["apiVersion"], "kind": body["kind"],
             "metadata": dict(body["metadata"]), "spec": dict(spec)}
    settings = get_settings()
    kube.create_if_absent(build_spec_configmap(owner, run_id))
    if settings.uploads_enabled:
        kube.create_if_absent(build_upload_secret(owner, run_id, settings))
    pools = [(pool.config_map_ref.name, pool.config_map_ref.key)
             for pool in parsed.parameter_pools if pool.config_map_ref]
    _, created = kube.create_if_absent(
        build_runner_job(owner, run_id, parsed.shards, settings, ["loadtest"], pool_config_maps=pools))
    if created:
        logger.info(f"run {run_id}: started {parsed.shards} shard(s)")
    if status.get("runId") != run_id:
        patch.status["runId"] = run_id
        patch.status["jobName"] = job_name_for(run_id)
        patch.status.setdefault("phase", status.get("phase") or "Pending")


@kopf.on.event("batch", "v1", "jobs", labels={LABEL_KIND: "LoadTest"})
def mirror_job(body, namespace, type, logger, **_):
    owner = next((ref for ref in body["metadata"].get("ownerReferences", [])
                  if ref.get("kind") == "LoadTest" and ref.get("controller")), None)
    if owner is None or type == "DELETED":
        return
    loadtest = kube.read_custom(PLURAL, namespace, owner["name"])
    if loadtest is None or loadtest["metadata"]["uid"] != owner["uid"]:
        return
    current = loadtest.get("status") or {}
    if current.get("phase") in TERMINAL_PHASES:
        return
    job_name = body["metadata"]["name"]
    pods = kube.list_job_pods(namespace, job_name)
    shards = int(loadtest["spec"].get("shards", 1))
    new = loadtest_status(dict(body), pods, shards, loadtest["metadata"].get("generation"),
                          criteria=list(loadtest["spec"].get("criteria") or []))
    new["runId"] = body["metadata"]["labels"].get("assay.dev/run-id", current.get("runId"))
    new["jobName"] = job_name
    if any(current.get(k) != v for k, v in new.items()):
        kube.patch_status(PLURAL, namespace, owner["name"], new)
        if new["phase"] != current.get("phase"):
            logger.info(f"run {new['runId']}: {current.get('phase', '-')} -> {new['phase']}"
                        + (f" ({new['result']})" if new.get("result") else ""))
