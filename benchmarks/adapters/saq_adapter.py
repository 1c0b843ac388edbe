"""SAQ: `Queue.enqueue`, one job at a time.

SAQ has no batch enqueue: `Queue.map` gathers single enqueues and then waits for the
results, and `Queue.batch()` only groups jobs for cancellation, so batch is n/a.
"""

from __future__ import annotations

import itertools

from saq import Queue

from benchmarks.adapters.base import QueueAdapter
from benchmarks.settings import REQUEST_TYPE, TASK_NAME, USER_ID, request_data


class SaqAdapter(QueueAdapter):
    """Queue name = the run's name; job keys `<name>:<n>`, so even `saq:abort:<key>` has it."""

    label = "saq"
    packages = ("saq", "redis", "hiredis")
    worker_module = "benchmarks.workers.saq"
    settings_note = (
        "`Worker(queue, concurrency=<in flight>)`; defaults otherwise: blocking BLMOVE "
        "dequeue, job timeout 10 s, ttl 600 s, retries 1, JSON serializer"
    )

    def __init__(self, redis_url: str, name: str) -> None:
        super().__init__(redis_url, name)
        self._queue: Queue | None = None
        self._keys = itertools.count()

    async def open(self) -> None:
        self._queue = Queue.from_url(self.redis_url, name=self.name)
        await self._queue.connect()

    async def close(self) -> None:
        if self._queue is not None:
            await self._queue.disconnect()

    async def enqueue(self, index: int | None = None) -> object:
        job = await self._queue.enqueue(
            TASK_NAME,
            key=f"{self.name}:{next(self._keys)}",
            user_id=USER_ID,
            request_type=REQUEST_TYPE,
            request_data=request_data(index),
        )
        if job is None:
            raise RuntimeError("SAQ refused a job (duplicate key)")
        return job
