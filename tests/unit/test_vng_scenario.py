"""VNG session types and the check of a consumer session's recorded calls against its scenario."""

from __future__ import annotations

import json

import pytest

from assay.api.services.vng import FieldErrors, percentage, provider_endpoints, session_view
from assay.api.services.vng_scenario import (
    NO_CASES,
    SessionTypeError,
    case_matches,
    display_path,
    path_pattern,
    scenario_cases,
    session_result,
    session_type_services,
    split_case_url,
)

SERVICES = {"quotes": "http://127.0.0.1:8080/api/v2", "auth": "http://127.0.0.1:9090"}


def suite(annotations: dict) -> dict:
    return {"metadata": {"name": "demo", "uid": "u-1", "annotations": annotations}, "spec": {}}


def call(n, method, path, status=200, body=b'{"ok": true}', service="quotes", **extra) -> dict:
    return {
        "n": n,
        "service": service,
        "method": method,
        "path": path,
        "url": "http://t" + path,
        "status": status,
        "responseHeaders": [["Content-Type", "application/json"]],
        "responseBody": body.decode(),
        "responseBodyEncoding": "text",
        **extra,
    }


SPEC = {
    "parameters": {"expected": "ok"},
    "flows": [
        {
            "name": "quotes",
            "requests": [
                {
                    "method": "POST",
                    "url": "{{quotes}}/quotes",
                    "assertions": [{"source": "response_status", "comparison": "equal", "value": 201}],
                },
                {
                    "url": "{{quotes}}/quotes/{{id}}?expand=true",
                    "assertions": [
                        {"source": "response_json", "property": "ok", "comparison": "equal", "value": "true"}
                    ],
                },
                {"method": "DELETE", "url": "http://127.0.0.1:9090/tokens/{token}"},
            ],
        }
    ],
}


def test_services_come_from_the_annotation_and_bad_ones_say_why():
    assert session_type_services(suite({"assay.dev/vng-services": json.dumps(SERVICES)})) == SERVICES
    for bad, words in [
        ({}, "missing"),
        ({"assay.dev/vng-services": "{"}, "not JSON"),
        ({"assay.dev/vng-services": '{"a": "ftp://x"}'}, "http(s)"),
        ({"assay.dev/vng-services": '{"a b": "http://x"}'}, "service name"),
    ]:
        with pytest.raises(SessionTypeError, match=words.replace("(", r"\(").replace(")", r"\)")):
            session_type_services(suite(bad))


def test_a_request_url_names_its_service_by_variable_or_base_url():
    assert split_case_url("{{quotes}}/quotes/{{id}}?x=1", SERVICES) == ("quotes", "/quotes/{{id}}")
    assert split_case_url("http://127.0.0.1:9090/tokens", SERVICES) == ("auth", "/tokens")
    assert split_case_url("https://elsewhere.example/a/b", SERVICES) == (None, "/a/b")
    assert split_case_url("/relative", {"only": "http://x"}) == ("only", "/relative")


def test_placeholders_match_one_segment():
    pattern = path_pattern("/quotes/{{id}}/items/{n}")
    assert display_path("/quotes/{{ id }}/items/{n}") == "/quotes/{id}/items/{n}"
    case = {"http_method": "GET", "vng_endpoint": "quotes", "pattern": pattern}
    assert case_matches(case, {"method": "get", "service": "quotes", "path": "/quotes/7/items/2/"})
    assert not case_matches(case, {"method": "GET", "service": "quotes", "path": "/quotes/7/8/items/2"})
    assert not case_matches(case, {"method": "GET", "service": "auth", "path": "/quotes/7/items/2"})
    assert not case_matches(case, {"method": "POST", "service": "quotes", "path": "/quotes/7/items/2"})
    assert not case_matches(
        {**case, "pattern": path_pattern("/a.b")}, {"method": "GET", "service": "quotes", "path": "/axb"}
    )


def test_scenario_cases_are_the_suites_requests():
    cases = scenario_cases(SPEC, SERVICES)
    assert [(c["http_method"], c["url"], c["vng_endpoint"]) for c in cases] == [
        ("POST", "/quotes", "quotes"),
        ("GET", "/quotes/{id}", "quotes"),
        ("DELETE", "/tokens/{token}", "auth"),
    ]
    assert cases[0]["assertions"] == [{"source": "response_status", "comparison": "equal", "value": 201}]
    with pytest.raises(SessionTypeError, match="not valid"):
        scenario_cases({"flows": []}, SERVICES)


def test_every_case_called_and_passing_is_success():
    cases = scenario_cases(SPEC, SERVICES)
    calls = [
        call(1, "POST", "/quotes", 201),
        call(2, "GET", "/quotes/5"),
        call(3, "DELETE", "/tokens/abc", 204, b"", service="auth"),
        call(4, "GET", "/unrelated", 500),
    ]
    result = session_result(cases, calls, {"expected": "ok"})
    assert result["result"] == "success", result
    assert [e["result"] for e in result["report"]] == ["success"] * 3
    assert result["report"][1]["calls"] == 1
    assert result["report"][1]["assertions"][0]["result"] == "pass"
    assert result["report"][0]["scenario_case"] == {"url": "/quotes", "http_method": "POST", "vng_endpoint": "quotes"}


def test_a_missing_call_a_4xx_or_a_failed_assertion_fails_the_session():
    cases = scenario_cases(SPEC, SERVICES)
    calls = [call(1, "POST", "/quotes", 400), call(2, "GET", "/quotes/5", body=b'{"ok": false}')]
    result = session_result(cases, calls, {})
    assert result["result"] == "failed"
    post, get, delete = result["report"]
    # The case asserts on the status, so 400 fails its assertion (not the generic 4xx rule).
    assert post["result"] == "failed" and post["assertions"][0]["result"] == "fail"
    assert get["result"] == "failed" and "false" in get["assertions"][0]["actual_value"]
    assert delete["result"] is None and delete["reasons"] == ["not called"]
    transport = session_result(
        cases[2:], [call(1, "DELETE", "/tokens/x", service="auth", status=None, error="ConnectError")], {}
    )
    assert transport["result"] == "failed" and "no answer" in transport["report"][0]["reasons"][0]
    generic = session_result(cases[2:], [call(1, "DELETE", "/tokens/x", 404, service="auth")], {})
    assert generic["report"][0]["reasons"] == ["call 1: HTTP 404"]


def test_sandbox_counts_only_the_latest_matching_call():
    cases = scenario_cases(SPEC, SERVICES)[2:]
    calls = [call(1, "DELETE", "/tokens/x", 500, service="auth"), call(2, "DELETE", "/tokens/x", 204, service="auth")]
    assert session_result(cases, calls, {})["result"] == "failed"
    assert session_result(cases, calls, {}, sandbox=True)["result"] == "success"
    assert session_result([], calls, {})["result"] == NO_CASES


def test_session_view_lists_exposed_urls_per_service():
    record = {
        "id": 3,
        "uuid": "0b1c",
        "sessionType": {"name": "Demo"},
        "started": 0,
        "stopped": None,
        "status": "running",
        "services": SERVICES,
    }
    view = session_view(record, "https://gw.example/")
    assert view["exposedurl_set"] == [
        {"vng_endpoint": "quotes", "exposed_url": "https://gw.example/vng/exposed/0b1c/quotes/"},
        {"vng_endpoint": "auth", "exposed_url": "https://gw.example/vng/exposed/0b1c/auth/"},
    ]
    assert view["exposed_urls"] == [u["exposed_url"] for u in view["exposedurl_set"]]
    assert view["started"] == "1970-01-01T00:00:00Z" and view["stopped"] is None


def test_provider_endpoints_in_either_place_and_drf_field_errors():
    assert provider_endpoints({"endpoints": [{"name": "quotes", "value": "http://x"}]}) == (
        [{"name": "quotes", "value": "http://x"}],
        None,
    )
    env = {"name": "staging", "endpoints": [{"name": "quotes", "value": "http://y"}]}
    assert provider_endpoints({"environment": env}) == ([{"name": "quotes", "value": "http://y"}], env)
    with pytest.raises(FieldErrors) as bad:
        provider_endpoints({"endpoints": [{"name": "quotes"}, {"name": "a", "value": "b"}]})
    assert bad.value.fields == {"endpoints": [{"value": ["This field is required."]}, {}]}
    with pytest.raises(FieldErrors):
        provider_endpoints({"endpoints": "quotes=http://x"})
    assert (percentage("1/4"), percentage("0/0"), percentage(None)) == (25, 0, 0)
