"""The run Job and spec ConfigMap the operator creates, read straight from the builders."""

import json

from assay.operator.names import job_name_for, run_id_for, spec_configmap_name_for
from assay.operator.runjob import build_runner_job, build_spec_configmap
from assay.operator.settings import OperatorSettings

LOADTEST = {
    "apiVersion": "assay.dev/v1alpha1",
    "kind": "LoadTest",
    "metadata": {"name": "checkout", "namespace": "shop", "uid": "0b7e3c2a-1111-2222-3333-444455556666"},
    "spec": {"shards": 3, "load": {"users": 6, "iterations": 2},
             "flows": [{"name": "f", "requests": [{"url": "http://127.0.0.1:1/"}]}]},
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
    assert owner == {"apiVersion": "assay.dev/v1alpha1", "kind": "LoadTest", "name": "checkout",
                     "uid": LOADTEST["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}
    labels = spec["template"]["metadata"]["labels"]
    assert labels["assay.dev/run-id"] == run_id and labels["assay.dev/kind"] == "LoadTest"
    container = spec["template"]["spec"]["containers"][0]
    assert container["image"] == "img:1"
    assert container["command"] == ["python", "-m", "assay.runner"]
    assert container["args"] == ["loadtest", "--spec", "/etc/assay/run/manifest.json"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["ASSAY_TERMINATION_LOG"] == container["terminationMessagePath"]
    assert env["ASSAY_SHARDS"] == "3" and env["ASSAY_RUN_ID"] == run_id
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
