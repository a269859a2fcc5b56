"""Secret values of Monitor and TestSuite specs: the models, moving values out of manifests
into a run's Secret and back in, the objects built around them, Kopf's stored state, and the
runner using secret variables and parameters against a real loopback server."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json

import kopf
import pytest
from pydantic import ValidationError
from pydantic.alias_generators import to_camel

from assay.crds import Monitor, TestSuite, common, monitor, secrets, testsuite
from assay.crds.monitor import MonitorSpec
from assay.crds.secrets import SecretUnavailable, secret_fields, with_secret_values, without_secret_values
from assay.operator import tickobjects, tickplan
from assay.operator.diffbase import SecretFreeDiffBaseStorage, essence_without_secrets
from assay.operator.runjob import build_runner_job
from assay.operator.runs import RunPlan, build_run_objects
from assay.operator.runsecrets import (
    MissingSecret,
    build_values_secret,
    job_owner_reference,
    move_secrets,
    resolve_values,
)
from assay.operator.settings import OperatorSettings
from assay.runner.apitest.monitor import run_monitor
from assay.runner.apitest.suite import run_suite
from assay.runner.manifest import ManifestError, with_run_secrets
from tests.support.http_targets import HttpTarget

PASSWORD, CLIENT_SECRET, CERT, TOKEN = "pw-inline-1", "cs-referenced-2", "PEM-cert-and-key-3", "tok-var-4"
REF = {"secretKeyRef": {"name": "api-credentials", "key": "client-secret"}}


def monitor_manifest(name="login", uid="u-login", secret="api-credentials") -> dict:
    return {
        "apiVersion": "assay.dev/v1alpha1",
        "kind": "Monitor",
        "metadata": {"name": name, "namespace": "team-a", "uid": uid},
        "spec": {
            "steps": [
                {
                    "stepType": "request",
                    "url": "{{base}}/a",
                    "auth": {"authType": "basic", "username": "demo", "password": PASSWORD},
                },
                {
                    "stepType": "condition",
                    "leftValue": "1",
                    "comparison": "equal",
                    "rightValue": "1",
                    "steps": [
                        {
                            "stepType": "request",
                            "url": "{{base}}/b",
                            "auth": {
                                "authType": "oauth_2",
                                "grantType": "client_credentials",
                                "clientId": "c",
                                "accessTokenUrl": "http://127.0.0.1:9/token",
                                "clientSecretFrom": {"secretKeyRef": {"name": secret, "key": "client-secret"}},
                            },
                        }
                    ],
                },
            ],
            "environments": [
                {"name": "local", "clientCertificate": CERT, "secretVariables": [{"name": "token", "value": TOKEN}]}
            ],
        },
    }


def reader(secrets: dict[str, dict[str, str]]):
    return lambda name: None if name not in secrets else {k: v.encode() for k, v in secrets[name].items()}


# --- the models -------------------------------------------------------------------------------


def test_a_secret_field_takes_a_value_or_a_secret_reference_but_not_both():
    auth = {"authType": "basic", "username": "u", "password": "p", "passwordFrom": REF}
    with pytest.raises(ValidationError, match="set password or passwordFrom, not both"):
        MonitorSpec.model_validate({"steps": [{"stepType": "request", "url": "http://x", "auth": auth}]})
    with pytest.raises(ValidationError, match="exactly one of value or valueFrom"):
        MonitorSpec.model_validate({"environments": [{"name": "e", "secretVariables": [{"name": "t"}]}]})
    # OAuth 1's consumer secret is required, and a reference satisfies it.
    oauth1 = {"authType": "oauth_1", "consumerKey": "k"}
    with pytest.raises(ValidationError, match="consumerSecret or consumerSecretFrom"):
        MonitorSpec.model_validate({"steps": [{"stepType": "request", "url": "http://x", "auth": oauth1}]})
    MonitorSpec.model_validate(
        {"steps": [{"stepType": "request", "url": "http://x", "auth": {**oauth1, "consumerSecretFrom": REF}}]}
    )


def test_the_documentation_names_every_secret_field_the_models_declare():
    models = [
        m
        for module in (common, monitor, testsuite)
        for m in vars(module).values()
        if isinstance(m, type) and issubclass(m, common.AssayModel)
    ]
    declared = {to_camel(name) for model in models for name in secrets.secret_names(model)}
    assert declared == {
        "password",
        "consumerSecret",
        "tokenSecret",
        "accessToken",
        "clientSecret",
        "refreshToken",
        "clientCertificate",
        "value",
        "url",
        "routingKey",
    }
    assert all(f"`{name}`" in secrets.__doc__ for name in declared - {"value"})


def test_secret_fields_are_found_wherever_the_models_put_them():
    found = {f.where: (f.value, f.source is not None) for f in secret_fields(monitor_manifest())}
    assert found == {
        "spec.steps[0].auth.password": (PASSWORD, False),
        "spec.steps[1].steps[0].auth.clientSecret": (None, True),
        "spec.environments[0].secretVariables[0].value": (TOKEN, False),
        "spec.environments[0].clientCertificate": (CERT, False),
    }


# --- out of the manifest and back in -----------------------------------------------------------


def test_moved_manifests_refer_to_the_run_secret_and_the_runner_fills_them_back_in():
    original = monitor_manifest()
    moved, fields = without_secret_values(original, "run-1-secrets", "manifest.")
    text = json.dumps(moved)
    assert PASSWORD not in text and CERT not in text and TOKEN not in text and "api-credentials" not in text
    assert moved["spec"]["steps"][0]["auth"]["passwordFrom"] == {
        "secretKeyRef": {"name": "run-1-secrets", "key": "manifest.spec.steps.0.auth.password"}
    }
    assert original["spec"]["steps"][0]["auth"]["password"] == PASSWORD  # the input is left alone

    files = {"manifest." + f.key: f.value or CLIENT_SECRET for f in fields}
    filled = with_secret_values(moved, lambda name, key: files.get(key) if name == "run-1-secrets" else None)
    monitor = Monitor.model_validate(filled)
    assert monitor.spec.steps[0].auth.password == PASSWORD
    assert monitor.spec.steps[1].steps[0].auth.client_secret == CLIENT_SECRET
    assert monitor.spec.environments[0].client_certificate == CERT
    assert monitor.spec.environments[0].secret_variables[0].value == TOKEN

    with pytest.raises(SecretUnavailable, match=r"spec\.steps\[0\]\.auth\.passwordFrom: key 'manifest"):
        with_secret_values(moved, lambda name, key: None)


def test_the_runner_reads_secret_values_from_its_mounted_folder(tmp_path, monkeypatch):
    moved, fields = without_secret_values(monitor_manifest(), "run-1-secrets")
    for field in fields:
        (tmp_path / field.key).write_text(field.value or CLIENT_SECRET)
    monkeypatch.setenv("ASSAY_SECRETS_DIR", str(tmp_path))
    filled = with_run_secrets(moved)
    assert filled["spec"]["steps"][1]["steps"][0]["auth"]["clientSecret"] == CLIENT_SECRET

    (tmp_path / "spec.steps.0.auth.password").unlink()
    with pytest.raises(ManifestError, match=r"spec\.steps\[0\]\.auth\.passwordFrom"):
        with_run_secrets(moved)
    monkeypatch.delenv("ASSAY_SECRETS_DIR")
    with pytest.raises(ManifestError, match="ASSAY_SECRETS_DIR is not set"):
        with_run_secrets(moved)


def test_a_runs_documents_move_their_secrets_under_prefixed_keys_and_other_files_stay():
    plan = {"runId": "r"}
    moved, fields = move_secrets(
        {"manifest": monitor_manifest(), "plan.json": plan, "subtests.json": [monitor_manifest("sub", "u-sub")]},
        "run-1-secrets",
    )
    assert moved["plan.json"] is plan
    assert "manifest.spec.steps.0.auth.password" in fields
    assert "subtests.0.spec.steps.0.auth.password" in fields
    assert (
        moved["subtests.json"][0]["spec"]["steps"][0]["auth"]["passwordFrom"]["secretKeyRef"]["key"]
        == "subtests.0.spec.steps.0.auth.password"
    )

    values = resolve_values(fields, reader({"api-credentials": {"client-secret": CLIENT_SECRET}}))
    assert values["manifest.spec.steps.0.auth.password"] == PASSWORD
    assert values["subtests.0.spec.steps.1.steps.0.auth.clientSecret"] == CLIENT_SECRET


def test_a_missing_secret_or_key_names_the_field_and_the_secret():
    _, fields = move_secrets({"manifest": monitor_manifest()}, "run-1-secrets")
    with pytest.raises(
        MissingSecret,
        match=r"spec\.steps\[1\]\.steps\[0\]\.auth\.clientSecretFrom: "
        r"Secret 'api-credentials' does not exist",
    ):
        resolve_values(fields, reader({}))
    with pytest.raises(MissingSecret, match="Secret 'api-credentials' has no key 'client-secret'"):
        resolve_values(fields, reader({"api-credentials": {"other": "x"}}))


# --- the objects around a run ------------------------------------------------------------------


def test_the_run_configmap_holds_no_secret_value_and_the_job_mounts_the_run_secret():
    owner = monitor_manifest()
    moved, fields = move_secrets({"manifest": owner}, "run-1-secrets")
    plan = RunPlan(run_id="run-1", request_id="r-1", runner_args=["monitor"], options={})
    configmap, _, [job] = build_run_objects(
        owner, plan, moved["manifest"], OperatorSettings(), secret_name="run-1-secrets"
    )
    assert not any(v in json.dumps(configmap) for v in (PASSWORD, CERT, TOKEN))
    pod = job["spec"]["template"]["spec"]
    assert {"name": "secrets", "secret": {"secretName": "run-1-secrets"}} in pod["volumes"]
    container = pod["containers"][0]
    assert {"name": "secrets", "mountPath": "/etc/assay/secrets", "readOnly": True} in container["volumeMounts"]
    assert {"name": "ASSAY_SECRETS_DIR", "value": "/etc/assay/secrets"} in container["env"]
    # A run without secret values mounts nothing.
    plain = build_runner_job(owner, "run-2", 1, OperatorSettings(), ["monitor"])
    assert [v["name"] for v in plain["spec"]["template"]["spec"]["volumes"]] == ["spec", "tmp"]

    values = resolve_values(fields, reader({"api-credentials": {"client-secret": CLIENT_SECRET}}))
    job_object = {"metadata": {"name": "run-1", "uid": "job-uid"}}
    secret = build_values_secret("run-1-secrets", "team-a", {"a": "b"}, [job_owner_reference(job_object)], values)
    assert secret["metadata"]["ownerReferences"][0]["kind"] == "Job"
    assert secret["metadata"]["ownerReferences"][0]["uid"] == "job-uid"
    assert base64.b64decode(secret["data"]["manifest.spec.steps.0.auth.password"]).decode() == PASSWORD


def _group(*members) -> tickplan.Group:
    return tickplan.Group(name="assay-tick-0123abcd", cron="* * * * *", location=None, members=list(members))


def test_tick_members_refer_to_the_group_secret_and_one_with_a_missing_secret_leaves_the_group():
    suite = {
        "apiVersion": "assay.dev/v1alpha1",
        "kind": "TestSuite",
        "metadata": {"name": "s", "uid": "u-s"},
        "spec": {
            "secretParameters": [{"name": "password", "value": PASSWORD}],
            "flows": [{"name": "f", "requests": [{"url": "http://x"}]}],
        },
    }
    group = _group(
        {
            "schedule": {"name": "s1", "uid": "s-1"},
            "kind": "Monitor",
            "monitor": monitor_manifest(),
            "subtests": [monitor_manifest("sub", "u-sub")],
        },
        {
            "schedule": {"name": "s2", "uid": "s-2"},
            "kind": "Monitor",
            "monitor": monitor_manifest("m2", "u-m2", secret="gone"),
            "subtests": [],
        },
        {"schedule": {"name": "s3", "uid": "s-3"}, "kind": "TestSuite", "testSuite": suite},
    )
    read = reader({"api-credentials": {"client-secret": CLIENT_SECRET}})
    values, problems = tickplan.move_member_secrets(group, read)
    assert problems == {
        "s-2": ("SecretNotFound", "spec.steps[1].steps[0].auth.clientSecretFrom: Secret 'gone' does not exist")
    }
    assert [m["schedule"]["uid"] for m in group.members] == ["s-1", "s-3"]
    assert values["members.0.monitor.spec.steps.0.auth.password"] == PASSWORD
    assert values["members.0.subtests.0.spec.steps.1.steps.0.auth.clientSecret"] == CLIENT_SECRET
    assert values["members.1.testSuite.spec.secretParameters.0.value"] == PASSWORD

    configmap = tickobjects.build_members_configmap("team-a", group, 64, {"metadata": {"name": group.name, "uid": "c"}})
    members = gzip.decompress(base64.b64decode(configmap["binaryData"]["members.json.gz"])).decode()
    assert PASSWORD not in members and CLIENT_SECRET not in members and CERT not in members
    assert '"name":"assay-tick-0123abcd-secrets"' in members

    cronjob = tickobjects.build_tick_cronjob("team-a", group, OperatorSettings(), with_secrets=True)
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert {"name": "secrets", "secret": {"secretName": "assay-tick-0123abcd-secrets"}} in pod["volumes"]
    plain = tickobjects.build_tick_cronjob("team-a", group, OperatorSettings())
    assert all("secret" not in v for v in plain["spec"]["jobTemplate"]["spec"]["template"]["spec"]["volumes"])


# --- Kopf's stored state -----------------------------------------------------------------------


def test_kopfs_stored_state_has_hmacs_in_place_of_inline_secret_values():
    manifest = monitor_manifest()
    essence = essence_without_secrets("Monitor", {"spec": manifest["spec"]}, b"key-1")
    text = json.dumps(essence)
    assert PASSWORD not in text and CERT not in text and TOKEN not in text
    assert essence["spec"]["steps"][0]["auth"]["password"].startswith("hmac-sha256:")
    # A changed password is a changed state; the same one under the same key is not.
    changed = json.loads(json.dumps(manifest["spec"]).replace(PASSWORD, "pw-other"))
    assert essence_without_secrets("Monitor", {"spec": changed}, b"key-1") != essence
    assert essence_without_secrets("Monitor", {"spec": manifest["spec"]}, b"key-1") == essence
    # A spec the model rejects is kept as one digest.
    broken = {"spec": {"steps": [{"stepType": "request", "auth": {"authType": "basic", "password": PASSWORD}}]}}
    assert PASSWORD not in json.dumps(essence_without_secrets("Monitor", broken, b"key-1"))

    body = kopf.Body({**manifest, "metadata": {**manifest["metadata"], "annotations": {"a": "b"}}})
    built = SecretFreeDiffBaseStorage(b"key-1").build(body=body)
    assert PASSWORD not in json.dumps(built) and built["metadata"]["annotations"] == {"a": "b"}


# --- the runner uses them ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def target():
    with HttpTarget() as target:
        yield target


def test_a_monitor_sends_secret_variables_and_its_result_leaves_them_out(target):
    monitor = Monitor.model_validate(
        {
            "metadata": {"name": "m"},
            "spec": {
                "steps": [{"stepType": "request", "url": "{{base}}/echo", "headers": {"X-Token": ["{{token}}"]}}],
                "environments": [
                    {
                        "name": "local",
                        "initialVariables": {"base": target.url, "token": "plain"},
                        "secretVariables": [{"name": "token", "value": TOKEN}],
                    }
                ],
            },
        }
    )
    result = asyncio.run(run_monitor(monitor))
    assert target.received("/echo")[-1].header("X-Token") == TOKEN
    assert "token" not in result.variables and result.variables["base"] == target.url


def test_a_suite_sends_secret_parameters_and_its_flow_conf_leaves_them_out(target):
    suite = TestSuite.model_validate(
        {
            "metadata": {"name": "s"},
            "spec": {
                "parameters": {"base": target.url},
                "secretParameters": [{"name": "password", "value": PASSWORD}],
                "flows": [
                    {"name": "f", "requests": [{"url": "{{base}}/echo", "headers": {"X-Password": "{{password}}"}}]}
                ],
            },
        }
    )
    result = asyncio.run(run_suite(suite))
    assert target.received("/echo")[-1].header("X-Password") == PASSWORD
    assert result.passed
    assert result.flow_runs[0].conf["parameters"] == {"base": target.url}
    assert PASSWORD not in json.dumps(result.to_loadmill()) + json.dumps(result.flow_runs[0].to_loadmill())


def test_validation_messages_in_conditions_do_not_echo_the_spec():
    auth = {"authType": "basic", "password": PASSWORD}  # no username
    with pytest.raises(ValidationError) as caught:
        MonitorSpec.model_validate({"steps": [{"stepType": "request", "url": "http://x", "auth": auth}]})
    assert PASSWORD in str(caught.value)  # pydantic's own text quotes the input
    summary = common.error_summary(caught.value)
    assert PASSWORD not in summary and "steps.0.request.auth.basic.username: Field required" in summary


def test_the_digest_key_is_the_same_for_every_replica_sharing_the_upload_key():
    from pydantic import SecretStr

    from assay.operator.diffbase import diffbase_key
    from assay.operator.settings import OperatorSettings

    one = diffbase_key(OperatorSettings(upload_key=SecretStr("shared-upload-key")))
    assert one == diffbase_key(OperatorSettings(upload_key=SecretStr("shared-upload-key"))) and len(one) == 32
    assert one != diffbase_key(OperatorSettings(upload_key=SecretStr("another-key")))
    assert one != b"shared-upload-key" and diffbase_key(OperatorSettings(upload_key=None)) is None
