"""Badges: the shields.io endpoint document and the SVG made from it."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from assay.api.services.shields import badge, badge_svg, wants_svg


def test_badge_is_the_shields_endpoint_format():
    assert badge("Success", "green") == {
        "schemaVersion": 1,
        "label": "API Test Platform",
        "message": "Success",
        "color": "green",
    }


def test_svg_is_well_formed_and_escapes_text():
    svg = badge_svg(badge('<Failed & "late">', "red", label="a&b"))
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert texts == ["a&b", '<Failed & "late">']
    rects = list(root.iter("{http://www.w3.org/2000/svg}rect"))
    assert rects[1].get("fill") == "#e05d44"
    assert int(root.get("width")) == int(rects[0].get("width")) + int(rects[1].get("width"))


def test_svg_is_chosen_by_format_or_accept():
    assert wants_svg("svg", None) and not wants_svg("json", "image/svg+xml")
    assert wants_svg(None, "image/svg+xml,*/*;q=0.8")
    assert not wants_svg(None, "application/json, image/svg+xml") and not wants_svg(None, None)
