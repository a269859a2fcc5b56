"""Assertions with Runscope's comparisons.

String comparisons (equal, not_equal, contains, does_not_contain, empty, not_empty) read the
actual value as text: JSON `true` is "true", `52` is "52", an object or array is its compact
JSON; a missing header is "". `empty` holds for "", JSON null, [] and {}.

Number comparisons (is_a_number, equal_number, is_less_than, ...) convert both sides with
float(); a side that is not a finite number fails the assertion and says so.

JSON comparisons (response_json only): has_key holds when the value is an object with the
target as a key, has_value when it is an array with an element equal to the target (compared
as text, so 1 and "1" match), is_null when it is JSON null.

Targets are templated with the run's variables before comparing.
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping, Optional, Union

from assay.crds import Assertion

from .extract import ExtractionError, as_text, extract
from .http import Exchange
from .results import RESULT_COMPARISONS, RESULT_SOURCES, AssertionResult
from ..templating import TemplateError, render


def _number(value: Any) -> Optional[float]:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        try:
            number = float(str(value).strip())
        except ValueError:
            return None
    return number if math.isfinite(number) else None


def _text(value: Any) -> str:
    text = as_text(value)
    return "" if text is None else text


_NUMERIC = {
    "equal_number": (lambda a, b: a == b, "equal"),
    "is_less_than": (lambda a, b: a < b, "be less than"),
    "is_less_than_or_equal": (lambda a, b: a <= b, "be less than or equal to"),
    "is_greater_than": (lambda a, b: a > b, "be greater than"),
    "is_greater_than_or_equal": (lambda a, b: a >= b, "be greater than or equal to"),
}


def compare(comparison: str, actual: Any, target: Any) -> Optional[str]:
    """None when `actual comparison target` holds, else why it does not."""
    if comparison == "equal":
        a, b = _text(actual), _text(target)
        return None if a == b else f"expected {b!r}, got {a!r}"
    if comparison == "not_equal":
        a, b = _text(actual), _text(target)
        return None if a != b else f"expected a value other than {b!r}"
    if comparison == "empty":
        return None if actual in (None, "", [], {}) else f"expected empty, got {_text(actual)!r}"
    if comparison == "not_empty":
        return None if actual not in (None, "", [], {}) else "expected a value, got empty"
    if comparison == "contains":
        a, b = _text(actual), _text(target)
        return None if b in a else f"{_short(a)!r} does not contain {b!r}"
    if comparison == "does_not_contain":
        a, b = _text(actual), _text(target)
        return None if b not in a else f"{_short(a)!r} contains {b!r}"
    if comparison == "is_a_number":
        return None if _number(actual) is not None else f"{_short(_text(actual))!r} is not a number"
    if comparison in _NUMERIC:
        check, words = _NUMERIC[comparison]
        a, b = _number(actual), _number(target)
        if a is None:
            return f"actual value {_short(_text(actual))!r} is not a number"
        if b is None:
            return f"target value {_text(target)!r} is not a number"
        return None if check(a, b) else f"expected {_text(actual)} to {words} {_text(target)}"
    if comparison == "has_key":
        if not isinstance(actual, dict):
            return f"expected a JSON object, got {_kind(actual)}"
        key = _text(target)
        return None if key in actual else f"object has no key {key!r}"
    if comparison == "has_value":
        if not isinstance(actual, list):
            return f"expected a JSON array, got {_kind(actual)}"
        wanted = _text(target)
        return None if any(_text(item) == wanted for item in actual) else f"array has no element {wanted!r}"
    if comparison == "is_null":
        return None if actual is None else f"expected null, got {_short(_text(actual))!r}"
    return f"unknown comparison {comparison!r}"


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return f"{_short(_text(value))!r}"


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def render_target(value: Union[int, str, None], variables: Mapping[str, str], field: str = "") -> Union[int, str, None]:
    return render(value, variables, field=field) if isinstance(value, str) else value


def evaluate(
    assertion: Assertion, exchange: Exchange, variables: Mapping[str, str], *, field: str = ""
) -> AssertionResult:
    """Check one assertion against the exchange; never raises for bad data, the result says."""
    source = RESULT_SOURCES.get(assertion.source, assertion.source)
    comparison = RESULT_COMPARISONS.get(assertion.comparison, assertion.comparison)
    try:
        target = render_target(assertion.value, variables, field=f"{field}.value" if field else "value")
    except TemplateError as exc:
        return AssertionResult(
            result="fail",
            source=source,
            property=assertion.property,
            comparison=comparison,
            target_value=assertion.value,
            error=str(exc),
        )
    try:
        actual = extract(assertion.source, assertion.property, exchange)
    except ExtractionError as exc:
        return AssertionResult(
            result="fail",
            source=source,
            property=assertion.property,
            comparison=comparison,
            target_value=target,
            error=str(exc),
        )
    problem = compare(assertion.comparison, actual, target)
    return AssertionResult(
        result="pass" if problem is None else "fail",
        source=source,
        property=assertion.property,
        comparison=comparison,
        target_value=target,
        actual_value=as_text(actual),
        error=problem,
    )


def condition_holds(left: str, comparison: str, right: str) -> Optional[str]:
    """Compare a condition step's rendered operands; None when it holds, else why not.

    The JSON comparisons parse the left operand as JSON first (`{"a": 1}` has_key `a`)."""
    actual: Any = left
    if comparison in ("has_key", "has_value", "is_null"):
        try:
            actual = json.loads(left)
        except ValueError:
            if comparison != "is_null":
                return f"{_short(left)!r} is not JSON"
    return compare(comparison, actual, right)
