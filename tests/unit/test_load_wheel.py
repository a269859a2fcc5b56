"""The load engine's timer wheel: never early, at most one slot late, one loop timer per slot."""

import asyncio

from assay.runner.load.engine import new_event_loop
from assay.runner.load.wheel import Sleepers, TimerWheel


def run(coro):
    loop = new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def test_items_fire_at_the_end_of_their_slot_never_early_and_discarded_ones_never():
    async def main():
        loop = asyncio.get_running_loop()
        fired: dict[str, float] = {}
        wheel = TimerWheel(lambda item: fired.setdefault(item, loop.time()))
        start = loop.time()
        slots = {name: wheel.add(loop, name, delay) for name, delay in (("a", 0.05), ("b", 0.05), ("c", 0.12))}
        wheel.discard("b", slots["b"])
        assert slots["a"] == slots["b"], "the same deadline shares one slot"
        await asyncio.sleep(0.3)
        return start, fired

    start, fired = run(main())
    assert sorted(fired) == ["a", "c"]
    assert 0.05 <= fired["a"] - start < 0.05 + 0.01 + 0.02  # one slot late at most, plus the loop's own jitter
    assert 0.12 <= fired["c"] - start < 0.12 + 0.01 + 0.02


def test_many_items_in_one_slot_cost_one_timer():
    async def main():
        loop = asyncio.get_running_loop()
        fired = []
        wheel = TimerWheel(fired.append)
        slots = {wheel.add(loop, i, 0.05, step_ms=100) for i in range(1000)}
        pending = len(wheel._slots)
        await asyncio.sleep(0.2)
        return fired, slots, pending

    fired, slots, pending = run(main())
    assert len(slots) == 1 and pending == 1  # one slot, so one loop timer
    assert sorted(fired) == list(range(1000))


def test_a_pause_lasts_at_least_its_time_and_at_most_a_slot_more():
    async def main():
        loop = asyncio.get_running_loop()
        sleepers = Sleepers()
        out = []
        # Many short pauses: a deadline truncated to whole milliseconds fires early for most
        # start times, in floats.
        for seconds in (0.003,) * 100 + (0.05, 0.2):
            start = loop.time()
            await sleepers.pause(seconds)
            out.append((seconds, loop.time() - start))
        return out

    for seconds, took in run(main()):
        # The loop's clock counts whole milliseconds in floats: "not early" to a microsecond.
        assert seconds - 1e-6 <= took < seconds + 0.001 + 0.02, (seconds, took)
