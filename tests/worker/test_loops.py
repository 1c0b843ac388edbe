"""`PatientLoop`: stop() cancels the loop only in its wait; a step in progress finishes."""

from __future__ import annotations

import asyncio

from chatroom_async.worker.loops import PatientLoop


async def test_stop_during_a_step_lets_it_finish_and_runs_no_other() -> None:
    go, inside, release = asyncio.Event(), asyncio.Event(), asyncio.Event()
    steps: list[str] = []

    async def wait() -> None:
        await go.wait()

    async def step() -> None:
        steps.append("began")
        inside.set()
        await release.wait()  # a Redis call in progress
        steps.append("ended")

    loop = PatientLoop(wait, step, "test.loop")
    loop.start()
    go.set()
    await inside.wait()
    stopping = asyncio.ensure_future(loop.stop())
    release.set()
    await asyncio.wait_for(stopping, timeout=5)
    assert steps == ["began", "ended"]  # finished, and the loop did not go round again


async def test_stop_while_waiting_ends_the_loop_at_once() -> None:
    never, entered = asyncio.Event(), asyncio.Event()
    steps: list[str] = []

    async def wait() -> None:
        entered.set()
        await never.wait()

    async def step() -> None:
        steps.append("step")

    loop = PatientLoop(wait, step, "test.loop")
    loop.start()
    await entered.wait()  # the loop is in its wait
    await asyncio.wait_for(loop.stop(), timeout=5)
    assert steps == []


async def test_stop_before_start_does_nothing() -> None:
    async def nothing() -> None:
        return None

    await PatientLoop(nothing, nothing, "test.loop").stop()
