"""Workers of two processes share the provider's limits: no call over them, no 429.

In virtual time: two processors on one embedded Redis (two processes, as far as the queue
can tell) call one simulated provider that answers 429 past 5 calls at once and past
120 requests a minute. Without the shared limiter they get hundreds of 429s and lose
tasks; with it, none, and every task completes.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from chatroom_async import AsyncAIProcessor, ProcessorSettings, SimulatedAIBackend
from chatroom_async.clock import LoopClock
from chatroom_async.settings import ProviderLimits
from chatroom_async.simulation.vtime import run_virtual
from chatroom_async.store.embedded import embedded_redis

EPOCH = 1_767_225_600.0
PROVIDER = {"max_concurrency": 5, "rpm": 120, "failure_rate": 0.0}


def run_two_workers(limits: ProviderLimits | None, tasks: int = 60,
                    provider_settings: dict[str, Any] | None = None
                    ) -> tuple[dict[str, int], Any, int]:
    async def main() -> tuple[dict[str, int], Any, int]:
        clock = LoopClock(EPOCH)
        provider = SimulatedAIBackend.from_profile("realistic", seed=5, clock=clock,
                                                   **(provider_settings or PROVIDER))
        settings = ProcessorSettings(publish_events=False, stream=False,
                                     provider_limits=limits)
        redis = embedded_redis()
        procs = [AsyncAIProcessor(max_workers=8, backend=provider, clock=clock, seed=i,
                                  settings=settings, redis=redis, namespace="limits")
                 for i in (1, 2)]
        for p in procs:
            await p.start()
        try:
            # Fixed ids: a simulated answer is drawn by (task id, attempt), so the run replays
            # exactly. A timeout no answer reaches: here every extra call is a duplicate.
            ids = [await procs[i % 2].submit_task(i + 1, "chat_completion",
                                                  {"message": f"question {i}"}, max_retries=2,
                                                  timeout=600, task_id=f"limits-{i}")
                   for i in range(tasks)]
            finals = await asyncio.gather(*(procs[0].wait_for_task(t, timeout=3600)
                                            for t in ids))
            waits = sum(p.limiter.waits for p in procs if p.limiter is not None)
        finally:
            for p in procs:
                await p.stop(drain_timeout_s=0)
            await redis.aclose()
        statuses: dict[str, int] = {}
        for final in finals:
            statuses[final["status"]] = statuses.get(final["status"], 0) + 1
        return statuses, provider.stats(), waits

    return run_virtual(main)


def test_without_shared_limits_the_provider_refuses_calls() -> None:
    statuses, provider, waits = run_two_workers(None)
    assert provider.errors.get("concurrency_limit", 0) > 20
    assert waits == 0


def test_with_shared_limits_no_call_is_refused_and_every_task_completes() -> None:
    statuses, provider, waits = run_two_workers(ProviderLimits(rpm=120, max_concurrency=5))
    assert statuses == {"completed": 60}
    assert provider.errors == {}
    assert provider.calls == 60  # one call per task: nothing was sent twice
    assert provider.peak_in_flight == 5  # the provider's limit was used, not undercut
    assert waits > 0


@pytest.mark.parametrize("shared", [False, True])
def test_tokens_per_minute_follow_the_backends_own_charge(shared: bool) -> None:
    provider_settings = {"tpm": 4000, "failure_rate": 0.0}
    limits = ProviderLimits(tpm=4000) if shared else None
    statuses, provider, waits = run_two_workers(limits, tasks=20,
                                                provider_settings=provider_settings)
    if shared:  # the limiter charges what the provider charges: it never says no
        assert statuses == {"completed": 20} and provider.errors == {} and waits > 0
    else:
        assert provider.errors.get("frequency_limit", 0) > 0
