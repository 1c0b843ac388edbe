"""What following a streamed answer costs: Redis writes per answer and the latency from the
backend's chunk to a follower, for each coalescing interval.

A worker (one processor, N slots) streams N answers at once, each `--tokens` chunks at
`--rate` chunks per second; a client (a second processor, its own connections) follows
every task with `processor.follow`. The backend stamps each chunk when it yields it; the
follower stamps each progress event when it arrives, and every chunk in that event gets the
difference. Writes per answer are the task's progress events (each is one script call:
`XADD` to the task's stream, the record's partial text, a `PUBLISH`). A script that prints
figures, not a test. Run from the repository root:

    .venv/bin/python benchmarks/follow_fanout.py [--redis-url URL] [--tasks N]
        [--tokens T] [--rate R] [--intervals 0,0.05,0.1]

It writes only keys under its own namespace (`fanout-<hex>`) and deletes them at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/follow_fanout.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.settings import DEFAULT_REDIS_URL
from chatroom_async import AIRequest, AsyncAIProcessor, EventType, ProcessorSettings, StreamChunk
from chatroom_async.store.keys import Keys
from chatroom_async.store.queue import TaskQueue


class Paced:
    """Streams `tokens` chunks of two characters at `rate` per second; stamps each."""

    def __init__(self, tokens: int, rate: float) -> None:
        self.tokens, self.gap = tokens, 1.0 / rate
        self.sent: dict[tuple[str, int], float] = {}

    async def complete(self, request: AIRequest) -> dict[str, Any]:
        raise NotImplementedError

    async def stream(self, request: AIRequest) -> AsyncIterator[StreamChunk]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(self.tokens):
            await asyncio.sleep(max(0.0, start + (i + 1) * self.gap - loop.time()))
            last = i == self.tokens - 1
            self.sent[(request.task_id, i)] = time.perf_counter()
            yield StreamChunk(i, "字" * 2, "stop" if last else None,
                              result={"response": "字" * 2 * self.tokens} if last else None)


async def follow_one(client: AsyncAIProcessor, task_id: str, backend: Paced,
                     latencies: list[float]) -> int:
    """Follow a task to its end; returns its progress events (its progress writes)."""
    writes = 0
    async for event in client.follow(task_id):
        if event.type is EventType.TASK_PROGRESS:
            now = time.perf_counter()
            writes += 1
            progress = event.task["progress"]
            for i in range(progress["index"], progress["index"] + progress["count"]):
                latencies.append(now - backend.sent[(task_id, i)])
    return writes


async def run(url: str, tasks: int, tokens: int, rate: float, interval: float) -> dict[str, float]:
    namespace = f"fanout-{uuid.uuid4().hex[:8]}"
    backend = Paced(tokens, rate)
    settings = ProcessorSettings(stream_coalesce_s=interval)
    latencies: list[float] = []
    async with AsyncAIProcessor(url, max_workers=tasks, backend=backend, namespace=namespace,
                                settings=settings) as worker, \
            AsyncAIProcessor(url, max_workers=0, namespace=namespace) as client:
        ids = [await client.submit_task(1, "chat_completion", {"message": "hi"})
               for _ in range(tasks)]
        writes = await asyncio.gather(*(follow_one(client, t, backend, latencies) for t in ids))
        assert worker.queue is not None
        await TaskQueue(worker.queue.redis, Keys(namespace)).purge()
    latencies.sort()
    return {"interval_ms": interval * 1000, "tokens": tokens,
            "writes_per_answer": statistics.mean(writes),
            "p50_ms": latencies[len(latencies) // 2] * 1000,
            "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
            "max_ms": latencies[-1] * 1000}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--rate", type=float, default=50.0, help="chunks per second")
    parser.add_argument("--intervals", default="0,0.05,0.1")
    args = parser.parse_args()
    print(f"{args.tasks} answers at once, {args.tokens} chunks each at {args.rate:g}/s, "
          f"on {args.redis_url}")
    print(f"{'interval':>9} {'writes/answer':>14} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for interval in (float(x) for x in args.intervals.split(",")):
        r = await run(args.redis_url, args.tasks, args.tokens, args.rate, interval)
        print(f"{r['interval_ms']:>7.0f}ms {r['writes_per_answer']:>14.1f} {r['p50_ms']:>8.1f} "
              f"{r['p99_ms']:>8.1f} {r['max_ms']:>8.1f}")


if __name__ == "__main__":
    asyncio.run(main())
