"""The dashboard in real headless Chromium, over real runs: a LoadTest, a Monitor run three
times and a TestSuite, all run by the real operator against a loopback target, their results
uploaded to the real gateway that serves the dashboard. The browser signs in through the
form (a wrong secret first), sees the tables, badges and the response-time chart of its own
namespace only, downloads a report archive through the dashboard, and reports no console
error. The screenshot is saved under the test's temporary folder and copied to
/tmp/assay-dashboard.png; its path is printed.
"""

from __future__ import annotations

import itertools
import json
import shutil
import sys
import time
import urllib.request
import uuid
from contextlib import closing
from pathlib import Path

import pytest
import websocket

from assay.operator.names import run_id_for_request
from tests.browser.headless import Chromium, png_pixels, png_size
from tests.cluster.test_dashboard_api import monitor_manifest, signed_in
from tests.conftest import GatewayProcess, OperatorProcess
from tests.support.credentials import create_credential, kubectl_json, make_namespace
from tests.support.targets import CountingTarget

pytestmark = [pytest.mark.browser, pytest.mark.cluster, pytest.mark.timeout(600)]

SCREENSHOT_COPY = Path("/tmp/assay-dashboard.png")


class DevToolsPage:
    """The browser's page over the DevTools protocol, for what `Chromium.render` does not do:
    typing into a form, submitting it, and awaiting a promise in the page."""

    def __init__(self, chromium: Chromium):
        with urllib.request.urlopen(f"http://127.0.0.1:{chromium.port}/json/list", timeout=10) as response:
            page = next(t for t in json.load(response) if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30, suppress_origin=True)
        self.ids = itertools.count(1_000_000)
        self.events: list[dict] = []
        self.call("Page.enable")
        self.call("Runtime.enable")

    def errors(self) -> list[str]:
        """Uncaught exceptions and console errors seen so far."""
        out = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                out.append(str(params["exceptionDetails"].get("exception", {}).get("description")))
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                out.append(" ".join(str(a.get("value", a.get("description"))) for a in params.get("args", [])))
        return out

    def poll(self, expression: str, done, timeout: float) -> object:
        """Evaluate until `done(value)`, reading the page's events meanwhile; the last value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if done(value) or time.monotonic() > deadline:
                return value
            time.sleep(1)

    def close(self) -> None:
        self.ws.close()

    def call(self, method: str, **params) -> dict:
        call_id = next(self.ids)
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for_load(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError("the page did not load")
            self.events.append(json.loads(self.ws.recv()))

    def navigate(self, url: str) -> None:
        self.events.clear()
        self.call("Page.navigate", url=url)
        self.wait_for_load()

    def evaluate(self, expression: str, await_promise: bool = False):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=await_promise)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def submit_login(self, client_id: str, secret: str) -> None:
        self.events.clear()
        self.evaluate(f"""(() => {{
            document.getElementById('client_id').value = {json.dumps(client_id)};
            document.getElementById('client_secret').value = {json.dumps(secret)};
            document.querySelector('form button[type=submit]').click();
        }})()""")
        self.wait_for_load()


# --- the runs ---------------------------------------------------------------------------------------


def suite_manifest(name: str, url: str) -> str:
    return json.dumps(
        {
            "apiVersion": "assay.dev/v1alpha1",
            "kind": "TestSuite",
            "metadata": {"name": name},
            "spec": {
                "parameters": {"base": url},
                "flows": [
                    {
                        "name": "browse",
                        "requests": [
                            {
                                "name": "home",
                                "url": "{{base}}/",
                                "assertions": [{"source": "response_status", "comparison": "equal", "value": 200}],
                            }
                        ],
                    },
                    {"name": "buy", "requests": [{"method": "POST", "url": "{{base}}/orders", "body": "{}"}]},
                ],
            },
        }
    )


def loadtest_manifest(name: str, url: str) -> str:
    return json.dumps(
        {
            "apiVersion": "assay.dev/v1alpha1",
            "kind": "LoadTest",
            "metadata": {"name": name},
            "spec": {
                "description": "checkout against a loopback target",
                "shards": 1,
                "baseUrl": url,
                "load": {"users": 2, "iterations": 5},
                "flows": [
                    {"name": "browse", "requests": [{"name": "home", "url": "/"}, {"name": "item", "url": "/items/1"}]}
                ],
            },
        }
    )


def request_run(cluster, namespace: str, kind: str, name: str, value: dict) -> str:
    cluster.kubectl(
        "annotate", kind, name, "-n", namespace, f"assay.dev/run-request={json.dumps(value)}", "--overwrite"
    )
    uid = kubectl_json(cluster, "get", kind, name, "-n", namespace)["metadata"]["uid"]
    return run_id_for_request(name, uid, value["id"])


def monitor_run_finished(cluster, namespace: str, run_id: str):
    def check():
        last = ((kubectl_json(cluster, "get", "monitor", "health", "-n", namespace) or {}).get("status") or {}).get(
            "lastRun"
        ) or {}
        return last if last.get("runId") == run_id and last.get("result") else None

    return check


@pytest.fixture(scope="module")
def gateway(cluster, tmp_path_factory):
    """One gateway for the module: the runs behind the page take a while to make."""
    folder = tmp_path_factory.mktemp("gateway")
    proc = GatewayProcess(cluster, folder / "store", folder / "gateway.log").start()
    yield proc
    proc.stop()
    print(proc.log()[-3000:], file=sys.stderr)


@pytest.fixture(scope="module")
def project(cluster, gateway, tmp_path_factory):
    """Namespace A of an organization with real runs of every kind, namespace B of the same
    organization with a Monitor A's credential must not see; (namespaces, credential)."""
    org = f"org-{uuid.uuid4().hex[:8]}"
    namespace = make_namespace(cluster, f"t-{uuid.uuid4().hex[:10]}", {"assay.dev/org": org})
    other = make_namespace(cluster, f"{namespace}-b", {"assay.dev/org": org})
    operator = OperatorProcess(
        cluster, tmp_path_factory.mktemp("operator") / "operator.log", [namespace, other], gateway
    ).start()
    try:
        with CountingTarget(delay=0.005) as target:
            credential = create_credential(cluster, namespace, "dashboard-viewer", scopes=("LOADTEST_LIST",))
            for manifest in (
                monitor_manifest("health", target.url),
                suite_manifest("shop", target.url),
                loadtest_manifest("checkout", target.url),
            ):
                cluster.kubectl("apply", "-n", namespace, "-f", "-", input=manifest)
            cluster.kubectl("apply", "-n", other, "-f", "-", input=monitor_manifest("hidden", target.url))
            suite_run = request_run(cluster, namespace, "testsuite", "shop", {"id": "s-1"})
            # Two passing monitor runs, then one against a closed port that fails.
            for request_id, params in (("m-1", {}), ("m-2", {}), ("m-3", {"base": "http://127.0.0.1:9"})):
                run_id = request_run(cluster, namespace, "monitor", "health", {"id": request_id, "params": params})
                cluster.wait_for(
                    f"monitor run {request_id}", monitor_run_finished(cluster, namespace, run_id), timeout=120
                )

            with closing(signed_in(cluster, gateway, *credential)) as api:

                def everything_in():
                    body = api.get("/dashboard/api/overview").json()
                    loadtests, suites = body["loadTests"], body["suiteRuns"]
                    done = (
                        loadtests
                        and loadtests[0]["reports"]
                        and loadtests[0]["state"] == "passed"
                        and any(r["runId"] == suite_run and r["state"] == "passed" for r in suites)
                    )
                    return body if done else None

                overview = cluster.wait_for(
                    "the load test's report and the suite run", everything_in, timeout=240, interval=1
                )
            yield {"namespace": namespace, "other": other, "credential": credential, "overview": overview}
    finally:
        operator.stop()
        print(operator.log()[-3000:], file=sys.stderr)
        for created in (namespace, other):
            cluster.kubectl("delete", "namespace", created, "--wait=false", check=False)


def test_the_dashboard_renders_real_runs_without_errors_after_signing_in_through_the_form(
    cluster, gateway, project, browser, tmp_path
):
    namespace, (client_id, secret) = project["namespace"], project["credential"]
    overview = project["overview"]
    [monitor] = overview["monitors"]
    assert [r["result"] for r in monitor["runs"]] == ["failed", "passed", "passed"]
    assert len(monitor["responseTimes"]) == 3 and all(p["ms"] >= 0 for p in monitor["responseTimes"])

    page = DevToolsPage(browser)
    try:
        # Signing in: a wrong secret gets the form again with the error; the right one the page.
        page.navigate(gateway.url + "/dashboard")
        assert page.evaluate("location.pathname") == "/dashboard/login"
        page.submit_login(client_id, secret[:-3] + "abc")
        assert page.evaluate("location.pathname") == "/dashboard/login"
        assert page.evaluate("document.querySelector('.error').textContent") == "Wrong client id or secret."
        assert page.evaluate("document.cookie") == ""
        page.submit_login(client_id, secret)
        assert page.evaluate("location.pathname") == "/dashboard"
        assert page.evaluate("document.cookie") == "", "the session cookie is HttpOnly"

        # The report archive downloads through the dashboard with the session.
        download = page.evaluate(
            """(async () => {
            const link = document.querySelector('#loadtests a.archive');
            const answer = await fetch(link.href);
            const bytes = new Uint8Array(await answer.arrayBuffer());
            return {href: link.getAttribute('href'), status: answer.status, type: answer.headers.get('content-type'),
                    zip: bytes[0] === 0x50 && bytes[1] === 0x4b, size: bytes.length};
        })()""",
            await_promise=True,
        )
    finally:
        page.close()
    assert download["href"] == f"/dashboard/api/namespaces/{namespace}/loadtests/1/reports/1", download
    assert download["status"] == 200 and download["type"] == "application/zip" and download["zip"], download

    rendered = browser.render(
        gateway.url + "/dashboard",
        height=1000,
        evaluate={
            "title": "document.title",
            "loadTests": "[...document.querySelectorAll('#loadtests tbody tr')].map(r => r.dataset.name)",
            "loadTestBadges": "[...document.querySelectorAll('#loadtests tbody .badge')].map(b => b.textContent)",
            "monitors": "[...document.querySelectorAll('article.monitor')].map(a => a.dataset.name)",
            "chartPoints": "document.querySelectorAll('article.monitor svg.chart circle.point').length",
            "failedPoints": "document.querySelectorAll('svg.chart circle.point.failed').length",
            "chartLine": "document.querySelectorAll('svg.chart polyline.line').length",
            "monitorBadge": "document.querySelector('article.monitor header .badge').textContent",
            "suiteRuns": "[...document.querySelectorAll('#suiteruns tbody tr')].map(r => "
            "[r.cells[1].textContent, r.cells[3].textContent, r.cells[4].textContent])",
            "relativeTimes": "[...document.querySelectorAll('#suiteruns time')].map(t => t.textContent)",
            "namespaces": "[...document.querySelectorAll('#namespace option')].map(o => o.value)",
            "text": "document.body.innerText",
        },
    )
    screenshot = tmp_path / "dashboard.png"
    screenshot.write_bytes(rendered.screenshot)
    shutil.copyfile(screenshot, SCREENSHOT_COPY)
    print(f"\nscreenshot: {screenshot} (copied to {SCREENSHOT_COPY})")

    assert rendered.problems == [], f"the page reported errors: {rendered.problems}"
    foreign = [u for u in rendered.requested_urls if not u.startswith((gateway.url + "/dashboard", "data:"))]
    assert foreign == [], f"the page asked for {foreign}"
    values = rendered.values
    assert values["title"] == "Assay dashboard"
    assert values["loadTests"] == [f"{namespace}/checkout"]
    assert values["loadTestBadges"] == ["passed"]
    assert values["monitors"] == [f"{namespace}/health"]
    assert values["chartPoints"] == 3 and values["failedPoints"] == 1 and values["chartLine"] == 1
    assert values["monitorBadge"] == "failed"
    assert values["suiteRuns"] == [["shop", "passed", "2/2"]]
    assert all(t.endswith("ago") or t == "just now" for t in values["relativeTimes"]), values["relativeTimes"]
    assert values["namespaces"] == ["", namespace]
    assert project["other"] not in values["text"] and "hidden" not in values["text"]

    width, height = png_size(rendered.screenshot)
    assert width == 1280 and height >= 1000
    _, _, pixels = png_pixels(rendered.thumbnail)
    ink = [p for p in pixels if min(p) < 235]
    assert 0.03 < len(ink) / len(pixels) < 0.7, "the screenshot is (almost) blank or (almost) all dark"
    assert any(max(p) - min(p) > 80 for p in pixels), "no coloured pixel: badges and chart are missing"


def test_the_open_page_picks_up_a_new_monitor_run_from_the_json_api_without_reloading(
    cluster, gateway, project, browser
):
    namespace, (client_id, secret) = project["namespace"], project["credential"]
    page = DevToolsPage(browser)
    try:
        page.navigate(gateway.url + "/dashboard")
        if page.evaluate("location.pathname") == "/dashboard/login":  # no session left by another test
            page.submit_login(client_id, secret)
        assert page.evaluate("location.pathname") == "/dashboard"
        page.evaluate("window.stillTheSamePage = true")
        before = page.evaluate("document.body.dataset.fingerprint")
        runs = "document.querySelector('article.monitor .facts').textContent.match(/(\\d+) runs/)[1] * 1"
        points = "document.querySelectorAll('svg.chart circle.point').length"
        shown = page.evaluate(f"[{runs}, {points}]")
        assert shown[0] >= 3 and shown[0] == shown[1], shown

        run_id = request_run(cluster, namespace, "monitor", "health", {"id": "m-4"})
        cluster.wait_for("monitor run m-4", monitor_run_finished(cluster, namespace, run_id), timeout=120)
        state = page.poll(
            f"[{runs}, {points}, window.stillTheSamePage === true, document.body.dataset.fingerprint]",
            lambda v: v[0] == shown[0] + 1,
            timeout=90,
        )
        assert state[:3] == [shown[0] + 1, shown[1] + 1, True], state
        assert state[3] != before
        assert page.errors() == []
    finally:
        page.close()
