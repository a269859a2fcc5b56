"""The dashboard's run pages, schedules and actions in real headless Chromium, over real runs:
a Monitor run by the real operator that fails an assertion, a TestSuite run, a LoadTest and a
Schedule. A credential holding the actions' scopes clicks every action through the page; one
without them sees no button and has a forged POST refused, as are POSTs without or with a
wrong action token; a credential of another organization gets 404 for every page. Each page
renders without console errors or foreign requests, on a phone's width too; its screenshot is
saved under the test's temporary folder and copied to /tmp/assay-dashboard-<page>.png, and its
weight and first paint are printed.
"""

from __future__ import annotations

import json
import shutil
import sys
import uuid
from contextlib import closing
from pathlib import Path

import pytest

from assay.api.dashboard.session import SESSION_COOKIE, action_token
from tests.browser.test_dashboard import (
    DevToolsPage,
    loadtest_manifest,
    monitor_run_finished,
    request_run,
    suite_manifest,
)
from tests.cluster.test_dashboard_api import signed_in
from tests.cluster.test_loadtest_run import loadtest_manifest as run_manifest
from tests.conftest import GatewayProcess, OperatorProcess
from tests.support.credentials import create_credential, kubectl_json, make_namespace
from tests.support.targets import CountingTarget

pytestmark = [pytest.mark.browser, pytest.mark.cluster, pytest.mark.timeout(600)]

SECRET_HEADER = "Bearer sup3r-s3cret"
ACTION_SCOPES = ("test:write", "loadmill", "LOADTEST_COPY_RUN", "LOADTEST_LIST")
MEASURE = """(() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const paint = performance.getEntriesByType('paint').find(p => p.name === 'first-contentful-paint');
  return {bytes: nav.transferSize, body: nav.decodedBodySize, firstPaintMs: paint ? Math.round(paint.startTime) : null,
          overflow: document.documentElement.scrollWidth - window.innerWidth,
          wide: [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > window.innerWidth + 1
                && !e.closest('.scroll')).slice(0, 5).map(e => e.tagName + '.' + e.className)};
})()"""


def failing_monitor(url: str) -> str:
    """A Monitor whose one request carries a secret header and expects 201 where the target answers 200."""
    step = {
        "stepType": "request",
        "url": "{{base}}/ping",
        "headers": {"Authorization": [SECRET_HEADER], "X-Trace": ["<b>trace</b>"]},
        "assertions": [
            {"source": "response_status", "comparison": "equal_number", "value": 201},
            {"source": "response_text", "comparison": "contains", "value": ""},
        ],
        "variables": [{"name": "code", "source": "response_status"}],
    }
    return json.dumps(
        {
            "apiVersion": "assay.dev/v1alpha1",
            "kind": "Monitor",
            "metadata": {"name": "health"},
            "spec": {
                "displayName": "Health <check>",
                "steps": [step],
                "environments": [{"name": "local", "initialVariables": {"base": url}}],
            },
        }
    )


def schedule_manifest() -> str:
    return json.dumps(
        {
            "apiVersion": "assay.dev/v1alpha1",
            "kind": "Schedule",
            "metadata": {"name": "nightly"},
            "spec": {"target": {"kind": "Monitor", "name": "health"}, "interval": "1d", "note": "every night"},
        }
    )


@pytest.fixture(scope="module")
def gateway(cluster, tmp_path_factory):
    folder = tmp_path_factory.mktemp("gateway")
    proc = GatewayProcess(cluster, folder / "store", folder / "gateway.log").start()
    yield proc
    proc.stop()
    print(proc.log()[-3000:], file=sys.stderr)


@pytest.fixture(scope="module")
def project(cluster, gateway, tmp_path_factory):
    """Namespace A with a failed Monitor run, a suite run, a LoadTest and a Schedule; a
    namespace of another organization with its own credential."""
    namespace = make_namespace(cluster, f"t-{uuid.uuid4().hex[:10]}", {"assay.dev/org": f"org-{uuid.uuid4().hex[:8]}"})
    other = make_namespace(cluster, f"{namespace}-x", {"assay.dev/org": f"org-{uuid.uuid4().hex[:8]}"})
    operator = OperatorProcess(
        cluster, tmp_path_factory.mktemp("operator") / "operator.log", [namespace, other], gateway
    ).start()
    try:
        with CountingTarget() as target:
            actor = create_credential(cluster, namespace, "actor", scopes=ACTION_SCOPES)
            viewer = create_credential(cluster, namespace, "viewer", scopes=("LOADTEST_LIST",))
            outsider = create_credential(cluster, other, "outsider", scopes=ACTION_SCOPES)
            for manifest in (
                failing_monitor(target.url),
                suite_manifest("shop", target.url),
                loadtest_manifest("checkout", target.url),
                schedule_manifest(),
            ):
                cluster.kubectl("apply", "-n", namespace, "-f", "-", input=manifest)
            suite_run = request_run(cluster, namespace, "testsuite", "shop", {"id": "s-1"})
            monitor_run = request_run(cluster, namespace, "monitor", "health", {"id": "m-1"})
            cluster.wait_for("the monitor run", monitor_run_finished(cluster, namespace, monitor_run), timeout=120)
            with closing(signed_in(cluster, gateway, *actor)) as api:
                cluster.wait_for(
                    "the suite run's page",
                    lambda: (
                        api.get(f"/dashboard/suites/{namespace}/runs/{suite_run}").status_code == 200
                        and 'data-result="passed"' in api.get(f"/dashboard/suites/{namespace}/runs/{suite_run}").text
                    ),
                    timeout=120,
                    interval=1,
                )
            yield {
                "namespace": namespace,
                "actor": actor,
                "viewer": viewer,
                "outsider": outsider,
                "monitor_run": monitor_run,
                "suite_run": suite_run,
                "target_url": target.url,
            }
    finally:
        operator.stop()
        print(operator.log()[-3000:], file=sys.stderr)
        for created in (namespace, other):
            cluster.kubectl("delete", "namespace", created, "--wait=false", check=False)


def pages(project) -> dict[str, str]:
    ns = project["namespace"]
    return {
        "monitor": f"/dashboard/monitors/{ns}/health",
        "monitor-run": f"/dashboard/monitors/{ns}/health/runs/{project['monitor_run']}",
        "suite-run": f"/dashboard/suites/{ns}/runs/{project['suite_run']}",
        "schedules": f"/dashboard/schedules?namespace={ns}",
    }


def fresh_page(browser, gateway, credential) -> DevToolsPage:
    page = DevToolsPage(browser)
    page.call("Network.clearBrowserCookies")
    page.navigate(gateway.url + "/dashboard")
    page.submit_login(*credential)
    assert page.evaluate("location.pathname") == "/dashboard"
    return page


def click(page: DevToolsPage, selector: str) -> None:
    page.events.clear()
    page.evaluate(f"document.querySelector({json.dumps(selector)}).click()")
    page.wait_for_load()


def press(page: DevToolsPage, key: str, code: int, text: str = "") -> None:
    for kind in ("keyDown", "keyUp"):
        page.call("Input.dispatchKeyEvent", type=kind, key=key, code=key, windowsVirtualKeyCode=code, text=text)


def annotation(cluster, namespace: str, kind: str, name: str) -> str:
    meta = kubectl_json(cluster, "get", kind, name, "-n", namespace)["metadata"]
    return (meta.get("annotations") or {}).get("assay.dev/run-request", "")


def test_a_failed_monitor_run_shows_the_failing_assertion_and_every_page_renders_cleanly(
    cluster, gateway, project, browser, tmp_path
):
    page = fresh_page(browser, gateway, project["actor"])
    try:
        # From the overview to the Monitor, then to its run: links, not typed URLs.
        click(page, "article.monitor h3 a")
        assert page.evaluate("location.pathname") == pages(project)["monitor"]
        click(page, f"#runs a[href$='{project['monitor_run']}']")
        assert page.evaluate("location.pathname") == pages(project)["monitor-run"]
        page.events.clear()  # else the last navigation's load event would end the wait at once
        page.call("Page.reload")
        page.wait_for_load()
        step = page.evaluate("""(() => {
            const step = document.querySelector('article.step');
            if (!step) return {text: document.body.innerText};
            const failing = [...step.querySelectorAll('table.assertions tr.bad')];
            return {result: step.dataset.result, failing: failing.map(r => [r.querySelector('.expected').textContent,
                    r.querySelector('.actual').textContent]),
                    variables: [...step.querySelectorAll('table.variables td')].map(c => c.textContent),
                    text: document.body.innerText, html: document.body.innerHTML};
        })()""")
    finally:
        page.close()
    assert step.get("result") == "failed", step["text"]
    assert step["failing"] == [["201", "200"]], step["failing"]
    assert "code" in step["variables"] and "200" in step["variables"]
    assert "sup3r-s3cret" not in step["html"] and "<redacted>" in step["text"]
    assert "<b>trace</b>" in step["text"], "a header value shows as text, not markup"

    overview = {"overview": f"/dashboard?namespace={project['namespace']}"}
    for name, path in {**pages(project), **overview}.items():
        for width in (1280, 390):
            rendered = browser.render(gateway.url + path, width=width, height=900, evaluate={"m": MEASURE})
            assert rendered.problems == [], f"{name}: {rendered.problems}"
            foreign = [u for u in rendered.requested_urls if not u.startswith((gateway.url + "/dashboard", "data:"))]
            assert foreign == [], f"{name} asked for {foreign}"
            measured = rendered.values["m"]
            assert measured["overflow"] <= 0, f"{name} scrolls sideways at {width} px: {measured}"
            if width == 1280:
                shot = tmp_path / f"dashboard-{name}.png"
                shot.write_bytes(rendered.screenshot)
                shutil.copyfile(shot, Path(f"/tmp/assay-dashboard-{name}.png"))
                print(
                    f"\n{name}: {measured['body']} bytes, first paint {measured['firstPaintMs']} ms, screenshot {shot}"
                )


def test_each_action_works_from_the_page_with_its_scope(cluster, gateway, project, browser):
    ns = project["namespace"]
    page = fresh_page(browser, gateway, project["actor"])
    try:
        before = annotation(cluster, ns, "monitor", "health")
        page.navigate(gateway.url + pages(project)["monitor"])
        # By keyboard alone: Tab to the button, Enter to submit.
        for _ in range(12):
            press(page, "Tab", 9)
            if page.evaluate("document.activeElement.textContent") == "Run now":
                break
        assert page.evaluate("document.activeElement.closest('form.action') !== null"), (
            "Run now is not reachable by Tab"
        )
        page.events.clear()
        press(page, "Enter", 13, "\r")
        page.wait_for_load()
        assert page.evaluate("location.pathname") == pages(project)["monitor"], "back to the Monitor (PRG)"
        assert annotation(cluster, ns, "monitor", "health") != before

        before = annotation(cluster, ns, "testsuite", "shop")
        page.navigate(gateway.url + pages(project)["suite-run"])
        click(page, "form.action button")
        assert page.evaluate("location.pathname + location.hash") == "/dashboard#suiteruns"
        assert annotation(cluster, ns, "testsuite", "shop") != before

        click(page, "#loadtests form.action button")
        assert page.evaluate("location.hash") == "#loadtests"
        names = [i["metadata"]["name"] for i in kubectl_json(cluster, "get", "loadtests", "-n", ns)["items"]]
        assert len(names) == 2 and "checkout" in names, names
        assert (
            page.evaluate(f"""document.querySelector('#loadtests tr[data-name="{ns}/checkout"] [action$="/abort"]')""")
            is None
        ), "a finished load test offers no Abort"

        def soak_status() -> dict:
            return kubectl_json(cluster, "get", "loadtest", "soak", "-n", ns).get("status") or {}

        soak = run_manifest("soak", project["target_url"], shards=1, users=1, duration="300s")
        cluster.kubectl("apply", "-n", ns, "-f", "-", input=soak)
        cluster.wait_for("the soak LoadTest to run", lambda: soak_status().get("progress"), timeout=120)
        page.navigate(gateway.url + f"/dashboard?namespace={ns}")
        click(page, f'#loadtests tr[data-name="{ns}/soak"] form[action$="/abort"] button')
        assert page.evaluate("location.hash") == "#loadtests"
        assert kubectl_json(cluster, "get", "loadtest", "soak", "-n", ns)["spec"]["abort"] is True
        cluster.wait_for(
            "the soak LoadTest to end Aborted", lambda: soak_status().get("result") == "Aborted", timeout=90
        )

        page.navigate(gateway.url + pages(project)["schedules"])
        click(page, "#schedule-nightly form.action button")
        assert page.evaluate("location.hash") == "#schedule-nightly"
        assert kubectl_json(cluster, "get", "schedule", "nightly", "-n", ns)["spec"]["suspend"] is True
        assert page.evaluate("document.querySelector('#schedule-nightly button').textContent") == "Resume"
        click(page, "#schedule-nightly form.action button")
        assert kubectl_json(cluster, "get", "schedule", "nightly", "-n", ns)["spec"]["suspend"] is False

        # A POST the page did not make: no token, then a wrong one; refused on the error page.
        refused = page.evaluate(
            f"""(async () => Promise.all(['', 'action_token=wrong'].map(async body => {{
                const answer = await fetch('/dashboard/schedules/{ns}/nightly/suspend', {{method: 'POST',
                    headers: {{'content-type': 'application/x-www-form-urlencoded'}}, body, redirect: 'manual'}});
                return [answer.status, (await answer.text()).includes('role="alert"')];
            }})))()""",
            await_promise=True,
        )
        assert refused == [[403, True], [403, True]], refused
        assert page.errors() == []
    finally:
        page.close()
    assert kubectl_json(cluster, "get", "schedule", "nightly", "-n", ns)["spec"]["suspend"] is False


def session_token(client) -> str:
    return action_token(client.cookies.get(SESSION_COOKIE))


def test_without_the_scope_no_button_shows_and_a_forged_post_is_refused(cluster, gateway, project, browser):
    ns = project["namespace"]
    page = fresh_page(browser, gateway, project["viewer"])
    try:
        for path in ["/dashboard", *pages(project).values()]:
            page.navigate(gateway.url + path)
            assert page.evaluate("document.querySelectorAll('form.action').length") == 0, path
    finally:
        page.close()
    actions = [
        f"/dashboard/monitors/{ns}/health/run",
        f"/dashboard/suites/{ns}/shop/run",
        f"/dashboard/loadtests/{ns}/1/copy",
        f"/dashboard/schedules/{ns}/nightly/suspend",
        f"/dashboard/loadtests/{ns}/1/abort",
    ]
    with closing(signed_in(cluster, gateway, *project["viewer"])) as viewer:
        token = session_token(viewer)
        for path in actions:
            answer = viewer.post(path, data={"action_token": token})
            assert answer.status_code == 403 and "scope" in answer.text, (path, answer.status_code)
            assert answer.headers["content-type"].startswith("text/html")
    with closing(signed_in(cluster, gateway, *project["actor"])) as actor:
        token = session_token(actor)
        foreign = actor.post(actions[3], data={"action_token": token}, headers={"Origin": "https://evil.example"})
        assert foreign.status_code == 403
        forged = token[:-1] + ("1" if token.endswith("0") else "0")  # one hex digit changed, never the same
        assert actor.post(actions[3], data={"action_token": forged}).status_code == 403
    assert kubectl_json(cluster, "get", "schedule", "nightly", "-n", ns)["spec"].get("suspend") is not True
    assert len(kubectl_json(cluster, "get", "loadtests", "-n", ns)["items"]) <= 3


def test_another_tenant_gets_404_for_every_page_and_action(cluster, gateway, project):
    ns = project["namespace"]
    with closing(signed_in(cluster, gateway, *project["outsider"])) as outsider:
        for path in pages(project).values():
            answer = outsider.get(path)
            assert answer.status_code == 404, (path, answer.status_code)
        token = session_token(outsider)
        for path in (
            f"/dashboard/monitors/{ns}/health/run",
            f"/dashboard/suites/{ns}/shop/run",
            f"/dashboard/loadtests/{ns}/1/copy",
            f"/dashboard/loadtests/{ns}/1/abort",
            f"/dashboard/schedules/{ns}/nightly/suspend",
        ):
            assert outsider.post(path, data={"action_token": token}).status_code == 404, path
        schedules = outsider.get("/dashboard/schedules")
        assert schedules.status_code == 200 and "nightly" not in schedules.text
