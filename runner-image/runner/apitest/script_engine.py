"""The JavaScript side of Runscope-style scripts (`scripts`): one run in a fresh QuickJS
context, inside a script worker process (`workers`). The standard library and quickjs only:
workers load this file by its path, without the runner's package.

`evaluate(request)` is the worker's function. The request is two lines: JSON {"source",
"libraries", "time_limit_s", "memory_limit_bytes"}, then the script's inputs as ASCII JSON
text; `prepare()` makes the next run's context while the worker waits. The reply is JSON:
{"inputs_error": text} when the inputs could not be loaded, else {"error": text or null, and
"results": the collector's JSON text (null when the script broke the collector) or
"results_error": why they could not be read}.

Time: the prelude, the libraries and the script share `time_limit_s` of CPU time (QuickJS
measures it with `clock()`, the worker's own CPU time); reading the results back gets up to
READ_BACK_S more. QuickJS checks that limit in its interpreter loop, not inside its regular
expression engine: the worker's caller enforces a wall-clock deadline on top (`scripts`).

The bundled libraries (`CryptoJS`, `_`, `moment`: jslibs/package.json names them, and
hack/vendor-js.sh puts their files in jslibs/vendor/) are read once per worker, copied into a
run's context when its code names them and evaluated when it first touches them.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass

import quickjs

__all__ = ["BUNDLED_INSTALL_COMMAND", "READ_BACK_S", "bundled_libraries", "evaluate", "prepare", "time_limit_message"]

MiB = 1024 * 1024
READ_BACK_S = 0.1
"""CPU seconds for reading a run's results back, after the script's own time."""
MIN_SLICE_S = 0.001
"""What an evaluation gets once the budget is spent: enough to be interrupted at once."""


def time_limit_message(time_limit_s: float) -> str:
    return f"script exceeded its {time_limit_s!r} s time limit"


def evaluate(request: bytes) -> bytes:
    head, _, inputs = request.partition(b"\n")
    job = json.loads(head)
    run = _Run(_take_context(), float(job["time_limit_s"]), int(job["memory_limit_bytes"]))
    reply = run.run(job["source"], job["libraries"], inputs.decode("ascii"))
    return json.dumps(reply, ensure_ascii=True).encode("ascii")


_prepared: list[quickjs.Context] = []


def prepare() -> None:
    if not _prepared:
        _prepared.append(_new_context())


def _new_context() -> quickjs.Context:
    ctx = quickjs.Context()
    ctx.set("__assay_assertions", _ASSERTIONS)  # compiled only if the script asserts
    ctx.set("__assay_bundled", _BUNDLED_INDEX)
    return ctx


def _take_context() -> quickjs.Context:
    return _prepared.pop() if _prepared else _new_context()


# --- bundled libraries ----------------------------------------------------------------------

JSLIBS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "jslibs")
BUNDLED_INSTALL_COMMAND = "make deps (or bash hack/vendor-js.sh) in the Assay repository"


@dataclass(frozen=True)
class BundledLibrary:
    """One library of jslibs/package.json's assayGlobals: `name` is the global scripts use,
    `source` the vendored file as ASCII text, or None when it has not been vendored."""

    name: str
    package: str
    version: str
    source: str | None

    @property
    def missing_message(self) -> str:
        return (
            f"{self.name} ({self.package} {self.version}) is not installed in this runner: "
            f"run {BUNDLED_INSTALL_COMMAND}"
        )


def bundled_libraries() -> list[BundledLibrary]:
    with open(os.path.join(JSLIBS_DIR, "package.json"), encoding="utf-8") as file:
        manifest = json.load(file)
    libraries = []
    for name, path in manifest["assayGlobals"].items():
        package = path.split("/")[0]
        try:
            with open(os.path.join(JSLIBS_DIR, "vendor", os.path.basename(path)), encoding="utf-8") as file:
                source: str | None = _ascii_source(file.read())
        except FileNotFoundError:
            source = None
        libraries.append(BundledLibrary(name, package, manifest["dependencies"][package], source))
    return libraries


def _ascii_source(source: str) -> str:
    """The same program with every non-ASCII character as a \\u escape (valid in strings, regular
    expressions, identifiers and comments alike): QuickJS stores a string with any non-ASCII
    character at two bytes a character, and copying it into each context costs four times
    as much."""
    return re.sub(
        r"[^\x00-\x7f]",
        lambda m: "".join(f"\\u{unit:04x}" for unit in _utf16_units(m[0])),
        source,
    )


def _utf16_units(char: str) -> list[int]:
    data = char.encode("utf-16-be")
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


# Read once per worker; the prelude defines the globals from this index in every context.
_BUNDLED = bundled_libraries()
_BUNDLED_INDEX = json.dumps([[lib.name, None if lib.source is not None else lib.missing_message] for lib in _BUNDLED])


class _Run:
    def __init__(self, ctx: quickjs.Context, time_limit_s: float, memory_limit_bytes: int):
        self.ctx = ctx
        self.time_limit_s = time_limit_s
        self.memory_limit_bytes = memory_limit_bytes
        self.ends = time.process_time() + time_limit_s

    def run(self, source: str, libraries: list[str], inputs: str) -> dict:
        ctx = self.ctx
        # ASCII-only JSON: the binding truncates strings at NUL and crashes on lone
        # surrogates in `Context.set`, and json.dumps escaped both.
        ctx.set("__assay_input", inputs)
        # Evaluated only if the script touches the global (the prelude's getters): all three
        # cost about 14 ms of CPU, many times a small script's whole run. Copying a source in
        # costs about a third of the rest of a run, so only what the code names is copied.
        for number, library in enumerate(_BUNDLED):
            if library.source is not None and any(library.name in text for text in (source, *libraries)):
                ctx.set(f"__assay_bundled_{number}", library.source)
        self._use_budget()
        try:
            ctx.eval(_PRELUDE)
        except quickjs.JSException as exc:  # only a limit can stop the prelude: inputs too big
            return {"inputs_error": self._describe(str(exc))}
        ctx.set_memory_limit(ctx.memory()["malloc_size"] + self.memory_limit_bytes)

        error = None
        for number, library in enumerate(libraries, 1):
            error = self._evaluate(library)
            if error is not None:
                error = f"script library {number}: {error}"
                break
        if error is None:
            error = self._evaluate(source)
        return {"error": error, **self._read_back()}

    def _use_budget(self) -> None:
        """QuickJS's limit is per evaluation: each one gets what is left of the run's."""
        self.ctx.set_time_limit(max(self.ends - time.process_time(), MIN_SLICE_S))

    def _read_back(self) -> dict:
        # Fresh headroom for reading the results back, even after a blow-up of time or memory.
        self.ctx.set_time_limit(READ_BACK_S)
        self.ctx.set_memory_limit(self.ctx.memory()["malloc_size"] + self.memory_limit_bytes)
        try:
            raw = self.ctx.eval(_COLLECT)
        except quickjs.JSException as exc:
            return {"results_error": self._describe(str(exc))}
        return {"results": raw if isinstance(raw, str) else None}

    def _evaluate(self, source: str) -> str | None:
        """Evaluates one script as a global script; the error text, or None."""
        self._use_budget()
        try:
            # The trailing `void 0` keeps the binding from converting the script's last value
            # (which may be a string it cannot decode) back into Python.
            self.ctx.eval(source + "\n;void 0")
        except quickjs.StackOverflow as exc:
            return self._describe(str(exc), stack_overflow=True)
        except quickjs.JSException as exc:
            return self._describe(str(exc))
        except (ValueError, UnicodeError) as exc:  # NUL characters, lone surrogates
            return f"the script text cannot be run: {exc}"
        return None

    def _describe(self, text: str, *, stack_overflow: bool = False) -> str:
        message, frames = _split_js_error(text)
        if message.startswith("InternalError: interrupted"):
            message = time_limit_message(self.time_limit_s)
        elif message in ("InternalError: out of memory", "null"):
            message = f"script exceeded its {_format_mib(self.memory_limit_bytes)} MiB memory limit"
        elif stack_overflow or message.startswith("InternalError: stack overflow"):
            message = "script exceeded the maximum call stack size"
        location = _location(frames)
        return f"{message} ({location})" if location else message


# --- errors -------------------------------------------------------------------------------

_FRAME = re.compile(r"^\s+at (?:(?P<name>.*?) \()?(?P<file><input>|native)(?::(?P<line>\d+))?\)?$")


def _split_js_error(text: str) -> tuple[str, list[tuple[str | None, int]]]:
    """QuickJS's "Name: message\\n    at fn (<input>:3)\\n..." into the message and the frames
    that are in script code and have a line, innermost first."""
    lines = text.rstrip("\n").split("\n")
    first_frame = next((i for i, line in enumerate(lines) if _FRAME.match(line)), len(lines))
    message_lines = lines[:first_frame]
    if first_frame == len(lines) and len(message_lines) > 1 and message_lines[-1] == "undefined":
        message_lines.pop()  # a thrown non-Error: the binding appends its (missing) stack
    frames = []
    for line in lines[first_frame:]:
        match = _FRAME.match(line)
        if not match or match["file"] != "<input>" or match["line"] is None:
            continue
        name = match["name"]
        if name is not None and name.startswith("assay_"):  # the prelude's own functions
            continue
        frames.append((name, int(match["line"])))
    return "\n".join(message_lines).strip() or "script failed", frames


def _location(frames: list[tuple[str | None, int]]) -> str | None:
    if not frames:
        return None
    name, line = frames[0]
    if name is None or name == "<eval>":
        return f"line {line}"
    where = "an anonymous function" if name == "<anonymous>" else name
    top = next((ln for n, ln in frames if n == "<eval>"), None)
    called_from = f", called from line {top}" if top is not None else ""
    return f"line {line} in {where}{called_from}"


def _format_mib(size: int) -> str:
    return f"{size // MiB}" if size % MiB == 0 else f"{size / MiB:.1f}"


# --- the JavaScript side ------------------------------------------------------------------
# Every function here is named assay_*: error locations skip those frames, so a failed
# assertion points at the script's line, not at the prelude.

_COLLECT = "__assay_collect(typeof request === 'undefined' ? undefined : request)"

_PRELUDE = r"""
(function assay_prelude(global) {
  "use strict";
  var input = JSON.parse(global.__assay_input);
  delete global.__assay_input;

  // Builtins the results depend on, taken before any user code can replace them.
  var jsonStringify = JSON.stringify;
  var objectKeys = Object.keys;
  var isArray = Array.isArray;
  var toStr = String;
  var objectToString = Object.prototype.toString;
  var DISPLAY_LIMIT = 120;
  var STRING_LIMIT = 200;

  // ---- values as text ----
  function assay_type(v) {
    if (v === null) return 'null';
    if (isArray(v)) return 'array';
    var t = typeof v;
    if (t !== 'object') return t;
    return objectToString.call(v).slice(8, -1).toLowerCase();
  }
  function assay_quote(s) {
    if (s.length > STRING_LIMIT) s = s.slice(0, STRING_LIMIT) + '...';
    return "'" + s.replace(/\\/g, '\\\\').replace(/'/g, "\\'").replace(/\n/g, '\\n') + "'";
  }
  function assay_inspect(v, depth, seen) {
    depth = depth || 0;
    seen = seen || [];
    switch (typeof v) {
      case 'string': return assay_quote(v);
      case 'number': return (v === 0 && 1 / v < 0) ? '-0' : toStr(v);
      case 'bigint': return toStr(v) + 'n';
      case 'function': return '[Function' + (v.name ? ': ' + v.name : '') + ']';
      case 'object': break;
      default: return toStr(v);
    }
    if (v === null) return 'null';
    if (seen.indexOf(v) !== -1) return '[Circular]';
    var t = assay_type(v);
    if (t === 'regexp') return toStr(v);
    if (t === 'date') return isNaN(v.getTime()) ? 'Invalid Date' : v.toISOString();
    if (t === 'error') return '[' + toStr(v) + ']';
    if (depth > 2) return t === 'array' ? '[Array]' : '[Object]';
    seen.push(v);
    var parts = [];
    if (t === 'array') {
      for (var i = 0; i < v.length && i < 50; i++) parts.push(assay_inspect(v[i], depth + 1, seen));
      if (v.length > 50) parts.push('... ' + (v.length - 50) + ' more items');
    } else {
      var keys = objectKeys(v);
      for (var k = 0; k < keys.length && k < 50; k++) {
        var key = /^[A-Za-z_$][\w$]*$/.test(keys[k]) ? keys[k] : assay_quote(keys[k]);
        parts.push(key + ': ' + assay_inspect(v[keys[k]], depth + 1, seen));
      }
      if (keys.length > 50) parts.push('...');
    }
    seen.pop();
    if (t === 'array') return parts.length ? '[ ' + parts.join(', ') + ' ]' : '[]';
    return parts.length ? '{ ' + parts.join(', ') + ' }' : '{}';
  }
  // Chai's objDisplay: long objects and arrays are abbreviated.
  function assay_display(v) {
    var s = assay_inspect(v);
    if (s.length < DISPLAY_LIMIT || v === null || typeof v !== 'object') return s;
    if (isArray(v)) return '[ Array(' + v.length + ') ]';
    var keys = objectKeys(v);
    return '{ Object (' + (keys.length > 2 ? keys.slice(0, 2).join(', ') + ', ...' : keys.join(', ')) + ') }';
  }
  function assay_logText(v) {
    if (typeof v === 'string') return v;
    if (v === null || typeof v !== 'object') return typeof v === 'function' ? assay_inspect(v) : toStr(v);
    if (assay_type(v) === 'error') return toStr(v);
    try {
      var s = jsonStringify(v);
      if (typeof s === 'string') return s;
    } catch (e) { /* cycles, BigInt: fall back to the inspector */ }
    return assay_inspect(v);
  }

  // ---- variables and log ----
  var store = Object.create(null);
  var initial = objectKeys(input.variables);
  for (var n = 0; n < initial.length; n++) store[initial[n]] = toStr(input.variables[initial[n]]);
  var logs = [];
  function assay_log() {
    var parts = [];
    for (var i = 0; i < arguments.length; i++) parts.push(assay_logText(arguments[i]));
    logs.push(parts.join(' '));
  }
  global.log = assay_log;
  global.console = { log: assay_log, info: assay_log, warn: assay_log, error: assay_log, debug: assay_log };
  global.variables = {
    get: function assay_variables_get(name) {
      name = toStr(name);
      return name in store ? store[name] : undefined;
    },
    set: function assay_variables_set(name, value) { store[toStr(name)] = toStr(value); }
  };

  // ---- base64 of UTF-8 text ----
  var B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  global.encode_base64 = function assay_encode_base64(text) {
    var bin = unescape(encodeURIComponent(toStr(text))), out = '';
    for (var i = 0; i < bin.length; i += 3) {
      var a = bin.charCodeAt(i), b = bin.charCodeAt(i + 1), c = bin.charCodeAt(i + 2);
      var chunk = (a << 16) | ((b || 0) << 8) | (c || 0);
      out += B64.charAt(chunk >> 18) + B64.charAt((chunk >> 12) & 63) +
             (i + 1 < bin.length ? B64.charAt((chunk >> 6) & 63) : '=') +
             (i + 2 < bin.length ? B64.charAt(chunk & 63) : '=');
    }
    return out;
  };
  global.decode_base64 = function assay_decode_base64(text) {
    var s = toStr(text).replace(/\s+/g, '').replace(/-/g, '+').replace(/_/g, '/').replace(/=+$/, '');
    if (/[^A-Za-z0-9+\/]/.test(s) || s.length % 4 === 1) throw new Error('decode_base64: not base64: ' + assay_quote(toStr(text)));
    var bin = '', bits = 0, value = 0;
    for (var i = 0; i < s.length; i++) {
      value = (value << 6) | B64.indexOf(s.charAt(i));
      bits += 6;
      if (bits >= 8) { bits -= 8; bin += String.fromCharCode((value >> bits) & 255); }
    }
    try { return decodeURIComponent(escape(bin)); } catch (e) { return bin; }  // not UTF-8: bytes as chars
  };

  // ---- request / response ----
  if (input.request) global.request = input.request;
  if (input.response) global.response = input.response;

  // ---- Chai-style assertions, compiled on first use ----
  // Parsing them is most of a run's cost, and pre-request and environment scripts seldom
  // assert, so `assert`, `expect` and `chai` install them when first touched.
  var assertionsSource = global.__assay_assertions;
  delete global.__assay_assertions;
  var indirectEval = eval;
  var defineProperty = Object.defineProperty;
  var getOwnPropertyDescriptor = Object.getOwnPropertyDescriptor;
  var lazyNames = ['assert', 'expect', 'chai'];
  function assay_define_global(name, value) {
    defineProperty(global, name, { value: value, writable: true, configurable: true, enumerable: false });
  }
  var lazyGetters = Object.create(null);
  function assay_install_assertions() {
    var helpers = { toStr: toStr, objectKeys: objectKeys, isArray: isArray, type: assay_type,
                    inspect: assay_inspect, display: assay_display };
    var made = indirectEval(assertionsSource)(helpers);
    for (var i = 0; i < lazyNames.length; i++) {
      var current = getOwnPropertyDescriptor(global, lazyNames[i]);
      // A name the script has already assigned keeps the script's value.
      if (current && current.get === lazyGetters[lazyNames[i]]) assay_define_global(lazyNames[i], made[lazyNames[i]]);
    }
  }
  lazyNames.forEach(function assay_lazy_global(name) {
    lazyGetters[name] = function assay_lazy_get() { assay_install_assertions(); return global[name]; };
    defineProperty(global, name, {
      get: lazyGetters[name],
      set: function assay_lazy_set(value) { assay_define_global(name, value); },
      configurable: true, enumerable: false
    });
  });

  // ---- bundled libraries (CryptoJS, _, moment), evaluated on first use ----
  // Each costs milliseconds to evaluate, many times a small script's whole run, so only a run
  // that touches one pays for it (once: the library then replaces its getter). A script or
  // script library assigning the name (its own `_`, say) keeps its value.
  var bundled = JSON.parse(global.__assay_bundled);
  delete global.__assay_bundled;
  bundled.forEach(function assay_bundled_global(entry, number) {
    var name = entry[0], missing = entry[1], key = '__assay_bundled_' + number;
    var source = global[key];
    delete global[key];
    defineProperty(global, name, {
      get: function assay_bundled_get() {
        if (missing !== null) throw new ReferenceError(missing);
        if (source === undefined) {
          throw new ReferenceError(name + ' is loaded only for code that names it: write ' + name + ' in the script or a script library');
        }
        // A plain global first: a UMD build reads the name before assigning it.
        assay_define_global(name, undefined);
        // Shadowing the module systems' names makes every build take its browser branch,
        // which assigns the global, even after a script library defined `module` or `define`.
        indirectEval('(function (exports, module, define, require) {\n' + source + '\n}).call(this)');
        return global[name];
      },
      set: function assay_bundled_set(value) { assay_define_global(name, value); },
      configurable: true, enumerable: false
    });
  });

  // ---- results, read back by Python as one JSON text ----
  function assay_string_lists(m) {
    var out = Object.create(null);
    if (m === null || typeof m !== 'object') return out;
    var names = objectKeys(m);
    for (var i = 0; i < names.length; i++) {
      var v = m[names[i]];
      if (v === null || v === undefined) continue;
      var list = [];
      if (isArray(v)) { for (var j = 0; j < v.length; j++) list.push(v[j] === null || v[j] === undefined ? '' : toStr(v[j])); }
      else list.push(toStr(v));
      out[names[i]] = list;
    }
    return out;
  }
  function assay_field(v) { return v === null || v === undefined ? '' : toStr(v); }
  var hasRequest = !!input.request;
  Object.defineProperty(global, '__assay_collect', {
    value: function assay_collect(request) {
      var out = Object.create(null);
      out.variables = store;
      out.logs = logs;
      if (hasRequest && request !== null && typeof request === 'object') {
        try {
          var r = Object.create(null);
          r.method = assay_field(request.method);
          r.url = assay_field(request.url);
          r.scheme = assay_field(request.scheme);
          r.host = assay_field(request.host);
          r.path = assay_field(request.path);
          r.body = assay_field(request.body);
          r.headers = assay_string_lists(request.headers);
          r.params = assay_string_lists(request.params);
          r.form = assay_string_lists(request.form);
          out.request = r;
        } catch (e) {
          out.request_error = toStr(e);
        }
      }
      return jsonStringify(out);
    },
    writable: false, configurable: false, enumerable: false
  });
})(globalThis);
"""

_ASSERTIONS = r"""
(function assay_assertions(h) {
  "use strict";
  var toStr = h.toStr, objectKeys = h.objectKeys, isArray = h.isArray, assay_type = h.type,
      assay_inspect = h.inspect, assay_display = h.display;

  function assay_error(message) {
    var e = new Error(message);
    e.name = 'AssertionError';
    return e;
  }
  function assay_deepEqual(a, b, seen) {
    if (a === b) return a !== 0 || 1 / a === 1 / b;
    if (a !== a && b !== b) return true;
    if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return false;
    var t = assay_type(a);
    if (t !== assay_type(b)) return false;
    if (t === 'date') return a.getTime() === b.getTime() || (a.getTime() !== a.getTime() && b.getTime() !== b.getTime());
    if (t === 'regexp' || t === 'string' || t === 'number' || t === 'boolean') return toStr(a) === toStr(b);
    seen = seen || [];
    for (var s = 0; s < seen.length; s++) if (seen[s][0] === a && seen[s][1] === b) return true;
    seen.push([a, b]);
    var result;
    if (t === 'array') {
      result = a.length === b.length;
      for (var i = 0; result && i < a.length; i++) result = assay_deepEqual(a[i], b[i], seen);
    } else {
      var ka = objectKeys(a).sort(), kb = objectKeys(b).sort();
      result = ka.length === kb.length;
      for (var k = 0; result && k < ka.length; k++) {
        result = ka[k] === kb[k] && assay_deepEqual(a[ka[k]], b[ka[k]], seen);
      }
    }
    seen.pop();
    return result;
  }
  function assay_same(a, b, deep) {
    return deep ? assay_deepEqual(a, b) : (a === b || (a !== a && b !== b));
  }

  function assay_Assertion(obj, msg) {
    this._obj = obj;
    this._msg = msg;
    this._negate = false;
    this._deep = false;
  }
  var proto = assay_Assertion.prototype;
  function assay_message(self, msg) {
    if (msg !== undefined && msg !== null && msg !== '') self._msg = msg;
  }
  function assay_raise(self, text) {
    throw assay_error(self._msg !== undefined && self._msg !== null && self._msg !== '' ? self._msg + ': ' + text : text);
  }
  // Chai's Assertion#assert: #{this} is the subject, #{exp} the expected, #{act} the actual.
  proto._assert = function assay_check(ok, message, negatedMessage, expected, actual) {
    if (arguments.length < 5) actual = this._obj;
    if (this._negate ? !ok : ok) return this;
    var subject = this._obj;
    assay_raise(this, (this._negate ? negatedMessage : message).replace(/#\{(this|exp|act)\}/g,
      function assay_substitute(_, key) {
        return assay_display(key === 'this' ? subject : key === 'exp' ? expected : actual);
      }));
  };
  function assay_getter(name, fn) {
    Object.defineProperty(proto, name, { get: fn, configurable: true });
  }
  var chains = ['to', 'be', 'been', 'is', 'that', 'which', 'and', 'has', 'have', 'with', 'at', 'of',
                'same', 'but', 'does', 'still', 'also'];
  for (var c = 0; c < chains.length; c++) assay_getter(chains[c], function assay_chain() { return this; });
  assay_getter('not', function assay_not() { this._negate = true; return this; });
  assay_getter('deep', function assay_deep() { this._deep = true; return this; });

  assay_getter('ok', function assay_be_ok() {
    return this._assert(this._obj, 'expected #{this} to be truthy', 'expected #{this} to be falsy');
  });
  assay_getter('true', function assay_be_true() {
    return this._assert(this._obj === true, 'expected #{this} to be true', 'expected #{this} to be false');
  });
  assay_getter('false', function assay_be_false() {
    return this._assert(this._obj === false, 'expected #{this} to be false', 'expected #{this} to be true');
  });
  assay_getter('null', function assay_be_null() {
    return this._assert(this._obj === null, 'expected #{this} to be null', 'expected #{this} not to be null');
  });
  assay_getter('undefined', function assay_be_undefined() {
    return this._assert(this._obj === undefined, 'expected #{this} to be undefined', 'expected #{this} not to be undefined');
  });
  assay_getter('NaN', function assay_be_NaN() {
    return this._assert(this._obj !== this._obj, 'expected #{this} to be NaN', 'expected #{this} not to be NaN');
  });
  assay_getter('exist', function assay_exist() {
    return this._assert(this._obj !== null && this._obj !== undefined, 'expected #{this} to exist', 'expected #{this} to not exist');
  });
  assay_getter('empty', function assay_be_empty() {
    var obj = this._obj, t = assay_type(obj), size;
    if (t === 'string' || t === 'array') size = obj.length;
    else if (t === 'map' || t === 'set') size = obj.size;
    else if (obj !== null && typeof obj === 'object') size = objectKeys(obj).length;
    else assay_raise(this, '.empty needs a string, an array or an object, but ' + t + ' given');
    return this._assert(size === 0, 'expected #{this} to be empty', 'expected #{this} not to be empty');
  });

  proto.equal = proto.equals = proto.eq = function assay_equal(val, msg) {
    assay_message(this, msg);
    if (this._deep) return this.eql(val);
    return this._assert(val === this._obj, 'expected #{this} to equal #{exp}', 'expected #{this} to not equal #{exp}', val, this._obj);
  };
  proto.eql = proto.eqls = function assay_eql(val, msg) {
    assay_message(this, msg);
    return this._assert(assay_deepEqual(this._obj, val), 'expected #{this} to deeply equal #{exp}',
                        'expected #{this} to not deeply equal #{exp}', val, this._obj);
  };
  proto.a = proto.an = function assay_a(type, msg) {
    assay_message(this, msg);
    type = toStr(type).toLowerCase();
    var article = /^[aeiou]/.test(type) ? 'an ' : 'a ';
    return this._assert(assay_type(this._obj) === type, 'expected #{this} to be ' + article + type,
                        'expected #{this} not to be ' + article + type);
  };
  proto.include = proto.includes = proto.contain = proto.contains = function assay_include(val, msg) {
    assay_message(this, msg);
    var obj = this._obj, t = assay_type(obj), deep = this._deep, found = false, i;
    if (t === 'string') {
      found = obj.indexOf(val) !== -1;
    } else if (t === 'array') {
      for (i = 0; !found && i < obj.length; i++) found = assay_same(obj[i], val, deep);
    } else if (t === 'set') {
      found = obj.has(val);
    } else if (obj !== null && typeof obj === 'object' && val !== null && typeof val === 'object') {
      var keys = objectKeys(val);
      found = true;
      for (i = 0; found && i < keys.length; i++) found = keys[i] in obj && assay_same(obj[keys[i]], val[keys[i]], deep);
    } else {
      assay_raise(this, 'object tested must be an array, an object, or a string, but ' + t + ' given');
    }
    var word = deep ? 'deep include ' : 'include ';
    return this._assert(found, 'expected #{this} to ' + word + '#{exp}', 'expected #{this} to not ' + word + '#{exp}', val);
  };
  proto.property = function assay_property(name, val, msg) {
    if (arguments.length > 2) assay_message(this, msg);
    var obj = this._obj;
    if (obj === null || obj === undefined) assay_raise(this, 'Target cannot be null or undefined.');
    var has = toStr(name) in Object(obj);
    var value = has ? obj[name] : undefined;
    var what = (this._deep ? 'deep property ' : 'property ') + assay_inspect(name);
    if (!this._negate || arguments.length === 1) {
      this._assert(has, 'expected #{this} to have ' + what, 'expected #{this} to not have ' + what);
    }
    if (arguments.length > 1) {
      this._assert(has && assay_same(value, val, this._deep), 'expected #{this} to have ' + what + ' of #{exp}, but got #{act}',
                   'expected #{this} to not have ' + what + ' of #{act}', val, value);
    }
    this._obj = value;
    return this;
  };
  proto.lengthOf = proto.length = function assay_lengthOf(n, msg) {
    assay_message(this, msg);
    var obj = this._obj, t = assay_type(obj), count, what = 'length';
    if (t === 'map' || t === 'set') { count = obj.size; what = 'size'; }
    else {
      if (obj === null || obj === undefined || !('length' in Object(obj))) {
        assay_raise(this, 'expected ' + assay_display(obj) + " to have property 'length'");
      }
      count = obj.length;
    }
    return this._assert(count == n, 'expected #{this} to have a ' + what + ' of #{exp} but got #{act}',
                        'expected #{this} to not have a ' + what + ' of #{act}', n, count);
  };
  function assay_compare(self, n, msg, name, test, message, negatedMessage) {
    assay_message(self, msg);
    var t = assay_type(self._obj);
    if (t !== 'number' && t !== 'date') assay_raise(self, 'expected ' + assay_display(self._obj) + ' to be a number or a date');
    if (assay_type(n) !== t) assay_raise(self, 'the argument to ' + name + ' must be a ' + t);
    return self._assert(test(self._obj, n), message, negatedMessage, n);
  }
  proto.above = proto.gt = proto.greaterThan = function assay_above(n, msg) {
    return assay_compare(this, n, msg, 'above', function assay_gt(a, b) { return a > b; },
                         'expected #{this} to be above #{exp}', 'expected #{this} to be at most #{exp}');
  };
  proto.least = proto.gte = function assay_least(n, msg) {
    return assay_compare(this, n, msg, 'least', function assay_ge(a, b) { return a >= b; },
                         'expected #{this} to be at least #{exp}', 'expected #{this} to be below #{exp}');
  };
  proto.below = proto.lt = proto.lessThan = function assay_below(n, msg) {
    return assay_compare(this, n, msg, 'below', function assay_lt(a, b) { return a < b; },
                         'expected #{this} to be below #{exp}', 'expected #{this} to be at least #{exp}');
  };
  proto.most = proto.lte = function assay_most(n, msg) {
    return assay_compare(this, n, msg, 'most', function assay_le(a, b) { return a <= b; },
                         'expected #{this} to be at most #{exp}', 'expected #{this} to be above #{exp}');
  };
  proto.within = function assay_within(start, finish, msg) {
    var range = assay_display(start) + '..' + assay_display(finish);
    return assay_compare(this, start, msg, 'within', function assay_in_range(a) { return a >= start && a <= finish; },
                         'expected #{this} to be within ' + range, 'expected #{this} to not be within ' + range);
  };
  proto.closeTo = proto.approximately = function assay_closeTo(expected, delta, msg) {
    assay_message(this, msg);
    if (typeof this._obj !== 'number') assay_raise(this, 'expected ' + assay_display(this._obj) + ' to be a number');
    var about = assay_display(expected) + ' +/- ' + assay_display(delta);
    return this._assert(Math.abs(this._obj - expected) <= delta, 'expected #{this} to be close to ' + about,
                        'expected #{this} not to be close to ' + about);
  };
  proto.match = proto.matches = function assay_match(re, msg) {
    assay_message(this, msg);
    if (!(re instanceof RegExp)) re = new RegExp(toStr(re));
    return this._assert(re.exec(toStr(this._obj)) !== null, 'expected #{this} to match ' + toStr(re),
                        'expected #{this} not to match ' + toStr(re));
  };
  proto.string = function assay_string(s, msg) {
    assay_message(this, msg);
    if (typeof this._obj !== 'string') assay_raise(this, 'expected ' + assay_display(this._obj) + ' to be a string');
    return this._assert(this._obj.indexOf(s) !== -1, 'expected #{this} to contain ' + assay_inspect(s),
                        'expected #{this} to not contain ' + assay_inspect(s));
  };
  proto.keys = proto.key = function assay_keys(keys) {
    if (arguments.length > 1 || typeof keys === 'string') keys = Array.prototype.slice.call(arguments);
    else if (!isArray(keys)) keys = keys !== null && typeof keys === 'object' ? objectKeys(keys) : [toStr(keys)];
    var actual = this._obj !== null && this._obj !== undefined ? objectKeys(Object(this._obj)) : [];
    var ok = keys.length > 0 && keys.length === actual.length;
    for (var i = 0; ok && i < keys.length; i++) ok = actual.indexOf(toStr(keys[i])) !== -1;
    var shown = keys.map(function assay_show_key(k) { return assay_inspect(k); });
    var list = shown.length > 1 ? shown.slice(0, -1).join(', ') + ', and ' + shown[shown.length - 1] : shown.join('');
    var what = (keys.length > 1 ? 'keys ' : 'key ') + list;
    return this._assert(ok, 'expected #{this} to have ' + what, 'expected #{this} to not have ' + what, keys, actual);
  };
  proto.oneOf = function assay_oneOf(list, msg) {
    assay_message(this, msg);
    var found = false;
    for (var i = 0; !found && isArray(list) && i < list.length; i++) found = assay_same(list[i], this._obj, this._deep);
    return this._assert(found, 'expected #{this} to be one of #{exp}', 'expected #{this} to not be one of #{exp}', list);
  };
  proto.satisfy = function assay_satisfy(matcher, msg) {
    assay_message(this, msg);
    return this._assert(matcher(this._obj), 'expected #{this} to satisfy ' + assay_display(matcher),
                        'expected #{this} to not satisfy ' + assay_display(matcher), true, false);
  };

  function assay_expect(value, msg) { return new assay_Assertion(value, msg); }
  var A = assay_expect;
  function assay_assert(expression, message) {
    if (!expression) throw assay_error(message === undefined ? 'Unspecified AssertionError' : toStr(message));
  }
  var assert = assay_assert;
  assert.fail = function assay_fail(actual, expected, message) {
    if (arguments.length < 2) message = actual;
    throw assay_error(message === undefined || message === null || message === '' ? 'assert.fail()' : toStr(message));
  };
  assert.ok = assert.isOk = function assay_assert_ok(v, m) { A(v, m).is.ok; };
  assert.notOk = assert.isNotOk = function assay_assert_notOk(v, m) { A(v, m).is.not.ok; };
  assert.equal = function assay_assert_equal(act, exp, m) {
    A(act, m)._assert(exp == act, 'expected #{this} to equal #{exp}', 'expected #{this} to not equal #{act}', exp, act);
  };
  assert.notEqual = function assay_assert_notEqual(act, exp, m) {
    A(act, m)._assert(exp != act, 'expected #{this} to not equal #{exp}', 'expected #{this} to equal #{act}', exp, act);
  };
  assert.strictEqual = function assay_assert_strictEqual(act, exp, m) { A(act, m).to.equal(exp); };
  assert.notStrictEqual = function assay_assert_notStrictEqual(act, exp, m) { A(act, m).to.not.equal(exp); };
  assert.deepEqual = assert.deepStrictEqual = function assay_assert_deepEqual(act, exp, m) { A(act, m).to.eql(exp); };
  assert.notDeepEqual = function assay_assert_notDeepEqual(act, exp, m) { A(act, m).to.not.eql(exp); };
  assert.isTrue = function assay_assert_isTrue(v, m) { A(v, m).is['true']; };
  assert.isNotTrue = function assay_assert_isNotTrue(v, m) { A(v, m).to.not.equal(true); };
  assert.isFalse = function assay_assert_isFalse(v, m) { A(v, m).is['false']; };
  assert.isNotFalse = function assay_assert_isNotFalse(v, m) { A(v, m).to.not.equal(false); };
  assert.isNull = function assay_assert_isNull(v, m) { A(v, m).to.equal(null); };
  assert.isNotNull = function assay_assert_isNotNull(v, m) { A(v, m).to.not.equal(null); };
  assert.isUndefined = function assay_assert_isUndefined(v, m) { A(v, m).to.equal(undefined); };
  assert.isDefined = function assay_assert_isDefined(v, m) { A(v, m).to.not.equal(undefined); };
  assert.exists = function assay_assert_exists(v, m) { A(v, m).to.exist; };
  assert.notExists = function assay_assert_notExists(v, m) { A(v, m).to.not.exist; };
  assert.isNaN = function assay_assert_isNaN(v, m) { A(v, m).to.be.NaN; };
  assert.isNotNaN = function assay_assert_isNotNaN(v, m) { A(v, m).not.to.be.NaN; };
  var types = { Number: 'number', String: 'string', Boolean: 'boolean', Array: 'array', Object: 'object', Function: 'function' };
  objectKeys(types).forEach(function assay_type_asserts(name) {
    var type = types[name];
    assert['is' + name] = function assay_assert_is_type(v, m) { A(v, m).to.be.a(type); };
    assert['isNot' + name] = function assay_assert_is_not_type(v, m) { A(v, m).to.not.be.a(type); };
  });
  assert.typeOf = function assay_assert_typeOf(v, type, m) { A(v, m).to.be.a(type); };
  assert.notTypeOf = function assay_assert_notTypeOf(v, type, m) { A(v, m).to.not.be.a(type); };
  assert.include = function assay_assert_include(hay, needle, m) { A(hay, m).to.include(needle); };
  assert.notInclude = function assay_assert_notInclude(hay, needle, m) { A(hay, m).to.not.include(needle); };
  assert.deepInclude = function assay_assert_deepInclude(hay, needle, m) { A(hay, m).to.deep.include(needle); };
  assert.notDeepInclude = function assay_assert_notDeepInclude(hay, needle, m) { A(hay, m).to.not.deep.include(needle); };
  assert.lengthOf = function assay_assert_lengthOf(v, n, m) { A(v, m).to.have.lengthOf(n); };
  assert.match = function assay_assert_match(v, re, m) { A(v, m).to.match(re); };
  assert.notMatch = function assay_assert_notMatch(v, re, m) { A(v, m).to.not.match(re); };
  assert.isAbove = function assay_assert_isAbove(v, n, m) { A(v, m).to.be.above(n); };
  assert.isAtLeast = function assay_assert_isAtLeast(v, n, m) { A(v, m).to.be.at.least(n); };
  assert.isBelow = function assay_assert_isBelow(v, n, m) { A(v, m).to.be.below(n); };
  assert.isAtMost = function assay_assert_isAtMost(v, n, m) { A(v, m).to.be.at.most(n); };
  assert.closeTo = assert.approximately = function assay_assert_closeTo(v, exp, delta, m) { A(v, m).to.be.closeTo(exp, delta); };
  assert.oneOf = function assay_assert_oneOf(v, list, m) { A(v, m).to.be.oneOf(list); };
  assert.property = function assay_assert_property(obj, prop, m) { A(obj, m).to.have.property(prop); };
  assert.notProperty = function assay_assert_notProperty(obj, prop, m) { A(obj, m).to.not.have.property(prop); };
  assert.propertyVal = function assay_assert_propertyVal(obj, prop, val, m) { A(obj, m).to.have.property(prop, val); };
  assert.notPropertyVal = function assay_assert_notPropertyVal(obj, prop, val, m) { A(obj, m).to.not.have.property(prop, val); };
  assert.deepPropertyVal = function assay_assert_deepPropertyVal(obj, prop, val, m) { A(obj, m).to.have.deep.property(prop, val); };
  assert.isEmpty = function assay_assert_isEmpty(v, m) { A(v, m).to.be.empty; };
  assert.isNotEmpty = function assay_assert_isNotEmpty(v, m) { A(v, m).to.not.be.empty; };
  assert.hasAllKeys = function assay_assert_hasAllKeys(obj, keys, m) { A(obj, m).to.have.keys(keys); };
  return { assert: assert, expect: assay_expect, chai: { assert: assert, expect: assay_expect } };

})
"""
