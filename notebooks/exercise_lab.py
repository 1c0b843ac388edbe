"""Helpers for the two exercise notebooks (08, 09): run a student's handler or scheduler
on a scripted stream or a seeded workload in virtual time, and summarise what happened
in a few numbers. Not the lesson; the lesson is the student's own code."""

from __future__ import annotations

import asyncio
from typing import Any

from chatroom_async.grading.harness import RecordingClient, ScriptedStream, close_quietly, script
from chatroom_async.grading.workloads import (
    FifoScheduler,
    Job,
    TierContext,
    percentile,
    run_jobs,
    simulated,
)


async def stream_once(handler: Any, *, chunks: int = 400, gap_s: float = 0.005,
                      break_after: int | None = None, cancel_after_s: float | None = None,
                      slow_client_s: float = 0.0) -> dict[str, Any]:
    """One scripted stream through `handler` to one client; a summary of what it saw."""
    client = RecordingClient(delay_s=slow_client_s)
    await handler.attach("lab", client)
    stream = ScriptedStream(*script(chunks, gap_s), break_after=break_after)
    job = asyncio.ensure_future(handler.handle_streaming_response("lab", stream))
    if cancel_after_s is not None:
        await asyncio.sleep(cancel_after_s)
        job.cancel()
    outcome = "returned"
    try:
        await job
    except BaseException as exc:  # noqa: BLE001 - reported, not raised
        outcome = type(exc).__name__
    returned = asyncio.get_running_loop().time()
    try:
        async with asyncio.timeout(60):
            await client.ended.wait()
    except TimeoutError:
        pass
    await close_quietly(handler)
    deltas = [t for f, t in zip(client.frames, client.times, strict=True) if f.kind == "delta"]
    first = client.delivered_at(1)
    return {
        "后端 chunk 数": len(stream.produced),
        "推送的 delta 帧": len(deltas),
        "首字延迟 ms": None if first is None else round(1000 * (first - stream.produced[0])),
        "最忙 1 秒的帧数": max((sum(1 for u in deltas if t <= u < t + 1) for t in deltas),
                            default=0),
        "最后一帧": client.frames[-1].kind if client.frames else None,
        "handle 的结局": outcome,
        "返回时离最后 chunk 秒": round(returned - stream.produced[-1], 3)
        if stream.produced else None,
        "流已关闭": stream.closed_at is not None,
    }


def vip_workload(rate: float = 2.3, count: int = 240, seed: int = 11) -> list[Job]:
    """Chat requests from users 1..50 (1-5 VIP, 6-30 standard, 31-50 free), Poisson."""
    import random

    from chatroom_async.grading.workloads import poisson

    rng = random.Random(seed)
    return [Job(at, f"v{i:04d}", rng.randint(1, 50))
            for i, at in enumerate(poisson(rng, rate, 0.0, count))]


async def waits_by_tier(scheduler: Any, jobs: list[Job], workers: int = 6
                        ) -> dict[str, dict[str, float]]:
    """p50 / p95 / max wait (s) per user tier when `scheduler` orders the queue."""
    ctx = TierContext()
    trace = await run_jobs(jobs, backend=simulated(5), workers=workers,
                           scheduler=scheduler, user_context=ctx)
    table = {}
    for tier in ("vip", "standard", "free"):
        waits = trace.waits(lambda j, tier=tier: ctx.tier(j.user_id) == tier)
        table[tier] = {"p50": round(percentile(waits, 50), 1),
                       "p95": round(percentile(waits, 95), 1), "max": round(max(waits), 1)}
    return table


__all__ = ["FifoScheduler", "stream_once", "vip_workload", "waits_by_tier"]
