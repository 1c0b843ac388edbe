"""The lane: a dedicated connection that must behave exactly like the pooled path."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import fakeredis
import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from chatroom_async.store.lane import Lane

ECHO = "return {KEYS[1], ARGV[1]}"


async def test_results_match_the_pooled_path_even_when_called_concurrently(redis: Redis) -> None:
    script = redis.register_script(ECHO)
    lane = Lane(redis)
    try:
        got = await asyncio.gather(*(lane.run(script, [f"k{i}"], [str(i)]) for i in range(50)))
        assert got == [[f"k{i}", str(i)] for i in range(50)]
        assert await lane.run(script, ["a"], ["b"]) == await script(keys=["a"], args=["b"])
    finally:
        await lane.close()


async def test_a_cancelled_call_does_not_desynchronise_the_next(redis: Redis) -> None:
    script = redis.register_script(ECHO)
    lane = Lane(redis)
    try:
        await lane.run(script, ["warm"], ["up"])
        for i in range(20):
            call = asyncio.ensure_future(lane.run(script, ["cancelled"], [str(i)]))
            for _ in range(i % 4):
                await asyncio.sleep(0)  # noqa: ASYNC110 - no event for a socket's EOF
            call.cancel()
            await asyncio.gather(call, return_exceptions=True)
            assert await lane.run(script, ["next"], [str(i)]) == ["next", str(i)]
    finally:
        await lane.close()


async def test_server_errors_pass_through_and_the_lane_stays_usable(redis: Redis) -> None:
    bad = redis.register_script("return redis.call('INCR', KEYS[1])")
    good = redis.register_script(ECHO)
    key = f"lane-test-{id(redis)}"
    lane = Lane(redis)
    try:
        await redis.set(key, "not a number")
        with pytest.raises(Exception, match="not an integer"):
            await lane.run(bad, [key], [])
        assert await lane.run(good, ["x"], ["y"]) == ["x", "y"]
    finally:
        await redis.delete(key)
        await lane.close()


async def test_a_flushed_script_cache_is_reloaded() -> None:
    redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(), decode_responses=True)
    script = redis.register_script(ECHO)
    lane = Lane(redis)
    try:
        assert await lane.run(script, ["a"], ["1"]) == ["a", "1"]
        await redis.script_flush()  # the embedded server only: never flush a shared one
        assert await lane.run(script, ["b"], ["2"]) == ["b", "2"]
    finally:
        await lane.close()
        await redis.aclose()


@pytest.mark.parametrize("native", [True, False])
def test_the_packer_writes_what_redis_reads(native: bool) -> None:
    from redis.asyncio.connection import Connection

    from chatroom_async.store.lane import command_fields, pack_command

    args = ("EVALSHA", "ab" * 20, 2, "key:é", b"\x00raw", 0.1, 1e20, -3, 123456789.12345679, "")
    # redis-py's own packer, the reference, given the arguments as bytes
    expected = b"".join(Connection().pack_command(*command_fields(args)))
    assert pack_command(*args, native=native) == expected
    assert command_fields(args)[5:7] == [b"0.1", b"1e+20"]  # numbers by repr


async def test_a_blocking_reply_later_than_its_deadline_is_never_read_by_the_next_call(
        redis: Redis) -> None:
    base = f"lane-{uuid.uuid4().hex[:8]}"
    lane = Lane(redis)
    lane.margin_s = 0.1
    try:
        with pytest.raises(TimeoutError):  # the server would wait 2 s; the lane gives up first
            await lane.blocking("BLPOP", f"{base}:k1", "2", block_s=0.05)
        await redis.rpush(f"{base}:k2", "for-the-second-call")
        assert await lane.blocking("BLPOP", f"{base}:k2", "1", block_s=1) == [
            f"{base}:k2", "for-the-second-call"]
    finally:
        await lane.close()
        await redis.delete(f"{base}:k1", f"{base}:k2")


async def test_a_command_that_may_have_run_is_not_run_again(redis: Redis) -> None:
    key = f"lane-{uuid.uuid4().hex[:8]}"
    script = redis.register_script("return redis.call('INCR', KEYS[1])")
    lane = Lane(redis)
    try:
        assert await lane.run(script, [key], []) == 1
        conn = lane._conn
        assert conn is not None

        async def lost(*args: Any, **kwargs: Any) -> Any:
            raise RedisConnectionError("connection lost after the command was sent")

        conn.read_response = lost  # type: ignore[method-assign]
        with pytest.raises(RedisConnectionError):
            await lane.run(script, [key], [])
        assert await redis.get(key) == "2"  # it ran once; the pool did not run it again
        assert await lane.run(script, [key], []) == 3  # and the lane goes on, reconnected
    finally:
        await lane.close()
        await redis.delete(key)


async def test_a_command_never_sent_goes_through_the_pool(redis: Redis) -> None:
    key = f"lane-{uuid.uuid4().hex[:8]}"
    script = redis.register_script("return redis.call('INCR', KEYS[1])")
    lane = Lane(redis)
    unreachable = redis.connection_pool.make_connection()  # type: ignore[no-untyped-call]

    async def refuse(*args: Any, **kwargs: Any) -> None:
        raise RedisConnectionError("connection refused")

    unreachable.connect = refuse
    lane._conn = unreachable
    try:
        assert await lane.run(script, [key], []) == 1
        assert await redis.get(key) == "1"
    finally:
        await lane.close()
        await redis.delete(key)


async def test_an_idle_connection_the_server_closed_is_reopened_before_sending(
        real_redis: Redis) -> None:
    key = f"lane-{uuid.uuid4().hex[:8]}"
    script = real_redis.register_script("return redis.call('INCR', KEYS[1])")
    lane = Lane(real_redis)
    try:
        assert await lane.run(script, [key], []) == 1
        client_id = await lane.execute("CLIENT", "ID")
        # as the server's idle timeout, a restart or a proxy would
        assert await real_redis.client_kill_filter(_id=str(client_id)) == 1
        reader = lane._conn._reader  # type: ignore[union-attr]
        async with asyncio.timeout(5):
            while not reader.at_eof():  # noqa: ASYNC110 - no event for a socket's EOF
                await asyncio.sleep(0)  # until the loop has read the server's FIN
        assert await lane.run(script, [key], []) == 2  # sent on a new connection, once
        assert await real_redis.get(key) == "2"
    finally:
        await lane.close()
        await real_redis.delete(key)


async def test_a_script_behind_a_wait_runs_after_it_and_is_loaded_when_missing(
        redis: Redis) -> None:
    # A script never loaded (its source is new to the server): the first call behind the
    # wait meets NOSCRIPT, loads it and runs it; the second runs it behind the wait.
    base = f"lane-{uuid.uuid4().hex[:8]}"
    script = redis.register_script(
        f"-- {base}\nreturn {{redis.call('LLEN', KEYS[1]), ARGV[1]}}")
    lane = Lane(redis)
    try:
        for attempt in ("first", "second"):
            await redis.rpush(f"{base}:wake", "token", "left")
            got = await lane.blocking_then(("BLPOP", f"{base}:wake", "5"), script,
                                           [f"{base}:wake"], [attempt], block_s=5)
            assert got == [1, attempt]  # it ran after the wait took the first token
            await redis.delete(f"{base}:wake")
        # The wait's error reply is raised, and the script's reply after it is read too:
        # the connection stays in step for the next call.
        await redis.set(f"{base}:wrong", "a string, not a list")
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await lane.blocking_then(("BLPOP", f"{base}:wrong", "5"), script,
                                     [f"{base}:wake"], ["third"], block_s=5)
        assert await lane.run(script, [f"{base}:wake"], ["fourth"]) == [0, "fourth"]
    finally:
        await lane.close()
        await redis.delete(f"{base}:wake", f"{base}:wrong")
