"""The dashboard's run, Monitor, suite and schedule pages as pure functions: what they show,
what they redact and escape, in which order, and which action buttons a session gets."""

from __future__ import annotations

import re
import time

from assay.api.auth.policy import Principal
from assay.api.dashboard import actions, monitor, schedules, suite
from assay.api.dashboard.session import DashboardSessions, Session, action_token
from assay.api.store.monitor_results import ResultFigures
from tests.support.monitor_results import result_doc

PRINCIPAL = Principal("client", "ns/cred", "uid", "project", None, "ns", frozenset())
VIEW = {
    "namespace": "ns",
    "name": "health",
    "uid": "m-uid",
    "displayName": "<Health>",
    "description": "",
    "lastResult": "failed",
    "lastRunAt": None,
    "runs": [],
}


def session(*scopes: str) -> Session:
    return Session(PRINCIPAL, 0, frozenset(scopes), action_token("cookie"))


def test_a_run_page_puts_failed_steps_first_redacts_credentials_and_escapes_every_value():
    doc = result_doc(result="pass", requests=3)
    doc["requests"][2]["result"] = "fail"
    doc["requests"][2]["assertions"][0].update(result="fail", target_value=201, actual_value="<200>")
    details = {
        "step-2": {
            "request": {"headers": {"Authorization": ["Bearer s3cret"], "X-Note": ["<i>x</i>"]}, "body": "{}"},
            "response": {"status": 200, "headers": {"Set-Cookie": ["sid=abc"]}, "body": "<script>x</script>"},
        }
    }
    html = monitor.run_page(VIEW, "run-1", [(doc, details)], session(), "nonce")
    order = re.findall(r'id="r0-s(\d)" data-result="(\w+)"', html)
    assert order == [("3", "failed"), ("1", "passed"), ("2", "passed"), ("4", "other")]
    assert "s3cret" not in html and "sid=abc" not in html and html.count("&lt;redacted&gt;") == 2
    assert "<script>x" not in html and "&lt;script&gt;x" in html and "&lt;i&gt;x" in html
    assert '<td class="mono expected">201</td><td class="mono actual">&lt;200&gt;</td>' in html
    assert '<a href="#r0-s3">step 3</a>' in html
    assert "&lt;Health&gt;" in html and "<Health>" not in html


def test_the_figures_split_success_and_percentiles_by_region_and_window():
    now = time.time()
    figures = [
        ResultFigures(now - 60, "pass", "e", "us1", 10.0),
        ResultFigures(now - 120, "fail", "e", "eu1", 30.0),
        ResultFigures(now - 2 * 86400, "pass", "e", "us1", 50.0),
        ResultFigures(now - 40 * 86400, "fail", "e", "us1", 90.0),
    ]
    every = monitor.window_figures(figures, now, monitor.ALL)
    assert [(w["window"], w["runs"], w["successRatio"]) for w in every] == [
        ("1 h", 2, 50.0),
        ("1 d", 2, 50.0),
        ("7 d", 3, 66.7),
        ("30 d", 3, 66.7),
    ]
    us1 = monitor.window_figures(figures, now, "us1")
    assert us1[0]["successRatio"] == 100.0 and us1[0]["p95Ms"] == 10.0 and us1[2]["p50Ms"] == 30.0
    html = monitor.figures_table(figures, now)
    assert [r for r in re.findall(r'data-region="([^"]+)" data-window="1 h"', html)] == ["all regions", "eu1", "us1"]


def test_a_button_shows_only_with_its_scope_and_carries_the_sessions_token():
    lt = {"namespace": "ns", "number": 3, "state": "passed"}
    assert actions.loadtest_buttons(session("LOADTEST_LIST"), lt) == ""
    button = actions.loadtest_buttons(session("LOADTEST_COPY_RUN"), lt)
    assert 'action="/dashboard/loadtests/ns/3/copy"' in button and action_token("cookie") in button
    assert "/abort" not in button, "a finished load test has nothing to abort"
    running = actions.loadtest_buttons(session("LOADTEST_COPY_RUN"), {**lt, "state": "running"})
    assert 'action="/dashboard/loadtests/ns/3/abort"' in running
    assert actions.loadtest_buttons(session("LOADTEST_LIST"), {**lt, "state": "running"}) == ""
    assert actions.run_monitor_button(session("test:read"), "ns", "health") == ""
    assert "Run now" in actions.run_monitor_button(session("test:write"), "ns", "health")


def test_an_action_token_is_the_sessions_own():
    current = session()
    assert DashboardSessions.action_token_matches(current, action_token("cookie"))
    assert not DashboardSessions.action_token_matches(current, action_token("another cookie"))
    assert not DashboardSessions.action_token_matches(current, "")
    assert not DashboardSessions.action_token_matches(Session(PRINCIPAL, 0), "")


def test_a_suspended_schedule_shows_no_next_run_and_offers_resume():
    listed = {
        "namespace": "ns",
        "name": "nightly",
        "target": {"kind": "TestSuite", "name": "shop"},
        "targetExists": True,
        "interval": "1d",
        "environment": None,
        "note": "<n>",
        "suspended": True,
        "nextRunAt": None,
        "lastScheduledAt": None,
        "lastRun": {"runId": "shop-1", "result": "failed", "at": None},
    }
    html = schedules.schedules_page([listed], "ns", session("test:write"), "nonce")
    assert 'class="suspended"' in html and ">Resume</button>" in html and "&lt;n&gt;" in html
    assert 'href="/dashboard/suites/ns/runs/shop-1"' in html
    running = dict(listed, suspended=False, nextRunAt="2026-01-02T03:04:00Z")
    html = schedules.schedules_page([running], "ns", session(), "nonce")
    assert "2026-01-02 03:04:00 UTC" in html and "<form" not in html.split("</header>")[1]


def test_a_suite_run_page_says_why_a_request_failed():
    run = {
        "id": "shop-1",
        "status": "FAILED",
        "testSuiteFlowRuns": [
            {"description": "ok", "status": "PASSED", "requests": []},
            {
                "description": "buy",
                "status": "FAILED",
                "requests": [
                    {
                        "description": "order",
                        "method": "POST",
                        "url": "http://x/orders",
                        "status": "FAILED",
                        "statusCode": 500,
                        "resTime": 3,
                        "assertions": [
                            {
                                "source": "response_status",
                                "property": None,
                                "comparison": "equal",
                                "targetValue": 201,
                                "actualValue": "500",
                                "result": "fail",
                                "error": None,
                            }
                        ],
                        "error": None,
                    }
                ],
            },
        ],
    }
    html = suite.suite_run_page("ns", run, "shop", session("loadmill"), "nonce")
    assert re.findall(r'class="flow" id="flow-(\d)"', html) == ["1", "0"]
    assert "assertion response_status equal 201 failed (actual &#x27;500&#x27;)" in html
    assert 'action="/dashboard/suites/ns/shop/run"' in html
