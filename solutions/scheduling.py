"""Exercise 2 (练习2 智能任务调度), reference answer: `IntelligentTaskScheduler`.

Four small mechanisms, each with one job:
- priority and aging (`calculate_task_priority`, `score`): a task's score is a deadline,
  its arrival plus an allowance that shrinks as its priority grows, so VIPs go first and
  nobody waits more than `max_delay_s` behind later, more important work;
- dependencies (`submit`): a task is held back until the tasks it depends on completed;
- batching (`call_batched`): summaries arriving within `batch_window_s` share one call;
- adaptive concurrency (`call_backend`): additive increase, multiplicative decrease of a
  limit on calls in flight, driven by the provider's 429s.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from chatroom_async import (
    AIBackend,
    AIRequest,
    AITask,
    AsyncAIProcessor,
    RateLimitError,
    TaskNotFoundError,
    TaskPriority,
)
from chatroom_async.grading import BatchBackend

TIER_BONUS = {"vip": 12.0, "standard": 6.0, "free": 0.0}
#: The highest value `calculate_task_priority` returns (a VIP's URGENT task, no history).
TOP_PRIORITY = TIER_BONUS["vip"] + TaskPriority.URGENT


class IntelligentTaskScheduler:
    """Priority with aging, dependencies, batching and adaptive concurrency.

    Args:
        max_delay_s: the allowance of the least important task: how long later, more
            important tasks may overtake it.
        batch_window_s: how long a summary waits for others to share its call.
        max_batch: summaries per call at most.
        initial_limit: calls in flight allowed at first.
    """

    def __init__(self, *, max_delay_s: float = 40.0, batch_window_s: float = 0.4,
                 max_batch: int = 8, initial_limit: float = 4.0) -> None:
        self.max_delay_s = max_delay_s
        self.batch_window_s, self.max_batch = batch_window_s, max_batch
        self.limit = initial_limit
        self._in_flight = 0
        self._slot_freed = asyncio.Condition()
        self._epoch = 0  # bumped at each decrease: one decrease per round of calls
        self._held: dict[str, asyncio.Future[bool]] = {}
        self._batch: list[tuple[AIRequest, asyncio.Future[dict[str, Any]]]] = []
        self._batch_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- priority and aging -----------------------------------------------------------------
    def calculate_task_priority(self, task: AITask, user_context: Mapping[str, Any]) -> float:
        """Higher runs sooner: the user's tier, the task's own priority, minus a little for
        users who asked a lot in the last hour."""
        tier = TIER_BONUS.get(str(user_context.get("tier", "standard")), TIER_BONUS["standard"])
        recent = float(user_context.get("recent_requests", 0) or 0)
        return tier + int(task.priority) - min(recent, 100.0) / 100.0

    def score(self, task: AITask, user_context: Mapping[str, Any]) -> float:
        """Earliest deadline first: arrival plus an allowance that shrinks with priority."""
        priority = self.calculate_task_priority(task, user_context)
        share = max(0.0, min(1.0, (TOP_PRIORITY - priority) / TOP_PRIORITY))
        return task.created_at + self.max_delay_s * share

    # -- dependencies -----------------------------------------------------------------------
    async def submit(self, processor: AsyncAIProcessor, request: Mapping[str, Any],
                     depends_on: Sequence[str] = ()) -> str:
        """Submit now, or once every task in `depends_on` completed; return the id at once."""
        task_id = str(request.get("task_id") or uuid.uuid4())
        kwargs = {**request, "task_id": task_id}
        if not depends_on:
            await processor.submit_task(**kwargs)
            return task_id
        held = self._held[task_id] = asyncio.get_running_loop().create_future()
        self._spawn(self._submit_when_ready(processor, kwargs, list(depends_on), held))
        return task_id

    async def _submit_when_ready(self, processor: AsyncAIProcessor, kwargs: dict[str, Any],
                                 depends_on: list[str], held: asyncio.Future[bool]) -> None:
        ok = False
        try:
            ok = all([await self._completed(processor, dep) for dep in depends_on])
            if ok:
                await processor.submit_task(**kwargs)
        finally:  # dependents of this task learn its fate, whatever happened
            held.set_result(ok)
            self._held.pop(kwargs["task_id"], None)

    async def _completed(self, processor: AsyncAIProcessor, task_id: str) -> bool:
        held = self._held.get(task_id)
        if held is not None and not await held:
            return False  # it was never submitted: its own dependency failed
        try:
            final = await processor.wait_for_task(task_id)
        except TaskNotFoundError:
            return False
        return bool(final["status"] == "completed")

    # -- adaptive concurrency ---------------------------------------------------------------
    async def call_backend(self, backend: AIBackend, request: AIRequest) -> dict[str, Any]:
        """Call the backend within the current limit; a 429 lowers it, successes raise it."""
        async with self._slot_freed:
            await self._slot_freed.wait_for(lambda: self._in_flight < int(self.limit))
            self._in_flight += 1
        epoch = self._epoch
        try:
            result = await backend.complete(request)
        except RateLimitError:
            if epoch == self._epoch:  # the first 429 of this round: back off once
                self._epoch += 1
                self.limit = max(1.0, self.limit * 0.7)
            raise
        finally:
            async with self._slot_freed:
                self._in_flight -= 1
                self._slot_freed.notify_all()
        self.limit += 1.0 / self.limit
        return result

    # -- batching ---------------------------------------------------------------------------
    async def call_batched(self, backend: BatchBackend, request: AIRequest) -> dict[str, Any]:
        """Summaries share calls: a batch leaves when full or `batch_window_s` after its
        first request; other request types go alone."""
        if request.request_type != "content_summary":
            return await backend.complete(request)
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._batch.append((request, answer))
        if len(self._batch) >= self.max_batch:
            self._send_batch(backend)
        elif self._batch_timer is None:
            self._batch_timer = loop.call_later(self.batch_window_s, self._send_batch, backend)
        return await answer

    def _send_batch(self, backend: BatchBackend) -> None:
        if self._batch_timer is not None:
            self._batch_timer.cancel()
            self._batch_timer = None
        batch, self._batch = self._batch, []
        if batch:
            self._spawn(self._run_batch(backend, batch))

    async def _run_batch(self, backend: BatchBackend,
                         batch: list[tuple[AIRequest, asyncio.Future[dict[str, Any]]]]) -> None:
        try:
            results = await backend.complete_batch([request for request, _ in batch])
        except Exception as exc:  # noqa: BLE001 - every caller gets the error
            for _, answer in batch:
                if not answer.done():
                    answer.set_exception(exc)
            return
        for (_, answer), result in zip(batch, results, strict=True):
            if not answer.done():  # its caller may have been cancelled meanwhile
                answer.set_result(result)

    # -- housekeeping -----------------------------------------------------------------------
    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """Cancel the held submissions and batches in progress, and wait for them."""
        if self._batch_timer is not None:
            self._batch_timer.cancel()
            self._batch_timer = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
