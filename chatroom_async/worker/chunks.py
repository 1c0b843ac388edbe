"""Coalescing of one attempt's streamed chunks into stream writes.

The rule: a chunk that arrives when nothing was written for `interval_s` is written at once
(the first token is never held back); later chunks wait until `interval_s` has passed since
the last write and go out together, as one event. While a write is in flight the next
chunks gather behind it. So an answer costs at most one write per `interval_s` (20 per
second at the default 50 ms) plus one, whatever its number of tokens, and a chunk waits at
most `interval_s` plus a round trip. The text of the written events, joined, is exactly
the text of the chunks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ..backend import StreamChunk

log = logging.getLogger("chatroom_async.worker.chunks")

#: Writes one coalesced progress dict: {"index", "count", "text", "finish_reason"}.
Write = Callable[[dict[str, Any]], Awaitable[None]]


class ChunkCoalescer:
    """Collects chunks and writes them in batches, in order, from a task of its own.

    Args:
        write: sends one coalesced chunk (a failure is logged: progress is best effort).
        interval_s: the least time between two writes.
        ready: awaited before the first write (the attempt's "started" event is out).
    """

    def __init__(self, write: Write, *, interval_s: float,
                 ready: Awaitable[Any] | None = None) -> None:
        self._write, self.interval_s, self._ready = write, interval_s, ready
        self._buffer: list[StreamChunk] = []
        self._pending = asyncio.Event()
        self._closing = False
        self._last_write = float("-inf")
        self._task = asyncio.create_task(self._run(), name="chatroom_async.chunks")
        self.writes = 0

    def add(self, chunk: StreamChunk) -> None:
        self._buffer.append(chunk)
        self._pending.set()

    async def close(self) -> None:
        """Write what is left now and stop."""
        self._closing = True
        self._pending.set()
        await self._task

    async def settle(self, timeout_s: float = 1.0) -> None:
        """`close()` for an attempt that ends abnormally (an error, a timeout, a cancel):
        what is buffered is written if that takes under `timeout_s`, else dropped."""
        self._closing = True
        self._pending.set()
        done, _ = await asyncio.wait({self._task}, timeout=timeout_s)
        if not done:
            await self.cancel()

    async def cancel(self) -> None:
        """Stop without writing what is left (the attempt was cancelled)."""
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        if self._ready is not None:
            await self._ready
        while True:
            await self._pending.wait()
            wait = self._last_write + self.interval_s - loop.time()
            if wait > 0 and not self._closing:
                try:  # a timer, not a poll: close() cuts it short
                    await asyncio.wait_for(self._until_closing(), wait)
                except TimeoutError:
                    pass
            self._pending.clear()
            batch, self._buffer = self._buffer, []
            if batch:
                self._last_write = loop.time()
                await self._send(batch)
            if self._closing and not self._buffer:
                return

    async def _until_closing(self) -> None:
        while not self._closing:
            self._pending.clear()
            await self._pending.wait()

    async def _send(self, batch: list[StreamChunk]) -> None:
        progress = {"index": batch[0].index, "count": len(batch),
                    "text": "".join(c.text for c in batch),
                    "finish_reason": batch[-1].finish_reason}
        self.writes += 1
        try:
            await self._write(progress)
        except Exception as exc:  # noqa: BLE001 - the answer goes on; the record has it
            log.warning("progress not written: %r", exc)
