"""The node agent on the real control plane: the Job controller creates pods, the agent binds
and runs them as local processes, and the Job's own status shows what the agent reported."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster

REGION = {"topology.kubernetes.io/region": "local"}  # the label of the session's agent


def apply(cluster, namespace: str, *objects: dict) -> None:
    cluster.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}),
    )


def job(name: str, container: dict, **spec) -> dict:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "nodeSelector": REGION,
                    "containers": [{"name": "main", "image": "ignored:latest", **container}],
                    "volumes": spec.pop("volumes", []),
                }
            },
            **spec,
        },
    }


def wait_for_job(cluster, namespace: str, name: str, condition: str, timeout: int = 90) -> None:
    cluster.kubectl(
        "wait",
        "-n",
        namespace,
        f"job/{name}",
        f"--for=condition={condition}",
        f"--timeout={timeout}s",
        timeout=timeout + 10,
    )


def job_pods(cluster, namespace: str, name: str) -> list[dict]:
    out = cluster.kubectl("get", "pods", "-n", namespace, "-l", f"job-name={name}", "-o", "json")
    return json.loads(out.stdout)["items"]


def terminated(pod: dict) -> dict:
    return pod["status"]["containerStatuses"][0]["state"]["terminated"]


def poll(what: str, check, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def pids_with_argument(marker: str) -> list[int]:
    """Live processes (zombies excluded) with `marker` among their arguments."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if marker.encode() in args and state != "Z":
            found.append(int(proc.name))
    return found


def test_indexed_job_pods_get_their_index_and_config_map_and_report_through_the_termination_file(cluster, namespace):
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "greeting"}, "data": {"text": "hello"}}
    script = (
        "import os, sys; message, greeting = sys.argv[1:]; "
        "open(message, 'w').write(os.environ['JOB_COMPLETION_INDEX'] + ':' + open(greeting).read())"
    )
    container = {
        "command": ["python", "-c", script, "/dev/termination-log", "/etc/greeting/text"],
        "volumeMounts": [{"name": "greeting", "mountPath": "/etc/greeting", "readOnly": True}],
    }
    apply(
        cluster,
        namespace,
        config,
        job(
            "indexed",
            container,
            completionMode="Indexed",
            completions=2,
            parallelism=2,
            backoffLimit=0,
            volumes=[{"name": "greeting", "configMap": {"name": "greeting"}}],
        ),
    )

    wait_for_job(cluster, namespace, "indexed", "Complete")

    pods = job_pods(cluster, namespace, "indexed")
    assert [pod["status"]["phase"] for pod in pods] == ["Succeeded", "Succeeded"]
    messages = {
        pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]: terminated(pod)["message"]
        for pod in pods
    }
    assert messages == {"0": "0:hello", "1": "1:hello"}
    assert all(terminated(pod)["reason"] == "Completed" and pod["spec"]["nodeName"] == "assay-local" for pod in pods)


def test_failing_container_fails_its_pod_and_the_job_respects_its_backoff_limit(cluster, namespace):
    container = {
        "command": ["python3", "-c", "import sys; print('going down'); sys.exit(3)"],
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    apply(cluster, namespace, job("failing", container, backoffLimit=1))

    wait_for_job(cluster, namespace, "failing", "Failed", timeout=120)

    pods = job_pods(cluster, namespace, "failing")
    assert len(pods) == 2  # the first try and one retry
    assert all(pod["status"]["phase"] == "Failed" for pod in pods)
    assert [(terminated(pod)["exitCode"], terminated(pod)["reason"], terminated(pod)["message"]) for pod in pods] == [
        (3, "Error", "going down")
    ] * 2
    conditions = json.loads(cluster.kubectl("get", "job", "failing", "-n", namespace, "-o", "json").stdout)
    assert {"type": "Failed", "reason": "BackoffLimitExceeded"}.items() <= next(
        c for c in conditions["status"]["conditions"] if c["type"] == "Failed"
    ).items()


def test_deleting_a_job_kills_its_running_process_and_children_and_removes_the_pods(cluster, namespace):
    marker = f"nodeagent-test-{uuid.uuid4().hex}"
    script = (
        "import subprocess, sys, time; "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', sys.argv[1] + '-child']); "
        "time.sleep(600)"
    )
    apply(cluster, namespace, job("sleeper", {"command": ["python", "-c", script, marker]}))

    def process_and_child() -> list[int]:
        return pids_with_argument(marker) + pids_with_argument(marker + "-child")

    poll("the pod's process and its child", lambda: len(process_and_child()) == 2)
    assert job_pods(cluster, namespace, "sleeper")[0]["status"]["phase"] == "Running"

    cluster.kubectl("delete", "job", "sleeper", "-n", namespace, "--cascade=foreground", "--timeout=60s", timeout=70)

    poll("the process and its child to die", lambda: not process_and_child())
    poll("the pods to go", lambda: not job_pods(cluster, namespace, "sleeper"))
