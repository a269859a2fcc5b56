"""A LoadTest end to end on the real control plane: kubectl apply -> Indexed Job -> pods run
by the node agent -> status, with the counts checked against what the target received."""

from __future__ import annotations

import json

import pytest

from tests.support.targets import CountingTarget

pytestmark = pytest.mark.cluster


def loadtest_manifest(
    name: str, url: str, *, shards: int, users: int, iterations: int | None = None, duration: str | None = None
) -> str:
    load = {"users": users, "iterations": iterations, "duration": duration}
    return json.dumps(
        {
            "apiVersion": "assay.dev/v1alpha1",
            "kind": "LoadTest",
            "metadata": {"name": name},
            "spec": {
                "description": "counted against a loopback target",
                "shards": shards,
                "baseUrl": url,
                "load": {k: v for k, v in load.items() if v is not None},
                "flows": [
                    {
                        "name": "browse",
                        "requests": [
                            {"name": "home", "url": "/"},
                            {"name": "item", "method": "POST", "url": "/items", "body": '{"id": 1}'},
                        ],
                    }
                ],
            },
        }
    )


def get(cluster, kind: str, name: str, namespace: str) -> dict | None:
    out = cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


def phase_is(cluster, name, namespace, *phases):
    def check():
        lt = get(cluster, "loadtest", name, namespace) or {}
        status = lt.get("status") or {}
        return status if status.get("phase") in phases else None

    return check


def run_jobs(cluster, namespace: str, name: str) -> list[dict]:
    out = cluster.kubectl("get", "jobs", "-n", namespace, "-l", f"assay.dev/name={name}", "-o", "json")
    return json.loads(out.stdout)["items"]


def test_sharded_loadtest_runs_as_indexed_job_and_counts_match_the_target(cluster, namespace, operator):
    with CountingTarget() as target:
        cluster.kubectl(
            "apply",
            "-n",
            namespace,
            "-f",
            "-",
            input=loadtest_manifest("two-shards", target.url, shards=2, users=4, iterations=5),
        )
        jobs = cluster.wait_for("the run Job", lambda: run_jobs(cluster, namespace, "two-shards"))
        assert len(jobs) == 1
        job = jobs[0]
        assert job["spec"]["completionMode"] == "Indexed"
        assert job["spec"]["completions"] == 2 and job["spec"]["parallelism"] == 2
        assert job["metadata"]["ownerReferences"][0]["kind"] == "LoadTest"

        status = cluster.wait_for(
            "the LoadTest to finish", phase_is(cluster, "two-shards", namespace, "Succeeded", "Failed"), timeout=90
        )
        assert status["phase"] == "Succeeded", status
        assert status["result"] == "Passed", status
        # 4 users x 5 iterations x 2 requests, split over two shards.
        assert target.total == 40
        assert status["summary"]["requests"] == target.total
        assert status["summary"]["failures"] == 0
        assert target.counts[("GET", "/")] == 20 and target.counts[("POST", "/items")] == 20
        assert status["shards"]["succeeded"] == 2
        assert status["runId"] == job["metadata"]["labels"]["assay.dev/run-id"]

        pods = json.loads(
            cluster.kubectl(
                "get",
                "pods",
                "-n",
                namespace,
                "-l",
                f"batch.kubernetes.io/job-name={job['metadata']['name']}",
                "-o",
                "json",
            ).stdout
        )["items"]
        assert sorted(p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] for p in pods) == [
            "0",
            "1",
        ]
        assert all(p["status"]["phase"] == "Succeeded" and p["spec"]["nodeName"] for p in pods)
        shard_requests = sorted(
            json.loads(p["status"]["containerStatuses"][0]["state"]["terminated"]["message"])["requests"] for p in pods
        )
        assert shard_requests == [20, 20]


def test_operator_killed_mid_run_completes_the_run_once(cluster, namespace, operator):
    # Slow responses keep the run in flight while the operator is down.
    with CountingTarget(delay=0.15) as target:
        cluster.kubectl(
            "apply",
            "-n",
            namespace,
            "-f",
            "-",
            input=loadtest_manifest("survives", target.url, shards=2, users=2, iterations=10),
        )
        job = cluster.wait_for("the run Job", lambda: run_jobs(cluster, namespace, "survives"))[0]
        cluster.wait_for("requests to arrive", lambda: target.total > 0, timeout=60, interval=0.1)
        operator.kill()
        assert target.total < 40, "the run finished before the operator was killed; slow the target"
        operator.start()

        status = cluster.wait_for(
            "the LoadTest to finish", phase_is(cluster, "survives", namespace, "Succeeded", "Failed"), timeout=120
        )
        jobs = run_jobs(cluster, namespace, "survives")
        assert [j["metadata"]["uid"] for j in jobs] == [job["metadata"]["uid"]], "a second Job was started"
        assert status["phase"] == "Succeeded" and status["result"] == "Passed", status
        assert target.total == 2 * 10 * 2
        assert status["summary"]["requests"] == target.total


def test_invalid_target_fails_the_result_with_a_clear_message(cluster, namespace, operator):
    # Nothing listens on port 9 of loopback: every request fails to connect.
    cluster.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=loadtest_manifest("nowhere", "http://127.0.0.1:9", shards=1, users=1, iterations=3),
    )
    status = cluster.wait_for(
        "the LoadTest to finish", phase_is(cluster, "nowhere", namespace, "Succeeded", "Failed"), timeout=90
    )
    assert status["result"] == "Failed"
    assert status["summary"] == {**status["summary"], "requests": 6, "failures": 6}
    assert status["message"] == "6 of 6 requests failed"


def test_deleting_the_loadtest_removes_its_job_and_pods(cluster, namespace, operator):
    with CountingTarget(delay=0.05) as target:
        cluster.kubectl(
            "apply",
            "-n",
            namespace,
            "-f",
            "-",
            input=loadtest_manifest("doomed", target.url, shards=2, users=2, duration="5m"),
        )
        cluster.wait_for("the run to be Running", phase_is(cluster, "doomed", namespace, "Running"), timeout=60)
        cluster.wait_for("requests to arrive", lambda: target.total > 0, timeout=60, interval=0.1)
        cluster.kubectl("delete", "loadtest", "doomed", "-n", namespace, "--wait=true", "--timeout=60s")

        def gone():
            jobs = cluster.kubectl("get", "jobs", "-n", namespace, "-o", "name").stdout.strip()
            pods = cluster.kubectl("get", "pods", "-n", namespace, "-o", "name").stdout.strip()
            cms = cluster.kubectl(
                "get", "configmaps", "-n", namespace, "-l", "assay.dev/name=doomed", "-o", "name"
            ).stdout.strip()
            return not jobs and not pods and not cms

        cluster.wait_for("the Job, pods and spec ConfigMap to be garbage-collected", gone, timeout=90)
        # The runner processes died with their pods: the target stops receiving requests.
        settled = target.total
        import time

        time.sleep(1.5)
        assert target.total == settled


def test_configmap_pool_and_criteria_reach_the_run_and_its_status(cluster, namespace, operator):
    with CountingTarget() as target:
        cluster.kubectl(
            "create", "configmap", "shoppers", "-n", namespace, "--from-literal=users.csv=id\n101\n102\n103\n104\n"
        )
        manifest = json.loads(loadtest_manifest("pooled", target.url, shards=2, users=2, iterations=4))
        manifest["spec"]["parameterPools"] = [
            {"name": "shoppers", "configMapRef": {"name": "shoppers", "key": "users.csv"}}
        ]
        manifest["spec"]["flows"] = [{"name": "browse", "requests": [{"name": "user", "url": "/users/{{id}}"}]}]
        # The first criterion holds on loopback, the second cannot.
        manifest["spec"]["criteria"] = ["error_rate < 1%", "rps >= 1000000"]
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))
        status = cluster.wait_for(
            "the LoadTest to finish", phase_is(cluster, "pooled", namespace, "Succeeded", "Failed"), timeout=90
        )
        assert status["phase"] == "Succeeded", status
        assert target.total == status["summary"]["requests"] == 8
        # Each shard read its own rows of the mounted pool.
        assert {path for _, path in target.counts} <= {f"/users/{i}" for i in (101, 102, 103, 104)}
        assert len(target.counts) >= 2
        assert status["summary"]["p95Ms"] > 0
        assert status["result"] == "Failed"
        assert status["failedCriteria"] == ["rps >= 1000000"]
        assert status["message"].startswith("criteria failed: rps >= 1000000")
