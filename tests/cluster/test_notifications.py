"""Notifications after Monitor runs on the real control plane: the environment's webhooks get
each result in Runscope's shape, a receiver that fails (500) or hangs changes nothing about
the run, and e-mail reaches a real SMTP server (aiosmtpd) per notifyOn; the operator's
/metrics count the runs and show the Monitor's gauges until it is deleted."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from assay.operator.names import run_id_for_request
from tests.conftest import OperatorProcess, localkube
from tests.support.receivers import SmtpReceiver, WebhookReceiver
from tests.support.targets import CountingTarget

pytestmark = pytest.mark.cluster

ANNOTATION = "assay.dev/run-request"


def monitor_manifest(name: str, base: str, hooks: list[str], emails: dict) -> str:
    return json.dumps(
        {
            "apiVersion": "assay.dev/v1alpha1",
            "kind": "Monitor",
            "metadata": {"name": name},
            "spec": {
                "displayName": "Health check",
                "steps": [
                    {
                        "stepType": "request",
                        "url": "{{base}}/ping",
                        "assertions": [{"source": "response_status", "comparison": "equal", "value": 200}],
                    }
                ],
                "environments": [
                    {
                        "name": "local",
                        "id": "env-local",
                        "initialVariables": {"base": base},
                        "webhooks": hooks,
                        "emails": emails,
                    }
                ],
            },
        }
    )


def status_of(cluster, namespace: str, name: str) -> dict:
    out = cluster.kubectl("get", "monitor", name, "-n", namespace, "-o", "json").stdout
    return json.loads(out).get("status") or {}


def run(cluster, namespace: str, name: str, request: dict) -> tuple[str, dict, float]:
    """Request a run and wait for its finished status; (run id, status, seconds it took)."""
    started = time.monotonic()
    cluster.kubectl("annotate", "monitor", name, "-n", namespace, f"{ANNOTATION}={json.dumps(request)}", "--overwrite")
    uid = json.loads(cluster.kubectl("get", "monitor", name, "-n", namespace, "-o", "json").stdout)["metadata"]["uid"]
    run_id = run_id_for_request(name, uid, request["id"])

    def finished():
        status = status_of(cluster, namespace, name)
        last = status.get("lastRun") or {}
        return status if last.get("runId") == run_id and last.get("result") else None

    status = cluster.wait_for(f"run {request['id']}", finished, timeout=120)
    return run_id, status, time.monotonic() - started


def metrics_text(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


def sample(text: str, name: str, **labels) -> float | None:
    """The value of the series `name` with exactly these labels, None if it is absent."""
    for family in text_string_to_metric_families(text):
        for series in family.samples:
            if series.name == name and series.labels == labels:
                return series.value
    return None


def test_webhooks_get_each_result_mail_follows_notify_on_and_metrics_count_the_runs(cluster, namespace, tmp_path):
    metrics_port = localkube.free_port()
    cluster.kubectl("annotate", "namespace", namespace, "assay.dev/team-emails=lead@example.com,ops@example.com")
    with CountingTarget() as target, WebhookReceiver(hang=60) as hooks, SmtpReceiver() as smtp:
        operator = OperatorProcess(
            cluster,
            tmp_path / "operator.log",
            namespace,
            metrics_port=metrics_port,
            env={
                "ASSAY_SMTP_HOST": "127.0.0.1",
                "ASSAY_SMTP_PORT": str(smtp.port),
                "ASSAY_SMTP_FROM": "assay@example.com",
                "ASSAY_WEBHOOK_TIMEOUT_SECONDS": "2",
                "ASSAY_WEBHOOK_ATTEMPTS": "2",
            },
        ).start()
        try:
            urls = [f"{hooks.url}/hang/token-1", f"{hooks.url}/fail/token-2", f"{hooks.url}/ok/token-3"]
            emails = {"notifyOn": "failures", "notifyAll": True, "recipients": [{"email": "ops@example.com"}]}
            cluster.kubectl(
                "apply", "-n", namespace, "-f", "-", input=monitor_manifest("health", target.url, urls, emails)
            )

            first_id, first, _ = run(cluster, namespace, "health", {"id": "r-1"})
            second_id, second, second_took = run(
                cluster, namespace, "health", {"id": "r-2", "params": {"base": "http://127.0.0.1:9"}}
            )
            assert [(e["runId"], e["result"]) for e in second["history"]] == [
                (second_id, "Failed"),
                (first_id, "Passed"),
            ]
            run_ids = [first_id, second_id]

            # Each result reached the working receiver once, in Runscope's field names.
            posted = cluster.wait_for(
                "both results at the webhook",
                lambda: bodies if len(bodies := hooks.bodies("/ok/token-3")) == 2 else None,
                timeout=60,
            )
            by_run = {b["test_run_id"]: b for b in posted}
            assert set(by_run) == set(run_ids)
            for run_id, result in zip(run_ids, ["pass", "fail"]):
                body = by_run[run_id]
                assert body["result"] == result
                assert body["test_name"] == "Health check" and body["bucket_key"] == namespace
                assert body["environment_name"] == "local" and body["environment_uuid"] == "env-local"
                assert body["requests_executed"] == 1
                assert body["finished_at"] >= body["started_at"] > 0
            assert by_run[run_ids[0]]["assertions_passed"] == 1
            assert isinstance(first["lastRun"]["responseTimeMs"], int)
            assert by_run[run_ids[0]]["response_time_ms"] == first["lastRun"]["responseTimeMs"]

            # The 500 receiver was tried twice per run; the hanging one held both runs' posts
            # and still the second run finished and was recorded as usual.
            cluster.wait_for(
                "two attempts per run at the failing receiver",
                lambda: len(hooks.bodies("/fail/token-2")) == 4,
                timeout=60,
            )
            assert len(hooks.bodies("/hang/token-1")) >= 2
            assert second_took < 60, f"the second run took {second_took:.0f}s"
            assert sorted(status_of(cluster, namespace, "health")["notifiedRuns"]) == sorted(run_ids)

            # notifyOn failures: one mail, for the failed run, to the recipient and the team.
            cluster.wait_for("the mail", lambda: smtp.messages, timeout=60)
            time.sleep(2)  # a second (wrong) mail would have arrived by now
            [(rcpts, message)] = smtp.messages
            assert sorted(rcpts) == ["lead@example.com", "ops@example.com"]
            assert message["Subject"] == "[Assay] Health check failed in local"
            assert run_ids[1] in message.get_payload()

            # Webhook URLs carry tokens: the log names hosts only.
            assert "token-" not in operator.log()

            text = metrics_text(metrics_port)
            assert sample(text, "assay_operator_runs_total", kind="Monitor", outcome="passed") == 1
            assert sample(text, "assay_operator_runs_total", kind="Monitor", outcome="failed") == 1
            assert sample(text, "assay_operator_run_duration_seconds_count", kind="Monitor") == 2
            labels = {"namespace": namespace, "monitor": "health"}
            assert sample(text, "assay_monitor_last_result", **labels) == 0
            assert sample(text, "assay_monitor_success_ratio", **labels) == 0.5
            last_ms = second["lastRun"].get("responseTimeMs")
            assert sample(text, "assay_monitor_response_time_seconds", **labels) == (
                last_ms / 1000 if last_ms is not None else None
            )

            cluster.kubectl("delete", "monitor", "health", "-n", namespace)
            cluster.wait_for(
                "the Monitor's series to go",
                lambda: sample(metrics_text(metrics_port), "assay_monitor_last_result", **labels) is None,
                timeout=30,
            )
        finally:
            operator.stop()
            print(operator.log()[-4000:])


def test_integrations_get_each_run_in_their_services_shapes(cluster, namespace, tmp_path):
    with CountingTarget() as target, WebhookReceiver() as receiver:
        # Slack's URL carries its token: it comes from a Secret, as the operator reads it itself.
        cluster.kubectl(
            "create",
            "secret",
            "generic",
            "slack-hook",
            "-n",
            namespace,
            f"--from-literal=url={receiver.url}/slack/T0/B0/token-s",
        )
        integrations = [
            {
                "id": "i-slack",
                "integrationType": "slack",
                "urlFrom": {"secretKeyRef": {"name": "slack-hook", "key": "url"}},
            },
            {"id": "i-teams", "integrationType": "microsoft_teams", "url": f"{receiver.url}/teams/token-t"},
            {
                "id": "i-pd",
                "integrationType": "pagerduty",
                "routingKey": "R0UTING",
                "url": f"{receiver.url}/pd/v2/enqueue",
            },
            {"id": "i-hook", "integrationType": "webhook", "url": f"{receiver.url}/hook/token-w"},
            {"id": "i-gi", "integrationType": "ghost_inspector", "description": "listed, not sent to"},
        ]
        manifest = json.loads(monitor_manifest("chat", target.url, [], None))
        manifest["spec"]["environments"][0].pop("emails")
        manifest["spec"]["environments"][0]["integrations"] = integrations
        operator = OperatorProcess(cluster, tmp_path / "operator.log", namespace).start()
        try:
            cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))
            passed_id, _, _ = run(cluster, namespace, "chat", {"id": "r-1"})
            failed_id, _, _ = run(cluster, namespace, "chat", {"id": "r-2", "params": {"base": "http://127.0.0.1:9"}})

            def all_posts():
                paths = ("/slack/T0/B0/token-s", "/teams/token-t", "/pd/v2/enqueue", "/hook/token-w")
                got = {p: receiver.bodies(p) for p in paths}
                return got if all(len(b) == 2 for b in got.values()) else None

            posts = cluster.wait_for("both runs at every integration", all_posts, timeout=90)
            slack = {b["attachments"][0]["fields"][3]["value"]: b for b in posts["/slack/T0/B0/token-s"]}
            assert slack[failed_id]["text"] == "Health check failed in local"
            assert slack[passed_id]["attachments"][0]["color"] == "#2EB886"
            teams = {b["summary"]: b for b in posts["/teams/token-t"]}
            assert set(teams) == {"Health check passed in local", "Health check failed in local"}
            assert all(b["@type"] == "MessageCard" and b["sections"][0]["facts"] for b in teams.values())
            pagerduty = {b["event_action"]: b for b in posts["/pd/v2/enqueue"]}
            assert set(pagerduty) == {"trigger", "resolve"}
            assert pagerduty["trigger"]["routing_key"] == pagerduty["resolve"]["routing_key"] == "R0UTING"
            assert pagerduty["trigger"]["dedup_key"] == pagerduty["resolve"]["dedup_key"]
            assert pagerduty["trigger"]["payload"]["severity"] == "error"
            assert pagerduty["trigger"]["payload"]["custom_details"]["Run"] == failed_id
            hooks = {b["test_run_id"]: b["result"] for b in posts["/hook/token-w"]}
            assert hooks == {passed_id: "pass", failed_id: "fail"}
            assert len(receiver.posts) == 8  # the ghost_inspector integration got nothing
            assert "token-" not in operator.log()
        finally:
            operator.stop()
            print(operator.log()[-4000:])
