"""The measuring probe: what every benchmark task does, and how the runner reads it.

Inside a worker process the probe counts task starts and ends in memory and flushes
the counters every 10 ms into one Redis hash (`<key>:progress`, fields `<pid>:started`,
`<pid>:done`, `<pid>:first`, `<pid>:last`, `<pid>:ready`). So completion is counted in
Redis at a cost of one HSET per 10 ms per worker, the same for every queue, instead of one
round trip per task. The `stamp` kind also pushes its start time (`time.time()`) onto
`<key>:stamps` at once, for the pickup-latency workload.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from benchmarks.settings import HOLD_SECONDS, KINDS, SLEEP_SECONDS

FLUSH_INTERVAL = 0.01


class Probe:
    """Runs one task body of the given kind and keeps the counters (worker side)."""

    def __init__(self, redis_url: str, key: str, kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown task kind {kind!r}; expected one of {KINDS}")
        self.redis = aioredis.from_url(redis_url)
        self.key = key
        self.kind = kind
        self.pid = os.getpid()
        self.started = 0
        self.done = 0
        self.first_start = 0.0
        self.last_done = 0.0
        self._flusher: asyncio.Task[None] | None = None

    async def run_task(self) -> None:
        """The task body: count the start, do the kind's work, count the end."""
        now = time.time()
        if not self.started:
            self.first_start = now
        self.started += 1
        if self.kind == "sleep":
            await asyncio.sleep(SLEEP_SECONDS)
        elif self.kind == "hold":
            await asyncio.sleep(HOLD_SECONDS)
        elif self.kind == "stamp":
            await self.redis.rpush(f"{self.key}:stamps", repr(now))
        self.done += 1
        self.last_done = time.time()

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
        }


@dataclass(frozen=True)
class Progress:
    """The probe counters summed over all workers of one workload (runner side)."""

    ready: int = 0
    started: int = 0
    done: int = 0
    first_start: float = 0.0  # earliest task start, epoch seconds (0: none yet)
    last_done: float = 0.0  # latest task end, epoch seconds

    @property
    def in_flight(self) -> int:
        return self.started - self.done


def parse_progress(raw: dict[bytes, bytes]) -> Progress:
    """Sum a `<key>:progress` hash (as HGETALL returns it) into one Progress."""
    sums = {"ready": 0, "started": 0, "done": 0}
    firsts, lasts = [], []
    for field, value in raw.items():
        name = field.decode().rsplit(":", 1)[1]
        if name == "ready":
            sums["ready"] += 1
        elif name in sums:
            sums[name] += int(value)
        elif name == "first" and float(value) > 0:
            firsts.append(float(value))
        elif name == "last":
            lasts.append(float(value))
    return Progress(first_start=min(firsts, default=0.0), last_done=max(lasts, default=0.0), **sums)


async def read_progress(client: aioredis.Redis, key: str) -> Progress:
    """The current counters of the workers that report under `key`."""
    return parse_progress(await client.hgetall(f"{key}:progress"))
