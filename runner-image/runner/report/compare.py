"""Comparison reports: how one run did against another, per request name and overall.

Like XTC's comparison reports, the run that started earlier is the baseline and the other
the measurement run; `reverse=True` swaps them (XTC's "Reverse Order"). Runs are named by
their custom report label when they have one. A comparison needs only the two report
summaries (`report.json`), so it is built from report archives, not from raw results.

For every metric the comparison gives the baseline and measurement values, the absolute
change, the relative change in percent of the baseline, and a verdict: `better` or `worse`
by the metric's direction (higher throughput is better; lower error rate and response times
are better), `unchanged` when the change is within ±NEUTRAL_BAND_PCT percent, `n/a` when a
value is missing on either side.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from ._zip import json_bytes, now_iso, write_zip_atomically
from .archive import read_report
from .html import DASH, VERDICT_TEXT, fmt_duration, fmt_int, fmt_ms, fmt_pct, fmt_rate, fmt_time, page, section, table
from .metrics import epoch_seconds
from .summary import SUMMARY_KIND, display_label, summarize

COMPARISON_KIND = "assay-comparison-report"
# Changes smaller than this, in percent of the baseline, are shown as unchanged: run-to-run
# noise of a percent should not paint a report red and green.
NEUTRAL_BAND_PCT = 1.0


@dataclass(frozen=True)
class Metric:
    key: str
    title: str
    unit: str
    higher_is_better: bool
    value: Callable[[float | None], str]
    change: Callable[[float], str]


def _signed_ms(d: float) -> str:
    return ("+" if d > 0 else "") + fmt_ms(d)


def _signed_rate(d: float) -> str:
    return ("+" if d > 0 else "") + fmt_rate(d)


def _signed_points(d: float) -> str:
    return f"{d:+.2f} pp"


METRICS = (
    Metric("throughputRps", "Throughput", "req/s", True, fmt_rate, _signed_rate),
    Metric("errorRatePct", "Error rate", "%", False, fmt_pct, _signed_points),
    Metric("p50Ms", "p50", "ms", False, fmt_ms, _signed_ms),
    Metric("p95Ms", "p95", "ms", False, fmt_ms, _signed_ms),
    Metric("p99Ms", "p99", "ms", False, fmt_ms, _signed_ms),
    Metric("maxMs", "Max", "ms", False, fmt_ms, _signed_ms),
)


def delta(baseline: float | None, measurement: float | None, *, higher_is_better: bool) -> dict:
    """Absolute and relative change from baseline to measurement, with its verdict."""
    result = {"baseline": baseline, "measurement": measurement, "delta": None, "deltaPct": None, "verdict": "n/a"}
    if baseline is None or measurement is None:
        return result
    change = round(measurement - baseline, 6)
    pct = round(change / baseline * 100, 3) if baseline else (0.0 if change == 0 else None)
    result.update(delta=change, deltaPct=pct)
    if change == 0 or (pct is not None and abs(pct) < NEUTRAL_BAND_PCT):
        result["verdict"] = "unchanged"
    else:
        result["verdict"] = "better" if (change > 0) == higher_is_better else "worse"
    return result


def _summary_of(report: Any) -> dict:
    if isinstance(report, (str, Path)):
        return read_report(report)
    if isinstance(report, Mapping):
        if report.get("kind") == SUMMARY_KIND:
            return dict(report)
        if "total" in report and isinstance(report.get("requests"), Mapping):
            return summarize(report)  # merged metrics given directly
    raise TypeError("compare report archives (paths) or report summaries (read_report dicts)")


def order_runs(a: dict, b: dict, *, reverse: bool = False) -> tuple[dict, dict]:
    """(baseline, measurement): the run that started first is the baseline unless reversed.
    Runs without a start time keep the order given."""
    started_a, started_b = epoch_seconds(a["run"].get("startedAt")), epoch_seconds(b["run"].get("startedAt"))
    baseline, measurement = a, b
    if started_a is not None and started_b is not None and started_b < started_a:
        baseline, measurement = b, a
    return (measurement, baseline) if reverse else (baseline, measurement)


def _run_info(summary: Mapping) -> dict:
    run = summary["run"]
    return {
        "label": display_label(run),
        "customLabel": run.get("label"),
        "loadTest": run.get("loadTest"),
        "runId": run.get("runId"),
        "startedAt": run.get("startedAt"),
        "durationS": run.get("durationS"),
        "requests": summary["total"]["count"],
        "verdict": summary["verdict"],
    }


def _compare_rows(base: Mapping | None, meas: Mapping | None) -> dict:
    return {
        m.key: delta(
            base.get(m.key) if base else None, meas.get(m.key) if meas else None, higher_is_better=m.higher_is_better
        )
        for m in METRICS
    }


def compare(report_a: Any, report_b: Any, *, reverse: bool = False) -> dict:
    """The comparison (`comparison.json`) of two reports."""
    baseline, measurement = order_runs(_summary_of(report_a), _summary_of(report_b), reverse=reverse)
    base_rows = {r["name"]: r for r in baseline["requests"]}
    meas_rows = {r["name"]: r for r in measurement["requests"]}
    requests = []
    for name in sorted(base_rows.keys() | meas_rows.keys()):
        presence = (
            "both" if name in base_rows and name in meas_rows else ("baseline" if name in base_rows else "measurement")
        )
        requests.append({"name": name, "presence": presence, **_compare_rows(base_rows.get(name), meas_rows.get(name))})
    return {
        "version": 1,
        "kind": COMPARISON_KIND,
        "reversed": reverse,
        "neutralBandPct": NEUTRAL_BAND_PCT,
        "baseline": _run_info(baseline),
        "measurement": _run_info(measurement),
        "metrics": [
            {"key": m.key, "title": m.title, "unit": m.unit, "higherIsBetter": m.higher_is_better} for m in METRICS
        ],
        "total": _compare_rows(baseline["total"], measurement["total"]),
        "requests": requests,
    }


# --- HTML ---------------------------------------------------------------------------------------

ARROWS = {"better": "▲", "worse": "▼"}


def _delta_cells(metric: Metric, d: Mapping) -> str:
    cells = [f"<td>{metric.value(d['baseline'])}</td>", f"<td>{metric.value(d['measurement'])}</td>"]
    if d["delta"] is None:
        return "".join(cells) + f'<td>{DASH}</td><td class="text">{DASH}</td>'
    verdict = d["verdict"]
    css = f' class="{verdict}"' if verdict in ("better", "worse") else ""
    pct = DASH if d["deltaPct"] is None else f"{d['deltaPct']:+.1f} %"
    word = f" {ARROWS[verdict]} {verdict}" if verdict in ARROWS else ""
    cells.append(f"<td{css}>{metric.change(d['delta'])}</td>")
    cells.append(f'<td{css} title="{verdict}">{pct}{word}</td>')
    return "".join(cells)


def _runs_table(c: Mapping) -> str:
    rows = []
    for role, info in (("Baseline", c["baseline"]), ("Measurement run", c["measurement"])):
        rows.append(
            f'<tr><th scope="row">{role}</th><td class="text">{escape(info["label"])}</td>'
            f'<td class="text">{escape(str(info["loadTest"] or DASH))}</td>'
            f'<td class="text">{escape(str(info["runId"] or DASH))}</td>'
            f'<td class="text">{escape(fmt_time(info["startedAt"]))}</td><td>{fmt_duration(info["durationS"])}</td>'
            f'<td>{fmt_int(info["requests"])}</td><td class="text">{VERDICT_TEXT.get(info["verdict"], DASH)}</td></tr>'
        )
    return table(
        caption="The two runs compared",
        rows=rows,
        text_columns=(0, 1, 2, 3, 4, 7),
        head=["Role", "Label", "Load test", "Run id", "Started", "Duration", "Requests", "Result"],
    )


def _labels(c: Mapping) -> tuple[str, str]:
    return f"Baseline: {c['baseline']['label']}", f"Measurement: {c['measurement']['label']}"


def _overview(c: Mapping) -> str:
    base, meas = _labels(c)
    rows = [
        f'<tr><th scope="row">{escape(m.title)} ({escape(m.unit)})</th>{_delta_cells(m, c["total"][m.key])}</tr>'
        for m in METRICS
    ]
    return table(
        caption="All requests together", head=["Metric", base, meas, "Change", "Change %"], rows=rows, css_class="fixed"
    )


def _metric_table(c: Mapping, metric: Metric) -> str:
    base, meas = _labels(c)
    rows = []
    for r in c["requests"]:
        note = {"baseline": " (baseline only)", "measurement": " (measurement only)"}.get(r["presence"], "")
        rows.append(f'<tr><th scope="row">{escape(r["name"])}{note}</th>{_delta_cells(metric, r[metric.key])}</tr>')
    foot = [f'<tr><th scope="row">Total</th>{_delta_cells(metric, c["total"][metric.key])}</tr>']
    return f'<h3 id="m-{metric.key}">{escape(metric.title)} ({escape(metric.unit)})</h3>' + table(
        caption=f"{metric.title} per request name",
        rows=rows,
        foot=foot,
        head=["Request", base, meas, "Change", "Change %"],
        css_class="fixed",
    )


def render_comparison(c: Mapping) -> str:
    """The HTML page of a comparison."""
    base, meas = c["baseline"], c["measurement"]
    if not c["reversed"]:
        order_note = "The run that started first is the baseline."
    elif base["startedAt"] and meas["startedAt"]:
        order_note = "Reverse order: the run that started later is the baseline."
    else:
        order_note = "Reverse order: baseline and measurement run swapped."
    subtitle = (
        f"Baseline <strong>{escape(base['label'])}</strong> ({escape(fmt_time(base['startedAt']))}) "
        f"→ measurement <strong>{escape(meas['label'])}</strong> ({escape(fmt_time(meas['startedAt']))})"
    )
    legend = (
        f'<p class="note">{escape(order_note)} <span class="badge better">▲ better</span>'
        f'<span class="badge worse">▼ worse</span> Changes within ±{c["neutralBandPct"]:g} % of the baseline '
        "count as unchanged. Higher throughput is better; lower error rates and response times are better. "
        "Error rate changes are in percentage points (pp).</p>"
    )
    body = "".join(
        [
            section("runs", "Runs", legend + _runs_table(c)),
            section("overview", "Overview", _overview(c)),
            section("per-request", "Per request", "".join(_metric_table(c, m) for m in METRICS)),
        ]
    )
    nav = [("runs", "Runs"), ("overview", "Overview"), ("per-request", "Per request")]
    nav += [(f"m-{m.key}", m.title) for m in METRICS]
    return page(
        title=f"Comparison: {base['label']} vs {meas['label']}",
        heading="Comparison report",
        subtitle=subtitle,
        nav=nav,
        body=body,
        footer="Assay comparison report · data: comparison.json",
    )


def build_comparison_report(report_a: Any, report_b: Any, out: Path, *, reverse: bool = False) -> Path:
    """Zip the comparison of two reports (archive paths or summaries): `index.html` and
    `comparison.json`; the older run is the baseline unless `reverse`. Returns `out`."""
    comparison = compare(report_a, report_b, reverse=reverse)
    entries = [("index.html", render_comparison(comparison).encode()), ("comparison.json", json_bytes(comparison))]
    return write_zip_atomically(out, entries, created_at=now_iso())
