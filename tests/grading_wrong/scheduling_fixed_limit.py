"""Wrong on purpose: a fixed limit of 6 calls in flight, whatever the provider allows."""

import asyncio
from typing import Any

from solutions import scheduling as ref


class IntelligentTaskScheduler(ref.IntelligentTaskScheduler):
    async def call_backend(self, backend: Any, request: Any) -> Any:
        if not hasattr(self, "_fixed"):
            self._fixed = asyncio.Semaphore(6)
        async with self._fixed:
            return await backend.complete(request)
