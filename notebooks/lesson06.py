"""The experiments of notebook 06 (events, streaming, cancellation), each a coroutine that
builds a processor on a fresh embedded Redis, in virtual time (`lesson_tools.virtual`),
with the simulated glm-4-flash backend (no random faults)."""

from __future__ import annotations

import asyncio
from typing import Any

from lesson_tools import EventLog, fresh_redis, now

from chatroom_async import AsyncAIProcessor, LoopClock, ProcessorSettings, SimulatedAIBackend


def setup(workers: int = 2, **settings: Any) -> tuple[AsyncAIProcessor, SimulatedAIBackend]:
    """A processor with the simulated API, both on the loop's clock; streaming on."""
    clock = LoopClock()
    api = SimulatedAIBackend.from_profile("realistic", seed=7, clock=clock, failure_rate=0.0)
    p = AsyncAIProcessor(redis=fresh_redis(), max_workers=workers, backend=api, clock=clock,
                         seed=1, settings=ProcessorSettings(**settings))
    return p, api


async def stream_demo(message: str = "用三句话介绍一下异步处理") -> dict[str, Any]:
    """One streamed task: each progress event's time, index and text; start and end."""
    p, _ = setup()
    chunks: list[tuple[float, int, str]] = []
    p.add_callback("task_progress", lambda t: chunks.append(
        (now(), (t.progress or {})["index"], (t.progress or {})["text"])))
    log = EventLog(p)
    await p.start()
    task_id = await p.submit_task(1, "chat_completion", {"message": message}, task_id="s-1")
    final = await p.wait_for_task(task_id, timeout=60)
    await p.stop(drain_timeout_s=0)
    return {"chunks": chunks, "events": log.rows, "final": final}


async def wait_demo() -> dict[str, Any]:
    """When does the caller learn the result: `wait_for_task` against the chapter's
    fixed `asyncio.sleep(5)` and a look at the status afterwards."""
    p, _ = setup()
    log = EventLog(p)
    await p.start()
    ids = [await p.submit_task(1, "chat_completion", {"message": f"消息 {i}"}, task_id=f"w-{i}")
           for i in range(3)]
    async def chapter_style() -> dict[str, str]:  # the chapter's demo: sleep 5 s, then look
        await asyncio.sleep(5)
        return {t: (await p.get_task_status(t) or {}).get("status", "?") for t in ids}
    at_5s = asyncio.create_task(chapter_style())
    woken = {}
    for task_id in ids:
        await p.wait_for_task(task_id, timeout=60)
        woken[task_id] = round(now(), 2)
    done = {task_id: t for t, event, task_id, *_ in log.rows if event == "completed"}
    seen_at_5s = await at_5s
    await p.stop(drain_timeout_s=0)
    return {"completed_at": done, "wait_for_task_returned_at": woken, "status_at_5s": seen_at_5s}


async def cancel_demo() -> dict[str, Any]:
    """One worker; "run-1" is running and "wait-2" waits behind it when both are
    cancelled at t=0.5 s; "done-0" finished earlier. Returns what each cancel said, the
    final statuses, the events and the backend's counters."""
    p, api = setup(workers=1)
    log = EventLog(p)
    await p.start()
    await p.submit_task(1, "translation", {"text": "hi", "target_language": "zh"},
                        task_id="done-0")
    await p.wait_for_task("done-0", timeout=60)
    t0 = now()
    for task_id in ("run-1", "wait-2"):
        await p.submit_task(1, "chat_completion", {"message": "写一首长诗"}, task_id=task_id)
    await asyncio.sleep(0.5)
    said = {task_id: await p.cancel_task(task_id) for task_id in ("run-1", "wait-2", "done-0")}
    await asyncio.sleep(30)
    statuses = {t: (await p.get_task_status(t) or {}).get("status") for t in said}
    stats = api.stats()
    await p.stop(drain_timeout_s=0)
    events = [(round(t - t0, 2) + 0.0, e, task_id) for t, e, task_id, *_ in log.rows
              if task_id != "done-0"]
    return {"cancel_returned": said, "statuses": statuses, "events": events,
            "backend_calls": stats.calls, "backend_cancelled": stats.cancelled}
