"""Wrong on purpose: strict priority, no aging; low priority waits behind every later
high-priority task."""

from typing import Any

from solutions import scheduling as ref


class IntelligentTaskScheduler(ref.IntelligentTaskScheduler):
    def score(self, task: Any, user_context: Any) -> float:
        return -self.calculate_task_priority(task, user_context) * 1e10 + task.created_at
