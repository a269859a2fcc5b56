"""What a signed-in page may change: run a Monitor now, run a TestSuite, copy and run a load
test, abort a running one, suspend or resume a Schedule.

    POST /dashboard/monitors/{ns}/{name}/run               test:write          Runscope's trigger URL
    POST /dashboard/suites/{ns}/{name}/run                 loadmill            Loadmill's suite run
    POST /dashboard/loadtests/{ns}/{number}/copy           LOADTEST_COPY_RUN   XTC's runCopy
    POST /dashboard/loadtests/{ns}/{number}/abort          LOADTEST_COPY_RUN   the LoadTest's spec.abort
    POST /dashboard/schedules/{ns}/{name}/{suspend|resume} test:write          the Schedule write

Each calls the service operation its REST API calls. A button shows only when the
credential holds the action's scope; a POST is refused (403, the dashboard's error page) when
it does not, when it comes from another site, or when its action token is missing or wrong
(session.py). Every answer to a POST that did something is a 303 back to a page (PRG).
"""

from __future__ import annotations

from html import escape
from urllib.parse import parse_qsl, quote, urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from ..bodies import body_limit
from ..errors import ApiError
from ..kube import NotFound as KubeNotFound
from ..services import Conflict, NotFound
from ..services.loadtests import LoadTestService
from ..services.runscope_tests import RunscopeTests, TriggerSet, trigger_id_for
from ..services.suites import SuiteService
from .context import Name, Namespace, Number, PageContext
from .page import monitor_url
from .session import Session

MAX_FORM_BYTES = 4096
TOKEN_FIELD = "action_token"
RUN_MONITOR, RUN_SUITE, COPY_LOADTEST, SUSPEND_SCHEDULE = "test:write", "loadmill", "LOADTEST_COPY_RUN", "test:write"


def button(current: Session, scope: str, url: str, label: str) -> str:
    """A one-button POST form for the action at `url`; nothing without `scope`."""
    if scope not in current.scopes:
        return ""
    return (
        f'<form class="action" method="post" action="{escape(url)}">'
        f'<input type="hidden" name="{TOKEN_FIELD}" value="{escape(current.action_token)}">'
        f'<button type="submit">{escape(label)}</button></form>'
    )


def run_monitor_button(current: Session, namespace: str, name: str) -> str:
    return button(current, RUN_MONITOR, f"{monitor_url(namespace, name)}/run", "Run now")


def run_suite_button(current: Session, namespace: str, name: str) -> str:
    return button(current, RUN_SUITE, f"/dashboard/suites/{namespace}/{name}/run", "Run suite")


def loadtest_buttons(current: Session, loadtest: dict) -> str:
    """Copy and run; Abort too while it runs (who may start runs may stop them)."""
    url = f"/dashboard/loadtests/{loadtest['namespace']}/{loadtest['number']}"
    buttons = button(current, COPY_LOADTEST, f"{url}/copy", "Copy and run")
    if loadtest.get("state") in ("pending", "running"):
        buttons += button(current, COPY_LOADTEST, f"{url}/abort", "Abort")
    return buttons


def schedule_button(current: Session, namespace: str, name: str, suspended: bool) -> str:
    verb = "resume" if suspended else "suspend"
    return button(current, SUSPEND_SCHEDULE, f"/dashboard/schedules/{namespace}/{name}/{verb}", verb.capitalize())


def back_to(url: str) -> Response:
    return RedirectResponse(url, status_code=303)


def register(router: APIRouter, ctx: PageContext) -> None:
    services = ctx.services
    monitors = RunscopeTests(services.kube, services.store, services.settings)
    suites = SuiteService(services.kube, services.store)
    loadtests = LoadTestService(services.kube, services.store)

    async def allowed(request: Request, current: Session, scope: str) -> None:
        """Refuse a POST from another site, without this session's action token, or by a
        credential without `scope`; all before any service is asked."""
        if not ctx.sessions.same_origin(request):
            raise ApiError(403, "act from this site's own pages", "forbidden")
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        body = await request.body() if content_type == "application/x-www-form-urlencoded" else b""
        try:
            form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except (UnicodeDecodeError, ValueError):
            form = {}
        if not ctx.sessions.action_token_matches(current, form.get(TOKEN_FIELD, "")):
            raise ApiError(403, "the page was stale or not this dashboard's; reload it and try again", "forbidden")
        if scope not in current.scopes:
            raise ApiError(403, f"the signed-in credential lacks the {scope} scope", "forbidden")

    @router.post("/dashboard/monitors/{namespace}/{name}/run")
    @body_limit(MAX_FORM_BYTES)
    async def run_monitor(namespace: Namespace, name: Name, request: Request, current: Session = Depends(ctx.session)):
        await allowed(request, current, RUN_MONITOR)
        namespace = ctx.reachable_namespace(current, namespace)

        def trigger() -> None:
            try:
                monitor = services.kube.get("monitors", namespace, name)
            except KubeNotFound:
                raise NotFound(f"no monitor {name!r} in namespace {namespace!r}") from None
            if not ((monitor.get("spec") or {}).get("trigger") or {}).get("enabled", True):
                raise Conflict("the monitor's trigger is disabled, so it runs on its schedules only")
            monitors.trigger(trigger_id_for(monitors.trigger_key, monitor["metadata"]["uid"]), TriggerSet())

        await run_in_threadpool(trigger)
        return back_to(monitor_url(namespace, name))

    @router.post("/dashboard/suites/{namespace}/{name}/run")
    @body_limit(MAX_FORM_BYTES)
    async def run_suite(namespace: Namespace, name: Name, request: Request, current: Session = Depends(ctx.session)):
        await allowed(request, current, RUN_SUITE)
        namespace = ctx.reachable_namespace(current, namespace)
        await run_in_threadpool(suites.request_run, namespace, name, requester=current.principal.credential)
        return back_to("/dashboard?" + urlencode({"namespace": namespace}) + "#suiteruns")

    @router.post("/dashboard/loadtests/{namespace}/{number}/copy")
    @body_limit(MAX_FORM_BYTES)
    async def copy_loadtest(
        namespace: Namespace, number: Number, request: Request, current: Session = Depends(ctx.session)
    ):
        await allowed(request, current, COPY_LOADTEST)
        namespace = ctx.reachable_namespace(current, namespace)
        await run_in_threadpool(loadtests.run_copy, namespace, number)
        return back_to("/dashboard?" + urlencode({"namespace": namespace}) + "#loadtests")

    @router.post("/dashboard/loadtests/{namespace}/{number}/abort")
    @body_limit(MAX_FORM_BYTES)
    async def abort_loadtest(
        namespace: Namespace, number: Number, request: Request, current: Session = Depends(ctx.session)
    ):
        await allowed(request, current, COPY_LOADTEST)
        namespace = ctx.reachable_namespace(current, namespace)
        await run_in_threadpool(loadtests.abort, namespace, number)
        return back_to("/dashboard?" + urlencode({"namespace": namespace}) + "#loadtests")

    @router.post("/dashboard/schedules/{namespace}/{name}/{verb}")
    @body_limit(MAX_FORM_BYTES)
    async def suspend_schedule(
        namespace: Namespace, name: Name, verb: str, request: Request, current: Session = Depends(ctx.session)
    ):
        if verb not in ("suspend", "resume"):
            raise ApiError(404, f"no action {verb!r}", "not_found")
        await allowed(request, current, SUSPEND_SCHEDULE)
        namespace = ctx.reachable_namespace(current, namespace)
        await run_in_threadpool(monitors.suspend_schedule, namespace, name, verb == "suspend")
        return back_to("/dashboard/schedules?" + urlencode({"namespace": namespace}) + f"#schedule-{quote(name)}")
