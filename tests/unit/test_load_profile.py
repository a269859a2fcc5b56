"""Load schedules: the pure math, then the engine following them against a real target.

The accuracy runs compare what the target saw with the schedule: open-model arrivals exactly in
total, each at its scheduled time (never early, late by no more than a busy 2-core CI machine's
scheduling lag), and closed-model active users during ramps. These bounds are on time, not on
per-second counts, so a late burst on a loaded machine cannot fail them while a wrong shape
(a flat rate where a ramp belongs, a missing stage) still does. How close to the schedule the
engine runs on a quiet machine is measured by hack/bench/schedule_accuracy.py. The 20-second
runs are marked slow; the short ones run every time.
"""

from __future__ import annotations

import math

import pytest

from assay.crds.loadtest import LoadProfile, LoadTestSpec
from assay.runner.load import run, run_load_shard
from assay.runner.load.profile import ClosedSchedule, OpenSchedule
from tests.unit.test_load_servers import LoadTarget


def profile(**fields) -> LoadProfile:
    return LoadProfile.model_validate(fields)


# --- pure schedules ---------------------------------------------------------------------------


def test_open_arrivals_follow_the_integral_of_the_rate():
    schedule = OpenSchedule.from_profile(
        profile(model="open", arrivalRate=100, rampUp="2s", duration="3s", rampDown="1s")
    )
    times = [t for _, t in schedule.arrivals()]
    assert len(times) == schedule.total() == 100 + 300 + 50
    assert times == sorted(times) and times[0] == 0.0 and times[-1] < 6.0
    for second in range(6):
        got = sum(1 for t in times if second <= t < second + 1)
        assert abs(got - schedule.expected_between(second, second + 1)) <= 1
    # During the ramp-up the rate grows linearly: 25 in the first second, 75 in the second.
    assert sum(1 for t in times if t < 1) == 25


def test_open_stages_ramp_between_rates():
    schedule = OpenSchedule.from_profile(
        profile(
            model="open",
            arrivalRate=10,
            duration="1s",
            stages=[{"duration": "2s", "target": 30}, {"duration": "1s", "target": 30}],
        )
    )
    assert schedule.total() == 10 + 40 + 30
    assert [schedule.curve.level(t) for t in (0.5, 1.0, 2.0, 3.5)] == [10, 10, 20, 30]


@pytest.mark.parametrize("shards", [1, 2, 3, 7])
def test_open_shards_take_every_nth_iteration_and_together_make_the_whole(shards):
    schedule = OpenSchedule.from_profile(profile(model="open", arrivalRate=33.3, rampUp="1s", duration="2s"))
    whole = list(schedule.arrivals())
    parts = sorted(a for s in range(shards) for a in schedule.arrivals(s, shards))
    assert parts == whole
    assert max(schedule.max_users_of(s, shards) or 0 for s in range(shards)) == 0
    capped = OpenSchedule.from_profile(profile(model="open", arrivalRate=5, duration="1s", maxUsers=10))
    assert sum(capped.max_users_of(s, shards) for s in range(shards)) == max(10, shards)


def test_closed_users_ramp_up_hold_and_ramp_down_in_order():
    schedule = ClosedSchedule.from_profile(profile(users=10, rampUp="10s", duration="5s", rampDown="5s"))
    assert schedule.users == 10 and schedule.end == 20
    assert schedule.windows(0) == [(0.0, 20.0)]
    assert schedule.windows(9) == [(9.0, 15.5)]
    # Ramp-down: at 17.75 s the level is 10 * (1 - 2.75/5) = 4.5, so users 0..4 still run.
    assert [schedule.expected_active(t) for t in (0.5, 4.5, 12.0, 17.75)] == [1, 5, 10, 5]


def test_closed_iterations_without_duration_hold_until_done():
    schedule = ClosedSchedule.from_profile(profile(users=4, iterations=3, rampUp="2s"))
    assert schedule.windows(2) == [(1.0, math.inf)] and schedule.iterations == 3
    assert list(schedule.users_of(1, 3)) == [1]


def test_closed_stages_add_and_remove_users():
    schedule = ClosedSchedule.from_profile(
        profile(users=2, duration="1s", stages=[{"duration": "2s", "target": 6}, {"duration": "2s", "target": 0}])
    )
    assert schedule.users == 6
    # Up from 2 to 6 over 1..3 s, down to 0 over 3..5 s: user 5 runs while the level is above 5.
    assert schedule.windows(5) == [(pytest.approx(2.5), pytest.approx(3 + 1 / 3))]
    assert [schedule.expected_active(t) for t in (0.5, 1.9, 3.0, 4.9)] == [2, 4, 6, 1]


# --- the engine follows them ------------------------------------------------------------------


def _spec(url: str, load: dict, think: str = "0s") -> LoadTestSpec:
    return LoadTestSpec.model_validate(
        {
            "baseUrl": url,
            "load": load,
            "requestTimeout": "5s",
            "flows": [{"name": "f", "thinkTime": think, "requests": [{"url": "/"}]}],
        }
    )


# How late an arrival may reach the target on a loaded CI machine, and how early (the two clocks
# are the same, but the engine's zero is taken just before the first send).
TYPICAL_LAG_S = 0.25
WORST_LAG_S = 1.0
EARLY_S = 0.02


def arrival_lags(load: dict) -> list[float]:
    """Run the profile; each request's arrival at the target minus its scheduled time, in order."""
    with LoadTarget() as target:
        spec = _spec(target.url, load)
        metrics = run(run_load_shard(spec, 0, 1))
    schedule = OpenSchedule.from_profile(spec.load)
    assert target.total == metrics.total.count == schedule.total()  # exact in total
    arrived = sorted(t - metrics.started_at for t in target.arrivals)
    return [got - planned for got, (_, planned) in zip(arrived, schedule.arrivals())]


def check_open_accuracy(load: dict) -> None:
    lags = sorted(arrival_lags(load))
    assert lags[0] >= -EARLY_S, f"an arrival came {-lags[0]:.3f} s before its scheduled time"
    p95 = lags[int(0.95 * (len(lags) - 1))]
    assert p95 <= TYPICAL_LAG_S, f"95th-percentile lag {p95:.3f} s"
    assert lags[-1] <= WORST_LAG_S, f"an arrival came {lags[-1]:.3f} s late"


def test_the_lag_check_fails_a_flat_rate_where_a_ramp_belongs():
    """A 1 s ramp to 200/s scheduled as a flat 100/s would have arrival 50 at 0.25 s, not 0.5 s."""
    ramp = OpenSchedule.from_profile(profile(model="open", arrivalRate=200, rampUp="1s", duration="1s"))
    flat = OpenSchedule.from_profile(profile(model="open", arrivalRate=100, duration="1s"))
    leads = [f - r for (_, f), (_, r) in zip(flat.arrivals(), ramp.arrivals())]
    assert min(leads) < -EARLY_S - 0.2


def check_closed_ramp(load: dict, think: str) -> None:
    with LoadTarget() as target:
        spec = _spec(target.url, load, think)
        metrics = run(run_load_shard(spec, 0, 1))
    schedule = ClosedSchedule.from_profile(spec.load)
    assert target.total == metrics.total.count

    def peak(start: float, end: float) -> int:
        samples = [start + i * (end - start) / 20 for i in range(21)]
        return max((schedule.expected_active(t) for t in samples if 0 <= t < schedule.end), default=0)

    for entry in metrics.timeline:
        start = entry.second - metrics.started_at
        # A user starts or stops up to TYPICAL_LAG_S late: the second's peak lies between the
        # schedule's peak over the second less that lag and over the second plus that lag.
        low, high = peak(start, start + 1 - TYPICAL_LAG_S), peak(start - TYPICAL_LAG_S, start + 1)
        assert low - 1 <= entry.active_users <= high + 1, (
            entry.second - int(metrics.started_at),
            entry.active_users,
            low,
            high,
        )


def test_open_model_arrivals_follow_a_short_ramp():
    check_open_accuracy({"model": "open", "arrivalRate": 200, "rampUp": "1s", "duration": "2s", "rampDown": "1s"})


def test_closed_model_active_users_follow_a_short_ramp():
    check_closed_ramp({"users": 12, "rampUp": "2s", "duration": "1s", "rampDown": "1s"}, think="50ms")


@pytest.mark.slow
def test_open_model_arrivals_follow_a_twenty_second_profile():
    check_open_accuracy(
        {
            "model": "open",
            "arrivalRate": 300,
            "rampUp": "5s",
            "duration": "10s",
            "stages": [{"duration": "3s", "target": 100}],
            "rampDown": "2s",
        }
    )


@pytest.mark.slow
def test_closed_model_active_users_follow_a_twenty_second_ramp():
    check_closed_ramp({"users": 50, "rampUp": "10s", "duration": "5s", "rampDown": "5s"}, think="100ms")
