"""The static HTML load-test report: one self-contained file, built from a report summary.

No external URL, font, stylesheet or script: the CSS is inline and the charts are inline SVG
(`charts.py`), so a report opens from a zip on a machine without network, and shows the same
thing in ten years. The page is a function of the summary (`report.json`) alone, so an
archive's report can always be rebuilt from its own JSON.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from html import escape

from assay.crds.loadtest import LATENCY_METRICS

from .charts import Series, legend, line_chart
from .metrics import ERROR_KINDS
from .summary import display_label

COLORS = {"blue": "#0072b2", "orange": "#e69f00", "red": "#d55e00", "green": "#009e73", "purple": "#cc79a7"}

STYLE = """
:root{--fg:#1f2933;--muted:#5f6b7a;--line:#d9dee5;--bg:#ffffff;--panel:#f6f8fa;--accent:#0072b2;
--good:#1a7f37;--good-bg:#dafbe1;--bad:#b42318;--bad-bg:#fde7e7;--warn:#8a5a00;--warn-bg:#fff4d6}
*{box-sizing:border-box}
html{background:var(--bg);color:var(--fg);font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,sans-serif}
body{margin:0}
header.page{background:#10243e;color:#fff;padding:24px 32px 20px}
header.page h1{margin:0 0 4px;font-size:24px;font-weight:600}
header.page .sub{margin:0;color:#c8d3e0}
header.page .sub strong{color:#fff}
nav.toc{display:flex;flex-wrap:wrap;gap:4px 18px;padding:10px 32px;border-bottom:1px solid var(--line);
background:var(--panel);font-size:14px}
nav.toc a{color:var(--accent);text-decoration:none}
nav.toc a:hover,nav.toc a:focus{text-decoration:underline}
main{padding:8px 32px 32px;max-width:1280px}
section{margin-top:28px}
h2{font-size:19px;font-weight:600;margin:0 0 12px;padding-bottom:6px;border-bottom:1px solid var(--line)}
h3{font-size:15px;font-weight:600;margin:18px 0 6px}
p.note{color:var(--muted);margin:6px 0}
.badge{display:inline-block;padding:2px 10px;border-radius:999px;font-size:13px;font-weight:600;
vertical-align:middle;margin-left:8px}
.badge.passed,.badge.better{background:var(--good-bg);color:var(--good)}
.badge.failed,.badge.worse{background:var(--bad-bg);color:var(--bad)}
.badge.aborted{background:var(--warn-bg);color:var(--warn)}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:12px}
.card{background:var(--panel);border:1px solid var(--line);border-radius:8px;padding:10px 14px}
.card .label{color:var(--muted);font-size:13px}
.card .value{font-size:22px;font-weight:600;font-variant-numeric:tabular-nums}
.card .unit{font-size:14px;font-weight:400;color:var(--muted);margin-left:3px}
.table-wrap{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums;font-size:14px}
caption{text-align:left;color:var(--muted);padding:0 0 6px;font-size:13px}
th,td{padding:6px 10px;border-bottom:1px solid var(--line);text-align:right;white-space:nowrap}
thead th{background:var(--panel);font-weight:600;border-bottom:2px solid var(--line);vertical-align:bottom;
white-space:normal}
th[scope=row],td.text,th.text{text-align:left}
th[scope=row]{font-weight:500;white-space:normal;word-break:break-word;min-width:12em}
tfoot th,tfoot td,tfoot th[scope=row]{font-weight:600;border-top:2px solid var(--line)}
table.fixed{table-layout:fixed}
table.fixed th:first-child{width:30%}
tbody tr:hover{background:#f0f4f8}
td.zero{color:#a0a9b4}
td.better{color:var(--good);background:var(--good-bg)}
td.worse{color:var(--bad);background:var(--bad-bg)}
td.pass{color:var(--good);font-weight:600}
td.fail{color:var(--bad);font-weight:600}
figure{margin:0 0 20px;border:1px solid var(--line);border-radius:8px;padding:12px 12px 4px}
figcaption{font-weight:600;margin:0 0 4px}
svg.chart{width:100%;height:auto;display:block}
svg .grid{stroke:#e6e9ee;stroke-width:1}
svg .axis{stroke:#8a94a0;stroke-width:1}
svg .frame{fill:none;stroke:var(--line)}
svg .tick,svg .axis-label{fill:var(--muted);font-size:12px}
svg .empty{fill:var(--muted);font-size:16px}
svg .line{stroke-width:2;stroke-linejoin:round;stroke-linecap:round}
ul.legend{list-style:none;display:flex;flex-wrap:wrap;gap:4px 18px;margin:4px 0 6px;padding:0;font-size:13px}
ul.legend .swatch{display:inline-block;width:18px;height:0;border-top:3px solid;margin-right:6px;
vertical-align:middle}
ul.legend .swatch.dashed{border-top-style:dashed}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:4px 20px;margin:0}
dl.meta dt{color:var(--muted)}
dl.meta dd{margin:0;word-break:break-word}
footer{color:var(--muted);font-size:13px;padding:16px 32px;border-top:1px solid var(--line)}
@media print{nav.toc{display:none}header.page{background:none;color:var(--fg)}
header.page .sub,header.page .sub strong{color:var(--fg)}tbody tr:hover{background:none}}
"""

# --- number formatting --------------------------------------------------------------------------

DASH = "–"


def fmt_int(value: int | None) -> str:
    return DASH if value is None else f"{value:,}"


def fmt_ms(value: float | None) -> str:
    if value is None:
        return DASH
    if abs(value) < 10:
        return f"{value:,.2f}"
    if abs(value) < 100:
        return f"{value:,.1f}"
    return f"{value:,.0f}"


def fmt_rate(value: float | None) -> str:
    if value is None:
        return DASH
    if abs(value) < 10:
        return f"{value:,.2f}"
    if abs(value) < 1000:
        return f"{value:,.1f}"
    return f"{value:,.0f}"


def fmt_pct(percent: float | None) -> str:
    return DASH if percent is None else f"{percent:.2f} %"


def fmt_bytes(value: int | None) -> str:
    if value is None:
        return DASH
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= size:
            return f"{value / size:,.1f} {unit}"
    return f"{value} B"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return DASH
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def fmt_time(iso: str | None) -> str:
    if not iso:
        return DASH
    return iso.replace("T", " ").replace(".000Z", "Z").replace("Z", " UTC")


# --- page parts ---------------------------------------------------------------------------------


def page(*, title: str, heading: str, subtitle: str, nav: Iterable[tuple[str, str]], body: str, footer: str) -> str:
    links = "".join(f'<a href="#{anchor}">{escape(text)}</a>' for anchor, text in nav)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
        f'<body><header class="page"><h1>{heading}</h1><p class="sub">{subtitle}</p></header>'
        f'<nav class="toc" aria-label="Sections">{links}</nav>'
        f"<main>{body}</main><footer>{footer}</footer></body></html>\n"
    )


def section(anchor: str, title: str, content: str) -> str:
    return (
        f'<section id="{anchor}" aria-labelledby="{anchor}-h">'
        f'<h2 id="{anchor}-h">{escape(title)}</h2>{content}</section>'
    )


def table(
    *,
    caption: str,
    head: list[str],
    rows: list[str],
    foot: list[str] = (),
    text_columns: Iterable[int] = (0,),
    css_class: str = "",
) -> str:
    """`head` cells are column titles (plain text), left-aligned for `text_columns` and
    right-aligned (numbers) otherwise; `rows`/`foot` are ready `<tr>` markup."""
    text_columns = set(text_columns)
    ths = "".join(
        f'<th scope="col"{" class=text" if i in text_columns else ""}>{escape(h)}</th>' for i, h in enumerate(head)
    )
    tfoot = f"<tfoot>{''.join(foot)}</tfoot>" if foot else ""
    css = f' class="{css_class}"' if css_class else ""
    return (
        f'<div class="table-wrap"><table{css}><caption>{escape(caption)}</caption>'
        f"<thead><tr>{ths}</tr></thead><tbody>{''.join(rows)}</tbody>{tfoot}</table></div>"
    )


def card(label: str, value: str, unit: str = "") -> str:
    unit_html = f'<span class="unit">{escape(unit)}</span>' if unit else ""
    return (
        f'<div class="card"><div class="label">{escape(label)}</div>'
        f'<div class="value">{escape(value)}{unit_html}</div></div>'
    )


def figure(chart_id: str, title: str, description: str, series: list[Series], y_label: str) -> str:
    svg = line_chart(chart_id=chart_id, title=title, description=description, series=series, y_label=y_label)
    return f"<figure><figcaption>{escape(title)}</figcaption>{legend(series)}{svg}</figure>"


VERDICT_TEXT = {"passed": "Passed", "failed": "Failed", "aborted": "Aborted"}


# --- the report ---------------------------------------------------------------------------------


def _summary_cards(s: Mapping) -> str:
    total, run = s["total"], s["run"]
    return (
        '<div class="cards">'
        + "".join(
            [
                card("Requests", fmt_int(total["count"])),
                card("Throughput", fmt_rate(total["throughputRps"]), "req/s"),
                card("Errors", fmt_int(total["errors"])),
                card("Error rate", fmt_pct(total["errorRatePct"])),
                card("Median (p50)", fmt_ms(total["p50Ms"]), "ms"),
                card("p95", fmt_ms(total["p95Ms"]), "ms"),
                card("p99", fmt_ms(total["p99Ms"]), "ms"),
                card("Max", fmt_ms(total["maxMs"]), "ms"),
                card("Duration", fmt_duration(run["durationS"])),
                card("Peak users", fmt_int(run["peakUsers"])),
            ]
        )
        + "</div>"
    )


def _observed(criterion: str, observed: object) -> str:
    """An observation in its criterion's unit (the load engine gives ms, percent, req/s)."""
    if observed is None:
        return "nothing observed (no requests)"
    if not isinstance(observed, (int, float)):
        return str(observed)
    metric = re.match(r"\s*(\w*)", criterion).group(1)
    if metric in LATENCY_METRICS:
        return f"{fmt_ms(observed)} ms"
    if metric == "error_rate":
        return fmt_pct(observed)
    if metric == "rps":
        return f"{fmt_rate(observed)} req/s"
    return f"{observed:g}"


def _criteria(s: Mapping) -> str:
    if not s["criteria"]:
        return '<p class="note">No pass criteria were defined for this load test.</p>'
    rows = []
    for c in s["criteria"]:
        result = '<td class="text pass">✓ Passed</td>' if c["passed"] else '<td class="text fail">✗ Failed</td>'
        observed = escape(_observed(str(c["criterion"]), c["observed"]))
        rows.append(
            f'<tr><th scope="row">{escape(str(c["criterion"]))}</th><td class="text">{observed}</td>{result}</tr>'
        )
    passed = sum(1 for c in s["criteria"] if c["passed"])
    return table(
        caption=f"{passed} of {len(s['criteria'])} criteria passed",
        head=["Criterion", "Observed", "Result"],
        rows=rows,
        text_columns=(0, 1, 2),
    )


def _charts(s: Mapping) -> str:
    timeline = s["timeline"]
    if not timeline:
        return '<p class="note">The run recorded no timeline.</p>'
    x = [t["elapsedS"] if t["elapsedS"] is not None else t["second"] for t in timeline]
    throughput = [
        Series("requests/s", COLORS["blue"], list(zip(x, (t["requests"] for t in timeline)))),
        Series("errors/s", COLORS["red"], list(zip(x, (t["errors"] for t in timeline)))),
    ]
    latency = [
        Series("p50", COLORS["green"], list(zip(x, (t["p50Ms"] for t in timeline)))),
        Series("p95", COLORS["orange"], list(zip(x, (t["p95Ms"] for t in timeline)))),
        Series("p99", COLORS["red"], list(zip(x, (t["p99Ms"] for t in timeline))), dashed=True),
    ]
    users = [Series("active users", COLORS["blue"], list(zip(x, (t["activeUsers"] for t in timeline))))]
    peak_rps = max(t["requests"] for t in timeline)
    p99s = [t["p99Ms"] for t in timeline if t["p99Ms"] is not None]
    return "".join(
        [
            figure(
                "chart-throughput",
                "Throughput over time",
                f"Requests and errors per second over {len(timeline)} seconds; peak {peak_rps} requests/s, "
                f"{sum(t['errors'] for t in timeline)} errors in all.",
                throughput,
                "per second",
            ),
            figure(
                "chart-latency",
                "Response time over time",
                "Per-second p50, p95 and p99 response times in milliseconds"
                + (f"; highest p99 {fmt_ms(max(p99s))} ms." if p99s else "."),
                latency,
                "milliseconds",
            ),
            figure(
                "chart-users",
                "Active users over time",
                f"Concurrently active virtual users per second; peak {fmt_int(s['run']['peakUsers'])}.",
                users,
                "users",
            ),
        ]
    )


def _request_cells(row: Mapping) -> str:
    cells = [
        fmt_int(row["count"]),
        fmt_int(row["errors"]),
        fmt_pct(row["errorRatePct"]),
        fmt_rate(row["throughputRps"]),
        *(fmt_ms(row[f]) for f in ("minMs", "meanMs", "p50Ms", "p90Ms", "p95Ms", "p99Ms", "maxMs")),
    ]
    return "".join(f"<td>{c}</td>" for c in cells)


def _requests(s: Mapping) -> str:
    if not s["requests"]:
        return '<p class="note">No requests were recorded.</p>'
    rows = [f'<tr><th scope="row">{escape(r["name"])}</th>{_request_cells(r)}</tr>' for r in s["requests"]]
    foot = [f'<tr><th scope="row">Total</th>{_request_cells(s["total"])}</tr>']
    head = [
        "Request",
        "Count",
        "Errors",
        "Error rate",
        "Throughput (req/s)",
        "Min (ms)",
        "Mean (ms)",
        "p50 (ms)",
        "p90 (ms)",
        "p95 (ms)",
        "p99 (ms)",
        "Max (ms)",
    ]
    return table(caption="Response times in milliseconds, per request name", head=head, rows=rows, foot=foot)


def _error_cells(row: Mapping) -> str:
    cells = []
    for kind in ERROR_KINDS:
        n = row["errorsByKind"].get(kind, 0)
        cells.append('<td class="zero">0</td>' if n == 0 else f"<td>{fmt_int(n)}</td>")
    cells.append(f"<td>{fmt_int(row['errors'])}</td><td>{fmt_pct(row['errorRatePct'])}</td>")
    return "".join(cells)


def _errors(s: Mapping) -> str:
    if not s["total"]["errors"]:
        return '<p class="note">No request failed.</p>'
    rows = [f'<tr><th scope="row">{escape(r["name"])}</th>{_error_cells(r)}</tr>' for r in s["requests"] if r["errors"]]
    foot = [f'<tr><th scope="row">Total</th>{_error_cells(s["total"])}</tr>']
    head = ["Request", "HTTP status", "Timeout", "Connect", "Assertion", "Other", "All errors", "Error rate"]
    return table(
        caption="Failed requests by kind of error; requests without errors are left out",
        head=head,
        rows=rows,
        foot=foot,
    )


def _metadata(s: Mapping) -> str:
    run, total = s["run"], s["total"]
    items = [
        ("Load test", run["loadTest"]),
        ("Label", run["label"]),
        ("Run id", run["runId"]),
        ("Result", VERDICT_TEXT[s["verdict"]]),
        ("Started", fmt_time(run["startedAt"])),
        ("Finished", fmt_time(run["finishedAt"])),
        ("Duration", fmt_duration(run["durationS"])),
        ("Shards", run["shards"]),
        ("Bytes sent", fmt_bytes(total["bytesSent"])),
        ("Bytes received", fmt_bytes(total["bytesReceived"])),
    ]
    if run["aborted"]:
        items.append(("Abort reason", run["abortReason"] or "not given"))
    if run.get("droppedIterations"):
        items.append(("Dropped iterations", f"{fmt_int(run['droppedIterations'])} (all users were busy)"))
    items += [(str(k), v if isinstance(v, str) else str(v)) for k, v in run["extra"].items()]
    items.append(("Report generated", fmt_time(run["generatedAt"])))
    rows = "".join(f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>" for k, v in items if v not in (None, ""))
    return f'<dl class="meta">{rows}</dl>'


def render_report(summary: Mapping) -> str:
    """The HTML page of one run's report summary."""
    run = summary["run"]
    label = display_label(run)
    verdict = summary["verdict"]
    heading = f'Load test report <span class="badge {verdict}">{VERDICT_TEXT[verdict]}</span>'
    sub = f"<strong>{escape(label)}</strong>"
    if run["label"] and run["loadTest"]:
        sub += f" · {escape(str(run['loadTest']))}"
    sub += f" · started {escape(fmt_time(run['startedAt']))} · {escape(fmt_duration(run['durationS']))}"
    if run["aborted"]:
        sub += f" · aborted: {escape(run['abortReason'] or 'no reason given')}"
    body = "".join(
        [
            section("summary", "Summary", _summary_cards(summary)),
            section("criteria", "Pass criteria", _criteria(summary)),
            section("charts", "Over time", _charts(summary)),
            section("requests", "Requests", _requests(summary)),
            section("errors", "Errors", _errors(summary)),
            section("run", "Run", _metadata(summary)),
        ]
    )
    nav = [
        ("summary", "Summary"),
        ("criteria", "Criteria"),
        ("charts", "Over time"),
        ("requests", "Requests"),
        ("errors", "Errors"),
        ("run", "Run"),
    ]
    return page(
        title=f"Load test report: {label}",
        heading=heading,
        subtitle=sub,
        nav=nav,
        body=body,
        footer=f"Assay load test report · run {escape(str(run['runId']))} · "
        "data: report.json, requests.csv, timeline.csv, errors.csv",
    )
