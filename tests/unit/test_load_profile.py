"""Load schedules: the pure math, then the engine following them against a real target.

The accuracy runs compare what the target saw, second by second, with the schedule: open-
model arrivals per second (within 2%, and exactly in total) and closed-model active users
during ramps. The 20-second runs are marked slow; the short ones run every time.
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
    schedule = OpenSchedule.from_profile(profile(model="open", arrivalRate=100, rampUp="2s", duration="3s",
                                                 rampDown="1s"))
    times = [t for _, t in schedule.arrivals()]
    assert len(times) == schedule.total() == 100 + 300 + 50
    assert times == sorted(times) and times[0] == 0.0 and times[-1] < 6.0
    for second in range(6):
        got = sum(1 for t in times if second <= t < second + 1)
        assert abs(got - schedule.expected_between(second, second + 1)) <= 1
    # During the ramp-up the rate grows linearly: 25 in the first second, 75 in the second.
    assert sum(1 for t in times if t < 1) == 25


def test_open_stages_ramp_between_rates():
    schedule = OpenSchedule.from_profile(profile(model="open", arrivalRate=10, duration="1s",
                                                 stages=[{"duration": "2s", "target": 30},
                                                         {"duration": "1s", "target": 30}]))
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
    schedule = ClosedSchedule.from_profile(profile(users=2, duration="1s",
                                                   stages=[{"duration": "2s", "target": 6},
                                                           {"duration": "2s", "target": 0}]))
    assert schedule.users == 6
    # Up from 2 to 6 over 1..3 s, down to 0 over 3..5 s: user 5 runs while the level is above 5.
    assert schedule.windows(5) == [(pytest.approx(2.5), pytest.approx(3 + 1 / 3))]
    assert [schedule.expected_active(t) for t in (0.5, 1.9, 3.0, 4.9)] == [2, 4, 6, 1]


# --- the engine follows them ------------------------------------------------------------------


def _spec(url: str, load: dict, think: str = "0s") -> LoadTestSpec:
    return LoadTestSpec.model_validate({"baseUrl": url, "load": load, "requestTimeout": "5s",
                                        "flows": [{"name": "f", "thinkTime": think, "requests": [{"url": "/"}]}]})


def check_open_accuracy(load: dict) -> None:
    with LoadTarget() as target:
        spec = _spec(target.url, load)
        metrics = run(run_load_shard(spec, 0, 1))
    schedule = OpenSchedule.from_profile(spec.load)
    per_second = target.per_second(since=metrics.started_at)
    seconds = int(math.ceil(schedule.end))
    assert target.total == metrics.total.count == schedule.total()  # exact in total
    off = 0
    for second in range(seconds):
        expected = schedule.expected_between(second, second + 1)
        got = per_second.get(second, 0)
        off += abs(got - expected)
        assert abs(got - expected) <= max(0.02 * expected, 3), (second, got, expected)
    assert off / schedule.total() <= 0.02 + seconds / schedule.total()


def check_closed_ramp(load: dict, think: str) -> None:
    with LoadTarget() as target:
        spec = _spec(target.url, load, think)
        metrics = run(run_load_shard(spec, 0, 1))
    schedule = ClosedSchedule.from_profile(spec.load)
    assert target.total == metrics.total.count
    for entry in metrics.timeline:
        start = entry.second - metrics.started_at
        samples = [start + i / 20 for i in range(20)]
        expected = max(schedule.expected_active(t) for t in samples if 0 <= t < schedule.end) \
            if any(0 <= t < schedule.end for t in samples) else 0
        assert abs(entry.active_users - expected) <= 1, (entry.second - int(metrics.started_at), entry.active_users,
                                                         expected)


def test_open_model_arrivals_follow_a_short_ramp():
    check_open_accuracy({"model": "open", "arrivalRate": 200, "rampUp": "1s", "duration": "2s", "rampDown": "1s"})


def test_closed_model_active_users_follow_a_short_ramp():
    check_closed_ramp({"users": 12, "rampUp": "2s", "duration": "1s", "rampDown": "1s"}, think="50ms")


@pytest.mark.slow
def test_open_model_arrivals_follow_a_twenty_second_profile():
    check_open_accuracy({"model": "open", "arrivalRate": 300, "rampUp": "5s", "duration": "10s",
                         "stages": [{"duration": "3s", "target": 100}], "rampDown": "2s"})


@pytest.mark.slow
def test_closed_model_active_users_follow_a_twenty_second_ramp():
    check_closed_ramp({"users": 50, "rampUp": "10s", "duration": "5s", "rampDown": "5s"}, think="100ms")
