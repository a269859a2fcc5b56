"""The Loadmill API's pure parts: the load-test configuration mapping, suite-run and flow-run
views, CSV pools, labels and the error shape (asking for a run: test_run_requests.py). The
cluster tests (tests/cluster/test_loadmill_api.py) run the endpoints for real."""

from __future__ import annotations

import uuid

import pytest

from assay.api.errors import ApiError
from assay.api.services.loadmill import (
    iterations,
    loadmill_result,
    loadtest_spec_from_conf,
    template,
    used_seconds,
)
from assay.api.services.loadmill_runs import plan_status
from assay.api.services.suites import (
    MAX_POOL_BYTES,
    flow_run_view,
    label_id,
    text_parameters,
    validated_csv,
)

# The example of https://docs.loadmill.com "Configuration Files", without its built-in
# function ${__random_chars} (refused, see below).
DOCS_EXAMPLE = {
    "duration": 600000,
    "concurrency": 125,
    "requests": [
        {
            "url": "https://blog.test/ghost/api/v0.1/authentication/token/",
            "method": "POST",
            "headers": [],
            "assert": [],
            "extract": [{"access_token": {"jsonPath": "access_token"}}, {"token_type": {"jsonPath": "token_type"}}],
            "timeout": 22000,
            "description": "Login",
            "postData": {
                "text": "grant_type=password&username=a@b.com",
                "mimeType": "application/x-www-form-urlencoded",
            },
            "delay": 1000,
        },
        {
            "url": "https://blog.test/ghost/api/v0.1/posts/",
            "method": "POST",
            "headers": [{"Authorization": "${token_type} ${access_token}"}],
            "assert": [{"check": "postId"}],
            "extract": [{"postId": {"jsonPath": "posts[0].id"}}],
            "timeout": 22000,
            "description": "Create Post",
            "postData": {"text": '{"posts": [{"title": "${postText}"}]}', "mimeType": "application/json"},
        },
    ],
    "meta": {"description": "Example test"},
    "parameters": [{"postText": "Test Post"}, {"username": ["123", "456", "678"]}],
    "parameterPools": [],
    "targetedCountries": [],
    "iterationDelay": 2000,
    "cachePenetration": {"mode": "default"},
    "rampUp": 120000,
}


def problem(call) -> ApiError:
    with pytest.raises(ApiError) as info:
        call()
    return info.value


def test_the_documented_configuration_maps_onto_a_load_test():
    spec, ignored = loadtest_spec_from_conf(DOCS_EXAMPLE)
    wire = spec.to_k8s()
    assert wire["description"] == "Example test"
    assert wire["load"] == {
        "model": "closed",
        "users": 125,
        "duration": "600s",
        "rampUp": "120s",
        "rampDown": "0s",
        "stages": [],
    }
    flow = wire["flows"][0]
    assert flow["name"] == "loadmill" and flow["thinkTime"] == "1s"
    login, post = flow["requests"]
    assert login["name"] == "Login" and login["method"] == "POST" and login["timeout"] == "22s"
    assert login["body"] == "grant_type=password&username=a@b.com"
    assert login["headers"] == {"Content-Type": "application/x-www-form-urlencoded"}
    assert login["extract"] == [
        {"name": "access_token", "source": "response_json", "property": "access_token"},
        {"name": "token_type", "source": "response_json", "property": "token_type"},
    ]
    assert post["headers"] == {"Authorization": "{{token_type}} {{access_token}}", "Content-Type": "application/json"}
    assert post["body"] == '{"posts": [{"title": "{{postText}}"}]}'
    assert post["assertions"] == [{"source": "response_json", "property": "posts[0].id", "comparison": "not_empty"}]
    assert wire["parameterPools"] == [
        {"name": "parameters", "csv": "postText,username\nTest Post,123\nTest Post,456\nTest Post,678\n"}
    ]
    assert ignored == ["cachePenetration", "iterationDelay", "targetedCountries"]


def test_a_minimal_configuration_is_a_single_pass():
    spec, ignored = loadtest_spec_from_conf({"requests": [{"url": "http://x.test/"}]})
    assert spec.load.users == 1 and spec.load.iterations == 1 and spec.load.duration is None
    assert spec.flows[0].requests[0].method == "GET" and ignored == []


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([{"A": "1"}, {"B": "${x}"}], {"A": "1", "B": "{{x}}"}),
        ({"A": "1"}, {"A": "1"}),
        ([{"name": "A", "value": "1"}], {"A": "1"}),
    ],
)
def test_headers_in_every_shape_loadmill_writes(headers, expected):
    spec, _ = loadtest_spec_from_conf({"requests": [{"url": "http://x.test/", "headers": headers}]})
    assert spec.flows[0].requests[0].headers == expected


@pytest.mark.parametrize(
    ("operator", "comparison", "value"),
    [
        ("equals", "equal", "ok"),
        ("notEquals", "not_equal", "ok"),
        ("contains", "contains", "${v}"),
        ("notContains", "does_not_contain", "x"),
        ("greater", "is_greater_than", 3),
        ("lesserEquals", "is_less_than_or_equal", 2.5),
    ],
)
def test_assertion_operators(operator, comparison, value):
    conf = {
        "requests": [
            {
                "url": "http://x.test/",
                "extract": [{"v": {"header": "X-V"}}],
                "assert": [{"check": "v", operator: value}],
            }
        ]
    }
    spec, _ = loadtest_spec_from_conf(conf)
    assertion = spec.flows[0].requests[0].assertions[0]
    assert (assertion.source, assertion.property, assertion.comparison) == ("response_headers", "X-V", comparison)
    assert assertion.value == ("{{v}}" if value == "${v}" else value if not isinstance(value, float) else "2.5")


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({}, "config.requests"),
        ({"requests": [{"url": "http://x/${__random_chars}"}]}, "built-in functions"),
        ({"requests": [{"url": "http://x/${a + 1}"}]}, "not expressions"),
        ({"requests": [{"url": "http://x/", "method": "TRACE"}]}, "config.requests[0].method"),
        ({"requests": [{"url": "http://x/", "extract": [{"a": {"regex": ".*"}}]}]}, "only jsonPath, header"),
        ({"requests": [{"url": "http://x/", "assert": [{"check": "nope"}]}]}, "not extracted by this request"),
        (
            {
                "requests": [
                    {
                        "url": "http://x/",
                        "extract": [{"a": {"header": "A"}}],
                        "assert": [{"check": "a", "matches": "x"}],
                    }
                ]
            },
            "operator 'matches' is not supported",
        ),
        ({"requests": [{"url": "http://x/"}], "parameterPools": [{"x": 1}]}, "parameterPools"),
        ({"requests": [{"url": "http://x/"}], "concurrency": 0}, "config.concurrency"),
        ({"requests": [{"url": "http://x/"}], "duration": -5}, "config.duration"),
        ({"requests": [{"url": "http://x/"}] * 101}, "at most 100"),
        ({"requests": [{"url": "http://x/"}], "parameters": [{"a": "${b}"}]}, "config.parameters.a"),
        ([1, 2], "expected a JSON object"),
    ],
)
def test_configurations_that_cannot_run_as_asked_are_refused_with_the_field(conf, message):
    error = problem(lambda: loadtest_spec_from_conf(conf))
    assert error.status == 400 and message in error.message, error.message


def test_templates_convert_parameters_and_leave_text_alone():
    assert template("a ${x} b ${ y }", "f") == "a {{x}} b {{y}}"
    assert template("{{already}} $5 {x}", "f") == "{{already}} $5 {x}"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({}, None),
        ({"phase": "Running"}, None),
        ({"phase": "Succeeded", "result": "Passed"}, "done"),
        ({"phase": "Succeeded", "result": "Failed"}, "failed"),
        ({"phase": "Failed", "result": "Failed"}, "failed"),
        ({"phase": "Succeeded", "result": "Aborted"}, "aborted"),
    ],
)
def test_loadmill_result_is_set_only_when_the_run_ended(status, expected):
    assert loadmill_result(status) == expected


def test_iterations_are_passes_over_the_flow_and_failures_fail_at_most_one_each():
    spec = {"flows": [{"requests": [{}, {}]}], "load": {"users": 3}}
    assert iterations(spec, {"summary": {"requests": 20, "failures": 3}}) == (7, 3)
    assert iterations(spec, {"summary": {"requests": 21, "failures": 0}}) == (11, 0)
    assert iterations(spec, {}) == (0, 0)
    status = {"startTime": "2024-01-01T00:00:00Z", "completionTime": "2024-01-01T00:00:10Z"}
    assert used_seconds(spec, status) == 30
    assert used_seconds({"load": {"model": "open", "maxUsers": 5}}, status) == 50


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, {}),
        ({"a": "1", "b": 2, "c": True, "d": None}, {"a": "1", "b": "2", "c": "true", "d": ""}),
        ([{"a": "1"}, {"b": "2"}], {"a": "1", "b": "2"}),
    ],
)
def test_override_parameters_become_text(given, expected):
    assert text_parameters(given) == expected


def test_override_parameters_must_be_name_value_pairs():
    assert problem(lambda: text_parameters("a=1")).status == 400
    assert problem(lambda: text_parameters({"a": {"b": 1}})).status == 400


# --- views, pools, labels ---------------------------------------------------------------------------


def test_flow_run_view_has_loadmills_keys_from_the_suite_run():
    entry = {
        "id": "f-1",
        "startTime": 1000,
        "endTime": 1400,
        "conf": {"id": "flow-uuid", "name": "login"},
        "description": "Login",
        "status": "PASSED",
        "numOfRequests": 2,
        "avgResTime": 150,
        "duration": "400 ms",
    }
    view = flow_run_view(entry, {"testSuiteId": "suite-uuid"})
    assert {
        k: view[k] for k in ("id", "description", "conf", "status", "startTime", "testSuiteFlowId", "testSuiteId")
    } == {
        "id": "f-1",
        "description": "Login",
        "conf": entry["conf"],
        "status": "PASSED",
        "startTime": 1000,
        "testSuiteFlowId": "flow-uuid",
        "testSuiteId": "suite-uuid",
    }


def test_csv_pools_are_checked_like_the_runner_reads_them():
    assert validated_csv("\ufeffuser,pass\nann,1\n".encode(), None, "flow") == "user,pass\nann,1\n"
    assert validated_csv("user\nbé\n".encode("latin-1"), "latin-1", "flow") == "user\nbé\n"
    for bad, message in (
        (b"", "empty"),
        (b"user,pass\n", "no rows"),
        (b"a,b\n1\n", "line 2 has 1 fields"),
        (b"a,a\n1,2\n", "repeats"),
        (b"\xff\xfe", "utf-8"),
    ):
        error = problem(lambda bad=bad: validated_csv(bad, None, "flow 'x'"))
        assert error.status == 400 and message in error.message, error.message
    assert problem(lambda: validated_csv(b"a\n" + b"1\n" * MAX_POOL_BYTES, None, "f")).status == 413


def test_label_ids_are_uuid5_of_the_text():
    assert label_id("smoke") == label_id("smoke") != label_id("Smoke")
    assert uuid.UUID(label_id("smoke")).version == 5


def test_a_plan_run_is_running_until_every_suite_run_ended_and_passes_only_if_all_passed():
    assert plan_status([{"status": "PASSED"}, {"status": "RUNNING"}]) == "RUNNING"
    assert plan_status([{"status": "FAILED"}, {"status": "RUNNING"}]) == "RUNNING"
    assert plan_status([{"status": "PASSED"}, {"status": "FAILED"}]) == "FAILED"
    assert plan_status([{"status": "PASSED"}, {"status": "PASSED"}]) == "PASSED"
    assert plan_status([]) == "FAILED"
