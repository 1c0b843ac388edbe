"""The simulator's recorder: turns the processor's events into task traces and the
queue / in-flight step function, and keeps each task's time to first token.

Callbacks only: it never polls the processor or Redis, and it decides nothing about the
run. The processor's events give the traces; the simulated backend's `on_first_token`
hook gives the TTFT. What it collects (`RunRecord`) is turned into figures by
`chatroom_async.report`.
"""

from __future__ import annotations

import asyncio

from ..backend import AIRequest
from ..processor import AsyncAIProcessor
from ..task import AITask, TaskPriority
from .report import RunRecord, TaskTrace


class Collector:
    """Turns the processor's events into traces and the queue/in-flight step function."""

    def __init__(self, record: RunRecord, expected: int) -> None:
        self.record, self.expected = record, expected
        self.loop = asyncio.get_running_loop()
        self.submitted = self.in_flight = self.finished = 0
        self.all_done = asyncio.Event()

    def attach(self, processor: AsyncAIProcessor) -> None:
        """Subscribe to the processor's lifecycle events.

        Not to `task_progress`, even when streaming: the TTFT comes from the backend's hook
        (`on_first_token`), and a callback per chunk would only cost time.
        """
        for event in ("task_started", "task_completed", "task_failed", "task_retrying",
                      "task_cancelled"):
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

    def on_first_token(self, request: AIRequest, ttft_s: float) -> None:
        """The simulated backend's `on_first_token` hook: the task's latest TTFT.

        Every attempt that gets a first token overwrites it, so a completed task keeps its
        successful attempt's; a task that ends otherwise drops it (see `_end`).
        """
        trace = self.record.traces.get(request.task_id)
        if trace is not None and trace.outcome is None:
            trace.ttft = ttft_s

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
