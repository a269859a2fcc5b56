"""What the operator tells a runner pod: the `ASSAY_*` variables of its container.

`RunnerSettings` is the one model of them: the operator fills it and turns it into the
container's env list (`runner_env`), for a run's Jobs (assay.operator.runjob) and a tick
group's CronJob (assay.operator.schedule); the runner reads it once from its environment
(`RunnerSettings.from_env`). Each field `name` is the variable `ASSAY_<NAME>`, except
`job_completion_index`, which Kubernetes sets in the pods of an Indexed Job.

It is a plain model, not a `BaseSettings`: the operator builds it for another process, and
must not pick up values from its own environment (the operator has an ASSAY_GATEWAY_URL of
its own)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field


def _env_name(field: str) -> str:
    return f"ASSAY_{field.upper()}"


class RunnerSettings(BaseModel):
    """A runner container's settings, in the order its env list gives them."""

    model_config = ConfigDict(alias_generator=_env_name, populate_by_name=True, extra="ignore", frozen=True)

    run_id: Optional[str] = None
    """The run the pod works for (a requested run); a tick pod derives its members' run ids."""
    shards: Optional[int] = None
    """The run's shard count: a LoadTest's shards, a Monitor run's locations."""
    project: Optional[str] = None
    """The namespace of the run."""
    owner_kind: Optional[str] = None
    owner_name: Optional[str] = None
    owner_uid: Optional[str] = None
    gateway_url: Optional[str] = None
    """Where results and progress go; without it (or the token) nothing is uploaded."""
    upload_token: Optional[str] = None
    """The run's (or the tick group's) upload token, from a Secret."""
    run_options: Optional[str] = None
    """A requested Monitor or TestSuite run's options, a JSON object (`run_options_object`)."""
    region: Optional[str] = None
    """The region a Monitor runs in, written into its result."""
    agent: Optional[str] = None
    """The remote agent a Monitor runs on, written into its result."""
    shard_index: Optional[int] = None
    """A Monitor run's location index (its Job has one pod)."""
    tick_concurrency: Optional[int] = None
    """Members a tick pod runs at once."""
    termination_log: Optional[str] = None
    """The file of the container's termination message."""
    job_name: Optional[str] = None
    """The pod's Job (a tick's Job name ends with its tick)."""
    pools_dir: Optional[str] = None
    """Where a run's parameter-pool ConfigMaps are mounted: `<dir>/<configmap>/<key>`."""
    secrets_dir: Optional[str] = None
    """Where the run's Secret is mounted, one file per key."""
    results_dir: Optional[str] = None
    """A folder a LoadTest shard also writes its metrics to, `shard-<index>.json`."""
    job_completion_index: Optional[int] = Field(None, alias="JOB_COMPLETION_INDEX")

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> RunnerSettings:
        """The settings in `environ` (default: this process's environment); an empty
        variable is an unset one."""
        environ = os.environ if environ is None else environ
        return cls.model_validate({name: environ[name] for name in env_names() if environ.get(name)})

    def run_options_object(self) -> dict:
        """`run_options` parsed; ValueError when it is not a JSON object."""
        try:
            options = json.loads(self.run_options or "{}")
        except ValueError as exc:
            raise ValueError(f"{_env_name('run_options')} is not JSON: {exc}") from exc
        if not isinstance(options, dict):
            raise ValueError(f"{_env_name('run_options')} must be a JSON object")
        return options

    @property
    def uploads(self) -> bool:
        """The operator wired a gateway: results are uploaded."""
        return bool(self.gateway_url and self.upload_token)


def env_names() -> list[str]:
    """Every variable of the model, in order."""
    return [field.alias or name for name, field in RunnerSettings.model_fields.items()]


def env_name(field: str) -> str:
    """The variable of a field, e.g. `env_name("secrets_dir")` == "ASSAY_SECRETS_DIR"."""
    return RunnerSettings.model_fields[field].alias or field


def secret_key_ref(secret: str, key: str) -> dict:
    return {"secretKeyRef": {"name": secret, "key": key}}


def field_ref(path: str) -> dict:
    return {"fieldRef": {"fieldPath": path}}


def runner_env(settings: RunnerSettings, **value_from: dict) -> list[dict]:
    """The container's env list: every field that is set, in the model's order, and every
    field named in `value_from` as a reference (`secret_key_ref`, `field_ref`) whose value
    the kubelet fills in."""
    unknown = set(value_from) - set(RunnerSettings.model_fields)
    if unknown:
        raise ValueError(f"no runner setting {sorted(unknown)}")
    env = []
    for name in RunnerSettings.model_fields:
        value = getattr(settings, name)
        if name in value_from:
            env.append({"name": env_name(name), "valueFrom": value_from[name]})
        elif value is not None:
            env.append({"name": env_name(name), "value": str(value)})
    return env


def runner_settings_of(variables: Mapping[str, str]) -> RunnerSettings:
    """The settings given as variables (a run location's, e.g. {"ASSAY_REGION": "eu1"});
    ValueError for a variable that is not one of them."""
    unknown = set(variables) - set(env_names())
    if unknown:
        raise ValueError(f"not a runner setting: {sorted(unknown)}")
    return RunnerSettings.from_env(variables)
