"""`Renderer`: draws frames off the event loop, by default in a worker process.

A frame costs a few hundred milliseconds of matplotlib, nearly all of it holding the GIL.
Drawn on a thread, that time is taken from the processor's own loop (with the embedded
fakeredis the whole processor runs on that loop); drawn in a separate process, it is not.
The process starts with the first frame (`spawn`: safe in a kernel with threads; a script
needs the usual `if __name__ == "__main__":` guard) and ends with `close()`; frames are
drawn on a thread until it is ready (starting it and importing matplotlib takes seconds).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

MODES = ("process", "thread")

log = logging.getLogger("chatroom_async.dashboard")


class Renderer:
    """Runs drawing functions off the loop.

    Args:
        mode: "process" (a worker process of its own) or "thread" (`asyncio.to_thread`).
    """

    def __init__(self, mode: str = "process") -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self._pool: ProcessPoolExecutor | None = None
        self._ready: asyncio.Future[bool] | None = None

    @property
    def ready(self) -> bool:
        """Whether frames are drawn in the worker process now (always False for threads)."""
        r = self._ready
        return r is not None and r.done() and not r.cancelled() and r.exception() is None

    async def run(self, draw: Callable[..., bytes], *args: Any) -> bytes:
        """`draw(*args)` off the loop; `draw` and `args` must pickle in process mode."""
        if self.mode == "process" and self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"))
            self._ready = asyncio.get_running_loop().run_in_executor(self._pool, _warm_up)
        if not self.ready:
            return await asyncio.to_thread(draw, *args)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, draw, *args)
        except BrokenProcessPool:  # the worker died: carry on with threads
            log.warning("the dashboard's drawing process died; drawing on a thread now")
            await self.close()
            self.mode = "thread"
            return await asyncio.to_thread(draw, *args)

    async def close(self) -> None:
        """End the worker process (if any) and wait for it."""
        pool, self._pool, ready, self._ready = self._pool, None, self._ready, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
        if ready is not None:
            await asyncio.gather(ready, return_exceptions=True)


def _warm_up() -> bool:
    """Import the drawing code in the worker process (the slow part of its start)."""
    from . import figure, playground_figure  # noqa: F401

    return True
