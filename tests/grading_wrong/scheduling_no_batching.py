"""Wrong on purpose: no batching, one call per request."""

from typing import Any

from solutions import scheduling as ref


class IntelligentTaskScheduler(ref.IntelligentTaskScheduler):
    async def call_batched(self, backend: Any, request: Any) -> Any:
        return await backend.complete(request)
