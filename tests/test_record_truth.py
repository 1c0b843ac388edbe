"""The record and the statistics tell the current truth (issue 11): no stale error on a task
that completed or was cancelled, one meaning for `dead_lettered`, hand-backs counted."""

from __future__ import annotations

import asyncio
from typing import Any

from chatroom_async import AIRequest, FunctionBackend, RetryPolicy, ServerError
from tests.conftest import MakeProcessor

CHAT: dict[str, Any] = {"user_id": 1, "request_type": "chat_completion",
                        "request_data": {"message": "hi"}}
SLOW_RETRY = RetryPolicy(base_s=30.0, cap_s=30.0, jitter="none")


async def test_a_cancelled_retrying_task_has_no_error(make_processor: MakeProcessor) -> None:
    async def broken(request: AIRequest) -> dict[str, Any]:
        raise ServerError("down")

    proc = await make_processor(max_workers=1, backend=FunctionBackend(broken), retry=SLOW_RETRY)
    task_id = await proc.submit_task(**CHAT)
    retrying = asyncio.Event()
    proc.add_callback("task_retrying", lambda task: retrying.set())
    async with asyncio.timeout(10):
        await retrying.wait()
    status = await proc.get_task_status(task_id)
    assert status is not None and status["error_type"] == "ServerError"  # why it waits
    assert await proc.cancel_task(task_id) is True
    final = await proc.wait_for_task(task_id, timeout=10)
    assert final["status"] == "cancelled"
    assert final["error_type"] is None and final["error_message"] is None


async def test_dead_lettered_counts_every_task_in_the_dead_letter_list(
        make_processor: MakeProcessor) -> None:
    async def broken(request: AIRequest) -> dict[str, Any]:
        raise ServerError("down")

    proc = await make_processor(max_workers=2, backend=FunctionBackend(broken))
    ids = [await proc.submit_task(**CHAT, max_retries=0) for _ in range(3)]
    for task_id in ids:
        assert (await proc.wait_for_task(task_id, timeout=10))["status"] == "failed"
    stats = await proc.get_stats()
    assert sorted(await proc.dead_letters()) == sorted(ids)
    assert stats["dead_lettered"] == stats["dead_letters"] == stats["failed_tasks"] == 3
    assert stats["delivery_limit_exceeded"] == 0
