"""The experiments of notebook 05 (failures, retries, recovery), each one a coroutine that
builds a processor on a fresh embedded Redis and returns what it observed. Run them in
virtual time with `lesson_tools.virtual`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from lesson_tools import (
    CallLog,
    EventLog,
    FreezableClock,
    fresh_redis,
    hanging_backend,
    sleeping_backend,
)

from chatroom_async import (
    AIRequest,
    AsyncAIProcessor,
    FunctionBackend,
    LoopClock,
    ProcessorSettings,
    ProviderLimits,
    RetryPolicy,
    SimulatedAIBackend,
)

MSG = {"message": "你好"}


def processor(backend: Any, workers: int = 4, redis: Any = None, clock: Any = None,
              **settings: Any) -> AsyncAIProcessor:
    """A processor for virtual time: the loop's clock, fixed seed, no streaming."""
    return AsyncAIProcessor(redis=redis or fresh_redis(), max_workers=workers, backend=backend,
                            clock=clock or LoopClock(), seed=1,
                            settings=ProcessorSettings(stream=False, **settings))


async def run_tasks(p: AsyncAIProcessor, specs: list[dict[str, Any]],
                    wait_s: float = 120.0) -> dict[str, dict[str, Any]]:
    """Submit `specs` (keyword arguments of submit_task, each with a task_id), wait
    `wait_s` seconds, return every task's final status dict."""
    for spec in specs:
        await p.submit_task(**{"user_id": 1, "request_type": "chat_completion",
                               "request_data": MSG, **spec})
    await asyncio.sleep(wait_s)
    return {s["task_id"]: await p.get_task_status(s["task_id"]) or {} for s in specs}


async def timeout_demo(timeout_s: float = 3.0) -> EventLog:
    """The first attempt of "slow-1" never answers; the second takes 1 s."""
    p = processor(hanging_backend(lambda r: r.attempt == 1, seconds=1.0))
    log = EventLog(p)
    await p.start()
    await run_tasks(p, [{"task_id": "slow-1", "timeout": timeout_s}], wait_s=30)
    await p.stop(drain_timeout_s=0)
    return log


async def scripted_run(backend: Any, specs: list[dict[str, Any]],
                       **settings: Any) -> tuple[EventLog, dict[str, dict[str, Any]],
                                                  list[str], dict[str, Any]]:
    """Run `specs` on `backend`; return the events, final statuses, dead letters, stats."""
    p = processor(backend, **settings)
    log = EventLog(p)
    await p.start()
    finals = await run_tasks(p, specs, wait_s=300)
    dead, stats = await p.dead_letters(), await p.get_stats()
    await p.stop(drain_timeout_s=0)
    return log, finals, dead, stats


def history(log: EventLog, task_id: str) -> dict[str, Any]:
    """What the events tell of one task: its calls (each `started`), and the error of each
    attempt that ended in `retrying` or `failed`, as "ServerError x2, ..." ("-" if none)."""
    rows = [(event, error) for _, event, tid, _, error in log.rows if tid == task_id]
    errors: list[str] = [e or "?" for event, e in rows if event in ("retrying", "failed")]
    runs: list[list[Any]] = []
    for e in errors:
        if runs and runs[-1][0] == e:
            runs[-1][1] += 1
        else:
            runs.append([e, 1])
    text = ", ".join(e if n == 1 else f"{e} x{n}" for e, n in runs) or "-"
    return {"calls": sum(event == "started" for event, _ in rows), "errors": text}


async def outage(policy: RetryPolicy, tasks: int = 50, outage_s: float = 3.0,
                 provider_limit: int = 10, max_retries: int = 10,
                 limits: ProviderLimits | None = None) -> dict[str, Any]:
    """`tasks` requests arrive together at the start of an `outage_s` outage (every call
    503s); the provider then serves `provider_limit` calls at a time (429 beyond). With
    `limits`, the processor knows the provider's limits (its shared limiter)."""
    api = SimulatedAIBackend.from_profile("realistic", seed=1, clock=LoopClock(),
                                          failure_rate=0.0, max_concurrency=provider_limit)
    api.set_incident(outage_s, overload_rate=1.0, latency_factor=1.0)
    calls = CallLog(api)
    p = processor(calls, workers=tasks, retry=policy, provider_limits=limits)
    log = EventLog(p)
    await p.start()
    finals = await run_tasks(p, [{"task_id": f"o-{i:02d}", "max_retries": max_retries}
                                 for i in range(tasks)], wait_s=600)
    await p.stop(drain_timeout_s=0)
    done = [t for t, event, *_ in log.rows if event == "completed"]
    return {"calls": calls.count(), "503": calls.count("OverloadedError"),
            "429": calls.count("RateLimitError"),
            "completed": sum(f.get("status") == "completed" for f in finals.values()),
            "last_done_s": round(max(done), 1) if done else None, "calls_log": calls}


async def crash_and_recover(lease_s: float = 6.0) -> tuple[EventLog, EventLog, dict[str, Any]]:
    """Worker A runs "long-1" (10 s) and dies at t=3 s; worker B runs from t=3 s.
    Returns A's and B's events and the task's final status."""
    redis, clock = fresh_redis(), FreezableClock()
    a = processor(sleeping_backend(10.0, clock), workers=1, redis=redis, clock=clock,
                  lease_s=lease_s, max_idle_wait_s=1.0)
    log_a = EventLog(a, "A")
    await a.start()
    await a.submit_task(1, "chat_completion", MSG, task_id="long-1")
    await asyncio.sleep(3.0)
    clock.freeze()  # A stops: no renewals, no result (what kill -9 does, as Redis sees it)
    b = processor(sleeping_backend(10.0), workers=1, redis=redis, lease_s=lease_s,
                  max_idle_wait_s=1.0)
    log_b = EventLog(b, "B")
    await b.start()
    final = await b.wait_for_task("long-1", timeout=120)
    stats = await b.get_stats()
    await b.stop(drain_timeout_s=0)
    await a.stop(drain_timeout_s=0)
    return log_a, log_b, {"final": final, "reclaimed": stats["reclaimed_tasks"]}


async def poison_task(lease_s: float = 3.0, processes: int = 4) -> dict[str, Any]:
    """A task that kills every process that runs it ("poison"). A new process starts after
    each death. Returns the task's final record as the last process sees it, and the dead
    letters."""
    redis, procs = fresh_redis(), []
    for i in range(processes):
        clock = FreezableClock()

        async def answer(request: AIRequest, clock: FreezableClock = clock) -> dict[str, Any]:
            clock.freeze()        # running this task kills the process
            await clock.sleep(0)  # so this never returns
            raise AssertionError("unreachable")

        p = processor(FunctionBackend(answer), workers=1, redis=redis, clock=clock,
                      lease_s=lease_s, max_idle_wait_s=1.0)
        await p.start()
        procs.append(p)
        if i == 0:
            await p.submit_task(1, "chat_completion", MSG, max_retries=0, task_id="poison")
        await asyncio.sleep(lease_s + 1.0)  # it dies at once; its lease runs out
    final = await procs[-1].get_task_status("poison") or {}
    dead = await procs[-1].dead_letters()
    for p in reversed(procs):
        await p.stop(drain_timeout_s=0)
    return {"status": final.get("status"), "deliveries": final.get("deliveries"),
            "error_type": final.get("error_type"), "dead_letters": dead}
