"""The virtual-time loop: waiting costs no real time, deadlocks are named, notebooks work."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from chatroom_async.errors import ProcessorError
from chatroom_async.simulation.vtime import (
    VirtualTimeDeadlock,
    VirtualTimeLoop,
    run_virtual,
    run_virtual_async,
)


async def _sleep_an_hour() -> tuple[float, float]:
    loop = asyncio.get_running_loop()
    before = loop.time()
    await asyncio.sleep(3600)
    return before, loop.time()


def test_an_hour_of_sleep_costs_no_real_time() -> None:
    started = time.perf_counter()
    before, after = run_virtual(_sleep_an_hour)
    assert time.perf_counter() - started < 1.0
    assert after - before == 3600.0


def test_start_sets_the_first_reading() -> None:
    before, after = run_virtual(_sleep_an_hour, start=1000.0)
    assert (before, after) == (1000.0, 4600.0)


def test_timers_fire_in_order_at_their_exact_deadlines() -> None:
    async def main() -> list[tuple[float, int]]:
        loop = asyncio.get_running_loop()
        woke: list[tuple[float, int]] = []

        async def nap(i: int) -> None:
            await asyncio.sleep(i * 0.25)
            woke.append((loop.time(), i))

        await asyncio.gather(*(nap(i) for i in (7, 3, 5, 1)))
        return woke

    assert run_virtual(main) == [(0.25, 1), (0.75, 3), (1.25, 5), (1.75, 7)]


def test_timeouts_expire_in_virtual_time() -> None:
    async def main() -> float:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(30):
                await asyncio.sleep(3600)
        return asyncio.get_running_loop().time()

    assert run_virtual(main) == 30.0


def test_a_deadlock_raises_a_clear_error() -> None:
    async def stuck() -> None:
        await asyncio.get_running_loop().create_future()  # nobody will ever resolve it

    with pytest.raises(VirtualTimeDeadlock, match="deadlock.*can never finish"):
        run_virtual(stuck)


def test_exceptions_propagate_and_the_loop_is_closed() -> None:
    loops: list[asyncio.AbstractEventLoop] = []

    async def boom() -> None:
        loops.append(asyncio.get_running_loop())
        await asyncio.sleep(1)
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        run_virtual(boom)
    assert isinstance(loops[0], VirtualTimeLoop) and loops[0].is_closed()


def test_work_in_a_thread_takes_no_virtual_time() -> None:
    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        timer = asyncio.ensure_future(asyncio.sleep(5))  # a timer must not be jumped to
        await asyncio.to_thread(time.sleep, 0.02)
        during = loop.time()
        await timer
        return during, loop.time()

    assert run_virtual(main) == (0.0, 5.0)


async def test_run_virtual_refuses_a_running_loop() -> None:
    with pytest.raises(ProcessorError, match="run_virtual_async"):
        run_virtual(_sleep_an_hour)


async def test_run_virtual_async_leaves_the_callers_loop_alone() -> None:
    loop = asyncio.get_running_loop()
    outer_before = loop.time()
    ticks = 0

    async def ticker() -> None:  # the caller's loop keeps serving its own tasks meanwhile
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    side = asyncio.create_task(ticker())
    before, after = await run_virtual_async(_sleep_an_hour)
    side.cancel()
    assert after - before == 3600.0
    assert loop.time() - outer_before < 1.0
    assert ticks > 0


async def test_cancelling_run_virtual_async_cancels_the_run() -> None:
    started, stopped = threading.Event(), threading.Event()

    async def forever() -> None:
        started.set()
        try:
            while True:  # noqa: ASYNC110 - runs until cancelled
                await asyncio.sleep(1)
        finally:
            stopped.set()

    job = asyncio.create_task(run_virtual_async(forever))
    await asyncio.to_thread(started.wait, 5)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    assert stopped.is_set()
