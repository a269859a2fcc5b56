"""Reading a value out of an Exchange, for every assertion and variable source.

    response_status   the status code (int)
    response_headers  the header named by `property`, any case; repeated headers joined with
                      ", "; None when the response has no such header
    response_json     the body as JSON, then the path in `property`: `data.items[0].id`,
                      `[0].name`, `items.0` (a number selects an array item), `meta["a.b"]`
                      (bracketed quotes for keys with dots); an empty path is the whole body
    response_xml      the body as XML, then the XPath in `property` (lxml): an element gives its
                      text content, an attribute or text node its string, a number/boolean
                      expression its value; the first match when there are several
    response_text     the body as text (charset from Content-Type, else UTF-8)
    response_time     milliseconds from sending the request to the last body byte (float, 0.1 ms)
    response_size     the body size in bytes (int)

A value that is not there (no response, a body that does not parse, a path that leads
nowhere) raises ExtractionError with what was missing and where.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any, Optional, Union

from lxml import etree

from .http import Exchange


class ExtractionError(ValueError):
    """The source or property does not yield a value; the message says why."""


def extract(source: str, property: Optional[str], exchange: Exchange) -> Any:
    """The value of `property` of `source` in the exchange (see the module doc)."""
    if exchange.error is not None or exchange.status is None:
        raise ExtractionError(f"no response: {exchange.error or 'the request was not sent'}")
    if source == "response_status":
        return exchange.status
    if source == "response_headers":
        if not property:
            raise ExtractionError("response_headers needs a header name as property")
        return exchange.header(property)
    if source == "response_json":
        try:
            document = exchange.json()
        except ValueError as exc:
            raise ExtractionError(f"response body is not JSON: {exc}") from None
        return json_path(document, property or "")
    if source == "response_xml":
        return xpath(exchange.body, property or "")
    if source == "response_text":
        return exchange.text
    if source == "response_time":
        return round(exchange.response_time_ms, 1)
    if source == "response_size":
        return exchange.size
    raise ExtractionError(f"unknown source {source!r}")


# --- JSON paths -------------------------------------------------------------------------------

_PATH_TOKEN = re.compile(
    r"""\s*(?:
        \[\s*(?P<index>-?\d+)\s*\]            # [0]
      | \[\s*(?P<quote>['"])(?P<key>(?:\\.|(?!(?P=quote)).)*)(?P=quote)\s*\]   # ["a.b"]
      | \.?(?P<name>[^.\[\]]+)                 # name or .name
    )""",
    re.VERBOSE,
)

PathStep = Union[int, str]


@lru_cache(maxsize=2048)
def parse_json_path(path: str) -> tuple[PathStep, ...]:
    """`data.items[0].id` -> ("data", "items", 0, "id"); raises ExtractionError when malformed."""
    text = path.strip()
    if text.startswith("$"):
        text = text[1:]
    steps: list[PathStep] = []
    position = 0
    while position < len(text):
        match = _PATH_TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise ExtractionError(f"JSON path {path!r}: cannot read {text[position:]!r}")
        if match.group("index") is not None:
            steps.append(int(match.group("index")))
        elif match.group("quote") is not None:
            steps.append(re.sub(r"\\(.)", r"\1", match.group("key")))
        else:
            steps.append(match.group("name").strip())
        position = match.end()
    return tuple(steps)


def _describe(steps: tuple[PathStep, ...]) -> str:
    out = ""
    for step in steps:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else step)
    return out or "(root)"


def json_path(document: Any, path: str) -> Any:
    """Follow `path` (see parse_json_path) into a parsed JSON document."""
    steps = parse_json_path(path)
    current = document
    for depth, step in enumerate(steps):
        where = _describe(steps[:depth])
        if isinstance(current, list):
            index = step if isinstance(step, int) else _as_index(step)
            if index is None:
                raise ExtractionError(f"JSON path {path!r}: {where} is an array, not an object with key {step!r}")
            if not -len(current) <= index < len(current):
                raise ExtractionError(
                    f"JSON path {path!r}: index {index} is out of range at {where} ({len(current)} items)"
                )
            current = current[index]
        elif isinstance(current, dict):
            key = str(step)
            if key not in current:
                raise ExtractionError(f"JSON path {path!r}: no key {key!r} at {where}")
            current = current[key]
        else:
            kind = "null" if current is None else type(current).__name__
            raise ExtractionError(f"JSON path {path!r}: {where} is {kind}, it has no {step!r}")
    return current


def _as_index(step: str) -> Optional[int]:
    try:
        return int(step)
    except ValueError:
        return None


# --- XPath ------------------------------------------------------------------------------------

_XML_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


def xpath(body: bytes, expression: str) -> Any:
    if not expression.strip():
        raise ExtractionError("response_xml needs an XPath as property")
    try:
        root = etree.fromstring(body, _XML_PARSER)
    except etree.XMLSyntaxError as exc:
        raise ExtractionError(f"response body is not XML: {exc}") from None
    if root is None:
        raise ExtractionError("response body is not XML: empty document")
    try:
        found = root.xpath(expression)
    except etree.XPathError as exc:
        raise ExtractionError(f"invalid XPath {expression!r}: {exc}") from None
    if isinstance(found, list):
        if not found:
            raise ExtractionError(f"XPath {expression!r} matched nothing")
        found = found[0]
    if isinstance(found, etree._Element):
        return "".join(found.itertext())
    if isinstance(found, bool):
        return found
    if isinstance(found, float):
        return int(found) if found.is_integer() else found
    return str(found)


# --- values as text -----------------------------------------------------------------------------


def as_text(value: Any) -> Optional[str]:
    """How an extracted value reads in results and variables: JSON literals for JSON values,
    decimal numbers, text as is; None stays None."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, float) else str(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
