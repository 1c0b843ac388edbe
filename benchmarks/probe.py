"""The measuring probe: what every benchmark task does, and how the runner reads it.

Inside a worker process the probe counts task starts and ends in memory and flushes
the counters every 10 ms into one Redis hash (`<key>:progress`, fields `<pid>:started`,
`<pid>:done`, `<pid>:first`, `<pid>:last`, `<pid>:peak`, `<pid>:ready`). So completion is
counted in Redis at a cost of one HSET per 10 ms per worker, the same for every queue,
instead of one round trip per task. Kinds that talk to Redis themselves use the probe's
own client, so the command is the same for every queue: `redis1` does one INCR of
`<key>:incr`; `stamp` pushes its start time (`time.time()`) onto `<key>:stamps` at once,
for the pickup-latency workload; `crash` records each completion of its task index at
once (`<key>:runs`, `<key>:first_done`), because the crash workload kills the worker and a
counter still in memory would die with it.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from benchmarks.settings import (
    CRASH_SECONDS,
    HOLD_SECONDS,
    KINDS,
    LONG_SLEEP_SECONDS,
    SLEEP_SECONDS,
)

FLUSH_INTERVAL = 0.01
# redis-py 8 caps an asyncio pool at 100 connections by default (5.x-7.x did not), and 100
# `redis1` tasks plus the flusher can need 101 at once: the same ample cap for every queue.
MAX_CONNECTIONS = 10_000


class Probe:
    """Runs one task body of the given kind and keeps the counters (worker side)."""

    def __init__(self, redis_url: str, key: str, kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown task kind {kind!r}; expected one of {KINDS}")
        self.redis = aioredis.from_url(redis_url, max_connections=MAX_CONNECTIONS)
        self.key = key
        self.kind = kind
        self.pid = os.getpid()
        self.started = 0
        self.done = 0
        self.first_start = 0.0
        self.last_done = 0.0
        self.peak = 0  # the most tasks in flight at once
        self._flusher: asyncio.Task[None] | None = None

    async def run_task(self, index: int | None = None) -> None:
        """The task body: count the start, do the kind's work, count the end.

        `index` is the task's identity (the `index` field of its request); only the
        `crash` kind needs it.
        """
        now = time.time()
        if not self.started:
            self.first_start = now
        self.started += 1
        self.peak = max(self.peak, self.started - self.done)
        if self.kind == "redis1":
            await self.redis.incr(f"{self.key}:incr")
        elif self.kind == "sleep":
            await asyncio.sleep(SLEEP_SECONDS)
        elif self.kind == "sleep1":
            await asyncio.sleep(LONG_SLEEP_SECONDS)
        elif self.kind == "hold":
            await asyncio.sleep(HOLD_SECONDS)
        elif self.kind == "stamp":
            await self.redis.rpush(f"{self.key}:stamps", repr(now))
        elif self.kind == "crash":
            await asyncio.sleep(CRASH_SECONDS)
            await self._record_completion(index)
        self.done += 1
        self.last_done = time.time()

    async def _record_completion(self, index: int | None) -> None:
        """Count one completion of task `index` and note its first (one round trip)."""
        if index is None:
            raise ValueError("a crash task needs its index (enqueue(index=...))")
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hincrby(f"{self.key}:runs", str(index), 1)
            pipe.hsetnx(f"{self.key}:first_done", str(index), repr(time.time()))
            await pipe.execute()

    async def start(self) -> None:
        """Mark this worker ready and start flushing (call once the worker can take tasks)."""
        await self.redis.hset(f"{self.key}:progress", f"{self.pid}:ready", repr(time.time()))
        self._flusher = asyncio.create_task(self._flush_forever())

    async def _flush_forever(self) -> None:
        seen = (-1, -1)
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            if (self.started, self.done) != seen:
                seen = (self.started, self.done)
                await self.redis.hset(f"{self.key}:progress", mapping=self._fields())

    def _fields(self) -> dict[str, str]:
        return {
            f"{self.pid}:started": str(self.started),
            f"{self.pid}:done": str(self.done),
            f"{self.pid}:first": repr(self.first_start),
            f"{self.pid}:last": repr(self.last_done),
            f"{self.pid}:peak": str(self.peak),
        }


@dataclass(frozen=True)
class Progress:
    """The probe counters summed over all workers of one workload (runner side)."""

    ready: int = 0
    started: int = 0
    done: int = 0
    first_start: float = 0.0  # earliest task start, epoch seconds (0: none yet)
    last_done: float = 0.0  # latest task end, epoch seconds
    peak: int = 0  # the most tasks one worker had in flight at once

    @property
    def in_flight(self) -> int:
        return self.started - self.done


def parse_progress(raw: dict[bytes, bytes]) -> Progress:
    """Sum a `<key>:progress` hash (as HGETALL returns it) into one Progress."""
    sums = {"ready": 0, "started": 0, "done": 0}
    firsts, lasts, peaks = [], [], []
    for field, value in raw.items():
        name = field.decode().rsplit(":", 1)[1]
        if name == "ready":
            sums["ready"] += 1
        elif name == "peak":
            peaks.append(int(value))
        elif name in sums:
            sums[name] += int(value)
        elif name == "first" and float(value) > 0:
            firsts.append(float(value))
        elif name == "last":
            lasts.append(float(value))
    return Progress(
        first_start=min(firsts, default=0.0),
        last_done=max(lasts, default=0.0),
        peak=max(peaks, default=0),
        **sums,
    )


async def read_progress(client: aioredis.Redis, key: str) -> Progress:
    """The current counters of the workers that report under `key`."""
    return parse_progress(await client.hgetall(f"{key}:progress"))


@dataclass(frozen=True)
class Completions:
    """Per task index: how often it completed and when it first did (the crash workload)."""

    runs: dict[int, int]
    first_done: dict[int, float]


async def read_completions(client: aioredis.Redis, key: str) -> Completions:
    """What the `crash` tasks under `key` have recorded so far."""
    runs = await client.hgetall(f"{key}:runs")
    first = await client.hgetall(f"{key}:first_done")
    return Completions(
        runs={int(k): int(v) for k, v in runs.items()},
        first_done={int(k): float(v) for k, v in first.items()},
    )
