"""A real AsyncAIProcessor (embedded fakeredis) calling sim-server over HTTP through
OpenAIBackend: Retry-After sets the pace, a cancel closes the HTTP stream, and a few hundred
tasks on the flaky profile all end, with the counts reconciled."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

pytest.importorskip("openai")
pytest.importorskip("uvicorn")

from chatroom_async import AsyncAIProcessor, ProcessorSettings, RetryPolicy  # noqa: E402
from chatroom_async.settings import ProviderLimits  # noqa: E402
from chatroom_async.simulated import PROFILES  # noqa: E402
from tests.conftest import wait_until  # noqa: E402
from tests.providers.helpers import backend_for, serving  # noqa: E402
from tests.providers.helpers import request as request_for  # noqa: E402

REQUESTS = [lambda i: ("chat_completion", {"message": f"问题 {i}"}),
            lambda i: ("content_summary", {"content": f"一段内容 {i} " * 5}),
            lambda i: ("translation", {"text": f"hello {i}", "target_language": "zh"})]
FAST_RETRIES = RetryPolicy(base_s=0.01, cap_s=0.05, jitter="none")


def processor(backend: Any, workers: int = 4, **settings: Any) -> AsyncAIProcessor:
    return AsyncAIProcessor(max_workers=workers, backend=backend, seed=5,
                            settings=ProcessorSettings(retry=FAST_RETRIES, **settings))


async def test_retry_after_from_the_server_sets_the_pace() -> None:
    async with serving(rate_limit_rate=1.0, retry_after_s=0.4) as server, \
            backend_for(server) as backend:
        async with processor(backend) as p:
            # the first attempt gets a 429; from then on the server lets calls through
            p.add_callback("task_retrying", lambda t: server.backend.update(rate_limit_rate=0.0))
            task_id = await p.submit_task(1, "chat_completion", {"message": "你好"})
            final = await p.wait_for_task(task_id, timeout=30)
    first, second = server.records[0], server.records[1]
    # a 429 retries on the rate limits' own budget: none of the task's retries is used
    assert final["status"] == "completed" and final["retry_count"] == 0
    assert first.status == 429 and second.status == 200 and len(server.records) == 2
    assert first.ended is not None
    # 0.4 s asked for by Retry-After (sent as retry-after-ms: 400), not the 0.01 s backoff
    assert second.started - first.ended >= 0.4


async def test_cancelling_a_task_closes_its_http_stream() -> None:
    slow = {"simulate_latency": True, "ttft_p50_s": 0.01, "ttft_p99_s": 0.02,
            "output_tps_p50": 20.0, "output_tokens_p50": 400.0}
    async with serving(**slow) as server, backend_for(server) as backend:
        async with processor(backend) as p:
            chunks: list[Any] = []
            seen = asyncio.Event()
            p.add_callback("task_progress", lambda t: (chunks.append(t.progress), seen.set()))
            task_id = await p.submit_task(1, "chat_completion", {"message": "讲个长故事"})
            await wait_until(lambda: len(chunks) >= 3, seen)
            assert await p.cancel_task(task_id)
            await server.wait_for(lambda: server.records[-1].outcome == "disconnected")
            final = await p.wait_for_task(task_id, timeout=10)
        stats = server.backend.stats()
    assert final["status"] == "cancelled"
    assert stats.cancelled == 1 and stats.in_flight == 0 and stats.completed == 0
    assert server.records[-1].chunks >= 3 and len(server.records) == 1


async def test_a_flaky_run_of_300_tasks_ends_with_every_task_terminal() -> None:
    flaky = PROFILES["flaky"]
    fast = {"ttft_p50_s": 0.005, "ttft_p99_s": 0.03, "output_tps_p50": 3000.0,
            "output_tokens_p50": 20.0, "retry_after_s": 0.05, "max_concurrency": 8}
    rng = random.Random(11)
    async with serving("flaky", seed=9, **fast) as server, backend_for(server) as backend:
        assert server.backend.settings.stream_break_rate == flaky.stream_break_rate > 0
        ended, done, starts = asyncio.Event(), set(), [0]
        async with processor(backend, workers=12) as p:
            for name in ("task_completed", "task_failed", "task_cancelled"):
                p.add_callback(name, lambda t: (done.add(t.task_id), ended.set()))
            p.add_callback("task_started", lambda t: starts.__setitem__(0, starts[0] + 1))
            ids = [await p.submit_task(1 + i % 7, *REQUESTS[i % 3](i), timeout=2.0,
                                       max_retries=3) for i in range(300)]
            for task_id in rng.sample(ids, 10):
                await p.cancel_task(task_id)
            await wait_until(lambda: done >= set(ids), ended, timeout=120)
            statuses = [(await p.get_task_status(task_id))["status"] for task_id in ids]
            stats = await p.get_stats()
        sim = server.backend.stats()
    counts = {s: statuses.count(s) for s in ("completed", "failed", "cancelled")}
    assert stats["total_tasks"] == 300 == sum(counts.values())
    assert (stats["completed_tasks"], stats["failed_tasks"], stats["cancelled_tasks"]) == (
        counts["completed"], counts["failed"], counts["cancelled"])
    assert counts["completed"] > 180 and counts["failed"] > 0 and counts["cancelled"] >= 1
    assert stats["retried_tasks"] > 20 and sum(sim.errors.values()) > 20
    # one HTTP call per attempt: the SDK retried nothing behind the processor's back
    calls = len(server.records)
    assert starts[0] - counts["cancelled"] <= calls <= starts[0]
    assert sim.in_flight == 0 and all(r.outcome != "running" for r in server.records)


async def test_the_shared_provider_limiter_keeps_calls_under_the_concurrency_limit() -> None:
    slow = {"simulate_latency": True, "ttft_p50_s": 0.02, "ttft_p99_s": 0.05,
            "output_tps_p50": 500.0, "output_tokens_p50": 20.0, "max_concurrency": 2}
    async with serving(**slow) as server, backend_for(server) as backend:
        assert backend.tokens_charged(request_for(message="你好", max_tokens=100)) > 100
        async with processor(backend, workers=8, provider_limits=ProviderLimits(
                max_concurrency=2, tpm=1_000_000)) as p:
            ids = [await p.submit_task(1, "chat_completion", {"message": f"问 {i}"})
                   for i in range(12)]
            finals = [await p.wait_for_task(task_id, timeout=60) for task_id in ids]
    assert [f["status"] for f in finals] == ["completed"] * 12
    assert server.counts["status_429"] == 0 and server.backend.stats().peak_in_flight == 2
