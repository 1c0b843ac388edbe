"""The chapter's sample `AsyncAIProcessor`, re-created with its defects kept on purpose.

Notebook 03 runs this beside `chatroom_async` on the same workload, to show each defect of
the chapter's design with numbers. It follows the chapter's code (seed lines ~160-500):
one Redis list per priority polled with `BRPOP timeout=1` in turn, a task removed from
Redis when taken, every error re-queued at once, the timeout stored but never enforced,
counters kept in this process only. Two changes, neither a fix: `redis.asyncio` instead of
the archived `aioredis`, and the AI call goes to a package backend (the simulated API)
instead of `asyncio.sleep`. Do not copy this module: it is the "before" picture.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from chatroom_async import AIBackend, AIRequest, TaskPriority

#: The chapter's polling order: URGENT first, LOW last, one `BRPOP timeout=1` each.
POLL_ORDER = (TaskPriority.URGENT, TaskPriority.HIGH, TaskPriority.NORMAL, TaskPriority.LOW)


@dataclass
class SampleTask:
    """The chapter's `AITask`, reduced to what the sample processor reads and writes."""

    task_id: str
    user_id: int
    request_type: str
    request_data: dict[str, Any]
    priority: int = int(TaskPriority.NORMAL)
    status: str = "pending"
    retry_count: int = 0
    max_retries: int = 3
    timeout: float = 30.0  # stored, never enforced: defect 4
    result: dict[str, Any] | None = None
    error_message: str | None = None

    def to_json(self) -> str:
        return json.dumps(self.__dict__, ensure_ascii=False)


@dataclass
class Trace:
    """What happened when, on the loop's clock: `(time, event, task_id)` rows."""

    rows: list[tuple[float, str, str]] = field(default_factory=list)

    def add(self, event: str, task_id: str) -> None:
        self.rows.append((asyncio.get_running_loop().time(), event, task_id))

    def times(self, event: str) -> dict[str, float]:
        """The first time each task had `event`."""
        out: dict[str, float] = {}
        for t, e, tid in self.rows:
            if e == event:
                out.setdefault(tid, t)
        return out

    def count(self, event: str) -> int:
        return sum(1 for _, e, _ in self.rows if e == event)


class ChapterProcessor:
    """The chapter's processor design, defects included (see the module docstring).

    Args:
        redis: a `redis.asyncio` client with `decode_responses=True`.
        backend: the AI service (a package backend, e.g. `SimulatedAIBackend`).
        max_workers: worker coroutines, each running one task at a time.
        namespace: key prefix, so that it can share a Redis with the package.
        trace: where to record events (shared between two processors if given).
    """

    def __init__(self, redis: Redis, backend: AIBackend, max_workers: int = 10, *,
                 namespace: str = "chapter", trace: Trace | None = None) -> None:
        self.redis, self.backend, self.max_workers = redis, backend, max_workers
        self.namespace = namespace
        self.trace = trace if trace is not None else Trace()
        self.active_tasks: dict[str, SampleTask] = {}
        self.workers: list[asyncio.Task[None]] = []
        self.callbacks: dict[str, list[Callable[[SampleTask], Any]]] = {}
        self.stats = {"total_tasks": 0, "completed_tasks": 0, "failed_tasks": 0}
        self.running = False

    def queue_name(self, priority: int) -> str:
        return f"{self.namespace}:ai_tasks:{TaskPriority(priority).name.lower()}"

    async def start(self) -> None:
        self.running = True
        self.workers = [asyncio.create_task(self._worker_loop()) for _ in range(self.max_workers)]

    async def stop(self) -> None:
        """The chapter's stop: cancel the workers mid-task (what they hold is lost)."""
        self.running = False
        for worker in self.workers:
            worker.cancel()
        await asyncio.gather(*self.workers, return_exceptions=True)

    async def kill(self) -> None:
        """What `kill -9` does to this design: the workers and their memory vanish.

        In this design that is the same as `stop()`: nothing is handed back.
        """
        await self.stop()

    async def submit_task(self, user_id: int, request_type: str, request_data: dict[str, Any],
                          priority: int = TaskPriority.NORMAL, timeout: float = 30.0, *,
                          max_retries: int = 3, task_id: str | None = None) -> str:
        task = SampleTask(task_id or str(uuid.uuid4()), user_id, request_type, request_data,
                          int(priority), max_retries=max_retries, timeout=timeout)
        await self.redis.lpush(self.queue_name(task.priority), task.to_json())
        self.stats["total_tasks"] += 1  # this process only: defect 10
        self.trace.add("submitted", task.task_id)
        return task.task_id

    async def get_task_status(self, task_id: str) -> dict[str, Any] | None:
        """Found only while running here, or after it ended (defect 8)."""
        if task_id in self.active_tasks:
            return dict(self.active_tasks[task_id].__dict__)
        raw = await self.redis.get(f"{self.namespace}:task_result:{task_id}")
        return json.loads(raw) if raw else None

    def get_stats(self) -> dict[str, Any]:
        """The chapter's figures: this process's counters; rates over all submitted."""
        stats: dict[str, Any] = dict(self.stats)
        total = stats["total_tasks"]
        stats["success_rate"] = stats["completed_tasks"] / total if total else 0.0
        stats["active_tasks_count"] = len(self.active_tasks)
        return stats

    async def queue_length(self) -> int:
        return sum([await self.redis.llen(self.queue_name(p)) for p in POLL_ORDER])

    async def _worker_loop(self) -> None:
        while self.running:
            task = await self._get_next_task()
            if task is None:
                await asyncio.sleep(0.1)  # defect 13: poll again
                continue
            await self._process_task(task)

    async def _get_next_task(self) -> SampleTask | None:
        for priority in POLL_ORDER:  # defect 2: one 1-second block per priority, in turn
            got = await self.redis.brpop([self.queue_name(priority)], timeout=1)
            if got:  # defect 3: the task has left Redis; it now lives only in this coroutine
                return SampleTask(**json.loads(got[1]))
        return None

    async def _process_task(self, task: SampleTask) -> None:
        task.status = "processing"
        self.active_tasks[task.task_id] = task
        self.trace.add("started", task.task_id)
        try:
            request = AIRequest(task.task_id, task.retry_count + 1, task.user_id,
                                task.request_type, task.request_data)
            task.result = await self.backend.complete(request)  # no timeout: defect 4
            task.status = "completed"
            await self.redis.set(f"{self.namespace}:task_result:{task.task_id}",
                                 task.to_json(), ex=3600)
            self.stats["completed_tasks"] += 1
            self.trace.add("completed", task.task_id)
        except Exception as exc:  # noqa: BLE001 - the chapter retries every error (defect 5)
            task.error_message = str(exc)
            self.trace.add("error", task.task_id)
            if task.retry_count < task.max_retries:
                task.retry_count += 1
                task.status = "retrying"  # re-queued at once, no backoff
                await self.redis.lpush(self.queue_name(task.priority), task.to_json())
            else:
                task.status = "failed"
                self.stats["failed_tasks"] += 1
                self.trace.add("failed", task.task_id)
        finally:
            self.active_tasks.pop(task.task_id, None)
