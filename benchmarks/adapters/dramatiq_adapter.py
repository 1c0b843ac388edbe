"""Dramatiq with its Redis broker, an async actor, and results in Redis.

Dramatiq's client API is synchronous: `actor.send(...)` runs one EVALSHA of the broker's
dispatch script on a redis-py (sync) connection, so `enqueue` blocks the event loop for
that round trip, which is what a caller in an asyncio program gets. Every key carries the
run's name: the broker's namespace is `<name>` and the results' `<name>-results`
(`use_namespace_prefix_keys=True`, so result keys show it). No batch send: batch is n/a
(`group(...).run()` sends the messages one by one).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import AsyncIO
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend

from benchmarks.adapters.base import QueueAdapter
from benchmarks.settings import INDEX_FIELD, REQUEST_TYPE, TASK_NAME, USER_ID, request_data


def make_broker(
    redis_url: str,
    name: str,
    body: Callable[[int | None], Awaitable[None]],
    *,
    worker: bool = False,
    results: bool = True,
) -> tuple[RedisBroker, Any]:
    """The broker both sides use and its `chat` actor (storing results unless told not to).

    `body` is what the actor does, given the task's index (the probe in a worker; never
    called on a client). A
    worker's broker also gets the `AsyncIO` middleware, which runs async actors on one
    event-loop thread; each worker thread blocks until its actor's coroutine is done.
    """
    broker = RedisBroker(url=redis_url, namespace=name)
    if results:
        backend = RedisBackend(
            url=redis_url, namespace=f"{name}-results", use_namespace_prefix_keys=True
        )
        broker.add_middleware(Results(backend=backend))
    if worker:
        broker.add_middleware(AsyncIO())

    async def chat(user_id: int, request_type: str, request_data: dict) -> None:
        await body(request_data.get(INDEX_FIELD))

    # store_results is an option only the Results middleware knows
    options = {"store_results": True} if results else {}
    actor = dramatiq.actor(chat, actor_name=TASK_NAME, broker=broker, **options)
    return broker, actor


async def _never_called(index: int | None) -> None:
    raise RuntimeError("the client does not run tasks")


class DramatiqAdapter(QueueAdapter):
    """Namespace = the run's name; queue "default"."""

    label = "dramatiq"
    packages = ("dramatiq", "redis", "hiredis")
    worker_module = "benchmarks.workers.dramatiq"
    settings_note = (
        "`RedisBroker` + `Results(backend=RedisBackend)` (actor `store_results=True`), "
        "`AsyncIO` middleware, async actor; worker `dramatiq.Worker(broker, "
        "worker_threads=<in flight>)` (an async actor holds its worker thread until it "
        "returns); defaults otherwise: prefetch 2 x threads, worker_timeout 1 s (idle "
        "polling backs off up to it), heartbeat 60 s, time limit 10 min, max_retries 20"
    )

    def __init__(self, redis_url: str, name: str) -> None:
        super().__init__(redis_url, name)
        self._broker, self._actor = make_broker(redis_url, name, _never_called)

    async def open(self) -> None:
        self._broker.client.ping()

    async def close(self) -> None:
        self._broker.close()

    async def enqueue(self, index: int | None = None) -> object:
        return self._actor.send(
            user_id=USER_ID, request_type=REQUEST_TYPE, request_data=request_data(index)
        )
