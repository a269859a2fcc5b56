"""Status badges: the shields.io endpoint format and a small flat SVG of the same badge.

    {"schemaVersion": 1, "label": "API Test Platform", "message": "Success", "color": "green"}

shields.io turns the JSON into a badge (https://shields.io/badges/endpoint-badge); the SVG is
for READMEs and dashboards that embed the gateway's URL directly.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

LABEL = "API Test Platform"
COLORS = {
    "green": "#4c1",
    "red": "#e05d44",
    "blue": "#007ec6",
    "lightgrey": "#9f9f9f",
    "orange": "#fe7d37",
}
CHAR_WIDTH = 7
"""An estimate of the width of a character of 11px Verdana; good enough for short words."""
PADDING = 10
HEIGHT = 20


def badge(message: str, color: str, label: str = LABEL) -> dict:
    """The shields.io endpoint document."""
    return {"schemaVersion": 1, "label": label, "message": message, "color": color}


def _width(text: str) -> int:
    return len(text) * CHAR_WIDTH + PADDING


def badge_svg(document: dict) -> str:
    """The badge as a standalone SVG: the label on grey, the message on the badge's colour."""
    label, message = str(document["label"]), str(document["message"])
    fill = COLORS.get(document.get("color", ""), COLORS["lightgrey"])
    left, right = _width(label), _width(message)
    total = left + right
    title = escape(f"{label}: {message}")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="{HEIGHT}" role="img" '
        f'aria-label="{escape(title, {chr(34): "&quot;"})}">'
        f"<title>{title}</title>"
        f'<rect width="{left}" height="{HEIGHT}" fill="#555"/>'
        f'<rect x="{left}" width="{right}" height="{HEIGHT}" fill="{fill}"/>'
        f'<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">'
        f'<text x="{left / 2:g}" y="14">{escape(label)}</text>'
        f'<text x="{left + right / 2:g}" y="14">{escape(message)}</text>'
        f"</g></svg>"
    )


def wants_svg(format_param: str | None, accept: str | None) -> bool:
    """`?format=svg`, or an Accept header that asks for SVG before JSON."""
    if format_param is not None:
        return format_param.lower() == "svg"
    accept = (accept or "").lower()
    return "image/svg+xml" in accept and "application/json" not in accept
