"""The lease keeper of a worker pool, on its own, in virtual time: it renews what the pool
holds every `renew_every_s` and reports the leases it finds lost, keeps going after a failed
renewal, and stops at once while it sleeps."""

from __future__ import annotations

import logging

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from chatroom_async.clock import LoopClock
from chatroom_async.settings import ProcessorSettings
from chatroom_async.simulation.vtime import run_virtual
from chatroom_async.store.embedded import embedded_redis
from chatroom_async.store.keys import Keys
from chatroom_async.store.queue import TaskQueue
from chatroom_async.worker.leases import LeaseKeeper

T0 = 1_767_225_600.0
SETTINGS = ProcessorSettings(lease_s=3.0)  # renewed every 1 s


async def _claimed(queue: TaskQueue, clock: LoopClock, task_id: str) -> str:
    """Queue a task and claim it for worker w1; return its lease token."""
    spec = '{"user_id": 1, "request_type": "chat", "request_data": {}, "timeout": 30.0, ' \
           '"created_at": 0.0}'
    assert await queue.enqueue(task_id, spec, 2, 3, 1.0)
    result = await queue.claim(now=clock.now(), lease_s=SETTINGS.lease_s, max_count=1,
                               worker_id="w1", extra_deliveries=2)
    return result.claimed[0].token


def test_held_leases_are_extended_and_a_lost_one_is_reported() -> None:
    async def main() -> tuple[list[tuple[str, str]], float | None, float]:
        clock = LoopClock(T0)
        redis = embedded_redis()
        queue = TaskQueue(redis, Keys("leases"))
        token = await _claimed(queue, clock, "kept")
        held = {"kept": token, "gone": "w1:99"}  # "gone" has no lease in Redis
        lost: list[tuple[str, str]] = []
        keeper = LeaseKeeper(queue=queue, settings=SETTINGS, clock=clock, worker_id="w1",
                             slots=2, held=lambda: dict(held),
                             lost=lambda tid, tok: lost.append((tid, tok)))
        await keeper.start()
        await clock.sleep(10.5)  # ten renewals: far past the first lease's 3 s
        deadline = await redis.zscore(queue.keys.inflight, "kept")
        await keeper.stop()
        await redis.aclose()
        return lost, deadline, clock.now()

    lost, deadline, now = run_virtual(main)
    assert lost and set(lost) == {("gone", "w1:99")}  # reported, at each renewal
    assert deadline is not None and deadline > now  # "kept" was extended, not expired


def test_a_failed_renewal_is_logged_and_the_next_one_still_comes(
        caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> int:
        clock = LoopClock(T0)
        redis = embedded_redis()
        queue = TaskQueue(redis, Keys("leases"))
        token = await _claimed(queue, clock, "t1")
        calls = 0
        original = queue.renew

        async def flaky(*args: object, **kwargs: object) -> list[str]:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RedisConnectionError("connection reset")
            return await original(*args, **kwargs)  # type: ignore[arg-type]

        queue.renew = flaky  # type: ignore[method-assign]
        keeper = LeaseKeeper(queue=queue, settings=SETTINGS, clock=clock, worker_id="w1",
                             slots=1, held=lambda: {"t1": token}, lost=lambda *_: None)
        await keeper.start()
        await clock.sleep(2.5)
        await keeper.stop()
        await redis.aclose()
        return calls

    with caplog.at_level(logging.ERROR, logger="chatroom_async.worker"):
        calls = run_virtual(main)
    assert calls == 2
    assert "lease renewal failed" in caplog.text


def test_stop_while_sleeping_returns_at_once_and_unregister_leaves_the_count() -> None:
    async def main() -> tuple[float, int, int]:
        clock = LoopClock(T0)
        redis = embedded_redis()
        queue = TaskQueue(redis, Keys("leases"))
        keeper = LeaseKeeper(queue=queue, settings=SETTINGS, clock=clock, worker_id="w1",
                             slots=4, held=dict, lost=lambda *_: None)
        await keeper.start()
        registered = len((await queue.counts(now=clock.now())).workers)
        began = clock.now()
        await keeper.stop()  # the loop sleeps: it is cancelled, not waited for
        took = clock.now() - began
        await keeper.unregister()
        after = len((await queue.counts(now=clock.now())).workers)
        await redis.aclose()
        return took, registered, after

    took, registered, after = run_virtual(main)
    assert took == 0.0
    assert (registered, after) == (1, 0)
