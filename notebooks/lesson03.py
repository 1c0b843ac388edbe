"""The five side-by-side experiments of notebook 03: the chapter's design
(`sample_processor.ChapterProcessor`) against `chatroom_async` on the same workload.

Each function builds both set-ups on a fresh embedded Redis, runs one workload and returns
a few numbers; the notebook runs them in virtual time (`lesson_tools.virtual`).
`kind` is "chapter" or "package".
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from lesson_tools import (
    CallLog,
    FreezableClock,
    fresh_redis,
    hanging_backend,
    sleeping_backend,
)
from sample_processor import ChapterProcessor, Trace

from chatroom_async import (
    AsyncAIProcessor,
    LoopClock,
    ProcessorSettings,
    RetryPolicy,
    SimulatedAIBackend,
    TaskPriority,
)

PRIORITIES = (TaskPriority.LOW, TaskPriority.NORMAL, TaskPriority.HIGH, TaskPriority.URGENT)
MSG = {"message": "你好"}


def _build(kind: str, redis: Any, backend: Any, workers: int, **kwargs: Any) -> Any:
    if kind == "chapter":
        return ChapterProcessor(redis, backend, workers, trace=kwargs.get("trace"))
    return AsyncAIProcessor(redis=redis, max_workers=workers, backend=backend, seed=1,
                            settings=kwargs.get("settings"),
                            clock=kwargs.get("clock") or LoopClock())


async def _stop(p: Any) -> None:
    if isinstance(p, ChapterProcessor):
        await p.stop()
    else:
        await p.stop(drain_timeout_s=0)


async def _status(p: Any, task_id: str) -> str:
    got = await p.get_task_status(task_id)
    return "None" if got is None else str(got["status"])


async def pickup_latency(kind: str, workers: int = 3, tasks: int = 80,
                         mean_gap_s: float = 3.0, seed: int = 3) -> dict[str, list[float]]:
    """An idle system: tasks of every priority arrive about every `mean_gap_s` seconds;
    returns, by priority name, each task's wait from submit to start (seconds)."""
    trace = Trace()
    p = _build(kind, fresh_redis(), sleeping_backend(0.2), workers, trace=trace)
    if kind == "package":
        p.add_callback("task_started", lambda t: trace.add("started", t.task_id))
    await p.start()
    rng, prio = random.Random(seed), {}
    for i in range(tasks):
        await asyncio.sleep(rng.expovariate(1 / mean_gap_s))
        task_id, prio[f"t{i:03d}"] = f"t{i:03d}", PRIORITIES[rng.randrange(4)]
        if kind == "package":
            trace.add("submitted", task_id)
        await p.submit_task(1, "chat_completion", MSG, priority=prio[task_id], task_id=task_id)
    await asyncio.sleep(10)
    await _stop(p)
    sub, start = trace.times("submitted"), trace.times("started")
    return {pr.name: [start[t] - sub[t] for t in prio if prio[t] == pr] for pr in PRIORITIES}


async def killed_worker(kind: str, tasks: int = 8, workers: int = 4) -> dict[str, Any]:
    """Worker A takes `workers` tasks of 10 s each and dies at t=4 s; worker B starts then.
    Returns each task's final status (as B sees it at t=123 s) and what B counted."""
    redis = fresh_redis()
    clock = FreezableClock()
    settings = ProcessorSettings(lease_s=5.0, max_idle_wait_s=1.0)
    a = _build(kind, redis, sleeping_backend(10.0, clock), workers, clock=clock,
               settings=settings)
    await a.start()
    ids = [await a.submit_task(1, "chat_completion", MSG, task_id=f"job-{i}")
           for i in range(tasks)]
    await asyncio.sleep(4.0)
    if kind == "chapter":
        await a.kill()            # the workers and the 4 tasks they held vanish
    else:
        clock.freeze()            # no more renewals, no results: a dead process, to Redis
    b = _build(kind, redis, sleeping_backend(10.0), workers, settings=settings)
    await b.start()
    await asyncio.sleep(119.0)
    statuses = {task_id: await _status(b, task_id) for task_id in ids}
    stats = b.get_stats() if kind == "chapter" else await b.get_stats()
    await _stop(b)
    if kind == "package":
        await _stop(a)
    return {"statuses": statuses, "reclaimed": stats.get("reclaimed_tasks", 0)}


async def retry_storm(kind: str, tasks: int = 50, workers: int = 10, outage_s: float = 20.0,
                      max_retries: int = 5, retry: RetryPolicy | None = None,
                      seed: int = 1) -> dict[str, Any]:
    """`tasks` URGENT requests arrive at the start of a `outage_s`-second outage of the API
    (every call answers 503 at once), with `max_retries` retries each."""
    api = SimulatedAIBackend.from_profile("realistic", seed=seed, clock=LoopClock(),
                                          max_concurrency=None, failure_rate=0.0)
    api.set_incident(outage_s, overload_rate=1.0, latency_factor=1.0)
    log = CallLog(api)
    settings = ProcessorSettings(stream=False, retry=retry or RetryPolicy())
    p = _build(kind, fresh_redis(), log, workers, settings=settings)
    await p.start()
    ids = [await p.submit_task(1, "chat_completion", MSG, priority=TaskPriority.URGENT,
                               max_retries=max_retries, task_id=f"q-{i:02d}")
           for i in range(tasks)]
    await asyncio.sleep(300.0)
    statuses = [await _status(p, t) for t in ids]
    await _stop(p)
    per_s = log.per_second(60)
    return {"calls": log.count(), "calls_503": log.count("OverloadedError"),
            "peak_calls_per_s": max(per_s), "completed": statuses.count("completed"),
            "failed": len(ids) - statuses.count("completed"), "per_second": per_s}


async def two_processes(kind: str, tasks: int = 20) -> dict[str, dict[str, Any]]:
    """Two processes share one Redis; process A submits every task, both work on them.
    Returns the statistics each process reports."""
    redis = fresh_redis()
    a = _build(kind, redis, sleeping_backend(1.0), 2)
    b = _build(kind, redis, sleeping_backend(1.0), 2)
    await a.start()
    await b.start()
    for i in range(tasks):
        await a.submit_task(1, "chat_completion", MSG, task_id=f"s-{i:02d}")
    await asyncio.sleep(30.0)
    keys = ("total_tasks", "completed_tasks", "success_rate")
    out = {}
    for name, p in (("A", a), ("B", b)):
        stats = p.get_stats() if kind == "chapter" else await p.get_stats()
        out[name] = {k: round(stats[k], 2) for k in keys}
    for p in (a, b):
        await _stop(p)
    return out


async def hung_call(kind: str, timeout_s: float = 5.0) -> dict[str, Any]:
    """One worker, three tasks with `timeout=timeout_s` and one retry; the call for h-1
    never answers. Returns each task's status 120 s later, when h-2 started (None: never)
    and the error recorded for h-1."""
    trace = Trace()
    backend = hanging_backend(lambda r: r.task_id == "h-1", seconds=1.0)
    p = _build(kind, fresh_redis(), backend, 1, trace=trace,
               settings=ProcessorSettings(retry=RetryPolicy(base_s=1.0, jitter="none")))
    if kind == "package":
        p.add_callback("task_started", lambda t: trace.add("started", t.task_id))
    await p.start()
    ids = [await p.submit_task(1, "chat_completion", MSG, timeout=timeout_s, max_retries=1,
                               task_id=f"h-{i}") for i in range(3)]
    await asyncio.sleep(120.0)
    statuses = {t: await _status(p, t) for t in ids}
    h1 = await p.get_task_status("h-1")
    await _stop(p)
    started = trace.times("started").get("h-2")
    return {"statuses": statuses, "h2_started_at": None if started is None else round(started, 2),
            "h1_error": (h1 or {}).get("error_type")}


def wait_summary(waits: dict[str, list[float]]) -> dict[str, tuple[float, float]]:
    """(mean, max) wait in seconds per priority, rounded to 0.01 s."""
    return {name: (round(sum(v) / len(v), 2), round(max(v), 2)) for name, v in waits.items()}


def count_statuses(statuses: dict[str, str]) -> dict[str, int]:
    """How many tasks ended in each status ("None": the processor cannot find the task)."""
    out: dict[str, int] = {}
    for status in statuses.values():
        out[status] = out.get(status, 0) + 1
    return dict(sorted(out.items()))
