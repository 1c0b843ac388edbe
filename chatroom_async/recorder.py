"""The simulator's recorder: turns the processor's events into task traces and the
queue / in-flight step function, and notes each successful backend call's time to first token.

Callbacks only: it never polls the processor or Redis, and it decides nothing about the
run. What it collects (`RunRecord`) is turned into figures by `chatroom_async.report`.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

from .backend import AIRequest
from .clock import LoopClock
from .processor import AsyncAIProcessor
from .report import RunRecord, TaskTrace
from .simulated import SimulatedAIBackend
from .task import AITask, TaskPriority

_CALL: contextvars.ContextVar[list[float] | None] = contextvars.ContextVar(
    "chatroom_async_sim_call", default=None)


class ProbeClock(LoopClock):
    """The backend's clock; notes the first wait of each call, which is its TTFT.

    Interim: SimulatedAIBackend has no per-call TTFT hook yet. A call sleeps its TTFT first
    (a hang sleeps too, but a hung call never succeeds, and only successes are kept).
    """

    async def sleep(self, seconds: float) -> None:
        box = _CALL.get()
        if box is not None and not box:
            box.append(max(0.0, seconds))
        await asyncio.sleep(max(0.0, seconds))


class ProbedBackend:
    """Wraps the simulated backend to record each successful call's TTFT by task id.

    With `streaming`, it also offers the backend's `stream()`; streamed calls are timed
    by their first `task_progress` event instead (see `Collector`).
    """

    def __init__(self, inner: SimulatedAIBackend, record: RunRecord, *,
                 streaming: bool = False) -> None:
        self.inner, self.record = inner, record
        if streaming:
            self.stream = inner.stream

    async def complete(self, request: AIRequest) -> dict[str, Any]:
        box: list[float] = []
        token = _CALL.set(box)
        try:
            result = await self.inner.complete(request)
        finally:
            _CALL.reset(token)
        trace = self.record.traces.get(request.task_id)
        if trace is not None:
            trace.ttft = box[0] if box else 0.0
        return result


class Collector:
    """Turns the processor's events into traces and the queue/in-flight step function."""

    def __init__(self, record: RunRecord, expected: int) -> None:
        self.record, self.expected = record, expected
        self.loop = asyncio.get_running_loop()
        self.submitted = self.in_flight = self.finished = 0
        self.all_done = asyncio.Event()

    def attach(self, processor: AsyncAIProcessor) -> None:
        events = ["task_started", "task_completed", "task_failed", "task_retrying",
                  "task_cancelled"]
        if processor.settings.stream:  # progress events cost a callback per chunk
            events.append("task_progress")
        for event in events:
            processor.add_callback(event, getattr(self, "on_" + event[5:]))

    def arrived(self, task_id: str, priority: TaskPriority) -> None:
        self.record.traces[task_id] = TaskTrace(self.loop.time(), priority.name.lower())
        self.submitted += 1
        self._step()

    def _step(self) -> None:
        r = self.record
        r.step_t.append(self.loop.time())
        r.step_queue.append(self.submitted - self.finished - self.in_flight)
        r.step_in_flight.append(self.in_flight)

    def on_started(self, task: AITask) -> None:
        trace = self.record.traces[task.task_id]
        now = self.loop.time()
        if trace.first_start is None:
            trace.first_start = now
        trace.attempt_start = now
        if not trace.running:  # a reclaimed task starts again without an end event
            trace.running = True
            self.in_flight += 1
        self._step()

    def on_progress(self, task: AITask) -> None:
        if task.progress is not None and task.progress.get("index") == 0:
            trace = self.record.traces[task.task_id]
            trace.ttft = self.loop.time() - (trace.attempt_start or 0.0)

    def _attempt_over(self, trace: TaskTrace, now: float) -> None:
        if trace.running:
            trace.running = False
            self.in_flight -= 1
            self.record.attempt_s.append(now - (trace.attempt_start or now))

    def on_retrying(self, task: AITask) -> None:
        trace = self.record.traces[task.task_id]
        self._attempt_over(trace, self.loop.time())
        trace.retries += 1
        kind = task.error_type or "unknown"
        self.record.retries_by_type[kind] = self.record.retries_by_type.get(kind, 0) + 1
        self._step()

    def _end(self, task: AITask, outcome: str) -> None:
        trace = self.record.traces[task.task_id]
        if trace.outcome is not None:
            return
        now = self.loop.time()
        self._attempt_over(trace, now)
        trace.finished, trace.outcome = now, outcome
        if outcome == "completed":
            trace.error_type = None
        else:
            trace.error_type = task.error_type or "unknown"
            trace.ttft = None
        self.finished += 1
        self._step()
        if self.finished >= self.expected:
            self.all_done.set()

    def on_completed(self, task: AITask) -> None:
        self._end(task, "completed")

    def on_failed(self, task: AITask) -> None:
        self._end(task, "failed")

    def on_cancelled(self, task: AITask) -> None:
        self._end(task, "cancelled")
