"""Load tests that behave like users, against a real loopback web app: per-user cookie
sessions, redirects, template helpers, hot-path checks, think-time distributions, pacing and
the parameter pools' row modes."""

from __future__ import annotations

import codecs
import hashlib
import hmac
import itertools
import json
import time
from collections import Counter
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import ValidationError

from assay.crds.loadtest import Flow, LoadTestSpec
from assay.runner.load import run, run_load_shard
from assay.runner.load.client import prepare
from assay.runner.load.engine import LoadSpecError, RedirectCache
from assay.runner.load.profile import think_sampler
from tests.support.loopback import LoopbackServer, QuietHandler


class App(LoopbackServer):
    """A tiny web app: a login that sets a session cookie and redirects, pages that need
    the cookie, redirect variants, and a record of every request it got."""

    def __init__(self):
        self.seen: list[dict] = []
        self.sessions = itertools.count(1)
        self.redirect_to = ""
        super().__init__(_AppHandler)


class _AppHandler(QuietHandler):
    protocol_version = "HTTP/1.1"

    def _handle(self):
        app: App = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        cookie = self.headers.get("Cookie")
        with app.lock:
            app.seen.append(
                {
                    "method": self.command,
                    "path": url.path,
                    "query": query,
                    "cookie": cookie,
                    "body": body,
                    "headers": dict(self.headers),
                }
            )
        path = url.path
        if path == "/login":
            with app.lock:
                sid = next(app.sessions)
            return self._reply(302, b"", [("Set-Cookie", f"sid=s{sid}; Path=/; HttpOnly"), ("Location", "/home")])
        if path == "/home":
            sid = (cookie or "").partition("sid=")[2].split(";")[0]
            if not sid:
                return self._reply(401, b'{"error": "no session"}')
            return self._reply(200, json.dumps({"user": sid, "token": f"t-{sid}"}).encode())
        if path == "/loop":
            return self._reply(302, b"", [("Location", "/loop")])
        if path.startswith("/to/"):
            status = int(path[4:])
            return self._reply(status, b"", [("Location", app.redirect_to or "/echo")])
        if path == "/echo":
            return self._reply(200, json.dumps({"method": self.command, "body": body}).encode())
        return self._reply(200, b'{"ok": true, "items": [1, 2]}', [("X-Served-By", "app")])

    def _reply(self, status, body, headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_HEAD = _handle


def spec_of(url: str, requests: list[dict], load: dict | None = None, **extra) -> LoadTestSpec:
    flows = extra.pop("flows", None) or [{"name": "f", "requests": requests, **extra.pop("flow", {})}]
    return LoadTestSpec.model_validate({"baseUrl": url, "load": load or {"iterations": 1}, "flows": flows, **extra})


LOGIN_FLOW = [
    {
        "name": "login",
        "method": "POST",
        "url": "/login",
        "body": "user={{user}}",
        "headers": {"Content-Type": "application/x-www-form-urlencoded"},
        "extract": [{"name": "token", "source": "response_json", "property": "token"}],
        "assertions": [{"source": "response_json", "property": "user", "comparison": "not_empty"}],
    },
    {"name": "data", "url": "/api/data", "headers": {"Authorization": "Bearer {{token}}"}},
]


def test_each_user_keeps_its_own_session_through_a_login_redirect():
    with App() as app:
        spec = spec_of(
            app.url, LOGIN_FLOW, {"users": 3, "iterations": 2}, parameterPools=[{"name": "u", "csv": "user\na\nb\nc\n"}]
        )
        metrics = run(run_load_shard(spec, 0, 1))
    assert metrics.total.error_count == 0, metrics.error_samples
    logins = [r for r in app.seen if r["path"] == "/login"]
    homes = [r for r in app.seen if r["path"] == "/home"]
    data = [r for r in app.seen if r["path"] == "/api/data"]
    assert len(logins) == len(homes) == len(data) == 6
    # 302 after POST: the redirect is a GET without the form body.
    assert all(r["method"] == "GET" and r["body"] == "" for r in homes)
    assert "Content-Type" not in homes[0]["headers"]
    # Each user's second login sends the cookie its first one got; users never share one.
    first_cookies = [r["cookie"] for r in logins if r["cookie"]]
    assert len(first_cookies) == 3 and len(set(first_cookies)) == 3
    for request in data:
        assert request["headers"]["Authorization"] == f"Bearer t-{request['cookie'].split('=')[1]}"
    # The login and its redirect are one request, timed and counted as the whole chain.
    assert metrics.requests["login"].count == 6 and metrics.requests["login"].redirects == 6
    assert metrics.total.redirects == 6


def test_cookies_can_be_turned_off_or_cleared_every_iteration():
    with App() as app:
        spec = spec_of(
            app.url,
            LOGIN_FLOW[:1],
            {"users": 1, "iterations": 2},
            cookies={"enabled": False},
            parameterPools=[{"name": "u", "csv": "user\na\n"}],
        )
        metrics = run(run_load_shard(spec, 0, 1))
    assert metrics.requests["login"].errors_by_kind()["assertion"] == 0
    assert metrics.requests["login"].errors_by_kind()["status"] == 2  # /home without the session: 401
    assert all(r["cookie"] is None for r in app.seen)
    with App() as app:
        spec = spec_of(
            app.url,
            LOGIN_FLOW[:1],
            {"users": 1, "iterations": 3},
            cookies={"clearEachIteration": True},
            parameterPools=[{"name": "u", "csv": "user\na\n"}],
        )
        metrics = run(run_load_shard(spec, 0, 1))
    assert metrics.total.error_count == 0
    assert [r["cookie"] for r in app.seen if r["path"] == "/login"] == [None, None, None]


@pytest.mark.parametrize(
    ("status", "method", "kept"),
    [(301, "GET", False), (302, "GET", False), (303, "GET", False), (307, "PUT", True), (308, "PUT", True)],
)
def test_redirect_methods_follow_the_status(status, method, kept):
    with App() as app:
        spec = spec_of(
            app.url,
            [
                {
                    "name": "r",
                    "method": "PUT",
                    "url": f"/to/{status}",
                    "body": "payload",
                    "assertions": [
                        {"source": "response_json", "property": "method", "comparison": "equal", "value": method}
                    ],
                }
            ],
        )
        metrics = run(run_load_shard(spec, 0, 1))
    assert metrics.total.error_count == 0, metrics.error_samples
    echo = app.seen[-1]
    assert echo["path"] == "/echo" and echo["method"] == method and echo["body"] == ("payload" if kept else "")


def test_a_redirect_built_once_still_carries_each_users_own_headers():
    with App() as app:
        spec = spec_of(
            app.url,
            [{"name": "r", "url": "/to/302", "headers": {"X-User": "{{user}}"}}],
            {"users": 3, "iterations": 2},
            parameterPools=[{"name": "u", "mode": "per_user", "csv": "user\na\nb\nc\n"}],
        )
        metrics = run(run_load_shard(spec, 0, 1))
    assert metrics.total.error_count == 0, metrics.error_samples
    assert metrics.total.redirects == 6
    echoes = [r for r in app.seen if r["path"] == "/echo"]
    assert Counter(r["headers"]["X-User"] for r in echoes) == {"a": 2, "b": 2, "c": 2}


def test_the_redirect_cache_stays_bounded_and_keeps_no_large_request():
    cache = RedirectCache(size=2, largest=200)
    request = prepare("GET", "http://127.0.0.1:8080/to/302", {"X-User": "a"})
    hop = cache.get(request, 302, "/echo")
    assert hop.url == "http://127.0.0.1:8080/echo" and ("X-User", "a") in hop.headers
    assert cache.get(request, 302, "/echo") is hop
    # Another scheme is another origin: the same bytes do not share the hop.
    assert cache.get(prepare("GET", "https://127.0.0.1:8080/to/302", {"X-User": "a"}), 302, "/echo").origin.tls
    cache.get(request, 302, "/elsewhere")
    assert len(cache.entries) == 1  # full at 2: emptied, then the new one
    large = prepare("POST", "http://127.0.0.1:8080/to/307", body="x" * 300)
    assert cache.get(large, 307, "/echo").body == b"x" * 300 and len(cache.entries) == 1


def test_redirects_stop_at_the_limit_and_can_be_turned_off_per_request():
    with App() as app:
        spec = spec_of(
            app.url,
            [{"name": "loop", "url": "/loop"}, {"name": "off", "url": "/to/302", "maxRedirects": 0}],
            maxRedirects=3,
        )
        metrics = run(run_load_shard(spec, 0, 1))
    assert [r["path"] for r in app.seen] == ["/loop"] * 4 + ["/to/302"]
    # The last 302 is the response: not an error, three hops counted.
    assert metrics.requests["loop"].redirects == 3 and metrics.requests["loop"].error_count == 0
    assert metrics.requests["off"].redirects == 0


def test_a_cross_origin_redirect_goes_through_the_egress_policy(monkeypatch):
    with App() as app, App() as elsewhere:
        monkeypatch.setenv("ASSAY_EGRESS_ALLOW", f"127.0.0.1:{app.port}")
        app.redirect_to = f"{elsewhere.url}/echo"
        spec = spec_of(app.url, [{"name": "r", "url": "/to/302", "headers": {"Authorization": "Bearer x"}}])
        metrics = run(run_load_shard(spec, 0, 1))
        assert metrics.requests["r"].errors_by_kind()["connect"] == 1
        assert "egress policy" in metrics.error_samples["connect"] and elsewhere.seen == []
        monkeypatch.delenv("ASSAY_EGRESS_ALLOW")
        metrics = run(run_load_shard(spec, 0, 1))
    assert metrics.total.error_count == 0 and metrics.total.redirects == 1
    # Credentials meant for one origin do not follow a redirect to another.
    assert "Authorization" not in elsewhere.seen[0]["headers"]


def test_template_helpers_render_per_request_and_bad_templates_are_refused_naming_the_field():
    with App() as app:
        spec = spec_of(
            app.url,
            [
                {
                    "name": "h",
                    "url": "/x?id={{uuid}}",
                    "headers": {"X-Sig": "{{hmac_sha256('k', user)}}", "X-User": "{{user}}"},
                }
            ],
            {"users": 2, "iterations": 2},
            parameterPools=[{"name": "u", "csv": "user\nann\n"}],
        )
        metrics = run(run_load_shard(spec, 0, 1))
    assert metrics.total.error_count == 0
    assert len({r["query"]["id"] for r in app.seen}) == 4
    expected = hmac.new(b"k", b"ann", hashlib.sha256).hexdigest()
    assert {r["headers"]["X-Sig"] for r in app.seen} == {expected}
    bad = spec_of("http://127.0.0.1:9", [{"url": "/x", "headers": {"X-A": "{{nope(1)}}"}}])
    with pytest.raises(LoadSpecError, match=r"spec.flows\[0\].requests\[0\].headers.X-A: unknown helper 'nope'"):
        run(run_load_shard(bad, 0, 1))


def test_status_header_json_and_body_assertions_count_as_assertion_errors_by_name():
    def request(name, source, comparison, value, prop=None):
        assertion = {"source": source, "comparison": comparison, "value": value}
        if prop:
            assertion["property"] = prop
        return {"name": name, "url": "/page", "assertions": [assertion]}

    requests = [
        request("status ok", "response_status", "equal_number", 200),
        request("status bad", "response_status", "equal_number", 201),
        request("header ok", "response_headers", "equal", "app", "X-Served-By"),
        request("header bad", "response_headers", "equal", "other", "x-served-by"),
        request("json ok", "response_json", "equal_number", 2, "items[1]"),
        request("json bad", "response_json", "equal", "false", "ok"),
        request("body ok", "response_text", "contains", '"items"'),
        request("body bad", "response_text", "contains", "missing"),
    ]
    with App() as app:
        metrics = run(run_load_shard(spec_of(app.url, requests, {"users": 1, "iterations": 2}), 0, 1))
    failed = {name: stats.errors_by_kind()["assertion"] for name, stats in metrics.requests.items()}
    assert failed == {
        "status ok": 0,
        "status bad": 2,
        "header ok": 0,
        "header bad": 2,
        "json ok": 0,
        "json bad": 2,
        "body ok": 0,
        "body bad": 2,
    }
    assert metrics.total.error_count == 8


def flow_of(think: dict) -> Flow:
    return Flow.model_validate({"name": "f", "think": think, "requests": [{"url": "/"}]})


def test_think_time_distributions_draw_within_their_bounds():
    assert think_sampler(Flow.model_validate({"name": "f", "thinkTime": "250ms", "requests": [{"url": "/"}]})) == 0.25
    assert think_sampler(flow_of({"mean": "2s"})) == 2.0
    uniform = think_sampler(flow_of({"distribution": "uniform", "min": "1s", "max": "3s"}))
    draws = [uniform() for _ in range(2000)]
    assert 1.0 <= min(draws) < 1.1 and 2.9 < max(draws) <= 3.0
    normal = think_sampler(flow_of({"distribution": "normal", "mean": "1s", "stdDev": "500ms", "max": "1500ms"}))
    draws = [normal() for _ in range(2000)]
    assert min(draws) >= 0 and max(draws) == 1.5 and 0.8 < sum(draws) / len(draws) < 1.0
    exponential = think_sampler(flow_of({"distribution": "exponential", "mean": "100ms"}))
    draws = [exponential() for _ in range(4000)]
    assert min(draws) >= 0 and 0.09 < sum(draws) / len(draws) < 0.11


@pytest.mark.parametrize(
    ("flow", "message"),
    [
        ({"think": {"distribution": "uniform", "min": "1s"}}, "uniform think time needs min and max"),
        ({"think": {"distribution": "uniform", "min": "3s", "max": "1s"}}, "min must not be greater than max"),
        ({"think": {"distribution": "normal", "mean": "1s"}}, "needs stdDev"),
        ({"think": {"distribution": "exponential"}}, "need mean"),
        ({"think": {"mean": "1s"}, "thinkTime": "1s"}, "thinkTime or think, not both"),
        ({"think": {"distribution": "poisson", "mean": "1s"}}, "distribution"),
        ({"pacing": "soon"}, "pacing"),
    ],
)
def test_invalid_think_times_are_refused(flow, message):
    with pytest.raises(ValidationError, match=message):
        Flow.model_validate({"name": "f", "requests": [{"url": "/"}], **flow})


def test_pacing_makes_each_closed_model_iteration_last_at_least_its_time():
    with App() as app:
        spec = spec_of(app.url, [{"url": "/page"}], {"users": 1, "iterations": 3}, flow={"pacing": "200ms"})
        started = time.monotonic()
        run(run_load_shard(spec, 0, 1))
        elapsed = time.monotonic() - started
    assert len(app.seen) == 3 and 0.6 <= elapsed < 1.5


def pool_spec(url: str, load: dict, rows: int, **pool) -> LoadTestSpec:
    csv = "n\n" + "".join(f"{i}\n" for i in range(rows))
    return spec_of(
        url,
        [{"url": "/page?n={{n}}"}],
        load,
        parameterPools=[{"name": "ids", "csv": csv, **pool}],
        shards=load.pop("shards", 1),
    )


def sent_rows(app: App) -> Counter:
    return Counter(r["query"]["n"] for r in app.seen)


def test_a_per_user_pool_gives_each_user_one_row_for_the_whole_run():
    with App() as app:
        spec = pool_spec(app.url, {"users": 4, "iterations": 3, "shards": 2}, 6, mode="per_user")
        for shard in (0, 1):
            run(run_load_shard(spec, shard, 2))
    # User k has row k, on whichever shard it runs.
    assert sent_rows(app) == {"0": 3, "1": 3, "2": 3, "3": 3}


def test_unique_rows_are_used_once_across_shards_and_the_run_stops_when_they_run_out():
    with App() as app:
        spec = pool_spec(app.url, {"users": 3, "iterations": 10, "shards": 3}, 7, mode="unique")
        results = [run(run_load_shard(spec, shard, 3)) for shard in range(3)]
    assert sent_rows(app) == {str(i): 1 for i in range(7)}
    assert not any(m.aborted for m in results) and sum(m.total.count for m in results) == 7


def test_unique_rows_running_out_fails_the_run_when_asked():
    with App() as app:
        spec = pool_spec(app.url, {"users": 2, "iterations": 5}, 3, mode="unique", whenExhausted="fail")
        metrics = run(run_load_shard(spec, 0, 1))
    assert metrics.aborted and metrics.total.count == 3
    assert metrics.abort_reason == "parameter pool 'ids': all 3 unique rows of shard 0 are used"


def test_a_shard_without_unique_rows_runs_no_iteration_rather_than_reuse_another_shards():
    with App() as app:
        spec = pool_spec(app.url, {"users": 3, "iterations": 2, "shards": 3}, 2, mode="unique")
        counts = [run(run_load_shard(spec, shard, 3)).total.count for shard in range(3)]
    assert counts == [1, 1, 0] and sent_rows(app) == {"0": 1, "1": 1}


@pytest.mark.parametrize(
    "load", [{"users": 2, "iterations": 5}, {"model": "open", "arrivalRate": 20, "duration": "1s"}]
)
def test_iterations_under_way_finish_when_the_unique_rows_run_out(load):
    with App() as app:
        spec = spec_of(
            app.url,
            [{"name": "a", "url": "/page?n={{n}}"}, {"name": "b", "url": "/slow?n={{n}}"}],
            load,
            parameterPools=[{"name": "ids", "csv": "n\n0\n1\n2\n", "mode": "unique"}],
        )
        metrics = run(run_load_shard(spec, 0, 1))
    assert not metrics.aborted
    assert sorted((r["path"], r["query"]["n"]) for r in app.seen) == sorted(
        (path, str(n)) for n in range(3) for path in ("/page", "/slow")
    )


@pytest.mark.parametrize(
    "method, headers, body, fills",
    [
        ("GET", {"X-User": "user-{{user}}"}, None, True),
        ("POST", {"Host": "{{host}}", "X-A": "ä {{user}}!", "X-B": "fixed", "X-C": "{{user}}{{user}}"}, "{}", True),
        ("PUT", {"User-Agent": "{{user}}"}, "", True),
        # Content-Length is the encoder's own: the general path drops the header.
        ("POST", {"Content-Length": "{{user}}", "X-A": "{{user}}"}, "abc", False),
    ],
)
def test_templated_header_values_fill_in_the_bytes_the_general_encoder_makes(method, headers, body, fills):
    from assay.crds.loadtest import LoadRequest
    from assay.runner.load.engine import _Request

    spec = {"url": "http://127.0.0.1:1/p?q=1", "method": method, "headers": headers, "body": body}
    request = _Request(LoadRequest.model_validate(spec), 0, None, 10.0, 5, "spec")
    assert (request.pieces is not None) is fills
    for variables in ({"user": "7", "host": "h:1"}, {"user": "Zoë ∑", "host": ""}, {}):
        made, general = request.prepare(variables), request._render(variables)
        assert made.data == general.data and made.head_end == general.head_end
        assert made.headers == general.headers and made.body == general.body
        assert (made.method, made.origin, made.target) == (general.method, general.origin, general.target)
    with pytest.raises(LoadSpecError) as fill:
        request.prepare({"user": "a\r\nX-Evil: 1", "host": "h"})
    with pytest.raises(LoadSpecError) as render:
        request._render({"user": "a\r\nX-Evil: 1", "host": "h"})
    assert str(fill.value) == str(render.value)


def test_assertions_with_fixed_values_judge_as_the_general_comparison():
    from assay.runner.load.checks import COMPARISONS, MISSING, _fixed

    actuals = [MISSING, None, True, 0, 17, 17.0, -2.5, "17", " 17 ", "abc", "", [], [17, "a"], {}, {"a": 1}]
    for comparison, compare in COMPARISONS.items():
        for expected in ["17", "17.0", "-2.5", "a", "", "abc", "x1", "nan"]:
            fixed = _fixed(comparison, expected)
            for actual in actuals:
                assert bool(fixed(actual)) == bool(compare(actual, expected)), (comparison, expected, actual)


def test_json_bodies_parse_as_json_loads_parses_them_whatever_their_encoding():
    from assay.runner.load.checks import _loads

    def outcome(parse, body):
        try:
            return parse(body)
        except ValueError as exc:
            return type(exc)

    bodies = [b'{"a": 1}', b"  [1]", b"[1] ", b"1", b"12", b'"\xed\xa0\x80"', b'{"a": 1} x', b'{"a": 1}}', b"[1,]"]
    bodies += [
        b'{"a": "\\x"}',
        b"nul",
        b"-Infinity",
        b"\xff\xfe",
        b"{\x00",
        b"",
        b"\xc3(",
        b'{"a": {"b": [1, 2.5e3, null]}}\n',
        b" \t\r\n",
        b"\n{} \n",
        b"{}\x0c",
    ]
    bodies += [codecs.BOM_UTF8 + b'{"a":1}'] + ['{"a":"ü"}'.encode(e) for e in ("utf-16", "utf-16-le", "utf-32")]
    for body in bodies:
        assert outcome(_loads, body) == outcome(json.loads, body), body
