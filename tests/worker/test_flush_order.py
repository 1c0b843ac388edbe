"""What a full pool does first after an outbox call claimed tasks for it: start them, when
its attempts wait on I/O, or send its next call, when they are over at once (no-op).

In virtual time: a spy on the queue's `finish_and_claim` logs each call as it is sent and
what it claimed when it returns; the task body logs its start.
"""

from __future__ import annotations

import asyncio
from typing import Any

from chatroom_async import AsyncAIProcessor, FunctionBackend, ProcessorSettings
from chatroom_async.clock import LoopClock
from chatroom_async.simulation.vtime import run_virtual

EPOCH = 1_767_225_600.0


def flush_log(work_s: float) -> list[tuple[str, ...]]:
    """("call",) when an outbox call is sent, ("claimed", ids...) when it returns, ("start",
    id) when a task body starts: 100 tasks of `work_s` on 20 slots (twice the
    outbox's batch, so outcomes wait while a call travels)."""

    async def main() -> list[tuple[str, ...]]:
        clock = LoopClock(EPOCH)
        log: list[tuple[str, ...]] = []

        async def work(request: Any) -> dict[str, Any]:
            log.append(("start", request.task_id))
            if work_s:
                await asyncio.sleep(work_s)
            return {"response": "ok"}

        settings = ProcessorSettings(publish_events=False, stream=False)
        async with AsyncAIProcessor(max_workers=20, backend=FunctionBackend(work), clock=clock,
                                    settings=settings, seed=1) as proc:
            assert proc.queue is not None
            queue, original = proc.queue, proc.queue.finish_and_claim

            async def spy(outcomes: Any, **kwargs: Any) -> Any:
                log.append(("call",))
                recorded, result = await original(outcomes, **kwargs)
                log.append(("claimed", *(c.task_id for c in result.claimed)))
                return recorded, result

            queue.finish_and_claim = spy  # type: ignore[method-assign]
            ids = [await proc.submit_task(1, "chat_completion", {"message": str(i)})
                   for i in range(100)]
            for task_id in ids:
                await proc.wait_for_task(task_id, timeout=3600)
        return log

    return run_virtual(main)


def calls_ahead_of_their_tasks(log: list[tuple[str, ...]]) -> tuple[int, int]:
    """(claims followed by another call, of them those whose next call was sent before
    every task they claimed had started)."""
    claims = ahead = 0
    for i, entry in enumerate(log):
        if entry[0] != "claimed" or len(entry) == 1:
            continue
        later = log[i + 1:]
        call = next((j for j, e in enumerate(later) if e == ("call",)), None)
        if call is None:
            continue
        claims += 1
        started = {e[1] for e in later[:call] if e[0] == "start"}
        if not set(entry[1:]) <= started:
            ahead += 1
    return claims, ahead


def test_tasks_that_wait_start_before_the_next_call_is_sent() -> None:
    claims, ahead = calls_ahead_of_their_tasks(flush_log(0.5))
    assert claims >= 5  # the outbox's calls claimed the successors
    assert ahead == 0


def test_tasks_over_at_once_leave_the_next_call_first() -> None:
    claims, ahead = calls_ahead_of_their_tasks(flush_log(0.0))
    assert claims >= 5
    assert ahead >= 1  # Redis works on the next call while the loop runs these
