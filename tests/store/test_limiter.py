"""The provider limiter: buckets, call slots, pauses, shared by every process of a namespace.

On fakeredis and on the real Redis. The clock is a stepping one: a timed wait moves it by
exactly what the script asked for, so the waits are read off it, not timed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from chatroom_async.settings import ProviderLimits
from chatroom_async.store.keys import Keys
from chatroom_async.store.limiter import ProviderLimiter


class StepClock:
    """now() is a number; sleep(s) adds s to it (and lets other tasks run)."""

    def __init__(self) -> None:
        self.t = 1_000.0
        self.slept: list[float] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds
        await asyncio.sleep(0)


Make = Callable[..., ProviderLimiter]


@pytest.fixture
async def make(redis: Redis, namespace: str) -> AsyncIterator[Make]:
    made: list[ProviderLimiter] = []

    def build(clock: StepClock, **limits: float | int) -> ProviderLimiter:
        limiter = ProviderLimiter(redis, Keys(namespace), ProviderLimits(**limits), clock)
        made.append(limiter)
        return limiter

    yield build
    for limiter in made:
        await limiter.close()
    keys = [k async for k in redis.scan_iter(match=f"{namespace}:*")]
    if keys:
        await redis.delete(*keys)


async def test_requests_per_minute(make: Make) -> None:
    clock = StepClock()
    limiter = make(clock, rpm=60)
    for i in range(60):  # a full bucket: one minute's worth at once
        await limiter.acquire(f"c{i}", 10)
    assert clock.slept == []
    await limiter.acquire("late", 10)  # refills one request per second
    assert sum(clock.slept) == pytest.approx(1.0, abs=0.002)  # and a millisecond of margin


async def test_tokens_per_minute_are_charged_up_front(make: Make) -> None:
    clock = StepClock()
    limiter = make(clock, tpm=1000)
    await limiter.acquire("a", 500)
    await limiter.acquire("b", 500)
    await limiter.acquire("c", 250)  # 250 tokens refill in 15 s
    assert sum(clock.slept) == pytest.approx(15.0, abs=0.002)
    await limiter.acquire("huge", 5000)  # more than the bucket: waits for a full one
    assert sum(clock.slept) == pytest.approx(75.0, abs=0.004)


async def test_a_release_in_another_process_frees_a_call_slot(make: Make) -> None:
    clock = StepClock()
    here, there = make(clock, max_concurrency=2), make(clock, max_concurrency=2)
    await there.acquire("a", 1)
    await there.acquire("b", 1)
    third = asyncio.create_task(here.acquire("c", 1))
    await asyncio.sleep(0.05)
    assert not third.done()  # both slots are taken
    await there.release("a")  # wakes the waiter through Redis, not through time
    await asyncio.wait_for(third, 5)
    assert clock.slept == []


async def test_a_dead_workers_call_slot_frees_after_its_lease(make: Make) -> None:
    clock = StepClock()
    limiter = make(clock, max_concurrency=1, call_lease_s=30)
    await limiter.acquire("never-released", 1)
    clock.t += 31  # its worker died: no release comes
    await asyncio.wait_for(limiter.acquire("next", 1), 5)


async def test_a_pause_stops_every_worker(make: Make) -> None:
    clock = StepClock()
    one, other = make(clock, rpm=1000), make(clock, rpm=1000)
    await one.pause(5.0)
    await one.pause(2.0)  # a shorter pause does not cut a longer one short
    await other.acquire("x", 1)
    assert sum(clock.slept) == pytest.approx(5.0, rel=1e-6)
    assert other.waits == 1


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        ProviderLimits(rpm=0)
    with pytest.raises(ValueError):
        ProviderLimits(max_concurrency=0)
    assert not ProviderLimits().any and ProviderLimits(tpm=10).any


async def test_turns_go_in_the_order_they_were_asked_for(make: Make) -> None:
    clock = StepClock()
    limiter = make(clock, rpm=60)
    for i in range(60):
        await limiter.acquire(f"c{i}", 1)
    clock.sleep = _record_only(clock)  # type: ignore[method-assign]
    for name in ("first", "second", "third"):  # all asked at the same moment
        await limiter.acquire(name, 1)
    assert clock.slept == pytest.approx([1.001, 2.001, 3.001], abs=1e-6)


def _record_only(clock: StepClock):  # type: ignore[no-untyped-def]
    async def sleep(seconds: float) -> None:
        clock.slept.append(seconds)
    return sleep
