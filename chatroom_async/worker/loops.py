"""A background loop that waits, then acts, and is stopped only while it waits.

redis-py can swallow a cancel that lands inside a command (measured with redis-py 8.2: a
loop of ZADDs cancelled at random moments went on running in about a quarter of the
cases), and a loop that goes on makes its owner's stop wait forever. So the pool's flusher
and its lease keeper are cancelled only in their wait; a step in progress (a Redis call)
finishes, and the loop then sees it is stopping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class PatientLoop:
    """Runs `wait()` then `step()` over and over from a task of its own, until `stop`.

    Args:
        wait: returns once there is something to do (a sleep, an event); cancelled on stop.
        step: does it; never cancelled by `stop`.
        name: the task's name.
    """

    def __init__(self, wait: Callable[[], Awaitable[object]],
                 step: Callable[[], Awaitable[object]], name: str) -> None:
        self._wait, self._step, self.name = wait, step, name
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._waiting = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def _run(self) -> None:
        while not self._stopping:
            self._waiting = True
            await self._wait()
            self._waiting = False
            await self._step()

    async def stop(self) -> None:
        """End the loop: at once if it waits, else after the step in progress."""
        self._stopping = True
        if self._task is None:
            return
        if self._waiting:
            self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
