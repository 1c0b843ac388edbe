"""The embedded server's fast script path changes speed, never results: the same queue
operations leave the same keys and give the same replies and errors as stock fakeredis."""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from chatroom_async.store import embedded
from chatroom_async.store.embedded import embedded_redis
from chatroom_async.store.keys import Keys
from chatroom_async.store.queue import Outcome, TaskQueue

SPEC = '{"user_id":1,"request_type":"chat_completion","request_data":{"message":"hi"},' \
       '"timeout":30.0,"created_at":0.0}'


def test_the_installed_fakeredis_takes_the_fast_path() -> None:
    # If a fakeredis upgrade moved the internals it relies on, this fails (and the
    # embedded server quietly runs the stock path, slower): look at embedded.py.
    assert embedded.FAST_SCRIPTS
    assert embedded_redis().connection_pool.connection_class.__name__ == "_Connection"


def stock_redis() -> Redis:
    return fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(), decode_responses=True)


def outcome(task_id: str, token: str, kind: str, due: float | None = None) -> Outcome:
    status = {"completed": "completed", "failed": "failed", "retry": "retrying"}[kind]
    return Outcome(task_id, token, kind, {"status": status, "result": f'"{task_id}"'},
                   event_json=f'{{"task_id":"{task_id}"}}', due=due, seconds=0.5)


async def scenario(redis: Redis) -> tuple[list[Any], dict[str, Any]]:
    """Every script, in states that take their branches; returns (replies, final keys)."""
    queue = TaskQueue(redis, Keys("eq"), dead_letter_cap=3)
    replies: list[Any] = []
    try:
        for i, score in enumerate((5.0, 1.0, 3.0, 2.0, 4.0)):
            replies.append(await queue.enqueue(f"t{i}", SPEC, 1 + i % 3, i % 2, score))
        replies.append(await queue.enqueue("t0", SPEC, 2, 0, 9.0))  # duplicate id
        replies.append(await queue.enqueue_many([("m1", SPEC, 3, 1, 0.5), ("t1", SPEC, 2, 0, 1)]))
        first = await queue.claim(now=10.0, lease_s=5, max_count=3, worker_id="A",
                                  extra_deliveries=1)
        replies.append(first)
        a, b, c = first.claimed
        replies.append(await queue.renew([(a.task_id, a.token), ("t0", "A:9")], 12.0))
        replies.append(await queue.finish([outcome(a.task_id, a.token, "completed"),
                                           outcome(b.task_id, b.token, "retry", due=13.0),
                                           outcome("t0", "stale:1", "completed")]))
        replies.append(await queue.finish_and_claim(
            [outcome(c.task_id, c.token, "failed")], publish=True, now=14.0,
            lease_s=5, max_count=2, worker_id="B", extra_deliveries=1))
        replies.append(await queue.cancel("t4", 15.0))
        replies.append(await queue.cancel("nope", 15.0))
        later = await queue.claim(now=30.0, lease_s=5, max_count=10, worker_id="C",
                                  extra_deliveries=0)  # expired leases come back
        replies.append(later)
        replies.append(await queue.release([(x.task_id, x.token, "") for x in later.claimed]))
        replies.append(await queue.counts())
        replies.append(await queue.dead_letters())
        keys: dict[str, Any] = {}
        for key in sorted(await redis.keys("eq:*")):
            kind = await redis.type(key)
            if kind == "hash":
                keys[key] = await redis.hgetall(key)
            elif kind == "zset":
                keys[key] = await redis.zrange(key, 0, -1, withscores=True)
            elif kind == "list":
                keys[key] = await redis.lrange(key, 0, -1)
            else:
                keys[key] = (kind, await redis.dump(key))
        return replies, keys
    finally:
        await queue.close()
        await redis.aclose()


async def test_every_script_leaves_the_same_state_as_stock_fakeredis() -> None:
    stock = await scenario(stock_redis())
    fast = await scenario(embedded_redis())
    assert fast == stock
    replies, keys = fast
    assert replies[-2].counters["reclaimed_tasks"] >= 1  # the scenario reached its branches
    assert any(key.startswith("eq:task:") for key in keys)


@pytest.mark.parametrize("break_it", ["not-a-number", "wrong-type"])
async def test_a_failing_script_raises_the_same_error_as_stock_fakeredis(break_it: str) -> None:
    messages = []
    for redis in (stock_redis(), embedded_redis()):
        queue = TaskQueue(redis, Keys("err"))
        try:
            if break_it == "wrong-type":
                await redis.set(queue.keys.ready, "not a sorted set")
                count = 1
            else:
                count = "x"  # type: ignore[assignment]  # tonumber('x') - 1 fails in Lua
            with pytest.raises(ResponseError) as caught:
                await queue.claim(now=0.0, lease_s=5, max_count=count, worker_id="A",
                                  extra_deliveries=0)
            messages.append(str(caught.value))
            # the failed script left the server and the connection usable
            assert await redis.ping()
        finally:
            await queue.close()
            await redis.aclose()
    assert messages[0] == messages[1]


async def test_other_scripts_keep_fakeredis_checks() -> None:
    redis = embedded_redis()
    try:
        with pytest.raises(ResponseError, match="global"):
            await redis.eval("leak = 1 return 1", 0)
        assert await redis.eval("return redis.call('SET', KEYS[1], ARGV[1])", 1, "k", "v") == "OK"
        assert await redis.get("k") == "v"
    finally:
        await redis.aclose()


async def test_an_abandoned_blocking_wait_does_not_take_the_next_item() -> None:
    # A real Redis forgets a closed client's BLPOP; the embedded server must too, or the
    # abandoned wait would take the next wake-up meant for another worker.
    from chatroom_async.store.lane import Lane

    redis = embedded_redis()
    lane = Lane(redis)
    lane.margin_s = 0.05
    try:
        with pytest.raises(TimeoutError):  # the server would wait 5 s; the lane gives up
            await lane.blocking("BLPOP", "wake", "5", block_s=0.05)
        await redis.rpush("wake", "token")
        assert list(await redis.blpop(["wake"], timeout=1)) == ["wake", "token"]  # type: ignore[arg-type]
    finally:
        await lane.close()
        await redis.aclose()
