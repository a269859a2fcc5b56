"""Extractions and assertions of load requests, compiled once per run.

Sources: response_status (a number), response_headers (by name, any case), response_json
(a dotted path such as `items[0].id` or `$.data.name`; an empty path is the whole
document), response_xml (an XPath, with lxml), response_text (the whole body),
response_time (milliseconds) and response_size (body bytes).

An extracted value becomes a `{{name}}` variable as text: strings as they are, anything
else as compact JSON (`17`, `true`, `{"a":1}`); a value that is not there extracts as "".

Comparisons follow the API-test engine's meaning: `equal`/`not_equal`/`contains` compare
text, the `is_*`/`equal_number` ones numbers (a value that is not a number fails them),
`has_key`/`has_value`/`is_null` look into JSON. A value that is not there passes only
`empty`, `not_equal` and `does_not_contain`. An assertion's `value` may hold `{{vars}}`.
"""

from __future__ import annotations

import json
import math
import operator
import re
from typing import Any, Callable, Optional

from assay.crds.common import Assertion, Variable

from .client import Response
from ..templating import CompiledTemplate

MISSING = object()
"""What a source yields for something that is not in the response."""

BODY_SOURCES = frozenset({"response_json", "response_xml", "response_text", "response_size"})
_PATH_PART = re.compile(r"([^.\[\]]+)|\[(-?\d+)\]|\[['\"]([^'\"]*)['\"]\]")


def parse_path(path: str) -> tuple[Any, ...]:
    """`items[0].id` -> ("items", 0, "id"); a leading `$` or `$.` is allowed."""
    path = path.strip()
    if path.startswith("$"):
        path = path[1:]
    steps: list[Any] = []
    for name, index, quoted in _PATH_PART.findall(path):
        if index:
            steps.append(int(index))
        elif quoted:
            steps.append(quoted)
        elif name.isdigit():
            steps.append(int(name))
        else:
            steps.append(name)
    return tuple(steps)


def follow(document: Any, steps: tuple[Any, ...]) -> Any:
    value = document
    for step in steps:
        if isinstance(value, dict):
            key = step if isinstance(step, str) else str(step)
            if key not in value:
                return MISSING
            value = value[key]
        elif isinstance(value, list) and isinstance(step, int):
            if not -len(value) <= step < len(value):
                return MISSING
            value = value[step]
        else:
            return MISSING
    return value


_scan = json.JSONDecoder().scan_once
_WHITE = " \t\n\r"
"""JSON's white space (json.decoder's WHITESPACE)."""


def _loads(body: bytes) -> Any:
    """json.loads(body), without most of its Python around the C scanner. Its detection of the
    encoding (BOMs, zero bytes among the first bytes for UTF-16 and UTF-32) answers UTF-8 when
    neither of the first two bytes is zero and the first starts no BOM; the document is then
    what the scanner reads after the leading white space, when only white space follows it.
    An error takes json.loads' own way, to be reported as it reports it."""
    if len(body) >= 2 and body[1] and body[0] not in (0, 0xEF, 0xFE, 0xFF):
        text = body.decode("utf-8", "surrogatepass")
        start = 0 if text[0] not in _WHITE else len(text) - len(text.lstrip(_WHITE))
        try:
            document, end = _scan(text, start)
        except (StopIteration, ValueError):
            pass
        else:
            if end == len(text) or not text[end:].strip(_WHITE):
                return document
        return json.loads(text)
    return json.loads(body)


class ResponseView:
    """One response as the checks see it; the body is parsed at most once."""

    __slots__ = ("response", "latency_ms", "_json", "_xml")

    def __init__(self, response: Response, latency_ms: float):
        self.response, self.latency_ms = response, latency_ms
        self._json = self._xml = None

    def json(self) -> Any:
        if self._json is None:
            try:
                self._json = _loads(self.response.body or b"")
            except ValueError:
                self._json = MISSING
        return self._json

    def xml(self) -> Any:
        if self._xml is None:
            from lxml import etree

            try:
                self._xml = etree.fromstring(self.response.body or b"")
            except (etree.XMLSyntaxError, ValueError):
                self._xml = MISSING
        return self._xml


def _source(source: str, prop: Optional[str]) -> Callable[[ResponseView], Any]:
    if source == "response_status":
        return lambda v: v.response.status
    if source == "response_headers":
        name = (prop or "").lower()
        return lambda v: v.response.headers.get(name, MISSING)
    if source == "response_json":
        steps = parse_path(prop or "")
        return lambda v: MISSING if (doc := v.json()) is MISSING else follow(doc, steps)
    if source == "response_xml":
        expression = prop or "/*"
        return lambda v: _xpath(v.xml(), expression)
    if source == "response_text":
        return lambda v: v.response.text
    if source == "response_time":
        return lambda v: v.latency_ms
    if source == "response_size":
        return lambda v: len(v.response.body or b"")
    raise ValueError(f"unknown source {source!r}")


def _xpath(tree: Any, expression: str) -> Any:
    if tree is MISSING:
        return MISSING
    try:
        found = tree.xpath(expression)
    except Exception:  # lxml raises several XPath error types; all mean "not there"
        return MISSING
    if isinstance(found, list):
        if not found:
            return MISSING
        found = found[0]
    if hasattr(found, "text"):
        return found.text or ""
    return found if isinstance(found, (int, float, bool)) else str(found)


def as_text(value: Any) -> str:
    if value is MISSING:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value, separators=(",", ":"))


def as_number(value: Any) -> Optional[float]:
    if value is MISSING or value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _empty(value: Any) -> bool:
    return value is MISSING or value is None or value == "" or value == [] or value == {}


def _contains(actual: Any, expected: str) -> bool:
    if isinstance(actual, list):
        return any(as_text(item) == expected for item in actual)
    if isinstance(actual, dict):
        return expected in actual
    return expected in as_text(actual)


def _numbers(actual: Any, expected: str, test: Callable[[float, float], bool]) -> bool:
    a, b = as_number(actual), as_number(expected)
    return a is not None and b is not None and test(a, b)


NUMBER_TESTS: dict[str, Callable[[float, float], bool]] = {
    "equal_number": operator.eq,
    "is_less_than": operator.lt,
    "is_less_than_or_equal": operator.le,
    "is_greater_than": operator.gt,
    "is_greater_than_or_equal": operator.ge,
}
"""The comparisons of two numbers (the actual value's and the expected one's)."""


COMPARISONS: dict[str, Callable[[Any, str], bool]] = {
    "equal": lambda a, e: a is not MISSING and as_text(a) == e,
    "not_equal": lambda a, e: a is MISSING or as_text(a) != e,
    "empty": lambda a, e: _empty(a),
    "not_empty": lambda a, e: not _empty(a),
    "contains": lambda a, e: a is not MISSING and _contains(a, e),
    "does_not_contain": lambda a, e: a is MISSING or not _contains(a, e),
    "is_a_number": lambda a, e: as_number(a) is not None,
    **{name: (lambda a, e, test=test: _numbers(a, e, test)) for name, test in NUMBER_TESTS.items()},
    "has_key": lambda a, e: isinstance(a, dict) and e in a,
    "has_value": lambda a, e: (
        (isinstance(a, dict) and any(as_text(v) == e for v in a.values()))
        or (isinstance(a, list) and any(as_text(v) == e for v in a))
    ),
    "is_null": lambda a, e: a is None,
}


def _fixed(comparison: str, expected: str) -> Callable[[Any], bool]:
    """The comparison with an expected value that has no `{{variables}}`: a number to compare
    with is parsed once, not per response."""
    test = NUMBER_TESTS.get(comparison)
    if test is None:
        compare = COMPARISONS[comparison]
        return lambda a: compare(a, expected)
    number = as_number(expected)
    if number is None:
        return lambda a: False
    return lambda a: (x := as_number(a)) is not None and test(x, number)


class CompiledAssertion:
    __slots__ = ("text", "source", "read", "compare", "expected", "fixed")

    def __init__(self, assertion: Assertion):
        self.source = assertion.source
        self.read = _source(assertion.source, assertion.property)
        self.compare = COMPARISONS[assertion.comparison]
        self.expected = CompiledTemplate("" if assertion.value is None else str(assertion.value))
        self.fixed = _fixed(assertion.comparison, self.expected.text) if self.expected.is_static else None
        where = f" {assertion.property}" if assertion.property else ""
        value = "" if assertion.value is None else f" {assertion.value}"
        self.text = f"{assertion.source}{where} {assertion.comparison}{value}"

    def check(self, view: ResponseView, variables: dict[str, str]) -> bool:
        if self.fixed is not None:
            return self.fixed(self.read(view))
        return self.compare(self.read(view), self.expected.render(variables))


class CompiledExtraction:
    __slots__ = ("name", "read")

    def __init__(self, variable: Variable):
        self.name = variable.name
        self.read = _source(variable.source, variable.property)

    def extract(self, view: ResponseView, variables: dict[str, str]) -> None:
        variables[self.name] = as_text(self.read(view))


def needs_body(assertions: list[Assertion], extract: list[Variable]) -> bool:
    return any(item.source in BODY_SOURCES for item in [*assertions, *extract])
