"""Virtual time: an asyncio event loop whose clock jumps to the next timer instead of waiting.

Owns `VirtualTimeLoop`, `run_virtual` (run a coroutine to completion on a fresh virtual loop
in this thread) and `run_virtual_async` (the same from inside a running loop, such as a
Jupyter cell, on a worker thread so that the caller's loop is never touched). It never
installs a loop policy and never calls `asyncio.run` inside a running loop.

This is trio's `MockClock(autojump_threshold=0)` for asyncio: when nothing is ready, the loop
moves its clock to the next timer at once, so every sleep, timeout, lease and retry delay
costs no real time and a run replays exactly. Only in-process I/O belongs in such a run
(fakeredis, not a real Redis socket): the clock does not wait for a real reply either.
We use our own loop rather than `looptime` because looptime is built for pytest: before
each jump it spins 42 no-op cycles (the simulator ran 45% slower on it, same results) and
its give-up-when-idle timeout is in real time; this loop jumps at once and reports a
stuck run as `VirtualTimeDeadlock` immediately.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import selectors
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ..errors import ProcessorError, VirtualTimeDeadlock

T = TypeVar("T")

Main = Callable[[], Coroutine[Any, Any, T]]


class _JumpingSelector(selectors.DefaultSelector):
    """The platform selector, except that a wait becomes a jump of the loop's clock."""

    loop: VirtualTimeLoop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        # Real I/O first: the self-pipe of call_soon_threadsafe, and any real socket.
        events: list[tuple[selectors.SelectorKey, int]] = super().select(0)
        if events or timeout == 0:
            return events
        loop = self.loop
        if loop._threads_working:
            # Work handed to a thread takes no virtual time: wait for it for real.
            return super().select(None)
        if timeout is None:
            raise VirtualTimeDeadlock(
                f"virtual-time deadlock at t={loop._now:.6f}: no callback is ready, no timer "
                "is scheduled and no thread is working, so the run can never finish (a "
                "coroutine awaits something nothing will ever deliver)")
        # asyncio computed timeout = next deadline - now (capped at a day). Landing exactly
        # on the deadline, not on now + timeout, keeps times free of rounding drift.
        scheduled = loop._scheduled  # type: ignore[attr-defined]
        deadline = scheduled[0]._when if scheduled else loop._now + timeout
        loop._now = deadline if deadline - loop._now <= timeout else loop._now + timeout
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose `time()` is virtual and jumps to the next timer when idle.

    Callbacks, I/O and threads behave as usual; only waiting is replaced: when no callback
    is ready, the clock is set to the earliest timer's deadline at once. Work run in a
    thread (`run_in_executor`, `asyncio.to_thread`) takes no virtual time; the loop waits
    for it in real time.

    Args:
        start: the value `time()` returns at first.
    """

    def __init__(self, start: float = 0.0) -> None:
        selector = _JumpingSelector()
        selector.loop = self
        self._now = float(start)
        self._threads_working = 0
        super().__init__(selector)

    def time(self) -> float:
        return self._now

    def run_in_executor(  # type: ignore[override]
            self, executor: concurrent.futures.Executor | None, func: Callable[..., T],
            *args: Any) -> asyncio.Future[T]:
        future = super().run_in_executor(executor, func, *args)
        self._threads_working += 1
        future.add_done_callback(self._thread_done)
        return future

    def _thread_done(self, _: object) -> None:
        self._threads_working -= 1

    async def shutdown_default_executor(self) -> None:
        # The base class waits for a helper thread through a bare future.
        self._threads_working += 1
        try:
            await super().shutdown_default_executor()
        finally:
            self._threads_working -= 1


def run_virtual(main: Main[T], *, start: float = 0.0) -> T:
    """Run `main()` to completion on a new virtual-time loop in this thread; close the loop.

    Args:
        main: a function returning the coroutine to run (called on the new loop, so that
            whatever the coroutine creates, fakeredis clients included, belongs to it).
        start: the loop's time when `main` starts.

    Returns:
        What the coroutine returned.

    Raises:
        ProcessorError: called from inside a running event loop (use `run_virtual_async`).
        VirtualTimeDeadlock: the coroutine waits for something that can never happen.
    """
    _refuse_running_loop("run_virtual", "await run_virtual_async(main)")
    with asyncio.Runner(loop_factory=lambda: VirtualTimeLoop(start)) as runner:
        return runner.run(main())


async def run_virtual_async(main: Main[T], *, start: float = 0.0) -> T:
    """`run_virtual` for async callers (a Jupyter cell): runs it on a worker thread.

    The caller's loop keeps running meanwhile; cancelling this await cancels the virtual
    run and waits for it to wind down.
    """
    box = _Handle()

    async def tracked() -> T:
        box.bind(asyncio.get_running_loop(), asyncio.current_task())
        return await main()

    job = asyncio.ensure_future(asyncio.to_thread(run_virtual, tracked, start=start))
    try:
        return await asyncio.shield(job)
    except asyncio.CancelledError:
        box.cancel()
        await asyncio.gather(job, return_exceptions=True)
        raise


class _Handle:
    """The virtual loop and main task of a run on another thread, to cancel it from here."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None
        self._cancelled = False

    def bind(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any] | None) -> None:
        with self._lock:
            self._loop, self._task = loop, task
            if self._cancelled and task is not None:
                task.cancel()

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            if self._loop is not None and self._task is not None:
                try:
                    self._loop.call_soon_threadsafe(self._task.cancel)
                except RuntimeError:  # the run already finished and closed its loop
                    pass


def _refuse_running_loop(name: str, instead: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise ProcessorError(f"{name}() cannot run inside a running event loop (a Jupyter cell, "
                         f"an async function); use `{instead}` there instead")
