"""The CRD models: what they accept and reject, and the CRD YAML generated from them."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from pydantic import ValidationError

from assay.crds import (
    KINDS,
    KINDS_BY_NAME,
    ClientCredentialSpec,
    LoadTestSpec,
    MonitorSpec,
    ScheduleSpec,
    TestSuiteSpec,
    build_crd,
    parse_criterion,
    parse_duration,
)
from assay.crds.common import Rule

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


def _load_gen_crds():
    spec = importlib.util.spec_from_file_location("hack_gen_crds", REPO / "hack" / "gen_crds.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def example_documents() -> list[dict]:
    return [doc for path in EXAMPLES for doc in yaml.safe_load_all(path.read_text()) if doc]


def assert_rejected(model, data: dict, *fragments: str) -> ValidationError:
    """`data` fails validation and the error names every fragment (field names, reasons)."""
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    text = str(caught.value)
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} not in:\n{text}"
    return caught.value


def error_locations(error: ValidationError) -> list[str]:
    return [".".join(str(p) for p in e["loc"]) for e in error.errors()]


# --- examples ---------------------------------------------------------------------------------


def test_there_is_an_example_for_every_kind():
    assert {doc["kind"] for doc in example_documents()} == {k.kind for k in KINDS}


@pytest.mark.parametrize("doc", example_documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_example_parses_and_round_trips(doc):
    model = KINDS_BY_NAME[doc["kind"]].resource
    parsed = model.model_validate(doc)
    again = model.model_validate(parsed.to_k8s())
    assert again == parsed
    # What Kubernetes stores is what the user wrote, plus defaults.
    assert _is_subset(doc["spec"], parsed.to_k8s()["spec"])


def _is_subset(small: Any, big: Any) -> bool:
    if isinstance(small, dict):
        return isinstance(big, dict) and all(k in big and _is_subset(v, big[k]) for k, v in small.items())
    if isinstance(small, list):
        return isinstance(big, list) and len(small) == len(big) and all(map(_is_subset, small, big))
    return small == big or (isinstance(small, str) and str(big).replace("+00:00", "Z") == small)


# --- durations and criteria -------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, seconds",
    [("0s", 0.0), ("300ms", 0.3), ("30s", 30.0), ("5m", 300.0), ("1h30m", 5400.0), ("1.5s", 1.5), ("1m500ms", 60.5)],
)
def test_parse_duration_returns_seconds(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "1d", "-1s", "1 s", "s"])
def test_parse_duration_rejects_malformed_text(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    "text, metric, op, threshold",
    [
        ("p95 < 300ms", "p95", "<", 300.0),
        ("avg <= 2s", "avg", "<=", 2000.0),
        ("error_rate < 1%", "error_rate", "<", 1.0),
        ("rps >= 100", "rps", ">=", 100.0),
        ("max>1.5s", "max", ">", 1500.0),
    ],
)
def test_parse_criterion_normalises_units(text, metric, op, threshold):
    parsed = parse_criterion(text)
    assert (parsed.metric, parsed.operator, parsed.threshold) == (metric, op, threshold)


def test_criterion_passes_compares_the_observed_value():
    assert parse_criterion("p95 < 300ms").passes(299.0)
    assert not parse_criterion("p95 < 300ms").passes(300.0)
    assert parse_criterion("rps >= 100").passes(100.0)


@pytest.mark.parametrize("text", ["p95 < 300", "p42 < 3ms", "error_rate = 1%", "rps >= 10ms", "latency < 1s"])
def test_parse_criterion_rejects_unknown_metrics_operators_and_units(text):
    with pytest.raises(ValueError):
        parse_criterion(text)


# --- LoadTest ---------------------------------------------------------------------------------

FLOWS = [{"name": "browse", "requests": [{"url": "/products"}]}]


def test_loadtest_defaults_are_a_single_smoke_iteration():
    spec = LoadTestSpec.model_validate({"flows": FLOWS})
    assert spec.shards == 1
    assert (spec.load.model, spec.load.users, spec.load.iterations) == ("closed", 1, 1)
    assert spec.request_timeout == "30s"
    assert spec.flows[0].requests[0].method == "GET"


def test_loadtest_accepts_snake_case_and_camel_case_names():
    camel = LoadTestSpec.model_validate({"baseUrl": "http://x", "flows": FLOWS})
    snake = LoadTestSpec.model_validate({"base_url": "http://x", "flows": FLOWS})
    assert camel == snake
    assert "baseUrl" in camel.to_k8s()


def test_loadtest_rejects_zero_shards():
    error = assert_rejected(LoadTestSpec, {"shards": 0, "flows": FLOWS}, "shards")
    assert error_locations(error) == ["shards"]


def test_loadtest_rejects_more_than_64_shards():
    assert_rejected(LoadTestSpec, {"shards": 65, "flows": FLOWS, "load": {"users": 100, "iterations": 1}}, "shards")


def test_loadtest_rejects_unknown_fields_by_name():
    assert_rejected(LoadTestSpec, {"flows": FLOWS, "bogus": 1}, "bogus", "Extra inputs are not permitted")


def test_open_model_needs_an_arrival_rate():
    assert_rejected(LoadTestSpec, {"load": {"model": "open", "duration": "1m"}, "flows": FLOWS}, "arrivalRate")


def test_open_model_needs_a_duration():
    assert_rejected(LoadTestSpec, {"load": {"model": "open", "arrivalRate": 5}, "flows": FLOWS}, "duration")


def test_open_model_accepts_stages_instead_of_a_rate():
    spec = LoadTestSpec.model_validate(
        {"load": {"model": "open", "duration": "2m", "stages": [{"duration": "1m", "target": 20}]}, "flows": FLOWS}
    )
    assert spec.load.stages[0].target == 20


def test_closed_model_needs_iterations_or_duration():
    assert_rejected(LoadTestSpec, {"load": {"users": 2}, "flows": FLOWS}, "iterations")


def test_closed_model_needs_a_user_per_shard():
    assert_rejected(LoadTestSpec, {"shards": 4, "load": {"users": 2, "iterations": 1}, "flows": FLOWS}, "shards")


@pytest.mark.parametrize("criterion", ["p95 < 300", "p95 == 300ms", "median < 1s"])
def test_loadtest_rejects_malformed_criteria(criterion):
    error = assert_rejected(LoadTestSpec, {"flows": FLOWS, "criteria": [criterion]}, "criteria")
    assert error_locations(error) == ["criteria.0"]


def test_loadtest_rejects_a_malformed_duration():
    assert_rejected(LoadTestSpec, {"flows": FLOWS, "requestTimeout": "30 seconds"}, "requestTimeout")


def test_loadtest_needs_a_flow_with_a_request():
    assert_rejected(LoadTestSpec, {"flows": []}, "flows")
    assert_rejected(LoadTestSpec, {"flows": [{"name": "a", "requests": []}]}, "requests")
    assert_rejected(LoadTestSpec, {"flows": [{"name": "a", "requests": [{"method": "GET"}]}]}, "url")


def test_loadtest_rejects_duplicate_flow_names():
    assert_rejected(LoadTestSpec, {"flows": FLOWS * 2}, "flow names must be unique")


def test_parameter_pool_needs_exactly_one_source():
    both = {"name": "p", "csv": "a\n1\n", "configMapRef": {"name": "cm", "key": "k"}}
    assert_rejected(LoadTestSpec, {"flows": FLOWS, "parameterPools": [both]}, "exactly one of csv or configMapRef")
    assert_rejected(LoadTestSpec, {"flows": FLOWS, "parameterPools": [{"name": "p"}]}, "exactly one")


def test_parameter_pool_flow_must_exist():
    pool = {"name": "p", "csv": "a\n1\n", "flow": "checkout"}
    assert_rejected(LoadTestSpec, {"flows": FLOWS, "parameterPools": [pool]}, "parameterPools")


def test_assertion_rejects_an_unknown_comparison():
    flows = [
        {
            "name": "a",
            "requests": [
                {"url": "/", "assertions": [{"source": "response_status", "comparison": "is_equal", "value": 200}]}
            ],
        }
    ]
    error = assert_rejected(LoadTestSpec, {"flows": flows}, "comparison")
    assert error_locations(error) == ["flows.0.requests.0.assertions.0.comparison"]


# --- Monitor ----------------------------------------------------------------------------------


def request_step(**extra) -> dict:
    return {"stepType": "request", "url": "http://127.0.0.1:8080/", **extra}


@pytest.mark.parametrize("duration", [0, 121])
def test_pause_duration_is_between_1_and_120_seconds(duration):
    error = assert_rejected(MonitorSpec, {"steps": [{"stepType": "pause", "duration": duration}]}, "duration")
    assert error_locations(error) == ["steps.0.pause.duration"]


def test_request_step_needs_a_url():
    assert_rejected(MonitorSpec, {"steps": [{"stepType": "request", "method": "GET"}]}, "url", "Field required")


def test_step_type_must_be_known():
    assert_rejected(MonitorSpec, {"steps": [{"stepType": "webhook"}]}, "webhook", "stepType")


def test_step_rejects_fields_of_other_step_types():
    assert_rejected(MonitorSpec, {"steps": [{"stepType": "pause", "duration": 3, "url": "http://x"}]}, "url")


def test_conditions_do_not_nest():
    inner = {"stepType": "condition", "leftValue": "1", "comparison": "equal", "rightValue": "1"}
    outer = {**inner, "steps": [inner]}
    assert_rejected(MonitorSpec, {"steps": [outer]}, "condition")


def test_condition_runs_embedded_steps():
    spec = MonitorSpec.model_validate(
        {
            "steps": [
                {
                    "stepType": "condition",
                    "leftValue": "{{n}}",
                    "comparison": "is_greater_than",
                    "rightValue": "0",
                    "steps": [request_step(), {"stepType": "pause", "duration": 1}],
                }
            ]
        }
    )
    assert [s.step_type for s in spec.steps[0].steps] == ["request", "pause"]


@pytest.mark.parametrize(
    "assertion, fragment",
    [
        ({"source": "response_json", "comparison": "equal", "value": 1}, "property is required"),
        ({"source": "response_headers", "comparison": "not_empty"}, "property is required"),
        ({"source": "response_text", "comparison": "has_key", "value": "a"}, "need source response_json"),
        ({"source": "response_status", "comparison": "equal_number"}, "value is required"),
        ({"source": "response_body", "comparison": "equal", "value": 1}, "source"),
    ],
)
def test_assertion_rules(assertion, fragment):
    assert_rejected(MonitorSpec, {"steps": [request_step(assertions=[assertion])]}, fragment)


def test_assertion_value_is_int_or_string():
    spec = MonitorSpec.model_validate(
        {
            "steps": [
                request_step(
                    assertions=[
                        {"source": "response_status", "comparison": "equal_number", "value": 200},
                        {"source": "response_json", "property": "ok", "comparison": "equal", "value": "true"},
                    ]
                )
            ]
        }
    )
    assert [a.value for a in spec.steps[0].assertions] == [200, "true"]


def test_variables_need_a_property_for_structured_sources():
    assert_rejected(
        MonitorSpec,
        {"steps": [request_step(variables=[{"name": "v", "source": "response_json"}])]},
        "property is required",
    )


def test_request_headers_are_lists_of_values():
    spec = MonitorSpec.model_validate({"steps": [request_step(headers={"Accept": ["*/*"]})]})
    assert spec.steps[0].headers == {"Accept": ["*/*"]}
    assert_rejected(MonitorSpec, {"steps": [request_step(headers={"Accept": "*/*"})]}, "headers")


@pytest.mark.parametrize(
    "auth, fragment",
    [
        ({"authType": "basic", "password": "p"}, "username"),
        ({"authType": "oauth_1", "consumerKey": "k"}, "consumerSecret"),
        ({"authType": "oauth_2"}, "accessToken or grantType"),
        ({"authType": "oauth_2", "grantType": "client_credentials", "clientId": "c"}, "accessTokenUrl"),
        ({"authType": "oauth_2", "grantType": "implicit", "clientId": "c"}, "authUrl"),
        ({"authType": "basic", "username": "u", "consumerKey": "k"}, "consumerKey"),
        ({"authType": "kerberos"}, "authType"),
    ],
)
def test_auth_required_fields_per_type(auth, fragment):
    assert_rejected(MonitorSpec, {"steps": [request_step(auth=auth)]}, fragment)


def test_auth_types_parse_to_their_own_models():
    spec = MonitorSpec.model_validate(
        {
            "steps": [
                request_step(auth={"authType": "basic", "username": "u", "password": "p"}),
                request_step(auth={"authType": "oauth_2", "accessToken": "t", "tokenLocation": "auth_header"}),
                request_step(auth={"authType": "client_certificate"}),
            ]
        }
    )
    assert [type(s.auth).__name__ for s in spec.steps] == ["BasicAuth", "OAuth2Auth", "ClientCertificateAuth"]


def test_subtest_needs_a_test():
    assert_rejected(MonitorSpec, {"steps": [{"stepType": "subtest"}]}, "testUuid or monitor")
    MonitorSpec.model_validate(
        {"steps": [{"stepType": "subtest", "monitor": "login", "params": [{"name": "a", "value": "1"}]}]}
    )


def test_ghost_inspector_custom_start_url_needs_the_url():
    step = {"stepType": "ghost-inspector", "integrationId": "i", "testId": "t", "isCustomStartUrl": True}
    assert_rejected(MonitorSpec, {"steps": [step]}, "startUrl")


def test_environment_names_are_unique():
    assert_rejected(MonitorSpec, {"environments": [{"name": "a"}, {"name": "a"}]}, "environment names must be unique")


def test_default_environment_must_exist():
    assert_rejected(MonitorSpec, {"environments": [{"name": "a"}], "defaultEnvironment": "b"}, "defaultEnvironment")


def test_environment_defaults_follow_runscope():
    env = MonitorSpec.model_validate({"environments": [{"name": "a"}]}).environments[0]
    assert (env.verify_ssl, env.preserve_cookies, env.retry_on_failure, env.stop_on_failure) == (
        True,
        False,
        False,
        False,
    )


def test_threshold_notifications_need_a_threshold():
    env = {"name": "a", "emails": {"notifyOn": "threshold"}}
    assert_rejected(MonitorSpec, {"environments": [env]}, "notifyThreshold")
    env["emails"]["notifyThreshold"] = 11
    assert_rejected(MonitorSpec, {"environments": [env]}, "notifyThreshold", "less than or equal to 10")


def test_environment_lookup_falls_back_to_the_default():
    spec = MonitorSpec.model_validate({"environments": [{"name": "a"}, {"name": "b"}], "defaultEnvironment": "b"})
    assert spec.environment().name == "b"
    assert spec.environment("a").name == "a"
    assert spec.environment("c") is None


# --- TestSuite --------------------------------------------------------------------------------


def test_testsuite_flows_default_to_ci_enabled_and_stop_on_failure():
    spec = TestSuiteSpec.model_validate({"flows": [{"name": "a", "requests": [{"url": "/"}]}]})
    flow = spec.flows[0]
    assert (flow.ci_enabled, flow.stop_on_failure, spec.conf.use_cookies) == (True, True, True)


def test_testsuite_ci_flows_honour_the_ci_toggle():
    spec = TestSuiteSpec.model_validate(
        {
            "flows": [
                {"name": "a", "requests": [{"url": "/"}]},
                {"name": "b", "ciEnabled": False, "requests": [{"url": "/"}]},
            ]
        }
    )
    assert [f.name for f in spec.ci_flows()] == ["a"]
    assert [f.name for f in spec.ci_flows(force_all=True)] == ["a", "b"]


def test_testsuite_run_labels_and_pool_select_flows_and_pools():
    spec = TestSuiteSpec.model_validate(
        {
            "labels": ["team"],
            "flows": [
                {"name": "a", "labels": ["smoke"], "requests": [{"url": "/"}]},
                {
                    "name": "b",
                    "labels": ["nightly"],
                    "parameterPool": {"name": "users", "csv": "u\nann\n"},
                    "requests": [{"url": "/"}],
                },
            ],
        }
    )
    assert [f.name for f in spec.ci_flows(labels=["smoke"])] == ["a"]
    assert [f.name for f in spec.ci_flows(labels=["team"])] == ["a", "b"]
    assert spec.ci_flows(labels=["nope"]) == []
    b = spec.flows[1]
    assert b.pool_for_run() is b.pool_for_run("users") is b.parameter_pool
    assert b.pool_for_run("other") is None and spec.flows[0].pool_for_run("users") is None


def test_testsuite_needs_flows():
    assert_rejected(TestSuiteSpec, {"flows": []}, "flows")


def test_testsuite_parameter_pool_needs_one_source():
    flow = {"name": "a", "parameterPool": {"name": "p"}, "requests": [{"url": "/"}]}
    assert_rejected(TestSuiteSpec, {"flows": [flow]}, "exactly one of csv or configMapRef")


# --- Schedule ---------------------------------------------------------------------------------

TARGET = {"kind": "Monitor", "name": "accounts-api"}


@pytest.mark.parametrize(
    "interval, cron",
    [
        ("1m", "* * * * *"),
        ("5m", "*/5 * * * *"),
        ("1h", "0 * * * *"),
        ("6h", "0 */6 * * *"),
        ("1d", "0 0 * * *"),
        ("*/10 8-18 * * MON-FRI", "*/10 8-18 * * MON-FRI"),
        ("0 0 1,15 * ?", "0 0 1,15 * ?"),
        ("@hourly", "@hourly"),
    ],
)
def test_schedule_interval_maps_to_a_cron_schedule(interval, cron):
    assert ScheduleSpec.model_validate({"target": TARGET, "interval": interval}).cron_schedule() == cron


@pytest.mark.parametrize(
    "interval",
    [
        "2m",
        "10m",
        "1w",
        "* * * *",
        "99 * * * *",
        "* 24 * * *",
        "* * 32 * *",
        "* * * 13 *",
        "* * * * 8",
        "* * * * * *",
        "every 5 minutes",
        "* * * * *\n",
    ],
)
def test_schedule_rejects_other_intervals(interval):
    assert_rejected(ScheduleSpec, {"target": TARGET, "interval": interval}, "interval")


def test_schedule_environment_only_for_monitors():
    assert_rejected(
        ScheduleSpec,
        {"target": {"kind": "TestSuite", "name": "s"}, "interval": "1h", "environment": "prod"},
        "environment",
    )


def test_schedule_target_kind_is_monitor_or_testsuite():
    assert_rejected(ScheduleSpec, {"target": {"kind": "LoadTest", "name": "x"}, "interval": "1h"}, "target.kind")


# --- ClientCredential -------------------------------------------------------------------------

CREDENTIAL = {"displayName": "CI", "scopes": ["LOADTEST_LIST"], "grantTypes": ["client_credentials"]}


def test_client_credential_defaults_to_project_level_v1():
    spec = ClientCredentialSpec.model_validate(CREDENTIAL)
    assert (spec.level, spec.api_version, spec.expires_at) == ("project", "v1", None)


def test_org_credential_needs_the_organization():
    assert_rejected(ClientCredentialSpec, {**CREDENTIAL, "level": "org"}, "organization")


def test_authorization_code_needs_redirect_uris():
    assert_rejected(ClientCredentialSpec, {**CREDENTIAL, "grantTypes": ["authorization_code"]}, "redirectUris")


@pytest.mark.parametrize(
    "change, fragment",
    [
        ({"scopes": []}, "scopes"),
        ({"scopes": ["LOADTEST_DELETE"]}, "scopes"),
        ({"scopes": ["vng", "vng"]}, "duplicate"),
        ({"grantTypes": ["password"]}, "grantTypes"),
        ({"displayName": ""}, "displayName"),
        ({"expiresAt": "next week"}, "expiresAt"),
        ({"clientSecret": "s3cret"}, "clientSecret"),
    ],
)
def test_client_credential_rejects(change, fragment):
    assert_rejected(ClientCredentialSpec, {**CREDENTIAL, **change}, fragment)


def test_client_credential_accepts_every_documented_scope():
    scopes = [
        "LOADTEST_LIST",
        "LOADTEST_STATUS",
        "LOADTEST_DETAILS",
        "LOADTEST_COPY_RUN",
        "LOADTEST_REPORT_DOWNLOAD",
        "LOADTEST_RESULT_DOWNLOAD",
        "api:read",
        "bucket:auth_token",
        "bucket:write",
        "message:write",
        "account:email",
        "team:read",
        "test:read",
        "test:write",
        "loadmill",
        "vng",
    ]
    assert ClientCredentialSpec.model_validate({**CREDENTIAL, "scopes": scopes}).scopes == scopes


def test_no_credential_schema_holds_a_plaintext_secret():
    crd = build_crd(KINDS_BY_NAME["ClientCredential"])
    names = {
        name.lower()
        for _, node in walk(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
        for name in node.get("properties", {})
    }
    assert not {n for n in names if "secret" in n} - {"secretref", "secrethash"}


# --- generated CRDs ---------------------------------------------------------------------------


def test_committed_crd_yaml_matches_the_models():
    gen = _load_gen_crds()
    assert gen.drift() == "", "crds/*.yaml are stale: run `python hack/gen_crds.py`"


def test_crd_generation_is_deterministic():
    gen = _load_gen_crds()
    assert [gen.render(k) for k in KINDS] == [gen.render(k) for k in KINDS]


def walk(node: Any, path: str = "") -> Iterator[tuple[str, dict]]:
    """Every schema node under `node`, with its path."""
    if not isinstance(node, dict):
        return
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


def crd_schemas():
    return [pytest.param(k, build_crd(k)["spec"]["versions"][0]["schema"]["openAPIV3Schema"], id=k.kind) for k in KINDS]


@pytest.mark.parametrize("kind, schema", crd_schemas())
def test_crd_schema_is_structural(kind, schema):
    forbidden = {"$ref", "$defs", "anyOf", "oneOf", "allOf", "not", "title", "discriminator", "const"}
    for path, node in walk(schema):
        assert not forbidden & node.keys(), f"{kind.kind}{path}: {forbidden & node.keys()}"
        assert "type" in node or node.get("x-kubernetes-int-or-string"), f"{kind.kind}{path} has no type"
        assert not ("properties" in node and "additionalProperties" in node), f"{kind.kind}{path}"
        assert node.get("additionalProperties") is not False, f"{kind.kind}{path}"
        assert "nullable" not in node


@pytest.mark.parametrize("kind, schema", crd_schemas())
def test_crd_schema_is_fully_typed(kind, schema):
    free_form = [path for path, node in walk(schema) if node.get("x-kubernetes-preserve-unknown-fields")]
    assert free_form == []


@pytest.mark.parametrize("kind, schema", crd_schemas())
def test_cel_rules_name_fields_that_exist(kind, schema):
    """A typo in a CEL rule would only show at apply time; catch it here."""
    for path, node in walk(schema):
        props = node.get("properties", {})
        for rule in node.get("x-kubernetes-validations", []):
            for name in re.findall(r"\bself\.([A-Za-z]\w*)", rule["rule"]):
                assert name in props, f"{kind.kind}{path}: rule {rule['rule']!r} uses unknown {name}"
            if "fieldPath" in rule:
                assert rule["fieldPath"].lstrip(".") in props, f"{kind.kind}{path}: fieldPath {rule['fieldPath']}"


@pytest.mark.parametrize("kind, schema", crd_schemas())
def test_lists_around_cel_rules_are_bounded(kind, schema):
    """The API server multiplies a rule's cost by how often it can run; unbounded lists make
    that estimate exceed the budget."""
    for path, node in walk(schema):
        if node.get("type") == "array" and any(n.get("x-kubernetes-validations") for _, n in walk(node["items"])):
            assert "maxItems" in node, f"{kind.kind}{path} has CEL rules inside but no maxItems"


def test_union_variant_defaults_do_not_leak_into_other_variants():
    schema = build_crd(KINDS_BY_NAME["Monitor"])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    step = schema["properties"]["spec"]["properties"]["steps"]["items"]
    assert "default" not in step["properties"]["method"]  # GET belongs to request steps only
    assert step["properties"]["skipped"]["default"] is False  # every step type has it
    assert step["properties"]["stepType"]["enum"] == ["request", "pause", "condition", "subtest", "ghost-inspector"]


def test_status_schemas_carry_no_defaults():
    for kind in KINDS:
        status = build_crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
        assert not [path for path, node in walk(status) if "default" in node], kind.kind


def test_client_credential_spec_is_immutable():
    spec = build_crd(KINDS_BY_NAME["ClientCredential"])["spec"]["versions"][0]["schema"]["openAPIV3Schema"][
        "properties"
    ]["spec"]
    assert {"rule": "self == oldSelf", "message": "ClientCredential spec is immutable; delete and recreate it"} in spec[
        "x-kubernetes-validations"
    ]


def test_schema_defaults_satisfy_the_models():
    """A default the API server fills in must itself be valid, or every object would fail."""
    spec = build_crd(KINDS_BY_NAME["LoadTest"])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"][
        "spec"
    ]
    LoadTestSpec.model_validate({"flows": FLOWS, "load": spec["properties"]["load"]["default"]})


def test_every_rule_without_a_python_check_is_a_transition_rule():
    rules: list[Rule] = []
    for kind in KINDS:
        for module_obj in vars(sys.modules[kind.resource.__module__]).values():
            rules.extend(getattr(module_obj, "validation_rules", ()) if isinstance(module_obj, type) else ())
    unchecked = [r for r in rules if r.check is None]
    assert unchecked and all("oldSelf" in r.cel for r in unchecked)


def test_registry_names_every_kind_once():
    assert [k.kind for k in KINDS] == ["LoadTest", "TestSuite", "Monitor", "Schedule", "ClientCredential"]
    assert all(k.scope == "Namespaced" and k.categories == ("assay",) for k in KINDS)
    crd = build_crd(KINDS_BY_NAME["LoadTest"])
    assert crd["spec"]["names"]["shortNames"] == ["lt", "loadtest"]
    columns = [c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert columns == ["Phase", "Result", "Shards", "Requests", "Age"]
