"""The lane: a dedicated connection that must behave exactly like the pooled path."""

from __future__ import annotations

import asyncio

import fakeredis
import pytest
from redis.asyncio import Redis

from chatroom_async.lane import Lane

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
                await asyncio.sleep(0)
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

    from chatroom_async.lane import command_fields, pack_command

    args = ("EVALSHA", "ab" * 20, 2, "key:é", b"\x00raw", 0.1, 1e20, -3, 123456789.12345679, "")
    # redis-py's own packer, the reference, given the arguments as bytes
    expected = b"".join(Connection().pack_command(*command_fields(args)))
    assert pack_command(*args, native=native) == expected
    assert command_fields(args)[5:7] == [b"0.1", b"1e+20"]  # numbers by repr
