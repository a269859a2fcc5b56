"""Load schedules as pure functions of time: who runs when, and when each iteration starts.

A profile is a piecewise-linear *level* over time, in virtual users (closed model) or
iterations started per second (open model):

    ramp_up     0 -> base level              (base: `users`, or `arrival_rate`, or 0)
    duration    hold the base level
    stages      each moves linearly from the level before to its `target` over its `duration`
    ramp_down   the last level -> 0

Closed model: `users` virtual users (or the highest stage target) are numbered 0..N-1, and
user k runs while the level is above k: with a linear ramp-up over R seconds user k starts
at k*R/N, so the number running follows the ramp; ramp-down stops the highest numbers first.
With `iterations` each user stops after that many iterations; without `duration` the level
holds until they are all done.

Open model: iteration j (0, 1, 2, ...) is due when the integral of the rate reaches j, so
the starts follow the rate curve exactly, ramps included, and the run has ceil(integral)
iterations. The schedule does not wait for the target: an iteration starts when it is due
whatever the earlier ones are doing (up to `max_users` at once, beyond which it queues).
Each request's latency is measured from its INTENDED start time - for the first request of
an iteration, the moment the schedule said it was due, not the moment it actually went out -
so a slow target that delays the sending (a busy event loop, all `max_users` taken, a
full connection pool) shows up in the latencies instead of quietly lowering the rate; this
is how coordinated omission is kept from hiding a slow target. The later requests of the
iteration are due when the one before them has answered (plus think time), so they are
measured from then.

Sharding: the users, and the iterations of the open model, are dealt out round-robin -
shard s of S takes every number k with k % S == s - so the shards' shares add up to the
whole at every instant (rates are divided, counts never rounded twice), and a run of S
shards is the same run as one shard, split.

Think time (`think_sampler`): a flow's pause is a constant or a draw from its distribution
(uniform, normal, exponential), bounded by its min and max and never below zero.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Optional

from assay.crds.common import parse_duration
from assay.crds.loadtest import Flow, LoadProfile

INFINITY = math.inf
_EPSILON = 1e-9  # float noise in areas must not add or drop an iteration


def share(total: int, parts: int, index: int) -> int:
    """How many of `total` numbers part `index` of `parts` gets when dealt round-robin;
    the shares add up to `total` and differ by at most one."""
    return total // parts + (1 if index < total % parts else 0)


def weighted_order(weights: list[int]) -> list[int]:
    """One cycle of smooth weighted round-robin: indexes in proportion to their weights,
    spread out rather than bunched, so short runs still mix flows as the weights say."""
    current = [0] * len(weights)
    total = sum(weights)
    order = []
    for _ in range(total):
        for i, w in enumerate(weights):
            current[i] += w
        best = max(range(len(weights)), key=lambda i: current[i])
        current[best] -= total
        order.append(best)
    return order


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    level_from: float
    level_to: float

    def level(self, t: float) -> float:
        if self.end <= self.start:
            return self.level_to
        return self.level_from + (self.level_to - self.level_from) * (t - self.start) / (self.end - self.start)

    def area(self) -> float:
        return (self.level_from + self.level_to) / 2 * (self.end - self.start)


class Curve:
    """A piecewise-linear level over [0, end]; `end` may be infinite (hold forever)."""

    def __init__(self, segments: list[Segment]):
        self.segments = [s for s in segments if s.end > s.start]
        self.end = self.segments[-1].end if self.segments else 0.0

    def level(self, t: float) -> float:
        for seg in self.segments:
            if seg.start <= t < seg.end:
                return seg.level(t)
        return 0.0

    def peak(self) -> float:
        return max((max(s.level_from, s.level_to) for s in self.segments), default=0.0)

    def above(self, k: float) -> list[tuple[float, float]]:
        """The time intervals in which the level is above `k`."""
        out: list[tuple[float, float]] = []
        for seg in self.segments:
            a, b = seg.level_from, seg.level_to
            if a > k and b > k:
                start, stop = seg.start, seg.end
            elif a <= k and b <= k:
                continue
            else:
                crossing = seg.start + (k - a) / (b - a) * (seg.end - seg.start)
                start, stop = (crossing, seg.end) if b > k else (seg.start, crossing)
            if out and abs(out[-1][1] - start) < 1e-9:
                out[-1] = (out[-1][0], stop)
            else:
                out.append((start, stop))
        return out

    def integral(self, t: float) -> float:
        """The area under the level from 0 to t (expected arrivals, for a rate)."""
        total = 0.0
        for seg in self.segments:
            if t <= seg.start:
                break
            if t >= seg.end:
                total += seg.area()
            else:
                total += (seg.level_from + seg.level(t)) / 2 * (t - seg.start)
                break
        return total

    def times_of(self, first: int, step: int) -> Iterator[tuple[int, float]]:
        """(j, t) for j = first, first+step, ...: the moment the integral reaches j, for every
        j below the total area."""
        j = first
        done = 0.0  # area before the current segment
        for seg in self.segments:
            area = seg.area()
            if math.isinf(area):
                raise ValueError("an open-model schedule needs a finite duration")
            r0 = seg.level_from
            span = seg.end - seg.start
            slope = (seg.level_to - r0) / span  # rate change per second
            while j < done + area - _EPSILON:
                need = j - done
                if need <= 0:
                    tau = 0.0
                elif abs(slope) < 1e-12:
                    tau = need / r0
                else:
                    # r0*tau + slope*tau^2/2 = need, in the form that is stable for any sign
                    tau = 2 * need / (r0 + math.sqrt(max(r0 * r0 + 2 * slope * need, 0.0)))
                yield j, seg.start + min(tau, span)
                j += step
            done += area


def _segments(profile: LoadProfile, base: float) -> list[Segment]:
    t = 0.0
    level = 0.0
    segments = []

    def to(target: float, seconds: float) -> None:
        nonlocal t, level
        segments.append(Segment(t, t + seconds, level, target))
        t += seconds
        level = target

    ramp_up = parse_duration(profile.ramp_up)
    if ramp_up:
        to(base, ramp_up)
    level = base
    if profile.duration is not None:
        to(base, parse_duration(profile.duration))
    for stage in profile.stages:
        to(stage.target, parse_duration(stage.duration))
    ramp_down = parse_duration(profile.ramp_down)
    if ramp_down:
        to(0.0, ramp_down)
    return segments


@dataclass
class ClosedSchedule:
    """Virtual users and when each runs."""

    curve: Curve
    users: int
    """How many users exist over the whole run (the highest level)."""
    iterations: Optional[int]

    @classmethod
    def from_profile(cls, profile: LoadProfile) -> ClosedSchedule:
        segments = _segments(profile, float(profile.users))
        if profile.duration is None and not profile.stages:
            # Iterations only: hold after the ramp-up until every user is done.
            start = segments[-1].end if segments else 0.0
            segments.append(Segment(start, INFINITY, float(profile.users), float(profile.users)))
        curve = Curve(segments)
        return cls(curve, max(int(math.ceil(curve.peak() - 1e-9)), 0), profile.iterations)

    def windows(self, user: int) -> list[tuple[float, float]]:
        """When user `user` (0-based, global) runs: start and stop offsets in seconds."""
        return self.curve.above(user)

    def users_of(self, shard: int, shards: int) -> range:
        return range(shard, self.users, shards)

    def expected_active(self, t: float) -> int:
        """Users the schedule has running at `t` (all shards)."""
        return sum(1 for k in range(self.users) if any(a <= t < b for a, b in self.windows(k)))

    @property
    def end(self) -> float:
        return self.curve.end


@dataclass
class OpenSchedule:
    """Iteration start times at a rate that follows the curve."""

    curve: Curve
    max_users: Optional[int]

    @classmethod
    def from_profile(cls, profile: LoadProfile) -> OpenSchedule:
        return cls(Curve(_segments(profile, float(profile.arrival_rate or 0.0))), profile.max_users)

    def arrivals(self, shard: int = 0, shards: int = 1) -> Iterator[tuple[int, float]]:
        """(iteration number, due time in seconds from the start) for this shard's share."""
        return self.curve.times_of(shard, shards)

    def total(self) -> int:
        """Iterations of the whole run, all shards."""
        return int(math.ceil(self.curve.integral(self.curve.end) - _EPSILON))

    def expected_between(self, t0: float, t1: float) -> float:
        return self.curve.integral(t1) - self.curve.integral(t0)

    def max_users_of(self, shard: int, shards: int) -> Optional[int]:
        if self.max_users is None:
            return None
        return max(share(self.max_users, shards, shard), 1)

    @property
    def end(self) -> float:
        return self.curve.end


def think_sampler(flow: Flow) -> float | Callable[[], float]:
    """The flow's think time in seconds: a number when it is constant, else a function that
    draws one pause."""
    think = flow.think
    if think is None:
        return parse_duration(flow.think_time)
    seconds = {name: parse_duration(v) for name in ("mean", "std_dev", "min", "max") if (v := getattr(think, name))}
    low, high = seconds.get("min", 0.0), seconds.get("max", INFINITY)
    mean = seconds.get("mean", 0.0)
    if think.distribution == "constant":
        return min(max(mean, low), high)
    if think.distribution == "uniform":
        return lambda: random.uniform(low, high)
    if think.distribution == "normal":
        deviation = seconds.get("std_dev", 0.0)
        return lambda: min(max(random.gauss(mean, deviation), low), high)
    if mean <= 0:
        return low
    rate = 1.0 / mean
    return lambda: min(max(random.expovariate(rate), low), high)
