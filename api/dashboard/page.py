"""The dashboard's HTML: pure functions from the overview (services/dashboard.py) to a page.

One self-contained document: the stylesheet and the script (dashboard.css, dashboard.js, next
to this module) are inlined under a per-response nonce, charts are inline SVG, and the page
asks for nothing but the gateway's own /dashboard URLs. Every value is escaped.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from html import escape
from importlib import resources
from urllib.parse import quote, urlencode

from ..services.loadtests import parse_time
from .chart import response_time_chart

BADGE_CLASS = {"passed": "ok", "failed": "bad", "aborted": "bad", "running": "busy", "pending": "idle"}


@lru_cache
def asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def content_security_policy(nonce: str) -> str:
    return (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src 'self'; "
        "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )


# --- small pieces -------------------------------------------------------------------------------------


def monitor_url(namespace: str, name: str) -> str:
    return f"/dashboard/monitors/{namespace}/{name}"


def suite_run_url(namespace: str, run_id: str) -> str:
    return f"/dashboard/suites/{namespace}/runs/{run_id}"


def badge(state: str | None) -> str:
    state = state or "pending"
    return f'<span class="badge {BADGE_CLASS.get(state, "idle")}">{escape(state)}</span>'


def relative(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 45:
        return "just now"
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return "just now"


def when(value: str | None, now: dt.datetime) -> str:
    """A relative time the script keeps current, with the exact time as tooltip."""
    moment = parse_time(value)
    if moment is None:
        return '<span class="none">–</span>'
    exact = moment.strftime("%Y-%m-%d %H:%M:%S UTC")
    return (
        f'<time datetime="{moment.strftime("%Y-%m-%dT%H:%M:%SZ")}" title="{exact}">'
        f"{relative((now - moment).total_seconds())}</time>"
    )


def duration(seconds: float | None) -> str:
    if seconds is None:
        return '<span class="none">–</span>'
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def number(value, unit: str = "", digits: int = 0) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return '<span class="none">–</span>'
    return f"{value:,.{digits}f}{unit}"


def loadtest_url(namespace: str, name: str) -> str:
    """The load test's own page (loadtest.py)."""
    return f"/dashboard/loadtests/{quote(namespace)}/{quote(name)}"


def archive_links(loadtest: dict) -> str:
    links = [
        f'<a class="archive" href="{escape(a["url"])}" download>{kind} {a["number"]}</a>'
        for kind, key in (("report", "reports"), ("result", "results"))
        for a in loadtest[key]
    ]
    return " ".join(links) or '<span class="none">none yet</span>'


# --- sections -------------------------------------------------------------------------------------------


def loadtests_section(loadtests: list[dict], now: dt.datetime, controls=None) -> str:
    if not loadtests:
        return '<section id="loadtests"><h2>Load tests</h2><p class="empty">No load tests.</p></section>'
    rows = []
    for lt in loadtests:
        note = f'<div class="note">{escape(lt["message"])}</div>' if lt.get("message") else ""
        rows.append(
            f'<tr data-name="{escape(lt["namespace"])}/{escape(lt["name"])}">'
            f'<td>{escape(lt["namespace"])}</td><td class="num">{lt["number"]}</td>'
            f'<td><a href="{escape(loadtest_url(lt["namespace"], lt["name"]))}"><strong>{escape(lt["name"])}</strong></a>'
            f"{note}{controls(lt) if controls else ''}</td><td>{badge(lt['state'])}</td>"
            f'<td class="num">{number(lt["requests"])}</td><td class="num">{number(lt["failures"])}</td>'
            f'<td class="num">{number(lt["p95Ms"], " ms", 1)}</td><td>{when(lt["startedAt"], now)}</td>'
            f'<td class="num">{duration(lt["durationSeconds"])}</td><td>{archive_links(lt)}</td></tr>'
        )
    return (
        '<section id="loadtests"><h2>Load tests</h2><div class="scroll"><table><thead><tr>'
        '<th scope="col">Namespace</th><th scope="col">#</th><th scope="col">Name</th>'
        '<th scope="col">State</th><th scope="col">Requests</th><th scope="col">Failures</th>'
        '<th scope="col">p95</th><th scope="col">Started</th><th scope="col">Duration</th>'
        f'<th scope="col">Archives</th></tr></thead><tbody>{"".join(rows)}</tbody></table></div></section>'
    )


def monitor_card(monitor: dict, now: dt.datetime) -> str:
    label = f"{monitor['namespace']}/{monitor['name']}"
    home = monitor_url(monitor["namespace"], monitor["name"])
    strip = "".join(
        f'<span class="dot {BADGE_CLASS.get(r["result"], "idle")}" title="{escape(r["runId"])}: '
        f'{escape(r["result"])}"></span>'
        for r in reversed(monitor["runs"])
    )
    rows = "".join(
        f'<tr><td><a href="{escape(home)}/runs/{escape(r["runId"])}">{when(r["startedAt"], now)}</a></td>'
        f"<td>{badge(r['result'])}</td>"
        f'<td class="num">{number(r["responseTimeMs"], " ms")}</td>'
        f"<td>{escape(r['environment'] or '')}</td><td>{escape(', '.join(r['regions']))}</td>"
        f"<td>{'schedule ' + escape(r['schedule']) if r['schedule'] else 'request'}</td></tr>"
        for r in monitor["runs"][:10]
    )
    pass_rate = number(monitor["passRate"], " %", 1)
    return (
        f'<article class="monitor" data-name="{escape(label)}"><header><h3><a href="{escape(home)}">{escape(monitor["displayName"])}</a></h3>'
        f'<span class="ns">{escape(monitor["namespace"])}</span>{badge(monitor["lastResult"])}</header>'
        f'<p class="facts">last run {when(monitor["lastRunAt"], now)} · {monitor["runCount"]} runs · '
        f"{pass_rate} passed · mean response {number(monitor['avgResponseTimeMs'], ' ms', 1)}</p>"
        f'<div class="strip">{strip}</div>{response_time_chart(monitor["responseTimes"], label)}'
        '<div class="scroll"><table class="runs"><thead><tr><th scope="col">Run</th><th scope="col">Result</th>'
        '<th scope="col">Response</th><th scope="col">Environment</th><th scope="col">Regions</th>'
        f'<th scope="col">Started by</th></tr></thead><tbody>{rows}</tbody></table></div></article>'
    )


def monitors_section(monitors: list[dict], now: dt.datetime) -> str:
    body = "".join(monitor_card(m, now) for m in monitors) or '<p class="empty">No monitors.</p>'
    return f'<section id="monitors"><h2>Monitors</h2><div class="cards">{body}</div></section>'


def suites_section(runs: list[dict], now: dt.datetime) -> str:
    if not runs:
        return '<section id="suiteruns"><h2>Suite runs</h2><p class="empty">No suite runs.</p></section>'
    rows = "".join(
        f"<tr><td>{escape(r['namespace'])}</td><td><strong>{escape(r['suite'])}</strong></td>"
        f'<td class="mono"><a href="{escape(suite_run_url(r["namespace"], r["runId"]))}">{escape(r["runId"])}</a></td>'
        f"<td>{badge(r['state'])}</td>"
        f'<td class="num">{escape(r["progress"] or "–")}</td><td class="num">{number(r["successRate"], " %", 1)}</td>'
        f'<td>{when(r["startedAt"], now)}</td><td class="num">{duration(r["durationSeconds"])}</td></tr>'
        for r in runs
    )
    return (
        '<section id="suiteruns"><h2>Suite runs</h2><div class="scroll"><table><thead><tr><th scope="col">Namespace</th>'
        '<th scope="col">Suite</th><th scope="col">Run</th><th scope="col">State</th>'
        '<th scope="col">Flows</th><th scope="col">Success</th><th scope="col">Started</th>'
        f'<th scope="col">Duration</th></tr></thead><tbody>{rows}</tbody></table></div></section>'
    )


def namespace_filter(namespaces: list[str], selected: str | None) -> str:
    options = ['<option value="">all namespaces</option>'] + [
        f'<option value="{escape(ns)}"{" selected" if ns == selected else ""}>{escape(ns)}</option>'
        for ns in namespaces
    ]
    return (
        '<form id="filter" method="get" action="/dashboard"><label for="namespace">Namespace</label>'
        f'<select id="namespace" name="namespace">{"".join(options)}</select>'
        '<button type="submit">Show</button></form>'
    )


# --- pages ------------------------------------------------------------------------------------------------


def document(title: str, body: str, nonce: str, *, script: bool = False, attributes: str = "") -> str:
    js = f'<script nonce="{nonce}">{asset("dashboard.js")}</script>' if script else ""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{escape(title)}</title><link rel="icon" href="data:,">'
        f'<style nonce="{nonce}">{asset("dashboard.css")}</style></head>'
        f"<body{attributes}>{body}{js}</body></html>"
    )


def top_bar(signed_in_as: str, middle: str = "") -> str:
    return (
        '<header class="top"><h1><a href="/dashboard">Assay</a></h1>'
        '<nav aria-label="Pages"><a href="/dashboard">Overview</a> <a href="/dashboard/schedules">Schedules</a></nav>'
        f'{middle}<div class="who">signed in as <strong>{escape(signed_in_as)}</strong>'
        '<form method="post" action="/dashboard/logout"><button type="submit">Log out</button></form></div></header>'
    )


def breadcrumbs(trail: list[tuple[str, str]]) -> str:
    crumbs = " / ".join(f'<a href="{escape(url)}">{escape(label)}</a>' for label, url in trail)
    return f'<nav class="trail" aria-label="Breadcrumb">{crumbs}</nav>'


def subpage(title: str, signed_in_as: str, trail: list[tuple[str, str]], body: str, nonce: str) -> str:
    """A page below the overview: the same top bar, a breadcrumb trail of (label, URL) and
    `body`; no script, as nothing on it refreshes."""
    main = f'<main id="content">{breadcrumbs(trail)}{body}</main>'
    return document(f"{title} · Assay dashboard", top_bar(signed_in_as) + main, nonce)


def dashboard_page(overview: dict, signed_in_as: str, nonce: str, now: dt.datetime | None = None, controls=None) -> str:
    """`controls(loadtest)`: the actions the session may take on a load test, as HTML."""
    now = now or dt.datetime.now(dt.timezone.utc)
    selected = overview["namespace"]
    api = "/dashboard/api/overview" + (f"?{urlencode({'namespace': selected})}" if selected else "")
    count = len(overview["namespaces"])
    scope = escape(selected) if selected else f"{count} namespace{'' if count == 1 else 's'}"
    header = top_bar(signed_in_as, namespace_filter(overview["namespaces"], selected))
    main = (
        f'<main id="content"><p class="scope">Showing {scope} · updated {when(overview["generatedAt"], now)}'
        "</p>"
        f"{loadtests_section(overview['loadTests'], now, controls)}{monitors_section(overview['monitors'], now)}"
        f"{suites_section(overview['suiteRuns'], now)}</main>"
    )
    attributes = f' data-api="{escape(api)}" data-fingerprint="{escape(overview["fingerprint"])}"'
    return document("Assay dashboard", header + main, nonce, script=True, attributes=attributes)


def login_page(form_token: str, nonce: str, error: str | None = None, client_id: str = "") -> str:
    problem = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    body = (
        '<main class="login"><h1>Assay</h1><p>Sign in with the client id and secret of a client credential.</p>'
        f'{problem}<form method="post" action="/dashboard/login">'
        f'<input type="hidden" name="form_token" value="{escape(form_token)}">'
        '<label for="client_id">Client id</label>'
        f'<input id="client_id" name="client_id" autocomplete="username" required value="{escape(client_id)}">'
        '<label for="client_secret">Client secret</label>'
        '<input id="client_secret" name="client_secret" type="password" autocomplete="current-password" required>'
        '<button type="submit">Sign in</button></form></main>'
    )
    return document("Sign in · Assay dashboard", body, nonce)


def error_page(status: int, message: str, nonce: str) -> str:
    body = (
        f'<main class="login"><h1>Assay</h1><p class="error" role="alert">{escape(message)}</p>'
        '<p><a href="/dashboard">Back to the dashboard</a></p></main>'
    )
    return document(f"{status} · Assay dashboard", body, nonce)
