"""Running one shard of a LoadTest: virtual users or arrivals, flows, pools, checks, metrics.

    metrics = await run_load_shard(spec, shard, shards, run_id=..., on_progress=print)

The shard takes its share of the profile (profile.py: users or iterations dealt round-robin,
so S shards together are exactly the one-shard run), its slice of every parameter pool
(row i goes to shard i % S) and runs until the profile ends, the iterations are done or the
abort watchdog fires. What it measured comes back as `ShardMetrics` (metrics.py), criteria
judged on this shard alone (the caller re-judges the merged run).

Per iteration: a flow is chosen by weight (smooth weighted round-robin over the global
user or iteration number, so the mix is exact, not random), every pool that applies to the
flow gives its row (the next one, the user's own, or the next never-used one: the pool's
`mode`), and the flow's requests run in order. Each request renders its templates (the
API-test engine's `{{variables}}` and helpers, compiled once per run: pool columns and
earlier extractions of the same iteration), is sent, checked and recorded:

- no response: error kind `connect`, `timeout` or `other` (client.py);
- status >= 400: `status` - unless the request asserts on response_status itself, in which
  case its assertions decide (a test may expect a 404);
- a failed assertion: `assertion` (status, header, JSON path, body text, ...: checks.py).

Sessions: each virtual user has a cookie jar (cookies.py), made on the first Set-Cookie it
gets, so a user that never receives a cookie costs nothing; the user's requests carry the
cookies that match them. In the open model every iteration is a new visitor with a new
jar; `cookies.clearEachIteration` makes the closed model's users start each iteration
empty too. Redirects (301/302/303 become a GET without body, 307/308 repeat the method
and body) are followed up to `maxRedirects`, each hop a request of its own to the client
(so another origin goes through the egress policy like any); the recorded request is the
whole chain: its time, its bytes, and the hops in the `redirects` count.

Think time (constant or drawn from a distribution: profile.think_sampler) follows every
request of a flow in the closed model (so a one-request flow paces too); in the open model
it separates the requests of an iteration, and the arrival rate paces the iterations. A
flow's `pacing` makes a closed-model iteration last at least that long. When the profile
ends no new request starts; requests in flight complete (or time out), so every request
the target saw is counted. An abort stops new requests at once and gives those in flight
`ABORT_GRACE_SECONDS` before cancelling them. A `unique` pool whose rows run out either
aborts (`whenExhausted: fail`) or lets the iterations under way finish and starts no more.

`on_progress` is called about once a second with a `Progress`: throughput, errors and the
p95 of the last few seconds.
"""

from __future__ import annotations

import asyncio
import csv
import io
import math
import os
import ssl
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Optional
from urllib.parse import urljoin

from assay.crds.common import parse_duration
from assay.crds.contracts.histogram import Histogram
from assay.crds.contracts.runner_settings import env_name
from assay.crds.loadtest import LoadParameterPool, LoadRequest, LoadTestSpec

from ..templating import CompiledTemplate, TemplateError
from ..egress import EgressPolicy
from . import criteria as criteria_module
from .checks import CompiledAssertion, CompiledExtraction, ResponseView, needs_body
from .cookies import CookieJar
from .client import (
    ASSERTION,
    CONNECT,
    ERROR_KINDS,
    OTHER,
    STATUS,
    HttpClient,
    PreparedRequest,
    RequestError,
    encode_request,
    split_url,
)
from .metrics import Recorder, ShardMetrics, TimerLog
from .profile import ClosedSchedule, OpenSchedule, think_sampler, weighted_order
from .wheel import Sleepers

ABORT_GRACE_SECONDS = 2.0
PROGRESS_WINDOW_SECONDS = 5
POOLS_DIR_ENV = env_name("pools_dir")
"""Where a pool's ConfigMap is mounted: `$ASSAY_POOLS_DIR/<configmap>/<key>`."""

_KIND = {kind: i for i, kind in enumerate(ERROR_KINDS)}
_STATUS, _ASSERTION, _OTHER, _CONNECT = _KIND[STATUS], _KIND[ASSERTION], _KIND[OTHER], _KIND[CONNECT]
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class LoadSpecError(ValueError):
    """A spec the engine cannot run (a pool it cannot read, a URL that is not http(s))."""


@dataclass
class Progress:
    """About once a second, from the running shard."""

    shard: int
    elapsed_s: float
    second: int
    active_users: int
    requests: int
    """Requests completed so far."""
    errors: int
    window_s: int
    window_requests: int
    window_errors: int
    window_histogram: Histogram
    """Latencies of the last `window_s` seconds, so processes can merge their windows."""

    @property
    def rps(self) -> float:
        return self.window_requests / self.window_s if self.window_s else 0.0

    @property
    def p95_ms(self) -> Optional[float]:
        if not self.window_histogram.total:
            return None
        return self.window_histogram.value_at_percentile(95.0) / 1000.0

    def line(self) -> str:
        p95 = f"{self.p95_ms:.1f} ms" if self.p95_ms is not None else "-"
        return (
            f"[{self.elapsed_s:6.1f}s] users {self.active_users:5d}  {self.rps:9.1f} req/s  "
            f"errors {self.window_errors}/{self.window_requests} (total {self.errors})  p95 {p95}"
        )


def resolve_url(base_url: Optional[str], url: str) -> str:
    if base_url and not url.startswith(("http://", "https://", "{{")):
        return urljoin(base_url.rstrip("/") + "/", url.lstrip("/"))
    return url


# Credentials a user set for one origin are not handed to another one a redirect points to.
_CROSS_ORIGIN_DROPPED = frozenset({"authorization", "cookie", "proxy-authorization", "host"})


def redirected(request: PreparedRequest, status: int, location: str) -> PreparedRequest:
    """The request a redirect asks for: 301/302/303 as a GET without body (HEAD stays HEAD),
    307/308 with the same method and body (ValueError for a Location that is not http(s))."""
    origin, target = split_url(urljoin(request.url, location))
    method, body, headers = request.method, request.body, request.headers
    if status in (301, 302, 303) and method != "HEAD":
        method, body = "GET", None
        headers = [(n, v) for n, v in headers if n.lower() != "content-type"]
    if origin.key != request.origin.key:
        headers = [(n, v) for n, v in headers if n.lower() not in _CROSS_ORIGIN_DROPPED]
    return encode_request(method, origin, target, headers, body)


class RedirectCache:
    """The requests redirects ask for, built once per (request, status, Location): the hop a
    redirect makes is the same for every user that gets it (a login's 302 to /home), and
    building it (URL join, parse, quoting, encoding) costs more than the hop's round trip.
    A PreparedRequest is never changed once made, so the same one serves every user.
    Bounded: a Location that varies (a nonce in it) refills the cache instead of growing it;
    large requests are not kept, their bytes would stay alive with them."""

    __slots__ = ("entries", "size", "largest")

    def __init__(self, size: int = 1024, largest: int = 4096):
        self.entries: dict[tuple, PreparedRequest] = {}
        self.size, self.largest = size, largest

    def get(self, request: PreparedRequest, status: int, location: str) -> PreparedRequest:
        if len(request.data) > self.largest:
            return redirected(request, status, location)
        # The bytes hold the method, target, headers and body; the origin's key adds the scheme.
        key = (request.origin.key, request.data, status, location)
        hop = self.entries.get(key)
        if hop is None:
            hop = redirected(request, status, location)
            if len(self.entries) >= self.size:
                self.entries.clear()
            self.entries[key] = hop
        return hop


# --- the compiled plan ------------------------------------------------------------------------


class _Request:
    """A LoadRequest ready for the hot path: its bytes when nothing is templated, and the
    bytes around the values when only header values are."""

    __slots__ = (
        "name",
        "index",
        "method",
        "timeout",
        "static",
        "url",
        "headers",
        "body",
        "keep_body",
        "assertions",
        "extractions",
        "status_asserted",
        "checks",
        "max_redirects",
        "fixed_url",
        "flow",
        "pieces",
    )

    def __init__(
        self,
        request: LoadRequest,
        index: int,
        base_url: Optional[str],
        default_timeout: float,
        max_redirects: int,
        field: str,
    ):
        self.name = request.name or f"{request.method} {request.url}"
        self.index = index
        self.flow = 0
        """The index of the flow this request belongs to (set by _compile)."""
        self.method = request.method
        self.timeout = parse_duration(request.timeout) if request.timeout else default_timeout
        self.max_redirects = request.max_redirects if request.max_redirects is not None else max_redirects
        try:
            self.url = CompiledTemplate(resolve_url(base_url, request.url), f"{field}.url")
            self.headers = [
                (name, CompiledTemplate(value, f"{field}.headers.{name}")) for name, value in request.headers.items()
            ]
            self.body = CompiledTemplate(request.body, f"{field}.body") if request.body is not None else None
        except TemplateError as exc:
            raise LoadSpecError(f"request {self.name!r}: {exc}") from None
        self.assertions = [CompiledAssertion(a) for a in request.assertions]
        self.extractions = [CompiledExtraction(v) for v in request.extract]
        self.status_asserted = any(a.source == "response_status" for a in request.assertions)
        self.keep_body = needs_body(request.assertions, request.extract)
        self.checks = bool(self.assertions or self.extractions)
        self.fixed_url = None
        if self.url.is_static:
            # Only headers or the body vary: the URL is parsed once, not per request.
            try:
                self.fixed_url = split_url(self.url.text)
            except ValueError as exc:
                raise LoadSpecError(f"request {self.name!r}: {exc}") from None
        static = (
            self.url.is_static
            and all(t.is_static for _, t in self.headers)
            and (self.body is None or self.body.is_static)
        )
        self.static = self._render({}) if static else None
        self.pieces = None
        if not static and self.fixed_url is not None and (self.body is None or self.body.is_static):
            self.pieces = self._pieces()
        if static is False:
            # Catch a URL that can never work now, not once per request.
            prefix = self.url.static_prefix()
            if prefix and not prefix.startswith(("http://", "https://")):
                raise LoadSpecError(
                    f"request {self.name!r}: URL {request.url!r} is not absolute and the spec has no baseUrl"
                )

    def _render(self, variables: Mapping[str, str]) -> PreparedRequest:
        try:
            origin, target = self.fixed_url or split_url(self.url.render(variables))
            headers = [(name, t.render(variables)) for name, t in self.headers]
            body = self.body.render(variables) if self.body is not None else None
            return encode_request(self.method, origin, target, headers, body)
        except ValueError as exc:
            raise LoadSpecError(f"request {self.name!r}: {exc}") from None

    def _pieces(self) -> Optional[tuple[list[bytes], list[int], Optional[bytes]]]:
        """When only header values vary: the request's bytes around them, encoded once (with
        a mark for each varying value, then split at the marks), the index of each varying
        header, and the body; None when the marks do not come out one each, in order."""
        origin, target = self.fixed_url
        marked = [(name, t.text if t.is_static else f"\x00{i}\x00") for i, (name, t) in enumerate(self.headers)]
        try:
            body = self.body.text if self.body is not None else None
            request = encode_request(self.method, origin, target, marked, body)
        except ValueError:
            return None
        pieces, varying, rest = [], [], request.data
        for i, (_, t) in enumerate(self.headers):
            if not t.is_static:
                before, mark, rest = rest.partition(f"\x00{i}\x00".encode())
                if not mark:
                    return None
                pieces.append(before)
                varying.append(i)
        if b"\x00" in rest or any(b"\x00" in piece for piece in pieces):
            return None
        pieces.append(rest)
        return pieces, varying, request.body

    def _fill(self, variables: Mapping[str, str]) -> PreparedRequest:
        """What _render makes, from the pieces: only the varying values are encoded."""
        pieces, varying, body = self.pieces
        try:
            headers = [(name, t.render(variables)) for name, t in self.headers]
            out = [pieces[0]]
            for k, i in enumerate(varying, 1):
                name, value = headers[i]
                if "\r" in value or "\n" in value:
                    raise ValueError(f"header {name!r} contains a line break")
                out.append(value.encode())
                out.append(pieces[k])
        except ValueError as exc:
            raise LoadSpecError(f"request {self.name!r}: {exc}") from None
        data = b"".join(out)
        origin, target = self.fixed_url
        head_end = len(data) - (len(body) if body else 0) - 4
        return PreparedRequest(self.method, origin, data, target, headers, body, head_end)

    def prepare(self, variables: Mapping[str, str]) -> PreparedRequest:
        if self.static is not None:
            return self.static
        if self.pieces is not None:
            return self._fill(variables)
        return self._render(variables)


class _Pool:
    """This shard's rows of a parameter pool, handed out as its mode says."""

    __slots__ = ("name", "rows", "next", "per_user", "unique", "fail_when_exhausted")

    def __init__(self, name: str, rows: list[dict[str, str]], mode: str = "per_iteration", fail: bool = False):
        self.name, self.rows, self.next = name, rows, 0
        self.per_user, self.unique, self.fail_when_exhausted = mode == "per_user", mode == "unique", fail

    def draw(self, user: Optional[int]) -> Optional[dict[str, str]]:
        """The row for an iteration of local user `user` (None in the open model); None
        when a unique pool has no row left."""
        rows = self.rows
        if self.per_user and user is not None:
            return rows[user % len(rows)]
        if self.unique and self.next >= len(rows):
            return None
        row = rows[self.next % len(rows)]
        self.next += 1
        return row


class _Flow:
    __slots__ = ("name", "requests", "think", "draw_think", "pacing", "pools", "index", "single")

    def __init__(
        self,
        name: str,
        requests: list[_Request],
        think: float | Callable[[], float],
        pools: list[_Pool],
        pacing: Optional[float] = None,
        index: int = 0,
    ):
        self.name, self.requests, self.pools, self.pacing = name, requests, pools, pacing
        self.index = index
        # A constant think time stays a number: no call per pause.
        self.think, self.draw_think = (0.0, think) if callable(think) else (think, None)
        # One request and nothing around it (no pool, think time or pacing): a closed-model
        # user sends it without an iteration coroutine, which is a tenth of a bare GET's CPU.
        plain = len(requests) == 1 and not pools and not think and pacing is None
        self.single: Optional[_Request] = requests[0] if plain else None


def read_pool_csv(pool: LoadParameterPool) -> str:
    if pool.csv is not None:
        return pool.csv
    ref = pool.config_map_ref
    folder = os.environ.get(POOLS_DIR_ENV)
    path = Path(folder, ref.name, ref.key) if folder else None
    if path is None or not path.is_file():
        raise LoadSpecError(
            f"parameter pool {pool.name!r}: ConfigMap {ref.name}/{ref.key} is not mounted "
            f"(expected ${POOLS_DIR_ENV}/{ref.name}/{ref.key})"
        )
    return path.read_text()


def pool_rows(text: str) -> list[dict[str, str]]:
    reader = csv.reader(io.StringIO(text.strip("\n")))
    rows = [row for row in reader if row and any(cell.strip() for cell in row)]
    if not rows:
        return []
    header = [name.strip() for name in rows[0]]
    return [{name: (row[i] if i < len(row) else "") for i, name in enumerate(header)} for row in rows[1:]]


def shard_slice(rows: list, shard: int, shards: int, share: bool = True) -> list:
    """Row i goes to shard i % shards; a shard left with none (fewer rows than shards)
    shares all rows rather than running without parameters, unless `share` is off (rows
    that must never be used twice)."""
    mine = rows[shard::shards]
    return mine or (rows if share else [])


def _compile(spec: LoadTestSpec, shard: int, shards: int) -> tuple[list[_Flow], list[str]]:
    names: list[str] = []
    index: dict[str, int] = {}
    default_timeout = parse_duration(spec.request_timeout)
    pools = []
    for pool in spec.parameter_pools:
        rows = pool_rows(read_pool_csv(pool))
        if not rows:
            raise LoadSpecError(f"parameter pool {pool.name!r} has no rows")
        mode = pool.mode or "per_iteration"
        mine = shard_slice(rows, shard, shards, share=mode != "unique")
        pools.append((pool.flow, _Pool(pool.name, mine, mode, pool.when_exhausted == "fail")))
    flows = []
    for f, flow in enumerate(spec.flows):
        requests = []
        for r, request in enumerate(flow.requests):
            name = request.name or f"{request.method} {request.url}"
            if name not in index:
                index[name] = len(names)
                names.append(name)
            field = f"spec.flows[{f}].requests[{r}]"
            requests.append(_Request(request, index[name], spec.base_url, default_timeout, spec.max_redirects, field))
            requests[-1].flow = f
        flows.append(
            _Flow(
                flow.name,
                requests,
                think_sampler(flow),
                [p for scope, p in pools if scope is None or scope == flow.name],
                parse_duration(flow.pacing) if flow.pacing else None,
                f,
            )
        )
    return flows, names


def check_spec(spec: LoadTestSpec) -> None:
    """Raise LoadSpecError now for what would stop every shard (unreadable pools, bad URLs)."""
    _compile(spec, 0, 1)


# --- the run ----------------------------------------------------------------------------------


class _ShardRun:
    def __init__(
        self,
        spec: LoadTestSpec,
        shard: int,
        shards: int,
        run_id: str,
        on_progress: Optional[Callable[[Progress], None]],
        client: HttpClient,
        abort_requested: Optional[Callable[[], Optional[str]]] = None,
    ):
        if not 0 <= shard < shards:
            raise ValueError(f"shard {shard} is not in 0..{shards - 1}")
        self.spec, self.shard, self.shards, self.run_id = spec, shard, shards, run_id
        self.on_progress = on_progress
        self.abort_requested = abort_requested
        self.client = client
        self.flows, self.names = _compile(spec, shard, shards)
        self.order = weighted_order([flow.weight for flow in spec.flows])
        self.stopping = False
        self.draining = False
        """No new iterations (a unique pool ran out); those under way finish."""
        self.aborted = False
        self.abort_reason: Optional[str] = None
        self.dropped = 0
        self.redirects = RedirectCache()
        self.pause = Sleepers().pause
        self.error_samples: dict[str, str] = {}
        self.cookies = spec.cookies.enabled
        self.clear_cookies = spec.cookies.clear_each_iteration
        self._stop = asyncio.Event()
        self.timers: Optional[TimerLog] = None
        if spec.timers.enabled:
            self.timers = TimerLog(self.names, [flow.name for flow in spec.flows], spec.timers.max_records)
        self.last_error = -1
        threshold = spec.abort_on_error_rate
        self.watchdog = criteria_module.AbortWatchdog(threshold) if threshold is not None else None

    # -- one request -------------------------------------------------------------------------

    async def _send(
        self, req: _Request, variables: dict[str, str], due: Optional[float], jar: Optional[CookieJar], user: int = 0
    ) -> Optional[CookieJar]:
        """Send, check and record one request (and its redirects) of virtual user `user`;
        returns the user's cookie jar, made here when the first cookie arrives. `last_error`
        holds the request's outcome when this returns: nothing runs between this return and
        the caller's next line, so the caller reads its own request's outcome."""
        perf = time.perf_counter
        try:
            prepared = req.static if req.static is not None else req.prepare(variables)
        except LoadSpecError as exc:
            now = perf()
            self._sample(OTHER, str(exc))
            self.recorder.record(req.index, int(now + self.offset), 0, 0, 0, _OTHER)
            if self.timers is not None:
                self.timers.request(req.index, req.flow, user, int((now + self.offset) * 1000), 0, _OTHER, 0, 0, 0)
            self.last_error = _OTHER
            return jar
        start = perf()
        # Open model: the first request of an iteration counts from when it was due.
        t0 = start if due is None or due > start else due
        sent = received = hops = status = 0
        error = -1
        timeout = req.timeout
        try:
            while True:
                data = path = None
                if jar is not None:
                    path = prepared.path
                    cookie = jar.header(prepared.origin.host, path, prepared.origin.tls)
                    if cookie is not None:
                        data = prepared.with_cookie(cookie)
                size = len(data if data is not None else prepared.data)
                try:
                    response = await self.client.send(prepared, timeout, req.keep_body, data)
                except RequestError as exc:
                    if exc.kind != CONNECT:
                        sent += size
                    raise
                sent += size
                status = response.status
                received += response.bytes_received
                if self.cookies and (values := response.set_cookies()) is not None:
                    if jar is None:
                        jar = CookieJar()
                    jar.store(values, prepared.origin.host, path if path is not None else prepared.path)
                if response.status not in _REDIRECTS or hops >= req.max_redirects:
                    break
                location = response.location()
                if location is None:
                    break
                try:
                    prepared = self.redirects.get(prepared, response.status, location)
                except ValueError as exc:
                    raise RequestError(OTHER, f"redirect to {location!r}: {exc}") from None
                hops += 1
                timeout = req.timeout - (perf() - start)
        except RequestError as exc:
            end = perf()
            error = _KIND[exc.kind]
            if exc.kind not in self.error_samples:
                self._sample(exc.kind, f"{req.name}: {exc}")
        except Exception as exc:  # a client bug must cost one request, not the whole run
            end = perf()
            error = _OTHER
            if OTHER not in self.error_samples:
                self._sample(OTHER, f"{req.name}: {type(exc).__name__}: {exc}")
        else:
            end = perf()
            if not req.status_asserted and response.status >= 400:
                error = _STATUS
                if STATUS not in self.error_samples:
                    self._sample(STATUS, f"{req.name}: HTTP {response.status}")
            if req.checks:
                view = ResponseView(response, (end - t0) * 1000.0)
                for extraction in req.extractions:
                    extraction.extract(view, variables)
                if error < 0:
                    for assertion in req.assertions:
                        if not assertion.check(view, variables):
                            error = _ASSERTION
                            if ASSERTION not in self.error_samples:
                                self._sample(ASSERTION, f"{req.name}: {assertion.text}")
                            break
        runtime_us = int((end - t0) * 1_000_000)
        self.recorder.record(req.index, int(end + self.offset), runtime_us, sent, received, error, hops)
        if self.timers is not None:
            self.timers.request(
                req.index, req.flow, user, int((t0 + self.offset) * 1000), runtime_us, error, status, sent, received
            )
        self.last_error = error
        return jar

    def _sample(self, kind: str, message: str) -> None:
        """The first error of each kind, to tell the user what went wrong, not only how often."""
        self.error_samples.setdefault(kind, message[:300])

    async def _iteration(
        self,
        flow: _Flow,
        due: Optional[float],
        stop_at: float,
        closed: bool,
        user: Optional[int] = None,
        jar: Optional[CookieJar] = None,
        vuser: int = 0,
    ) -> Optional[CookieJar]:
        """One iteration of `flow` for local user `user` (closed model) with its cookie jar;
        returns the jar as the iteration left it. `vuser` numbers the user in timer records:
        the virtual user (closed model) or the worker that ran the iteration (open model)."""
        variables: dict[str, str] = {}
        for pool in flow.pools:
            row = pool.draw(user)
            if row is None:
                self._exhausted(pool)
                return jar
            variables.update(row)
        perf = time.perf_counter
        began = perf()
        think, draw = flow.think, flow.draw_think
        last = len(flow.requests) - 1
        timers = self.timers
        sent = failed = False
        # The iteration's `T` record runs from its first request (or when it was due) to its
        # last step, think times included as XLT counts them, pacing not.
        try:
            for i, req in enumerate(flow.requests):
                if self.stopping or perf() >= stop_at:
                    return jar
                jar = await self._send(req, variables, due if i == 0 else None, jar, vuser)
                sent = True
                if self.last_error >= 0:
                    failed = True
                if draw is not None:
                    think = draw()
                if think and (closed or i < last):
                    remaining = stop_at - perf()
                    if remaining <= 0:
                        return jar
                    await self.pause(think if think < remaining else remaining)
        finally:
            if timers is not None and sent:
                first = began if due is None or due > began else due
                now = perf()
                timers.iteration(
                    flow.index, vuser, int((first + self.offset) * 1000), int((now - first) * 1_000_000), failed
                )
        if closed and flow.pacing is not None:
            wait = min(began + flow.pacing, stop_at) - perf()
            if wait > 0:
                await self.pause(wait)
        return jar

    def _exhausted(self, pool: _Pool) -> None:
        if self.stopping or self.draining:
            return
        message = f"parameter pool {pool.name!r}: all {len(pool.rows)} unique rows of shard {self.shard} are used"
        if pool.fail_when_exhausted:
            self.abort(message)
        else:
            # Not an error: the run ends as a run that had no more data would.
            print(f"assay-runner: {message}; no new iterations", file=sys.stderr)
            self.draining = True

    # -- closed model ------------------------------------------------------------------------

    async def _closed_user(self, user: int, windows: list[tuple[float, float]], iterations: Optional[int]) -> None:
        perf = time.perf_counter
        rec = self.recorder
        flows, order, cycle = self.flows, self.order, len(self.order)
        local = user // self.shards  # pools' per_user rows: user k has row k
        clear = self.clear_cookies
        # The shortcut skips the iteration's timer record, so it is off while records are kept.
        single = self.timers is None
        jar: Optional[CookieJar] = None
        done = 0
        for start, stop in windows:
            delay = self.t0 + start - perf()
            if delay > 0:
                await self.pause(delay)
            if self.stopping or self.draining:
                return
            stop_at = self.t0 + stop
            rec.active += 1
            if rec.active > rec.peak:
                rec.peak = rec.active
            try:
                while (
                    not (self.stopping or self.draining)
                    and perf() < stop_at
                    and (iterations is None or done < iterations)
                ):
                    flow = flows[order[(user + done) % cycle]]
                    if single and flow.single is not None:
                        # What _iteration does for such a flow; the loop's condition has just
                        # checked what its own check before the request would.
                        jar = await self._send(flow.single, {}, None, jar, user)
                    else:
                        jar = await self._iteration(flow, None, stop_at, True, local, jar, user)
                    if clear:
                        jar = None
                    done += 1
            finally:
                rec.active -= 1
            if iterations is not None and done >= iterations:
                return

    async def _closed(self) -> None:
        schedule = ClosedSchedule.from_profile(self.spec.load)
        users = schedule.users_of(self.shard, self.shards)
        await asyncio.gather(*(self._closed_user(k, schedule.windows(k), schedule.iterations) for k in users))

    # -- open model --------------------------------------------------------------------------

    async def _open(self) -> None:
        schedule = OpenSchedule.from_profile(self.spec.load)
        cap = schedule.max_users_of(self.shard, self.shards)
        loop = asyncio.get_running_loop()
        perf = time.perf_counter
        self.open_end = self.t0 + schedule.end
        idle: list[asyncio.Future] = []
        self.backlog: deque[tuple[int, float]] = deque()
        self.schedule_done = False
        workers: list[asyncio.Task] = []
        for number, at in schedule.arrivals(self.shard, self.shards):
            due = self.t0 + at
            delay = due - perf()
            if delay > 0.0005:
                await asyncio.sleep(delay)
            if self.stopping or self.draining:
                break
            job = (number, due)
            while idle:
                waiter = idle.pop()
                if not waiter.done():
                    waiter.set_result(job)
                    break
            else:
                if cap is None or len(workers) < cap:
                    workers.append(loop.create_task(self._open_worker(job, idle, len(workers))))
                else:
                    self.backlog.append(job)
        # Iterations still queued when the schedule ends never got a user: dropped.
        self.schedule_done = True
        self.dropped += len(self.backlog)
        self.backlog.clear()
        for waiter in idle:
            if not waiter.done():
                waiter.set_result(None)
        try:
            await asyncio.gather(*workers)
        except asyncio.CancelledError:
            for task in workers:
                task.cancel()
            raise

    async def _open_worker(self, job: Optional[tuple[int, float]], idle: list[asyncio.Future], worker: int = 0) -> None:
        rec = self.recorder
        loop = asyncio.get_running_loop()
        flows, order, cycle = self.flows, self.order, len(self.order)
        while job is not None:
            number, due = job
            rec.active += 1
            if rec.active > rec.peak:
                rec.peak = rec.active
            try:
                await self._iteration(flows[order[number % cycle]], due, self.open_end, False, vuser=worker)
            finally:
                rec.active -= 1
            if self.backlog:
                job = self.backlog.popleft()
            elif self.schedule_done or self.stopping:
                job = None
            else:
                waiter = loop.create_future()
                idle.append(waiter)
                job = await waiter

    # -- ticking, aborting -------------------------------------------------------------------

    def abort(self, reason: str) -> None:
        if not self.aborted:
            self.aborted, self.abort_reason = True, reason
        self.stopping = True
        self._stop.set()

    def _tick(self) -> None:
        now = time.perf_counter()
        self.recorder.advance(int(now + self.offset))
        for entry in self.recorder.flush():
            if self.watchdog is not None and not self.aborted:
                reason = self.watchdog.observe(entry.total.count, entry.total.error_count)
                if reason:
                    self.abort(reason)
        if self.abort_requested is not None and not self.aborted and (reason := self.abort_requested()):
            self.abort(reason)
        if self.on_progress is not None:
            try:
                self.on_progress(self.progress(now))
            except Exception as exc:  # a broken display must not stop the ticks (and the watchdog)
                print(f"assay-runner: progress callback failed: {exc!r}", file=sys.stderr)
                self.on_progress = None

    def progress(self, now: Optional[float] = None) -> Progress:
        now = time.perf_counter() if now is None else now
        recent = list(self.recorder.recent)[-PROGRESS_WINDOW_SECONDS:]
        window = Histogram()
        for _, stats in recent:
            window.add(stats.histogram)
        total = self.recorder.total
        return Progress(
            shard=self.shard,
            elapsed_s=now - self.t0,
            second=int(now + self.offset),
            active_users=self.recorder.active,
            requests=total.count,
            errors=total.error_count,
            window_s=len(recent),
            window_requests=sum(s.count for _, s in recent),
            window_errors=sum(s.error_count for _, s in recent),
            window_histogram=window,
        )

    async def _ticker(self) -> None:
        while True:
            now = time.perf_counter() + self.offset
            await asyncio.sleep(math.floor(now) + 1 - now + 0.002)
            self._tick()

    # -- the whole ---------------------------------------------------------------------------

    async def run(self) -> ShardMetrics:
        self.offset = time.time() - time.perf_counter()
        self.t0 = time.perf_counter()
        self.open_end = math.inf
        self.recorder = Recorder(self.names, self.t0 + self.offset)
        ticker = asyncio.create_task(self._ticker())
        body = asyncio.create_task(self._open() if self.spec.load.model == "open" else self._closed())
        stopped = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait({body, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not body.done():
                # Aborted: requests in flight get a moment to finish, then are cancelled.
                done, _ = await asyncio.wait({body}, timeout=ABORT_GRACE_SECONDS)
                if not done:
                    body.cancel()
                    await asyncio.gather(body, return_exceptions=True)
            if not body.cancelled() and body.exception() is not None:
                raise body.exception()
        finally:
            for task in (ticker, stopped, body):
                task.cancel()
            await asyncio.gather(ticker, stopped, body, return_exceptions=True)
        finished = time.perf_counter()
        self.recorder.finish(finished + self.offset)
        metrics = self.recorder.metrics(
            run_id=self.run_id,
            shard=self.shard,
            shards=self.shards,
            finished_at=finished + self.offset,
            aborted=self.aborted,
            abort_reason=self.abort_reason,
            dropped_iterations=self.dropped,
            error_samples=self.error_samples,
        )
        metrics.timers = self.timers
        metrics.criteria = criteria_module.evaluate(self.spec.parsed_criteria(), metrics)
        if self.on_progress is not None:
            self.on_progress(self.progress(finished))
        return metrics


async def run_load_shard(
    spec: LoadTestSpec,
    shard: int,
    shards: int,
    *,
    run_id: str = "",
    on_progress: Optional[Callable[[Progress], None]] = None,
    verify_tls: bool = True,
    ssl_context: Optional[ssl.SSLContext] = None,
    connect_timeout: float = 10.0,
    abort_requested: Optional[Callable[[], Optional[str]]] = None,
) -> ShardMetrics:
    """Run shard `shard` (0-based) of `shards` of the load test and return what it measured.
    `abort_requested()`, asked once a second, returns why to abort (someone asked: the
    LoadTest's `spec.abort`), or None."""
    client = HttpClient(
        connect_timeout=connect_timeout, verify_tls=verify_tls, ssl_context=ssl_context, policy=EgressPolicy.for_runs()
    )
    try:
        return await _ShardRun(spec, shard, shards, run_id, on_progress, client, abort_requested).run()
    finally:
        await client.close()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop where it is installed, asyncio's otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run(coro):
    """Run a coroutine to completion on a fresh (uvloop) event loop."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(coro)
