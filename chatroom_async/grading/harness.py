"""The graded checks' test bench: a virtual-time run with limits, a watch for code that
blocks the event loop, scripted streams and recording clients.

Every check runs on a fresh virtual-time loop (`chatroom_async.simulation.run_virtual`),
so its timings are exact and the same on every machine. Messages are in Chinese: they are
what a student reads in the score table.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, TypeVar

from chatroom_async import AIRequest, StreamChunk, StreamInterruptedError
from chatroom_async.simulation import run_virtual

from .kit import TERMINAL_KINDS, Frame

T = TypeVar("T")

#: One step of the student's coroutine (from one await to the next) may take this much
#: real time; more means it blocked the event loop (time.sleep, a busy loop).
BLOCK_LIMIT_S = 0.25


class GradingError(AssertionError):
    """A check failed for a reason the student should read (message in Chinese)."""


class LoopBlocked(GradingError):
    """The student's code ran too long without yielding to the event loop."""


def run_scenario(main: Callable[[], Coroutine[Any, Any, T]], *, virtual_limit_s: float = 600.0
                 ) -> T:
    """Run `main()` on a new virtual-time loop, bounded to `virtual_limit_s` of its time."""

    async def bounded() -> T:
        try:
            async with asyncio.timeout(virtual_limit_s):
                return await main()
        except TimeoutError:
            raise GradingError(f"场景在 {virtual_limit_s:g} 秒（虚拟时间）内没有结束：是不是有"
                               "代码在等待永远不会发生的事，或者在无限循环里 await？") from None

    try:
        return run_virtual(bounded)
    except RuntimeError as exc:
        if type(exc).__name__ == "VirtualTimeDeadlock":
            raise GradingError("虚拟时间死锁：没有任何计时器或任务能再推进，你的代码在等待"
                               "一个永远不会完成的 Future/Event。") from exc
        raise


def timed(awaitable: Awaitable[T], what: str, limit_s: float = BLOCK_LIMIT_S) -> Awaitable[T]:
    """`awaitable`, with each of its steps timed in real time: a step over `limit_s`
    raises LoopBlocked naming `what`."""
    return _Timed(awaitable, what, limit_s)


class _Timed:
    def __init__(self, awaitable: Awaitable[Any], what: str, limit_s: float) -> None:
        self.awaitable, self.what, self.limit_s = awaitable, what, limit_s

    def __await__(self) -> Generator[Any, Any, Any]:
        inner = self.awaitable.__await__()
        to_send: Any = None
        to_throw: BaseException | None = None
        while True:
            started = time.perf_counter()
            try:
                if to_throw is not None:
                    yielded = inner.throw(to_throw)
                else:
                    yielded = inner.send(to_send)
            except StopIteration as stop:
                self._check(started)
                return stop.value
            except BaseException:
                self._check(started)  # a step that blocked, then raised, is reported blocked
                raise
            self._check(started)
            try:
                to_send, to_throw = (yield yielded), None
            except BaseException as exc:  # noqa: BLE001 - forwarded into the coroutine
                to_send, to_throw = None, exc

    def _check(self, started: float) -> None:
        spent = time.perf_counter() - started
        if spent > self.limit_s:
            raise LoopBlocked(
                f"{self.what} 一次运行了 {spent:.2f} 秒（真实时间）都没有 await，阻塞了事件循环："
                "其间别的任务全都停着。用 await asyncio.sleep() 代替 time.sleep()，别在协程里"
                "做长时间的同步计算。")


class Watch:
    """Keeps what the student's code raised inside the processor, where the worker would
    turn it into a failed task, so that the check can report it as it is."""

    REPORTED = (NotImplementedError, GradingError)

    def __init__(self) -> None:
        self.caught: list[BaseException] = []

    async def run(self, awaitable: Awaitable[T], what: str) -> T:
        try:
            return await timed(awaitable, what)
        except self.REPORTED as exc:
            self.caught.append(exc)
            raise

    def raise_caught(self) -> None:
        """Raise the first error kept, if any."""
        if self.caught:
            raise self.caught[0]


# -- streams ---------------------------------------------------------------------------------
class ScriptedStream:
    """A backend stream with a fixed script: chunk i arrives `gaps[i]` seconds after the
    previous one. Closing is explicit (`aclose`), as with a real HTTP response: a consumer
    that does not close it leaves it open.

    Args:
        pieces: the text of each chunk.
        gaps: seconds before each chunk (first: the time to first token).
        break_after: raise StreamInterruptedError instead of chunk number `break_after`.
    """

    def __init__(self, pieces: list[str], gaps: list[float], *, break_after: int | None = None
                 ) -> None:
        self.pieces, self.gaps, self.break_after = pieces, gaps, break_after
        self.produced: list[float] = []  # when each chunk was handed out (loop time)
        self.closed_at: float | None = None
        self._i = 0

    @property
    def full_text(self) -> str:
        return "".join(self.pieces)

    def __aiter__(self) -> ScriptedStream:
        return self

    async def __anext__(self) -> StreamChunk:
        if self.closed_at is not None or self._i >= len(self.pieces):
            raise StopAsyncIteration
        await asyncio.sleep(self.gaps[self._i])
        loop = asyncio.get_running_loop()
        if self.break_after is not None and self._i >= self.break_after:
            raise StreamInterruptedError("stream broke: peer closed connection",
                                         partial_text="".join(self.pieces[:self._i]),
                                         chunks_received=self._i)
        i, self._i = self._i, self._i + 1
        self.produced.append(loop.time())
        last = self._i == len(self.pieces)
        return StreamChunk(i, self.pieces[i], finish_reason="stop" if last else None,
                           result={"response": self.full_text} if last else None)

    async def aclose(self) -> None:
        if self.closed_at is None:
            self.closed_at = asyncio.get_running_loop().time()


def script(n: int, gap_s: float, *, ttft_s: float = 0.3, seed_text: str = "流式") -> tuple[
        list[str], list[float]]:
    """`n` pieces of text (distinct, so that a reordering shows) and their gaps."""
    pieces = [f"{seed_text}{i}," for i in range(n)]
    return pieces, [ttft_s] + [gap_s] * (n - 1)


class ScriptedBackend:
    """A streaming backend for the processor: attempt k of a task plays `scripts[k-1]`."""

    def __init__(self, make: Callable[[AIRequest], ScriptedStream]) -> None:
        self.make = make
        self.streams: list[ScriptedStream] = []

    def stream(self, request: AIRequest) -> ScriptedStream:
        s = self.make(request)
        self.streams.append(s)
        return s

    async def complete(self, request: AIRequest) -> dict[str, Any]:
        raise NotImplementedError("the graded runs stream")


# -- clients ---------------------------------------------------------------------------------
class RecordingClient:
    """A client that records what it received and when (loop time).

    Args:
        delay_s: how long each send takes (a slow network).
        fail_at_seq: the first frame with seq >= this raises ConnectionResetError and is
            not received (the socket dropped).
    """

    def __init__(self, *, delay_s: float = 0.0, fail_at_seq: int | None = None) -> None:
        self.delay_s, self.fail_at_seq = delay_s, fail_at_seq
        self.frames: list[Frame] = []
        self.times: list[float] = []
        self.ended = asyncio.Event()

    async def send(self, frame: Frame) -> None:
        if not isinstance(frame, Frame):
            raise GradingError(f"send() 收到的不是 Frame，而是 {type(frame).__name__}")
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail_at_seq is not None and frame.seq >= self.fail_at_seq:
            raise ConnectionResetError("client went away")
        self.frames.append(frame)
        self.times.append(asyncio.get_running_loop().time())
        if frame.kind in TERMINAL_KINDS:
            self.ended.set()

    @property
    def deltas(self) -> list[Frame]:
        return [f for f in self.frames if f.kind == "delta"]

    @property
    def text(self) -> str:
        return "".join(f.text for f in self.deltas)

    def delivered_at(self, chars: int) -> float | None:
        """When the client had received at least `chars` characters of delta text."""
        total = 0
        for frame, at in zip(self.frames, self.times, strict=True):
            if frame.kind == "delta":
                total += len(frame.text)
                if total >= chars:
                    return at
        return None


async def wait_ended(client: RecordingClient, within_s: float, who: str = "客户端") -> None:
    """Wait (virtual time) for the client's terminal frame."""
    try:
        async with asyncio.timeout(within_s):
            await client.ended.wait()
    except TimeoutError:
        kinds = [f.kind for f in client.frames[-3:]]
        raise GradingError(f"{who}在 {within_s:g} 秒内没有收到结束帧（done/error/cancelled）；"
                           f"最后几帧是 {kinds}") from None


def surface(job: asyncio.Future[Any]) -> None:
    """Raise what a finished background job raised if the student should read it as it is
    (a blocked loop, a missing method), rather than a symptom of it."""
    if job.done() and not job.cancelled():
        exc = job.exception()
        if isinstance(exc, (GradingError, NotImplementedError)):
            raise exc


async def close_quietly(handler: Any) -> None:
    """Call the student's aclose() if it exists and works; its absence costs nothing."""
    try:
        await handler.aclose()
    except (NotImplementedError, AttributeError):
        pass
