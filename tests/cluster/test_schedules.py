"""Schedules on the real control plane, with the real CronJob controller: a `1m` Schedule's
tick Job runs its Monitors and a TestSuite (three targets, one pod), their statuses record
the runs (a Monitor's with the Schedule's name), the results land in the gateway's store under the group's token; then
suspending, changing the interval (a new anchored CronJob) and deleting behave as stated.

One tick serves every assertion about runs, so the file costs about one to two minutes."""

from __future__ import annotations

import json
import urllib.request

import pytest

from assay.crds.contracts.tick import tick_of
from assay.crds.contracts.upload import RunGrant, upload_token
from assay.operator.names import run_id_for_request
from assay.crds.contracts.tick import members_of
from tests.conftest import GatewayProcess
from tests.support.targets import CountingTarget

pytestmark = pytest.mark.cluster

TICK_GROUP = "assay.dev/tick-group"
ANNOTATION = "assay.dev/run-request"


def monitor_manifest(name: str, url: str) -> str:
    return json.dumps(
        {
            "apiVersion": "assay.dev/v1alpha1",
            "kind": "Monitor",
            "metadata": {"name": name},
            "spec": {
                "steps": [
                    {
                        "stepType": "request",
                        "url": f"{url}/{name}",
                        "assertions": [{"source": "response_status", "comparison": "equal", "value": 200}],
                    }
                ],
                "environments": [{"name": "local"}],
            },
        }
    )


def failing_monitor_manifest(name: str, url: str) -> str:
    """A Monitor whose check cannot pass, in an environment that retries a failed scheduled run."""
    document = json.loads(monitor_manifest(name, url))
    document["spec"]["steps"][0]["assertions"][0]["value"] = 599
    document["spec"]["environments"] = [{"name": "local", "retryOnFailure": True}]
    return json.dumps(document)


def suite_manifest(name: str, url: str) -> str:
    return json.dumps(
        {
            "apiVersion": "assay.dev/v1alpha1",
            "kind": "TestSuite",
            "metadata": {"name": name},
            "spec": {"flows": [{"name": "buy", "requests": [{"url": f"{url}/{name}"}]}]},
        }
    )


def schedule_manifest(name: str, target: str, interval: str = "1m", kind: str = "Monitor") -> str:
    return json.dumps(
        {
            "apiVersion": "assay.dev/v1alpha1",
            "kind": "Schedule",
            "metadata": {"name": name},
            "spec": {"target": {"kind": kind, "name": target}, "interval": interval},
        }
    )


def get(cluster, kind: str, name: str, namespace: str) -> dict:
    return json.loads(cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout)


def items(cluster, kind: str, namespace: str, selector: str = TICK_GROUP) -> list[dict]:
    return json.loads(cluster.kubectl("get", kind, "-n", namespace, "-l", selector, "-o", "json").stdout)["items"]


def ready(cluster, namespace: str, name: str):
    def check():
        status = get(cluster, "schedule", name, namespace).get("status") or {}
        cond = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})
        return status if cond.get("status") == "True" and status.get("cronJobName") else None

    return check


def scheduled_run(cluster, namespace: str, name: str):
    def check():
        last = (get(cluster, "monitor", name, namespace).get("status") or {}).get("lastRun") or {}
        return last if last.get("schedule") and last.get("result") else None

    return check


def test_a_1m_schedule_runs_its_monitors_in_one_pod_per_tick_then_suspend_update_and_delete(
    cluster, namespace, gateway: GatewayProcess, operator_with_gateway
):
    with CountingTarget() as target:
        for name in ("alpha", "beta"):
            cluster.kubectl("apply", "-n", namespace, "-f", "-", input=monitor_manifest(name, target.url))
            cluster.kubectl("apply", "-n", namespace, "-f", "-", input=schedule_manifest(f"every-{name}", name))
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=failing_monitor_manifest("flaky", target.url))
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=schedule_manifest("every-flaky", "flaky"))
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=suite_manifest("cart", target.url))
        cluster.kubectl(
            "apply", "-n", namespace, "-f", "-", input=schedule_manifest("every-cart", "cart", kind="TestSuite")
        )
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=schedule_manifest("every-ghost", "ghost"))
        status = cluster.wait_for("the Schedule to be Ready", ready(cluster, namespace, "every-alpha"), timeout=60)
        group = status["cronJobName"]
        assert status["cronSchedule"] == "* * * * *" and status["anchorTime"]
        assert get(cluster, "schedule", "every-beta", namespace)["status"]["cronJobName"] == group
        cluster.wait_for(
            "the TestSuite's Schedule in the same group",
            lambda: (get(cluster, "schedule", "every-cart", namespace).get("status") or {}).get("cronJobName") == group,
            timeout=30,
        )
        (cronjob,) = items(cluster, "cronjob", namespace)
        assert cronjob["metadata"]["name"] == group
        assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"

        def says_missing():
            cond = next(
                (
                    c
                    for c in (get(cluster, "schedule", "every-ghost", namespace).get("status") or {}).get("conditions")
                    or []
                    if c["type"] == "Ready"
                ),
                {},
            )
            return cond if cond.get("reason") == "TargetNotFound" else None

        missing = cluster.wait_for("the Schedule of a missing Monitor to say so", says_missing, timeout=30)
        assert missing["status"] == "False" and "Monitor 'ghost' does not exist" in missing["message"]

        # The real CronJob controller starts a tick at the next minute.
        jobs = cluster.wait_for("a tick Job", lambda: items(cluster, "job", namespace), timeout=90, interval=1)
        job = jobs[0]
        assert job["spec"]["completions"] == 1  # three Monitors and a TestSuite, one pod

        alpha = cluster.wait_for("alpha's scheduled run", scheduled_run(cluster, namespace, "alpha"), timeout=90)
        beta = cluster.wait_for("beta's scheduled run", scheduled_run(cluster, namespace, "beta"), timeout=30)
        assert (alpha["result"], alpha["schedule"], beta["schedule"]) == ("Passed", "every-alpha", "every-beta")
        assert alpha["responseTimeMs"] >= 0 and alpha["environment"] == "local"
        assert target.counts[("GET", "/alpha")] >= 1 and target.counts[("GET", "/beta")] >= 1

        # A failed scheduled run in an environment with retryOnFailure runs once more at once.
        def retried():
            history = (get(cluster, "monitor", "flaky", namespace).get("status") or {}).get("history") or []
            scheduled = [e for e in history if e.get("schedule") and e.get("result") == "Failed"]
            retries = {e["runId"]: e for e in history if not e.get("schedule") and e.get("result")}
            return (scheduled, retries) if scheduled and retries else None

        scheduled, retries = cluster.wait_for("flaky's retry run", retried, timeout=90)
        flaky_uid = get(cluster, "monitor", "flaky", namespace)["metadata"]["uid"]
        expected = {run_id_for_request("flaky", flaky_uid, f"retry:{e['runId']}") for e in scheduled}
        assert set(retries) <= expected and retries, (retries, expected)
        assert all(e["result"] == "Failed" for e in retries.values())  # a retry is never retried itself
        assert target.counts[("GET", "/flaky")] >= 2
        cluster.kubectl("delete", "schedule", "every-flaky", "-n", namespace)

        def suite_ran():
            last = (get(cluster, "testsuite", "cart", namespace).get("status") or {}).get("lastRun") or {}
            return last if last.get("result") == "Passed" else None

        cart = cluster.wait_for("the TestSuite's scheduled run", suite_ran, timeout=30)
        assert target.counts[("GET", "/cart")] >= 1 and cart["completionTime"] >= cart["startTime"]
        # A Schedule deleted from a shared group leaves the group to the others.
        cluster.kubectl("delete", "schedule", "every-cart", "-n", namespace)
        pods = items(cluster, "pod", namespace, f"batch.kubernetes.io/job-name={job['metadata']['name']}")
        assert len(pods) == 1

        # The run id is the one the runner and the gateway know: Monitor, Schedule and tick.
        monitor = get(cluster, "monitor", "alpha", namespace)
        sched_uid = get(cluster, "schedule", "every-alpha", namespace)["metadata"]["uid"]
        tick = tick_of(job["metadata"]["name"])
        run_id = run_id_for_request("alpha", monitor["metadata"]["uid"], f"schedule:{sched_uid}:{tick}")
        assert alpha["runId"] == run_id
        token = upload_token(
            GatewayProcess.UPLOAD_KEY, RunGrant(namespace, "Monitor", "alpha", monitor["metadata"]["uid"], run_id)
        )
        stored = urllib.request.Request(
            f"{gateway.url}/internal/v1/runs/{run_id}", headers={"Authorization": f"Bearer {token}"}
        )
        record = json.loads(urllib.request.urlopen(stored, timeout=10).read())
        assert record["run"]["project"] == namespace and record["run"]["result"] == "passed"
        assert sorted(d["name"] for d in record["documents"]) == ["monitor-result.json", "monitor-steps.json"]

        # A requested run of the same Monitor keeps the scheduled one in the history.
        cluster.kubectl("annotate", "monitor", "alpha", "-n", namespace, f"{ANNOTATION}=by-hand")
        requested = run_id_for_request("alpha", monitor["metadata"]["uid"], "by-hand")

        def both():
            history = (get(cluster, "monitor", "alpha", namespace).get("status") or {}).get("history") or []
            ids = {e["runId"]: e for e in history}
            return ids if requested in ids and ids[requested].get("result") == "Passed" and run_id in ids else None

        history = cluster.wait_for("the requested and the scheduled run in the history", both, timeout=90)
        assert history[run_id]["schedule"] == "every-alpha" and "schedule" not in history[requested]

        # Suspending beta leaves alpha alone in the group.
        cluster.kubectl(
            "patch", "schedule", "every-beta", "-n", namespace, "--type=merge", "-p", '{"spec": {"suspend": true}}'
        )

        def suspended():
            cond = next(
                (
                    c
                    for c in (get(cluster, "schedule", "every-beta", namespace).get("status") or {}).get("conditions")
                    or []
                    if c["type"] == "Ready"
                ),
                {},
            )
            members = members_of(get(cluster, "configmap", group, namespace))["members"]
            return cond.get("reason") == "Suspended" and [m["monitor"]["metadata"]["name"] for m in members] == [
                "alpha"
            ]

        cluster.wait_for("beta suspended and out of the group", suspended, timeout=60)

        # A new interval: a CronJob anchored now, with a new anchor time; the 1m group is gone.
        before = get(cluster, "schedule", "every-alpha", namespace)["status"]
        assert before["lastScheduleTime"] and before["nextRunTime"] > before["lastScheduleTime"]
        cluster.kubectl(
            "patch", "schedule", "every-alpha", "-n", namespace, "--type=merge", "-p", '{"spec": {"interval": "5m"}}'
        )

        def moved():
            status = get(cluster, "schedule", "every-alpha", namespace).get("status") or {}
            return (
                status
                if status.get("cronSchedule", "").endswith("/5 * * * *") and status.get("cronJobName") != group
                else None
            )

        after = cluster.wait_for("the Schedule on its new CronJob", moved, timeout=60)
        assert after["anchorTime"] != before["anchorTime"]
        minute = int(after["anchorTime"][14:16])
        assert after["cronSchedule"] == f"{minute % 5}-59/5 * * * *"
        new_cronjob = get(cluster, "cronjob", after["cronJobName"], namespace)
        assert new_cronjob["spec"]["schedule"] == after["cronSchedule"]
        cluster.wait_for(
            "the emptied 1m CronJob to be deleted",
            lambda: group not in {c["metadata"]["name"] for c in items(cluster, "cronjob", namespace)},
            timeout=60,
        )

        # Deleting the Schedule deletes its CronJob: no more runs.
        cluster.kubectl("delete", "schedule", "every-alpha", "-n", namespace)
        cluster.wait_for("no tick CronJob left", lambda: not items(cluster, "cronjob", namespace), timeout=60)
