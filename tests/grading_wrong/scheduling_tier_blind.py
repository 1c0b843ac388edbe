"""Wrong on purpose: the user's tier is ignored; only the task's own priority counts."""

from typing import Any

from solutions import scheduling as ref


class IntelligentTaskScheduler(ref.IntelligentTaskScheduler):
    def calculate_task_priority(self, task: Any, user_context: Any) -> float:
        return super().calculate_task_priority(task, {**user_context, "tier": "free"})
