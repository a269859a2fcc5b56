"""TestSuite runs against a real HTTP server on loopback: flow selection, parameters,
extractions, parameter pools, stop-on-failure, cookies and Loadmill's result shapes."""

from __future__ import annotations

import asyncio
import itertools
import threading
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from assay.crds import TestSuite
from assay.runner.apitest.suite import SuiteInputError, SuiteRunResult, format_ms, parse_pool_csv, run_suite

SUITE_RUN_KEYS = {
    "id",
    "description",
    "startTime",
    "endTime",
    "conf",
    "status",
    "displayName",
    "testSuiteId",
    "testSuiteFlowRuns",
    "progress",
    "successRate",
    "avgResTime",
}
SUITE_FLOW_ENTRY_KEYS = {
    "result",
    "redactableResult",
    "requests",
    "id",
    "startTime",
    "endTime",
    "conf",
    "description",
    "status",
    "numOfRequests",
    "avgResTime",
    "duration",
}
FLOW_RUN_KEYS = {"id", "description", "conf", "status", "startTime", "testSuiteFlowId", "testSuiteId", "requests"}
REQUEST_KEYS = {"description", "method", "url", "status", "statusCode", "resTime", "assertions", "error"}

UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens there, so connecting is refused


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: str

    @property
    def query(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}


class RecordingTarget:
    """A threaded HTTP server on 127.0.0.1 that records every request it receives.

    `/login?u=NAME` answers with header `X-Token: tok-NAME` and cookie `session=s-NAME`;
    `/status/CODE` answers CODE; anything else answers 200 `{"ok": true}`."""

    def __init__(self):
        self.received: list[Received] = []
        lock = threading.Lock()
        target = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                with lock:
                    target.received.append(
                        Received(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                path = urlsplit(self.path).path
                status, extra = 200, {}
                if path == "/login":
                    user = parse_qs(urlsplit(self.path).query).get("u", ["anon"])[0]
                    extra = {"X-Token": f"tok-{user}", "Set-Cookie": f"session=s-{user}; Path=/"}
                elif path.startswith("/status/"):
                    status = int(path.rsplit("/", 1)[1])
                payload = b'{"ok": true}'
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def paths(self) -> list[str]:
        return [r.path for r in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def target():
    server = RecordingTarget()
    yield server
    server.close()


def suite(flows: list[dict], **spec) -> TestSuite:
    return TestSuite.model_validate(
        {
            "metadata": {"name": "checkout", "uid": "6f1c2c52-9a1e-4b57-9d0c-1d5e8f0c1a11"},
            "spec": {"description": "Checkout API", **spec, "flows": flows},
        }
    )


def get(url: str, **request) -> dict:
    return {"method": "GET", "url": url, **request}


def run(test_suite: TestSuite, **kwargs):
    return asyncio.run(run_suite(test_suite, **kwargs))


def ticking_clock(step: float = 0.25, start: float = 1_700_000_000.0):
    """A clock that moves `step` seconds each time it is read."""
    ticks = itertools.count()
    return lambda: start + step * next(ticks)


# --- which flows run --------------------------------------------------------------------------


def test_only_flows_with_the_ci_toggle_run_unless_force_all_flows(target):
    s = suite(
        [
            {"name": "a", "requests": [get(f"{target.url}/a")]},
            {"name": "b", "ciEnabled": False, "requests": [get(f"{target.url}/b")]},
            {"name": "c", "requests": [get(f"{target.url}/c")]},
        ]
    )
    default = run(s)
    assert target.paths() == ["/a", "/c"]
    assert [f.description for f in default.flow_runs] == ["a", "c"]
    assert default.to_loadmill()["progress"] == "2/2"

    target.received.clear()
    forced = run(s, force_all_flows=True)
    assert target.paths() == ["/a", "/b", "/c"]
    assert [f.description for f in forced.flow_runs] == ["a", "b", "c"]
    assert forced.passed


def test_labels_narrow_the_run_to_flows_carrying_one_and_suite_labels_count_for_every_flow(target):
    flows = [
        {"name": "a", "labels": ["smoke"], "requests": [get(f"{target.url}/a")]},
        {"name": "b", "labels": ["nightly"], "requests": [get(f"{target.url}/b")]},
        {"name": "c", "ciEnabled": False, "labels": ["smoke"], "requests": [get(f"{target.url}/c")]},
    ]
    assert [f.description for f in run(suite(flows), labels=["smoke"]).flow_runs] == ["a"]
    forced = run(suite(flows), labels=["smoke", "other"], force_all_flows=True)
    assert [f.description for f in forced.flow_runs] == ["a", "c"]
    assert [f.description for f in run(suite(flows, labels=["team"]), labels=["team"]).flow_runs] == ["a", "b"]
    target.received.clear()
    with pytest.raises(SuiteInputError, match="label"):
        run(suite(flows), labels=["nope"])
    assert target.received == []


def test_a_named_pool_is_used_only_by_flows_whose_pool_has_that_name(target):
    s = suite(
        [
            {
                "name": "staging",
                "parameterPool": {"name": "staging-users", "csv": "u\nann\nbob\n"},
                "requests": [get("{{host}}/s?u={{u}}")],
            },
            {
                "name": "prod",
                "parameters": {"u": "default"},
                "parameterPool": {"name": "prod-users", "csv": "u\ncid\n"},
                "requests": [get("{{host}}/p?u={{u}}")],
            },
        ],
        parameters={"host": target.url},
    )
    result = run(s, pool="staging-users")
    assert [r.path for r in target.received] == ["/s?u=ann", "/s?u=bob", "/p?u=default"]
    assert [f.description for f in result.flow_runs] == ["staging (row 1/2)", "staging (row 2/2)", "prod"]
    assert "parameterPool" not in result.flow_runs[2].conf


def test_a_failed_flow_run_reports_its_requests_as_loadmills_cli_reads_them(target):
    s = suite(
        [
            {
                "name": "f",
                "stopOnFailure": False,
                "requests": [
                    get(
                        f"{target.url}/ok",
                        name="check ok",
                        assertions=[
                            {"source": "response_json", "property": "ok", "comparison": "equal", "value": "false"},
                            {"source": "response_status", "comparison": "equal", "value": 200},
                        ],
                    ),
                    get(f"{target.url}/status/500"),
                    get(f"{target.url}/fine"),
                ],
            }
        ]
    )
    entry = run(s).flow_runs[0].to_suite_entry()
    result, redactable = entry["result"], entry["redactableResult"]
    assert [r["url"] for r in result["resolvedRequests"]] == [
        f"{target.url}/ok",
        f"{target.url}/status/500",
        f"{target.url}/fine",
    ]
    assert result["resolvedRequests"][0]["assert"] == {
        "0": {"check": "response_json.ok", "equals": "false"},
        "1": {"check": "response_status", "equals": 200},
    }
    assert result["failures"] == {
        "0": {"numFailures": 1, "histogram": {"0": 1}},
        "1": {"numFailures": 1, "histogram": {"status 500": 1}},
    }
    assert redactable[0] == {"postParameters": [{"response_json.ok": "true"}, {"response_status": "200"}]}
    assert [r["status"] for r in entry["requests"]] == ["FAILED", "FAILED", "PASSED"]


def test_junit_from_the_uploaded_document_is_the_runs_own(target):
    s = suite(
        [
            {"name": "good", "requests": [get(f"{target.url}/a")]},
            {"name": "bad", "requests": [get(f"{target.url}/status/503")]},
        ]
    )
    result = run(s, run_id="run-9")
    again = SuiteRunResult.from_loadmill(result.to_loadmill(), "checkout")
    assert again.junit_cases() == result.junit_cases()
    assert again.junit_cases()[1].failure.endswith("status 503")


def test_a_suite_without_any_ci_flow_is_refused_before_sending_anything(target):
    s = suite([{"name": "a", "ciEnabled": False, "requests": [get(f"{target.url}/a")]}])
    with pytest.raises(SuiteInputError, match="forceAllFlows"):
        run(s)
    assert target.received == []


# --- parameters -------------------------------------------------------------------------------


def test_flow_parameters_override_the_suites_and_override_parameters_win(target):
    s = suite(
        [
            {
                "name": "p",
                "parameters": {"level": "flow", "pick": "flow"},
                "requests": [
                    get(
                        "{{host}}/p?level={{level}}&pick={{pick}}&who={{who}}",
                        headers={"X-Pick": "{{pick}}"},
                        body=None,
                    )
                ],
            }
        ],
        parameters={"host": target.url, "level": "suite", "pick": "suite", "who": "suite"},
    )
    run(s, override_parameters={"pick": "override"})
    [received] = target.received
    assert received.query == {"level": "flow", "pick": "override", "who": "suite"}
    assert received.headers["x-pick"] == "override"


def test_an_extraction_sets_a_parameter_for_the_later_requests_of_its_flow_only(target):
    s = suite(
        [
            {
                "name": "login",
                "requests": [
                    {
                        "method": "POST",
                        "url": "{{host}}/login?u=alice",
                        "body": "hello",
                        "extract": [{"name": "token", "source": "response_headers", "property": "X-Token"}],
                    },
                    get("{{host}}/me?t={{token}}", headers={"Authorization": "Bearer {{token}}"}),
                ],
            },
            {"name": "other flow", "requests": [get("{{host}}/other?t={{token}}")]},
        ],
        parameters={"host": target.url, "token": "none"},
    )
    result = run(s)
    assert result.passed, result.to_loadmill()
    login, me, other = target.received
    assert (login.method, login.body) == ("POST", "hello")
    assert me.query == {"t": "tok-alice"} and me.headers["authorization"] == "Bearer tok-alice"
    assert other.query == {"t": "none"}  # extractions are flow-scoped, as in Loadmill


def test_a_parameter_pool_runs_the_flow_once_per_row_with_that_rows_values(target):
    s = suite(
        [
            {
                "name": "login",
                "parameterPool": {"name": "users", "csv": "user,role\nalice,admin\n\nbob,viewer\n"},
                "requests": [get("{{host}}/login?u={{user}}&r={{role}}")],
            },
            {"name": "after", "requests": [get("{{host}}/after")]},
        ],
        parameters={"host": target.url},
    )
    result = run(s, run_id="run-1")
    assert [r.query for r in target.received[:2]] == [{"u": "alice", "r": "admin"}, {"u": "bob", "r": "viewer"}]
    assert target.paths()[2] == "/after"
    assert [f.description for f in result.flow_runs] == ["login (row 1/2)", "login (row 2/2)", "after"]
    assert len({f.id for f in result.flow_runs}) == 3
    assert result.flow_runs[1].conf["parameterPool"] == {"name": "users", "row": 2, "rows": 2}
    assert result.flow_runs[1].conf["parameters"]["user"] == "bob"
    assert result.to_loadmill()["progress"] == "3/3"


def test_pool_values_win_over_override_parameters_as_in_loadmill(target):
    s = suite(
        [
            {
                "name": "f",
                "parameterPool": {"name": "users", "csv": "user\ncarol\n"},
                "requests": [get(f"{target.url}/x?u={{{{user}}}}")],
            }
        ]
    )
    run(s, override_parameters={"user": "zed"})
    assert target.received[0].query == {"u": "carol"}


def test_a_pool_held_in_a_config_map_must_be_resolved_before_the_run(target):
    s = suite(
        [
            {
                "name": "f",
                "parameterPool": {"name": "users", "configMapRef": {"name": "cm", "key": "k"}},
                "requests": [get(f"{target.url}/x")],
            }
        ]
    )
    with pytest.raises(SuiteInputError, match=r"flows\[0\].*'users'.*inline CSV only"):
        run(s)
    assert target.received == []


@pytest.mark.parametrize(
    "text, problem",
    [
        ("user,role\nalice\n", "line 2 has 1 fields"),
        ("user\n", "no rows"),
        ("", "empty"),
        ("user,,role\na,b,c\n", "empty column"),
        ("user,user\na,b\n", "repeats"),
    ],
)
def test_malformed_pools_are_refused_with_the_reason(text, problem):
    with pytest.raises(SuiteInputError, match=problem):
        parse_pool_csv(text, where="flows[0]")


# --- failures ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stop_on_failure, expected_paths",
    [
        (True, ["/one", "/status/500"]),
        (False, ["/one", "/status/500", "/three"]),
    ],
)
def test_stop_on_failure_skips_the_rest_of_the_flow(target, stop_on_failure, expected_paths):
    s = suite(
        [
            {
                "name": "f",
                "stopOnFailure": stop_on_failure,
                "requests": [get(f"{target.url}/one"), get(f"{target.url}/status/500"), get(f"{target.url}/three")],
            }
        ]
    )
    result = run(s)
    assert target.paths() == expected_paths
    [flow] = result.flow_runs
    assert flow.status == "FAILED" and not result.passed
    assert [r.status for r in flow.requests] == ["PASSED", "FAILED", "SKIPPED" if stop_on_failure else "PASSED"]
    assert flow.requests[1].error == "status 500"
    assert flow.to_suite_entry()["numOfRequests"] == 3


def test_a_failing_assertion_fails_its_flow_and_the_suite(target):
    s = suite(
        [
            {
                "name": "good",
                "requests": [
                    get(
                        f"{target.url}/ok",
                        assertions=[{"source": "response_status", "comparison": "equal", "value": 200}],
                    )
                ],
            },
            {
                "name": "bad",
                "requests": [
                    get(
                        f"{target.url}/ok",
                        assertions=[{"source": "response_status", "comparison": "equal", "value": 201}],
                    )
                ],
            },
        ]
    )
    result = run(s)
    out = result.to_loadmill()
    assert out["status"] == "FAILED" and not result.passed
    assert [f["status"] for f in out["testSuiteFlowRuns"]] == ["PASSED", "FAILED"]
    assert out["successRate"] == "50%"
    [assertion] = result.flow_runs[1].to_loadmill()["requests"][0]["assertions"]
    assert assertion["result"] == "fail"
    assert str(assertion["actualValue"]) == "200"


def test_an_asserted_error_status_is_the_assertions_call(target):
    s = suite(
        [
            {
                "name": "not found is expected",
                "requests": [
                    get(
                        f"{target.url}/status/404",
                        assertions=[{"source": "response_status", "comparison": "equal", "value": 404}],
                    )
                ],
            }
        ]
    )
    assert run(s).passed


def test_an_unreachable_target_fails_the_flow_with_the_error():
    s = suite([{"name": "down", "requests": [get(f"{UNREACHABLE}/x"), get(f"{UNREACHABLE}/y")]}])
    result = run(s)
    assert result.status == "FAILED"
    [flow] = result.flow_runs
    first = flow.to_loadmill()["requests"][0]
    assert first["status"] == "FAILED" and first["statusCode"] is None and first["error"]
    assert flow.requests[1].status == "SKIPPED"
    assert flow.failure_text().startswith(f"GET {UNREACHABLE}/x: ")


def test_a_broken_template_fails_the_request_without_sending_it(target):
    s = suite([{"name": "f", "requests": [get(f"{target.url}/x"), get(f"{target.url}/x?v={{{{oops")]}])
    result = run(s)
    assert target.paths() == ["/x"]
    broken = result.flow_runs[0].requests[1]
    assert broken.status == "FAILED" and "flows[0].requests[1].url" in broken.error


def test_a_relative_url_is_refused_with_a_hint():
    result = run(suite([{"name": "f", "requests": [get("/relative")]}]))
    assert "baseUrl" in result.flow_runs[0].requests[0].error


# --- cookies ----------------------------------------------------------------------------------


@pytest.mark.parametrize("use_cookies", [True, False])
def test_use_cookies_shares_a_jar_within_a_flow_run_only(target, use_cookies):
    s = suite(
        [
            {"name": "a", "requests": [get("{{host}}/login?u=alice"), get("{{host}}/cart")]},
            {"name": "b", "requests": [get("{{host}}/cart")]},
        ],
        parameters={"host": target.url},
        conf={"useCookies": use_cookies},
    )
    result = run(s)
    assert result.to_loadmill()["conf"] == {"useCookies": use_cookies}
    _, cart_a, cart_b = target.received
    assert cart_a.headers.get("cookie") == ("session=s-alice" if use_cookies else None)
    assert "cookie" not in cart_b.headers


# --- shapes -----------------------------------------------------------------------------------


def test_result_shapes_have_loadmills_keys(target):
    s = suite(
        [
            {
                "name": "f",
                "id": "flow-1",
                "requests": [
                    get(
                        f"{target.url}/x",
                        assertions=[{"source": "response_status", "comparison": "equal", "value": 200}],
                    )
                ],
            }
        ]
    )
    result = run(s, additional_description="build 42")
    out = result.to_loadmill()
    assert set(out) == SUITE_RUN_KEYS
    [entry] = out["testSuiteFlowRuns"]
    assert set(entry) == SUITE_FLOW_ENTRY_KEYS
    flow = result.flow_runs[0].to_loadmill()
    assert set(flow) == FLOW_RUN_KEYS
    assert set(flow["requests"][0]) == REQUEST_KEYS
    assert set(flow["requests"][0]["assertions"][0]) == {
        "source",
        "property",
        "comparison",
        "targetValue",
        "actualValue",
        "result",
        "error",
    }
    assert out["description"] == "Checkout API build 42"
    assert out["testSuiteId"] == flow["testSuiteId"] == "6f1c2c52-9a1e-4b57-9d0c-1d5e8f0c1a11"
    assert flow["testSuiteFlowId"] == "flow-1"
    assert out["status"] == entry["status"] == flow["status"] == "PASSED"
    assert isinstance(out["startTime"], int) and out["endTime"] >= out["startTime"]
    assert entry["conf"]["requests"][0]["url"] == f"{target.url}/x"
    assert flow["requests"][0]["statusCode"] == 200 and isinstance(flow["requests"][0]["resTime"], int)


def test_success_rate_progress_and_times_are_formatted_as_loadmill_does(target):
    s = suite(
        [
            {"name": "one", "requests": [get(f"{target.url}/1")]},
            {"name": "two", "requests": [get(f"{target.url}/2")]},
            {"name": "three", "requests": [get(f"{target.url}/status/503")]},
        ]
    )
    # The clock is read at the suite's start, each flow run's start and end, and the suite's end.
    out = run(s, clock=ticking_clock(0.25)).to_loadmill()
    assert out["progress"] == "3/3"
    assert out["successRate"] == "67%"
    assert out["avgResTime"] == "250 ms"
    assert [f["duration"] for f in out["testSuiteFlowRuns"]] == ["250 ms"] * 3
    assert out["startTime"] == 1_700_000_000_000
    assert out["endTime"] == 1_700_000_000_000 + 7 * 250
    assert all(isinstance(f["avgResTime"], int) for f in out["testSuiteFlowRuns"])
    assert format_ms(421.6) == "422 ms"


def test_flow_run_ids_derive_from_the_run_id_so_a_reupload_is_idempotent(target):
    s = suite(
        [{"name": "a", "requests": [get(f"{target.url}/a")]}, {"name": "b", "requests": [get(f"{target.url}/b")]}]
    )
    first, again, other = run(s, run_id="r-1"), run(s, run_id="r-1"), run(s, run_id="r-2")
    assert first.id == "r-1"
    assert [f.id for f in first.flow_runs] == [f.id for f in again.flow_runs]
    assert not {f.id for f in first.flow_runs} & {f.id for f in other.flow_runs}
    assert all(uuid.UUID(f.id).version == 4 for f in first.flow_runs)
    fresh = run(s)
    assert uuid.UUID(fresh.id).version == 4 and fresh.flow_runs[0].id != fresh.flow_runs[1].id


def test_progress_is_reported_as_flow_runs_start_and_finish(target):
    s = suite(
        [
            {"name": "a", "requests": [get(f"{target.url}/a")]},
            {"name": "b", "requests": [get(f"{target.url}/status/500")]},
        ]
    )
    events = []
    run(s, on_progress=events.append)
    assert [(e["event"], e["description"], e["progress"]) for e in events] == [
        ("flow_started", "a", "0/2"),
        ("flow_finished", "a", "1/2"),
        ("flow_started", "b", "1/2"),
        ("flow_finished", "b", "2/2"),
    ]
    assert [e.get("status") for e in events] == [None, "PASSED", None, "FAILED"]
    assert "status 500" in events[3]["failure"]


def test_junit_cases_are_one_per_flow_run(target):
    s = suite(
        [
            {"name": "a", "requests": [get(f"{target.url}/a")]},
            {"name": "b", "requests": [get(f"{target.url}/status/500")]},
        ]
    )
    cases = run(s).junit_cases()
    assert [(c.classname, c.name, c.failure is None) for c in cases] == [
        ("checkout", "a", True),
        ("checkout", "b", False),
    ]
    assert "status 500" in cases[1].failure
    assert cases[1].details.startswith(f"FAILED GET {target.url}/status/500 -> 500")
