"""The shared contracts: importable by every component without pulling in another one, and
the runner settings the operator writes being exactly what the runner reads."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pytest

import assay.crds.contracts as contracts
from assay.crds.contracts.runner_settings import (
    RunnerSettings,
    env_names,
    field_ref,
    runner_env,
    runner_settings_of,
    secret_key_ref,
)
from assay.operator.runjob import build_runner_job
from assay.operator.settings import OperatorSettings

FORBIDDEN = ("assay.runner", "assay.operator", "assay.api", "fastapi", "starlette", "kubernetes", "kopf")


def test_the_contracts_import_no_component_no_http_framework_and_no_kubernetes_client():
    modules = [f"assay.crds.contracts.{m.name}" for m in pkgutil.iter_modules(contracts.__path__)]
    assert {"upload", "tick", "progress", "summary", "histogram", "runner_settings"} <= {
        m.rsplit(".", 1)[1] for m in modules
    }
    code = (
        f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
        f"print([n for n in sys.modules if n.startswith({FORBIDDEN!r})])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout.replace("'", '"')) == []


def every_setting() -> RunnerSettings:
    return RunnerSettings(
        run_id="shop-0123",
        shards=3,
        project="team-a",
        owner_kind="Monitor",
        owner_name="shop",
        owner_uid="uid-1",
        gateway_url="http://gw:8000",
        upload_token="tok",
        run_options=json.dumps({"environment": "prod"}),
        region="eu1",
        agent="dc-1",
        shard_index=2,
        tick_concurrency=7,
        termination_log="/dev/termination-log",
        job_name="assay-tick-x-29000000",
        pools_dir="/p",
        secrets_dir="/s",
        results_dir="/r",
        job_completion_index=1,
    )


def test_what_the_env_list_says_the_runner_reads_back_unchanged():
    settings = every_setting()
    env = runner_env(settings)
    assert [e["name"] for e in env] == env_names()
    assert RunnerSettings.from_env({e["name"]: e["value"] for e in env}) == settings


def test_a_referenced_setting_takes_its_value_from_the_reference_and_an_unset_one_is_left_out():
    env = runner_env(
        RunnerSettings(project="team-a"),
        upload_token=secret_key_ref("run-upload", "token"),
        job_name=field_ref("metadata.labels['batch.kubernetes.io/job-name']"),
    )
    assert env == [
        {"name": "ASSAY_PROJECT", "value": "team-a"},
        {"name": "ASSAY_UPLOAD_TOKEN", "valueFrom": {"secretKeyRef": {"name": "run-upload", "key": "token"}}},
        {
            "name": "ASSAY_JOB_NAME",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['batch.kubernetes.io/job-name']"}},
        },
    ]
    with pytest.raises(ValueError):
        runner_env(RunnerSettings(), tokn=secret_key_ref("x", "y"))


def test_an_empty_variable_is_unset_and_foreign_variables_are_ignored_but_not_given_as_settings():
    settings = RunnerSettings.from_env({"ASSAY_REGION": "", "ASSAY_SHARDS": "2", "HOME": "/root"})
    assert settings.region is None and settings.shards == 2
    with pytest.raises(ValueError, match="HOME"):
        runner_settings_of({"HOME": "/root"})


def test_run_options_must_be_a_json_object():
    assert RunnerSettings(run_options='{"params": {"a": 1}}').run_options_object() == {"params": {"a": 1}}
    assert RunnerSettings().run_options_object() == {}
    with pytest.raises(ValueError, match="ASSAY_RUN_OPTIONS is not JSON"):
        RunnerSettings(run_options="{").run_options_object()
    with pytest.raises(ValueError, match="must be a JSON object"):
        RunnerSettings(run_options="[1]").run_options_object()


def test_a_run_jobs_container_gives_the_runner_its_run_and_mounts():
    owner = {
        "apiVersion": "assay.dev/v1alpha1",
        "kind": "Monitor",
        "metadata": {"name": "shop", "namespace": "team-a", "uid": "uid-1"},
        "spec": {},
    }
    settings = OperatorSettings(gateway_url="http://gw:8000", upload_key="k" * 32)
    job = build_runner_job(
        owner,
        "shop-0123",
        1,
        settings,
        ["monitor"],
        run_shards=2,
        env={"ASSAY_REGION": "eu1", "ASSAY_SHARD_INDEX": "1"},
        pool_config_maps=[("pools", "a.csv")],
        secret_name="shop-0123-values",
    )
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    read = RunnerSettings.from_env({e["name"]: e["value"] for e in env if "value" in e})
    assert read == RunnerSettings(
        run_id="shop-0123",
        shards=2,
        project="team-a",
        owner_kind="Monitor",
        owner_name="shop",
        owner_uid="uid-1",
        gateway_url="http://gw:8000",
        region="eu1",
        shard_index=1,
        termination_log="/dev/termination-log",
        pools_dir="/etc/assay/pools",
        secrets_dir="/etc/assay/secrets",
    )
    references = {e["name"]: e["valueFrom"] for e in env if "valueFrom" in e}
    assert references == {
        "ASSAY_UPLOAD_TOKEN": secret_key_ref("shop-0123-upload", "token"),
        "POD_NAME": field_ref("metadata.name"),
    }
    with pytest.raises(ValueError):
        build_runner_job(owner, "shop-0123", 1, settings, ["monitor"], env={"ASSAY_REGOIN": "eu1"})
