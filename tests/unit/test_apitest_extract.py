"""Extraction from real responses: every source, JSON paths, XPath, and the errors."""

import pytest

from assay.runner.apitest.extract import ExtractionError, as_text, extract, json_path, parse_json_path
from assay.runner.apitest.http import Exchange
from tests.support.http_targets import JSON_DOCUMENT, PNG_BYTES


def test_status_time_and_size(fetch):
    exchange = fetch("/status/404")
    assert extract("response_status", None, exchange) == 404
    assert extract("response_size", None, exchange) == len(b'{"status": 404}')
    elapsed = extract("response_time", None, exchange)
    assert isinstance(elapsed, float) and 0 <= elapsed == round(exchange.response_time_ms, 1)


def test_headers_by_any_case_and_repeated_ones_joined(fetch):
    exchange = fetch("/headers/multi")
    assert extract("response_headers", "x-request-id", exchange) == "req-123"
    assert extract("response_headers", "X-REQUEST-ID", exchange) == "req-123"
    assert extract("response_headers", "X-Multi", exchange) == "a, b"
    assert extract("response_headers", "X-Absent", exchange) is None


@pytest.mark.parametrize(
    "path,expected",
    [
        ("data.items[0].id", 1),
        ("data.items[1].name", "second"),
        ("data.items.1.name", "second"),
        ("data.items[-1].id", 2),
        ("$.data.count", 2),
        ("data.active", True),
        ("data.nothing", None),
        ('data.meta["a.b"]', "dotted"),
        ("data.meta['numeric_text']", "42"),
        ("status", "ok"),
        ("", JSON_DOCUMENT),
    ],
)
def test_json_paths(fetch, path, expected):
    assert extract("response_json", path, fetch("/json")) == expected


def test_json_paths_into_a_top_level_array(fetch):
    exchange = fetch("/json/array")
    assert extract("response_json", "[0].name", exchange) == "zero"
    assert extract("response_json", "[1]", exchange) == {"name": "one"}


@pytest.mark.parametrize(
    "path,message",
    [
        ("data.missing", "no key 'missing' at data"),
        ("data.items[7].id", "index 7 is out of range at data.items (2 items)"),
        ("data.items.name", "data.items is an array, not an object with key 'name'"),
        ("data.count.value", "data.count is int, it has no 'value'"),
        ("data.nothing.x", "data.nothing is null"),
        ("data..count", "cannot read"),
        ("data[", "cannot read"),
    ],
)
def test_json_path_errors_say_where(fetch, path, message):
    with pytest.raises(ExtractionError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        extract("response_json", path, fetch("/json"))


def test_a_body_that_is_not_json_is_an_extraction_error(fetch):
    with pytest.raises(ExtractionError, match="response body is not JSON"):
        extract("response_json", "a", fetch("/text"))


@pytest.mark.parametrize(
    "xpath,expected",
    [
        ("/catalog/book[1]/title", "Dune"),
        ("//book[@id='b2']/title/text()", "Emma"),
        ("/catalog/book[2]/@id", "b2"),
        ("/catalog/@count", "2"),
        ("count(//book)", 2),
        ("sum(//price)", 14.99),
        ("boolean(//book)", True),
        ("/catalog/empty", ""),
    ],
)
def test_xpath(fetch, xpath, expected):
    assert extract("response_xml", xpath, fetch("/xml")) == expected


def test_xpath_errors(fetch):
    with pytest.raises(ExtractionError, match="matched nothing"):
        extract("response_xml", "//magazine", fetch("/xml"))
    with pytest.raises(ExtractionError, match="invalid XPath"):
        extract("response_xml", "//book[", fetch("/xml"))
    with pytest.raises(ExtractionError, match="not XML"):
        extract("response_xml", "/a", fetch("/json"))


def test_text_uses_the_declared_charset(fetch):
    assert extract("response_text", None, fetch("/text")) == "hello plain world"
    assert extract("response_text", None, fetch("/empty")) == ""
    binary = fetch("/binary")
    assert binary.body == PNG_BYTES and "\ufffd" in extract("response_text", None, binary)


def test_no_response_and_unknown_sources():
    refused = Exchange("GET", "http://127.0.0.1:9", error="connection refused")
    with pytest.raises(ExtractionError, match="no response: connection refused"):
        extract("response_status", None, refused)
    with pytest.raises(ExtractionError, match="unknown source"):
        extract("response_body", None, Exchange("GET", "http://x", status=200))


def test_values_as_text():
    assert [as_text(v) for v in (None, "x", True, False, 3, 2.5, 439.0, [1, "a"], {"k": None})] == [
        None,
        "x",
        "true",
        "false",
        "3",
        "2.5",
        "439.0",
        '[1,"a"]',
        '{"k":null}',
    ]


def test_parsed_paths_are_reused():
    assert parse_json_path("a.b[0]") == ("a", "b", 0)
    assert parse_json_path("a.b[0]") is parse_json_path("a.b[0]")
    assert json_path({"a": [{"b": 1}]}, "a[0].b") == 1
