"""Every attempt reaches the backend with its own number, rate-limited attempts included:
the simulator draws an outcome by (task, attempt), so a repeated number repeats a 429."""

from __future__ import annotations

from typing import Any

from chatroom_async import AIRequest, FunctionBackend, RateLimitError, RetryPolicy
from tests.conftest import MakeProcessor


async def test_rate_limited_attempts_are_numbered_like_any_other(
        make_processor: MakeProcessor) -> None:
    seen: list[int] = []

    async def limited_twice(request: AIRequest) -> dict[str, Any]:
        seen.append(request.attempt)
        if len(seen) <= 2:
            raise RateLimitError("slow down", retry_after=0.01)
        if len(seen) == 3:
            raise ConnectionError("reset")  # an ordinary retryable error
        return {"response": "ok"}

    proc = await make_processor(max_workers=1, backend=FunctionBackend(limited_twice),
                                retry=RetryPolicy(base_s=0.01, cap_s=0.02, jitter="none"))
    task_id = await proc.submit_task(1, "chat_completion", {"message": "hi"}, max_retries=1)
    final = await proc.wait_for_task(task_id, timeout=10)
    assert final["status"] == "completed"
    assert seen == [1, 2, 3, 4]
