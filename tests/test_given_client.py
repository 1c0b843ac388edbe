"""A client passed in as `redis=` that retries commands: the processor never sends twice.

Real Redis only: the connection is made to fail after the command was sent (the server ran
it), which is where a retrying client would run a script a second time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.connection import Connection, ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError

from chatroom_async import AsyncAIProcessor, ProcessorSettings
from chatroom_async.store.queue import SOURCES
from tests.conftest import REAL_URL, _real_client

CHAT = {"user_id": 1, "request_type": "chat_completion", "request_data": {"message": "hi"}}


class ReplyLostOnce(Connection):
    """Once armed, the next script call reaches the server but its reply is lost."""

    armed = False

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        data = command if isinstance(command, bytes) else b"".join(command)
        self._lose_reply = ReplyLostOnce.armed and b"EVALSHA" in data
        ReplyLostOnce.armed = ReplyLostOnce.armed and not self._lose_reply
        await super().send_packed_command(command, check_health)

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        if getattr(self, "_lose_reply", False):
            self._lose_reply = False
            await super().read_response(*args, **kwargs)  # the server did run it
            await self.disconnect()
            raise RedisConnectionError("connection lost before the reply")
        return await super().read_response(*args, **kwargs)


@pytest.fixture
async def retrying_client() -> AsyncIterator[Redis]:
    probe = await _real_client()  # skips (or fails under CI) without a server
    await probe.aclose()
    url = Redis.from_url(REAL_URL).connection_pool.connection_kwargs
    # What `Redis(host=...)` sets up (a retry policy included), on our connection class.
    plain = Redis(host=url.get("host", "127.0.0.1"), port=url.get("port", 6379),
                  db=url.get("db", 0), password=url.get("password"), decode_responses=True)
    kwargs = dict(plain.connection_pool.connection_kwargs)
    await plain.aclose()
    client = Redis.from_pool(ConnectionPool(connection_class=ReplyLostOnce, **kwargs))
    retry = client.get_retry()
    assert retry is not None and retry.get_retries() > 0
    yield client
    ReplyLostOnce.armed = False
    await client.aclose()


async def test_a_lost_reply_is_an_error_not_a_second_run(retrying_client: Redis,
                                                         namespace: str) -> None:
    proc = AsyncAIProcessor(max_workers=0, redis=retrying_client, namespace=namespace,
                            settings=ProcessorSettings(publish_events=False))
    async with proc:
        assert proc.queue is not None
        try:
            await _lost_replies_raise(proc, retrying_client)
        finally:
            await proc.queue.purge()
    assert await retrying_client.ping()  # the caller's client is left open and working


async def _lost_replies_raise(proc: AsyncAIProcessor, retrying_client: Redis) -> None:
    assert proc.redis is not None
    assert proc.redis is not retrying_client  # a client of its own, no retries
    task_id = await proc.submit_task(**CHAT)
    await proc.redis.script_load(SOURCES["cancel"])  # no NOSCRIPT round on the way

    ReplyLostOnce.armed = True  # a retrying client would cancel again and answer False
    with pytest.raises(RedisConnectionError):
        await proc.cancel_task(task_id)
    assert (await proc.get_task_status(task_id))["status"] == "cancelled"  # type: ignore[index]

    ReplyLostOnce.armed = True  # ... or report its own new ids as taken
    with pytest.raises(RedisConnectionError):
        await proc.submit_many([CHAT, CHAT])
    assert (await proc.get_stats())["current_queue_size"] == 2  # queued once each


def _retries(client: Redis) -> int:
    return client.connection_pool.make_connection().retry.get_retries()  # type: ignore[no-any-return,no-untyped-call]


async def test_which_clients_are_replaced_and_how() -> None:
    from redis.asyncio import BlockingConnectionPool
    from redis.asyncio.retry import Retry
    from redis.asyncio.sentinel import Sentinel
    from redis.backoff import NoBackoff

    from chatroom_async.errors import ProcessorError
    from chatroom_async.store.embedded import embedded_redis
    from chatroom_async.store.lane import without_retries

    kept = [Redis.from_url("redis://127.0.0.1:6379/3", decode_responses=True), embedded_redis(),
            Redis(host="127.0.0.1", retry=Retry(NoBackoff(), 0))]
    for client in kept:
        assert without_retries(client) is None
        await client.aclose()

    replaced = [Redis(host="127.0.0.1", db=3, decode_responses=True),
                Redis.from_url("redis://127.0.0.1:6379/3", retry_on_timeout=True),
                Redis.from_pool(BlockingConnectionPool(host="127.0.0.1", db=3, timeout=3,
                                                       retry=Retry(NoBackoff(), 2)))]
    for client in replaced:
        assert _retries(client) > 0
        own = without_retries(client)
        assert own is not None and _retries(own) == 0
        assert type(own.connection_pool) is type(client.connection_pool)
        assert own.connection_pool.connection_kwargs["db"] == 3
        if isinstance(client.connection_pool, BlockingConnectionPool):
            assert own.connection_pool.timeout == 3  # type: ignore[attr-defined]
        await own.aclose()
        await client.aclose()

    sentinel = Sentinel([("127.0.0.1", 26379)]).master_for(
        "chat", retry=Retry(NoBackoff(), 3))
    with pytest.raises(ProcessorError, match="retry=Retry"):
        without_retries(sentinel)
    await sentinel.aclose()
