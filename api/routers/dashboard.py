"""The dashboard: web pages under /dashboard and the JSON API the overview refreshes from.

    GET  /dashboard/login                     the sign-in form (client id + secret)
    POST /dashboard/login                     sign in: a session cookie, then /dashboard
    POST /dashboard/logout                    sign out
    GET  /dashboard[?namespace=]              the page: load tests, monitors, suite runs
    GET  /dashboard/loadtests/{ns}/{name}[?a=&b=]   one load test, live; two of its runs compared
    GET  /dashboard/api/namespaces            the namespaces this session reaches
    GET  /dashboard/api/overview[?namespace=] what the page shows, as JSON
    GET  /dashboard/api/namespaces/{ns}/monitors/{name}             one Monitor, longer history
    GET  /dashboard/api/namespaces/{ns}/loadtests/{n}/reports/{a}   a report archive (zip)
    GET  /dashboard/api/namespaces/{ns}/loadtests/{n}/results/{a}   a result archive (zip)
    GET  /dashboard/monitors/{ns}/{name}[/runs/{run}]  a Monitor; one run, every step (monitor.py)
    GET  /dashboard/suites/{ns}/runs/{run}             a TestSuite run, every flow (suite.py)
    GET  /dashboard/schedules[?namespace=]             what runs when (schedules.py)
    POST /dashboard/.../run, .../copy, .../abort, .../suspend   actions, by the credential's scopes (actions.py)
    GET  /dashboard/api/namespaces/{ns}/loadtests/{n}/reports/{a}/html   its HTML report
    GET  /dashboard/api/namespaces/{ns}/loadtests/{name}                 one load test's page, as JSON
    GET  /dashboard/api/namespaces/{ns}/loadtests/{name}/comparison?a=&b=  two of its runs compared

Without a session the page redirects to the sign-in form and the API answers 401
(`{"error", "message"}`). A namespace the session does not reach answers 404 exactly like a
missing one. Sessions: dashboard/session.py; data: services/dashboard.py.
"""

from __future__ import annotations

import secrets
import zipfile
from functools import partial
from typing import Annotated, Optional
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from ..auth import AuthError, NotReady
from ..bodies import body_limit
from ..dashboard import actions, schedules, suite
from ..dashboard import monitor as monitor_pages
from ..dashboard.context import Name, Namespace, Number, PageContext
from ..dashboard.loadtest import loadtest_page
from ..dashboard.page import content_security_policy, dashboard_page, error_page, login_page
from ..dashboard.session import DashboardSessions, Session, SessionExpired
from ..errors import ApiError
from ..services.dashboard import DashboardService
from ..services.dashboard_loadtest import LoadTestPages, NotComparable

PREFIX = "/dashboard"
API_PREFIX = PREFIX + "/api"
MAX_FORM_BYTES = 8192
NamespaceFilter = Annotated[Optional[str], Query(max_length=63)]
RunNumber = Annotated[Optional[int], Query(ge=1, le=2**31 - 1)]
REPORT_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox"
"""The report archive's index.html: self-contained, inline styles, no script."""


def secured(response: Response, nonce: str | None = None) -> Response:
    """Headers for every dashboard answer: nothing cached, framed, sniffed or referred."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    # Not no-referrer: with it, browsers send `Origin: null` on the sign-in POST.
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Frame-Options"] = "DENY"
    if nonce:
        response.headers["Content-Security-Policy"] = content_security_policy(nonce)
    return response


def html(body_of, status: int = 200) -> HTMLResponse:
    """`body_of(nonce)` as a page under a fresh CSP nonce."""
    nonce = secrets.token_urlsafe(16)
    return secured(HTMLResponse(body_of(nonce), status_code=status), nonce)


def render_error(request: Request, status: int, code: str, message: str) -> Response:
    """JSON under /dashboard/api; elsewhere a redirect to sign in (401) or a small page."""
    if request.url.path.startswith(API_PREFIX):
        return secured(JSONResponse({"error": code, "message": message}, status_code=status))
    if status == 401:
        return secured(RedirectResponse(PREFIX + "/login", status_code=303))
    return html(lambda nonce: error_page(status, message, nonce), status)


def build_router(services) -> APIRouter:
    sessions = DashboardSessions(services.auth, services.settings.public_url)
    dashboard = DashboardService(services.kube, services.store)
    loadtest_pages = LoadTestPages(dashboard.loadtests, services.store)
    tenancy = services.auth.tenancy
    router = APIRouter(include_in_schema=False)

    def session(request: Request) -> Session:
        try:
            return sessions.current(request)
        except SessionExpired as exc:
            raise ApiError(401, f"sign in at {PREFIX}/login: {exc}", "unauthorized") from None
        except NotReady as exc:
            raise ApiError(503, str(exc), "temporarily_unavailable", headers={"Retry-After": "2"}) from None

    def namespaces_in_view(current: Session, selected: Optional[str]) -> tuple[list[str], list[str]]:
        """(the namespaces to show, all the session reaches); 404 for one it does not reach."""
        reachable = tenancy.namespaces_for(current.principal)
        if not selected:
            return reachable, reachable
        if selected not in reachable:
            raise ApiError(404, f"no namespace {selected!r}", "not_found")
        return [selected], reachable

    def overview(current: Session, selected: Optional[str]) -> dict:
        shown, reachable = namespaces_in_view(current, selected)
        return dashboard.overview(shown, reachable, selected or None)

    def reachable_namespace(current: Session, namespace: str) -> str:
        return namespaces_in_view(current, namespace)[0][0]

    context = PageContext(
        services=services,
        sessions=sessions,
        session=session,
        reachable_namespace=reachable_namespace,
        namespaces=lambda current: tenancy.namespaces_for(current.principal),
        html=html,
    )
    for pages in (monitor_pages, suite, schedules, actions):
        pages.register(router, context)

    # --- signing in and out -----------------------------------------------------------------------

    def login_form(error: Optional[str] = None, status: int = 200, client_id: str = "") -> Response:
        token = sessions.new_form_token()
        response = html(lambda nonce: login_page(token, nonce, error, client_id), status)
        sessions.set_form_cookie(response, token)
        return response

    @router.get(PREFIX + "/login")
    def login(request: Request) -> Response:
        try:
            sessions.current(request)
        except (SessionExpired, NotReady):
            return login_form()
        return secured(RedirectResponse(PREFIX, status_code=303))

    @router.post(PREFIX + "/login")
    @body_limit(MAX_FORM_BYTES)
    async def log_in(request: Request) -> Response:
        if not sessions.same_origin(request):
            return login_form("Sign in from this site's own form.", 403)
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            return login_form("Sign in from the form.", 400)
        body = await request.body()
        try:
            form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except (UnicodeDecodeError, ValueError):
            return login_form("Sign in from the form.", 400)
        client_id = form.get("client_id", "").strip()[:256]
        if not sessions.form_token_matches(request, form.get("form_token", "")):
            return login_form("The sign-in form expired; please try again.", 403, client_id)
        if not client_id or not form.get("client_secret"):
            return login_form("Enter a client id and a client secret.", 400, client_id)
        response = secured(RedirectResponse(PREFIX, status_code=303))
        try:
            await run_in_threadpool(sessions.log_in, response, client_id, form["client_secret"])
        except NotReady:
            return login_form("The gateway is starting; try again in a moment.", 503, client_id)
        except AuthError as exc:
            message = "Wrong client id or secret." if exc.message == "client authentication failed" else exc.message
            return login_form(message, 401, client_id)
        return response

    @router.post(PREFIX + "/logout")
    def log_out(request: Request) -> Response:
        if not sessions.same_origin(request):
            raise ApiError(403, "sign out from this site's own page", "forbidden")
        response = secured(RedirectResponse(PREFIX + "/login", status_code=303))
        sessions.log_out(response)
        return response

    # --- the page ----------------------------------------------------------------------------------

    @router.get(PREFIX)
    def page(namespace: NamespaceFilter = None, current: Session = Depends(session)) -> Response:
        data = overview(current, namespace)
        who = current.principal.client_id
        controls = partial(actions.loadtest_buttons, current)
        return html(lambda nonce: dashboard_page(data, who, nonce, controls=controls))

    # --- one load test -------------------------------------------------------------------------------

    def loadtest_view(current: Session, namespace: str, name: str) -> dict:
        view = loadtest_pages.view(reachable_namespace(current, namespace), name)
        if view is None:
            raise ApiError(404, f"no load test {name!r} in namespace {namespace!r}", "not_found")
        return view

    def comparison(namespace: str, name: str, a: Optional[int], b: Optional[int]) -> dict:
        if a is None or b is None or a == b:
            raise ApiError(400, "pick two different runs to compare (a and b)", "invalid_request")
        try:
            compared = loadtest_pages.compare(namespace, name, a, b)
        except NotComparable as exc:
            raise ApiError(409, str(exc), "not_comparable") from None
        if compared is None:
            raise ApiError(404, f"runs {a} and {b} are not both runs of load test {name!r}", "not_found")
        return compared

    @router.get(PREFIX + "/loadtests/{namespace}/{name}")
    def loadtest(
        namespace: Namespace, name: Name, a: RunNumber = None, b: RunNumber = None, current: Session = Depends(session)
    ) -> Response:
        view = loadtest_view(current, namespace, name)
        compared, problem = None, None
        if a is not None or b is not None:
            try:
                compared = comparison(namespace, name, a, b)
            except ApiError as exc:
                problem = exc.message
        who = current.principal.client_id
        return html(
            lambda nonce: loadtest_page(
                view,
                who,
                nonce,
                comparison=compared,
                comparison_problem=problem,
                picked=(a, b),
                controls=actions.loadtest_buttons(current, view),
            )
        )

    @router.get(API_PREFIX + "/namespaces/{namespace}/loadtests/{name}")
    def loadtest_json(namespace: Namespace, name: Name, current: Session = Depends(session)) -> Response:
        return secured(JSONResponse(loadtest_view(current, namespace, name)))

    @router.get(API_PREFIX + "/namespaces/{namespace}/loadtests/{name}/comparison")
    def comparison_json(
        namespace: Namespace, name: Name, a: RunNumber = None, b: RunNumber = None, current: Session = Depends(session)
    ) -> Response:
        return secured(JSONResponse(comparison(reachable_namespace(current, namespace), name, a, b)))

    @router.get(API_PREFIX + "/namespaces/{namespace}/loadtests/{number}/reports/{archive}/html")
    def report_html(
        namespace: Namespace, number: Number, archive: Number, current: Session = Depends(session)
    ) -> Response:
        _, record = dashboard.archive(reachable_namespace(current, namespace), number, "report", archive)
        try:
            with zipfile.ZipFile(record.path) as zf:
                page = zf.read("index.html")
        except (zipfile.BadZipFile, KeyError, OSError):
            raise ApiError(404, f"report archive {archive} has no HTML report", "not_found") from None
        response = secured(HTMLResponse(page))
        response.headers["Content-Security-Policy"] = REPORT_POLICY
        return response

    # --- the JSON API -----------------------------------------------------------------------------

    @router.get(API_PREFIX + "/namespaces")
    def namespaces(current: Session = Depends(session)) -> Response:
        principal = current.principal
        return secured(
            JSONResponse(
                {
                    "clientId": principal.client_id,
                    "credential": principal.credential,
                    "namespaces": tenancy.namespaces_for(principal),
                    "sessionExpiresAt": current.expires_at,
                }
            )
        )

    @router.get(API_PREFIX + "/overview")
    def overview_json(namespace: NamespaceFilter = None, current: Session = Depends(session)) -> Response:
        return secured(JSONResponse(overview(current, namespace)))

    @router.get(API_PREFIX + "/namespaces/{namespace}/monitors/{name}")
    def monitor(namespace: Namespace, name: Name, current: Session = Depends(session)) -> Response:
        view = dashboard.monitor(reachable_namespace(current, namespace), name)
        if view is None:
            raise ApiError(404, f"no monitor {name!r} in namespace {namespace!r}", "not_found")
        return secured(JSONResponse(view))

    def download(kind: str, namespace: str, number: int, archive_number: int, current: Session) -> Response:
        _, record = dashboard.archive(reachable_namespace(current, namespace), number, kind, archive_number)
        filename = f"{namespace}-loadtest-{number}-{kind}-{archive_number}.zip"
        return secured(FileResponse(record.path, media_type="application/zip", filename=filename))

    @router.get(API_PREFIX + "/namespaces/{namespace}/loadtests/{number}/reports/{archive}")
    def report_archive(
        namespace: Namespace, number: Number, archive: Number, current: Session = Depends(session)
    ) -> Response:
        return download("report", namespace, number, archive, current)

    @router.get(API_PREFIX + "/namespaces/{namespace}/loadtests/{number}/results/{archive}")
    def result_archive(
        namespace: Namespace, number: Number, archive: Number, current: Session = Depends(session)
    ) -> Response:
        return download("result", namespace, number, archive, current)

    return router


def install(app: FastAPI, services) -> None:
    app.include_router(build_router(services))
    app.state.error_shapes.register(PREFIX, render_error)
