"""A Monitor's runs, planned and started: which environment, where (regions and remote
agents), which subtests. Shared by the Monitor handlers (requested runs), the tick handlers
(a failed scheduled run's retry) and the Schedule planner (a tick group's members).

Regions: the environment's `regions` and `remoteAgents` are where the run executes. Each one
is a Job of its own, `<run-id>-<region>` (`<run-id>-agent-<name>` for a remote agent), whose
pod has the node selector `topology.kubernetes.io/region=<region>`
(`assay.dev/agent=<name>`) and ASSAY_REGION (ASSAY_AGENT) in its environment, so the result
it uploads says where it ran. One Job per region rather than one Indexed Job: every pod of a
Job shares one pod template, hence one node selector, and a pod cannot learn its node's
labels to pick its region after scheduling. Without regions the run is one Job, `<run-id>`,
on any node. The run passes when every region passed; the status lists the regions and its
`Complete` condition says each region's result.

Subtests name other Monitors of the namespace (`monitor`, or `testUuid` = metadata.uid);
they are resolved when the run starts and go into the run's ConfigMap, because runner pods
have no API access. A subtest that does not exist fails its step, as in Runscope.
"""

from __future__ import annotations

import json
import re

from pydantic import ValidationError

from assay.crds.common import error_summary
from assay.crds.contracts.runner_settings import env_name
from assay.crds.monitor import (
    SHARED_ENVIRONMENTS_CONFIGMAP,
    ConditionStep,
    Environment,
    MonitorSpec,
    SubtestStep,
    inherit_environment,
)
from assay.crds.runrequest import AGENT_LABEL, REGION_LABEL, InvalidRunRequest, MonitorRunRequest, parse_run_request

from . import kube
from .names import run_id_for_request
from .runhistory import RequestState
from .runjob import SPEC_MOUNT, manifest_of
from .runs import Location, RunPlan, recorded_run_ids, start_run
from .status import INVALID_SPEC

PLURAL = "monitors"
SUBTESTS_FILE = "subtests.json"
MAX_SUBTEST_DEPTH = 10
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


def find_environment(spec: MonitorSpec, wanted: str | None) -> Environment | None:
    """The environment named (or with the id) `wanted`; the default one when None."""
    if wanted is None:
        return spec.environment(None)
    for env in spec.environments:
        if wanted in (env.name, env.id):
            return env
    names = ", ".join(e.name for e in spec.environments) or "none"
    raise InvalidRunRequest(f"environment {wanted!r}: the Monitor has no such environment (has: {names})")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")


def locations_for(env: Environment | None, request: MonitorRunRequest | None = None) -> list[Location]:
    """One Location per region and remote agent of the environment, as node selectors; the
    request's regions and agents instead when it names any (`MonitorRunRequest.places`)."""
    if request is not None and request.places():
        where, regions, agents = "the run request", list(request.regions or []), list(request.remote_agents or [])
    elif env is not None:
        where, regions, agents = f"environment {env.name!r}", list(env.regions), [a.name for a in env.remote_agents]
    else:
        return []
    wanted = [(region, REGION_LABEL, region, env_name("region"), _slug(region)) for region in regions]
    wanted += [
        (f"remote agent {agent!r}", AGENT_LABEL, agent, env_name("agent"), f"agent-{_slug(agent)}") for agent in agents
    ]
    locations, seen = [], set()
    for what, label, value, variable, name in wanted:
        if not _LABEL_VALUE.match(value) or not name or name == "agent-" or len(name) > 63:
            raise InvalidRunRequest(f"{where}: {what} is not a valid node label value")
        if name in seen:
            raise InvalidRunRequest(f"{where}: {what} appears twice")
        seen.add(name)
        locations.append(Location(name=name, node_selector={label: value}, env={variable: value}))
    return locations


def _spec(owner: dict) -> MonitorSpec:
    try:
        return MonitorSpec.model_validate(owner["spec"])
    except ValidationError as exc:
        raise InvalidRunRequest(f"invalid spec: {error_summary(exc)}") from None


def spec_problem(owner: dict) -> str | None:
    """Why the Monitor's spec cannot be run, or None."""
    try:
        _spec(owner)
    except InvalidRunRequest as exc:
        return str(exc)
    return None


def with_parent_environments(owner: dict, shared: dict | None) -> dict:
    """The owner with each environment merged over the shared environment its
    parentEnvironmentId names (`shared` is the SHARED_ENVIRONMENTS_CONFIGMAP ConfigMap). The
    runner reads the merged spec, so inheritance is settled when the run is planned; a parent
    that no longer exists leaves the environment as it is."""
    envs = owner["spec"].get("environments") or []
    if not any(env.get("parentEnvironmentId") for env in envs):
        return owner
    data = (shared or {}).get("data") or {}
    parents = {}
    for key, text in data.items():
        try:
            parents[key] = json.loads(text)
        except ValueError:
            continue
    merged = [inherit_environment(env, parents.get(env.get("parentEnvironmentId") or "")) for env in envs]
    return {**owner, "spec": {**owner["spec"], "environments": merged}}


def plan_run(owner: dict, request: MonitorRunRequest, requested_at: str = "") -> RunPlan:
    """Raises InvalidRunRequest for an environment the Monitor does not have, or regions or
    agents (the environment's or the request's) that cannot be node labels."""
    meta = owner["metadata"]
    env = find_environment(_spec(owner), request.environment)
    return RunPlan(
        run_id=run_id_for_request(meta["name"], meta["uid"], request.id),
        request_id=request.id,
        runner_args=["monitor", "--subtests", f"{SPEC_MOUNT}/{SUBTESTS_FILE}"],
        options={"environment": env.name if env else None, "params": dict(request.params)},
        locations=locations_for(env, request),
        environment=env.name if env else None,
        requested_at=requested_at,
    )


def request_state(owner: dict) -> RequestState:
    try:
        request = parse_run_request(owner["metadata"].get("annotations"), MonitorRunRequest)
        if request is None:
            return RequestState()
        if (problem := spec_problem(owner)) is not None:
            return RequestState(error=problem, error_reason=INVALID_SPEC)
        return RequestState(run_id=plan_run(owner, request).run_id)
    except InvalidRunRequest as exc:
        return RequestState(error=str(exc))


def subtest_targets(spec: dict) -> list[str]:
    steps = MonitorSpec.model_validate(spec).steps
    inner = [s for step in steps for s in (step.steps if isinstance(step, ConditionStep) else [step])]
    return [s.monitor or s.test_uuid for s in inner if isinstance(s, SubtestStep) and (s.monitor or s.test_uuid)]


def resolve_subtests(owner: dict, monitors: list[dict]) -> list[dict]:
    """The Monitors that `owner`'s subtests name, transitively, as manifests for the runner."""
    by_key = {key: m for m in monitors for key in (m["metadata"]["name"], m["metadata"]["uid"])}
    found: dict[str, dict] = {}
    frontier, depth = [owner], 0
    while frontier and depth < MAX_SUBTEST_DEPTH:
        following = []
        for monitor in frontier:
            try:
                targets = subtest_targets(monitor["spec"])
            except ValidationError:
                continue
            for target in targets:
                other = by_key.get(target)
                if other is not None and other["metadata"]["uid"] not in found:
                    found[other["metadata"]["uid"]] = other
                    following.append(other)
        frontier, depth = following, depth + 1
    return [manifest_of(m) for m in found.values() if m["metadata"]["uid"] != owner["metadata"]["uid"]]


def start_requested_run(owner: dict, request: MonitorRunRequest, status: dict, settings, logger) -> None:
    """Start the run `request` asks for unless the status records it already. Raises
    InvalidRunRequest for a request this Monitor cannot run."""
    namespace = owner["metadata"]["namespace"]
    if any(env.get("parentEnvironmentId") for env in owner["spec"].get("environments") or []):
        owner = with_parent_environments(owner, kube.read_config_map(namespace, SHARED_ENVIRONMENTS_CONFIGMAP))
    plan = plan_run(owner, request)
    if plan.run_id in recorded_run_ids(status):
        return
    subtests = resolve_subtests(owner, kube.list_custom(PLURAL, namespace)) if subtest_targets(owner["spec"]) else []
    start_run(owner, plan, owner, settings, logger, extra_files={SUBTESTS_FILE: subtests})
