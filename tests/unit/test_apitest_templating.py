"""`{{name}}` templates: variables, every helper, and the errors that name the field."""

import base64
import hashlib
import hmac
import re
import time
import uuid

import pytest

from assay.runner.templating import HELPERS, TemplateError, check_template, render


def test_variables_are_replaced_and_unknown_ones_render_empty():
    assert render("{{base}}/users/{{ id }}?q={{missing}}", {"base": "http://h", "id": "7"}) == "http://h/users/7?q="


def test_text_without_templates_is_returned_as_is():
    text = '{"a": {"b": 1}}'
    assert render(text, {}) is text


def test_variable_names_may_hold_spaces_and_dashes():
    assert render("{{one more}}-{{x-y}}", {"one more": "values", "x-y": "z"}) == "values-z"


def test_json_bodies_with_braces_around_templates_render():
    assert render('{"user": {"id": "{{id}}"}}', {"id": "42"}) == '{"user": {"id": "42"}}'


def test_a_variable_named_like_a_helper_wins_over_the_helper():
    assert render("{{timestamp}}", {"timestamp": "mine"}) == "mine"


def test_time_helpers():
    before = int(time.time())
    assert before <= int(render("{{timestamp}}", {})) <= before + 2
    assert abs(int(render("{{timestamp_ms}}", {})) - before * 1000) < 3000
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", render("{{utc_datetime}}", {}))


def test_format_timestamp_uses_moment_style_tokens_in_utc():
    assert render("{{format_timestamp(1700000000, 'YYYY-MM-DD HH:mm:ss')}}", {}) == "2023-11-14 22:13:20"
    assert render("{{format_timestamp(ts, 'DD/MM/YY [at] hh A')}}", {"ts": "1700000000"}) == "14/11/23 at 10 PM"
    assert render("{{format_timestamp(1700000000.123, 'X x SSS Z')}}", {}) == "1700000000 1700000000123 123 +00:00"


def test_random_helpers_stay_in_their_bounds():
    assert 0 <= int(render("{{random_int}}", {})) < 2**64
    values = {int(render("{{random_int(3, 5)}}", {})) for _ in range(60)}
    assert values <= {3, 4, 5} and len(values) > 1
    assert int(render("{{random_int(low, high)}}", {"low": "9", "high": "9"})) == 9
    assert re.fullmatch(r"[A-Za-z0-9]{8}", render("{{random_string(8)}}", {}))
    assert len(render("{{random_string}}", {})) == 16
    assert uuid.UUID(render("{{uuid}}", {})).version == 4


def test_encoding_and_hash_helpers():
    v = {"user": "ada", "password": "p@ss word", "secret": "k"}
    assert render("{{encode_base64({{user}}:{{password}})}}", v) == base64.b64encode(b"ada:p@ss word").decode()
    assert render("{{decode_base64('YWRhOnB3')}}", v) == "ada:pw"
    assert render("{{encode_url(password)}}", v) == "p%40ss%20word"
    assert render("{{decode_url('a%2Fb')}}", v) == "a/b"
    assert render("{{md5('abc')}}", v) == hashlib.md5(b"abc").hexdigest()
    assert render("{{sha1(user)}}", v) == hashlib.sha1(b"ada").hexdigest()
    assert render('{{sha256("a, b")}}', v) == hashlib.sha256(b"a, b").hexdigest()
    assert render("{{hmac_sha256(secret, '{{user}}')}}", v) == hmac.new(b"k", b"{{user}}", hashlib.sha256).hexdigest()
    assert render("{{hmac_sha256(secret, {{user}}-1)}}", v) == hmac.new(b"k", b"ada-1", hashlib.sha256).hexdigest()


def test_every_helper_is_documented():
    assert set(HELPERS) >= {
        "timestamp",
        "utc_datetime",
        "random_int",
        "random_string",
        "uuid",
        "encode_base64",
        "decode_base64",
        "encode_url",
        "md5",
        "sha1",
        "sha256",
        "hmac_sha256",
        "format_timestamp",
    }
    assert all(isinstance(doc, str) and doc for doc in HELPERS.values())


@pytest.mark.parametrize(
    "text,message",
    [
        ("{{base}/x", "unclosed '{{'"),
        ("a {{ }} b", "empty '{{}}'"),
        ("{{shout('x')}}", "unknown helper 'shout'"),
        ("{{md5('a', 'b')}}", "md5() takes 1 argument(s), got 2"),
        ("{{hmac_sha256('k')}}", "hmac_sha256() takes 2 argument(s), got 1"),
        ("{{random_int(1, x y)}}", "argument 2 (x y) must be a quoted literal"),
        ("{{random_int(1, 'two')}}", "random_int(): argument 2 must be an integer"),
        ("{{format_timestamp(1, YYYY-MM)}}", "must be a quoted literal"),
        ("{{md5('abc)}}", "unterminated ' quote"),
        ("{{md5('a'}}", "missing ')'"),
        ("{{md5(,)}}", "argument 1 is empty"),
    ],
)
def test_invalid_templates_raise_naming_the_field(text, message):
    with pytest.raises(TemplateError) as caught:
        check_template(text, "spec.steps[2].url")
    assert str(caught.value).startswith("spec.steps[2].url: ") and message in str(caught.value)
    assert caught.value.field == "spec.steps[2].url"
    with pytest.raises(TemplateError):
        render(text, {}, field="spec.steps[2].url")


def test_bad_values_at_render_time_are_template_errors_too():
    with pytest.raises(TemplateError, match="body: random_int\\(\\): argument 1 must be an integer, got 'x'"):
        render("{{random_int(low, 5)}}", {"low": "x"}, field="body")
    with pytest.raises(TemplateError, match="not base64"):
        render("{{decode_base64(v)}}", {"v": "***"})
    with pytest.raises(TemplateError, match="lower bound 5 is greater"):
        render("{{random_int(5, 1)}}", {})


def test_check_template_accepts_valid_text():
    for text in ("plain", "{{a}}", "{{md5({{a}}:{{b}})}}", "{{format_timestamp({{timestamp}}, 'YYYY')}}", "}} {"):
        check_template(text, "f")
