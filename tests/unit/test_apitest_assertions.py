"""Every assertion source with every comparison it allows, passing and failing, on real responses.

Targets are derived from the value the source actually yields for that response (the response
time of one recorded exchange is fixed), so each case is exact. Three pairs cannot exist and
are left out on purpose: a status, a response time or a size is never empty and always a
number, so `empty` cannot pass, `not_empty` cannot fail and `is_a_number` cannot fail for them.
"""

import pytest

from assay.crds import Assertion
from assay.crds.common import JSON_ONLY_COMPARISONS
from assay.runner.apitest.assertions import compare, condition_holds, evaluate
from assay.runner.apitest.extract import as_text, extract
from assay.runner.apitest.http import Exchange

# source -> (path, property) for: a text value, a number, an empty value, a non-number
CASES = {
    "response_status": {"text": ("/json", None), "number": ("/json", None)},
    "response_headers": {
        "text": ("/json", "content-type"),
        "number": ("/json", "Content-Length"),
        "empty": ("/empty", "X-Empty"),
        "not_number": ("/json", "Content-Type"),
    },
    "response_json": {
        "text": ("/json", "data.items[0].name"),
        "number": ("/json", "data.count"),
        "empty": ("/json", "data.empty_text"),
        "not_number": ("/json", "data.address"),
    },
    "response_xml": {
        "text": ("/xml", "/catalog/book[1]/title"),
        "number": ("/xml", "//book[@id='b1']/price"),
        "empty": ("/xml", "/catalog/empty"),
        "not_number": ("/xml", "/catalog/book[2]/title"),
    },
    "response_text": {
        "text": ("/text", None),
        "number": ("/text?body=42.5", None),
        "empty": ("/empty", None),
        "not_number": ("/text", None),
    },
    "response_time": {"text": ("/json", None), "number": ("/json", None)},
    "response_size": {"text": ("/json", None), "number": ("/json", None)},
}
GENERAL = [
    "equal",
    "not_equal",
    "contains",
    "does_not_contain",
    "empty",
    "not_empty",
    "is_a_number",
    "equal_number",
    "is_less_than",
    "is_less_than_or_equal",
    "is_greater_than",
    "is_greater_than_or_equal",
]
IMPOSSIBLE = {
    (s, c, o)
    for s in ("response_status", "response_time", "response_size")
    for c, o in (("empty", "pass"), ("not_empty", "fail"), ("is_a_number", "fail"))
}


def _params():
    for source in CASES:
        comparisons = GENERAL + (list(JSON_ONLY_COMPARISONS) if source == "response_json" else [])
        for comparison in comparisons:
            for outcome in ("pass", "fail"):
                if (source, comparison, outcome) not in IMPOSSIBLE:
                    yield pytest.param(source, comparison, outcome, id=f"{source}-{comparison}-{outcome}")


def _case(source, comparison, outcome):
    """(path, property, target) whose assertion has the wanted outcome."""
    kinds = CASES[source]
    json_cases = {
        ("has_key", "pass"): ("/json", "data", "items"),
        ("has_key", "fail"): ("/json", "data", "missing"),
        ("has_value", "pass"): ("/json", "data.tags", "green"),
        ("has_value", "fail"): ("/json", "data.tags", "blue"),
        ("is_null", "pass"): ("/json", "data.nothing", None),
        ("is_null", "fail"): ("/json", "data.count", None),
    }
    if (comparison, outcome) in json_cases:
        return json_cases[(comparison, outcome)]
    if comparison in ("empty", "not_empty"):
        holds = comparison == "empty"
        path, prop = kinds["empty"] if (outcome == "pass") == holds else kinds["text"]
        return path, prop, None
    if comparison == "is_a_number":
        path, prop = kinds["number"] if outcome == "pass" else kinds["not_number"]
        return path, prop, None
    kind = "number" if comparison in ("equal_number",) or comparison.startswith("is_") else "text"
    return (*kinds[kind], kind)  # the target is derived from the actual value in the test


def _target(comparison, outcome, actual):
    text = as_text(actual)
    if comparison in ("equal", "not_equal", "contains", "does_not_contain"):
        matching = {
            "equal": text,
            "not_equal": "something else",
            "contains": text[1:3] or text,
            "does_not_contain": "zzz-not-there",
        }
        failing = {
            "equal": "something else",
            "not_equal": text,
            "contains": "zzz-not-there",
            "does_not_contain": text[1:3] or text,
        }
        return (matching if outcome == "pass" else failing)[comparison]
    number = float(text)
    offsets = {  # target = actual + offset, for a pass and for a fail
        "equal_number": (0, 1),
        "is_less_than": (1, 0),
        "is_less_than_or_equal": (0, -1),
        "is_greater_than": (-1, 0),
        "is_greater_than_or_equal": (0, 1),
    }
    value = number + offsets[comparison][0 if outcome == "pass" else 1]
    return int(value) if value.is_integer() else str(value)


@pytest.mark.parametrize("source,comparison,outcome", list(_params()))
def test_every_comparison_passes_and_fails_for_every_source(fetch, source, comparison, outcome):
    path, prop, target = _case(source, comparison, outcome)
    exchange = fetch(path)
    if target in ("text", "number"):
        target = _target(comparison, outcome, extract(source, prop, exchange))
    assertion = Assertion(source=source, property=prop, comparison=comparison, value=target)
    result = evaluate(assertion, exchange, {})
    assert result.result == outcome, result
    assert (result.error is None) == (outcome == "pass")
    if outcome == "fail":
        assert result.error  # a description of the failure, as the result document wants


def test_the_cases_cover_every_pair_but_the_impossible_ones():
    covered = {(s, c) for s, c, _ in (p.values for p in _params())}
    expected = {(s, c) for s in CASES for c in GENERAL} | {("response_json", c) for c in JSON_ONLY_COMPARISONS}
    assert covered == expected
    assert len(list(_params())) == 2 * len(expected) - len(IMPOSSIBLE)


def test_results_use_the_result_document_vocabulary(fetch):
    exchange = fetch("/json")
    status = evaluate(Assertion(source="response_status", comparison="equal_number", value=200), exchange, {})
    assert status.to_runscope() == {
        "result": "pass",
        "source": "status_code",
        "property": None,
        "comparison": "equals_number",
        "target_value": 200,
        "actual_value": "200",
        "error": None,
    }
    text = evaluate(
        Assertion(source="response_json", property="data.price", comparison="is_less_than", value="10"), exchange, {}
    )
    assert (text.source, text.comparison, text.target_value, text.actual_value) == ("json", "less_than", "10", "9.5")
    timing = evaluate(Assertion(source="response_time", comparison="is_less_than", value=60000), exchange, {})
    assert timing.source == "response_time_ms" and float(timing.actual_value) >= 0


def test_targets_are_templated_with_the_variables(fetch):
    exchange = fetch("/json")
    a = Assertion(source="response_json", property="data.items[1].name", comparison="equal", value="{{expected}}")
    result = evaluate(a, exchange, {"expected": "second"})
    assert result.passed and result.target_value == "second"
    assert not evaluate(a, exchange, {}).passed  # unknown variable renders as ""


def test_a_broken_target_template_fails_the_assertion_with_the_field(fetch):
    a = Assertion(source="response_status", comparison="equal", value="{{nope(}}")
    result = evaluate(a, fetch("/json"), {}, field="spec.steps[0].assertions[1]")
    assert result.result == "fail" and "spec.steps[0].assertions[1].value" in result.error


def test_json_values_compare_as_their_json_text(fetch):
    exchange = fetch("/json")
    assert evaluate(
        Assertion(source="response_json", property="data.active", comparison="equal", value="true"), exchange, {}
    ).passed
    whole = evaluate(
        Assertion(
            source="response_json", property="data.items[0]", comparison="equal", value='{"id":1,"name":"first"}'
        ),
        exchange,
        {},
    )
    assert whole.passed and whole.actual_value == '{"id":1,"name":"first"}'
    assert evaluate(
        Assertion(source="response_json", property="data.tags", comparison="has_value", value=7), exchange, {}
    ).passed


def test_json_comparisons_on_the_wrong_kind_of_value_say_what_they_got(fetch):
    exchange = fetch("/json")
    keyed = evaluate(
        Assertion(source="response_json", property="data.tags", comparison="has_key", value="x"), exchange, {}
    )
    assert not keyed.passed and "expected a JSON object, got an array" in keyed.error
    valued = evaluate(
        Assertion(source="response_json", property="data", comparison="has_value", value="x"), exchange, {}
    )
    assert not valued.passed and "expected a JSON array" in valued.error


def test_a_missing_path_or_header_fails_with_the_reason(fetch):
    exchange = fetch("/json")
    missing = evaluate(
        Assertion(source="response_json", property="data.items[5].id", comparison="not_empty"), exchange, {}
    )
    assert not missing.passed and "out of range" in missing.error and missing.actual_value is None
    no_header = evaluate(Assertion(source="response_headers", property="X-Nope", comparison="empty"), exchange, {})
    assert no_header.passed and no_header.actual_value is None  # an absent header is empty


def test_numbers_that_are_not_numbers_fail_with_a_message(fetch):
    exchange = fetch("/json")
    result = evaluate(
        Assertion(source="response_json", property="status", comparison="is_greater_than", value=1), exchange, {}
    )
    assert not result.passed and "'ok' is not a number" in result.error
    target = evaluate(Assertion(source="response_status", comparison="is_less_than", value="abc"), exchange, {})
    assert not target.passed and "target value 'abc' is not a number" in target.error


def test_a_request_that_got_no_response_fails_every_assertion():
    exchange = Exchange("GET", "http://127.0.0.1:9/", error="connection refused")
    result = evaluate(Assertion(source="response_status", comparison="equal_number", value=200), exchange, {})
    assert not result.passed and result.error == "no response: connection refused"


@pytest.mark.parametrize(
    "left,comparison,right,holds",
    [
        ("12345", "equal", "12345", True),
        ("1", "equal", "2", False),
        ("10", "is_greater_than", "9", True),
        ("abc", "is_greater_than", "9", False),
        ("", "empty", "", True),
        ("x", "empty", "", False),
        ('{"a": 1}', "has_key", "a", True),
        ('{"a": 1}', "has_key", "b", False),
        ("[1, 2]", "has_value", "2", True),
        ("not json", "has_value", "2", False),
        ("null", "is_null", "", True),
        ("3", "is_null", "", False),
    ],
)
def test_condition_operands_use_the_assertion_comparisons(left, comparison, right, holds):
    assert (condition_holds(left, comparison, right) is None) == holds


def test_compare_reports_an_unknown_comparison():
    assert compare("sounds_like", "a", "b") == "unknown comparison 'sounds_like'"
