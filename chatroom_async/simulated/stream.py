"""A simulated streamed answer: `SimStream`, what `SimulatedAIBackend.stream()` returns.

Owns the chunking of one answer and the stream's lifecycle (admission on the first chunk,
the slot given back on every way out). Timing, faults and counters stay the backend's:
the stream calls back into it, and never sleeps or draws a fault by itself.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Self

from ..backend import AIRequest, StreamChunk
from ..errors import StreamInterruptedError
from .call import SimCall

if TYPE_CHECKING:
    from .backend import SimulatedAIBackend


class SimStream:
    """A streamed answer: an async iterator of `StreamChunk`s, also an async context manager.

    The first `__anext__` asks for admission (rejections raise there) and waits the TTFT;
    each chunk carries one or two tokens; the last has finish_reason, usage and result.
    `aclose()`, leaving `async with`, cancellation, an error or the last chunk free the
    concurrency slot at once. A stream garbage-collected before any of those is counted in
    `abandoned_streams`, and its slot is freed at the backend's next call or `stats()`.
    """

    __slots__ = ("_backend", "_call", "_done", "_holding", "_index", "_request", "_sent")

    def __init__(self, backend: SimulatedAIBackend, request: AIRequest) -> None:
        self._done = False
        self._backend, self._request = backend, request
        self._call: SimCall | None = None
        self._holding = False  # whether this stream holds a concurrency slot
        self._sent = 0  # tokens delivered
        self._index = 0  # chunks delivered

    def __del__(self) -> None:
        if not self._done:
            self._backend._abandoned.append(self._holding)

    @property
    def closed(self) -> bool:
        """Whether the stream has ended (finished, failed, closed or cancelled)."""
        return self._done

    def __aiter__(self) -> Self:
        return self

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the stream and free its slot now."""
        self._end()

    async def __anext__(self) -> StreamChunk:
        if self._done:
            raise StopAsyncIteration
        try:
            return await self._next_chunk()
        except BaseException as exc:  # cancellation included: the slot goes back at once
            if isinstance(exc, asyncio.CancelledError) and not self._done:
                self._backend._n.cancelled += 1
            self._end()
            raise

    async def _next_chunk(self) -> StreamChunk:
        backend, call = self._backend, self._call
        if call is None:
            call = self._call = backend._admit(self._request)
            self._holding = True
            await backend._first_token(call)
            call.result(backend.settings.model)  # the text is drawn before the chunk sizes
            size = self._chunk_size(call)
        else:
            size = self._chunk_size(call)
            await backend._decode(call, size)
        if self._done:  # aclose() ran while this chunk was on its way
            raise StopAsyncIteration
        if call.kind == "stream_break" and self._sent + size > call.break_at:
            raise backend._fail("stream_break", StreamInterruptedError(
                f"stream broke after {self._index} chunks: peer closed connection",
                partial_text="".join(call.pieces[:self._sent]), chunks_received=self._index))
        text = "".join(call.pieces[self._sent:self._sent + size])
        self._sent += size
        self._index += 1
        if self._sent < call.n_out:
            return StreamChunk(self._index - 1, text)
        result = backend._finish(call)
        self._end()
        return StreamChunk(self._index - 1, text, finish_reason=call.finish_reason,
                           usage=result["usage"], result=result)

    def _chunk_size(self, call: SimCall) -> int:
        return min(1 if call.rng.random() < 0.5 else 2, call.n_out - self._sent)

    def _end(self) -> None:
        if self._done:
            return
        self._done = True
        n = self._backend._n
        n.closed += 1
        if self._holding:
            self._holding = False
            n.in_flight -= 1
