"""What a Monitor run's webhook and e-mail say, webhook retries against a real loopback
receiver, and the per-Monitor metric figures."""

from __future__ import annotations

import json
import logging

from assay.crds.monitor import Environment
from assay.operator import mail, metrics
from assay.operator.notify import result_payload, run_counts
from assay.operator.runhistory import Piece, Run, monitor_run
from assay.operator.webhooks import post_result, url_host
from assay.runner.egress import EgressPolicy
from tests.support.targets import CountingTarget

OWNER = {"metadata": {"name": "health", "namespace": "team-a", "uid": "u-1"}, "spec": {"displayName": "Health"}}
ENTRY = {
    "runId": "health-r1",
    "phase": "Succeeded",
    "result": "Failed",
    "environment": "world",
    "regions": ["us1", "eu1"],
    "startTime": "2026-11-23T10:00:00Z",
    "completionTime": "2026-11-23T10:00:05Z",
    "responseTimeMs": 42,
}


def test_the_payload_uses_runscopes_webhook_field_names():
    env = Environment(name="world", id="env-world", webhooks=["http://127.0.0.1:1/hook"])
    payload = result_payload(OWNER, ENTRY, env, {"requests_executed": 2, "assertions_failed": 1}, "us1: fail")
    assert payload["test_id"] == "u-1" and payload["test_name"] == "Health"
    assert payload["test_run_id"] == "health-r1" and payload["result"] == "fail"
    assert (payload["environment_uuid"], payload["environment_name"]) == ("env-world", "world")
    assert payload["bucket_key"] == payload["bucket_name"] == "team-a"
    assert payload["region"] == "us1" and payload["regions"] == ["us1", "eu1"]
    assert payload["finished_at"] - payload["started_at"] == 5.0
    assert payload["requests_executed"] == 2 and payload["assertions_failed"] == 1
    assert payload["assertions_passed"] is None
    assert payload["response_time_ms"] == 42
    assert payload["assay"] == {"namespace": "team-a", "monitor": "health", "message": "us1: fail"}
    json.dumps(payload)


def test_run_counts_add_up_the_pods_summaries_and_skip_pods_without_one():
    def pod(message):
        return {"status": {"containerStatuses": [{"state": {"terminated": {"message": message}}}]}}

    pods = [
        pod(json.dumps({"requests_executed": 2, "assertions_passed": 3, "assertions_failed": 0})),
        pod(json.dumps({"requests_executed": 1, "assertions_passed": 1, "assertions_failed": 1})),
        pod("not json"),
        {"status": {}},
    ]
    assert run_counts(pods) == {"requests_executed": 3, "assertions_passed": 4, "assertions_failed": 1}


def test_the_mail_names_the_monitor_its_result_and_where_it_ran():
    payload = result_payload(OWNER, ENTRY, None, {}, "us1: fail (HTTP 500)")
    message = mail.build_message(payload, ["a@example.com", "b@example.com"], "assay@example.com")
    assert message["Subject"] == "[Assay] Health failed in world"
    assert message["To"] == "a@example.com, b@example.com"
    body = message.get_content()
    assert "team-a/health" in body and "health-r1" in body and "us1, eu1" in body
    assert "42 ms" in body and "us1: fail (HTTP 500)" in body


def test_url_host_keeps_tokens_out_of_logs():
    assert url_host("https://hooks.example.com/services/T000/SECRET?token=abc") == "hooks.example.com"
    assert url_host("http://127.0.0.1:8080/x/secret") == "127.0.0.1:8080"
    assert url_host("not a url") == "(invalid URL)"


# The operator's egress policy with the loopback test receivers let through (port 9 included,
# for the unreachable receiver), as the local stack sets it.
LOOPBACK = EgressPolicy.parse(allow="127.0.0.1")


def test_a_receiver_the_policy_denies_gets_nothing_and_is_not_retried(caplog):
    waits = []
    with CountingTarget() as target, caplog.at_level(logging.INFO):
        assert not post_result(
            target.url + "/h",
            {},
            timeout=2,
            attempts=3,
            logger=logging.getLogger("t"),
            sleep=waits.append,
            policy=EgressPolicy(),
        )
        assert not post_result(
            f"http://localhost:{target.port}/h",
            {},
            timeout=2,
            attempts=3,
            logger=logging.getLogger("t"),
            sleep=waits.append,
            policy=EgressPolicy(),
        )
    assert target.total == 0 and waits == []
    assert "egress policy" in caplog.text


def test_a_5xx_is_retried_and_logged_by_host_only(caplog):
    waits = []
    with CountingTarget(status=500) as target, caplog.at_level(logging.INFO):
        ok = post_result(
            target.url + "/hook/secret-token",
            {"a": 1},
            timeout=2,
            attempts=3,
            logger=logging.getLogger("t"),
            sleep=waits.append,
            policy=LOOPBACK,
        )
    assert not ok
    assert target.counts[("POST", "/hook/secret-token")] == 3
    assert waits == [1.0, 2.0]
    assert "secret-token" not in caplog.text and "after 3 attempts" in caplog.text


def test_a_4xx_is_final_and_a_2xx_delivers_once():
    with CountingTarget(status=404) as target:
        assert not post_result(
            target.url + "/h",
            {},
            timeout=2,
            attempts=3,
            logger=logging.getLogger("t"),
            sleep=lambda s: None,
            policy=LOOPBACK,
        )
        assert target.total == 1
    with CountingTarget() as target:
        assert post_result(target.url + "/h", {}, timeout=2, attempts=3, logger=logging.getLogger("t"), policy=LOOPBACK)
        assert target.total == 1


def test_an_unreachable_receiver_is_retried_then_given_up():
    waits = []
    assert not post_result(
        "http://127.0.0.1:9/h",
        {},
        timeout=1,
        attempts=2,
        logger=logging.getLogger("t"),
        sleep=waits.append,
        policy=LOOPBACK,
    )
    assert waits == [1.0]


def test_monitor_figures_come_from_the_finished_runs_of_the_history():
    status = {
        "history": [
            {"runId": "r4", "phase": "Running"},
            {"runId": "r3", "result": "Failed", "responseTimeMs": 250},
            {"runId": "r2", "result": "Passed"},
            {"runId": "r1", "result": "Passed"},
            {"runId": "r0", "result": "Passed"},
        ]
    }
    assert metrics.monitor_figures(status) == {
        "last_result": 0.0,
        "response_time_seconds": 0.25,
        "success_ratio": 0.75,
        "consecutive_failures": 1.0,
    }
    assert metrics.monitor_figures({"history": [{"runId": "r1", "phase": "Running"}]}) == {}
    # Counted from the newest finished run to the first that passed, Aborted runs included.
    results = ["Failed", "Aborted", "Failed", "Passed", "Failed"]
    failing = {"history": [{"runId": f"r{i}", "result": r} for i, r in enumerate(results)]}
    assert metrics.monitor_figures(failing)["consecutive_failures"] == 3
    all_failed = {"history": [{"runId": f"r{i}", "result": "Failed"} for i in range(2)]}
    assert metrics.monitor_figures(all_failed)["consecutive_failures"] == 2


def test_schedule_gauges_cover_the_namespaces_running_schedules_only():
    def schedule(name, interval, status, suspend=False):
        spec = {"target": {"kind": "Monitor", "name": "m"}, "interval": interval, "suspend": suspend}
        return {"metadata": {"name": name}, "spec": spec, "status": status}

    def value(gauge, name):
        labels = ("ns-sched", name, "Monitor", "m")
        return gauge._metrics[labels]._value.get() if labels in gauge._metrics else None

    metrics.schedules_observed(
        "ns-sched",
        [
            schedule("ran", "5m", {"lastScheduleTime": "2026-01-01T00:05:00Z", "anchorTime": "2026-01-01T00:00:00Z"}),
            schedule("new", "1h", {"anchorTime": "2026-01-01T00:00:00Z"}),
            schedule("cron", "*/10 8-18 * * MON-FRI", {"anchorTime": "2026-01-01T00:00:00Z"}),
            schedule("paused", "5m", {"anchorTime": "2026-01-01T00:00:00Z"}, suspend=True),
        ],
    )
    assert value(metrics.SCHEDULE_LAST_RUN, "ran") == 1767225900
    assert value(metrics.SCHEDULE_INTERVAL, "ran") == 300
    assert value(metrics.SCHEDULE_LAST_RUN, "new") == 1767225600
    assert value(metrics.SCHEDULE_INTERVAL, "new") == 3600
    assert value(metrics.SCHEDULE_LAST_RUN, "cron") == 1767225600
    assert value(metrics.SCHEDULE_INTERVAL, "cron") is None
    assert value(metrics.SCHEDULE_LAST_RUN, "paused") is None
    metrics.schedules_observed("ns-sched", [schedule("new", "1h", {"anchorTime": "2026-01-01T00:00:00Z"})])
    assert value(metrics.SCHEDULE_LAST_RUN, "ran") is None and value(metrics.SCHEDULE_INTERVAL, "ran") is None
    assert value(metrics.SCHEDULE_LAST_RUN, "new") == 1767225600


def test_the_monitor_run_entry_has_the_regions_mean_response_time():
    def piece(location, ms):
        return Piece(
            job_name=f"j-{location}",
            location=location,
            phase="Succeeded",
            failure=None,
            summary={"result": "pass", "response_time_ms": ms},
            start=None,
            end="2026-11-23T10:00:05Z",
        )

    run = Run(
        run_id="r1",
        request_id="x",
        requested_at="2026-11-23T10:00:00.000000Z",
        environment="world",
        pieces=[piece("us1", 40), piece("eu1", 61)],
    )
    entry = monitor_run(run)
    assert entry["responseTimeMs"] == 50
    run.pieces = [piece("us1", None)]
    assert "responseTimeMs" not in monitor_run(run)


def test_handler_failures_count_as_reconcile_errors_by_kind():
    counter = metrics.HandlerErrorCounter()
    before = metrics.RECONCILE_ERRORS.labels(kind="Monitor")._value.get()

    def record(message: str, level=logging.ERROR) -> logging.LogRecord:
        rec = logging.LogRecord("kopf.objects", level, __file__, 1, message, None, None)
        rec.k8s_ref = {"kind": "Monitor"}
        return rec

    counter.handle(record("Handler 'run_requested' failed with an exception and will try again in 60 seconds: x"))
    counter.handle(record("Handler 'run_requested' failed temporarily: y"))
    counter.handle(record("Handler 'run_requested' succeeded.", logging.INFO))
    counter.handle(record("something else failed here"))
    assert metrics.RECONCILE_ERRORS.labels(kind="Monitor")._value.get() - before == 2
