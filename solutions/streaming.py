"""Exercise 1 (练习1 流式响应处理), reference answer: `StreamingResponseHandler`.

The handler reads a backend's `StreamChunk`s at the backend's pace and never awaits a
client while doing so: text is coalesced into frames (the first at once, then at most one
per `min_interval_s`), each frame is stored in the task's history and queued to every
client's outlet, and each outlet sends on its own task, merging what piled up while its
client was slow. A client that reconnects gets the history after its last seq.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from chatroom_async import StreamChunk, StreamInterruptedError
from chatroom_async.grading import Frame, StreamClient


class _Outlet:
    """One client's queue of frames and the task that sends them, merging deltas that
    piled up while the client was busy."""

    def __init__(self, client: StreamClient, on_gone: Any) -> None:
        self.client = client
        self._pending: list[Frame] = []
        self._wake = asyncio.Event()
        self._on_gone = on_gone
        self.task = asyncio.get_running_loop().create_task(self._run())

    def put(self, frames: list[Frame]) -> None:
        self._pending.extend(frames)
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = _merge(self._pending), []
            for frame in batch:
                try:
                    await self.client.send(frame)
                except Exception:  # noqa: BLE001 - the client is gone; it may come back
                    self._on_gone(self)
                    return


def _merge(frames: list[Frame]) -> list[Frame]:
    """Consecutive deltas become one, carrying the last one's seq."""
    merged: list[Frame] = []
    for frame in frames:
        last = merged[-1] if merged else None
        if last is not None and last.kind == frame.kind == "delta":
            merged[-1] = Frame(frame.task_id, frame.seq, "delta", last.text + frame.text)
        else:
            merged.append(frame)
    return merged


class _TaskStream:
    """Everything pushed for one task: its history, its seq counter and its clients."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self.history: list[Frame] = []
        self.outlets: dict[int, _Outlet] = {}  # by id(client)
        self.attempts = 0

    def emit(self, kind: str, text: str = "", error: str | None = None) -> None:
        seq = self.history[-1].seq + 1 if self.history else 1
        frame = Frame(self.task_id, seq, kind, text, error)
        self.history.append(frame)
        for outlet in self.outlets.values():
            outlet.put([frame])


class StreamingResponseHandler:
    """Pushes streamed AI answers to clients in real time (see the module docstring).

    Args:
        min_interval_s: shortest gap between two delta frames of one task after the first.
        max_tasks: how many tasks' histories to keep for late clients; beyond it the
            oldest task without clients is forgotten.
    """

    def __init__(self, *, min_interval_s: float = 0.05, max_tasks: int = 1000) -> None:
        self.min_interval_s, self.max_tasks = min_interval_s, max_tasks
        self._streams: dict[str, _TaskStream] = {}  # oldest first

    def _stream(self, task_id: str) -> _TaskStream:
        stream = self._streams.get(task_id)
        if stream is None:
            stream = self._streams[task_id] = _TaskStream(task_id)
            idle = [t for t, s in self._streams.items() if not s.outlets and t != task_id]
            for old in idle[:max(0, len(self._streams) - self.max_tasks)]:
                del self._streams[old]
        return stream

    def forget(self, task_id: str) -> None:
        """Drop a task's history and stop sending to its clients."""
        stream = self._streams.pop(task_id, None)
        for outlet in stream.outlets.values() if stream else ():
            outlet.task.cancel()

    async def attach(self, task_id: str, client: StreamClient, last_seq: int = 0) -> None:
        """Send `client` the task's frames after `last_seq`, then every new one."""
        stream = self._stream(task_id)
        old = stream.outlets.pop(id(client), None)
        if old is not None:
            old.task.cancel()
        outlet = _Outlet(client, lambda o: self._gone(stream, o))
        stream.outlets[id(client)] = outlet
        outlet.put([f for f in stream.history if f.seq > last_seq])

    def detach(self, task_id: str, client: StreamClient) -> None:
        """Stop sending to `client` (what is queued for it is dropped)."""
        stream = self._streams.get(task_id)
        outlet = stream.outlets.pop(id(client), None) if stream else None
        if outlet is not None:
            outlet.task.cancel()

    @staticmethod
    def _gone(stream: _TaskStream, outlet: _Outlet) -> None:
        if stream.outlets.get(id(outlet.client)) is outlet:
            del stream.outlets[id(outlet.client)]

    async def handle_streaming_response(self, task_id: str,
                                        response_stream: AsyncIterator[StreamChunk]
                                        ) -> dict[str, Any]:
        """Consume one attempt's stream, push it to the task's clients, return the result.

        Raises:
            whatever the stream raised (after an "error" frame), CancelledError (after a
            "cancelled" frame), StreamInterruptedError if it ended without a result.
        """
        stream = self._stream(task_id)
        if stream.attempts:
            stream.emit("retry")
        stream.attempts += 1
        pusher = _Coalescer(stream, self.min_interval_s)
        try:
            async with aclosing(response_stream) as chunks:  # type: ignore[type-var]
                final = await pusher.consume(chunks)
        except asyncio.CancelledError:
            pusher.flush()
            stream.emit("cancelled", pusher.text, "CancelledError: the task was cancelled")
            raise
        except Exception as exc:
            pusher.flush()
            stream.emit("error", pusher.text, f"{type(exc).__name__}: {exc}")
            raise
        finally:
            pusher.stop()
        stream.emit("done")
        return final

    async def aclose(self) -> None:
        """Stop every client's sender task."""
        outlets = [o for s in self._streams.values() for o in s.outlets.values()]
        for stream in self._streams.values():
            stream.outlets.clear()
        for outlet in outlets:
            outlet.task.cancel()
        await asyncio.gather(*(o.task for o in outlets), return_exceptions=True)


class _Coalescer:
    """Turns chunks into delta frames: the first at once, then at most one per interval,
    and no text waits longer than one interval."""

    def __init__(self, stream: _TaskStream, interval_s: float) -> None:
        self.stream, self.interval_s = stream, interval_s
        self.loop = asyncio.get_running_loop()
        self.text = ""  # this attempt's text so far
        self._buffer: list[str] = []
        self._last_push = -math.inf
        self._timer: asyncio.TimerHandle | None = None

    async def consume(self, chunks: AsyncIterator[StreamChunk]) -> dict[str, Any]:
        final: dict[str, Any] | None = None
        async for chunk in chunks:
            if chunk.result is not None:
                final = dict(chunk.result)
            if chunk.text:
                self._buffer.append(chunk.text)
                self.text += chunk.text
                self._schedule()
        self.flush()
        if final is None:
            raise StreamInterruptedError("the stream ended without its final chunk",
                                         partial_text=self.text)
        return final

    def _schedule(self) -> None:
        due = self._last_push + self.interval_s
        if self.loop.time() >= due:
            self.flush()
        elif self._timer is None:
            self._timer = self.loop.call_at(due, self.flush)

    def flush(self) -> None:
        self.stop()
        if self._buffer:
            self.stream.emit("delta", "".join(self._buffer))
            self._buffer.clear()
            self._last_push = self.loop.time()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
