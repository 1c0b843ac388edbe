"""`LoadGenerator`: Poisson arrivals of chat requests, submitted through the public API.

Runs as one background task on the caller's loop (kept, cancelled and awaited on stop);
its rate may change while it runs and the change applies at once, not after the gap
already drawn.
"""

from __future__ import annotations

import asyncio
import random

from chatroom_async import AsyncAIProcessor, TaskPriority

#: The priorities drawn, with their weights.
PRIORITY_MIX = {TaskPriority.URGENT: 0.05, TaskPriority.HIGH: 0.15, TaskPriority.NORMAL: 0.6,
                TaskPriority.LOW: 0.2}


class LoadGenerator:
    """Submits `chat_completion` tasks at `rate` per second on average (Poisson).

    Args:
        processor: where to submit (a client with `max_workers=0` is enough).
        rate: arrivals per second, > 0.
        seed: seeds the gaps, priorities and users.
        timeout_s, max_retries: every task's.
    """

    def __init__(self, processor: AsyncAIProcessor, rate: float = 5.0, *, seed: int = 0,
                 timeout_s: float = 30.0, max_retries: int = 3) -> None:
        self.processor = processor
        self.rng = random.Random(seed)
        self.timeout_s, self.max_retries = timeout_s, max_retries
        self.submitted = 0
        self._stopping = False
        self.error: BaseException | None = None
        self._rate = 0.0
        self.rate = rate
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def rate(self) -> float:
        return self._rate

    @rate.setter
    def rate(self, value: float) -> None:
        if not value > 0:
            raise ValueError(f"rate must be > 0, got {value!r}")
        self._rate = float(value)
        if hasattr(self, "_changed"):
            self._changed.set()  # redraw the current gap at the new rate

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> LoadGenerator:
        """Start submitting in the background; returns at once."""
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="chatroom_async.load")
        return self

    async def stop(self) -> None:
        """Stop submitting; returns once the background task has ended. A submit already
        sent finishes and is counted (cancelling it could queue a task `submitted` misses)."""
        task, self._task = self._task, None
        if task is not None:
            self._stopping = True
            self._changed.set()  # ends the wait for the next arrival
            try:
                await task
            finally:
                self._stopping = False

    async def _run(self) -> None:
        try:
            while not self._stopping:
                await self._gap()
                if self._stopping:
                    return
                await self._submit_one()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - shown by the owner, e.g. processor stopped
            self.error = exc

    async def _gap(self) -> None:
        """Wait an exponential gap; a rate change draws a new gap from that moment."""
        while not self._stopping:
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), self.rng.expovariate(self._rate))
            except TimeoutError:
                return

    async def _submit_one(self) -> None:
        priority = self.rng.choices(list(PRIORITY_MIX), list(PRIORITY_MIX.values()))[0]
        user = self.rng.randint(1, 50)
        await self.processor.submit_task(
            user, "chat_completion", {"message": f"question {self.submitted} from user {user}"},
            priority=priority, timeout=self.timeout_s, max_retries=self.max_retries)
        self.submitted += 1
