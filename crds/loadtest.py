"""LoadTest: one execution of an HTTP load scenario (XTC load tests, Loadmill load tests)."""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Callable, Literal, Optional

from pydantic import Field, StringConstraints

from .common import (
    MAX_REQUESTS,
    AssayModel,
    Conditions,
    Duration,
    HttpRequest,
    ParameterPool,
    Resource,
    Rule,
    StatusModel,
    Url,
    parse_duration,
)
from .runs import RunState
from .schema import CrdKind, PrinterColumn

MAX_SHARDS = 64
MAX_FLOWS = 50
MAX_STAGES = 50
MAX_POOLS = 20
MAX_CRITERIA = 20

MAX_REDIRECTS = 50


class LoadRequest(HttpRequest):
    """A request of a load-test flow: every other Assay HTTP request's shape, plus how it
    follows redirects."""

    max_redirects: Optional[int] = Field(default=None, ge=0, le=MAX_REDIRECTS)
    """Redirects this request follows; overrides the test's `maxRedirects`, 0 turns following off."""


class CookieSettings(AssayModel):
    """Each virtual user keeps its own cookie jar, as a browser would (RFC 6265)."""

    enabled: bool = True
    """Store the cookies responses set and send them back on the user's later requests."""
    clear_each_iteration: bool = False
    """Start every iteration with an empty jar (a new visitor each time) instead of keeping
    the user's cookies for the whole run."""


class TimerSettings(AssayModel):
    """Timer records of single requests and iterations, kept for the result archive's XLT
    layout (`xlt/<shard>/<flow>/<user>/timers.csv`, which Xceptance XLT's report generator reads)."""

    enabled: bool = False
    """Keep a record per request and per iteration. Off, the metrics are histograms only."""
    max_records: int = Field(default=100_000, ge=1, le=1_000_000)
    """Records a shard keeps at most; beyond that they are a uniform sample of this size, so
    counts taken from them fall short while their percentiles stay within sampling error."""


def _seconds(text: Optional[str]) -> float:
    return parse_duration(text) if text else 0.0


class ThinkTime(AssayModel):
    """A think time drawn anew for every pause.

    constant: always `mean`; uniform: between `min` and `max`; normal: around `mean` with
    `stdDev`; exponential: averaging `mean` (many short pauses, a few long ones). `min` and
    `max` also bound the normal and exponential draws; a draw is never below zero."""

    distribution: Literal["constant", "uniform", "normal", "exponential"] = "constant"
    mean: Optional[Duration] = None
    """The pause of constant, the average of normal and exponential."""
    std_dev: Optional[Duration] = None
    """normal: the standard deviation."""
    min: Optional[Duration] = None
    """The shortest pause drawn (uniform: required)."""
    max: Optional[Duration] = None
    """The longest pause drawn (uniform: required)."""

    validation_rules = (
        Rule(
            cel="self.distribution == 'uniform' || has(self.mean)",
            check=lambda t: t.distribution == "uniform" or t.mean is not None,
            message="constant, normal and exponential think times need mean",
            field_path=".mean",
            reason="FieldValueRequired",
        ),
        Rule(
            cel="self.distribution != 'uniform' || (has(self.min) && has(self.max))",
            check=lambda t: t.distribution != "uniform" or (t.min is not None and t.max is not None),
            message="a uniform think time needs min and max",
            field_path=".max",
            reason="FieldValueRequired",
        ),
        Rule(
            cel="self.distribution != 'normal' || has(self.stdDev)",
            check=lambda t: t.distribution != "normal" or t.std_dev is not None,
            message="a normal think time needs stdDev",
            field_path=".stdDev",
            reason="FieldValueRequired",
        ),
        Rule(
            cel="!has(self.min) || !has(self.max) || duration(self.min) <= duration(self.max)",
            check=lambda t: t.min is None or t.max is None or _seconds(t.min) <= _seconds(t.max),
            message="min must not be greater than max",
            field_path=".max",
        ),
    )


class Stage(AssayModel):
    """One ramp: move linearly to `target` (virtual users, or iterations per second in the
    open model) over `duration`."""

    duration: Duration
    target: float = Field(ge=0)


class LoadProfile(AssayModel):
    """How much load: a closed model keeps `users` virtual users busy; an open model starts
    flow iterations at `arrivalRate` per second whatever the response times."""

    model: Literal["closed", "open"] = "closed"
    """closed: a fixed number of virtual users, each starting its next iteration when the last
    ends; open: iterations start at a fixed rate, however slowly the target answers."""
    users: int = Field(default=1, ge=1)
    """Virtual users of the closed model, split across shards."""
    iterations: Optional[int] = Field(default=None, ge=1)
    """Flow iterations per virtual user; the run ends when all are done (or `duration` passes)."""
    duration: Optional[Duration] = None
    """How long the load is held, after ramp-up."""
    ramp_up: Duration = "0s"
    """Time to go from zero to full load."""
    ramp_down: Duration = "0s"
    """Time to go from full load to zero at the end."""
    arrival_rate: Optional[float] = Field(default=None, gt=0)
    """Open model: flow iterations started per second, across all shards."""
    max_users: Optional[int] = Field(default=None, ge=1)
    """Open model: cap on concurrently running iterations."""
    stages: Annotated[list[Stage], Field(max_length=MAX_STAGES)] = []
    """Ramps of users (closed) or rate (open) instead of a constant level."""

    validation_rules = (
        Rule(
            cel="self.model != 'closed' || has(self.iterations) || has(self.duration)",
            check=lambda p: p.model != "closed" or p.iterations is not None or p.duration is not None,
            message="the closed model needs iterations or duration",
            field_path=".iterations",
            reason="FieldValueRequired",
        ),
        Rule(
            cel="self.model != 'open' || has(self.arrivalRate) || (has(self.stages) && size(self.stages) > 0)",
            check=lambda p: p.model != "open" or p.arrival_rate is not None or bool(p.stages),
            message="the open model needs arrivalRate (or stages)",
            field_path=".arrivalRate",
            reason="FieldValueRequired",
        ),
        Rule(
            cel="self.model != 'open' || has(self.duration)",
            check=lambda p: p.model != "open" or p.duration is not None,
            message="the open model needs duration",
            field_path=".duration",
            reason="FieldValueRequired",
        ),
    )


class Flow(AssayModel):
    """An ordered list of requests that a virtual user runs as one iteration."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    weight: int = Field(default=1, ge=1)
    """Relative share of iterations that run this flow."""
    think_time: Duration = "0s"
    """Pause between consecutive requests of the flow; the short form of a constant `think`."""
    think: Optional[ThinkTime] = None
    """A think time drawn from a distribution for every pause, e.g.
    `{distribution: uniform, min: 1s, max: 3s}`; instead of `thinkTime`."""
    pacing: Optional[Duration] = None
    """Closed model: an iteration of this flow takes at least this long; a user whose
    iteration ends sooner waits out the rest before starting the next."""
    requests: Annotated[list[LoadRequest], Field(min_length=1, max_length=MAX_REQUESTS)]

    validation_rules = (
        Rule(
            cel="!has(self.think) || !has(self.thinkTime) || self.thinkTime == '0s'",
            check=lambda f: f.think is None or _seconds(f.think_time) == 0,
            message="set thinkTime or think, not both",
            field_path=".think",
        ),
    )


class LoadParameterPool(ParameterPool):
    """A parameter pool, for every flow or only the named one."""

    flow: Optional[Annotated[str, StringConstraints(max_length=128)]] = None
    """Only this flow draws from the pool; all flows do when unset."""
    mode: Optional[Literal["per_iteration", "per_user", "unique"]] = None
    """per_iteration (when unset): every iteration takes the next row, starting over after the last;
    per_user: a virtual user keeps one row for the whole run (user k has row k, wrapping;
    in the open model every iteration is a new user); unique: every row is used at most
    once in the whole run (row i belongs to shard i % shards), see `whenExhausted`."""
    when_exhausted: Optional[Literal["stop", "fail"]] = None
    """unique mode, when a shard has used all its rows: stop (when unset) lets the iterations
    under way finish, starts no more and ends the run normally; fail aborts the run (result
    Aborted, the message naming the pool)."""


# --- pass/fail criteria -----------------------------------------------------------------------

LATENCY_METRICS = ("p50", "p90", "p95", "p99", "max", "avg")
_NUMBER = r"[0-9]+(\.[0-9]+)?"
_OP = r"(<=|>=|<|>)"
CRITERION_PATTERN = (
    rf"^\s*(({'|'.join(LATENCY_METRICS)})\s*{_OP}\s*{_NUMBER}\s*(ms|s)"
    rf"|error_rate\s*{_OP}\s*{_NUMBER}\s*%?"
    rf"|rps\s*{_OP}\s*{_NUMBER})\s*$"
)
_CRITERION_PARTS = re.compile(r"^\s*(\w+)\s*(<=|>=|<|>)\s*([0-9.]+)\s*(ms|s|%)?\s*$")
_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}

Criterion = Annotated[str, Field(pattern=CRITERION_PATTERN, max_length=64)]


@dataclass(frozen=True)
class ParsedCriterion:
    """A criterion in comparable units: milliseconds for latencies, percent for error_rate,
    requests per second for rps."""

    metric: str
    operator: str
    threshold: float
    text: str

    def passes(self, observed: float) -> bool:
        return _OPERATORS[self.operator](observed, self.threshold)


def parse_criterion(text: str) -> ParsedCriterion:
    """`parse_criterion("avg <= 2s") == ParsedCriterion("avg", "<=", 2000.0, "avg <= 2s")`."""
    parts = _CRITERION_PARTS.fullmatch(text) if re.fullmatch(CRITERION_PATTERN, text) else None
    if parts is None:
        raise ValueError(f"invalid criterion {text!r}: expected e.g. 'p95 < 300ms', 'error_rate < 1%', 'rps >= 100'")
    metric, op, number, unit = parts.groups()
    threshold = float(number) * (1000.0 if unit == "s" else 1.0)
    return ParsedCriterion(metric, op, threshold, text)


# --- the resource -----------------------------------------------------------------------------


class LoadTestSpec(AssayModel):
    """What to run and how hard."""

    description: str = ""
    shards: int = Field(default=1, ge=1, le=MAX_SHARDS)
    """Runner pods sharing the load; the run is an Indexed Job with this many completions."""
    base_url: Optional[Url] = None
    """Prefix for request URLs that are relative."""
    load: LoadProfile = LoadProfile(iterations=1)
    """The load profile; by default one virtual user runs each flow once (a smoke run)."""
    flows: Annotated[list[Flow], Field(min_length=1, max_length=MAX_FLOWS)]
    parameter_pools: Annotated[list[LoadParameterPool], Field(max_length=MAX_POOLS)] = []
    criteria: Annotated[list[Criterion], Field(max_length=MAX_CRITERIA)] = []
    """Pass/fail criteria on the whole run, e.g. `p95 < 300ms`, `error_rate < 1%`, `rps >= 100`.
    Metrics: p50 p90 p95 p99 max avg (with ms or s), error_rate (percent), rps."""
    abort_on_error_rate: Optional[float] = Field(default=None, ge=0, le=100)
    """Abort the run when the error rate (percent) exceeds this."""
    abort: bool = False
    """Set to true on a running load test to stop it early: its shards start no new requests,
    report what they measured, and the run ends Aborted. Shards hear of it with their next
    progress report to the gateway (every 2 s), so it needs result uploads (the default)."""
    request_timeout: Duration = "30s"
    """Timeout of a request that sets none itself."""
    cookies: CookieSettings = CookieSettings()
    """The virtual users' cookie jars: on by default."""
    max_redirects: int = Field(default=10, ge=0, le=MAX_REDIRECTS)
    """Redirects (301, 302, 303, 307, 308) a request follows before its response counts as
    it is; 0 turns following off. The request's time and bytes cover the whole chain."""
    timers: TimerSettings = TimerSettings()
    """Per-request timer records for the XLT layout of the result archive: off by default."""

    validation_rules = (
        Rule(
            cel="self.flows.all(f, self.flows.exists_one(g, g.name == f.name))",
            check=lambda s: len({f.name for f in s.flows}) == len(s.flows),
            message="flow names must be unique",
            field_path=".flows",
        ),
        Rule(
            cel="!has(self.parameterPools)"
            " || self.parameterPools.all(p, !has(p.flow) || self.flows.exists(f, f.name == p.flow))",
            check=lambda s: all(p.flow is None or p.flow in {f.name for f in s.flows} for p in s.parameter_pools),
            message="a parameter pool's flow must name one of spec.flows",
            field_path=".parameterPools",
        ),
        Rule(
            cel="!has(self.load) || self.load.model != 'closed' || self.load.users >= self.shards",
            check=lambda s: s.load.model != "closed" or s.load.users >= s.shards,
            message="the closed model needs at least one virtual user per shard (load.users >= shards)",
            field_path=".shards",
        ),
    )

    def parsed_criteria(self) -> list[ParsedCriterion]:
        return [parse_criterion(c) for c in self.criteria]


class ShardCounts(StatusModel):
    total: int = 0
    active: int = 0
    succeeded: int = 0
    failed: int = 0


class LoadSummary(StatusModel):
    """Totals over all shards; the full report lives in the result store."""

    requests: int = 0
    failures: int = 0
    min_ms: float = 0.0
    avg_ms: float = 0.0
    max_ms: float = 0.0
    p95_ms: Optional[float] = None


class LoadProgress(StatusModel):
    """Live figures of a running LoadTest, from its shards' latest reports (every few
    seconds). Removed when the run finishes: the final figures are in `summary`."""

    requests: int = 0
    """Requests completed so far, all shards."""
    errors: int = 0
    """Failed requests so far, all shards."""
    rps: float = 0.0
    """Requests per second over the last few seconds, all running shards."""
    p95_ms: Optional[float] = None
    """95th percentile latency (ms) of the requests completed in the last ~5 seconds by the
    running shards: their latency histograms merged, not the run's p95 so far (that is
    `summary.p95Ms` once the run has finished). Unset while no request completed in that time."""
    active_users: int = 0
    """Virtual users (closed model) or iterations (open model) in flight, all running shards."""
    shards_reporting: int = 0
    """Shards whose progress arrived in the last seconds and that are still running."""
    updated_at: Optional[datetime] = None
    """When the newest report reached the gateway."""


class LoadTestStatus(RunState):
    """The run's state (`result` is its verdict against the criteria) and its figures."""

    job_name: Optional[str] = None
    shards: Optional[ShardCounts] = None
    summary: Optional[LoadSummary] = None
    progress: Optional[LoadProgress] = None
    """While the run is Running: its live figures, refreshed every few seconds."""
    failed_criteria: list[str] = []
    observed_generation: Optional[int] = None
    conditions: Conditions = []


class LoadTest(Resource):
    """LoadTest is one execution of an HTTP load scenario: virtual users or an arrival rate,
    ramps, flows of requests and parameter pools, spread over shards. It runs once; running it
    again means creating a copy."""

    kind: Literal["LoadTest"] = "LoadTest"
    spec: LoadTestSpec
    status: LoadTestStatus = LoadTestStatus()


CRD = CrdKind(
    resource=LoadTest,
    spec=LoadTestSpec,
    status=LoadTestStatus,
    plural="loadtests",
    singular="loadtest",
    short_names=("lt", "loadtest"),
    printer_columns=(
        PrinterColumn("Phase", "string", ".status.phase"),
        PrinterColumn("Result", "string", ".status.result"),
        PrinterColumn("Shards", "integer", ".spec.shards"),
        PrinterColumn("Requests", "integer", ".status.summary.requests"),
    ),
)
