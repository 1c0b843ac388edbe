"""arq: `ArqRedis.enqueue_job`, one job at a time (arq has no batch enqueue)."""

from __future__ import annotations

import itertools

from arq.connections import ArqRedis, RedisSettings, create_pool

from benchmarks.adapters.base import QueueAdapter
from benchmarks.settings import REQUEST_TYPE, TASK_NAME, USER_ID, request_data


class ArqAdapter(QueueAdapter):
    """Queue name = the run's name; job ids `<name>:<n>` so cleanup finds arq's job keys."""

    label = "arq"
    packages = ("arq", "redis", "hiredis")
    worker_module = "benchmarks.workers.arq"
    settings_note = (
        "`Worker(max_jobs=<in flight>)`; defaults otherwise: poll_delay=0.5 s, "
        "queue_read_limit=max(5*max_jobs, 100), keep_result=3600 s, pickle serializer"
    )

    def __init__(self, redis_url: str, name: str) -> None:
        super().__init__(redis_url, name)
        self._pool: ArqRedis | None = None
        self._ids = itertools.count()

    async def open(self) -> None:
        settings = RedisSettings.from_dsn(self.redis_url)
        self._pool = await create_pool(settings, default_queue_name=self.name)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()

    async def enqueue(self, index: int | None = None) -> object:
        job = await self._pool.enqueue_job(
            TASK_NAME,
            user_id=USER_ID,
            request_type=REQUEST_TYPE,
            request_data=request_data(index),
            _job_id=f"{self.name}:{next(self._ids)}",
        )
        if job is None:
            raise RuntimeError("arq refused a job (duplicate id)")
        return job
