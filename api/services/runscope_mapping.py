"""Runscope JSON <-> Monitor spec, in one place: steps, environments, tests and schedules.

Runscope names are the CRD models' Python names (snake_case), so a Runscope document
validates against the models once it is normalised: nulls and empty `auth` objects dropped,
single header values made lists, the legacy assertion and variable spellings the document
also uses (`is_equal`, `json`, `status_code`, ...) mapped to the current ones, and fields that
only responses carry (`test_id`, `created_at`, ...) removed. Ids are the gateway's: every step,
embedded step and environment without one gets a uuid4. Nothing here does I/O.
"""

from __future__ import annotations

import uuid
from typing import Any, Optional

from pydantic import TypeAdapter, ValidationError

from assay.crds.monitor import DEFAULT_NOTIFY_THRESHOLD, Emails, Environment, MonitorSpec, Step, runscope_result
from assay.crds.schedule import INTERVALS
from assay.crds.times import epoch

from . import InvalidInput

COMPARISON_ALIASES = {
    "is_equal": "equal",
    "equals": "equal",
    "does_not_equal": "not_equal",
    "is_empty": "empty",
    "is_not_empty": "not_empty",
    "equals_number": "equal_number",
    "less_than": "is_less_than",
    "less_than_or_equal": "is_less_than_or_equal",
    "greater_than": "is_greater_than",
    "greater_than_or_equal": "is_greater_than_or_equal",
}
SOURCE_ALIASES = {
    "json": "response_json",
    "xml": "response_xml",
    "status_code": "response_status",
    "response_size_bytes": "response_size",
    "response_time_ms": "response_time",
    "text": "response_text",
}
RESPONSE_ONLY_STEP_FIELDS = ("created_at",)
RESPONSE_ONLY_ENV_FIELDS = ("test_id", "created_at", "exported_at", "version")
DEFAULT_ENVIRONMENT_NAME = "Test Settings"
"""Runscope gives every new test one environment of this name."""
STEP_ADAPTER = TypeAdapter(Step)
DOCUMENTED_INTEGRATION_FIELDS = ("id", "integration_type", "description")
UNSET_EMAILS = Emails(notify_threshold=DEFAULT_NOTIFY_THRESHOLD)
"""What an environment without notification settings shows, as Runscope shows a new test's:
nobody to notify (the threshold is the one the operator applies when none is set). Shown,
not stored: a stored `emails` would make the operator look at every run of the test."""
LIVE_INTERVALS = {interval: f"{float(interval[:-1])}{interval[-1]}" for interval in INTERVALS}
"""How the live API writes each interval back ("1h" as "1.0h"); clients compare with these."""
INTERVAL_OF = {**{interval: interval for interval in INTERVALS}, **{live: i for i, live in LIVE_INTERVALS.items()}}
"""Either spelling, as a Schedule's interval."""


def new_id() -> str:
    return str(uuid.uuid4())


def _first_error(exc: ValidationError, where: str) -> str:
    errors = exc.errors()
    first = errors[0]
    loc = ".".join(str(p) for p in first["loc"] if not str(p).startswith("function-after"))
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}{'.' + loc if loc else ''}: {first['msg']}{more}"


def _drop_nulls(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if v is not None}


def _header_lists(values: Any, where: str) -> dict[str, list[str]]:
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise InvalidInput(f"{where}: expected an object of names to values")
    out = {}
    for name, value in values.items():
        items = value if isinstance(value, list) else [value]
        out[str(name)] = ["" if v is None else str(v) for v in items]
    return out


def _checks(items: Any, where: str, *, assertions: bool) -> list:
    if items is None:
        return []
    if not isinstance(items, list):
        raise InvalidInput(f"{where}: expected a list")
    out = []
    for item in items:
        if not isinstance(item, dict):
            raise InvalidInput(f"{where}: expected objects")
        item = _drop_nulls(item)
        if "source" in item:
            item["source"] = SOURCE_ALIASES.get(item["source"], item["source"])
        if assertions and "comparison" in item:
            item["comparison"] = COMPARISON_ALIASES.get(item["comparison"], item["comparison"])
        out.append(item)
    return out


def _normalise_auth(doc: dict) -> None:
    """Runscope shows "no authentication" as `{}`; the models want the field absent."""
    auth = doc.pop("auth", None)
    if auth:
        doc["auth"] = _drop_nulls(auth) if isinstance(auth, dict) else auth


def step_from_runscope(doc: Any, *, keep_id: bool = False, inner: bool = False) -> dict:
    """A Runscope step document as a validated spec.steps[] item (camelCase). Raises InvalidInput."""
    if not isinstance(doc, dict):
        raise InvalidInput("a step must be a JSON object")
    step = _drop_nulls({k: v for k, v in doc.items() if k not in RESPONSE_ONLY_STEP_FIELDS})
    step.setdefault("step_type", "request")
    if not keep_id or not step.get("id"):
        step["id"] = new_id()
    for field in ("headers", "form"):
        if field in step:
            step[field] = _header_lists(step[field], field)
    _normalise_auth(step)
    for field, is_assertion in (("assertions", True), ("variables", False)):
        if field in step:
            step[field] = _checks(step[field], field, assertions=is_assertion)
    if step.get("step_type") == "condition":
        if inner:
            raise InvalidInput("steps: conditions cannot contain conditions")
        step["comparison"] = COMPARISON_ALIASES.get(step.get("comparison"), step.get("comparison"))
        step["steps"] = [step_from_runscope(s, keep_id=keep_id, inner=True) for s in step.get("steps") or []]
    try:
        return STEP_ADAPTER.validate_python(step).to_k8s()
    except ValidationError as exc:
        raise InvalidInput(_first_error(exc, "step")) from None


def step_to_runscope(step: dict) -> dict:
    """A spec.steps[] item (camelCase) as Runscope shows it."""
    model = STEP_ADAPTER.validate_python(step)
    out = model.model_dump(mode="json", exclude_none=True)
    if out.get("step_type") == "request":
        out.setdefault("auth", {})
        out.setdefault("body", "")
    return out


def environment_from_runscope(doc: Any, env_id: Optional[str] = None) -> dict:
    """A Runscope environment document as a validated Environment (camelCase); `env_id` kept
    (a modification) or a new one. Raises InvalidInput."""
    if not isinstance(doc, dict):
        raise InvalidInput("an environment must be a JSON object")
    env = _drop_nulls({k: v for k, v in doc.items() if k not in RESPONSE_ONLY_ENV_FIELDS})
    env["id"] = env_id or new_id()
    _normalise_auth(env)
    if "headers" in env:
        env["headers"] = _header_lists(env["headers"], "headers")
    if isinstance(env.get("emails"), dict):
        env["emails"] = _drop_nulls(env["emails"])
    if isinstance(env.get("initial_variables"), dict):
        env["initial_variables"] = {
            str(k): "" if v is None else (v if isinstance(v, str) else str(v))
            for k, v in env["initial_variables"].items()
        }
    try:
        return Environment.model_validate(env).to_k8s()
    except ValidationError as exc:
        raise InvalidInput(_first_error(exc, "environment")) from None


def environment_to_runscope(env: dict, test_id: Optional[str]) -> dict:
    model = Environment.model_validate(env)
    out = model.model_dump(mode="json")
    out["auth"] = out["auth"] or {}
    if out["emails"] is None:
        out["emails"] = UNSET_EMAILS.model_dump(mode="json")
    # Where the operator sends a run (url, routing key) shows only when set: an integration
    # otherwise looks as the document shows it.
    out["integrations"] = [
        {k: v for k, v in item.items() if v is not None or k in DOCUMENTED_INTEGRATION_FIELDS}
        for item in out["integrations"]
    ]
    out["test_id"] = test_id
    return out


def default_environment() -> dict:
    return Environment(name=DEFAULT_ENVIRONMENT_NAME, id=new_id()).to_k8s()


def validated_spec(spec: dict) -> dict:
    """The spec as the CRD stores it; InvalidInput when a rule fails (duplicate names ...)."""
    try:
        return MonitorSpec.model_validate(spec).to_k8s()
    except ValidationError as exc:
        raise InvalidInput(_first_error(exc, "test")) from None


def with_ids(spec: dict) -> dict:
    """The spec with an id on every step, embedded step and environment: a Monitor written with
    kubectl may have none, and the Runscope API addresses them by id."""

    def step_with_id(step: dict) -> dict:
        step = {**step, "id": step.get("id") or new_id()}
        if step.get("stepType") == "condition":
            step["steps"] = [step_with_id(s) for s in step.get("steps") or []]
        return step

    return {
        **spec,
        "steps": [step_with_id(s) for s in spec.get("steps") or []],
        "environments": [{**e, "id": e.get("id") or new_id()} for e in spec.get("environments") or []],
    }


def environment_id_of(spec: dict, name: Optional[str]) -> Optional[str]:
    for env in spec.get("environments") or []:
        if env.get("name") == name:
            return env.get("id")
    return None


def default_environment_id(spec: dict) -> Optional[str]:
    """The id of the environment runs use when none is named (the default, else the first)."""
    envs = spec.get("environments") or []
    if spec.get("defaultEnvironment"):
        return environment_id_of(spec, spec["defaultEnvironment"])
    return envs[0].get("id") if envs else None


def environment_by_id(spec: dict, env_id: str) -> Optional[dict]:
    return next((e for e in spec.get("environments") or [] if e.get("id") == env_id), None)


def test_spec_from_runscope(doc: Any) -> dict:
    """A Runscope "create test" document as a Monitor spec: name, description, steps,
    environments (one "Test Settings" environment when none is given) and the default one."""
    if not isinstance(doc, dict):
        raise InvalidInput("a test must be a JSON object")
    name = doc.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("name: a test needs a name")
    spec: dict[str, Any] = {"displayName": name, "description": doc.get("description") or ""}
    spec["steps"] = [step_from_runscope(s) for s in _list(doc.get("steps"), "steps")]
    envs = [environment_from_runscope(e) for e in _list(doc.get("environments"), "environments")]
    spec["environments"] = envs or [default_environment()]
    spec["defaultEnvironment"] = spec["environments"][0]["name"]
    return validated_spec(spec)


def _list(value: Any, where: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidInput(f"{where}: expected a list")
    return value


def modified_spec(spec: dict, doc: Any) -> dict:
    """PUT on a test: name, description, default_environment_id and steps; omitted ones kept."""
    if not isinstance(doc, dict):
        raise InvalidInput("the body must be a JSON object")
    spec = dict(spec)
    if "name" in doc:
        if not isinstance(doc["name"], str) or not doc["name"].strip():
            raise InvalidInput("name: must be a non-empty string")
        spec["displayName"] = doc["name"]
    if "description" in doc:
        spec["description"] = doc["description"] or ""
    if doc.get("default_environment_id") is not None:
        env = environment_by_id(spec, doc["default_environment_id"])
        if env is None:
            raise InvalidInput(f"default_environment_id: the test has no environment {doc['default_environment_id']!r}")
        spec["defaultEnvironment"] = env["name"]
    if "steps" in doc:
        spec["steps"] = [step_from_runscope(s, keep_id=True) for s in _list(doc["steps"], "steps")]
        ids = [s["id"] for s in all_steps(spec["steps"])]
        if len(ids) != len(set(ids)):
            raise InvalidInput("steps: step ids must be unique")
    return validated_spec(spec)


def all_steps(steps: list[dict]) -> list[dict]:
    """Every step, embedded condition steps included, in order."""
    return [
        s for step in steps for s in [step, *(step.get("steps") or [] if step.get("stepType") == "condition" else [])]
    ]


def reordered_steps(steps: list[dict], order: Any) -> list[dict]:
    """The steps in `order` (ids, or {"id", "steps": [ids]} for a condition's embedded steps).
    Every id exactly once; a condition's embedded steps stay in that condition."""
    if not isinstance(order, list):
        raise InvalidInput("the body must be a JSON list of step ids")
    by_id = {s["id"]: s for s in steps}
    seen: set[str] = set()
    out = []
    for item in order:
        step_id, inner = (item.get("id"), item.get("steps")) if isinstance(item, dict) else (item, None)
        if not isinstance(step_id, str) or step_id not in by_id:
            raise InvalidInput(f"unknown step id {step_id!r}")
        if step_id in seen:
            raise InvalidInput(f"step id {step_id!r} appears more than once")
        seen.add(step_id)
        step = dict(by_id[step_id])
        if inner is not None:
            if step.get("stepType") != "condition":
                raise InvalidInput(f"step {step_id!r} is not a condition; it has no embedded steps")
            inner_by_id = {s["id"]: s for s in step.get("steps") or []}
            if (
                not isinstance(inner, list)
                or sorted(map(str, inner)) != sorted(inner_by_id)
                or len(set(map(str, inner))) != len(inner)
            ):
                raise InvalidInput(f"condition {step_id!r}: give each of its embedded step ids exactly once")
            step["steps"] = [inner_by_id[i] for i in inner]
        out.append(step)
    missing = [s for s in by_id if s not in seen]
    if missing:
        raise InvalidInput(f"the order omits step id(s) {', '.join(missing)}")
    return out


def schedule_spec_from_runscope(doc: Any, monitor_name: str, spec: dict) -> dict:
    """A Runscope schedule document as a Schedule spec targeting the Monitor."""
    if not isinstance(doc, dict):
        raise InvalidInput("a schedule must be a JSON object")
    given, env_id = doc.get("interval"), doc.get("environment_id")
    interval = INTERVAL_OF.get(given) if isinstance(given, str) else None
    if interval is None:
        raise InvalidInput(f"interval: must be one of {', '.join([*INTERVALS, *LIVE_INTERVALS.values()])}")
    if not isinstance(env_id, str) or environment_by_id(spec, env_id) is None:
        raise InvalidInput(f"environment_id: the test has no environment {env_id!r}")
    note = doc.get("note") or ""
    if not isinstance(note, str):
        raise InvalidInput("note: must be a string")
    return {
        "target": {"kind": "Monitor", "name": monitor_name},
        "interval": interval,
        "environment": env_id,
        "note": note,
    }


def monitor_manifest(name: str, spec: dict, annotations: dict[str, str]) -> dict:
    return {
        "apiVersion": "assay.dev/v1alpha1",
        "kind": "Monitor",
        "metadata": {"name": name, "annotations": annotations},
        "spec": spec,
    }


def schedule_manifest(name: str, monitor: dict, spec: dict) -> dict:
    """A Schedule owned by the Monitor: deleting the test deletes its schedules."""
    meta = monitor["metadata"]
    owner = {
        "apiVersion": monitor.get("apiVersion", "assay.dev/v1alpha1"),
        "kind": "Monitor",
        "name": meta["name"],
        "uid": meta["uid"],
    }
    return {
        "apiVersion": "assay.dev/v1alpha1",
        "kind": "Schedule",
        "metadata": {"name": name, "ownerReferences": [owner]},
        "spec": spec,
    }


def schedule_to_runscope(schedule: dict) -> dict:
    spec = schedule.get("spec") or {}
    return {
        "environment_id": spec.get("environment"),
        "interval": LIVE_INTERVALS.get(spec.get("interval"), spec.get("interval")),
        "note": spec.get("note", ""),
        "id": schedule["metadata"]["uid"],
    }


def last_run_to_runscope(status: dict, spec: dict, bucket_key: str, test_id: str, public_url: str) -> Optional[dict]:
    run = (status or {}).get("lastRun")
    if not run:
        return None
    result = runscope_result(run)
    return {
        "id": run.get("runId"),
        "test_run_id": run.get("runId"),
        "status": "working" if result == "working" else "completed",
        "result": result,
        "started_at": epoch(run.get("startTime")),
        "finished_at": epoch(run.get("completionTime")),
        "environment_name": run.get("environment"),
        "environment_id": environment_id_of(spec, run.get("environment")),
        "region": (run.get("regions") or [None])[0],
        "agent": None,
        "bucket_key": bucket_key,
        "test_run_url": f"{public_url}/buckets/{bucket_key}/tests/{test_id}/results/{run.get('runId')}",
    }
