"""A load test's own page: /dashboard/loadtests/<namespace>/<name>.

The live part (figures, criteria with their headroom, the charts of requests/s, errors/s,
p50/p95/p99 and active users over time) is drawn by loadtest.js from the view
(services/dashboard_loadtest.py), first from a copy embedded in the page, then, while the run
is live, from the page's JSON every few seconds; when the run ends the script reloads the
page once, which then carries the report's summary, per-request table and errors by kind.
Runs and their comparison are plain server-rendered HTML: a GET form picks the two runs, so
a comparison is a deep link too. Same rules as page.py: one document, nonce'd inline
assets, classes only, every value escaped.
"""

from __future__ import annotations

import json
from html import escape
from urllib.parse import quote

from .page import archive_links, asset, badge, breadcrumbs, document, duration, loadtest_url, number, top_bar

METRIC_ROWS = (("throughputRps", "Throughput", " req/s", 1), ("errorRatePct", "Error rate", " %", 2))
LATENCY_COLUMNS = (("p50Ms", "p50"), ("p95Ms", "p95"), ("p99Ms", "p99"), ("maxMs", "max"))
VERDICT_CLASS = {"better": "ok", "worse": "bad"}


def api_url(namespace: str, name: str) -> str:
    return f"/dashboard/api/namespaces/{quote(namespace)}/loadtests/{quote(name)}"


def embedded(view: dict) -> str:
    # Inside <script>, only "</" can end the element early.
    return json.dumps(view, separators=(",", ":")).replace("</", "<\\/")


def html_report_links(view: dict) -> str:
    links = [
        f'<a class="archive" href="{escape(r["url"])}/html" target="_blank" rel="noopener">HTML report {r["number"]}</a>'
        for r in view["reports"]
    ]
    return " ".join(links)


def live_section() -> str:
    charts = "".join(
        f'<figure><figcaption>{title}</figcaption><svg id="chart-{key}" class="chart live" role="img" '
        f'viewBox="0 0 560 180" aria-label="{title} over time"></svg></figure>'
        for key, title in (
            ("throughput", "Requests/s and errors/s"),
            ("latency", "Response time p50 / p95 / p99 (ms)"),
            ("users", "Active users"),
        )
    )
    return (
        '<section id="live"><h2>Over time <span id="source" class="note"></span></h2>'
        '<div id="figures" class="figures"></div>'
        f'<div class="charts">{charts}</div></section>'
        '<section id="criteria"><h2>Criteria</h2><div id="criteria-table"></div></section>'
    )


def summary_section(report: dict) -> str:
    total = report["total"]
    tiles = [
        ("Requests", number(total.get("count"))),
        ("Errors", number(total.get("errors"))),
        *((title, number(total.get(key), unit, digits)) for key, title, unit, digits in METRIC_ROWS),
        *((title, number(total.get(key), " ms", 1)) for key, title in LATENCY_COLUMNS),
        ("Duration", duration(report["run"].get("durationS"))),
        ("Peak users", number(report["run"].get("peakUsers"))),
    ]
    body = "".join(f'<div class="figure"><span>{t}</span><strong>{v}</strong></div>' for t, v in tiles)
    return (
        f'<section id="summary"><h2>Summary {badge(report.get("verdict"))}</h2>'
        f'<div class="figures">{body}</div></section>'
    )


def requests_section(report: dict) -> str:
    heads = ["Request", "Count", "Errors", "Error rate", "req/s"] + [t for _, t in LATENCY_COLUMNS]
    rows = "".join(
        f'<tr><td>{escape(str(r.get("name")))}</td><td class="num">{number(r.get("count"))}</td>'
        f'<td class="num">{number(r.get("errors"))}</td><td class="num">{number(r.get("errorRatePct"), " %", 2)}</td>'
        f'<td class="num">{number(r.get("throughputRps"), "", 1)}</td>'
        + "".join(f'<td class="num">{number(r.get(key), " ms", 1)}</td>' for key, _ in LATENCY_COLUMNS)
        + "</tr>"
        for r in report["requests"]
    )
    head = "".join(f'<th scope="col">{h}</th>' for h in heads)
    return (
        f'<section id="requests"><h2>Per request</h2><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{rows}</tbody></table></section>"
    )


def errors_section(report: dict) -> str:
    kinds = report["errorsByKind"]
    if not kinds:
        return '<section id="errors"><h2>Errors by kind</h2><p class="empty">No errors.</p></section>'
    rows = "".join(
        f'<tr><td>{escape(kind)}</td><td class="num">{number(count)}</td></tr>'
        for kind, count in sorted(kinds.items(), key=lambda kv: -kv[1])
    )
    return (
        '<section id="errors"><h2>Errors by kind</h2><table><thead><tr><th scope="col">Kind</th>'
        f'<th scope="col">Count</th></tr></thead><tbody>{rows}</tbody></table></section>'
    )


def runs_section(view: dict, picked: tuple[int | None, int | None]) -> str:
    current = ' class="current"'
    rows = "".join(
        f'<tr{current if r["name"] == view["name"] else ""}><td class="num">{r["number"]}</td>'
        f'<td><a href="{escape(loadtest_url(view["namespace"], r["name"]))}">{escape(r["name"])}</a></td>'
        f"<td>{badge(r['state'])}</td><td>{escape(r['startedAt'] or '–')}</td>"
        f"<td>{'yes' if r['hasReport'] else 'not yet'}</td></tr>"
        for r in view["runs"]
    )
    comparable = [r for r in view["runs"] if r["hasReport"]]
    form = ""
    if len(comparable) >= 2:
        defaults = (picked[0] or comparable[-2]["number"], picked[1] or comparable[-1]["number"])

        def select(field: str, label: str, chosen: int) -> str:
            options = "".join(
                f'<option value="{r["number"]}"{" selected" if r["number"] == chosen else ""}>'
                f"#{r['number']} {escape(r['name'])}</option>"
                for r in comparable
            )
            return f'<label for="{field}">{label}</label><select id="{field}" name="{field}">{options}</select>'

        form = (
            f'<form id="compare" method="get" action="{escape(loadtest_url(view["namespace"], view["name"]))}#comparison">'
            f"{select('a', 'Run', defaults[0])}{select('b', 'with', defaults[1])}"
            '<button type="submit">Compare</button></form>'
        )
    return (
        '<section id="runs"><h2>Runs of this load test</h2><table><thead><tr><th scope="col">#</th>'
        '<th scope="col">Name</th><th scope="col">State</th><th scope="col">Started</th>'
        f'<th scope="col">Report</th></tr></thead><tbody>{rows}</tbody></table>{form}</section>'
    )


def change_cells(d: dict, unit: str, digits: int) -> str:
    css = VERDICT_CLASS.get(d["verdict"], "")
    pct = "–" if d["deltaPct"] is None else f"{d['deltaPct']:+.1f} %"
    return (
        f'<td class="num">{number(d["baseline"], unit, digits)}</td>'
        f'<td class="num">{number(d["measurement"], unit, digits)}</td>'
        f'<td class="num verdict {css}">{pct}</td><td class="verdict {css}">{escape(d["verdict"])}</td>'
    )


def comparison_section(comparison: dict | None, problem: str | None) -> str:
    if problem:
        return (
            f'<section id="comparison"><h2>Comparison</h2><p class="error" role="alert">{escape(problem)}</p></section>'
        )
    if comparison is None:
        return ""
    base, meas = comparison["baseline"], comparison["measurement"]
    units = {m["key"]: (" " + m["unit"] if m["unit"] != "%" else " %") for m in comparison["metrics"]}
    titles = {m["key"]: m["title"] for m in comparison["metrics"]}
    head = (
        '<thead><tr><th scope="col">Metric</th>'
        f'<th scope="col">Baseline {escape(base["label"])}</th>'
        f'<th scope="col">Measurement {escape(meas["label"])}</th><th scope="col">Change</th>'
        '<th scope="col">Verdict</th></tr></thead>'
    )
    total = "".join(
        f'<tr><th scope="row">{escape(titles[key])}</th>{change_cells(d, units[key], 2)}</tr>'
        for key, d in comparison["total"].items()
    )
    per_request = "".join(
        f'<tr><th scope="row">{escape(r["name"])}</th>{change_cells(r["p95Ms"], " ms", 1)}</tr>'
        for r in comparison["requests"]
    )
    return (
        '<section id="comparison"><h2>Comparison</h2>'
        f'<p class="facts">Baseline <strong>{escape(base["label"])}</strong> ({number(base["requests"])} requests, '
        f"{escape(base['verdict'] or '–')}) → measurement <strong>{escape(meas['label'])}</strong> "
        f"({number(meas['requests'])} requests, {escape(meas['verdict'] or '–')}). Changes within "
        f"±{comparison['neutralBandPct']:g} % count as unchanged.</p>"
        f'<table class="compare total">{head}<tbody>{total}</tbody></table>'
        f'<h3>p95 per request</h3><table class="compare requests">{head}<tbody>{per_request}</tbody></table></section>'
    )


def loadtest_page(
    view: dict,
    signed_in_as: str,
    nonce: str,
    *,
    comparison: dict | None = None,
    comparison_problem: str | None = None,
    picked: tuple[int | None, int | None] = (None, None),
    controls: str = "",
) -> str:
    """`controls`: the actions the session may take on this load test, as HTML."""
    namespace = view["namespace"]
    trail = breadcrumbs(
        [
            ("Overview", "/dashboard"),
            (namespace, f"/dashboard?namespace={quote(namespace)}"),
            (f"load test #{view['number']}", loadtest_url(namespace, view["name"])),
        ]
    )
    load = view["load"]
    profile = ", ".join(f"{escape(str(k))} {escape(str(v))}" for k, v in load.items()) or "default load"
    note = f'<p class="note">{escape(view["message"])}</p>' if view.get("message") else ""
    final = ""
    if view["report"]:
        final = summary_section(view["report"]) + requests_section(view["report"]) + errors_section(view["report"])
    archives = (
        f'<section id="archives"><h2>Report and archives</h2><p>{html_report_links(view)} {archive_links(view)}</p>'
        "</section>"
    )
    main = (
        f'<main id="content">{trail}<div class="title"><h2>{escape(view["name"])} {badge(view["state"])}</h2>{controls}</div>'
        f'<p class="facts">{escape(view["description"])} · {view["shards"]} shard(s) · {profile} · '
        f"duration {duration(view['durationSeconds'])}</p>{note}"
        f"{live_section()}{final}{archives}{runs_section(view, picked)}"
        f"{comparison_section(comparison, comparison_problem)}</main>"
    )
    data = f'<script type="application/json" id="loadtest-data" nonce="{nonce}">{embedded(view)}</script>'
    script = (
        f'<style nonce="{nonce}">{asset("loadtest.css")}</style><script nonce="{nonce}">{asset("loadtest.js")}</script>'
    )
    attributes = f' data-api="{escape(api_url(view["namespace"], view["name"]))}"'
    return document(
        f"{view['name']} · Assay load test", top_bar(signed_in_as) + main + data + script, nonce, attributes=attributes
    )
