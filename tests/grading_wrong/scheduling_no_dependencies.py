"""Wrong on purpose: dependencies are ignored, every task is submitted at once."""

from typing import Any

from solutions import scheduling as ref


class IntelligentTaskScheduler(ref.IntelligentTaskScheduler):
    async def submit(self, processor: Any, request: Any, depends_on: Any = ()) -> str:
        return await super().submit(processor, request, ())
