"""Runscope tests as Monitors: tests, steps, environments, schedules, revisions and triggers.

A test is a Monitor of the bucket's namespace and its id is the Monitor's metadata.uid; step
and environment ids live in the spec (the gateway assigns them); a schedule is a Schedule
resource owned by the Monitor, so deleting the test deletes its schedules and, through the
Monitor's own children, its runs' objects. Shared environments are the bucket's ConfigMap
SHARED_ENVIRONMENTS_CONFIGMAP; the operator merges a test environment over the parent it names
when it plans a run. Every change to a test or environment is kept as a revision record.

Writes read the object, change it and replace it with the resourceVersion read, so two
concurrent changes cannot lose one another: a 409 from the API server means read again (the
shared optimistic loop, `update` of api/services). A trigger asks for a run through
api/services/runs.py.

The trigger id is HMAC(signing key, "runscope-trigger/" + Monitor uid), shaped as a UUID: a
capability secret nobody stores, so the gateway finds a Monitor from it by computing each
Monitor's id and comparing in constant time. A bucket's trigger id is the same over
"bucket/" + the namespace's uid, and runs each of its tests. A trigger's parameters
(TriggerSet) pick the environment and, optionally, the regions and remote agents the run goes
to instead of the environment's (MonitorRunRequest.places).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

from kubernetes.client.rest import ApiException

from assay.crds.monitor import SHARED_ENVIRONMENTS_CONFIGMAP, inherit_environment
from assay.crds.runrequest import AGENT_LABEL, REGION_LABEL
from assay.crds.times import epoch

from ..auth import Principal
from ..kube import NotFound as KubeNotFound
from ..kube import present
from . import Conflict, InvalidInput, NotFound, update
from . import runscope_mapping as mapping
from .runscope_results import record_source
from .runs import RunRequests

PLURAL = "monitors"
SCHEDULES = "schedules"
REVISIONS = "runscope-revisions"
"""Store collection: one record per change of a test or an environment."""
CREATED_BY_ANNOTATION = "assay.dev/created-by"
CREATED_AT_ANNOTATION = "assay.dev/created-at"
"""Epoch seconds with a fraction: creationTimestamp has whole seconds, too coarse to list the
tests of one multi-test create in their order."""
MAX_BUCKET_ENVIRONMENTS = 100
_PROCESS_KEY = secrets.token_bytes(32)
TRIGGER_CONTROL = "runscope_"
"""Trigger parameters with this prefix steer the run (TriggerSet); the rest are variables."""
MAX_BATCH = 50
"""Runs one batch trigger may ask for, as Runscope's batch trigger URL takes."""


@dataclass
class TriggerSet:
    """One run's parameters at a trigger URL: `runscope_environment` (an id or a name),
    `runscope_region` and `runscope_agent` (each repeatable or comma-separated; None when not
    given, so the environment's apply) and the initial variables. Other `runscope_`
    parameters (`runscope_notification_url`) are reserved and ignored."""

    environment: Optional[str] = None
    regions: Optional[list[str]] = None
    agents: Optional[list[str]] = None
    params: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, *sources: Iterable[tuple[str, str]]) -> "TriggerSet":
        """The parameters of `sources` (the query, then a body); a later source's value of a
        parameter replaces an earlier one's."""
        run = cls()
        for pairs in sources:
            given: dict[str, list[str]] = {}
            for key, value in pairs:
                if key == TRIGGER_CONTROL + "environment":
                    run.environment = value or None
                elif key in (TRIGGER_CONTROL + "region", TRIGGER_CONTROL + "agent"):
                    listed = given.setdefault(key, [])
                    listed += [p.strip() for p in value.split(",") if p.strip() and p.strip() not in listed]
                elif not key.startswith(TRIGGER_CONTROL):
                    run.params[key] = value
            run.regions = given.get(TRIGGER_CONTROL + "region") or run.regions
            run.agents = given.get(TRIGGER_CONTROL + "agent") or run.agents
        return run


def monitor_by_test_id(kube, namespace: str, test_id: str) -> Optional[dict]:
    """The Monitor in `namespace` whose uid is `test_id`; None when there is none.

    Custom resources cannot be selected by uid on the server, so this lists the namespace's
    Monitors; a bucket holds tens of tests, not thousands."""
    for monitor in present(kube.list(PLURAL, namespace)):
        if monitor.get("metadata", {}).get("uid") == test_id:
            return monitor
    return None


def created_by(monitor: dict) -> Optional[dict]:
    """The test's `created_by` (email, name, id), as the API stored it when it created the
    Monitor; None for a Monitor applied some other way."""
    text = ((monitor.get("metadata") or {}).get("annotations") or {}).get(CREATED_BY_ANNOTATION)
    try:
        author = json.loads(text or "null")
    except ValueError:
        return None
    return author if isinstance(author, dict) else None


def monitor_name_for(display_name: str) -> str:
    """A DNS-label Monitor name from a Runscope test name: a slug plus a random suffix."""
    slug = re.sub(r"[^a-z0-9]+", "-", display_name.lower()).strip("-")[:40].strip("-") or "test"
    return f"{slug}-{uuid.uuid4().hex[:6]}"


def trigger_id_for(key: bytes, monitor_uid: str) -> str:
    digest = hmac.new(key, f"runscope-trigger/{monitor_uid}".encode(), hashlib.sha256).digest()
    return str(uuid.UUID(bytes=digest[:16]))


def same_id(expected: str, given: str) -> bool:
    """Constant-time equality; as bytes, since a path may carry any character."""
    return hmac.compare_digest(expected.encode(), given.encode())


def _invalid_from_api(exc: ApiException) -> InvalidInput:
    try:
        message = json.loads(exc.body).get("message") or str(exc.reason)
    except (TypeError, ValueError):
        message = str(exc.reason)
    return InvalidInput(message)


class RunscopeTests:
    def __init__(self, kube, store, settings, sleep: Callable[[float], None] = time.sleep):
        self.kube, self.store, self.settings = kube, store, settings
        self.runs = RunRequests(kube, sleep=sleep)
        key = settings.token_signing_key
        self.trigger_key = key.get_secret_value().encode() if key else _PROCESS_KEY
        self.public_url = settings.public_url.rstrip("/")

    # --- tests ----------------------------------------------------------------------------

    def monitor(self, namespace: str, test_id: str) -> dict:
        monitor = monitor_by_test_id(self.kube, namespace, test_id)
        if monitor is None:
            raise NotFound(f"test {test_id!r} not found")
        return monitor

    def monitors(self, namespace: str) -> list[dict]:
        """Newest first, as Runscope lists a bucket's tests."""
        return sorted(present(self.kube.list(PLURAL, namespace)), key=_creation_order, reverse=True)

    def trigger_url(self, monitor: dict) -> str:
        return f"{self.public_url}/radar/{trigger_id_for(self.trigger_key, monitor['metadata']['uid'])}/trigger"

    def summary(self, monitor: dict) -> dict:
        meta, spec = monitor["metadata"], monitor.get("spec") or {}
        return {
            "id": meta["uid"],
            "name": spec.get("displayName") or meta["name"],
            "description": spec.get("description") or None,
            "created_at": int(epoch(meta.get("creationTimestamp")) or 0),
            "created_by": created_by(monitor),
            "default_environment_id": mapping.default_environment_id(spec),
            "last_run": mapping.last_run_to_runscope(
                monitor.get("status") or {}, spec, meta["namespace"], meta["uid"], self.public_url
            ),
            "trigger_url": self.trigger_url(monitor),
        }

    def detail(self, monitor: dict) -> dict:
        meta, spec = monitor["metadata"], monitor.get("spec") or {}
        return {
            **self.summary(monitor),
            "steps": self.steps(monitor),
            "environments": [mapping.environment_to_runscope(e, meta["uid"]) for e in spec.get("environments") or []],
            "schedules": [mapping.schedule_to_runscope(s) for s in self._schedules_of(monitor)],
        }

    def list_tests(self, namespace: str, count: int, offset: int) -> list[dict]:
        return [self.summary(m) for m in self.monitors(namespace)[offset : offset + count]]

    def create_tests(self, namespace: str, body: Any, principal: Principal) -> list[dict]:
        docs = body if isinstance(body, list) else [body]
        if not docs:
            raise InvalidInput("the body must be a test object or a non-empty list of them")
        specs = [mapping.test_spec_from_runscope(doc) for doc in docs]
        added = sum(len(s["environments"]) for s in specs)
        self._check_environment_room(namespace, added)
        created = []
        for spec in specs:
            manifest = mapping.monitor_manifest(
                monitor_name_for(spec["displayName"]),
                spec,
                {
                    CREATED_BY_ANNOTATION: json.dumps(self._author(principal)),
                    CREATED_AT_ANNOTATION: f"{time.time():.6f}",
                },
            )
            try:
                monitor = self.kube.create(PLURAL, namespace, manifest)
            except ApiException as exc:
                if exc.status in (400, 422):
                    raise _invalid_from_api(exc) from None
                raise
            self._revision(namespace, monitor, principal, "radar_test")
            created.append(monitor)
        return created

    def modify(self, namespace: str, test_id: str, body: Any, principal: Principal) -> dict:
        return self.update(namespace, test_id, lambda spec: mapping.modified_spec(spec, body), principal)

    def delete(self, namespace: str, test_id: str) -> None:
        monitor = self.monitor(namespace, test_id)
        # Owner references would remove the Schedules too; deleting them first stops their
        # CronJobs at once rather than when the garbage collector gets there.
        for schedule in self._schedules_of(monitor):
            self.kube.delete(SCHEDULES, namespace, schedule["metadata"]["name"])
        self.kube.delete(PLURAL, namespace, monitor["metadata"]["name"])

    def update(
        self,
        namespace: str,
        test_id: str,
        change: Callable[[dict], dict],
        principal: Principal,
        environment_id: Optional[str] = None,
    ) -> dict:
        """Apply `change(spec) -> spec` to the test and keep a revision; returns the Monitor."""

        def write(monitor: dict, spec: dict) -> dict:
            try:
                return self.kube.replace(PLURAL, namespace, monitor["metadata"]["name"], {**monitor, "spec": spec})
            except ApiException as exc:
                if exc.status in (400, 422):
                    raise _invalid_from_api(exc) from None
                raise

        updated = update(
            lambda: self.monitor(namespace, test_id),
            lambda monitor: mapping.validated_spec(change(mapping.with_ids(monitor.get("spec") or {}))),
            write,
            exhausted="the test kept changing while it was being modified; try again",
            retry_after=1,
        )
        if environment_id:
            self._revision(namespace, updated, principal, "environment", environment_id)
        else:
            self._revision(namespace, updated, principal, "radar_test")
        return updated

    # --- revisions ------------------------------------------------------------------------

    @staticmethod
    def _author(principal: Principal) -> dict:
        return {"email": principal.email, "name": principal.credential, "id": principal.client_id}

    def _revision(
        self, namespace: str, monitor: dict, principal: Principal, item_type: str, environment_id: Optional[str] = None
    ) -> None:
        revision = {
            "uuid": str(uuid.uuid4()),
            "timestamp": round(time.time(), 2),
            "item_type": item_type,
            "author_uuid": principal.client_id,
            "author_name": principal.credential,
            "author_email": principal.email,
            "organization_id": principal.organization,
            "bucket_key": namespace,
            "source": "api",
        }
        self.store.put_record(
            REVISIONS,
            revision["uuid"],
            {
                "revision": revision,
                "testId": monitor["metadata"]["uid"],
                "environmentId": environment_id,
                "spec": monitor.get("spec"),
                "resourceVersion": monitor["metadata"].get("resourceVersion"),
            },
            project=namespace,
        )

    def revisions(self, namespace: str, test_id: str) -> dict:
        self.monitor(namespace, test_id)
        records = [r for r in self.store.list_records(REVISIONS, project=namespace) if r.get("testId") == test_id]
        env_revisions: dict[str, list] = {}
        for record in records:
            if record.get("environmentId"):
                env_revisions.setdefault(record["environmentId"], []).append(record["revision"])
        return {
            "test_revisions": [r["revision"] for r in records if not r.get("environmentId")],
            "env_revisions": env_revisions,
        }

    # --- steps ----------------------------------------------------------------------------

    @staticmethod
    def _find_step(spec: dict, step_id: str) -> dict:
        for step in mapping.all_steps(spec.get("steps") or []):
            if step.get("id") == step_id:
                return step
        raise NotFound(f"step {step_id!r} not found")

    def add_step(self, namespace: str, test_id: str, body: Any, principal: Principal) -> dict:
        step = mapping.step_from_runscope(body)
        return self.update(
            namespace, test_id, lambda spec: {**spec, "steps": [*(spec.get("steps") or []), step]}, principal
        )

    @staticmethod
    def steps(monitor: dict) -> list[dict]:
        return [mapping.step_to_runscope(s) for s in (monitor.get("spec") or {}).get("steps") or []]

    def step(self, namespace: str, test_id: str, step_id: str) -> dict:
        return mapping.step_to_runscope(self._find_step(self.monitor(namespace, test_id).get("spec") or {}, step_id))

    def modify_step(self, namespace: str, test_id: str, step_id: str, body: Any, principal: Principal) -> dict:
        if not isinstance(body, dict):
            raise InvalidInput("a step must be a JSON object")

        def change(spec: dict) -> dict:
            current = mapping.step_to_runscope(self._find_step(spec, step_id))
            new = mapping.step_from_runscope({**current, **body, "id": step_id}, keep_id=True)
            return {**spec, "steps": _replace_step(spec.get("steps") or [], step_id, new)}

        monitor = self.update(namespace, test_id, change, principal)
        return mapping.step_to_runscope(self._find_step(monitor["spec"], step_id))

    def delete_step(self, namespace: str, test_id: str, step_id: str, principal: Principal) -> None:
        def change(spec: dict) -> dict:
            self._find_step(spec, step_id)
            return {**spec, "steps": _replace_step(spec.get("steps") or [], step_id, None)}

        self.update(namespace, test_id, change, principal)

    def reorder_steps(self, namespace: str, test_id: str, order: Any, principal: Principal) -> list[dict]:
        monitor = self.update(
            namespace,
            test_id,
            lambda spec: {**spec, "steps": mapping.reordered_steps(spec.get("steps") or [], order)},
            principal,
        )
        return self.steps(monitor)

    # --- test environments ----------------------------------------------------------------

    def environments(self, namespace: str, test_id: str) -> list[dict]:
        monitor = self.monitor(namespace, test_id)
        return [mapping.environment_to_runscope(e, test_id) for e in monitor["spec"].get("environments") or []]

    def environment(self, namespace: str, test_id: str, env_id: str) -> dict:
        env = mapping.environment_by_id(self.monitor(namespace, test_id).get("spec") or {}, env_id)
        if env is None:
            raise NotFound(f"environment {env_id!r} not found")
        return mapping.environment_to_runscope(env, test_id)

    def create_environment(self, namespace: str, test_id: str, body: Any, principal: Principal) -> dict:
        env = mapping.environment_from_runscope(body)
        self._check_parent(namespace, env)
        self._check_environment_room(namespace, 1)

        def change(spec: dict) -> dict:
            return {**spec, "environments": [*(spec.get("environments") or []), env]}

        self.update(namespace, test_id, change, principal, environment_id=env["id"])
        return mapping.environment_to_runscope(env, test_id)

    def modify_environment(self, namespace: str, test_id: str, env_id: str, body: Any, principal: Principal) -> dict:
        env = mapping.environment_from_runscope(body, env_id)
        self._check_parent(namespace, env)

        def change(spec: dict) -> dict:
            old = mapping.environment_by_id(spec, env_id)
            if old is None:
                raise NotFound(f"environment {env_id!r} not found")
            envs = [env if e.get("id") == env_id else e for e in spec.get("environments") or []]
            spec = {**spec, "environments": envs}
            if spec.get("defaultEnvironment") == old["name"]:
                spec["defaultEnvironment"] = env["name"]
            return spec

        self.update(namespace, test_id, change, principal, environment_id=env_id)
        return mapping.environment_to_runscope(env, test_id)

    def delete_environment(self, namespace: str, test_id: str, env_id: str, principal: Principal) -> None:
        def change(spec: dict) -> dict:
            old = mapping.environment_by_id(spec, env_id)
            if old is None:
                raise NotFound(f"environment {env_id!r} not found")
            spec = {**spec, "environments": [e for e in spec["environments"] if e.get("id") != env_id]}
            if spec.get("defaultEnvironment") == old["name"]:
                spec.pop("defaultEnvironment")
            return spec

        self.update(namespace, test_id, change, principal, environment_id=env_id)

    def _check_environment_room(self, namespace: str, adding: int) -> None:
        used = sum(len((m.get("spec") or {}).get("environments") or []) for m in self.kube.list(PLURAL, namespace))
        used += len(self._shared(namespace)[1])
        if used + adding > MAX_BUCKET_ENVIRONMENTS:
            raise InvalidInput(
                f"a bucket holds at most {MAX_BUCKET_ENVIRONMENTS} environments (test and shared); this one has {used}"
            )

    def _check_parent(self, namespace: str, env: dict) -> None:
        parent = env.get("parentEnvironmentId")
        if parent and parent not in self._shared(namespace)[1]:
            raise InvalidInput(f"parent_environment_id: the bucket has no shared environment {parent!r}")

    # --- shared environments --------------------------------------------------------------

    def _shared(self, namespace: str) -> tuple[Optional[dict], dict[str, dict]]:
        config_map = self.kube.config_map(namespace, SHARED_ENVIRONMENTS_CONFIGMAP)
        envs = {}
        for key, text in ((config_map or {}).get("data") or {}).items():
            try:
                envs[key] = json.loads(text)
            except ValueError:
                continue
        return config_map, envs

    def _write_shared(self, namespace: str, change: Callable[[dict[str, dict]], None]) -> None:
        def compute(shared: tuple[Optional[dict], dict[str, dict]]) -> dict:
            config_map, envs = shared
            change(envs)
            meta = {"name": SHARED_ENVIRONMENTS_CONFIGMAP, "labels": {"app.kubernetes.io/managed-by": "assay-gateway"}}
            if config_map:
                meta["resourceVersion"] = config_map["metadata"]["resourceVersion"]
            return {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": meta,
                "data": {k: json.dumps(v, sort_keys=True) for k, v in envs.items()},
            }

        update(
            lambda: self._shared(namespace),
            compute,
            lambda _, body: self.kube.write_config_map(namespace, body),
            exhausted="the shared environments kept changing; try again",
            retry_after=1,
        )

    def shared_environments(self, namespace: str) -> list[dict]:
        envs = self._shared(namespace)[1].values()
        return [mapping.environment_to_runscope(e, None) for e in sorted(envs, key=lambda e: e["name"])]

    def shared_environment(self, namespace: str, env_id: str) -> dict:
        env = self._shared(namespace)[1].get(env_id)
        if env is None:
            raise NotFound(f"environment {env_id!r} not found")
        return mapping.environment_to_runscope(env, None)

    def create_shared_environment(self, namespace: str, body: Any) -> dict:
        env = mapping.environment_from_runscope(body)
        env.pop("parentEnvironmentId", None)  # applies only to test environments
        self._check_environment_room(namespace, 1)
        self._write_shared(namespace, lambda envs: envs.__setitem__(env["id"], env))
        return mapping.environment_to_runscope(env, None)

    def modify_shared_environment(self, namespace: str, env_id: str, body: Any) -> dict:
        env = mapping.environment_from_runscope(body, env_id)
        env.pop("parentEnvironmentId", None)

        def change(envs: dict) -> None:
            if env_id not in envs:
                raise NotFound(f"environment {env_id!r} not found")
            envs[env_id] = env

        self._write_shared(namespace, change)
        return mapping.environment_to_runscope(env, None)

    def delete_shared_environment(self, namespace: str, env_id: str, principal: Principal) -> None:
        """Deletes the bucket's shared environment `env_id`, or else the test environment of
        that id: clients delete either kind through the bucket's path."""
        if env_id in self._shared(namespace)[1]:

            def change(envs: dict) -> None:
                if envs.pop(env_id, None) is None:
                    raise NotFound(f"environment {env_id!r} not found")

            self._write_shared(namespace, change)
            return
        owner = next(
            (m for m in self.kube.list(PLURAL, namespace) if mapping.environment_by_id(m.get("spec") or {}, env_id)),
            None,
        )
        if owner is None:
            raise NotFound(f"environment {env_id!r} not found")
        self.delete_environment(namespace, owner["metadata"]["uid"], env_id, principal)

    # --- schedules ------------------------------------------------------------------------

    def _schedules_of(self, monitor: dict) -> list[dict]:
        meta = monitor["metadata"]
        return [
            s
            for s in present(self.kube.list(SCHEDULES, meta["namespace"]))
            if (s.get("spec") or {}).get("target") == {"kind": "Monitor", "name": meta["name"]}
            or any(ref.get("uid") == meta["uid"] for ref in s["metadata"].get("ownerReferences") or [])
        ]

    def _schedule(self, monitor: dict, schedule_id: str) -> dict:
        for schedule in self._schedules_of(monitor):
            if schedule["metadata"]["uid"] == schedule_id:
                return schedule
        raise NotFound(f"schedule {schedule_id!r} not found")

    def schedules(self, namespace: str, test_id: str) -> list[dict]:
        return [mapping.schedule_to_runscope(s) for s in self._schedules_of(self.monitor(namespace, test_id))]

    def schedule(self, namespace: str, test_id: str, schedule_id: str) -> dict:
        return mapping.schedule_to_runscope(self._schedule(self.monitor(namespace, test_id), schedule_id))

    def create_schedule(self, namespace: str, test_id: str, body: Any, *, update_same_environment: bool) -> dict:
        """v1 always creates; v0 (`update_same_environment`) updates the test's schedule for the
        same environment when there is one, as Runscope's v0 did for a repeated create."""
        monitor = self.monitor(namespace, test_id)
        meta = monitor["metadata"]
        spec = mapping.schedule_spec_from_runscope(body, meta["name"], monitor.get("spec") or {})
        if update_same_environment:
            for existing in self._schedules_of(monitor):
                if (existing.get("spec") or {}).get("environment") == spec["environment"]:
                    return self._write_schedule(namespace, existing["metadata"]["name"], spec)
        manifest = mapping.schedule_manifest(monitor_name_for(meta["name"][:40]), monitor, spec)
        try:
            return mapping.schedule_to_runscope(self.kube.create(SCHEDULES, namespace, manifest))
        except ApiException as exc:
            if exc.status in (400, 422):
                raise _invalid_from_api(exc) from None
            raise

    def modify_schedule(self, namespace: str, test_id: str, schedule_id: str, body: Any) -> dict:
        monitor = self.monitor(namespace, test_id)
        schedule = self._schedule(monitor, schedule_id)
        spec = mapping.schedule_spec_from_runscope(body, monitor["metadata"]["name"], monitor.get("spec") or {})
        # A new spec bumps the Schedule's generation; the operator restarts the interval from now.
        return self._write_schedule(namespace, schedule["metadata"]["name"], spec)

    def suspend_schedule(self, namespace: str, name: str, suspend: bool) -> dict:
        """Suspend or resume any Schedule of the namespace (a TestSuite's too) through the one
        Schedule write; NotFound when there is none of that name."""
        try:
            self.kube.get(SCHEDULES, namespace, name)
        except KubeNotFound:
            raise NotFound(f"schedule {name!r} not found") from None
        return self._write_schedule(namespace, name, {"suspend": suspend})

    def _write_schedule(self, namespace: str, name: str, spec: dict) -> dict:
        def write(current: dict, body: dict) -> dict:
            try:
                return mapping.schedule_to_runscope(self.kube.replace(SCHEDULES, namespace, name, body))
            except ApiException as exc:
                if exc.status in (400, 422):
                    raise _invalid_from_api(exc) from None
                raise

        return update(
            lambda: self.kube.get(SCHEDULES, namespace, name),
            lambda current: {**current, "spec": {**current["spec"], **spec}},
            write,
            exhausted="the schedule kept changing; try again",
            retry_after=1,
        )

    def delete_schedule(self, namespace: str, test_id: str, schedule_id: str) -> None:
        schedule = self._schedule(self.monitor(namespace, test_id), schedule_id)
        self.kube.delete(SCHEDULES, namespace, schedule["metadata"]["name"])

    # --- trigger --------------------------------------------------------------------------

    def monitor_by_trigger_id(self, trigger_id: str) -> Optional[dict]:
        found = None
        for monitor in self.kube.list(PLURAL):
            # No early exit: every trigger call costs the same whatever it matches.
            if same_id(trigger_id_for(self.trigger_key, monitor["metadata"]["uid"]), trigger_id):
                found = monitor
        return found

    def trigger(self, trigger_id: str, run: TriggerSet) -> dict:
        monitor = self._triggered_monitor(trigger_id)
        meta = monitor["metadata"]
        runs = self._request(monitor, self._plan(monitor, run))
        return _trigger_answer(runs, 0, f"{self.public_url}/buckets/{meta['namespace']}/tests/{meta['uid']}/results")

    def trigger_batch(self, trigger_id: str, sets: list[TriggerSet]) -> dict:
        """One run per set, in order. Every set is planned before any run is asked for, so a
        set naming an unknown environment, region or agent starts nothing; a run whose
        request cannot be placed in time (`RunRequests`) counts as failed."""
        monitor = self._triggered_monitor(trigger_id)
        meta = monitor["metadata"]
        plans = [self._plan(monitor, run) for run in sets]
        runs, failed = [], 0
        for index, plan in enumerate(plans):
            try:
                runs.extend(self._request(monitor, plan, just_read=index == 0))
            except Conflict:
                failed += 1
        return _trigger_answer(
            runs, failed, f"{self.public_url}/buckets/{meta['namespace']}/tests/{meta['uid']}/results"
        )

    def _triggered_monitor(self, trigger_id: str) -> dict:
        monitor = self.monitor_by_trigger_id(trigger_id)
        if monitor is None or not _trigger_enabled(monitor):
            raise NotFound("trigger not found")
        return monitor

    def bucket_trigger_id(self, namespace: dict) -> str:
        return trigger_id_for(self.trigger_key, "bucket/" + namespace["metadata"]["uid"])

    def bucket_trigger_url(self, namespace: dict) -> str:
        return f"{self.public_url}/radar/bucket/{self.bucket_trigger_id(namespace)}/trigger"

    def trigger_bucket(self, trigger_id: str, run: TriggerSet) -> dict:
        """Runs every test of the bucket whose trigger is enabled; a test without the environment
        named (or the region or agent), or whose previous run has not started yet, counts as a
        failed run instead of failing the others."""
        found = None
        for namespace in self.kube.namespaces():
            if same_id(self.bucket_trigger_id(namespace), trigger_id):
                found = namespace
        if found is None or found["metadata"].get("deletionTimestamp"):
            raise NotFound("trigger not found")
        name = found["metadata"]["name"]
        runs, failed = [], 0
        for monitor in self.monitors(name):
            if not _trigger_enabled(monitor):
                continue
            try:
                runs.extend(self._request(monitor, self._plan(monitor, run)))
            except (InvalidInput, Conflict):
                failed += 1
        return _trigger_answer(runs, failed, f"{self.public_url}/buckets/{name}/tests")

    def _plan(self, monitor: dict, run: TriggerSet) -> dict:
        """The run request's options and where the run goes, for `monitor` and one parameter
        set; raises InvalidInput for an environment, region or agent it cannot run in."""
        namespace, spec = monitor["metadata"]["namespace"], monitor.get("spec") or {}
        if run.environment is not None:
            envs = spec.get("environments") or []
            # A shared environment's id (the bucket trigger's documented form) names the test's
            # environment inheriting from it.
            env = next((e for e in envs if run.environment in (e.get("id"), e.get("name"))), None) or next(
                (e for e in envs if e.get("parentEnvironmentId") == run.environment), None
            )
            if env is None:
                raise InvalidInput(f"runscope_environment: the test has no environment {run.environment!r}")
        else:
            env = mapping.environment_by_id(spec, mapping.default_environment_id(spec) or "")
        if env and env.get("parentEnvironmentId"):
            env = inherit_environment(env, self._shared(namespace)[1].get(env["parentEnvironmentId"]))
        env = env or {}
        env_agents = [a for a in env.get("remoteAgents") or [] if isinstance(a, dict) and a.get("name")]
        # Each agent as (node label value, the id the answer shows).
        agents = [(a["name"], a.get("uuid") or a["name"]) for a in env_agents]
        regions = list(env.get("regions") or [])
        placed = run.regions is not None or run.agents is not None
        if placed:
            # Either parameter replaces both of the environment's lists (MonitorRunRequest.places).
            known = set(regions) | (self._node_regions() if run.regions else set())
            regions, agents = list(run.regions or []), [self._agent(namespace, env_agents, a) for a in run.agents or []]
            for region in regions:
                if region not in known:
                    raise InvalidInput(f"runscope_region: there is no region {region!r}")
        options: dict[str, Any] = {"environment": env.get("id") or None, "params": run.params}
        if placed:
            options["regions"], options["remoteAgents"] = regions, [name for name, _ in agents]
        places = [(region, None) for region in regions] + [(None, shown) for _, shown in agents]
        return {"options": options, "env": env, "places": places or [(None, None)], "params": run.params}

    def _node_regions(self) -> set[str]:
        return {(n["metadata"].get("labels") or {}).get(REGION_LABEL) for n in self.kube.nodes(REGION_LABEL)} - {None}

    def _agent(self, namespace: str, env_agents: list[dict], wanted: str) -> tuple[str, str]:
        """A remote agent by the environment's uuid or name for it, or one of the bucket's
        team's agent nodes by its agent id (the node's uid, as the team's agents list shows
        it) or name; never another team's."""
        for agent in env_agents:
            if wanted in (agent.get("uuid"), agent["name"]):
                return agent["name"], agent.get("uuid") or agent["name"]
        team = ((self.kube.namespace(namespace).get("metadata") or {}).get("labels") or {}).get(self.settings.org_label)
        if team:
            for node in self.kube.nodes(f"{AGENT_LABEL},{self.settings.org_label}={team}"):
                meta = node["metadata"]
                name = (meta.get("labels") or {}).get(AGENT_LABEL)
                if wanted in (meta.get("uid"), name):
                    return name, meta.get("uid") or name
        raise InvalidInput(f"runscope_agent: there is no remote agent {wanted!r}")

    def _request(self, monitor: dict, plan: dict, *, just_read: bool = True) -> list[dict]:
        """`just_read`: `monitor` is as the API server has it now, which spares a read."""
        namespace, spec, meta = monitor["metadata"]["namespace"], monitor.get("spec") or {}, monitor["metadata"]
        run_id = self.runs.request(
            "Monitor",
            namespace,
            meta["name"],
            plan["options"],
            owner=monitor if just_read else None,
            busy="the previous run of this test has not started yet; try again shortly",
        )
        record_source(self.store, namespace, run_id, "trigger")
        test_url = f"{self.public_url}/buckets/{namespace}/tests/{meta['uid']}"
        env = plan["env"]
        return [
            {
                "agent": agent,
                "bucket_key": namespace,
                "environment_id": env.get("id"),
                "environment_name": env.get("name"),
                "region": region,
                "status": "init",
                "test_id": meta["uid"],
                "test_name": spec.get("displayName") or meta["name"],
                "test_run_id": run_id,
                "test_run_url": f"{test_url}/results/{run_id}",
                "test_url": test_url,
                "url": f"{test_url}/results/{run_id}",
                "variables": plan["params"],
            }
            for region, agent in plan["places"]
        ]


def _trigger_enabled(monitor: dict) -> bool:
    return ((monitor.get("spec") or {}).get("trigger") or {}).get("enabled", True)


def _trigger_answer(runs: list[dict], failed: int, results_url: str) -> dict:
    return {
        "runs": runs,
        "runs_started": len(runs),
        "runs_failed": failed,
        "runs_total": len(runs) + failed,
        "consolidated_test_results_url": results_url,
    }


def _creation_order(monitor: dict) -> tuple:
    meta = monitor["metadata"]
    return (
        meta.get("creationTimestamp") or "",
        (meta.get("annotations") or {}).get(CREATED_AT_ANNOTATION) or "",
        meta["name"],
    )


def _replace_step(steps: list[dict], step_id: str, new: Optional[dict]) -> list[dict]:
    """`steps` with the step `step_id` (top level or embedded) replaced by `new`, or removed."""
    out = []
    for step in steps:
        if step.get("id") == step_id:
            if new is not None:
                out.append(new)
            continue
        if step.get("stepType") == "condition" and step.get("steps"):
            step = {**step, "steps": _replace_step(step["steps"], step_id, new)}
        out.append(step)
    return out
