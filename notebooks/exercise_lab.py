"""Helpers for the two exercise notebooks (08, 09): run a student's handler or scheduler
on a scripted stream or a seeded workload in virtual time, and summarise what happened
in a few numbers. Not the lesson; the lesson is the student's own code."""

from __future__ import annotations

import asyncio
from typing import Any

from chatroom_async.grading import ScheduledBackend
from chatroom_async.grading.harness import RecordingClient, ScriptedStream, close_quietly, script
from chatroom_async.grading.workloads import (
    BatchingSimBackend,
    FifoScheduler,
    Job,
    TierContext,
    dependency_jobs,
    flood_jobs,
    percentile,
    run_jobs,
    simulated,
    starve_jobs,
    summary_jobs,
    throughput,
    vip_jobs,
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


async def waits_by_tier(scheduler: Any, jobs: list[Job], workers: int = 6
                        ) -> dict[str, dict[str, float]]:
    """p50 / p95 / max wait (s) per user tier when `scheduler` orders the queue."""
    ctx = TierContext()
    trace = await run_jobs(jobs, backend=simulated(5), workers=workers,
                           scheduler=scheduler, user_context=ctx)
    table = {}
    for tier in ("vip", "standard", "free"):
        waits = trace.waits(lambda j, tier=tier: ctx.tier(j.user_id) == tier)
        if waits:
            table[tier] = {"p50": round(percentile(waits, 50), 1),
                           "p95": round(percentile(waits, 95), 1), "max": round(max(waits), 1)}
    return table


async def dependency_run(scheduler: Any) -> list[tuple[str, str, str, float | None]]:
    """The dependency workload through `scheduler.submit`: (task, depends on, final
    status, start time) for the first diamond and the blocked one."""
    jobs = dependency_jobs()

    async def submit(p: Any, job: Job) -> None:
        await scheduler.submit(p, job.request(), job.depends_on)

    try:
        trace = await run_jobs(jobs, backend=simulated(6), workers=8, submit=submit,
                               expect=len(jobs) - 3, settle_s=30.0, horizon_s=600.0)
    finally:
        await close_quietly(scheduler)
    rows = []
    for job in jobs:
        if job.task_id[:2] in ("g0", "g5"):
            start = trace.started.get(job.task_id)
            rows.append((job.task_id, ",".join(job.depends_on) or "-",
                         trace.finished.get(job.task_id, ("未运行", 0.0))[0],
                         None if start is None else round(start, 1)))
    return rows


class _Unwrapped:
    """The scheduler's backend calls, keeping a NotImplementedError that the worker would
    turn into a failed task, so that the notebook can say "not implemented yet"."""

    def __init__(self, scheduler: Any) -> None:
        self.s, self.missing = scheduler, False

    async def call_backend(self, backend: Any, request: Any) -> Any:
        return await self._kept(self.s.call_backend(backend, request))

    async def call_batched(self, backend: Any, request: Any) -> Any:
        return await self._kept(self.s.call_batched(backend, request))

    async def _kept(self, call: Any) -> Any:
        try:
            return await call
        except NotImplementedError:
            self.missing = True
            raise

    def check(self) -> None:
        if self.missing:
            raise NotImplementedError


async def batching_run(scheduler: Any | None) -> dict[str, float]:
    """Backend calls and p95 latency of the summary workload, batched by `scheduler`
    (None: no batching)."""
    inner = simulated(7)
    backend: Any = BatchingSimBackend(inner)
    watched = _Unwrapped(scheduler)
    if scheduler is not None:
        backend = ScheduledBackend(backend, watched, batching=True)
    try:
        trace = await run_jobs(summary_jobs(), backend=backend, workers=40, horizon_s=600.0)
    finally:
        await close_quietly(scheduler)
    watched.check()
    latencies = trace.latencies()
    return {"任务": len(trace.jobs), "完成": len(latencies), "后端调用": inner.stats().calls,
            "p95 延迟 s": round(percentile(latencies, 95), 2) if latencies else float("nan")}


async def concurrency_run(scheduler: Any, limit: int) -> dict[str, float]:
    """429 share, failures and throughput of 32 workers against a provider allowing
    `limit` calls at once, every call through `scheduler.call_backend`."""
    inner = simulated(9, max_concurrency=limit)
    watched = _Unwrapped(scheduler)
    try:
        trace = await run_jobs(flood_jobs(limit), workers=32,
                               backend=ScheduledBackend(inner, watched))
    finally:
        await close_quietly(scheduler)
    watched.check()
    stats = inner.stats()
    return {"提供方上限": limit,
            "429 比例": round(stats.errors.get("concurrency_limit", 0) / max(1, stats.calls), 3),
            "失败任务": sum(1 for s, _ in trace.finished.values() if s != "completed"),
            "吞吐量 个/秒": round(throughput(trace), 2)}


class StrictPriority:
    """Strict priority: tier first, then the task's priority, FIFO inside (no aging)."""

    def score(self, task: Any, user_context: Any) -> float:
        tier = {"vip": 0, "standard": 1, "free": 2}.get(user_context.get("tier"), 1)
        return tier * 1e10 - int(task.priority) * 1e9 + task.created_at


class PassThrough:
    """Calls the backend as asked: no limit of its own."""

    async def call_backend(self, backend: Any, request: Any) -> Any:
        return await backend.complete(request)

    async def call_batched(self, backend: Any, request: Any) -> Any:
        return await backend.complete(request)


__all__ = ["FifoScheduler", "PassThrough", "StrictPriority", "batching_run",
           "concurrency_run", "dependency_run", "starve_jobs", "stream_once", "vip_jobs",
           "waits_by_tier"]
