"""Every worker pool of a namespace is counted in `get_stats` (`workers`, `worker_slots`):
a client sees the slots of workers in other processors, a stopped pool leaves the count at
once, a killed one when its registration's lease runs out; a dashboard on a client draws
that total as its concurrency limit."""

from __future__ import annotations

from typing import Any

import pytest

from chatroom_async import AsyncAIProcessor, FunctionBackend
from chatroom_async.clock import LoopClock
from chatroom_async.simulation.vtime import run_virtual
from chatroom_async.store.embedded import embedded_redis
from chatroom_async.store.keys import Keys
from chatroom_async.store.queue import TaskQueue


async def answer(_: Any) -> dict[str, str]:
    return {"text": "ok"}


async def test_a_client_counts_the_workers_of_other_processors() -> None:
    redis = embedded_redis()
    client = AsyncAIProcessor(max_workers=0, redis=redis, namespace="reg")
    workers = [AsyncAIProcessor(max_workers=n, backend=FunctionBackend(answer), redis=redis,
                                namespace="reg") for n in (3, 5)]
    try:
        await client.start()
        alone = await client.get_stats()
        for w in workers:
            await w.start()
        both = await client.get_stats()
        await workers[0].stop()
        one = await client.get_stats()
    finally:
        for p in (client, *workers):
            await p.stop()
        await redis.aclose()
    assert (alone["workers"], alone["worker_slots"]) == (0, 0)
    assert (both["workers"], both["worker_slots"]) == (2, 8)
    assert both["worker_count"] == 0  # the client's own, as the chapter defines it
    assert (one["workers"], one["worker_slots"]) == (1, 5)  # a stop leaves at once


def test_a_killed_worker_leaves_the_count_when_its_registration_runs_out() -> None:
    async def main() -> list[tuple[int, int]]:
        clock = LoopClock(1_767_225_600.0)
        redis = embedded_redis()
        queue = TaskQueue(redis, Keys("reg"))
        client = AsyncAIProcessor(max_workers=0, redis=redis, namespace="reg", clock=clock)
        live = AsyncAIProcessor(max_workers=4, backend=FunctionBackend(answer), redis=redis,
                                namespace="reg", clock=clock)  # lease 30 s, renewed every 10
        seen = []
        try:
            await client.start()
            await live.start()
            # a pool that died without stopping: registered once, never renewed
            await queue.register_worker("dead-1-x", 7, now=clock.now(),
                                        deadline=clock.now() + 30)
            for _ in range(3):  # at 0 s, 25 s and 50 s: the live pool renews every 10 s
                stats = await client.get_stats()
                seen.append((stats["workers"], stats["worker_slots"]))
                await clock.sleep(25)
            members = await redis.zrange(Keys("reg").workers, 0, -1)
        finally:
            await live.stop()
            await client.stop()
            await redis.aclose()
        assert not any(m.startswith("dead-1-x") for m in members)  # pruned by a renewal
        return seen

    assert run_virtual(main) == [(2, 11), (2, 11), (1, 4)]


async def test_a_dashboard_on_a_client_draws_the_workers_slots() -> None:
    pytest.importorskip("matplotlib")
    from chatroom_async.dashboard import LiveDashboard

    redis = embedded_redis()
    client = AsyncAIProcessor(max_workers=0, redis=redis, namespace="reg")
    worker = AsyncAIProcessor(max_workers=6, backend=FunctionBackend(answer), redis=redis,
                              namespace="reg")
    try:
        await client.start()
        dash = LiveDashboard(client, interval_s=0.05, render="thread")
        before = await dash.tick()
        await worker.start()
        during = await dash.tick()
        await worker.stop()
        after = await dash.tick()
        await dash.stop()
    finally:
        await worker.stop()
        await client.stop()
        await redis.aclose()
    assert (before.limit, during.limit, after.limit) == (None, 6, None)
