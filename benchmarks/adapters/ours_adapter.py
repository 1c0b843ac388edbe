"""Our queue (chatroom_async), driven through its public `AsyncAIProcessor` API.

The client is `AsyncAIProcessor(redis_url=…, namespace=<name>, max_workers=0)`, which runs
no workers; `submit_task` submits one request and `submit_many` (when it exists) a batch.
The worker process is `benchmarks.workers.ours` (see there). Every call into the package
is in `make_processor`, `enqueue`, `enqueue_batch` here and `build_processor` in the worker
module, so an API change is a one-place fix.
"""

from __future__ import annotations

import inspect
from typing import Any

from benchmarks.adapters.base import QueueAdapter
from benchmarks.settings import PREFETCH, REQUEST_DATA, REQUEST_TYPE, USER_ID, request_data

REQUEST = {"user_id": USER_ID, "request_type": REQUEST_TYPE, "request_data": REQUEST_DATA}


def make_processor(redis_url: str, namespace: str, max_workers: int, **extra: Any) -> Any:
    """An AsyncAIProcessor (imported here, so a missing package fails only this queue)."""
    from chatroom_async import AsyncAIProcessor

    return AsyncAIProcessor(
        redis_url=redis_url, namespace=namespace, max_workers=max_workers, **extra
    )


async def maybe_await(value: Any) -> Any:
    """`value`, awaited if it is awaitable (for calls that may be sync or async)."""
    return await value if inspect.isawaitable(value) else value


class OursAdapter(QueueAdapter):
    """Namespace = the run's name; every key of ours is assumed to contain the namespace."""

    label = "ours"
    packages = ("chatroom_async", "redis", "hiredis")
    worker_module = "benchmarks.workers.ours"
    settings_note = (
        "`AsyncAIProcessor(max_workers=<in flight>, backend=FunctionBackend(probe))` "
        "in the worker process; client with max_workers=0"
    )

    def __init__(self, redis_url: str, name: str) -> None:
        super().__init__(redis_url, name)
        self._client: Any = None

    async def open(self) -> None:
        self._client = make_processor(self.redis_url, self.name, max_workers=0)
        await maybe_await(self._client.start())

    async def close(self) -> None:
        if self._client is not None:
            await maybe_await(self._client.stop())

    async def enqueue(self, index: int | None = None) -> object:
        if index is None:
            return await self._client.submit_task(**REQUEST)
        return await self._client.submit_task(**{**REQUEST, "request_data": request_data(index)})

    @property
    def supports_batch(self) -> bool:
        return callable(getattr(self._client, "submit_many", None))

    async def enqueue_batch(self, count: int) -> None:
        task_ids = await self._client.submit_many([dict(REQUEST) for _ in range(count)])
        if len(task_ids) != count:
            raise RuntimeError(f"submit_many returned {len(task_ids)} ids for {count} requests")


class OursPrefetchAdapter(OursAdapter):
    """Ours with `ProcessorSettings(prefetch=PREFETCH, prefetch_below_s=None)` in the worker:
    a column of its own for the workloads where the worker's settings matter, set apart from
    "ours / best peer"."""

    label = "ours-prefetch"
    settings_note = (
        f"as ours, with `ProcessorSettings(prefetch={PREFETCH}, prefetch_below_s=None)` in the "
        "worker process (holds whatever the tasks take; priority stays strict: see "
        "`ProcessorSettings.prefetch`)"
    )
    workloads = ("noop", "redis1", "io", "io1000")

    def worker_argv(self, kind: str, concurrency: int, probe_key: str) -> list[str]:
        return [*super().worker_argv(kind, concurrency, probe_key), "--prefetch", str(PREFETCH)]
