"""Secret values of Monitor and TestSuite specs on the real control plane: runs with an inline
basic-auth password and a Secret-referenced OAuth client secret pass against a loopback API
that checks both, and neither value is then found in any ConfigMap or any annotation of the
namespace; the run's values travel in a Secret owned by the run's Job. A referenced Secret
that does not exist holds the run back with a SecretNotFound condition until it is created.

Objects are made with `kubectl create`, not a client-side `kubectl apply`, whose
last-applied-configuration annotation would copy the inline password (crds/README.md)."""

from __future__ import annotations

import base64
import gzip
import json
import secrets

import pytest

from assay.operator.names import run_id_for_request
from tests.support.targets import CredentialTarget

pytestmark = pytest.mark.cluster

ANNOTATION = "assay.dev/run-request"
KOPF_LAST_HANDLED = "kopf.zalando.org/last-handled-configuration"
USERNAME, CLIENT_ID = "demo", "assay-client"
CREDENTIALS_SECRET = "api-credentials"


@pytest.fixture
def credentials():
    """Fresh random values, so a match anywhere can only be a copy of them."""
    return {"password": f"pw-{secrets.token_hex(12)}", "client_secret": f"cs-{secrets.token_hex(12)}"}


@pytest.fixture
def target(credentials):
    with CredentialTarget(
        username=USERNAME,
        password=credentials["password"],
        client_id=CLIENT_ID,
        client_secret=credentials["client_secret"],
    ) as server:
        yield server


def create(cluster, namespace: str, document: dict) -> None:
    cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(document))


def credentials_secret(client_secret: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": CREDENTIALS_SECRET},
        "stringData": {"client-secret": client_secret},
    }


def monitor(name: str, url: str, password: str, secret_name: str = CREDENTIALS_SECRET) -> dict:
    ok = [{"source": "response_status", "comparison": "equal", "value": 200}]
    return {
        "apiVersion": "assay.dev/v1alpha1",
        "kind": "Monitor",
        "metadata": {"name": name},
        "spec": {
            "steps": [
                {
                    "stepType": "request",
                    "url": "{{base}}/basic",
                    "assertions": ok,
                    "auth": {"authType": "basic", "username": USERNAME, "password": password},
                },
                {
                    "stepType": "request",
                    "url": "{{base}}/protected",
                    "assertions": ok,
                    "auth": {
                        "authType": "oauth_2",
                        "grantType": "client_credentials",
                        "clientId": CLIENT_ID,
                        "accessTokenUrl": f"{url}/oauth/token",
                        "clientSecretFrom": {"secretKeyRef": {"name": secret_name, "key": "client-secret"}},
                    },
                },
            ],
            "environments": [{"name": "local", "initialVariables": {"base": url}}],
        },
    }


def suite(name: str, url: str, password: str) -> dict:
    ok = [{"source": "response_status", "comparison": "equal", "value": 200}]
    return {
        "apiVersion": "assay.dev/v1alpha1",
        "kind": "TestSuite",
        "metadata": {"name": name},
        "spec": {
            "parameters": {"base": url, "user": USERNAME},
            "secretParameters": [
                {"name": "password", "value": password},
                {
                    "name": "clientSecret",
                    "valueFrom": {"secretKeyRef": {"name": CREDENTIALS_SECRET, "key": "client-secret"}},
                },
            ],
            "flows": [
                {
                    "name": "authenticated",
                    "requests": [
                        {
                            "name": "basic",
                            "url": "{{base}}/basic",
                            "assertions": ok,
                            "headers": {"Authorization": "Basic {{encode_base64({{user}}:{{password}})}}"},
                        },
                        {
                            "name": "token",
                            "method": "POST",
                            "url": "{{base}}/oauth/token",
                            "assertions": ok,
                            "headers": {"Content-Type": "application/x-www-form-urlencoded"},
                            "body": f"grant_type=client_credentials&client_id={CLIENT_ID}&client_secret={{{{clientSecret}}}}",
                            "extract": [{"name": "token", "source": "response_json", "property": "access_token"}],
                        },
                        {
                            "name": "protected",
                            "url": "{{base}}/protected",
                            "assertions": ok,
                            "headers": {"Authorization": "Bearer {{token}}"},
                        },
                    ],
                }
            ],
        },
    }


def get(cluster, kind: str, name: str, namespace: str) -> dict:
    return json.loads(cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout)


def request_run(cluster, namespace: str, kind: str, name: str, request_id: str) -> str:
    cluster.kubectl("annotate", kind, name, "-n", namespace, f"{ANNOTATION}={request_id}", "--overwrite")
    return run_id_for_request(name, get(cluster, kind, name, namespace)["metadata"]["uid"], request_id)


def finished(cluster, namespace: str, kind: str, name: str, run_id: str):
    def check():
        last = (get(cluster, kind, name, namespace).get("status") or {}).get("lastRun") or {}
        return last if last.get("runId") == run_id and last.get("result") else None

    return check


def configmap_texts(cluster, namespace: str) -> list[str]:
    """Every value of every ConfigMap of the namespace, binary ones decoded (and unzipped)."""
    items = json.loads(cluster.kubectl("get", "configmaps", "-n", namespace, "-o", "json").stdout)["items"]
    texts = []
    for item in items:
        texts += list((item.get("data") or {}).values())
        for value in (item.get("binaryData") or {}).values():
            raw = base64.b64decode(value)
            texts.append((gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode(errors="replace"))
    return texts


def all_annotations(cluster, namespace: str) -> dict[str, dict[str, str]]:
    """The annotations of every object of every listable namespaced kind, by kind/name."""
    kinds = cluster.kubectl("api-resources", "--verbs=list", "--namespaced", "-o", "name").stdout.split()
    items = json.loads(cluster.kubectl("get", ",".join(kinds), "-n", namespace, "-o", "json").stdout)["items"]
    return {f"{i['kind']}/{i['metadata']['name']}": i["metadata"].get("annotations") or {} for i in items}


def assert_nowhere_but_secrets(cluster, namespace: str, values: list[str]) -> dict[str, dict[str, str]]:
    texts = configmap_texts(cluster, namespace)
    assert texts, "the run's ConfigMap should be there to scan"
    annotations = all_annotations(cluster, namespace)
    for value in values:
        assert not [t for t in texts if value in t], "a secret value is in a ConfigMap"
        found = [f"{obj} {key}" for obj, notes in annotations.items() for key, text in notes.items() if value in text]
        assert not found, f"a secret value is in annotations: {found}"
    return annotations


def assert_run_secret_owned_by_job(cluster, namespace: str, run_id: str, values: list[str]) -> None:
    job = get(cluster, "job", run_id, namespace)
    secret = get(cluster, "secret", f"{run_id}-secrets", namespace)
    assert [(o["kind"], o["uid"]) for o in secret["metadata"]["ownerReferences"]] == [("Job", job["metadata"]["uid"])]
    held = {base64.b64decode(v).decode() for v in secret["data"].values()}
    assert set(values) <= held
    mounted = [v for v in job["spec"]["template"]["spec"]["volumes"] if "secret" in v]
    assert [v["secret"]["secretName"] for v in mounted] == [f"{run_id}-secrets"]


def test_monitor_with_inline_and_referenced_secrets_passes_and_leaves_them_in_its_secret_only(
    cluster, namespace, operator, credentials, target
):
    create(cluster, namespace, credentials_secret(credentials["client_secret"]))
    create(cluster, namespace, monitor("login", target.url, credentials["password"]))
    run_id = request_run(cluster, namespace, "monitor", "login", "r-1")
    last = cluster.wait_for("the Monitor run", finished(cluster, namespace, "monitor", "login", run_id), timeout=90)

    assert last["result"] == "Passed", (last, operator.log()[-3000:])
    assert target.accepted == {"/basic": 1, "/oauth/token": 1, "/protected": 1}
    assert not target.refused
    values = [credentials["password"], credentials["client_secret"]]
    annotations = assert_nowhere_but_secrets(cluster, namespace, values)
    # Kopf's last-handled state is there, with an HMAC where the password was.
    assert "hmac-sha256:" in annotations["Monitor/login"][KOPF_LAST_HANDLED]
    assert_run_secret_owned_by_job(cluster, namespace, run_id, values)


def test_testsuite_with_inline_and_referenced_secret_parameters_passes_and_leaves_them_in_its_secret_only(
    cluster, namespace, operator, credentials, target
):
    create(cluster, namespace, credentials_secret(credentials["client_secret"]))
    create(cluster, namespace, suite("login-suite", target.url, credentials["password"]))
    run_id = request_run(cluster, namespace, "testsuite", "login-suite", "r-1")
    last = cluster.wait_for(
        "the suite run", finished(cluster, namespace, "testsuite", "login-suite", run_id), timeout=90
    )

    assert last["result"] == "Passed", (last, operator.log()[-3000:])
    assert target.accepted == {"/basic": 1, "/oauth/token": 1, "/protected": 1}
    assert not target.refused
    values = [credentials["password"], credentials["client_secret"]]
    annotations = assert_nowhere_but_secrets(cluster, namespace, values)
    assert "hmac-sha256:" in annotations["TestSuite/login-suite"][KOPF_LAST_HANDLED]
    assert_run_secret_owned_by_job(cluster, namespace, run_id, values)


def test_a_missing_referenced_secret_holds_the_run_with_a_condition_until_it_exists(
    cluster, namespace, operator, credentials, target
):
    create(cluster, namespace, monitor("waiting", target.url, credentials["password"], secret_name="later"))
    run_id = request_run(cluster, namespace, "monitor", "waiting", "r-1")

    def secret_condition():
        conditions = (get(cluster, "monitor", "waiting", namespace).get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c["type"] == "RunRequest" and c["reason"] == "SecretNotFound"), None)

    condition = cluster.wait_for("the SecretNotFound condition", secret_condition, timeout=60)
    assert condition["status"] == "Unknown"
    assert run_id in condition["message"]
    assert "spec.steps[1].auth.clientSecretFrom" in condition["message"] and "'later'" in condition["message"]
    assert json.loads(cluster.kubectl("get", "jobs", "-n", namespace, "-o", "json").stdout)["items"] == []
    assert target.accepted == {} and target.refused == {}

    create(cluster, namespace, {**credentials_secret(credentials["client_secret"]), "metadata": {"name": "later"}})
    last = cluster.wait_for(
        "the run once the Secret exists", finished(cluster, namespace, "monitor", "waiting", run_id), timeout=90
    )
    assert last["result"] == "Passed", (last, operator.log()[-3000:])
    assert target.accepted == {"/basic": 1, "/oauth/token": 1, "/protected": 1}


def schedule(name: str, kind: str, target: str) -> dict:
    return {
        "apiVersion": "assay.dev/v1alpha1",
        "kind": "Schedule",
        "metadata": {"name": name},
        "spec": {"target": {"kind": kind, "name": target}, "interval": "1m"},
    }


def test_scheduled_runs_take_secret_values_from_the_tick_groups_secret_not_its_configmap(
    cluster, namespace, operator, credentials, target
):
    create(cluster, namespace, credentials_secret(credentials["client_secret"]))
    create(cluster, namespace, monitor("login", target.url, credentials["password"]))
    create(cluster, namespace, suite("login-suite", target.url, credentials["password"]))
    create(cluster, namespace, monitor("waiting", target.url, credentials["password"], secret_name="later"))
    for name, kind, target_name in (
        ("every-login", "Monitor", "login"),
        ("every-suite", "TestSuite", "login-suite"),
        ("every-waiting", "Monitor", "waiting"),
    ):
        create(cluster, namespace, schedule(name, kind, target_name))

    def ready(name):
        conditions = (get(cluster, "schedule", name, namespace).get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c["type"] == "Ready" and c["status"] != "Unknown"), None)

    waiting = cluster.wait_for("the Schedule of the Monitor without its Secret", lambda: ready("every-waiting"))
    assert (waiting["status"], waiting["reason"]) == ("False", "SecretNotFound"), waiting
    assert "'later'" in waiting["message"]

    def scheduled(kind, name):
        last = (get(cluster, kind, name, namespace).get("status") or {}).get("lastRun") or {}
        return last if last.get("result") else None

    monitor_run = cluster.wait_for(
        "the Monitor's scheduled run", lambda: scheduled("monitor", "login"), timeout=150, interval=1
    )
    suite_run = cluster.wait_for(
        "the TestSuite's scheduled run", lambda: scheduled("testsuite", "login-suite"), timeout=60, interval=1
    )
    assert monitor_run["result"] == "Passed" and monitor_run["schedule"] == "every-login", monitor_run
    assert suite_run["result"] == "Passed", suite_run
    assert target.accepted["/protected"] >= 2 and not target.refused

    values = [credentials["password"], credentials["client_secret"]]
    assert_nowhere_but_secrets(cluster, namespace, values)
    [cronjob] = json.loads(cluster.kubectl("get", "cronjobs", "-n", namespace, "-o", "json").stdout)["items"]
    group = cronjob["metadata"]["name"]
    secret = get(cluster, "secret", f"{group}-secrets", namespace)
    assert [(o["kind"], o["uid"]) for o in secret["metadata"]["ownerReferences"]] == [
        ("CronJob", cronjob["metadata"]["uid"])
    ]
    assert set(values) <= {base64.b64decode(v).decode() for v in secret["data"].values()}
    volumes = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["volumes"]
    assert {"name": "secrets", "secret": {"secretName": f"{group}-secrets", "defaultMode": 420}} in volumes
