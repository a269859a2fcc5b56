"""A load test's dashboard page in real headless Chromium, over real runs: the operator runs a
LoadTest with a ramp and a hold for some seconds against a loopback target, its shards push
progress to the real gateway, and the open page's charts gain points without a reload; when
it ends the page shows the report's tables. A copy run through the XTC API is then compared
with it in the page. Another tenant gets 404 for the page and its JSON. No console error, no
request leaves the gateway's /dashboard. Screenshots go to the test's temporary folder (and
/tmp/assay-loadtest-*.png); page weight and time to first render are printed.
"""

from __future__ import annotations

import json
import shutil
import sys
import uuid
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from tests.browser.test_dashboard import DevToolsPage
from tests.cluster.test_dashboard_api import signed_in
from tests.conftest import GatewayProcess, OperatorProcess
from tests.support.credentials import bearer, create_credential, kubectl_json, make_namespace, request_token
from tests.support.targets import CountingTarget

pytestmark = [pytest.mark.browser, pytest.mark.cluster, pytest.mark.timeout(600)]

NAME = "checkout"
CRITERIA = ["p95 < 2s", "error_rate < 5%", "rps >= 1"]


def loadtest_manifest(url: str) -> str:
    return json.dumps(
        {
            "apiVersion": "assay.dev/v1alpha1",
            "kind": "LoadTest",
            "metadata": {"name": NAME},
            "spec": {
                "description": "a ramp and a hold against a loopback target",
                "shards": 1,
                "baseUrl": url,
                "load": {"users": 3, "rampUp": "4s", "duration": "10s"},
                "criteria": CRITERIA,
                "flows": [
                    {
                        "name": "browse",
                        "thinkTime": "50ms",
                        "requests": [{"name": "home", "url": "/"}, {"name": "item", "url": "/items/1"}],
                    }
                ],
            },
        }
    )


def save(tmp_path: Path, name: str, png: bytes) -> Path:
    path = tmp_path / f"{name}.png"
    path.write_bytes(png)
    shutil.copyfile(path, Path(f"/tmp/assay-{name}.png"))
    print(f"\nscreenshot: {path} (copied to /tmp/assay-{name}.png)")
    return path


def screenshot(page: DevToolsPage) -> bytes:
    import base64

    return base64.b64decode(page.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"])


def foreign_requests(page: DevToolsPage, gateway) -> list[str]:
    urls = [e["params"]["request"]["url"] for e in page.events if e.get("method") == "Network.requestWillBeSent"]
    return [u for u in urls if not u.startswith((gateway.url + "/dashboard", "data:"))]


@pytest.fixture(scope="module")
def gateway(cluster, tmp_path_factory):
    folder = tmp_path_factory.mktemp("gateway")
    proc = GatewayProcess(cluster, folder / "store", folder / "gateway.log").start()
    yield proc
    proc.stop()
    print(proc.log()[-3000:], file=sys.stderr)


@pytest.fixture(scope="module")
def project(cluster, gateway, tmp_path_factory):
    """A namespace with the LoadTest (not yet applied), a viewer that may copy-run it, and
    another organization's namespace and viewer."""
    org = f"org-{uuid.uuid4().hex[:8]}"
    namespace = make_namespace(cluster, f"t-{uuid.uuid4().hex[:10]}", {"assay.dev/org": org})
    other = make_namespace(cluster, f"{namespace}-x", {"assay.dev/org": f"{org}-x"})
    operator = OperatorProcess(
        cluster, tmp_path_factory.mktemp("operator") / "operator.log", [namespace, other], gateway
    ).start()
    try:
        with CountingTarget(delay=0.01) as target:
            yield {
                "org": org,
                "namespace": namespace,
                "target": target,
                "credential": create_credential(
                    cluster, namespace, "viewer", scopes=("LOADTEST_LIST", "LOADTEST_COPY_RUN")
                ),
                "stranger": create_credential(cluster, other, "stranger", scopes=("LOADTEST_LIST",)),
            }
    finally:
        operator.stop()
        print(operator.log()[-3000:], file=sys.stderr)
        for created in (namespace, other):
            cluster.kubectl("delete", "namespace", created, "--wait=false", check=False)


def phase(cluster, namespace: str, name: str) -> str | None:
    return ((kubectl_json(cluster, "get", "loadtest", name, "-n", namespace) or {}).get("status") or {}).get("phase")


def test_the_running_load_tests_charts_gain_points_live_and_its_report_follows(
    cluster, gateway, project, browser, tmp_path
):
    namespace, (client_id, secret) = project["namespace"], project["credential"]
    url = f"{gateway.url}/dashboard/loadtests/{namespace}/{NAME}"
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=loadtest_manifest(project["target"].url))
    cluster.wait_for("the load test to run", lambda: phase(cluster, namespace, NAME) == "Running", timeout=120)

    page = DevToolsPage(browser)
    try:
        page.call("Network.enable")
        page.navigate(url)
        if page.evaluate("location.pathname") == "/dashboard/login":
            page.submit_login(client_id, secret)
            page.navigate(url)
        assert page.evaluate("location.pathname") == f"/dashboard/loadtests/{namespace}/{NAME}"
        page.evaluate("window.stillTheSamePage = true")
        points = "document.getElementById('chart-throughput').dataset.points * 1"
        first = page.poll(points, lambda n: n >= 1, timeout=30)
        assert first >= 1, "no live sample reached the page"
        grown = page.poll(
            f"[{points}, window.stillTheSamePage === true, document.querySelectorAll('#figures .figure').length, "
            "document.querySelectorAll('#chart-latency polyline').length]",
            lambda v: v[0] >= first + 2,
            timeout=30,
        )
        assert grown[0] >= first + 2 and grown[1], f"the chart did not gain points without a reload: {first}, {grown}"
        assert grown[2] == 8 and grown[3] == 3, grown  # the live figures; p50, p95 and p99 lines
        live = page.evaluate(
            "[...document.querySelectorAll('#criteria-table tbody tr')].map(r => [...r.cells].map(c => c.textContent))"
        )
        assert [row[0] for row in live] == CRITERIA, live
        save(tmp_path, "loadtest-live", screenshot(page))

        # The run ends; the page reloads once, with the report's tables.
        final = page.poll(
            "[window.stillTheSamePage === true, !!document.getElementById('summary'), "
            "document.querySelectorAll('#requests tbody tr').length]",
            lambda v: not v[0] and v[1],
            timeout=120,
        )
        assert final == [False, True, 2], final
        ended = page.evaluate(
            """({points: document.getElementById('chart-throughput').dataset.points * 1,
                 source: document.getElementById('source').textContent,
                 criteria: [...document.querySelectorAll('#criteria-table tbody tr')].map(r => r.cells[3].textContent),
                 verdict: document.querySelector('#summary .badge').textContent,
                 errors: document.querySelector('#errors').textContent,
                 html: document.querySelector('#archives a[href$="/html"]').getAttribute('href')})"""
        )
        assert ended["points"] >= 10 and "report" in ended["source"], ended
        assert ended["criteria"] == ["passing"] * 3 and ended["verdict"] == "passed", ended
        assert "No errors." in ended["errors"]
        report = page.evaluate(
            f"fetch({json.dumps(ended['html'])}).then(async r => [r.status, r.headers.get('content-security-policy'), "
            "(await r.text()).includes('<html')])",
            await_promise=True,
        )
        assert report[0] == 200 and "sandbox" in report[1] and report[2], report
        save(tmp_path, "loadtest-finished", screenshot(page))

        # Measured on the finished page: its one document's bytes and its first contentful paint.
        page.navigate(url)
        fcp = page.poll(
            "(performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime",
            lambda v: v is not None,
            timeout=5,
        )
        timing = page.evaluate(
            "(n => [n.encodedBodySize, n.responseStart, n.domContentLoadedEventEnd])"
            "(performance.getEntriesByType('navigation')[0])"
        )
        api = page.evaluate(
            "fetch(document.body.dataset.api).then(r => r.text()).then(t => t.length)", await_promise=True
        )
        paint = "none reported" if fcp is None else f"{fcp:.0f} ms"
        print(
            f"\nload test page: {timing[0]} bytes (one document, nothing else loads); first byte {timing[1]:.0f} ms, "
            f"DOMContentLoaded {timing[2]:.0f} ms, first contentful paint {paint}; its JSON {api} bytes"
        )
        assert 0 < timing[0] < 100_000, timing
        assert page.errors() == []
        assert foreign_requests(page, gateway) == []
    finally:
        page.close()


def test_two_runs_compare_in_the_page(cluster, gateway, project, browser, tmp_path):
    namespace, (client_id, secret) = project["namespace"], project["credential"]
    token = request_token(cluster, gateway, client_id, secret, ["LOADTEST_COPY_RUN"])
    base = f"{gateway.url}/public/api/v1/orgs/{project['org']}/projects/{namespace}/loadTests"
    copy = httpx.post(f"{base}/1/runCopy", headers=bearer(token), timeout=30)
    assert copy.status_code == 201, copy.text
    copy_name = copy.json()["name"]

    with closing(signed_in(cluster, gateway, client_id, secret)) as api:
        api_url = f"/dashboard/api/namespaces/{namespace}/loadtests/{copy_name}"
        cluster.wait_for(
            "the copy's report", lambda: (lambda v: v if v["report"] else None)(api.get(api_url).json()), timeout=180
        )
        refused = api.get(f"/dashboard/api/namespaces/{namespace}/loadtests/{NAME}/comparison?a=1&b=99")
        assert refused.status_code == 404 and refused.json()["error"] == "not_found", refused.text
        compared = api.get(f"/dashboard/api/namespaces/{namespace}/loadtests/{NAME}/comparison?a=2&b=1").json()
        assert (compared["baseline"]["label"], compared["measurement"]["label"]) == (f"#1 {NAME}", f"#2 {copy_name}")

    page = DevToolsPage(browser)
    try:
        page.call("Network.enable")
        page.navigate(f"{gateway.url}/dashboard/loadtests/{namespace}/{NAME}")
        if page.evaluate("location.pathname") == "/dashboard/login":
            page.submit_login(client_id, secret)
        page.navigate(f"{gateway.url}/dashboard/loadtests/{namespace}/{NAME}")
        runs = page.evaluate("[...document.querySelectorAll('#runs tbody tr')].map(r => r.cells[1].textContent)")
        assert runs == [NAME, copy_name], runs
        # Pick the two runs in the form, as a person would, and submit it.
        page.events.clear()
        page.evaluate(
            "document.getElementById('a').value = '1'; document.getElementById('b').value = '2';"
            "document.querySelector('#compare button').click()"
        )
        page.wait_for_load()
        shown = page.evaluate(
            """({search: location.search,
                 heads: [...document.querySelectorAll('#comparison table.total thead th')].map(h => h.textContent),
                 metrics: [...document.querySelectorAll('#comparison table.total tbody th')].map(h => h.textContent),
                 requests: [...document.querySelectorAll('#comparison table.requests tbody th')].map(h => h.textContent),
                 verdicts: [...document.querySelectorAll('#comparison table.total tbody tr')].map(r => r.cells[4].textContent)})"""
        )
        assert shown["search"] == "?a=1&b=2", shown
        assert shown["heads"][1:3] == [f"Baseline #1 {NAME}", f"Measurement #2 {copy_name}"], shown
        assert shown["metrics"] == ["Throughput", "Error rate", "p50", "p95", "p99", "Max"], shown
        assert shown["requests"] == ["home", "item"], shown
        assert set(shown["verdicts"]) <= {"better", "worse", "unchanged", "n/a"}, shown
        save(tmp_path, "loadtest-comparison", screenshot(page))
        # On a phone: nothing but the tables (which scroll in their own box) is wider than the screen.
        page.call("Emulation.setDeviceMetricsOverride", width=390, height=900, deviceScaleFactor=1, mobile=True)
        page.events.clear()
        page.call("Page.reload")
        page.wait_for_load()
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the load test page scrolls sideways by {overflow} px at 390 px"
        assert page.errors() == []
        assert foreign_requests(page, gateway) == []
    finally:
        page.close()


def test_another_tenant_gets_404_for_the_page_and_its_json(cluster, gateway, project):
    namespace = project["namespace"]
    with closing(signed_in(cluster, gateway, *project["stranger"])) as api:
        for path in (
            f"/dashboard/loadtests/{namespace}/{NAME}",
            f"/dashboard/loadtests/{namespace}/{NAME}?a=1&b=2",
            f"/dashboard/api/namespaces/{namespace}/loadtests/{NAME}",
            f"/dashboard/api/namespaces/{namespace}/loadtests/{NAME}/comparison?a=1&b=2",
            f"/dashboard/api/namespaces/{namespace}/loadtests/1/reports/1/html",
        ):
            answer = api.get(path)
            assert answer.status_code == 404, (path, answer.status_code, answer.text[:200])
            assert NAME not in answer.text, (path, answer.text[:200])
        assert api.get(f"/dashboard/api/namespaces/{namespace}/loadtests/{NAME}").json()["error"] == "not_found"
    with closing(signed_in(cluster, gateway, *project["credential"])) as own:
        assert own.get(f"/dashboard/api/namespaces/{namespace}/loadtests/{NAME}").status_code == 200
        assert own.get(f"/dashboard/api/namespaces/{namespace}/loadtests/nothing-here").status_code == 404
