"""Scheduling policy: the order of the ready queue, as a number per task.

The ready queue is a Redis sorted set; a worker always claims the lowest score. A scheduler
computes that score when a task enters the queue (at submit, and again when a retry or a
released task comes back), from the task and, optionally, a context about its user. Ties
run in task-id order. Because a score is computed once, a policy that should age waiting
tasks expresses it as a deadline: `score = created_at + allowance`, earliest deadline first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from .task import AITask, TaskPriority

#: Width of one priority band in the default score: longer than any epoch time in seconds,
#: so every URGENT task sorts before every HIGH one, and FIFO holds inside a band.
PRIORITY_BAND = 1e10


@runtime_checkable
class Scheduler(Protocol):
    """A scheduling policy. Lower scores run first.

    `score` must be pure and fast: it runs on every submit. `user_context` is whatever the
    processor's `user_context` provider returned for `task.user_id` (empty by default); the
    intelligent-scheduling exercise fills it with a user's tier and history.
    """

    def score(self, task: AITask, user_context: Mapping[str, Any]) -> float:
        """The task's place in the ready queue."""
        ...


class PriorityScheduler:
    """The chapter's policy: strict priority, URGENT first, FIFO within a priority."""

    def score(self, task: AITask, user_context: Mapping[str, Any]) -> float:
        return (TaskPriority.URGENT - task.priority) * PRIORITY_BAND + task.created_at
