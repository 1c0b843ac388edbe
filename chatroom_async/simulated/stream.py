"""A simulated streamed answer: `SimStream`, what `SimulatedAIBackend.stream()` returns.

Owns the chunking of one answer and the stream's lifecycle (admission on the first chunk,
the slot given back on every way out). Timing, faults and counters stay the backend's: the
stream calls back into it through `StreamHost`, and never sleeps or draws a fault by itself.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol, Self

from ..backend import AIRequest, StreamChunk
from ..errors import AIError, StreamInterruptedError
from .call import SimCall


class StreamHost(Protocol):
    """What a stream needs from the backend that opened it (and nothing more)."""

    @property
    def model(self) -> str:
        """The model name results carry."""
        ...

    def admit(self, request: AIRequest) -> SimCall:
        """Check limits, draw the call, take a concurrency slot; or raise a rejection."""
        ...

    async def first_token(self, call: SimCall) -> None:
        """Wait out the time to first token (or fail at its end)."""
        ...

    async def decode(self, call: SimCall, tokens: int) -> None:
        """Wait the time `tokens` more tokens take."""
        ...

    def fail(self, kind: str, exc: AIError) -> AIError:
        """Count a fault of `kind` and return its error, to raise."""
        ...

    def finish(self, call: SimCall) -> dict[str, Any]:
        """Count a finished call and return its result."""
        ...

    def ended(self, *, holding: bool, cancelled: bool) -> None:
        """A stream ended: give its slot back if it held one."""
        ...

    def abandoned(self, holding: bool) -> None:
        """A stream was garbage-collected unfinished. May run inside any bytecode."""
        ...


class SimStream:
    """A streamed answer: an async iterator of `StreamChunk`s, also an async context manager.

    The first `__anext__` asks for admission (rejections raise there) and waits the TTFT;
    each chunk carries one or two tokens; the last has finish_reason, usage and result.
    `aclose()`, leaving `async with`, cancellation, an error or the last chunk free the
    concurrency slot at once. A stream garbage-collected before any of those is counted in
    `abandoned_streams`, and its slot is freed at the backend's next call or `stats()`.
    """

    __slots__ = ("_call", "_done", "_holding", "_host", "_index", "_request", "_sent")

    def __init__(self, host: StreamHost, request: AIRequest) -> None:
        self._done = False
        self._host, self._request = host, request
        self._call: SimCall | None = None
        self._holding = False  # whether this stream holds a concurrency slot
        self._sent = 0  # tokens delivered
        self._index = 0  # chunks delivered

    def __del__(self) -> None:
        if not self._done:
            self._host.abandoned(self._holding)

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
        self._end(cancelled=False)

    async def __anext__(self) -> StreamChunk:
        if self._done:
            raise StopAsyncIteration
        try:
            return await self._next_chunk()
        except BaseException as exc:  # cancellation included: the slot goes back at once
            self._end(cancelled=isinstance(exc, asyncio.CancelledError))
            raise

    async def _next_chunk(self) -> StreamChunk:
        host, call = self._host, self._call
        if call is None:
            call = self._call = host.admit(self._request)
            self._holding = True
            await host.first_token(call)
            call.result(host.model)  # the text is drawn before the chunk sizes
            size = self._chunk_size(call)
        else:
            size = self._chunk_size(call)
            await host.decode(call, size)
        if self._done:  # aclose() ran while this chunk was on its way
            raise StopAsyncIteration
        if call.kind == "stream_break" and self._sent + size > call.break_at:
            raise host.fail("stream_break", StreamInterruptedError(
                f"stream broke after {self._index} chunks: peer closed connection",
                partial_text="".join(call.pieces[:self._sent]), chunks_received=self._index))
        text = "".join(call.pieces[self._sent:self._sent + size])
        self._sent += size
        self._index += 1
        if self._sent < call.n_out:
            return StreamChunk(self._index - 1, text)
        result = host.finish(call)
        self._end(cancelled=False)
        return StreamChunk(self._index - 1, text, finish_reason=call.finish_reason,
                           usage=result["usage"], result=result)

    def _chunk_size(self, call: SimCall) -> int:
        return min(1 if call.rng.random() < 0.5 else 2, call.n_out - self._sent)

    def _end(self, *, cancelled: bool) -> None:
        if self._done:
            return
        self._done = True
        holding, self._holding = self._holding, False
        self._host.ended(holding=holding, cancelled=cancelled)
