"""Taskiq with taskiq-redis's `RedisStreamBroker` (acknowledged, at-least-once delivery).

taskiq-redis offers three brokers: `PubSubBroker` (broadcast, fire-and-forget),
`ListQueueBroker` (BRPOP: a message is lost if the worker dies mid-task; the `taskiq-list`
column) and `RedisStreamBroker` (a consumer group on a Redis stream; a message is XACKed
after its result is saved and re-claimed with XAUTOCLAIM if a worker dies). The last is
the reliable one, so it is this column, with `RedisAsyncResultBackend` storing results (as
arq and SAQ do). Taskiq has no batch kick: batch is n/a.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from taskiq import AsyncBroker
from taskiq_redis import ListQueueBroker, RedisAsyncResultBackend, RedisStreamBroker

from benchmarks.adapters.base import QueueAdapter
from benchmarks.settings import INDEX_FIELD, REQUEST_TYPE, TASK_NAME, USER_ID, request_data

BROKERS: dict[str, Any] = {"stream": RedisStreamBroker, "list": ListQueueBroker}
#: taskiq-redis's README "highly recommends" an expiry for results; arq keeps its 3,600 s
RESULT_EX_TIME = 3600


def make_broker(
    redis_url: str,
    name: str,
    body: Callable[[int | None], Awaitable[None]],
    *,
    kind: str = "stream",
    results: bool = True,
    pool: int | None = None,
    **broker_options: Any,
) -> AsyncBroker:
    """The broker both sides use: queue `<name>`, results under `<name>:result:<task id>`.

    `body` is what the `chat` task does, given the task's index (the probe in a worker;
    never called on a client).
    `kind` picks the broker ("stream" or "list"); `results=False` drops the result backend
    and `pool` sets both connection pools' size (taskiq-redis's `max_connection_pool_size`;
    None keeps redis-py's BlockingConnectionPool default of 50). The keyword options are
    for the A/B runs of `benchmarks.peer_ab`; the columns use the defaults.
    """
    broker = BROKERS[kind](
        redis_url, queue_name=name, max_connection_pool_size=pool, **broker_options
    )
    if results:
        backend = RedisAsyncResultBackend(
            redis_url,
            prefix_str=f"{name}:result",
            result_ex_time=RESULT_EX_TIME,
            max_connection_pool_size=pool,
        )
        broker = broker.with_result_backend(backend)

    async def chat(user_id: int, request_type: str, request_data: dict) -> None:
        await body(request_data.get(INDEX_FIELD))

    broker.register_task(chat, task_name=TASK_NAME)
    return broker


async def _never_called(index: int | None) -> None:
    raise RuntimeError("the client does not run tasks")


class TaskiqAdapter(QueueAdapter):
    """Stream = the run's name; the consumer group is created before anything is kicked."""

    label = "taskiq"
    broker_kind = "stream"
    packages = ("taskiq", "taskiq-redis", "redis", "hiredis")
    worker_module = "benchmarks.workers.taskiq"
    settings_note = (
        "`RedisStreamBroker` + `RedisAsyncResultBackend(result_ex_time=3600)`, worker via "
        "`taskiq.api.run_receiver_task(max_async_tasks=<in flight>, max_prefetch=<in "
        "flight>)`; defaults otherwise: ack when saved, xread_count=100, pool size 50, "
        "pickle results"
    )

    def __init__(self, redis_url: str, name: str) -> None:
        super().__init__(redis_url, name)
        self._broker = make_broker(redis_url, name, _never_called, kind=self.broker_kind)
        self._chat = self._broker.find_task(TASK_NAME)

    async def open(self) -> None:
        # startup() creates the stream's consumer group at "$": only messages kicked after
        # it are delivered, so it must happen before the first kick (a worker started
        # later then finds the tasks queued before it).
        await self._broker.startup()

    async def close(self) -> None:
        await self._broker.shutdown()

    async def enqueue(self, index: int | None = None) -> object:
        return await self._chat.kiq(
            user_id=USER_ID, request_type=REQUEST_TYPE, request_data=request_data(index)
        )
