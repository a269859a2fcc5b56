"""`{{name}}` templates, as Runscope renders them: the one template language of the API-test
engine (requests, assertions, conditions) and the load engine (requests, assertion values).

Syntax
    `{{name}}`             the value of variable `name`; an unknown variable renders as ""
    `{{helper}}`           a helper that takes no arguments, e.g. `{{timestamp}}`, `{{uuid}}`
    `{{helper(a, b)}}`     a helper with arguments. Each argument is one of
                             - a quoted literal: `'YYYY-MM-DD'` or `"a, b"` (backslash escapes)
                             - a number: `10`, `-2.5`
                             - a variable name: `token` (its value, "" when unset)
                             - text with nested templates: `{{user}}:{{password}}`
                           Anything else (`YYYY-MM-DD` unquoted) is rejected: quote literal text.

A variable that shares its name with an argument-less helper wins over the helper, so a
test that defines `timestamp` itself keeps its own value.

Errors: an unclosed `{{`, an empty `{{}}`, an unknown helper, a wrong number of arguments or
an argument that cannot be used raise `TemplateError`, whose message names the field. The
syntax is checked once per distinct text (`check_template` at validation time) and parsed
templates are cached, so rendering the same step again costs a dictionary lookup.

`CompiledTemplate` is the same language parsed once for a text rendered thousands of times a
second (the load engine's requests and assertion values): no `{{` renders as itself, plain
variables by one join, helpers through the same rendering as `render`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import random
import re
import secrets
import string
import time
import uuid as uuid_module
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from typing import Callable, Mapping, Optional, Union
from urllib.parse import quote, unquote


class TemplateError(ValueError):
    """A template that cannot be rendered; `field` says where it is (e.g. `spec.steps[2].url`)."""

    def __init__(self, field: str, detail: str):
        self.field, self.detail = field, detail
        super().__init__(f"{field}: {detail}" if field else detail)


class _SyntaxProblem(Exception):
    """Raised by the cached parser, which does not know the field; `render` adds it."""


# --- helpers --------------------------------------------------------------------------------


def _int_arg(helper: str, value: str, position: int) -> int:
    try:
        return int(value)
    except ValueError:
        raise _SyntaxProblem(f"{helper}(): argument {position} must be an integer, got {value!r}") from None


def _random_int(*args: str) -> str:
    if not args:
        return str(random.randint(0, 2**64 - 1))
    low, high = _int_arg("random_int", args[0], 1), _int_arg("random_int", args[1], 2)
    if low > high:
        raise _SyntaxProblem(f"random_int(): the lower bound {low} is greater than the upper bound {high}")
    return str(random.randint(low, high))


_ALPHANUMERIC = string.ascii_letters + string.digits


def _random_string(*args: str) -> str:
    length = _int_arg("random_string", args[0], 1) if args else 16
    if not 0 <= length <= 4096:
        raise _SyntaxProblem(f"random_string(): length must be between 0 and 4096, got {length}")
    return "".join(secrets.choice(_ALPHANUMERIC) for _ in range(length))


def _utc_datetime() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _decode_base64(value: str) -> str:
    try:
        return base64.b64decode(value + "=" * (-len(value) % 4), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise _SyntaxProblem(f"decode_base64(): not base64-encoded UTF-8 text: {exc}") from None


# Moment.js-style tokens, as Runscope documents format_timestamp; longest first.
_TIME_TOKENS = {
    "YYYY": "%Y",
    "YY": "%y",
    "MMMM": "%B",
    "MMM": "%b",
    "MM": "%m",
    "DD": "%d",
    "dddd": "%A",
    "ddd": "%a",
    "HH": "%H",
    "hh": "%I",
    "mm": "%M",
    "ss": "%S",
    "A": "%p",
}
_TIME_TOKEN_RE = re.compile(r"\[[^\]]*\]|SSS|X|x|Z|" + "|".join(sorted(_TIME_TOKENS, key=len, reverse=True)))


def _format_timestamp(value: str, fmt: str) -> str:
    try:
        seconds = float(value)
    except ValueError:
        raise _SyntaxProblem(f"format_timestamp(): {value!r} is not a Unix timestamp") from None
    moment = datetime.fromtimestamp(seconds, timezone.utc)

    def token(match: re.Match) -> str:
        text = match.group(0)
        if text.startswith("["):
            return text[1:-1]  # [literal text], as in moment.js
        if text == "SSS":
            return f"{moment.microsecond // 1000:03d}"
        if text == "X":
            return str(int(seconds))
        if text == "x":
            return str(int(seconds * 1000))
        if text == "Z":
            return "+00:00"
        return moment.strftime(_TIME_TOKENS[text])

    return _TIME_TOKEN_RE.sub(token, fmt)


def _hex_digest(algorithm: str) -> Callable[[str], str]:
    return lambda value: hashlib.new(algorithm, value.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Helper:
    function: Callable[..., str]
    min_args: int
    max_args: int
    doc: str


_HELPERS: dict[str, Helper] = {
    "timestamp": Helper(lambda: str(int(time.time())), 0, 0, "the current Unix time in whole seconds, e.g. 1700000000"),
    "timestamp_ms": Helper(lambda: str(int(time.time() * 1000)), 0, 0, "the current Unix time in milliseconds"),
    "utc_datetime": Helper(_utc_datetime, 0, 0, "the current UTC time in ISO 8601, e.g. 2024-05-01T12:30:00.123Z"),
    "uuid": Helper(lambda: str(uuid_module.uuid4()), 0, 0, "a random UUID (version 4)"),
    "random_int": Helper(_random_int, 0, 2, "random_int: a random integer in [0, 2^64-1]; random_int(a, b): in [a, b]"),
    "random_string": Helper(_random_string, 0, 1, "random_string(n): n random letters and digits (16 without n)"),
    "encode_base64": Helper(
        lambda v: base64.b64encode(v.encode("utf-8")).decode("ascii"), 1, 1, "encode_base64(value): value as base64"
    ),
    "decode_base64": Helper(_decode_base64, 1, 1, "decode_base64(value): base64 value decoded as UTF-8"),
    "encode_url": Helper(
        lambda v: quote(v, safe=""),
        1,
        1,
        "encode_url(value): value percent-encoded for a URL (every reserved character)",
    ),
    "decode_url": Helper(unquote, 1, 1, "decode_url(value): percent-decoding of value"),
    "md5": Helper(_hex_digest("md5"), 1, 1, "md5(value): hex MD5 digest of value"),
    "sha1": Helper(_hex_digest("sha1"), 1, 1, "sha1(value): hex SHA-1 digest of value"),
    "sha256": Helper(_hex_digest("sha256"), 1, 1, "sha256(value): hex SHA-256 digest of value"),
    "hmac_sha256": Helper(
        lambda key, value: hmac.new(key.encode("utf-8"), value.encode("utf-8"), hashlib.sha256).hexdigest(),
        2,
        2,
        "hmac_sha256(key, value): hex HMAC-SHA256 of value with key",
    ),
    "format_timestamp": Helper(
        _format_timestamp,
        2,
        2,
        "format_timestamp(seconds, format): the Unix time in UTC, formatted with the tokens "
        "YYYY YY MMMM MMM MM DD dddd ddd HH hh mm ss SSS A Z X x; [text] is literal",
    ),
}

HELPERS: dict[str, str] = {name: helper.doc for name, helper in _HELPERS.items()}
"""The built-in helpers, name to documentation."""

# --- parsing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Var:
    name: str


@dataclass(frozen=True)
class _Call:
    name: str
    args: tuple["_Arg", ...]


_Part = Union[str, _Var, _Call]
_Arg = Union[str, _Var, tuple]  # literal text, a variable, or nested template parts
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"-?\d+(\.\d+)?")
_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(")


def _closing_braces(text: str, start: int) -> int:
    """Index of the `}}` that closes the `{{` opened just before `start`, nesting allowed."""
    depth, position = 1, start
    while True:
        close = text.find("}}", position)
        if close < 0:
            raise _SyntaxProblem(f"unclosed '{{{{' at character {start - 2}")
        opening = text.find("{{", position, close)
        if opening >= 0:
            depth, position = depth + 1, opening + 2
            continue
        depth -= 1
        if depth == 0:
            return close
        position = close + 2


@lru_cache(maxsize=4096)
def _parse(text: str) -> tuple[_Part, ...]:
    parts: list[_Part] = []
    position = 0
    while True:
        opening = text.find("{{", position)
        if opening < 0:
            if position < len(text):
                parts.append(text[position:])
            return tuple(parts)
        if opening > position:
            parts.append(text[position:opening])
        close = _closing_braces(text, opening + 2)
        parts.append(_parse_expression(text[opening + 2 : close].strip()))
        position = close + 2


def _parse_expression(expression: str) -> Union[_Var, _Call]:
    if not expression:
        raise _SyntaxProblem("empty '{{}}'")
    call = _CALL.match(expression)
    if call is None:
        return _Var(expression)
    name = call.group(1)
    helper = _HELPERS.get(name)
    if helper is None:
        raise _SyntaxProblem(f"unknown helper {name!r} (known: {', '.join(sorted(_HELPERS))})")
    if not expression.endswith(")"):
        raise _SyntaxProblem(f"{name}(: missing ')'")
    inner = expression[call.end() : -1]
    args = tuple(_parse_argument(name, raw.strip(), i + 1) for i, raw in enumerate(_split_arguments(name, inner)))
    if not helper.min_args <= len(args) <= helper.max_args:
        wanted = (
            str(helper.min_args) if helper.min_args == helper.max_args else f"{helper.min_args} to {helper.max_args}"
        )
        raise _SyntaxProblem(f"{name}() takes {wanted} argument(s), got {len(args)}")
    if name in ("random_int", "random_string"):
        for i, arg in enumerate(args):
            if isinstance(arg, str):
                _int_arg(name, arg, i + 1)
    return _Call(name, args)


def _split_arguments(helper: str, inner: str) -> list[str]:
    """Split at top-level commas, leaving quoted text and nested `{{ }}` whole."""
    if not inner.strip():
        return []
    pieces, current, depth, quote_char, i = [], [], 0, "", 0
    while i < len(inner):
        char = inner[i]
        if quote_char:
            if char == "\\" and i + 1 < len(inner):
                current.append(inner[i : i + 2])
                i += 2
                continue
            if char == quote_char:
                quote_char = ""
        elif char in "'\"":
            quote_char = char
        elif inner.startswith("{{", i):
            depth += 1
            current.append("{{")
            i += 2
            continue
        elif inner.startswith("}}", i) and depth:
            depth -= 1
            current.append("}}")
            i += 2
            continue
        elif char == "," and depth == 0:
            pieces.append("".join(current))
            current = []
            i += 1
            continue
        current.append(char)
        i += 1
    if quote_char:
        raise _SyntaxProblem(f"{helper}(): unterminated {quote_char} quote")
    pieces.append("".join(current))
    return pieces


_ESCAPE = re.compile(r"\\(.)")


def _parse_argument(helper: str, raw: str, position: int) -> _Arg:
    if not raw:
        raise _SyntaxProblem(f"{helper}(): argument {position} is empty")
    if len(raw) >= 2 and raw[0] in "'\"" and raw[-1] == raw[0]:
        return _ESCAPE.sub(r"\1", raw[1:-1])
    if _NUMBER.fullmatch(raw):
        return raw
    if "{{" in raw:
        return _parse(raw)
    if _IDENTIFIER.fullmatch(raw):
        return _Var(raw)
    raise _SyntaxProblem(
        f"{helper}(): argument {position} ({raw}) must be a quoted literal, "
        f"a number, a variable name or a {{{{template}}}}"
    )


# --- rendering ------------------------------------------------------------------------------


def _render_parts(parts: tuple[_Part, ...], variables: Mapping[str, str]) -> str:
    out = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
        elif isinstance(part, _Var):
            value = variables.get(part.name)
            if value is None and part.name in _HELPERS and _HELPERS[part.name].min_args == 0:
                value = _HELPERS[part.name].function()
            out.append("" if value is None else str(value))
        else:
            out.append(_HELPERS[part.name].function(*(_argument(a, variables) for a in part.args)))
    return "".join(out)


def _argument(arg: _Arg, variables: Mapping[str, str]) -> str:
    if isinstance(arg, str):
        return arg
    if isinstance(arg, _Var):
        value = variables.get(arg.name)
        return "" if value is None else str(value)
    return _render_parts(arg, variables)


def render(text: str, variables: Mapping[str, str], *, field: str = "") -> str:
    """`text` with every `{{...}}` replaced; raises TemplateError naming `field` when invalid."""
    if "{{" not in text:
        return text
    try:
        return _render_parts(_parse(text), variables)
    except _SyntaxProblem as exc:
        raise TemplateError(field, str(exc)) from None


def render_optional(text: Optional[str], variables: Mapping[str, str], *, field: str = "") -> Optional[str]:
    return None if text is None else render(text, variables, field=field)


def check_template(text: str, field: str = "") -> None:
    """Raise TemplateError if `text` is not a valid template; needs no variable values."""
    if "{{" not in text:
        return
    try:
        _parse(text)
    except _SyntaxProblem as exc:
        raise TemplateError(field, str(exc)) from None


def has_template(text: str) -> bool:
    return "{{" in text


class CompiledTemplate:
    """A template parsed once, for a text rendered many times (the load engine's requests).

    Text without `{{` renders as itself; text with only variables renders by one join over
    literal and name slots, with no per-part type checks; helpers take the general path."""

    __slots__ = ("text", "parts", "names", "_parsed", "field")

    def __init__(self, text: str, field: str = ""):
        self.text, self.field = text, field
        try:
            parsed = _parse(text) if "{{" in text else (text,)
        except _SyntaxProblem as exc:
            raise TemplateError(field, str(exc)) from None
        if all(isinstance(p, str) or (isinstance(p, _Var) and p.name not in _HELPERS) for p in parsed):
            slots = [""]
            for part in parsed:
                if isinstance(part, str):
                    slots[-1] += part
                else:
                    slots += [part.name, ""]
            # literal, name, literal, ...: the names sit at the odd positions
            self.parts: tuple[str, ...] = tuple(slots)
            self.names: tuple[str, ...] = tuple(slots[1::2])
            self._parsed: Optional[tuple[_Part, ...]] = None
        else:
            first = parsed[0]
            self.parts = (first if isinstance(first, str) else "",)
            self.names = tuple(p.name for p in parsed if isinstance(p, _Var))
            self._parsed = parsed

    @property
    def is_static(self) -> bool:
        return self._parsed is None and not self.names

    def render(self, variables: Mapping[str, str]) -> str:
        if self._parsed is not None:
            try:
                return _render_parts(self._parsed, variables)
            except _SyntaxProblem as exc:
                raise TemplateError(self.field, str(exc)) from None
        if not self.names:
            return self.text
        parts = self.parts
        out = [parts[0]]
        get = variables.get
        for i in range(1, len(parts), 2):
            out.append(get(parts[i], ""))
            out.append(parts[i + 1])
        return "".join(out)

    def static_prefix(self) -> str:
        """The text before the first `{{`."""
        return self.parts[0]

    def __repr__(self) -> str:
        return f"CompiledTemplate({self.text!r})"
