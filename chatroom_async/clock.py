"""Time as a dependency: every component asks a Clock, never `time.time()` directly.

`SystemClock` is wall time (epoch seconds, comparable across worker processes on one
Redis). `LoopClock` reads the running event loop's time, which under the virtual-time loop
of `chatroom_async.vtime` jumps instead of waiting, so hours pass in milliseconds.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """Where the processor, the retry policy and the simulated backend read the time."""

    def now(self) -> float:
        """Seconds since an epoch shared by every process on the same Redis."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` of this clock's time."""
        ...


class SystemClock:
    """Wall-clock time: `time.time()` and `asyncio.sleep`."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class LoopClock:
    """The running loop's clock, shifted to an epoch: the clock of virtual-time runs.

    Args:
        epoch: the value `now()` returns when the loop's own time reads 0.
    """

    def __init__(self, epoch: float = 0.0) -> None:
        self.epoch = epoch

    def now(self) -> float:
        return self.epoch + asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))
