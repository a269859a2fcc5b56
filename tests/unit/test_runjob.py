"""The run Job and spec ConfigMap the operator creates, read straight from the builders."""

import base64
import json

from assay.crds.contracts.upload import RunGrant, upload_token
from assay.operator.names import job_name_for, run_id_for, spec_configmap_name_for, upload_secret_name_for
from assay.operator.runjob import build_runner_job, build_spec_configmap, build_upload_secret
from assay.operator.settings import OperatorSettings

LOADTEST = {
    "apiVersion": "assay.dev/v1alpha1",
    "kind": "LoadTest",
    "metadata": {"name": "checkout", "namespace": "shop", "uid": "0b7e3c2a-1111-2222-3333-444455556666"},
    "spec": {
        "shards": 3,
        "load": {"users": 6, "iterations": 2},
        "flows": [{"name": "f", "requests": [{"url": "http://127.0.0.1:1/"}]}],
    },
}


def test_run_id_is_deterministic_and_fits_pod_names():
    run_id = run_id_for("checkout", LOADTEST["metadata"]["uid"])
    assert run_id == "checkout-0b7e3c2a"
    assert run_id_for("checkout", LOADTEST["metadata"]["uid"]) == run_id
    long = run_id_for("x" * 200, LOADTEST["metadata"]["uid"])
    assert len(long) <= 52 and long.endswith("-0b7e3c2a")
    assert run_id_for("x" * 200 + "a", "u") != run_id_for("x" * 200 + "b", "u")


def test_job_is_indexed_with_one_pod_per_shard_and_no_retries():
    run_id = run_id_for("checkout", LOADTEST["metadata"]["uid"])
    job = build_runner_job(LOADTEST, run_id, 3, OperatorSettings(runner_image="img:1"), ["loadtest"])
    assert job["metadata"]["name"] == job_name_for(run_id)
    assert job["metadata"]["namespace"] == "shop"
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 3, 3)
    assert spec["backoffLimit"] == 0
    owner = job["metadata"]["ownerReferences"][0]
    assert owner == {
        "apiVersion": "assay.dev/v1alpha1",
        "kind": "LoadTest",
        "name": "checkout",
        "uid": LOADTEST["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    labels = spec["template"]["metadata"]["labels"]
    assert labels["assay.dev/run-id"] == run_id and labels["assay.dev/kind"] == "LoadTest"
    container = spec["template"]["spec"]["containers"][0]
    assert container["image"] == "img:1"
    assert container["command"] == ["python", "-m", "assay.runner"]
    assert container["args"] == ["loadtest", "--spec", "/etc/assay/run/manifest.json"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["ASSAY_TERMINATION_LOG"] == container["terminationMessagePath"]
    assert env["ASSAY_SHARDS"] == "3" and env["ASSAY_RUN_ID"] == run_id
    assert (env["ASSAY_PROJECT"], env["ASSAY_OWNER_KIND"], env["ASSAY_OWNER_NAME"], env["ASSAY_OWNER_UID"]) == (
        "shop",
        "LoadTest",
        "checkout",
        LOADTEST["metadata"]["uid"],
    )
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    volume = spec["template"]["spec"]["volumes"][0]
    assert volume["configMap"]["name"] == spec_configmap_name_for(run_id)


def test_spec_configmap_carries_the_manifest_the_runner_reads():
    cm = build_spec_configmap(LOADTEST, "checkout-0b7e3c2a")
    manifest = json.loads(cm["data"]["manifest.json"])
    assert manifest["kind"] == "LoadTest"
    assert manifest["spec"] == LOADTEST["spec"]
    assert cm["metadata"]["ownerReferences"][0]["uid"] == LOADTEST["metadata"]["uid"]


UPLOADS = OperatorSettings(runner_image="img:1", gateway_url="http://gw.assay.svc:8000", upload_key="k" * 32)


def test_without_gateway_or_key_the_runner_gets_no_upload_settings():
    for settings in (
        OperatorSettings(),
        OperatorSettings(gateway_url="http://gw:8000"),
        OperatorSettings(upload_key="k" * 32),
    ):
        assert not settings.uploads_enabled
        job = build_runner_job(LOADTEST, "checkout-0b7e3c2a", 3, settings, ["loadtest"])
        names = {e["name"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert not names & {"ASSAY_GATEWAY_URL", "ASSAY_UPLOAD_TOKEN"}


def test_with_gateway_and_key_the_runner_gets_the_gateway_and_its_runs_token_from_a_secret():
    run_id = "checkout-0b7e3c2a"
    job = build_runner_job(LOADTEST, run_id, 3, UPLOADS, ["loadtest"])
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["ASSAY_GATEWAY_URL"]["value"] == "http://gw.assay.svc:8000"
    assert env["ASSAY_UPLOAD_TOKEN"] == {
        "name": "ASSAY_UPLOAD_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": upload_secret_name_for(run_id), "key": "token"}},
    }
    assert upload_secret_name_for(run_id) == "checkout-0b7e3c2a-upload"
    for name in (
        "ASSAY_RUN_ID",
        "ASSAY_PROJECT",
        "ASSAY_OWNER_KIND",
        "ASSAY_OWNER_NAME",
        "ASSAY_OWNER_UID",
        "ASSAY_SHARDS",
    ):
        assert name in env


def test_upload_secret_holds_the_token_of_the_run_and_its_owner_and_belongs_to_the_runs_owner():
    secret = build_upload_secret(LOADTEST, "checkout-0b7e3c2a", UPLOADS)
    assert secret["kind"] == "Secret" and secret["metadata"]["name"] == "checkout-0b7e3c2a-upload"
    assert secret["metadata"]["namespace"] == "shop"
    token = base64.b64decode(secret["data"]["token"]).decode()
    uid = LOADTEST["metadata"]["uid"]
    assert token == upload_token("k" * 32, RunGrant("shop", "LoadTest", "checkout", uid, "checkout-0b7e3c2a"))
    assert token != upload_token("k" * 32, RunGrant("shop", "LoadTest", "checkout", uid, "checkout-other"))
    owner = secret["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("LoadTest", LOADTEST["metadata"]["uid"], True)
    assert secret["metadata"]["labels"]["assay.dev/run-id"] == "checkout-0b7e3c2a"


def test_a_region_job_is_named_after_the_run_and_region_and_selects_the_regions_nodes():
    job = build_runner_job(
        LOADTEST,
        "checkout-0b7e3c2a",
        1,
        OperatorSettings(),
        ["monitor"],
        location="eu1",
        node_selector={"topology.kubernetes.io/region": "eu1"},
        run_shards=2,
        env={"ASSAY_REGION": "eu1"},
    )
    assert job["metadata"]["name"] == job_name_for("checkout-0b7e3c2a", "eu1") == "checkout-0b7e3c2a-eu1"
    pod = job["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"topology.kubernetes.io/region": "eu1"}
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["ASSAY_REGION"] == "eu1" and env["ASSAY_SHARDS"] == "2"
    assert job["spec"]["completions"] == 1
    assert job["spec"]["template"]["metadata"]["labels"]["assay.dev/location"] == "eu1"


def test_an_empty_upload_key_disables_uploads():
    assert not OperatorSettings(gateway_url="http://gw:8000", upload_key="").uploads_enabled


def test_configmap_parameter_pools_are_mounted_where_the_runner_reads_them():
    from assay.operator.runjob import build_runner_job
    from assay.operator.settings import OperatorSettings

    owner = {
        "apiVersion": "assay.dev/v1alpha1",
        "kind": "LoadTest",
        "metadata": {"name": "lt", "namespace": "ns", "uid": "u"},
        "spec": {},
    }
    job = build_runner_job(
        owner,
        "lt-u",
        2,
        OperatorSettings(),
        ["loadtest"],
        pool_config_maps=[("users", "a.csv"), ("users", "b.csv"), ("cards", "c.csv")],
    )
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert {"name": "ASSAY_POOLS_DIR", "value": "/etc/assay/pools"} in container["env"]
    assert {"name": "pools", "mountPath": "/etc/assay/pools", "readOnly": True} in container["volumeMounts"]
    assert pod["volumes"][1] == {
        "name": "pools",
        "projected": {
            "sources": [
                {"configMap": {"name": "cards", "items": [{"key": "c.csv", "path": "cards/c.csv"}]}},
                {
                    "configMap": {
                        "name": "users",
                        "items": [{"key": "a.csv", "path": "users/a.csv"}, {"key": "b.csv", "path": "users/b.csv"}],
                    }
                },
            ]
        },
    }


def test_run_pods_carry_cpu_and_memory_limits():
    default = build_runner_job(LOADTEST, "checkout-0b7e3c2a", 1, OperatorSettings(), ["loadtest"])
    resources = default["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources == {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}

    settings = OperatorSettings(runner_cpu_request="100m", runner_cpu_limit="500m", runner_memory_limit="512Mi")
    job = build_runner_job(LOADTEST, "checkout-0b7e3c2a", 2, settings, ["loadtest"])
    limits = job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {"cpu": "500m", "memory": "512Mi"}
