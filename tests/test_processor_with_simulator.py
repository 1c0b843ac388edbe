"""The processor against the simulated LLM API, under virtual time: what it retries, what it
does not, and how long it waits, as the API tells it to."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from chatroom_async import AsyncAIProcessor, ProcessorSettings, RetryPolicy, SimulatedAIBackend
from chatroom_async.clock import LoopClock
from chatroom_async.simulation.vtime import run_virtual

EPOCH = 1_767_225_600.0


def run(backend_settings: dict[str, Any], message: str, *, max_retries: int = 3,
        timeout: float = 30.0, rate_limit_retries: int = 50,
        ) -> tuple[dict[str, Any], list[float], Any]:
    """Run one task to its end; return its final status, its start times and backend stats."""

    async def main() -> tuple[dict[str, Any], list[float], Any]:
        clock = LoopClock(EPOCH)
        backend = SimulatedAIBackend.from_profile("instant", seed=4, clock=clock,
                                                  **backend_settings)
        settings = ProcessorSettings(publish_events=False, stream=False,
                                     retry=RetryPolicy(base_s=0.5, cap_s=1.0, jitter="none",
                                                       rate_limit_retries=rate_limit_retries))
        starts: list[float] = []
        async with AsyncAIProcessor(max_workers=2, backend=backend, clock=clock, seed=1,
                                    settings=settings) as proc:
            proc.add_callback("task_started", lambda t: starts.append(t.started_at))
            task_id = await proc.submit_task(1, "chat_completion", {"message": message},
                                             timeout=timeout, max_retries=max_retries)
            final = await proc.wait_for_task(task_id, timeout=3600)
        return final, starts, backend.stats()

    return run_virtual(main)


def test_retry_after_from_a_429_sets_the_pace() -> None:
    final, starts, stats = run({"rate_limit_rate": 1.0, "retry_after_s": 7.0}, "你好",
                               max_retries=1, rate_limit_retries=2)
    assert final["status"] == "failed" and final["error_type"] == "RateLimitError"
    # two retries on the rate limits' own budget, then the task's one retry
    assert final["retry_count"] == 1 and stats.calls == 4
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(gaps) == 3 and all(gap >= 7.0 for gap in gaps), gaps  # not the 0.5-1 s backoff


def test_transient_errors_are_retried_with_backoff() -> None:
    final, starts, stats = run({"server_error_rate": 1.0}, "hello", max_retries=2)
    assert final["error_type"] == "ServerError" and stats.calls == 3
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # base 0.5 s, doubled, no jitter, in virtual seconds (+1 ms: a worker wakes just after)
    assert gaps == pytest.approx([0.5, 1.0], abs=0.002)


def test_a_content_filter_is_not_retried() -> None:
    final, starts, stats = run({}, "please [BLOCK] this")
    assert final["status"] == "failed" and final["error_type"] == "ContentFilterError"
    assert final["retry_count"] == 0 and stats.calls == 1 and len(starts) == 1


def test_a_hang_ends_at_the_task_timeout_in_virtual_time() -> None:
    final, starts, stats = run({"hang_rate": 1.0}, "hello", max_retries=1, timeout=30.0)
    assert final["error_type"] == "AITimeoutError" and stats.calls == 2
    assert final["completed_at"] - final["started_at"] >= 30.0
    assert stats.in_flight == 0  # the timed-out calls gave their slots back


@pytest.mark.parametrize("prefetch", [0, 10])
def test_a_busy_worker_still_runs_a_retry_when_it_falls_due(prefetch: int) -> None:
    """A full worker claims for freed slots without sweeping every time; a retry must still
    come back at its due time, not after the whole backlog (virtual time, one slot). With
    prefetch, the holds taken while attempts were short go back once they grow long."""
    import asyncio

    from chatroom_async import FunctionBackend, RateLimitError, TaskPriority

    async def main() -> list[str]:
        clock = LoopClock(EPOCH)
        failed_once: set[str] = set()

        async def work(req: Any) -> dict[str, Any]:
            if req.request_data["message"] == "flaky" and req.task_id not in failed_once:
                failed_once.add(req.task_id)
                raise RateLimitError("busy", retry_after=2.0)
            await asyncio.sleep(1.0)
            return {"response": "ok"}

        settings = ProcessorSettings(publish_events=False, stream=False, prefetch=prefetch)
        order: list[str] = []
        async with AsyncAIProcessor(max_workers=1, backend=FunctionBackend(work), clock=clock,
                                    settings=settings, seed=2) as proc:
            proc.add_callback("task_completed", lambda t: order.append(t.request_data["message"]))
            flaky = await proc.submit_task(1, "chat_completion", {"message": "flaky"},
                                           priority=TaskPriority.NORMAL)
            backlog = [await proc.submit_task(1, "chat_completion", {"message": f"low{i}"},
                                              priority=TaskPriority.LOW) for i in range(20)]
            for task_id in [flaky, *backlog]:
                await proc.wait_for_task(task_id, timeout=3600)
        return order

    order = run_virtual(main)
    # Failed at t=0, due at t=2: it runs third or fourth, not after the twenty low ones.
    assert order.index("flaky") <= 3, order
