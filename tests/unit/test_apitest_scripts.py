"""Runscope-style scripts in QuickJS: what scripts see, Chai-style assertions and their
messages, pre-request changes, limits (also against what the engine cannot interrupt),
isolation, libraries and hostile input. The per-script cost: hack/bench/script_overhead.py.
"""

import base64
import hashlib
import hmac
import json
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from assay.runner.apitest import script_engine
from assay.runner.apitest.scripts import ScriptOutcome, ScriptRunner
from assay.runner.apitest.workers import WorkerPool

RUNNER = ScriptRunner()


def run(source, variables=None, **kwargs) -> ScriptOutcome:
    return RUNNER.run(source, variables=variables or {}, **kwargs)


def request(**changes):
    base = {
        "method": "POST",
        "url": "https://api.example.com/v1/items?page=2&tag=a&tag=b",
        "headers": {"Accept": ["*/*"], "Content-Type": ["application/json"]},
        "body": '{"name": "widget"}',
    }
    return {**base, **changes}


def response(**changes):
    base = {
        "method": "POST",
        "url": "https://api.example.com/v1/items",
        "status": 201,
        "headers": {"Content-Type": ["application/json"], "X-Request-Id": ["r-1"]},
        "body": '{"id": 7, "tags": ["a", "b"]}',
        "response_time_ms": 41.5,
        "size_bytes": 30,
    }
    return {**base, **changes}


# --- log and variables ----------------------------------------------------------------------


def test_log_writes_one_line_per_call_with_objects_as_json():
    outcome = run("""
        log("plain text");
        log({a: 1, b: [1, "x"]});
        log("status", 200, true, null, undefined);
        console.log([1, 2]);
        log();
        var loop = {}; loop.self = loop; log(loop);
        log(new Error("bad"));
    """)
    assert outcome.passed, outcome.error
    assert outcome.logs == [
        "plain text",
        '{"a":1,"b":[1,"x"]}',
        "status 200 true null undefined",
        "[1,2]",
        "",
        "{ self: [Circular] }",
        "Error: bad",
    ]


def test_variables_get_set_round_trip_across_scripts():
    first = run(
        """
        log(variables.get("token"), typeof variables.get("missing"));
        variables.set("count", 3);
        variables.set("token", variables.get("token") + "-2");
    """,
        variables={"token": "abc"},
    )
    assert first.passed, first.error
    assert first.logs == ["abc undefined"]
    assert first.variables == {"token": "abc-2", "count": "3"}

    second = run('variables.set("sum", Number(variables.get("count")) + 1);', variables=first.variables)
    assert second.variables == {"token": "abc-2", "count": "3", "sum": "4"}


def test_variables_are_stored_as_strings():
    outcome = run("""
        variables.set("n", 1.5); variables.set("b", false); variables.set("o", {a: 1});
        variables.set("nothing", undefined); variables.set(42, "numeric name");
    """)
    assert outcome.variables == {
        "n": "1.5",
        "b": "false",
        "o": "[object Object]",
        "nothing": "undefined",
        "42": "numeric name",
    }


def test_a_failing_script_keeps_what_it_logged_and_set_before_failing():
    outcome = run('log("before"); variables.set("seen", "yes"); assert.equal(1, 2); log("after");')
    assert not outcome.passed
    assert outcome.logs == ["before"]
    assert outcome.variables == {"seen": "yes"}
    assert outcome.duration_ms > 0


def test_base64_helpers_use_utf8():
    outcome = run("""
        log(encode_base64("user:pässwörd"));
        log(decode_base64(encode_base64("héllo ✓ 😀")));
        log(decode_base64("aGk"));
    """)
    assert outcome.passed, outcome.error
    assert outcome.logs == ["dXNlcjpww6Rzc3fDtnJk", "héllo ✓ 😀", "hi"]
    bad = run('decode_base64("not base64!")')
    assert not bad.passed and "decode_base64: not base64" in bad.error


# --- assert ---------------------------------------------------------------------------------

ASSERT_CASES = [
    # (passing call, failing call, message of the failure)
    ("assert(1 === 1, 'same')", "assert(1 === 2, 'numbers differ')", "numbers differ"),
    ("assert(true)", "assert(false)", "Unspecified AssertionError"),
    ("assert.ok('x')", "assert.ok(0)", "expected 0 to be truthy"),
    ("assert.isOk(1)", "assert.isOk('')", "expected '' to be truthy"),
    ("assert.notOk(0)", "assert.notOk('x')", "expected 'x' to be falsy"),
    ("assert.equal(3, '3')", "assert.equal(201, 200)", "expected 201 to equal 200"),
    ("assert.notEqual(3, 4)", "assert.notEqual(3, '3')", "expected 3 to not equal '3'"),
    ("assert.strictEqual(3, 3)", "assert.strictEqual(3, '3')", "expected 3 to equal '3'"),
    ("assert.notStrictEqual(3, '3')", "assert.notStrictEqual(3, 3)", "expected 3 to not equal 3"),
    (
        "assert.deepEqual({a: [1, {b: 2}]}, {a: [1, {b: 2}]})",
        "assert.deepEqual({a: 1}, {a: 2})",
        "expected { a: 1 } to deeply equal { a: 2 }",
    ),
    (
        "assert.notDeepEqual({a: 1}, {a: 2})",
        "assert.notDeepEqual([1], [1])",
        "expected [ 1 ] to not deeply equal [ 1 ]",
    ),
    ("assert.isTrue(true)", "assert.isTrue(1)", "expected 1 to be true"),
    ("assert.isNotTrue(1)", "assert.isNotTrue(true)", "expected true to not equal true"),
    ("assert.isFalse(false)", "assert.isFalse(0)", "expected 0 to be false"),
    ("assert.isNotFalse(0)", "assert.isNotFalse(false)", "expected false to not equal false"),
    ("assert.isNull(null)", "assert.isNull(0)", "expected 0 to equal null"),
    ("assert.isNotNull(0)", "assert.isNotNull(null)", "expected null to not equal null"),
    ("assert.isDefined(0)", "assert.isDefined(undefined)", "expected undefined to not equal undefined"),
    ("assert.isUndefined(undefined)", "assert.isUndefined('')", "expected '' to equal undefined"),
    ("assert.exists(0)", "assert.exists(null)", "expected null to exist"),
    ("assert.notExists(undefined)", "assert.notExists(1)", "expected 1 to not exist"),
    ("assert.isNaN(NaN)", "assert.isNaN(1)", "expected 1 to be NaN"),
    ("assert.isNotNaN(1)", "assert.isNotNaN(NaN)", "expected NaN not to be NaN"),
    ("assert.isNumber(1.5)", "assert.isNumber('1')", "expected '1' to be a number"),
    ("assert.isNotNumber('1')", "assert.isNotNumber(1)", "expected 1 not to be a number"),
    ("assert.isString('a')", "assert.isString(1)", "expected 1 to be a string"),
    ("assert.isNotString(1)", "assert.isNotString('a')", "expected 'a' not to be a string"),
    ("assert.isBoolean(false)", "assert.isBoolean('false')", "expected 'false' to be a boolean"),
    ("assert.isArray([])", "assert.isArray({})", "expected {} to be an array"),
    ("assert.isNotArray({})", "assert.isNotArray([])", "expected [] not to be an array"),
    ("assert.isObject({})", "assert.isObject([])", "expected [] to be an object"),
    ("assert.isNotObject(null)", "assert.isNotObject({})", "expected {} not to be an object"),
    ("assert.isFunction(log)", "assert.isFunction(1)", "expected 1 to be a function"),
    ("assert.typeOf(null, 'null')", "assert.typeOf('x', 'number')", "expected 'x' to be a number"),
    ("assert.notTypeOf('x', 'number')", "assert.notTypeOf([], 'array')", "expected [] not to be an array"),
    ("assert.include('foobar', 'oba')", "assert.include('foobar', 'baz')", "expected 'foobar' to include 'baz'"),
    ("assert.include([1, 2], 2)", "assert.include([1, 2], 3)", "expected [ 1, 2 ] to include 3"),
    ("assert.include({a: 1, b: 2}, {a: 1})", "assert.include({a: 1}, {a: 2})", "expected { a: 1 } to include { a: 2 }"),
    (
        "assert.notInclude('foobar', 'baz')",
        "assert.notInclude('foobar', 'foo')",
        "expected 'foobar' to not include 'foo'",
    ),
    (
        "assert.deepInclude([{a: 1}], {a: 1})",
        "assert.deepInclude([{a: 1}], {a: 2})",
        "expected [ { a: 1 } ] to deep include { a: 2 }",
    ),
    (
        "assert.lengthOf([1, 2], 2); assert.lengthOf('abc', 3)",
        "assert.lengthOf([1, 2], 3)",
        "expected [ 1, 2 ] to have a length of 3 but got 2",
    ),
    ("assert.match('foo', /^f/)", "assert.match('foo', /^b/)", "expected 'foo' to match /^b/"),
    ("assert.notMatch('foo', /^b/)", "assert.notMatch('foo', /^f/)", "expected 'foo' not to match /^f/"),
    ("assert.isAbove(5, 2)", "assert.isAbove(2, 5)", "expected 2 to be above 5"),
    ("assert.isBelow(2, 5)", "assert.isBelow(5, 2)", "expected 5 to be below 2"),
    ("assert.isAtLeast(2, 2)", "assert.isAtLeast(1, 2)", "expected 1 to be at least 2"),
    ("assert.isAtMost(2, 2)", "assert.isAtMost(3, 2)", "expected 3 to be at most 2"),
    ("assert.closeTo(1.05, 1, 0.1)", "assert.closeTo(1.5, 1, 0.1)", "expected 1.5 to be close to 1 +/- 0.1"),
    ("assert.oneOf(1, [1, 2])", "assert.oneOf(5, [1, 2])", "expected 5 to be one of [ 1, 2 ]"),
    ("assert.property({a: 1}, 'a')", "assert.property({a: 1}, 'b')", "expected { a: 1 } to have property 'b'"),
    (
        "assert.notProperty({a: 1}, 'b')",
        "assert.notProperty({a: 1}, 'a')",
        "expected { a: 1 } to not have property 'a'",
    ),
    (
        "assert.propertyVal({a: 1}, 'a', 1)",
        "assert.propertyVal({a: 1}, 'a', 2)",
        "expected { a: 1 } to have property 'a' of 2, but got 1",
    ),
    (
        "assert.notPropertyVal({a: 1}, 'a', 2)",
        "assert.notPropertyVal({a: 1}, 'a', 1)",
        "expected { a: 1 } to not have property 'a' of 1",
    ),
    (
        "assert.deepPropertyVal({a: {b: 1}}, 'a', {b: 1})",
        "assert.deepPropertyVal({a: {b: 1}}, 'a', {b: 2})",
        "expected { a: { b: 1 } } to have deep property 'a' of { b: 2 }, but got { b: 1 }",
    ),
    ("assert.isEmpty([]); assert.isEmpty(''); assert.isEmpty({})", "assert.isEmpty([1])", "expected [ 1 ] to be empty"),
    ("assert.isNotEmpty('a')", "assert.isNotEmpty('')", "expected '' not to be empty"),
    (
        "assert.hasAllKeys({a: 1, b: 2}, ['a', 'b'])",
        "assert.hasAllKeys({a: 1}, ['a', 'b'])",
        "expected { a: 1 } to have keys 'a', and 'b'",
    ),
    ("assert.equal(1, 1, 'status')", "assert.equal(1, 2, 'status code')", "status code: expected 1 to equal 2"),
    ("true", "assert.fail('boom')", "boom"),
    ("true", "assert.fail()", "assert.fail()"),
]


@pytest.mark.parametrize("passing,failing,message", ASSERT_CASES, ids=[c[1] for c in ASSERT_CASES])
def test_assert_helpers_pass_and_fail_with_chai_messages(passing, failing, message):
    ok = run(passing)
    assert ok.passed, ok.error
    assert ok.error is None
    bad = run(failing)
    assert not bad.passed
    assert bad.error == f"AssertionError: {message} (line 1)"


# --- expect ---------------------------------------------------------------------------------

EXPECT_CASES = [
    ("expect(200).to.equal(200)", "expect(201).to.equal(200)", "expected 201 to equal 200"),
    ("expect(200).to.not.equal(201)", "expect(200).to.not.equal(200)", "expected 200 to not equal 200"),
    ("expect('a').to.eq('a'); expect(1).equals(1)", "expect('1').to.equal(1)", "expected '1' to equal 1"),
    (
        "expect({a: [1]}).to.deep.equal({a: [1]})",
        "expect({a: 1}).to.deep.equal({a: 2})",
        "expected { a: 1 } to deeply equal { a: 2 }",
    ),
    (
        "expect([1, 2]).to.eql([1, 2])",
        "expect([1, 2]).to.not.eql([1, 2])",
        "expected [ 1, 2 ] to not deeply equal [ 1, 2 ]",
    ),
    ("expect(true).to.be.true", "expect(false).to.be.true", "expected false to be true"),
    ("expect(1).to.not.be.true", "expect(true).to.not.be.true", "expected true to be false"),
    ("expect(false).to.be.false", "expect(0).to.be.false", "expected 0 to be false"),
    ("expect(1).to.be.ok", "expect('').to.be.ok", "expected '' to be truthy"),
    ("expect(0).to.not.be.ok", "expect(1).to.not.be.ok", "expected 1 to be falsy"),
    ("expect(null).to.be.null", "expect(0).to.be.null", "expected 0 to be null"),
    ("expect(undefined).to.be.undefined", "expect(null).to.be.undefined", "expected null to be undefined"),
    ("expect(NaN).to.be.NaN", "expect(1).to.be.NaN", "expected 1 to be NaN"),
    ("expect(0).to.exist", "expect(undefined).to.exist", "expected undefined to exist"),
    ("expect([]).to.be.empty", "expect({a: 1}).to.be.empty", "expected { a: 1 } to be empty"),
    ("expect('x').to.not.be.empty", "expect('').to.not.be.empty", "expected '' not to be empty"),
    (
        "expect('x').to.be.a('string'); expect([]).to.be.an('array')",
        "expect(1).to.be.a('string')",
        "expected 1 to be a string",
    ),
    ("expect(1).to.not.be.a('string')", "expect('x').to.not.be.a('string')", "expected 'x' not to be a string"),
    (
        "expect({id: 7}).to.have.property('id')",
        "expect({id: 7}).to.have.property('name')",
        "expected { id: 7 } to have property 'name'",
    ),
    (
        "expect({id: 7}).to.have.property('id', 7)",
        "expect({id: 7}).to.have.property('id', 8)",
        "expected { id: 7 } to have property 'id' of 8, but got 7",
    ),
    (
        "expect({a: {b: 1}}).to.have.property('a').that.has.property('b', 1)",
        "expect({a: {b: 1}}).to.have.property('a').that.has.property('c')",
        "expected { b: 1 } to have property 'c'",
    ),
    (
        "expect({a: 1}).to.not.have.property('b')",
        "expect({a: 1}).to.not.have.property('a')",
        "expected { a: 1 } to not have property 'a'",
    ),
    (
        "expect([1, 2]).to.include(2); expect('abc').to.contain('b')",
        "expect([1, 2]).to.include(3)",
        "expected [ 1, 2 ] to include 3",
    ),
    ("expect('abc').to.not.include('d')", "expect('abc').to.not.include('a')", "expected 'abc' to not include 'a'"),
    (
        "expect([{a: 1}]).to.deep.include({a: 1})",
        "expect([{a: 1}]).to.include({a: 1})",
        "expected [ { a: 1 } ] to include { a: 1 }",
    ),
    (
        "expect([1, 2]).to.have.lengthOf(2); expect('ab').to.have.length(2)",
        "expect([1, 2]).to.have.lengthOf(3)",
        "expected [ 1, 2 ] to have a length of 3 but got 2",
    ),
    (
        "expect([1]).to.not.have.lengthOf(2)",
        "expect([1]).to.not.have.lengthOf(1)",
        "expected [ 1 ] to not have a length of 1",
    ),
    ("expect(5).to.be.above(2)", "expect(2).to.be.above(5)", "expected 2 to be above 5"),
    ("expect(2).to.not.be.above(5)", "expect(6).to.not.be.above(5)", "expected 6 to be at most 5"),
    ("expect(2).to.be.below(5)", "expect(5).to.be.below(2)", "expected 5 to be below 2"),
    ("expect(2).to.be.at.least(2)", "expect(1).to.be.at.least(2)", "expected 1 to be at least 2"),
    ("expect(2).to.be.at.most(2)", "expect(3).to.be.at.most(2)", "expected 3 to be at most 2"),
    ("expect(2).to.be.within(1, 3)", "expect(5).to.be.within(1, 3)", "expected 5 to be within 1..3"),
    ("expect(1).to.be.above(0)", "expect('5').to.be.above(2)", "expected '5' to be a number or a date"),
    ("expect('foo').to.match(/^f/)", "expect('foo').to.match(/^b/)", "expected 'foo' to match /^b/"),
    (
        "expect('foobar').to.have.string('oba')",
        "expect('foobar').to.have.string('baz')",
        "expected 'foobar' to contain 'baz'",
    ),
    (
        "expect({a: 1, b: 2}).to.have.keys('a', 'b')",
        "expect({a: 1, b: 2}).to.have.keys('a')",
        "expected { a: 1, b: 2 } to have key 'a'",
    ),
    ("expect(2).to.be.oneOf([1, 2])", "expect(3).to.be.oneOf([1, 2])", "expected 3 to be one of [ 1, 2 ]"),
    ("expect(1.01).to.be.closeTo(1, 0.1)", "expect(2).to.be.closeTo(1, 0.1)", "expected 2 to be close to 1 +/- 0.1"),
    (
        "expect(4).to.satisfy(function even(n) { return n % 2 === 0; })",
        "expect(3).to.satisfy(function even(n) { return n % 2 === 0; })",
        "expected 3 to satisfy [Function: even]",
    ),
    ("expect(1, 'status').to.equal(1)", "expect(1, 'status').to.equal(2)", "status: expected 1 to equal 2"),
    ("chai.expect(1).to.equal(1); chai.assert.ok(1)", "chai.expect(1).to.equal(2)", "expected 1 to equal 2"),
]


@pytest.mark.parametrize("passing,failing,message", EXPECT_CASES, ids=[c[1] for c in EXPECT_CASES])
def test_expect_chains_pass_and_fail_with_chai_messages(passing, failing, message):
    ok = run(passing)
    assert ok.passed, ok.error
    bad = run(failing)
    assert not bad.passed
    assert bad.error == f"AssertionError: {message} (line 1)"


def test_large_values_are_abbreviated_in_messages():
    outcome = run("var big = {}; for (var i = 0; i < 40; i++) big['key' + i] = i;\nassert.equal(big, 1)")
    assert outcome.error == "AssertionError: expected { Object (key0, key1, ...) } to equal 1 (line 2)"
    body = run("assert.include(response.body, 'needle')", request=request(), response=response(body="x" * 5000))
    assert len(body.error) < 300 and "xxx..." in body.error


def test_scripts_can_catch_assertion_errors_and_see_their_name():
    outcome = run("try { assert.equal(1, 2) } catch (e) { log(e.name, e.message, e instanceof Error) }")
    assert outcome.passed
    assert outcome.logs == ["AssertionError expected 1 to equal 2 true"]


def test_scripts_may_replace_the_assertion_globals():
    outcome = run("var expect = function mine() { return 'mine' }; log(expect()); assert = 5; log(assert);")
    assert outcome.passed, outcome.error
    assert outcome.logs == ["mine", "5"]
    mixed = run("var expect = 'mine'; chai.assert.ok(1); log(expect, typeof assert.equal)")
    assert mixed.logs == ["mine function"]


# --- request and response -------------------------------------------------------------------


def test_post_response_script_sees_runscope_names():
    outcome = run(
        """
        var data = JSON.parse(response.body);
        assert.equal(response.status, 201);
        assert.equal(response.reason, "Created");
        assert.equal(response.headers["X-Request-Id"][0], "r-1");
        assert.equal(response.response_time_ms, 41.5);
        assert.equal(response.size_bytes, 30);
        expect(data.tags).to.have.lengthOf(2);
        variables.set("item_id", data.id);
        log(request.method, request.scheme, request.host, request.path, JSON.stringify(request.params));
    """,
        request=request(),
        response=response(),
    )
    assert outcome.passed, outcome.error
    assert outcome.variables == {"item_id": "7"}
    assert outcome.logs == ['POST https api.example.com /v1/items {"page":["2"],"tag":["a","b"]}']


def test_pre_request_script_has_no_response():
    outcome = run("log(typeof response)", request=request())
    assert outcome.logs == ["undefined"]


def test_environment_script_has_neither_request_nor_response():
    outcome = run("log(typeof request, typeof response); variables.set('base', 'https://x')")
    assert outcome.passed and outcome.logs == ["undefined undefined"]
    assert outcome.request is None


def test_pre_request_script_changes_headers_and_the_engine_gets_them_back():
    outcome = run(
        """
        request.headers["Authorization"] = "Bearer " + variables.get("token");
        request.headers["Accept"] = ["application/json", "text/plain"];
        delete request.headers["Content-Type"];
        request.headers["X-Retry"] = 2;
    """,
        variables={"token": "t0k"},
        request=request(),
    )
    assert outcome.passed, outcome.error
    assert outcome.request["headers"] == {
        "Accept": ["application/json", "text/plain"],
        "Authorization": ["Bearer t0k"],
        "X-Retry": ["2"],
    }
    assert outcome.request["url"] == request()["url"] and outcome.request["body"] == request()["body"]


def test_pre_request_script_changes_method_url_and_body():
    outcome = run(
        """
        request.method = "PUT";
        request.url = request.url.replace("/v1/", "/v2/");
        var body = JSON.parse(request.body); body.signed = true; request.body = JSON.stringify(body);
    """,
        request=request(),
    )
    assert outcome.request["method"] == "PUT"
    assert outcome.request["url"] == "https://api.example.com/v2/items?page=2&tag=a&tag=b"
    assert json.loads(outcome.request["body"]) == {"name": "widget", "signed": True}


def test_params_and_form_changes_rebuild_the_url_and_body_unless_set_directly():
    params = run('request.params["foo"] = "bar"; delete request.params["page"]', request=request())
    assert params.request["url"] == "https://api.example.com/v1/items?tag=a&tag=b&foo=bar"

    direct = run('request.params["foo"] = "bar"; request.url = "https://other.example.com/x"', request=request())
    assert direct.request["url"] == "https://other.example.com/x"

    host = run('request.host = "staging.example.com:8443"', request=request())
    assert host.request["url"] == "https://staging.example.com:8443/v1/items?page=2&tag=a&tag=b"

    form_request = request(headers={"Content-Type": ["application/x-www-form-urlencoded"]}, body="a=1&b=2")
    form = run('log(request.form.a[0]); request.form["c"] = "3 4"', request=form_request)
    assert form.logs == ["1"]
    assert form.request["body"] == "a=1&b=2&c=3+4"


def test_an_unmodified_request_comes_back_as_it_went_in():
    original = {
        "method": "GET",
        "url": "https://h/x?b=2&a=1",
        "headers": {"Accept": "*/*"},
        "body": None,
        "timeout_s": 5,
    }
    outcome = run("log(request.headers.Accept[0], JSON.stringify(request.body))", request=original)
    assert outcome.logs == ['*/* ""']
    assert outcome.request == original


# --- limits and isolation -------------------------------------------------------------------

FAST_LIMITS = ScriptRunner(time_limit_s=0.25, memory_limit_bytes=8 * 1024 * 1024)


@pytest.mark.parametrize(
    "source,message",
    [
        ("while (true) {}", "script exceeded its 0.25 s time limit"),
        ("try { for (;;) {} } catch (e) { log('caught') }", "script exceeded its 0.25 s time limit"),
        ("var a = []; while (true) a.push({n: a.length});", "script exceeded its 8 MiB memory limit"),
        ("(function () { var s = 'x'; while (true) s = s + s; })()", "script exceeded its 8 MiB memory limit"),
        ("var t = 'x'.repeat(1e9);", "script exceeded its 8 MiB memory limit"),
        ("function down(n) { return down(n + 1) + 1; }\ndown(0);", "script exceeded the maximum call stack size"),
    ],
)
def test_runaway_scripts_fail_clearly_and_the_next_script_is_unaffected(source, message):
    started = time.perf_counter()
    outcome = FAST_LIMITS.run("log('start'); globalThis.leak = 1;\n" + source, variables={"v": "1"})
    assert time.perf_counter() - started < 2
    assert not outcome.passed
    assert outcome.error.startswith(message), outcome.error
    assert outcome.variables == {"v": "1"}
    # A loop is interrupted by the engine, which keeps the log; on a machine too busy to give
    # the worker its CPU time before the wall-clock deadline, the worker is killed instead
    # and the log goes with it.
    assert outcome.logs == ["start"] or ("time limit" in message and outcome.logs == [])

    after = FAST_LIMITS.run(
        "log(typeof leak); var a = []; for (var i = 0; i < 1000; i++) a.push(i); assert.lengthOf(a, 1000)", variables={}
    )
    assert after.passed, after.error
    assert after.logs == ["undefined"]


CATASTROPHIC_REGEX = '/^(a+)+$/.test("a".repeat(40) + "b")'
DEADLINE_MARGIN_S = 0.75
"""Past the limit: the kill grace, stopping the worker and the run's own work."""


@pytest.mark.parametrize("kind", ["pre-request", "post-response"])
def test_a_backtracking_regex_is_stopped_at_the_time_limit(kind):
    # QuickJS never interrupts its regex engine: in process, this ran until the Job deadline.
    kwargs = {"request": request()} if kind == "pre-request" else {"request": request(), "response": response()}
    FAST_LIMITS.run("", variables={})  # a started worker: its start is not part of any deadline
    started = time.perf_counter()
    outcome = FAST_LIMITS.run(
        f"log('start'); variables.set('x', '1');\n{CATASTROPHIC_REGEX};", variables={"v": "1"}, **kwargs
    )
    elapsed = time.perf_counter() - started
    assert elapsed < FAST_LIMITS.time_limit_s + DEADLINE_MARGIN_S, elapsed
    assert not outcome.passed
    assert outcome.error == "script exceeded its 0.25 s time limit"
    # The worker was killed: nothing the script did survives, the request goes out unchanged.
    assert outcome.variables == {"v": "1"} and outcome.logs == []
    assert outcome.request == kwargs["request"]

    after = FAST_LIMITS.run("log(typeof leak, variables.get('v'))", variables={"v": "2"})
    assert after.passed and after.logs == ["undefined 2"]


def test_a_regex_in_a_library_or_in_assertions_is_stopped_too():
    runner = ScriptRunner(libraries=[f"var slow = function () {{ return {CATASTROPHIC_REGEX}; }};"], time_limit_s=0.25)
    FAST_LIMITS.run("", variables={})  # a started worker: its start is not part of any deadline
    started = time.perf_counter()
    outcome = runner.run("slow()", variables={})
    assert time.perf_counter() - started < 0.25 + DEADLINE_MARGIN_S
    assert outcome.error == "script exceeded its 0.25 s time limit"
    FAST_LIMITS.run("", variables={})
    started = time.perf_counter()
    asserted = FAST_LIMITS.run("expect('a'.repeat(40) + 'b').to.match(/^(a|a)*$/)", variables={})
    assert time.perf_counter() - started < 0.25 + DEADLINE_MARGIN_S
    assert asserted.error == "script exceeded its 0.25 s time limit"


def test_regex_scripts_on_several_threads_fail_alone_and_the_others_pass():
    def one(i):
        return i, FAST_LIMITS.run(CATASTROPHIC_REGEX if i % 3 == 0 else f"variables.set('i', {i})", variables={})

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(one, range(12)))
    for i, outcome in results:
        if i % 3 == 0:
            assert outcome.error == "script exceeded its 0.25 s time limit"
        else:
            assert outcome.passed and outcome.variables == {"i": str(i)}, outcome.error


def test_a_worker_killed_while_idle_is_replaced():
    from assay.runner.apitest.scripts import _workers

    run("")
    idle = list(_workers()._idle)
    assert idle
    for worker in idle:
        worker.process.kill()  # as the kernel's OOM killer would
        worker.process.wait()
    outcome = run("log('fine')")
    assert outcome.passed and outcome.logs == ["fine"], outcome.error


def test_workers_see_none_of_the_runners_environment(monkeypatch):
    from assay.runner.apitest.scripts import _workers

    monkeypatch.setenv("ASSAY_UPLOAD_TOKEN", "secret-token")
    _workers().close()  # the next run starts a worker now, with the token in the runner's environment
    run("")
    pids = [worker.process.pid for worker in _workers()._idle]
    assert pids
    for pid in pids:
        with open(f"/proc/{pid}/environ", "rb") as environ:
            assert environ.read() == b""


def test_the_memory_budget_is_on_top_of_large_inputs():
    big_body = json.dumps({"items": ["x" * 100] * 100_000})  # ~10 MB
    outcome = FAST_LIMITS.run(
        "assert.isAbove(response.body.length, 1e6)", variables={}, response=response(body=big_body)
    )
    assert outcome.passed, outcome.error


def test_nothing_leaks_from_one_script_to_the_next():
    first = run(
        "globalThis.shared = 1; var declared = 2; Array.prototype.evil = 3; "
        "JSON.stringify = function () { return 'hijacked' };"
    )
    assert first.passed
    second = run("log(typeof shared, typeof declared, typeof [].evil, JSON.stringify({a: 1}))")
    assert second.logs == ['undefined undefined undefined {"a":1}']


def test_tampering_with_builtins_cannot_corrupt_the_results():
    hijacked = run("log('x'); JSON.stringify = function () { return '{}' }; variables.set('k', 'v')")
    assert hijacked.passed and hijacked.logs == ["x"] and hijacked.variables == {"k": "v"}

    garbled = run("log('x'); Array.prototype.toJSON = function () { return 5 }")
    assert not garbled.passed
    assert garbled.error.startswith("could not read the script's results")

    replaced = run("__assay_collect = function () { return 'nope' }; log('kept')")
    assert replaced.logs == ["kept"]


def test_runs_on_several_threads_at_once_stay_separate():
    def one(i):
        return run(f"variables.set('i', {i}); assert.equal(variables.get('i'), '{i}')")

    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(one, range(40)))
    assert all(o.passed for o in outcomes)
    assert [o.variables["i"] for o in outcomes] == [str(i) for i in range(40)]


def test_the_engine_releases_the_gil_while_a_script_runs():
    ticks = 0
    worker = threading.Thread(target=FAST_LIMITS.run, args=("while (true) {}",), kwargs={"variables": {}})
    worker.start()
    while worker.is_alive():
        ticks += 1
    assert ticks > 1000


# --- errors and libraries -------------------------------------------------------------------


def test_syntax_errors_report_the_message_and_line():
    outcome = run("var a = 1;\nvar b = 2;\nvar c = (;\n")
    assert not outcome.passed
    assert outcome.error.startswith("SyntaxError: ") and outcome.error.endswith("(line 3)")


def test_runtime_errors_report_the_line_and_the_calling_line():
    outcome = run("var data = {};\nlog(data.items.length);")
    assert outcome.error == "TypeError: cannot read property 'length' of undefined (line 2)"

    nested = run("function check(x) {\n  expect(x).to.equal(2);\n}\n\ncheck(1);")
    assert nested.error == "AssertionError: expected 1 to equal 2 (line 2 in check, called from line 5)"

    thrown = run("\nthrow 'plain string';")
    assert thrown.error == "plain string"


def test_libraries_are_loaded_before_every_script():
    runner = ScriptRunner(
        libraries=[
            "function sign(text) { return 'sig:' + encode_base64(text); }",
            "const PREFIX = 'lib';\nvar counter = 0;",
        ]
    )
    first = runner.run("counter++; log(PREFIX, sign('a'), counter)", variables={})
    assert first.passed, first.error
    assert first.logs == ["lib sig:YQ== 1"]
    second = runner.run("counter++; log(counter)", variables={})
    assert second.logs == ["1"]


def test_a_broken_library_fails_the_script_and_says_which():
    runner = ScriptRunner(libraries=["var ok = 1;", "var x = ;"])
    outcome = runner.run("log('never')", variables={})
    assert not outcome.passed
    assert outcome.error.startswith("script library 2: SyntaxError")
    assert outcome.logs == []

    throwing = ScriptRunner(libraries=["function helper() {\n  throw new Error('helper failed');\n}"])
    called = throwing.run("\nhelper();", variables={})
    assert called.error == "Error: helper failed (line 2 in helper, called from line 2)"


def test_runner_arguments_are_checked():
    with pytest.raises(ValueError):
        ScriptRunner(time_limit_s=0)
    with pytest.raises(ValueError):
        ScriptRunner(memory_limit_bytes=0)
    with pytest.raises(TypeError):
        ScriptRunner(libraries="var a = 1;")


# --- bundled libraries: CryptoJS, Underscore, Moment ---------------------------------------


def test_crypto_js_signatures_match_pythons_hmac_and_hashes():
    outcome = run(
        """
        var message = variables.get('method') + '\\n' + variables.get('path') + '\\n' + variables.get('body');
        var sig = CryptoJS.HmacSHA256(message, variables.get('secret'));
        variables.set('b64', CryptoJS.enc.Base64.stringify(sig));
        variables.set('hex', sig.toString(CryptoJS.enc.Hex));
        variables.set('sha1', CryptoJS.SHA1('caf\u00e9').toString());
        variables.set('md5', CryptoJS.MD5('x').toString());
        variables.set('utf8', CryptoJS.enc.Base64.parse('Y2Fmw6k=').toString(CryptoJS.enc.Utf8));
        var key = CryptoJS.enc.Hex.parse('000102030405060708090a0b0c0d0e0f'), iv = key;
        var sealed = CryptoJS.AES.encrypt('secret text', key, {iv: iv}).toString();
        variables.set('aes', CryptoJS.AES.decrypt(sealed, key, {iv: iv}).toString(CryptoJS.enc.Utf8));
    """,
        variables={"method": "POST", "path": "/v1/items", "body": '{"a":1}', "secret": "k\u00e9y"},
    )
    assert outcome.passed, outcome.error
    digest = hmac.new("k\u00e9y".encode(), b'POST\n/v1/items\n{"a":1}', hashlib.sha256).digest()
    assert outcome.variables["b64"] == base64.b64encode(digest).decode()
    assert outcome.variables["hex"] == digest.hex()
    assert outcome.variables["sha1"] == hashlib.sha1("caf\u00e9".encode()).hexdigest()
    assert outcome.variables["md5"] == hashlib.md5(b"x").hexdigest()
    assert outcome.variables["utf8"] == "caf\u00e9"
    assert outcome.variables["aes"] == "secret text"


def test_underscore_iterates_and_transforms():
    outcome = run(
        """
        var items = JSON.parse(response.body).items, seen = [];
        _.each(items, function (item, i) { seen.push(i + ':' + item.name); });
        _.each({b: 2, a: 1}, function (value, key) { seen.push(key + '=' + value); });
        log(seen.join(' '));
        log(_.map(items, function (item) { return item.price * 2; }));
        log(_.pluck(_.filter(items, function (item) { return item.price > 1; }), 'name'));
        log(_.findWhere(items, {name: 'b'}).price, _.sortBy(items, 'price')[0].name, _.uniq([1, 1, 2]));
        log(_.template('<%= name %> costs <%- price %>')(items[0]), _.VERSION);
    """,
        response=response(body=json.dumps({"items": [{"name": "a", "price": 3}, {"name": "b", "price": 1}]})),
    )
    assert outcome.passed, outcome.error
    assert outcome.logs == ["0:a 1:b b=2 a=1", "[6,2]", '["a"]', "1 b [1,2]", "a costs 3 1.13.8"]


def test_moment_formats_parses_and_does_arithmetic():
    before = datetime.now(timezone.utc).replace(microsecond=0)
    outcome = run("""
        variables.set('now', moment().format());
        variables.set('utc', moment.utc('2024-03-05T10:20:30Z').format('dddd, MMMM Do YYYY, HH:mm:ss'));
        variables.set('parsed', moment('05/03/2024 07:08', 'DD/MM/YYYY HH:mm').format('YYYY-MM-DDTHH:mm'));
        variables.set('unix', moment.unix(1700000000).utc().toISOString());
        variables.set('next', moment.utc('2024-02-28').add(1, 'days').add(1, 'months').format('YYYY-MM-DD'));
        variables.set('strict', moment('2024-13-40', 'YYYY-MM-DD', true).isValid());
        variables.set('diff', moment.utc('2024-03-05').diff(moment.utc('2024-03-01'), 'hours'));
        variables.set('version', moment.version);
    """)
    assert outcome.passed, outcome.error
    now = datetime.fromisoformat(outcome.variables["now"])
    assert before <= now <= datetime.now(timezone.utc) + timedelta(seconds=1)
    assert outcome.variables["utc"] == "Tuesday, March 5th 2024, 10:20:30"
    assert outcome.variables["parsed"] == "2024-03-05T07:08"
    assert outcome.variables["unix"] == "2023-11-14T22:13:20.000Z"
    assert outcome.variables["next"] == "2024-03-29"
    assert (outcome.variables["strict"], outcome.variables["diff"]) == ("false", "96")
    assert outcome.variables["version"] == "2.31.0"


def test_bundled_libraries_are_evaluated_only_when_a_script_touches_them():
    probe = (
        "function kind(name) { return 'get' in Object.getOwnPropertyDescriptor(globalThis, name) ? 'lazy' : 'loaded'; }"
    )
    outcome = run(
        probe + "\nlog(kind('CryptoJS'), kind('_'), kind('moment')); CryptoJS.MD5('');\n"
        "log(kind('CryptoJS'), kind('_'), kind('moment'))"
    )
    assert outcome.passed, outcome.error
    assert outcome.logs == ["lazy lazy lazy", "loaded lazy lazy"]
    assert run(probe + "\nlog(kind('CryptoJS'))").logs == ["lazy"]  # every run starts afresh

    # Only code that names a library gets its source: one only a script library names counts.
    unnamed = run("globalThis['Crypto' + 'JS'].MD5('')")
    assert unnamed.error.startswith(
        "ReferenceError: CryptoJS is loaded only for code that names it: write CryptoJS in the script or a script library"
    ), unnamed.error
    named_by_library = ScriptRunner(libraries=["// uses CryptoJS"]).run(
        "log(globalThis['Crypto' + 'JS'].MD5('').toString())", variables={}
    )
    assert named_by_library.logs == [hashlib.md5(b"").hexdigest()], named_by_library.error


def test_scripts_and_libraries_may_define_the_same_names_and_module_systems():
    runner = ScriptRunner(
        libraries=[
            "var _ = {mine: true};",
            "var module = {exports: {}}, exports = module.exports; function define() { throw new Error('amd'); }"
            " define.amd = true;",
        ]
    )
    outcome = runner.run(
        "log(_.mine, typeof moment.utc, typeof module.exports.HmacSHA256);"
        "moment = 'replaced'; log(moment, CryptoJS.MD5('').toString().length)",
        variables={},
    )
    assert outcome.passed, outcome.error
    assert outcome.logs == ["true function undefined", "replaced 32"]
    broken = run("CryptoJS.HmacSHA256 = null; _.map = null;")
    assert broken.passed
    assert run("log(typeof CryptoJS.HmacSHA256, typeof _.map)").logs == ["function function"]


def test_all_bundled_libraries_fit_the_tightest_limits_and_the_limits_still_hold():
    outcome = FAST_LIMITS.run(
        "log(CryptoJS.SHA256('a').toString().length, _.size([1, 2]), moment.utc(0).year())", variables={}
    )
    assert outcome.passed, outcome.error
    assert outcome.logs == ["64 2 1970"]
    blown = FAST_LIMITS.run(
        "CryptoJS.MD5(''); _.size([]); moment(); var a = []; while (true) a.push({});", variables={}
    )
    assert blown.error.startswith("script exceeded its 8 MiB memory limit"), blown.error
    looping = FAST_LIMITS.run("moment(); while (true) {}", variables={})
    assert looping.error.startswith("script exceeded its 0.25 s time limit"), looping.error


def test_the_pins_are_vendored_with_mit_licences():
    jslibs = Path(script_engine.JSLIBS_DIR)
    lock = json.loads((jslibs / "package-lock.json").read_text())["packages"]
    libraries = script_engine.bundled_libraries()
    assert [lib.name for lib in libraries] == ["CryptoJS", "_", "moment"]
    for lib in libraries:
        locked = lock[f"node_modules/{lib.package}"]
        assert (locked["version"], locked["license"]) == (lib.version, "MIT")
        assert locked["integrity"].startswith("sha512-")
        assert lib.source is not None and lib.source.isascii(), f"{lib.name}: run bash hack/vendor-js.sh"
        licence = (jslibs / "vendor" / f"{lib.package}.LICENSE").read_text()
        assert "Permission is hereby granted, free of charge" in licence  # the MIT licence's text


def test_without_the_vendored_files_scripts_work_and_a_library_names_the_install_command(tmp_path):
    # The engine as a runner installed without the vendoring step has it.
    (tmp_path / "jslibs").mkdir()
    shutil.copy(script_engine.__file__, tmp_path / "script_engine.py")
    shutil.copy(Path(script_engine.JSLIBS_DIR) / "package.json", tmp_path / "jslibs" / "package.json")
    pool = WorkerPool(str(tmp_path / "script_engine.py"), "evaluate", 1, prepare="prepare")
    inputs = json.dumps({"variables": {}, "request": None, "response": None})
    try:
        plain = json.loads(pool.call(RUNNER._request("log(1 + 1)", inputs), 5))
        assert plain["error"] is None and json.loads(plain["results"])["logs"] == ["2"]
        for source, library in [
            ("\nvar s = CryptoJS.MD5('');", "CryptoJS (crypto-js 4.2.0)"),
            ("_.map([], String)", "_ (underscore 1.13.8)"),
            ("moment()", "moment (moment 2.31.0)"),
        ]:
            reply = json.loads(pool.call(RUNNER._request(source, inputs), 5))
            assert reply["error"].startswith(
                f"ReferenceError: {library} is not installed in this runner: "
                "run make deps (or bash hack/vendor-js.sh) in the Assay repository"
            ), reply["error"]
    finally:
        pool.close()


# --- hostile input and sandboxing -----------------------------------------------------------

HOSTILE = [
    '"); throw new Error("escaped"); ("',
    "'; throw 1; '",
    "\\\"; log('injected'); //",
    "</script><script>alert(1)</script>",
    "line\u2028separator\u2029paragraph",
    "`${log('template')}`",
    "nul\x00byte",
    "emoji 😀 and ümlauts",
    "__proto__",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_strings_in_inputs_are_data_not_code(value):
    outcome = run(
        "log(variables.get('v')); log(request.headers['X-Evil'][0]); log(response.body);"
        "variables.set('copy', variables.get('v'));",
        variables={"v": value, value: "as a name"},
        request=request(headers={"X-Evil": [value]}),
        response=response(body=value),
    )
    assert outcome.passed, outcome.error
    assert outcome.logs == [value, value, value]
    assert outcome.variables == {"v": value, value: "as a name", "copy": value}


def test_lone_surrogates_and_nul_characters_do_not_crash_the_engine():
    outcome = run("variables.set('made', variables.get('v') + '\\ud800')", variables={"v": "\udfff"})
    assert outcome.passed, outcome.error
    assert outcome.variables["made"] == "\ufffd\ufffd"

    nul = run("log(1)\x00; log(2)")
    assert not nul.passed and "cannot be run" in nul.error
    surrogate = run("log('\ud800')")
    assert not surrogate.passed and "cannot be run" in surrogate.error


def test_scripts_have_no_host_access():
    outcome = run(
        "log([typeof require, typeof process, typeof std, typeof os, typeof print, "
        "typeof scriptArgs, typeof setTimeout, typeof XMLHttpRequest, typeof fetch].join(' '))"
    )
    assert outcome.logs == [" ".join(["undefined"] * 9)]
    static_import = run("import * as os from 'os';")
    assert not static_import.passed and static_import.error.startswith("SyntaxError")
    dynamic = run("var p = import('os'); p.then(function () { log('loaded') }, function () { log('refused') });")
    assert dynamic.logs == []  # promise jobs never run: scripts are synchronous
