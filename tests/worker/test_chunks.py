"""The coalescing rule of `worker/chunks.py`: the first chunk goes at once, later ones wait
for the interval and go together, nothing is written before the attempt's started event,
and closing writes what is left."""

from __future__ import annotations

import asyncio
from typing import Any

from chatroom_async import StreamChunk
from chatroom_async.worker.chunks import ChunkCoalescer


class Writes:
    def __init__(self) -> None:
        self.batches: list[dict[str, Any]] = []
        self.changed = asyncio.Event()

    async def __call__(self, progress: dict[str, Any]) -> None:
        self.batches.append(progress)
        self.changed.set()

    async def until(self, n: int) -> None:
        async with asyncio.timeout(5):
            while len(self.batches) < n:
                self.changed.clear()
                await self.changed.wait()


def chunk(i: int, last: bool = False) -> StreamChunk:
    return StreamChunk(i, f"t{i} ", "stop" if last else None)


async def test_first_at_once_then_together_and_the_rest_on_close() -> None:
    writes = Writes()
    coalescer = ChunkCoalescer(writes, interval_s=3600.0)  # the next write is an hour away
    coalescer.add(chunk(0))
    await writes.until(1)
    for i in range(1, 5):
        coalescer.add(chunk(i))
    await asyncio.sleep(0)  # the writer's turn: the interval holds the chunks back
    assert len(writes.batches) == 1
    await coalescer.close()
    assert writes.batches == [
        {"index": 0, "count": 1, "text": "t0 ", "finish_reason": None},
        {"index": 1, "count": 4, "text": "t1 t2 t3 t4 ", "finish_reason": None}]


async def test_nothing_is_written_before_the_started_event_is_out() -> None:
    writes = Writes()
    started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    coalescer = ChunkCoalescer(writes, interval_s=0.0, ready=started)
    coalescer.add(chunk(0))
    coalescer.add(chunk(1, last=True))
    await asyncio.sleep(0)
    assert writes.batches == []
    started.set_result(None)
    await coalescer.close()
    assert [b["text"] for b in writes.batches] == ["t0 t1 "]
    assert writes.batches[0]["finish_reason"] == "stop"


async def test_a_failing_write_is_logged_and_the_stream_goes_on() -> None:
    calls: list[str] = []

    async def flaky(progress: dict[str, Any]) -> None:
        calls.append(progress["text"])
        if len(calls) == 1:
            raise ConnectionError("Redis went away")

    coalescer = ChunkCoalescer(flaky, interval_s=0.0)
    coalescer.add(chunk(0))
    await asyncio.sleep(0)
    coalescer.add(chunk(1))
    await coalescer.close()
    assert "".join(calls) == "t0 t1 "


async def test_settle_gives_up_on_a_stuck_write() -> None:
    stuck = asyncio.Event()

    async def never(progress: dict[str, Any]) -> None:
        stuck.set()
        await asyncio.Event().wait()

    coalescer = ChunkCoalescer(never, interval_s=0.0)
    coalescer.add(chunk(0))
    await stuck.wait()
    await coalescer.settle(timeout_s=0.01)  # returns: the write is cancelled
