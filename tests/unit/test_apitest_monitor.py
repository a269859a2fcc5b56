"""Monitor runs against real loopback servers: every step type, variables, environments,
subtests, Ghost Inspector, scripts, and the Runscope-shaped result."""

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import time

import pytest

from assay.crds import Monitor
from assay.runner.apitest.monitor import GhostInspectorIntegration, UnknownEnvironment, run_monitor
from assay.runner.apitest.results import RUNSCOPE_REQUEST_KEYS
from tests.support.http_targets import GHOST_API_KEY, PNG_BYTES, HttpTarget
from tests.support.secure_servers import HttpsServer, MutualTlsServer


@pytest.fixture(scope="module")
def target():
    with HttpTarget() as target:
        yield target


@pytest.fixture(autouse=True)
def fresh(target):
    target.clear()


def make(steps, *, name="m", environments=None, default=None, uid=None, display_name=None) -> Monitor:
    spec = {"steps": steps, "environments": environments or []}
    if default:
        spec["defaultEnvironment"] = default
    if display_name:
        spec["displayName"] = display_name
    metadata = {"name": name, "namespace": "team-a"}
    if uid:
        metadata["uid"] = uid
    return Monitor.model_validate({"metadata": metadata, "spec": spec})


def run(monitor, **kwargs):
    return asyncio.run(run_monitor(monitor, **kwargs))


def env(target, **fields):
    return {
        "name": fields.pop("name", "local"),
        "initialVariables": {"base": target.url, **fields.pop("variables", {})},
        **fields,
    }


def request(url, **fields):
    return {"stepType": "request", "url": url, **fields}


def status_is(code):
    return {"source": "response_status", "comparison": "equal_number", "value": code}


def echoed(step):
    return json.loads(step.detail.response.body)


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- request steps and variables ------------------------------------------------------------------


def test_variables_flow_from_one_request_into_the_next(target):
    m = make(
        [
            request(
                "{{base}}/json",
                variables=[
                    {"name": "second_id", "source": "response_json", "property": "data.items[1].id"},
                    {"name": "ctype", "source": "response_headers", "property": "content-type"},
                    {"name": "code", "source": "response_status"},
                    {"name": "size", "source": "response_size"},
                    {"name": "took", "source": "response_time"},
                ],
                assertions=[status_is(200)],
            ),
            request(
                "{{base}}/xml", variables=[{"name": "title", "source": "response_xml", "property": "//book[2]/title"}]
            ),
            request("{{base}}/text", variables=[{"name": "text", "source": "response_text"}]),
            request(
                "{{base}}/echo?id={{second_id}}",
                method="POST",
                body='{"title": "{{title}}", "text": "{{text}}"}',
                headers={"X-Code": ["{{code}}"], "Content-Type": ["application/json"]},
                assertions=[
                    {
                        "source": "response_json",
                        "property": "query.id[0]",
                        "comparison": "equal",
                        "value": "{{second_id}}",
                    }
                ],
            ),
        ],
        environments=[env(target)],
    )
    result = run(m)
    assert result.passed, result.to_runscope()
    sent = echoed(result.requests[3])
    assert sent["query"] == {"id": ["2"]} and sent["headers"]["X-Code"] == "200"
    assert json.loads(sent["body"]) == {"title": "Emma", "text": "hello plain world"}
    assert result.variables["ctype"] == "application/json" and int(result.variables["size"]) > 0
    assert float(result.variables["took"]) >= 0
    first = result.requests[0]
    assert [v.to_runscope() for v in first.variables][0] == {
        "result": "pass",
        "source": "json",
        "property": "data.items[1].id",
        "name": "second_id",
        "value": "2",
        "error": None,
    }
    assert (first.variables_defined, first.variables_passed, first.variables_failed) == (5, 5, 0)


def test_a_variable_that_cannot_be_extracted_fails_the_step(target):
    result = run(
        make(
            [
                request(
                    "{{base}}/json",
                    variables=[
                        {"name": "nope", "source": "response_json", "property": "data.nope"},
                        {"name": "hdr", "source": "response_headers", "property": "X-Absent"},
                    ],
                )
            ],
            environments=[env(target)],
        )
    )
    step = result.requests[0]
    assert step.result == "fail" and (step.variables_passed, step.variables_failed) == (0, 2)
    assert "no key 'nope'" in step.variables[0].error and "no header 'X-Absent'" in step.variables[1].error
    assert "nope" not in result.variables and not result.passed


def test_form_bodies_and_repeated_headers(target):
    result = run(
        make(
            [request("{{base}}/echo", method="POST", form={"tag": ["a", "{{t}}"]}, headers={"X-Multi": ["1", "2"]})],
            environments=[env(target, variables={"t": "b c"})],
        )
    )
    sent = echoed(result.requests[0])
    assert sent["body"] == "tag=a&tag=b+c"
    assert result.requests[0].detail.request.headers["X-Multi"] == ["1", "2"]


def test_environment_variables_helpers_and_params(target):
    m = make(
        [request("{{base}}/echo?a={{a}}&b={{b}}&ts={{started}}")],
        environments=[env(target, variables={"a": "from-env", "b": "from-env", "started": "{{timestamp}}"})],
    )
    before = int(time.time())
    result = run(m, params={"b": "from-params"})
    query = echoed(result.requests[0])["query"]
    assert query["a"] == ["from-env"] and query["b"] == ["from-params"]
    assert before <= int(query["ts"][0]) <= before + 5


def test_environment_headers_are_merged_and_step_headers_win(target):
    m = make(
        [request("{{base}}/echo", headers={"x-shared": ["step"], "X-Step": ["s"]})],
        environments=[env(target, headers={"X-Shared": ["env"], "X-Env": ["e"]})],
    )
    headers = echoed(run(m).requests[0])["headers"]
    assert headers["X-Env"] == "e" and headers["X-Step"] == "s" and headers["x-shared"] == "step"
    assert "X-Shared" not in headers and headers["User-Agent"].startswith("assay-runner/")


def test_step_auth_wins_over_environment_auth_and_auth_fields_are_templated(target):
    basic = {"authType": "basic", "username": "env-user", "password": "pw"}
    m = make(
        [
            request("{{base}}/echo"),
            request("{{base}}/echo", auth={"authType": "basic", "username": "{{who}}", "password": "pw"}),
        ],
        environments=[env(target, auth=basic, variables={"who": "step-user"})],
    )
    result = run(m)
    sent = [base64.b64decode(echoed(s)["headers"]["Authorization"].split()[1]).decode() for s in result.requests]
    assert sent == ["env-user:pw", "step-user:pw"]


def test_redirects_are_assertable_responses(target):
    result = run(
        make(
            [
                request(
                    "{{base}}/redirect?to=/text",
                    assertions=[
                        status_is(302),
                        {"source": "response_headers", "property": "Location", "comparison": "equal", "value": "/text"},
                    ],
                )
            ],
            environments=[env(target)],
        )
    )
    assert result.passed and len(target.received("/text")) == 0


# --- results -----------------------------------------------------------------------------------------

RESULT_DETAIL_KEYS = {
    "requests",
    "assertions_defined",
    "assertions_passed",
    "assertions_failed",
    "bucket_key",
    "started_at",
    "variables_defined",
    "variables_passed",
    "variables_failed",
    "finished_at",
    "requests_executed",
    "agent",
    "scripts_defined",
    "scripts_passed",
    "scripts_failed",
    "result",
    "test_id",
    "test_run_id",
    "parent_test_uuid",
    "source",
    "region",
    "test_run_url",
    "environment_id",
    "environment_name",
    "run_by",
    "subtests_count",
    "subtests_passed",
    "subtests_failed",
    "subtests_others",
    "agent_expired",
    "subtest_detail",
}
SUBTEST_DETAIL_KEYS = {
    "name",
    "note",
    "result",
    "test_uuid",
    "test_run_uuid",
    "test_run_url",
    "started_at",
    "finished_at",
}
TIMING_KEYS = {
    "dns_lookup_ms",
    "dial_ms",
    "send_headers_ms",
    "send_body_ms",
    "wait_for_response_ms",
    "receive_response_ms",
}


def test_the_result_has_the_shape_of_the_runscope_result_detail(target):
    m = make(
        [
            request(
                "{{base}}/json",
                id="step-1",
                variables=[{"name": "n", "source": "response_json", "property": "data.count"}],
                assertions=[status_is(200), {"source": "response_time", "comparison": "is_less_than", "value": 60000}],
            ),
            {"stepType": "pause", "duration": 1, "id": "step-2"},
            request("{{base}}/status/500", id="step-3", assertions=[status_is(200)]),
        ],
        environments=[env(target, id="env-1", name="Prod Settings")],
        uid="test-uid",
    )
    result = run(m, run_id="run-1")
    data = result.to_runscope()
    assert set(data) == RESULT_DETAIL_KEYS and set(data["subtest_detail"]) == SUBTEST_DETAIL_KEYS
    assert (data["test_id"], data["test_run_id"], data["bucket_key"]) == ("test-uid", "run-1", "team-a")
    assert (data["environment_id"], data["environment_name"]) == ("env-1", "Prod Settings")
    assert data["result"] == "fail" and data["requests_executed"] == 2
    assert (data["assertions_defined"], data["assertions_passed"], data["assertions_failed"]) == (3, 2, 1)
    assert (data["variables_defined"], data["variables_passed"], data["variables_failed"]) == (1, 1, 0)
    assert data["started_at"] <= data["finished_at"]
    first, pause, failed = data["requests"]
    assert list(first) == list(RUNSCOPE_REQUEST_KEYS) and first["uuid"] == "step-1" and first["result"] == "pass"
    assert set(first["timings"]) == TIMING_KEYS and all(v >= 0 for v in first["timings"].values())
    assert pause == {**dict.fromkeys(RUNSCOPE_REQUEST_KEYS), "uuid": "step-2"}  # as the document's first entry
    assert failed["result"] == "fail" and failed["assertions"][0]["actual_value"] == "500"
    summary = result.to_runscope_summary()
    assert set(summary) == RESULT_DETAIL_KEYS - {"requests", "source"}


def test_step_detail_has_headers_as_arrays_and_base64_for_binary_bodies(target):
    result = run(
        make(
            [request("{{base}}/binary?x=1&x=2", id="bin"), request("{{base}}/json", id="js")],
            environments=[env(target)],
        )
    )
    detail = result.step_detail("bin")
    assert detail["uuid"] == "bin" and detail["bucket_key"] == "team-a"
    assert detail["response"]["body_encoding"] == "base64"
    assert base64.b64decode(detail["response"]["body"]) == PNG_BYTES
    assert detail["response"]["headers"]["Content-Type"] == ["image/png"]
    assert detail["response"]["size_bytes"] == len(PNG_BYTES) and detail["response"]["status"] == 200
    assert detail["response"]["reason"] == "OK"
    req = detail["request"]
    assert (req["method"], req["scheme"], req["host"], req["path"]) == ("GET", "http", "127.0.0.1", "/binary")
    assert req["params"] == {"x": ["1", "2"]} and req["body_encoding"] == "plaintext"
    assert all(isinstance(v, list) for v in req["headers"].values())
    assert req["timestamp"] <= detail["response"]["timestamp"]
    assert result.step_detail("js")["response"]["body_encoding"] == "plaintext"
    assert result.step_detail("nope") is None


def test_retry_and_webhooks_are_carried_for_the_operator(target):
    m = make(
        [request("{{base}}/json")], environments=[env(target, retryOnFailure=True, webhooks=["http://hooks.example/a"])]
    )
    result = run(m)
    assert result.retry_on_failure and result.webhooks == ["http://hooks.example/a"]
    assert not run(make([request(f"{target.url}/json")])).retry_on_failure


def test_progress_events_arrive_in_order(target):
    events = []
    result = run(
        make(
            [request("{{base}}/json"), {"stepType": "request", "url": "{{base}}/json", "skipped": True}],
            environments=[env(target)],
        ),
        on_progress=events.append,
    )
    kinds = [(e.kind, e.step.path if e.step else None) for e in events]
    assert kinds == [
        ("run_started", None),
        ("step_started", "steps[0]"),
        ("step_finished", "steps[0]"),
        ("step_finished", "steps[1]"),
        ("run_finished", None),
    ]
    assert events[-1].run is result and events[2].step.result == "pass"


# --- failures, skipping, stop on failure ---------------------------------------------------------------


def test_an_unreachable_target_fails_its_step_and_the_run_goes_on(target):
    port = closed_port()
    result = run(
        make(
            [
                request(f"http://127.0.0.1:{port}/x", assertions=[status_is(200)]),
                request("{{base}}/json", assertions=[status_is(200)]),
            ],
            environments=[env(target)],
        )
    )
    down, up = result.requests
    assert down.result == "fail" and down.error.startswith("connection refused")
    assert down.assertions[0].error.startswith("no response") and down.timings is not None
    assert result.step_detail(down.uuid)["response"] is None
    assert up.result == "pass" and result.result == "fail" and result.requests_executed == 2


def test_stop_on_failure_skips_every_later_step(target):
    m = make(
        [
            request("{{base}}/status/503", assertions=[status_is(200)]),
            request("{{base}}/json"),
            {
                "stepType": "condition",
                "leftValue": "a",
                "comparison": "equal",
                "rightValue": "a",
                "steps": [request("{{base}}/json")],
            },
        ],
        environments=[env(target, stopOnFailure=True)],
    )
    result = run(m)
    assert [s.status for s in result.requests] == ["fail", "skipped", "skipped", "skipped"]
    assert result.requests[1].skip_reason == "stop on failure: steps[0] failed"
    assert len(target.received("/json")) == 0 and result.requests_executed == 1
    assert result.to_runscope()["requests"][1]["result"] is None


def test_without_stop_on_failure_later_steps_still_run(target):
    result = run(
        make(
            [request("{{base}}/status/503", assertions=[status_is(200)]), request("{{base}}/json")],
            environments=[env(target)],
        )
    )
    assert [s.status for s in result.requests] == ["fail", "pass"]


def test_skipped_steps_are_reported_and_not_sent(target):
    result = run(
        make(
            [
                request("{{base}}/json", skipped=True),
                {"stepType": "pause", "duration": 5, "skipped": True},
                request("{{base}}/text"),
            ],
            environments=[env(target)],
        )
    )
    assert [s.status for s in result.requests] == ["skipped", "skipped", "pass"]
    assert result.requests[0].skip_reason == "skipped in the test definition"
    assert len(target.received("/json")) == 0 and result.passed and result.duration_s < 4


def test_a_template_error_fails_its_step_with_the_field(target):
    result = run(make([request("{{base}}/{{md5(}}"), request("{{base}}/json")], environments=[env(target)]))
    assert result.requests[0].result == "fail"
    assert result.requests[0].error.startswith("spec.steps[0].url: ")
    assert result.requests[1].result == "pass"


def test_a_url_that_renders_empty_fails_its_step(target):
    result = run(make([request("{{nothing}}")]))
    assert result.requests[0].result == "fail" and "invalid URL" in result.requests[0].error


def test_an_unknown_environment_is_refused():
    with pytest.raises(UnknownEnvironment, match="no environment 'staging' \\(has: local\\)"):
        run(make([request("http://x/")], environments=[{"name": "local"}]), environment="staging")


def test_the_default_environment_is_used_unless_one_is_named(target):
    m = make(
        [request("{{base}}/echo?e={{which}}")],
        default="b",
        environments=[env(target, name="a", variables={"which": "a"}), env(target, name="b", variables={"which": "b"})],
    )
    assert echoed(run(m).requests[0])["query"]["e"] == ["b"]
    assert echoed(run(m, environment="a").requests[0])["query"]["e"] == ["a"]


# --- cookies and TLS -----------------------------------------------------------------------------------


@pytest.mark.parametrize("preserve", [True, False])
def test_preserve_cookies_keeps_or_drops_cookies_between_steps(target, preserve):
    m = make(
        [request("{{base}}/cookies/set?session=abc"), request("{{base}}/cookies")],
        environments=[env(target, preserveCookies=preserve)],
    )
    cookies = echoed(run(m).requests[1])["cookies"]
    assert cookies == ({"session": "abc"} if preserve else {})


@pytest.mark.parametrize("verify", [True, False])
def test_verify_ssl_decides_whether_a_self_signed_certificate_is_accepted(verify):
    with HttpsServer() as server:
        result = run(
            make(
                [request(f"{server.url}/x", assertions=[status_is(200)])],
                environments=[{"name": "tls", "verifySsl": verify}],
            )
        )
    step = result.requests[0]
    if verify:
        assert (
            step.result == "fail" and step.error.startswith("TLS error") and "CERTIFICATE_VERIFY_FAILED" in step.error
        )
    else:
        assert step.result == "pass"


def test_the_environment_client_certificate_reaches_the_server_and_timings_still_come(target):
    with MutualTlsServer() as server:
        m = make(
            [
                request(
                    f"{server.url}/who",
                    auth={"authType": "client_certificate"},
                    variables=[{"name": "cn", "source": "response_json", "property": "client_common_name"}],
                )
            ],
            environments=[
                {"name": "mtls", "verifySsl": False, "clientCertificate": server.issue_client_certificate("monitor-7")}
            ],
        )
        result = run(m)
    step = result.requests[0]
    assert step.result == "pass" and result.variables["cn"] == "monitor-7"
    assert step.timings.dial_ms > 0  # the TLS handshake counts as dialing


# --- pause and condition -----------------------------------------------------------------------------


def test_pause_waits_for_its_duration(target):
    result = run(make([{"stepType": "pause", "duration": 1}, request("{{base}}/json")], environments=[env(target)]))
    pause = result.requests[0]
    assert 1000 <= pause.duration_ms < 1500 and pause.status == "pass" and pause.result is None


def test_conditions_run_their_steps_only_when_they_hold(target):
    m = make(
        [
            request(
                "{{base}}/json", variables=[{"name": "count", "source": "response_json", "property": "data.count"}]
            ),
            {
                "stepType": "condition",
                "leftValue": "{{count}}",
                "comparison": "is_greater_than",
                "rightValue": "1",
                "steps": [request("{{base}}/text", variables=[{"name": "t", "source": "response_text"}])],
            },
            {
                "stepType": "condition",
                "leftValue": "{{count}}",
                "comparison": "equal",
                "rightValue": "3",
                "steps": [request("{{base}}/xml"), {"stepType": "pause", "duration": 3}],
            },
        ],
        environments=[env(target)],
    )
    result = run(m)
    _, met, inner, unmet, skipped_a, skipped_b = result.requests
    assert met.condition_met is True and met.name == "condition '2' is_greater_than '1'"
    assert inner.parent_uuid == met.uuid and inner.path == "steps[1].steps[0]" and inner.result == "pass"
    assert unmet.condition_met is False and unmet.status == "not_run"
    assert skipped_a.skipped and skipped_a.skip_reason.startswith("condition not met: expected '3', got '2'")
    assert result.variables["t"] == "hello plain world" and len(target.received("/xml")) == 0
    assert result.passed and result.duration_s < 2.5


def test_a_condition_with_a_broken_template_fails(target):
    result = run(
        make(
            [
                {
                    "stepType": "condition",
                    "leftValue": "{{x",
                    "comparison": "equal",
                    "rightValue": "1",
                    "steps": [request("{{base}}/json")],
                }
            ],
            environments=[env(target)],
        )
    )
    condition, inner = result.requests
    assert condition.result == "fail" and "spec.steps[0].leftValue" in condition.error and inner.skipped


# --- subtests ---------------------------------------------------------------------------------------------


def child_monitor(target, **kwargs):
    return make(
        [
            request(
                "{{base}}/echo?token={{token}}",
                variables=[{"name": "echoed_token", "source": "response_json", "property": "query.token[0]"}],
            ),
            request("{{base}}/json", assertions=[status_is(kwargs.pop("status", 200))]),
        ],
        name=kwargs.pop("name", "child"),
        environments=[env(target, variables={"token": "default"})],
        **kwargs,
    )


def test_a_subtest_gets_params_and_gives_variables_back(target):
    child = child_monitor(target)
    parent = make(
        [
            request(
                "{{base}}/json",
                variables=[{"name": "name", "source": "response_json", "property": "data.items[0].name"}],
            ),
            {
                "stepType": "subtest",
                "monitor": "child",
                "params": [{"name": "token", "value": "t-{{name}}"}],
                "assertions": [
                    status_is(200),
                    {"source": "response_json", "property": "result", "comparison": "equal", "value": "pass"},
                ],
                "variables": [
                    {"name": "from_child", "source": "response_json", "property": "variables.echoed_token"},
                    {"name": "child_requests", "source": "response_json", "property": "requests_executed"},
                ],
            },
            request("{{base}}/echo?got={{from_child}}"),
        ],
        name="parent",
        environments=[env(target)],
        uid="parent-uid",
    )
    result = run(parent, resolve_monitor={"child": child}.__getitem__)
    assert result.passed, [s.error for s in result.requests]
    sub = result.requests[1]
    assert sub.subtest.variables["echoed_token"] == "t-first" and sub.status_code == 200
    assert result.variables["from_child"] == "t-first" and result.variables["child_requests"] == "2"
    assert echoed(result.requests[2])["query"]["got"] == ["t-first"]
    assert sub.subtest.parent_test_uuid == "parent-uid" and sub.subtest.subtest_detail.result == "pass"
    data = result.to_runscope()
    assert (data["subtests_count"], data["subtests_passed"], data["subtests_failed"]) == (1, 1, 0)
    assert data["requests_executed"] == 2  # the subtest's own requests count in its result


def test_a_failing_subtest_answers_500_and_fails_its_step_unless_asserted(target):
    child = child_monitor(target, status=201)
    plain = make([{"stepType": "subtest", "monitor": "child"}], environments=[env(target)])
    result = run(plain, resolve_monitor={"child": child}.__getitem__)
    assert result.requests[0].result == "fail" and result.requests[0].error == "subtest 'child' failed"
    assert result.requests[0].status_code == 500 and result.subtests_failed == 1
    expecting = make([{"stepType": "subtest", "monitor": "child", "assertions": [status_is(500)]}])
    assert run(expecting, resolve_monitor={"child": child}.__getitem__).passed


def test_subtests_resolve_by_test_uuid_through_an_async_resolver_in_a_named_environment(target):
    child = make(
        [request("{{base}}/echo?which={{which}}")],
        name="child",
        uid="child-uid",
        environments=[
            env(target, name="one", id="env-one", variables={"which": "one"}),
            env(target, name="two", id="env-two", variables={"which": "two"}),
        ],
    )

    async def resolve(key):
        return {"child-uid": child}[key]

    parent = make(
        [
            {
                "stepType": "subtest",
                "testUuid": "child-uid",
                "environmentUuid": "env-two",
                "variables": [{"name": "sent", "source": "response_json", "property": "requests[0].url"}],
            }
        ]
    )
    result = run(parent, resolve_monitor=resolve)
    assert result.passed and result.variables["sent"].endswith("/echo?which=two")
    assert result.requests[0].subtest.environment_name == "two"


def test_subtest_problems_fail_the_step_with_a_reason(target):
    child = make([request(f"{target.url}/json")], name="child")
    loop = make([{"stepType": "subtest", "monitor": "loop"}], name="loop")
    cases = [
        (make([{"stepType": "subtest", "monitor": "child"}]), None, "no way to look Monitors up"),
        (
            make([{"stepType": "subtest", "monitor": "ghost"}]),
            {"child": child}.__getitem__,
            "subtest 'ghost' not found",
        ),
        (loop, {"loop": loop}.__getitem__, "would recurse (loop -> loop)"),
        (
            make([{"stepType": "subtest", "monitor": "child", "environmentUuid": "nope"}]),
            {"child": child}.__getitem__,
            "spec.steps[0].environmentUuid: subtest 'child' has no environment 'nope'",
        ),
    ]
    for parent, resolver, message in cases:
        result = run(parent, resolve_monitor=resolver)
        assert result.requests[0].result == "fail" and message in result.requests[0].error
        assert result.subtests_others == 1


# --- Ghost Inspector ---------------------------------------------------------------------------------


def ghost(target):
    return {"gi-1": GhostInspectorIntegration(api_key=GHOST_API_KEY, base_url=f"{target.url}/ghost")}


def test_ghost_inspector_steps_assert_and_extract_on_the_answer(target):
    m = make(
        [
            {
                "stepType": "ghost-inspector",
                "integrationId": "gi-1",
                "testId": "t-42",
                "isCustomStartUrl": True,
                "startUrl": "{{base}}/start",
                "assertions": [
                    {"source": "response_json", "property": "data.passing", "comparison": "equal", "value": "true"}
                ],
                "variables": [
                    {"name": "shot", "source": "response_json", "property": "data.screenshot.small.defaultUrl"},
                    {"name": "start", "source": "response_json", "property": "data.startUrl"},
                ],
            }
        ],
        environments=[env(target)],
    )
    result = run(m, integrations=ghost(target))
    step = result.requests[0]
    assert result.passed and result.variables["shot"] == "https://shots.example/t-42.png"
    assert result.variables["start"] == f"{target.url}/start"
    (call,) = target.received("/ghost/tests/t-42/execute/")
    assert call.query["apiKey"] == [GHOST_API_KEY]
    assert GHOST_API_KEY not in step.url and GHOST_API_KEY not in json.dumps(result.step_detail(step.uuid))


def test_ghost_inspector_failures(target):
    failing = make([{"stepType": "ghost-inspector", "integrationId": "gi-1", "testId": "failing-test"}])
    result = run(failing, integrations=ghost(target))
    assert result.requests[0].result == "fail" and "did not pass" in result.requests[0].error
    wrong_key = {"gi-1": GhostInspectorIntegration(api_key="wrong", base_url=f"{target.url}/ghost")}
    result = run(
        make([{"stepType": "ghost-inspector", "integrationId": "gi-1", "testId": "t"}]), integrations=wrong_key
    )
    assert result.requests[0].result == "fail" and "answered 401" in result.requests[0].error
    missing = run(make([{"stepType": "ghost-inspector", "integrationId": "gi-9", "testId": "t"}]))
    assert missing.requests[0].result == "fail"
    assert "no Ghost Inspector integration 'gi-9' is configured" in missing.requests[0].error


# --- scripts --------------------------------------------------------------------------------------------


def test_scripts_run_before_and_after_requests_and_in_the_environment(target):
    m = make(
        [
            request(
                "{{base}}/echo?v={{from_env}}&p={{pre}}",
                before_scripts=[
                    "variables.set('pre', 'set-before');",
                    "request.headers['X-Added'] = ['by-script'];",
                ],
                scripts=[
                    "var body = JSON.parse(response.body); variables.set('echoed', body.query.p[0]); log('status', response.status);",
                ],
            ),
            request("{{base}}/echo?e={{echoed}}", scripts=["assert.equal(response.status, 201, 'wanted 201');"]),
        ],
        environments=[env(target, script="variables.set('from_env', 'E'); log('env ran');")],
    )
    result = run(m)
    first, second = result.requests
    sent = echoed(first)
    assert sent["query"] == {"v": ["E"], "p": ["set-before"]} and sent["headers"]["X-Added"] == "by-script"
    assert (first.scripts_defined, first.scripts_passed) == (3, 3) and first.scripts[2].output == "status 200"
    assert echoed(second)["query"]["e"] == ["set-before"]
    assert second.result == "fail" and "wanted 201" in second.scripts[0].error
    assert result.environment_script.output == "env ran"
    assert (result.scripts_defined, result.scripts_passed, result.scripts_failed) == (5, 4, 1)


REGEX_ATTACK = 'log("matching"); /^(a+)+$/.test("a".repeat(40) + "b");'
SCRIPT_LIMIT_S = 1.0  # ScriptRunner's default, what a Monitor run gets
DEADLINE_MARGIN_S = 1.0
"""Per stopped script: the kill grace, a replacement worker's start, the run's own requests."""


def test_a_backtracking_regex_fails_its_own_script_at_the_time_limit_and_the_run_goes_on(target):
    m = make(
        [
            request("{{base}}/echo?step=1", before_scripts=[REGEX_ATTACK]),
            request("{{base}}/echo?step=2", scripts=[REGEX_ATTACK, "log('after');"]),
            request("{{base}}/echo?step=3", scripts=["assert.equal(response.status, 200); log('fine');"]),
        ],
        environments=[env(target)],
    )
    run(make([request("{{base}}/json", scripts=["log(1)"])], environments=[env(target)]))  # workers started
    started = time.perf_counter()
    result = run(m)
    elapsed = time.perf_counter() - started
    # Two stopped scripts, one after the other; in process, either ran until the Job deadline.
    assert elapsed < 2 * (SCRIPT_LIMIT_S + DEADLINE_MARGIN_S), elapsed
    first, second, third = result.requests
    limit_error = "script exceeded its 1.0 s time limit"
    assert first.scripts[0].error == limit_error and first.result == "fail"
    assert echoed(first)["query"] == {"step": ["1"]}  # the request went out as defined
    assert second.scripts[0].error == limit_error and second.result == "fail"
    assert second.scripts[1].result == "pass" and second.scripts[1].output == "after"
    assert third.result == "pass" and third.scripts[0].output == "fine"
    assert (result.scripts_defined, result.scripts_passed, result.scripts_failed) == (4, 2, 2)


def test_script_libraries_are_loaded_by_id(target):
    m = make(
        [request("{{base}}/echo?x={{x}}", before_scripts=["variables.set('x', shout('hi'));"])],
        environments=[env(target, scriptLibrary=["lib-1"])],
    )
    result = run(m, script_libraries={"lib-1": "function shout(s) { return s.toUpperCase(); }"})
    assert echoed(result.requests[0])["query"]["x"] == ["HI"]
    missing = run(m)
    assert missing.requests[0].result == "fail" and "'lib-1' is not available" in missing.requests[0].scripts[0].error


def test_a_pre_request_script_signs_the_request_with_crypto_js_and_dates_it_with_moment(target):
    signer = """
        var date = moment.utc(variables.get('issued'), 'X').format('ddd, DD MMM YYYY HH:mm:ss [GMT]');
        var signed = _.map([request.method, request.path, date], String).join('\\n');
        request.headers['Date'] = date;
        request.headers['X-Signature'] = CryptoJS.enc.Base64.stringify(CryptoJS.HmacSHA256(signed, variables.get('key')));
    """
    m = make(
        [request("{{base}}/echo", method="PUT", before_scripts=[signer])],
        environments=[env(target, variables={"key": "s3cret", "issued": "1700000000"})],
    )
    result = run(m)
    assert result.passed, result.requests[0].scripts[0].error
    headers = echoed(result.requests[0])["headers"]
    assert headers["Date"] == "Tue, 14 Nov 2023 22:13:20 GMT"
    expected = hmac.new(b"s3cret", f"PUT\n/echo\n{headers['Date']}".encode(), hashlib.sha256).digest()
    assert headers["X-Signature"] == base64.b64encode(expected).decode()


def test_a_failing_environment_script_fails_the_run(target):
    m = make([request("{{base}}/json")], environments=[env(target, script="throw new Error('boom');")])
    result = run(m)
    assert result.result == "fail" and "boom" in result.error and result.requests[0].result == "pass"
    stopping = make(
        [request("{{base}}/json")], environments=[env(target, script="throw new Error('x');", stopOnFailure=True)]
    )
    assert run(stopping).requests[0].skipped
