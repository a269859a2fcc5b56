"""Inline SVG line charts for the static reports, drawn in Python.

Reports must open anywhere, offline and years later, so there is no charting library, no
script and no external resource: each chart is an `<svg>` element with a `<title>` and a
`<desc>` for screen readers, gridlines with tick labels, and one polyline per series. A
missing value (a second without requests has no latency) breaks the line instead of
drawing it down to zero.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 960, 280
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 64, 16, 14, 40


@dataclass(frozen=True)
class Series:
    name: str
    color: str
    points: Sequence[tuple[float, float | None]]  # (x, y); y None = no value
    dashed: bool = False


def nice_step(span: float, target_ticks: int = 5) -> float:
    """A round tick step (1, 2 or 5 times a power of ten) giving about `target_ticks` ticks."""
    if span <= 0:
        return 1.0
    raw = span / target_ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def time_step(span: float) -> float:
    """Tick steps for elapsed time land on whole seconds, minutes or hours."""
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400):
        if span / step <= 8:
            return step
    return nice_step(span, 8)


def format_elapsed(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_number(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if abs(value) >= 10_000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def _segments(points: Sequence[tuple[float, float | None]]) -> list[list[tuple[float, float]]]:
    segments: list[list[tuple[float, float]]] = [[]]
    for x, y in points:
        if y is None:
            if segments[-1]:
                segments.append([])
        else:
            segments[-1].append((x, y))
    return [s for s in segments if s]


def line_chart(
    *,
    chart_id: str,
    title: str,
    description: str,
    series: Sequence[Series],
    y_label: str,
    y_format: Callable[[float], str] = format_number,
) -> str:
    """An accessible SVG line chart over elapsed seconds; empty data gives a labelled frame."""
    plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    xs = [x for s in series for x, _ in s.points]
    ys = [y for s in series for _, y in s.points if y is not None]
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="{chart_id}-title {chart_id}-desc" preserveAspectRatio="xMidYMid meet">',
        f'<title id="{chart_id}-title">{escape(title)}</title>',
        f'<desc id="{chart_id}-desc">{escape(description)}</desc>',
    ]
    if not ys:
        parts.append(f'<rect class="frame" x="{MARGIN_LEFT}" y="{MARGIN_TOP}" width="{plot_w}" height="{plot_h}"/>')
        parts.append(
            f'<text class="empty" x="{MARGIN_LEFT + plot_w / 2}" y="{MARGIN_TOP + plot_h / 2}" '
            f'text-anchor="middle">No data</text></svg>'
        )
        return "".join(parts)

    x_min, x_max = min(xs), max(xs)
    if x_max == x_min:
        x_max = x_min + 1
    y_step = nice_step(max(ys) or 1)
    y_max = math.ceil((max(ys) or 1) / y_step) * y_step
    x_step = time_step(x_max - x_min)

    def px(x: float) -> float:
        return MARGIN_LEFT + (x - x_min) / (x_max - x_min) * plot_w

    def py(y: float) -> float:
        return MARGIN_TOP + plot_h - y / y_max * plot_h

    tick = 0.0
    while tick <= y_max + y_step / 2:
        y = py(tick)
        parts.append(f'<line class="grid" x1="{MARGIN_LEFT}" x2="{MARGIN_LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(
            f'<text class="tick" x="{MARGIN_LEFT - 8}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(y_format(tick))}</text>"
        )
        tick += y_step
    first_x = math.ceil(x_min / x_step) * x_step
    tick = first_x
    while tick <= x_max + 1e-9:
        x = px(tick)
        parts.append(
            f'<line class="grid grid-x" x1="{x:.1f}" x2="{x:.1f}" y1="{MARGIN_TOP}" y2="{MARGIN_TOP + plot_h}"/>'
        )
        parts.append(
            f'<text class="tick" x="{x:.1f}" y="{MARGIN_TOP + plot_h + 18}" text-anchor="middle">'
            f"{format_elapsed(tick)}</text>"
        )
        tick += x_step
    parts.append(
        f'<line class="axis" x1="{MARGIN_LEFT}" x2="{MARGIN_LEFT + plot_w}" '
        f'y1="{MARGIN_TOP + plot_h}" y2="{MARGIN_TOP + plot_h}"/>'
    )
    parts.append(
        f'<text class="axis-label" x="{MARGIN_LEFT + plot_w / 2}" y="{HEIGHT - 4}" '
        f'text-anchor="middle">elapsed time</text>'
    )
    parts.append(
        f'<text class="axis-label" transform="translate(14 {MARGIN_TOP + plot_h / 2}) rotate(-90)" '
        f'text-anchor="middle">{escape(y_label)}</text>'
    )

    for s in series:
        dash = ' stroke-dasharray="6 4"' if s.dashed else ""
        for segment in _segments(s.points):
            if len(segment) == 1:
                ((x, y),) = segment
                parts.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5" fill="{s.color}"/>')
                continue
            coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in segment)
            parts.append(
                f'<polyline class="line" fill="none" stroke="{s.color}"{dash} points="{coords}">'
                f"<title>{escape(s.name)}</title></polyline>"
            )
    parts.append("</svg>")
    return "".join(parts)


def legend(series: Sequence[Series]) -> str:
    items = "".join(
        f'<li><span class="swatch{" dashed" if s.dashed else ""}" style="border-color:{s.color}"></span>'
        f"{escape(s.name)}</li>"
        for s in series
    )
    return f'<ul class="legend">{items}</ul>'
