"""Shared fixtures: every Redis test runs on the embedded fakeredis and on the real server.

The real server is CHATROOM_ASYNC_REDIS_URL (default redis://127.0.0.1:6379/0). Without one
answering, its tests are skipped with the reason, unless CHATROOM_ASYNC_REQUIRE_REDIS=1
(set by CI), which turns the skip into a failure. Each test gets its own namespace and
deletes only its own keys.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from chatroom_async import AsyncAIProcessor, ProcessorSettings
from chatroom_async.store.embedded import embedded_redis
from chatroom_async.store.keys import Keys
from chatroom_async.store.queue import TaskQueue

REAL_URL = os.environ.get("CHATROOM_ASYNC_REDIS_URL", "redis://127.0.0.1:6379/0")
REQUIRE_REAL = os.environ.get("CHATROOM_ASYNC_REQUIRE_REDIS") == "1"


async def _real_client(**options: Any) -> Redis:
    client = Redis.from_url(REAL_URL, decode_responses=True, **options)
    try:
        await client.ping()
    except Exception as exc:  # noqa: BLE001
        await client.aclose()
        reason = f"no Redis at {REAL_URL} ({type(exc).__name__}: {exc})"
        if REQUIRE_REAL:
            pytest.fail(f"CHATROOM_ASYNC_REQUIRE_REDIS=1 but {reason}")
        pytest.skip(reason)
    return client


@pytest.fixture
async def real_redis() -> AsyncIterator[Redis]:
    """The real server only (for what fakeredis cannot show, such as a closed socket)."""
    client = await _real_client()
    yield client
    await client.aclose()


@pytest.fixture
async def real_redis_short_timeout() -> AsyncIterator[Redis]:
    """The real server, through a client whose socket timeout is 0.3 s."""
    client = await _real_client(socket_timeout=0.3)
    yield client
    await client.aclose()


@pytest.fixture(params=["fake", "real"])
async def redis(request: pytest.FixtureRequest) -> AsyncIterator[Redis]:
    """A Redis client: the embedded fakeredis, then the real server."""
    if request.param == "fake":
        client: Redis = embedded_redis()
    else:
        client = await _real_client()
    yield client
    await client.aclose()


@pytest.fixture
def namespace() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def queue(redis: Redis, namespace: str) -> AsyncIterator[TaskQueue]:
    q = TaskQueue(redis, Keys(namespace))
    yield q
    await q.purge()
    await q.close()


MakeProcessor = Callable[..., Awaitable[AsyncAIProcessor]]


@pytest.fixture
async def make_processor(redis: Redis, namespace: str) -> AsyncIterator[MakeProcessor]:
    """Start processors sharing this test's Redis and namespace; all stopped at the end."""
    started: list[AsyncAIProcessor] = []

    async def make(max_workers: int = 4, backend: Any = None, **settings: Any) -> AsyncAIProcessor:
        kwargs = {k: settings.pop(k) for k in ("scheduler", "clock", "seed", "user_context")
                  if k in settings}
        proc = AsyncAIProcessor(max_workers=max_workers, backend=backend, namespace=namespace,
                                redis=redis, settings=ProcessorSettings(**settings), **kwargs)
        await proc.start()
        started.append(proc)
        return proc

    yield make
    for proc in reversed(started):
        await proc.stop(drain_timeout_s=1.0)
    await TaskQueue(redis, Keys(namespace)).purge()


class InFlight:
    """Counts the calls inside `with in_flight:` and the most there were at once (a
    backend's concurrency, as a worker pool sees it)."""

    def __init__(self) -> None:
        self.now = self.peak = 0

    def __enter__(self) -> None:
        self.now += 1
        self.peak = max(self.peak, self.now)

    def __exit__(self, *exc: object) -> None:
        self.now -= 1


class Gate:
    """A backend whose calls block until released; records who ran and who was cancelled."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started: list[str] = []
        self.cancelled: list[str] = []
        self.entered = asyncio.Event()

    async def complete(self, request: Any) -> dict[str, Any]:
        self.started.append(request.task_id)
        self.entered.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.append(request.task_id)
            raise
        return {"response": f"done {request.task_id}"}


async def wait_until(predicate: Callable[[], bool], event: asyncio.Event,
                     timeout: float = 10.0) -> None:
    """Wait on `event` (set by callbacks) until `predicate()` holds. No sleeping."""
    async with asyncio.timeout(timeout):
        while not predicate():
            event.clear()
            if predicate():
                return
            await event.wait()
