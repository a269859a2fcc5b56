"""Runscope-style scripts, run in an embedded and sandboxed JavaScript engine (QuickJS).

A Runscope test runs JavaScript at four points: the environment's `script` before the first
step, each request step's `before_scripts` (pre-request) and `scripts` (post-response), and
the team's script libraries, which are loaded before every one of those scripts.
`ScriptRunner.run` runs one script and returns a `ScriptOutcome`; the API-test engine decides
what the outcome means for the step.

What a script sees (Runscope's documented names)
------------------------------------------------
``request``  (pre-request and post-response scripts) ``method``, ``url``, ``scheme``, ``host``
    (host[:port]), ``path``, ``params`` ({name: [values]} from the query string), ``headers``
    ({name: [values]}), ``body`` (text), ``form`` ({name: [values]} when the body is
    ``application/x-www-form-urlencoded``), ``size_bytes``.
    A pre-request script may assign to any of them except ``size_bytes``; a header or
    parameter may be given as a string or an array, and deleting it (or setting it to
    null) removes it. As in Runscope, assigning ``request.url`` takes precedence over
    changes to ``scheme``/``host``/``path``/``params``, and assigning ``request.body`` over
    changes to ``form``.
``response`` (post-response scripts only) ``status``, ``reason``, ``headers``, ``body`` (text —
    use ``JSON.parse(response.body)``), ``response_time_ms``, ``size_bytes``.
``variables.get(name)`` the value (a string) or ``undefined``; ``variables.set(name, value)``
    stores ``String(value)``.
``log(...)`` one log line per call, the arguments joined by spaces; strings as they are,
    objects and arrays as JSON. ``console.log/info/warn/error/debug`` are the same function.
``encode_base64(text)`` / ``decode_base64(text)`` base64 of the UTF-8 bytes of the text.
``assert``, ``expect`` (also ``chai.assert``, ``chai.expect``) a subset of Chai, below.
Standard JavaScript (ES2020 and later: JSON, Math, RegExp, Date, ...) is available; there is no
filesystem, network, timer, module loader or host access of any kind. Scripts are synchronous:
promise callbacks never run.

Assertions (a Chai subset, with Chai's messages)
------------------------------------------------
``assert(expr, message)`` and ``assert.`` ``ok``/``isOk``, ``notOk``/``isNotOk``, ``equal``,
``notEqual``, ``strictEqual``, ``notStrictEqual``, ``deepEqual``/``deepStrictEqual``,
``notDeepEqual``, ``isTrue``, ``isNotTrue``, ``isFalse``, ``isNotFalse``, ``isNull``,
``isNotNull``, ``isUndefined``, ``isDefined``, ``exists``, ``notExists``, ``isNaN``,
``isNotNaN``, ``isNumber``, ``isNotNumber``, ``isString``, ``isNotString``, ``isBoolean``,
``isNotBoolean``, ``isArray``, ``isNotArray``, ``isObject``, ``isNotObject``, ``isFunction``,
``isNotFunction``, ``typeOf``, ``notTypeOf``, ``include``, ``notInclude``, ``deepInclude``,
``notDeepInclude``, ``lengthOf``, ``match``, ``notMatch``, ``isAbove``, ``isAtLeast``,
``isBelow``, ``isAtMost``, ``closeTo``/``approximately``, ``oneOf``, ``property``,
``notProperty``, ``propertyVal``, ``notPropertyVal``, ``deepPropertyVal``, ``isEmpty``,
``isNotEmpty``, ``hasAllKeys``, ``fail``. Every one takes an optional last ``message``.

``expect(value[, message])`` with the chains ``to be been is that which and has have with at
of same but does still also``, the flags ``not`` and ``deep``, the properties ``ok true false
null undefined NaN exist empty``, and the methods ``equal``/``equals``/``eq``, ``eql``,
``a``/``an``, ``include``/``includes``/``contain``/``contains``, ``property(name[, value])``
(which moves the subject to the property's value, as in Chai), ``lengthOf``/``length``,
``above``/``gt``/``greaterThan``, ``below``/``lt``/``lessThan``, ``least``/``gte``,
``most``/``lte``, ``within``, ``match``/``matches``, ``string``, ``keys``/``key`` (exactly these
keys), ``oneOf``, ``closeTo``/``approximately``, ``satisfy``.

A failed assertion throws an ``AssertionError`` with Chai's wording ("expected 201 to equal
200", with "message: " in front when one is given). Two deliberate differences: objects are
shown in full up to 120 characters (Chai abbreviates past 40, which leaves a monitoring result
saying ``{ Object (id, name, ...) }``), and strings longer than 200 characters are cut, so an
assertion on a large body does not put the whole body into the result.

Bundled libraries (as in Runscope)
----------------------------------
``CryptoJS`` (crypto-js), ``_`` (Underscore) and ``moment`` (Moment, English locale only), at the
versions runner-image/runner/apitest/jslibs/package-lock.json pins; `make deps` (or
hack/vendor-js.sh) vendors them from the npm registry and the runner image does the same. A
run evaluates a library the first time its script (or a script library) touches the global,
and only then: a script that uses none pays nothing, and the library's time (CryptoJS about
8 ms, Moment 5, Underscore 2) and memory (about 1 MiB for all three) count against the
script's limits. A library is there only when the script or a script library names it in its
text (``CryptoJS.MD5``, not ``globalThis['Crypto' + 'JS']``): copying the sources into every
run would cost a third of a small script's run. A script or script library may define the same name (its own ``_``, say)
and keeps its value. Without the vendored files a script that touches one fails with
"ReferenceError: CryptoJS (crypto-js 4.2.0) is not installed in this runner: run make deps
...". The sandbox has no secure random source, so CryptoJS functions that need randomness
(``CryptoJS.lib.WordArray.random``, AES with a passphrase rather than a key and IV) fail.
Not provided: Marked and the ``hmac`` helpers; script libraries can supply what a team needs.

Isolation and limits
--------------------
Scripts run in worker processes (`workers`, at most WORKERS at once per runner process, each
started with an empty environment and without the runner's package), each run in a fresh
QuickJS context there (`script_engine`): libraries, then the script, then the results are
read back; nothing survives into the next run (a bundled library a script changed included). Inputs go in as one JSON text set as a global
string (never spliced into source code) and results come out as one JSON text. Limits:

* time: ``time_limit_s`` for the whole run. Inside the worker QuickJS interrupts JavaScript
  after that much CPU time for the prelude, the libraries and the script together (then
  what the script logged and set is kept). QuickJS does not interrupt its regular-expression
  engine, so the runner also kills the worker when it has not answered ``time_limit_s`` +
  KILL_GRACE_S of wall time after the request: a backtracking pattern, or a loop on a
  machine too busy to give the worker its CPU time, ends there with the same error, and
  what the script logged and set is lost (the request of a pre-request script goes out
  unchanged). The next run gets a fresh worker. The caller's thread waits without the GIL.
* memory: ``memory_limit_bytes`` for what libraries and the script allocate, on top of the
  engine and the script's inputs (a large response body does not eat a script's budget).
  A worker the kernel kills (out of memory) fails its script only.
* stack: QuickJS's own limit; runaway recursion fails with a clear message.

A script fails when it throws: the error says what and where ("... (line 3)", or "(line 2 in
sign, called from line 7)" when it was thrown inside a function). Variables set and lines
logged before the failure are kept. QuickJS reports some allocation failures as a thrown
``null``; a script that throws ``null`` itself is therefore reported as out of memory.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from . import script_engine
from .script_engine import READ_BACK_S, time_limit_message
from .workers import WorkerFailed, WorkerPool, WorkerTimeout

__all__ = ["ScriptOutcome", "ScriptRunner"]

WORKERS = 4
"""Script workers per runner process: scripts running at the same time (more wait)."""
KILL_GRACE_S = READ_BACK_S + 0.15
"""Wall time past a script's time limit before its worker is killed: room for reading the
results back, and for the engine's own interrupt (which keeps what the script logged and
set) to come first where it can."""


@dataclass
class ScriptOutcome:
    variables: dict[str, str]  # all variables after the script
    logs: list[str]
    passed: bool
    error: str | None  # None when passed
    duration_ms: float
    request: dict | None = None  # the (possibly modified) request, for before_scripts
    # `request` is filled whenever a request was passed in; only a pre-request script's
    # changes mean anything, so the engine applies it for before_scripts only.


class ScriptRunner:
    """Runs Runscope-style scripts; stateless between runs and safe to share between threads
    (each run gets a fresh engine in one of the shared script workers)."""

    def __init__(
        self, libraries: Sequence[str] = (), time_limit_s: float = 1.0, memory_limit_bytes: int = 32 * 1024 * 1024
    ):
        if time_limit_s <= 0:
            raise ValueError("time_limit_s must be positive")
        if memory_limit_bytes <= 0:
            raise ValueError("memory_limit_bytes must be positive")
        if isinstance(libraries, str) or not all(isinstance(lib, str) for lib in libraries):
            raise TypeError("libraries must be a list of JavaScript source texts")
        self.libraries = tuple(libraries)
        self.time_limit_s = float(time_limit_s)
        self.memory_limit_bytes = int(memory_limit_bytes)

    def run(
        self, source: str, *, variables: dict[str, str], request: dict | None = None, response: dict | None = None
    ) -> ScriptOutcome:
        started = time.perf_counter()
        request_view = _request_view(request) if request is not None else None
        payload = {
            "variables": {str(name): str(value) for name, value in variables.items()},
            "request": request_view,
            "response": _response_view(response) if response is not None else None,
        }
        reply = self._evaluate(source, json.dumps(payload, ensure_ascii=True))
        error, results = _error_and_results(reply, payload["variables"])

        outcome_request = None
        if request is not None:
            outcome_request = dict(request)
            changed = results.get("request")
            if changed is not None:
                outcome_request = _apply_request_changes(request, request_view, changed)
        return ScriptOutcome(
            variables=results["variables"],
            logs=results["logs"],
            passed=error is None,
            error=error,
            duration_ms=_ms_since(started),
            request=outcome_request,
        )

    def _evaluate(self, source: str, inputs: str) -> dict:
        """The engine's reply (script_engine.evaluate), or an error of the run as a whole."""
        try:
            reply = _workers().call(self._request(source, inputs), self.time_limit_s + KILL_GRACE_S)
        except WorkerTimeout:
            return {"error": time_limit_message(self.time_limit_s)}
        except WorkerFailed as exc:
            return {"error": f"the script engine failed: {exc}"}
        try:
            decoded = json.loads(reply)
        except ValueError:
            decoded = None
        return decoded if isinstance(decoded, dict) else {"error": "the script engine failed: a malformed reply"}

    def _request(self, source: str, inputs: str) -> bytes:
        """The engine's request: the code and the limits as one JSON line, then the inputs
        (ASCII JSON text, so neither part holds a raw newline)."""
        job = json.dumps(
            {
                "source": source,
                "libraries": self.libraries,
                "time_limit_s": self.time_limit_s,
                "memory_limit_bytes": self.memory_limit_bytes,
            },
            ensure_ascii=True,
        )
        return f"{job}\n{inputs}".encode("ascii")


def _error_and_results(reply: dict, initial_variables: dict[str, str]) -> tuple[str | None, dict]:
    """The run's error and its results (variables, logs, the request as the script left it);
    a run without readable results keeps the variables it started with."""
    nothing = {"variables": dict(initial_variables), "logs": []}
    if "inputs_error" in reply:
        return f"could not load the script's inputs: {reply['inputs_error']}", nothing
    error = reply.get("error")
    if "results_error" in reply:
        return error or f"could not read the script's results: {reply['results_error']}", nothing
    if "results" not in reply:  # the worker was stopped or died
        return error, nothing
    try:
        results = _read_results(reply["results"])
    except (ValueError, TypeError) as exc:
        return error or f"could not read the script's results: {exc}", nothing
    return error or results.get("error"), results


_pool: WorkerPool | None = None
_pool_lock = threading.Lock()


def _workers() -> WorkerPool:
    """The script workers of this process, started on first use."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = WorkerPool(script_engine.__file__, "evaluate", WORKERS, prepare="prepare")
        return _pool


# --- what goes in -------------------------------------------------------------------------


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def _string_lists(mapping: Mapping | None) -> dict[str, list[str]]:
    """{name: [values]} from {name: [values]} or {name: value}."""
    result: dict[str, list[str]] = {}
    for name, values in (mapping or {}).items():
        if values is None:
            continue
        if isinstance(values, str | bytes) or not isinstance(values, Sequence):
            values = [values]
        result[str(name)] = [_text(v) for v in values]
    return result


def _pairs_to_lists(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for name, value in pairs:
        result.setdefault(name, []).append(value)
    return result


def _lists_to_query(lists: Mapping[str, list[str]]) -> str:
    return urlencode([(name, value) for name, values in lists.items() for value in values])


def _request_view(request: Mapping) -> dict:
    url = _text(request.get("url"))
    parts = urlsplit(url)
    headers = _string_lists(request.get("headers"))
    body = _text(request.get("body"))
    content_type = next((v[0] for k, v in headers.items() if k.lower() == "content-type" and v), "")
    is_form = content_type.split(";")[0].strip().lower() == "application/x-www-form-urlencoded"
    return {
        "method": _text(request.get("method") or "GET"),
        "url": url,
        "scheme": parts.scheme,
        "host": parts.netloc,
        "path": parts.path,
        "params": _pairs_to_lists(parse_qsl(parts.query, keep_blank_values=True)),
        "headers": headers,
        "body": body,
        "form": _pairs_to_lists(parse_qsl(body, keep_blank_values=True)) if is_form else {},
        "size_bytes": len(body.encode("utf-8", "surrogatepass")),
    }


def _response_view(response: Mapping) -> dict:
    status = int(response.get("status") or 0)
    body = _text(response.get("body"))
    reason = response.get("reason")
    if reason is None:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = ""
    size = response.get("size_bytes")
    return {
        "status": status,
        "reason": _text(reason),
        "headers": _string_lists(response.get("headers")),
        "body": body,
        "response_time_ms": float(response.get("response_time_ms") or 0.0),
        "size_bytes": int(size) if size is not None else len(body.encode("utf-8", "surrogatepass")),
    }


# --- what comes out -----------------------------------------------------------------------


def _clean(text: str) -> str:
    """A JS string may hold lone surrogates; they become U+FFFD so the text encodes."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _checked_lists(value) -> dict[str, list[str]]:
    if not isinstance(value, dict) or not all(
        isinstance(v, list) and all(isinstance(s, str) for s in v) for v in value.values()
    ):
        raise ValueError("malformed request from the script")
    return {_clean(k): [_clean(s) for s in v] for k, v in value.items()}


def _read_results(raw) -> dict:
    """The collector's JSON, checked: the script could have tampered with builtins."""
    if not isinstance(raw, str):
        raise ValueError("the script replaced the result collector")
    data = json.loads(raw)
    variables, logs = data.get("variables"), data.get("logs")
    if not isinstance(variables, dict) or not all(isinstance(v, str) for v in variables.values()):
        raise ValueError("malformed variables from the script")
    if not isinstance(logs, list) or not all(isinstance(line, str) for line in logs):
        raise ValueError("malformed log from the script")
    results = {
        "variables": {_clean(k): _clean(v) for k, v in variables.items()},
        "logs": [_clean(line) for line in logs],
    }
    if "request_error" in data:
        results["error"] = f"could not read the modified request: {data['request_error']}"
    request = data.get("request")
    if isinstance(request, dict):
        fields = {}
        for key in ("method", "url", "scheme", "host", "path", "body"):
            if not isinstance(request.get(key), str):
                raise ValueError("malformed request from the script")
            fields[key] = _clean(request[key])
        for key in ("headers", "params", "form"):
            fields[key] = _checked_lists(request.get(key))
        results["request"] = fields
    return results


def _apply_request_changes(original: Mapping, before: dict, after: dict) -> dict:
    """The request as the pre-request script left it, in the shape it came in. Unchanged
    fields keep their original representation."""
    result = dict(original)
    url = after["url"]
    if url == before["url"] and any(after[k] != before[k] for k in ("scheme", "host", "path", "params")):
        url = urlunsplit(
            (
                after["scheme"],
                after["host"],
                after["path"],
                _lists_to_query(after["params"]),
                urlsplit(before["url"]).fragment,
            )
        )
    body = after["body"]
    if body == before["body"] and after["form"] != before["form"]:
        body = _lists_to_query(after["form"])
    if after["method"] != before["method"]:
        result["method"] = after["method"]
    if url != before["url"]:
        result["url"] = url
    if after["headers"] != before["headers"]:
        result["headers"] = after["headers"]
    if body != before["body"]:
        result["body"] = body
    return result


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0
