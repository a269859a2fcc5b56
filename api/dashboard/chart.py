"""The monitors' response-time chart: inline SVG built on the server, no script needed.

Points are placed by time on the x axis (not by index), so gaps between runs show; each point
is coloured by its run's result and carries a <title> tooltip. Only classes style it: the
page's Content-Security-Policy allows no inline style attributes.
"""

from __future__ import annotations

from html import escape

from ..services.loadtests import parse_time

WIDTH, HEIGHT = 560, 160
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 24


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above `value` (at least 1)."""
    if value <= 1:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return float(step * magnitude)
    return float(10 * magnitude)


def response_time_chart(points: list[dict], label: str) -> str:
    """`points`: [{"at": ISO time, "ms": number, "result": "passed" | "failed" | ...}], oldest
    first. An empty list gives a chart that says so."""
    timed = [(parse_time(p["at"]), float(p["ms"]), p.get("result") or "") for p in points if parse_time(p["at"])]
    title = f"Response time of {label}"
    head = (
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
    )
    if not timed:
        return (
            head + f'<text class="empty" x="{WIDTH / 2:.0f}" y="{HEIGHT / 2:.0f}" text-anchor="middle">'
            "no response times yet</text></svg>"
        )
    start = min(t for t, _, _ in timed).timestamp()
    end = max(t for t, _, _ in timed).timestamp()
    span = end - start or 1.0
    top = nice_ceiling(max(ms for _, ms, _ in timed) * 1.1)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(moment) -> float:
        offset = (moment.timestamp() - start) / span if end > start else 0.5
        return LEFT + offset * plot_w

    def y(ms: float) -> float:
        return TOP + plot_h - (ms / top) * plot_h

    parts = [head]
    for fraction in (0, 0.5, 1):
        level = TOP + plot_h - fraction * plot_h
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{level:.1f}" y2="{level:.1f}"/>')
        parts.append(
            f'<text class="axis" x="{LEFT - 6}" y="{level + 4:.1f}" text-anchor="end">{top * fraction:g} ms</text>'
        )
    first, last = timed[0][0], timed[-1][0]
    parts.append(f'<text class="axis" x="{LEFT}" y="{HEIGHT - 6}">{first:%d %b %H:%M}</text>')
    if len(timed) > 1:
        parts.append(
            f'<text class="axis" x="{WIDTH - RIGHT}" y="{HEIGHT - 6}" text-anchor="end">{last:%d %b %H:%M}</text>'
        )
    if len(timed) > 1:
        line = " ".join(f"{x(t):.1f},{y(ms):.1f}" for t, ms, _ in timed)
        parts.append(f'<polyline class="line" points="{line}"/>')
    for moment, ms, result in timed:
        kind = result if result in ("passed", "failed") else "other"
        parts.append(
            f'<circle class="point {kind}" cx="{x(moment):.1f}" cy="{y(ms):.1f}" r="4">'
            f"<title>{moment:%Y-%m-%d %H:%M:%S} UTC: {ms:g} ms, {escape(result)}</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)
