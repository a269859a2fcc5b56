"""A Monitor's pages: its overview (success ratio and p50/p95 over the last hour, day, week and
30 days, all regions and each one; its recent runs and schedules) and one run's page (every
step of every region: request, response, assertions with actual and expected, variables,
script output; failed steps first).

    GET /dashboard/monitors/{ns}/{name}
    GET /dashboard/monitors/{ns}/{name}/runs/{run}

Both read what the Runscope results API reads: the store's result index for the figures
(`monitor_result_figures`, `result_metrics`) and the result and step documents of a run
(`RunscopeResults`). Headers are shown as the VNG recorder keeps them (`recorded_headers`:
Authorization, Cookie and Set-Cookie redacted); secret variables never reach the documents.
"""

from __future__ import annotations

import datetime as dt
import time
from html import escape
from typing import Any, Optional

from fastapi import APIRouter, Depends

from ..routers.vng_exposed import recorded_headers
from ..services import NotFound
from ..services.dashboard import DashboardService
from ..services.runscope_results import ALL, TIMEFRAMES, RunscopeResults, result_metrics
from . import actions
from .context import Name, Namespace, PageContext, RunId
from .page import badge, monitor_url, number, subpage, when
from .schedules import ScheduleList, schedules_table
from .session import Session

WINDOWS = (("hour", "1 h"), ("day", "1 d"), ("week", "7 d"), ("month", "30 d"))
MAX_BODY_SHOWN = 20_000
NO_STEPS = '<p class="empty">No steps.</p>'
STEP_STATE = {"pass": "passed", "fail": "failed"}


# --- figures ----------------------------------------------------------------------------------------


def window_figures(figures: list, now: float, region: str) -> list[dict]:
    """Per window (WINDOWS): runs, success ratio (%) and p50/p95 (ms) for `region` (ALL: every one)."""
    out = []
    for timeframe, label in WINDOWS:
        length, _ = TIMEFRAMES[timeframe]
        period = result_metrics(figures, now=now, timeframe=timeframe, region=region)["this_time_period"]
        finished = [
            f
            for f in figures
            if f.result in ("pass", "fail")
            and f.started_at is not None
            and now - length <= f.started_at <= now
            and region in (ALL, f.region)
        ]
        passed = sum(f.result == "pass" for f in finished)
        out.append(
            {
                "window": label,
                "runs": period["total_test_runs"],
                "successRatio": round(100.0 * passed / len(finished), 1) if finished else None,
                "p50Ms": period["response_time_50th_percentile"],
                "p95Ms": period["response_time_95th_percentile"],
            }
        )
    return out


def figures_table(figures: list, now: float) -> str:
    regions = sorted({f.region for f in figures if f.region})
    rows = []
    for region in [ALL, *regions]:
        label = "all regions" if region == ALL else region
        for i, w in enumerate(window_figures(figures, now, region)):
            head = f'<th scope="row" rowspan="{len(WINDOWS)}">{escape(label)}</th>' if i == 0 else ""
            rows.append(
                f'<tr data-region="{escape(label)}" data-window="{escape(w["window"])}">{head}'
                f'<td>{escape(w["window"])}</td><td class="num">{w["runs"]}</td>'
                f'<td class="num">{number(w["successRatio"], " %", 1)}</td>'
                f'<td class="num">{number(w["p50Ms"], " ms", 1)}</td><td class="num">{number(w["p95Ms"], " ms", 1)}</td></tr>'
            )
    return (
        '<section id="figures"><h2>Success and response times</h2><div class="scroll"><table class="figures">'
        '<thead><tr><th scope="col">Region</th><th scope="col">Window</th><th scope="col">Runs</th>'
        '<th scope="col">Success</th><th scope="col">p50</th><th scope="col">p95</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div></section>"
    )


def runs_table(view: dict, now: dt.datetime) -> str:
    home = monitor_url(view["namespace"], view["name"])
    rows = "".join(
        f'<tr><td><a href="{escape(home)}/runs/{escape(r["runId"])}">{escape(r["runId"])}</a></td>'
        f"<td>{badge(r['result'])}</td><td>{when(r['startedAt'], now)}</td>"
        f'<td class="num">{number(r["responseTimeMs"], " ms")}</td>'
        f"<td>{escape(', '.join(r['regions']))}</td>"
        f"<td>{'schedule ' + escape(r['schedule']) if r['schedule'] else 'request'}</td></tr>"
        for r in view["runs"]
    )
    body = (
        '<div class="scroll"><table class="runs"><thead><tr><th scope="col">Run</th><th scope="col">Result</th>'
        '<th scope="col">Started</th><th scope="col">Response</th><th scope="col">Regions</th>'
        f'<th scope="col">Started by</th></tr></thead><tbody>{rows}</tbody></table></div>'
        if rows
        else '<p class="empty">No runs yet.</p>'
    )
    return f'<section id="runs"><h2>Recent runs</h2>{body}</section>'


def overview_page(
    view: dict, figures: list, schedules: list[dict], current: Session, nonce: str, now: Optional[dt.datetime] = None
) -> str:
    now = now or dt.datetime.now(dt.timezone.utc)
    ns, name = view["namespace"], view["name"]
    head = (
        f'<div class="title"><h2>{escape(view["displayName"])}</h2>{badge(view["lastResult"])}'
        f"{actions.run_monitor_button(current, ns, name)}</div>"
        f'<p class="facts">{escape(ns)}/{escape(name)} · last run {when(view["lastRunAt"], now)}'
        f"{' · ' + escape(view['description']) if view['description'] else ''}</p>"
    )
    body = (
        head
        + figures_table(figures, now.timestamp())
        + runs_table(view, now)
        + f'<section id="schedules"><h2>Schedules</h2>{schedules_table(schedules, current, now)}</section>'
    )
    trail = [("Overview", "/dashboard"), (f"{ns}/{name}", monitor_url(ns, name))]
    return subpage(view["displayName"], current.principal.client_id, trail, body, nonce)


# --- one run --------------------------------------------------------------------------------------------


def headers_table(headers: Optional[dict]) -> str:
    pairs = [
        (n, v) for n, values in (headers or {}).items() for v in (values if isinstance(values, list) else [values])
    ]
    if not pairs:
        return '<p class="none">no headers</p>'
    rows = "".join(
        f'<tr><th scope="row">{escape(str(n))}</th><td class="mono">{escape(str(v))}</td></tr>'
        for n, v in recorded_headers(pairs)
    )
    return f'<table class="headers"><tbody>{rows}</tbody></table>'


def body_block(message: Optional[dict]) -> str:
    body = (message or {}).get("body") or ""
    if not body:
        return '<p class="none">no body</p>'
    if (message or {}).get("body_encoding") == "base64":
        return f'<p class="none">binary body, {len(body)} characters of base64</p>'
    cut = (
        f'<p class="note">first {MAX_BODY_SHOWN:,} of {len(body):,} characters</p>'
        if len(body) > MAX_BODY_SHOWN
        else ""
    )
    return f'<pre class="body">{escape(body[:MAX_BODY_SHOWN])}</pre>{cut}'


def check_rows(items: list[dict], cells) -> str:
    return "".join(
        f'<tr class="{"bad" if i.get("result") == "fail" else "ok"}">{cells(i)}'
        f"<td>{badge(STEP_STATE.get(i.get('result') or '', 'pending'))}</td></tr>"
        for i in items
    )


def text(value: Any) -> str:
    return '<span class="none">–</span>' if value is None else escape(str(value))


def checks(step: dict) -> str:
    out = []
    if step.get("assertions"):
        rows = check_rows(
            step["assertions"],
            lambda a: (
                f"<td>{text(a.get('source'))}{'.' + escape(str(a['property'])) if a.get('property') else ''}</td>"
                f'<td>{text(a.get("comparison"))}</td><td class="mono expected">{text(a.get("target_value"))}</td>'
                f'<td class="mono actual">{text(a.get("actual_value"))}</td><td>{text(a.get("error"))}</td>'
            ),
        )
        out.append(
            '<h4>Assertions</h4><div class="scroll"><table class="assertions"><thead><tr><th scope="col">Source</th>'
            '<th scope="col">Comparison</th><th scope="col">Expected</th><th scope="col">Actual</th>'
            f'<th scope="col">Error</th><th scope="col">Result</th></tr></thead><tbody>{rows}</tbody></table></div>'
        )
    if step.get("variables"):
        rows = check_rows(
            step["variables"],
            lambda v: (
                f"<td>{text(v.get('name'))}</td><td>{text(v.get('source'))}"
                f"{'.' + escape(str(v['property'])) if v.get('property') else ''}</td>"
                f'<td class="mono">{text(v.get("value"))}</td><td>{text(v.get("error"))}</td>'
            ),
        )
        out.append(
            '<h4>Variables</h4><div class="scroll"><table class="variables"><thead><tr><th scope="col">Name</th>'
            '<th scope="col">Source</th><th scope="col">Value</th><th scope="col">Error</th>'
            f'<th scope="col">Result</th></tr></thead><tbody>{rows}</tbody></table></div>'
        )
    for script in step.get("scripts") or []:
        error = f'<p class="error">{escape(str(script["error"]))}</p>' if script.get("error") else ""
        output = escape(str(script.get("output") or "")) or "(no output)"
        out.append(
            f"<h4>Script {badge(STEP_STATE.get(script.get('result') or '', 'pending'))}</h4>{error}<pre>{output}</pre>"
        )
    return "".join(out)


def exchange(step: dict, detail: Optional[dict]) -> str:
    if not step.get("url"):
        return ""
    request, response = (detail or {}).get("request") or {}, (detail or {}).get("response")
    timings = step.get("timings") or {}
    timing = " · ".join(
        f"{key.removesuffix('_ms').replace('_', ' ')} {number(value, ' ms', 1)}"
        for key, value in timings.items()
        if isinstance(value, (int, float))
    )
    if response:
        answered = (
            f"<p><strong>{text(response.get('status'))} {text(response.get('reason'))}</strong> · "
            f"{number(response.get('size_bytes'), ' bytes')}{' · ' + timing if timing else ''}</p>"
            f"{headers_table(response.get('headers'))}{body_block(response)}"
        )
    else:
        answered = f'<p class="none">no response{" · " + timing if timing else ""}</p>'
    return (
        f'<div class="exchange"><details open><summary>Request</summary>'
        f'<p class="mono">{text(step.get("method"))} {text(step.get("url"))}</p>'
        f"{headers_table(request.get('headers'))}{body_block(request)}</details>"
        f"<details open><summary>Response</summary>{answered}</details></div>"
    )


def step_section(position: int, count: int, step: dict, detail: Optional[dict], anchor: str) -> str:
    state = STEP_STATE.get(step.get("result") or "", "other")
    title = f"{step.get('method') or ''} {step.get('url') or ''}".strip() or "step without a request"
    return (
        f'<article class="step {escape(state)}" id="{escape(anchor)}" data-result="{escape(state)}">'
        f'<h3>{badge(state)} <span class="pos">step {position} of {count}</span> '
        f'<span class="mono">{escape(title)}</span></h3>{exchange(step, detail)}{checks(step)}</article>'
    )


def region_section(doc: dict, details: dict[str, Optional[dict]], index: int) -> str:
    where = doc.get("region") or doc.get("agent") or "default location"
    steps = list(enumerate(doc.get("requests") or [], start=1))
    # The eye goes first to what failed: failed steps lead, each keeping its number.
    ordered = sorted(steps, key=lambda s: s[1].get("result") != "fail")
    failed = [f"r{index}-s{p}" for p, s in steps if s.get("result") == "fail"]
    jump = (
        '<p class="jump">failed: ' + " ".join(f'<a href="#{a}">step {a.split("-s")[1]}</a>' for a in failed) + "</p>"
        if failed
        else ""
    )
    started = doc.get("started_at")
    finished = doc.get("finished_at")
    took = (
        f" · {number((finished - started), ' s', 2)}"
        if isinstance(started, (int, float)) and isinstance(finished, (int, float))
        else ""
    )
    sections = "".join(
        step_section(p, len(steps), s, details.get(s.get("uuid") or ""), f"r{index}-s{p}") for p, s in ordered
    )
    return (
        f'<section class="region" id="region-{index}" data-region="{escape(str(where))}">'
        f"<h2>{escape(str(where))} {badge(STEP_STATE.get(doc.get('result') or '', 'running'))}</h2>"
        f'<p class="facts">environment {text(doc.get("environment_name"))}{took}</p>{jump}'
        f"{sections or NO_STEPS}</section>"
    )


def run_page(view: dict, run_id: str, pieces: list[tuple[dict, dict]], current: Session, nonce: str) -> str:
    ns, name = view["namespace"], view["name"]
    regions = "".join(region_section(doc, details, i) for i, (doc, details) in enumerate(pieces))
    nav = (
        '<nav class="regions" aria-label="Regions">'
        + " ".join(
            f'<a href="#region-{i}">{escape(str(doc.get("region") or doc.get("agent") or "default location"))}</a>'
            for i, (doc, _) in enumerate(pieces)
        )
        + "</nav>"
        if len(pieces) > 1
        else ""
    )
    body = (
        f'<div class="title"><h2>{escape(view["displayName"])} · run <span class="mono">{escape(run_id)}</span></h2>'
        f"{actions.run_monitor_button(current, ns, name)}</div>{nav}{regions}"
    )
    trail = [
        ("Overview", "/dashboard"),
        (f"{ns}/{name}", monitor_url(ns, name)),
        (run_id, f"{monitor_url(ns, name)}/runs/{run_id}"),
    ]
    return subpage(f"Run {run_id}", current.principal.client_id, trail, body, nonce)


# --- routes ------------------------------------------------------------------------------------------------


def register(router: APIRouter, ctx: PageContext) -> None:
    services = ctx.services
    dashboard = DashboardService(services.kube, services.store)
    results = RunscopeResults(services.store, services.settings.public_url)
    schedule_list = ScheduleList(services.kube)

    def monitor_of(current: Session, namespace: str, name: str) -> dict:
        view = dashboard.monitor(ctx.reachable_namespace(current, namespace), name)
        if view is None:
            raise NotFound(f"no monitor {name!r} in namespace {namespace!r}")
        return view

    @router.get("/dashboard/monitors/{namespace}/{name}")
    def monitor_page(namespace: Namespace, name: Name, current: Session = Depends(ctx.session)):
        view = monitor_of(current, namespace, name)
        now = time.time()
        figures = services.store.monitor_result_figures(namespace, view["uid"], now - 2 * TIMEFRAMES["month"][0], now)
        listed = [s for s in schedule_list.of([namespace]) if s["target"] == {"kind": "Monitor", "name": name}]
        return ctx.html(lambda nonce: overview_page(view, figures, listed, current, nonce))

    @router.get("/dashboard/monitors/{namespace}/{name}/runs/{run_id}")
    def run(namespace: Namespace, name: Name, run_id: RunId, current: Session = Depends(ctx.session)):
        view = monitor_of(current, namespace, name)
        records = services.store.run_monitor_results(run_id)
        pieces = []
        for record in records:
            if record.project != namespace or record.owner_uid != view["uid"]:
                break
            where = record.header.get("region") or record.header.get("agent") if len(records) > 1 else None
            doc = results.result(namespace, view["uid"], run_id, where)
            details = {}
            for step in doc.get("requests") or []:
                if step.get("uuid") and step.get("url"):
                    try:
                        details[step["uuid"]] = results.step(namespace, view["uid"], run_id, step["uuid"], where)
                    except NotFound:
                        details[step["uuid"]] = None
            pieces.append((doc, details))
        if not pieces:
            raise NotFound(f"no results of run {run_id!r} of monitor {name!r} (yet)")
        return ctx.html(lambda nonce: run_page(view, run_id, pieces, current, nonce))
