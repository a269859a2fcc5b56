"""A TestSuite run's page: its flows (failed ones first), each request with its status,
response time, assertions (expected and actual) and, when it failed, why.

    GET /dashboard/suites/{ns}/runs/{run}

It reads what Loadmill's "Get Test Suite Run" reads (SuiteService.suite_run), and says why a
request failed as the runner's JUnit report does (RequestResult.reasons).
"""

from __future__ import annotations

import datetime as dt
from html import escape
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends

from assay.runner.apitest.suite import RequestResult

from ..services.suites import SuiteService
from . import actions
from .context import Namespace, PageContext, RunId
from .page import badge, number, subpage, suite_run_url, when
from .session import Session

STATE = {"PASSED": "passed", "FAILED": "failed", "RUNNING": "running", "STOPPED": "aborted"}


def state(value: Any) -> str:
    return STATE.get(str(value or "").upper(), "pending")


def iso_ms(value: Any) -> str | None:
    if not isinstance(value, (int, float)):
        return None
    return dt.datetime.fromtimestamp(value / 1000, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def text(value: Any) -> str:
    return '<span class="none">–</span>' if value is None else escape(str(value))


def assertion_rows(request: dict) -> str:
    return "".join(
        f'<tr class="{"ok" if a.get("result") == "pass" else "bad"}">'
        f"<td>{text(a.get('source'))}{'.' + escape(str(a['property'])) if a.get('property') else ''}</td>"
        f'<td>{text(a.get("comparison"))}</td><td class="mono expected">{text(a.get("targetValue"))}</td>'
        f'<td class="mono actual">{text(a.get("actualValue"))}</td>'
        f"<td>{badge('passed' if a.get('result') == 'pass' else 'failed')}</td></tr>"
        for a in request.get("assertions") or []
        if isinstance(a, dict)
    )


def request_block(request: dict) -> str:
    failed = state(request.get("status")) == "failed"
    reason = f'<p class="error reason">{escape(RequestResult.from_loadmill(request).reasons())}</p>' if failed else ""
    rows = assertion_rows(request)
    table = (
        '<div class="scroll"><table class="assertions"><thead><tr><th scope="col">Source</th>'
        '<th scope="col">Comparison</th><th scope="col">Expected</th><th scope="col">Actual</th>'
        f'<th scope="col">Result</th></tr></thead><tbody>{rows}</tbody></table></div>'
        if rows
        else '<p class="none">no assertions</p>'
    )
    return (
        f'<article class="step {"failed" if failed else "passed"}"><h4>{badge(state(request.get("status")))} '
        f"{escape(str(request.get('description') or ''))} "
        f'<span class="mono">{text(request.get("method"))} {text(request.get("url"))}</span></h4>'
        f'<p class="facts">status {text(request.get("statusCode"))} · {number(request.get("resTime"), " ms")}</p>'
        f"{reason}{table}</article>"
    )


def flow_section(flow: dict, index: int) -> str:
    requests = "".join(request_block(r) for r in flow.get("requests") or [] if isinstance(r, dict))
    return (
        f'<section class="flow" id="flow-{index}" data-result="{escape(state(flow.get("status")))}">'
        f"<h3>{badge(state(flow.get('status')))} {escape(str(flow.get('description') or 'flow'))}</h3>"
        f'<p class="facts">{number(flow.get("numOfRequests"))} requests · {text(flow.get("duration"))}</p>'
        f"{requests or '<p class=' + chr(34) + 'empty' + chr(34) + '>No requests recorded.</p>'}</section>"
    )


def suite_run_page(namespace: str, run: dict, suite_name: str, current: Session, nonce: str) -> str:
    now = dt.datetime.now(dt.timezone.utc)
    flows = [f for f in run.get("testSuiteFlowRuns") or [] if isinstance(f, dict)]
    # Failed flows lead: that is what the page is opened for.
    ordered = sorted(enumerate(flows), key=lambda f: state(f[1].get("status")) != "failed")
    error = (run.get("error") or {}).get("message") if isinstance(run.get("error"), dict) else None
    rerun = actions.run_suite_button(current, namespace, suite_name) if suite_name else ""
    body = (
        f'<div class="title"><h2>{escape(str(run.get("description") or suite_name))}</h2>'
        f"{badge(state(run.get('status')))}{rerun}</div>"
        f'<p class="facts">{escape(namespace)} · run <span class="mono">{escape(str(run.get("id") or ""))}</span> · '
        f"started {when(iso_ms(run.get('startTime')), now)} · flows {text(run.get('progress'))} · "
        f"success {text(run.get('successRate'))}</p>"
        + (f'<p class="error" role="alert">{escape(str(error))}</p>' if error else "")
        + ("".join(flow_section(f, i) for i, f in ordered) or '<p class="empty">No flow has reported yet.</p>')
    )
    runs_of_namespace = "/dashboard?" + urlencode({"namespace": namespace}) + "#suiteruns"
    trail = [("Overview", "/dashboard"), (f"{namespace} suite runs", runs_of_namespace)]
    trail.append((str(run.get("id") or ""), suite_run_url(namespace, str(run.get("id") or ""))))
    return subpage("Suite run", current.principal.client_id, trail, body, nonce)


def register(router: APIRouter, ctx: PageContext) -> None:
    suites = SuiteService(ctx.services.kube, ctx.services.store)

    @router.get("/dashboard/suites/{namespace}/runs/{run_id}")
    def suite_run(namespace: Namespace, run_id: RunId, current: Session = Depends(ctx.session)):
        namespace = ctx.reachable_namespace(current, namespace)
        run = suites.suite_run([namespace], run_id)
        record = ctx.services.store.get_run(run_id)
        suite_name = record.owner_name if record is not None and record.project == namespace else ""
        return ctx.html(lambda nonce: suite_run_page(namespace, run, suite_name, current, nonce))
