"""Where the I/O workload's lost time goes: the benchmark's workload 3, run in one process
with a stamp at the start and end of every task body.

3,000 tasks that each `await asyncio.sleep(0.1)` are queued, then one worker with 100
slots drains them. With perfect slots that takes 3,000 × 0.1 s / 100 = 3.0 s; every
slot-second beyond that is lost in one of two places, which this script separates:

* **late wake-ups**: a 0.1 s sleep that ends after more than 0.1 s. An idle event loop
  waits on epoll in whole milliseconds (0–1 ms late), and a busy one runs the other tasks
  of the wave first;
* **gaps**: a slot with no task, between the end of one task and the start of the next
  (recording the outcome, claiming the next task, starting it), plus the slots that
  idle at the start until the first wave has started and at the very end while the last
  tasks finish.

With `--stages` it also splits the gap of a task whose outcome was recorded by a call that
claimed successors: from its end to the start of that call (the outbox busy with earlier
calls), the call itself, and from the call's reply to the start of the tasks it claimed (the
loop busy with the wave). The timing wrappers cost a little, so the efficiency of such a
run reads a little lower.

It prints the efficiency (the benchmark's figure: 1st start → last end, of the ideal),
both losses per task, the worker's CPU time per task, the server time per EVALSHA (every
script the worker runs: claims, finishes, finish-and-claims, renewals) and per ZADD
command inside them (`INFO commandstats`, server-wide: other clients of the same server
add to both). A script that prints figures, not a test. Run from the repository root:

    .venv/bin/python benchmarks/io_anatomy.py [--redis-url URL] [--prefetch N] [--repeat R]
        [--stages] [--loop auto|asyncio|uvloop]

`--loop` is the worker command's (`chatroom_async.eventloop`): auto takes uvloop when it is
installed. `--prefetch N` holds up to N tasks whatever they take (`prefetch_below_s=None`).

It writes only keys under its own namespace (`anatomy-<hex>`) and deletes them at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/io_anatomy.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis.asyncio as aioredis

from benchmarks.settings import DEFAULT_REDIS_URL, REQUEST_DATA, REQUEST_TYPE, USER_ID
from chatroom_async import AsyncAIProcessor, ProcessorSettings, eventloop
from chatroom_async.backend import FunctionBackend
from chatroom_async.store.keys import Keys
from chatroom_async.store.queue import TaskQueue


async def _server_time(client: aioredis.Redis) -> dict[str, tuple[int, int]]:
    """Calls and microseconds per command, from `INFO commandstats`."""
    info = await client.info("commandstats")
    return {name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
            for name, v in info.items()}


class Stages:
    """Stamps for `--stages`: each task's start and end, each outcome's submit, and each
    finish-and-claim call's start, reply and what it recorded and claimed."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self.calls: list[tuple[float, float, list[str], list[str]]] = []

    def attach(self, worker: AsyncAIProcessor) -> None:
        queue = worker.queue
        assert queue is not None
        original = queue.finish_and_claim

        async def finish_and_claim(outcomes: list[Any], **kwargs: Any) -> Any:
            began = time.perf_counter()
            recorded, claimed = await original(outcomes, **kwargs)
            self.calls.append((began, time.perf_counter(), [o.task_id for o in outcomes],
                               [c.task_id for c in claimed.claimed]))
            return recorded, claimed

        queue.finish_and_claim = finish_and_claim  # type: ignore[method-assign]

    def figures(self) -> dict[str, float]:
        waits, calls, starts = [], [], []
        for began, replied, recorded, claimed in self.calls:
            calls.append(replied - began)
            waits += [began - self.ended[t] for t in recorded if t in self.ended]
            starts += [self.started[t] - replied for t in claimed if t in self.started]
        return {"stage_end_to_call_ms": 1e3 * statistics.mean(waits),
                "stage_call_ms": 1e3 * statistics.mean(calls),
                "stage_reply_to_start_ms": 1e3 * statistics.mean(starts)}


async def measure(url: str, tasks: int, sleep_s: float, slots: int,
                  prefetch: int, stages: bool = False) -> dict[str, float]:
    """Queue `tasks`, drain them with one worker, and return the figures."""
    namespace = f"anatomy-{uuid.uuid4().hex[:8]}"
    admin = aioredis.Redis.from_url(url, decode_responses=True)
    spans: list[tuple[float, float]] = []
    all_done = asyncio.Event()
    stamps = Stages() if stages else None

    async def body(request: Any) -> dict[str, bool]:
        began = time.perf_counter()
        await asyncio.sleep(sleep_s)
        spans.append((began, time.perf_counter()))
        if stamps is not None:
            stamps.started[request.task_id], stamps.ended[request.task_id] = spans[-1]
        if len(spans) == tasks:
            all_done.set()
        return {"ok": True}

    client = AsyncAIProcessor(redis_url=url, namespace=namespace, max_workers=0)
    worker = AsyncAIProcessor(redis_url=url, namespace=namespace, max_workers=slots,
                              backend=FunctionBackend(body),
                              settings=ProcessorSettings(prefetch=prefetch,
                                                         prefetch_below_s=None))
    try:
        await client.start()
        request = {"user_id": USER_ID, "request_type": REQUEST_TYPE,
                   "request_data": REQUEST_DATA}
        for first in range(0, tasks, 100):
            await client.submit_many([dict(request) for _ in range(min(100, tasks - first))])
        await client.stop()  # only the worker runs on this loop while it is timed
        server_before = await _server_time(admin)
        cpu_before = time.process_time()
        await worker.start()
        if stamps is not None:
            stamps.attach(worker)
        # Generous: the ideal is tasks × sleep / slots; a task lost for good would hang.
        await asyncio.wait_for(all_done.wait(), timeout=60 + 10 * tasks * sleep_s / slots)
        cpu = time.process_time() - cpu_before
        server_after = await _server_time(admin)
    finally:  # both stopped before the purge, so that neither writes a key after it
        await worker.stop(drain_timeout_s=0)
        await client.stop()
        await TaskQueue(admin, Keys(namespace)).purge()
        await admin.aclose()

    first_start = min(began for began, _ in spans)
    elapsed = max(ended for _, ended in spans) - first_start
    late = sum(ended - began - sleep_s for began, ended in spans)
    lost = elapsed * slots - tasks * sleep_s  # slot-seconds beyond the ideal
    figures = {
        "efficiency_percent": 100 * tasks * sleep_s / slots / elapsed,
        "late_wakeup_ms_per_task": 1e3 * late / tasks,
        "gap_ms_per_task": 1e3 * (lost - late) / tasks,
        "worker_cpu_us_per_task": 1e6 * cpu / tasks,
    }
    for command in ("evalsha", "zadd"):
        calls_before, usec_before = server_before.get(command, (0, 0))
        calls, usec = server_after.get(command, (0, 0))
        if calls > calls_before:
            figures[f"server_us_per_{command}"] = (usec - usec_before) / (calls - calls_before)
    if stamps is not None:
        figures.update(stamps.figures())
    return figures


async def _loop_name() -> str:
    return eventloop.loop_name()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--sleep", type=float, default=0.1, help="seconds per task")
    parser.add_argument("--slots", type=int, default=100, help="tasks in flight")
    parser.add_argument("--prefetch", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--stages", action="store_true",
                        help="also time the stages of the gap (a little slower)")
    parser.add_argument("--loop", choices=eventloop.LOOPS, default="auto",
                        help="the worker command's --loop (default auto: uvloop if installed)")
    args = parser.parse_args()
    loop = eventloop.run(_loop_name(), args.loop)
    runs = [eventloop.run(measure(args.redis_url, args.tasks, args.sleep, args.slots,
                                  args.prefetch, args.stages), args.loop)
            for _ in range(args.repeat)]
    print(f"{args.tasks} tasks of {args.sleep:g} s, {args.slots} in flight, "
          f"prefetch={args.prefetch}, {loop}; {args.repeat} runs (min / median / max):")
    for name in runs[0]:
        values = sorted(run[name] for run in runs if name in run)
        print(f"  {name:26s} {values[0]:8.2f} {statistics.median(values):8.2f} "
              f"{values[-1]:8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
