"""`chatroom-async worker --backend openai` in its own process, calling sim-server over HTTP,
serves a queue on the real Redis: streamed progress and usage reach the submitting client."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("openai")
pytest.importorskip("uvicorn")

from chatroom_async import AsyncAIProcessor  # noqa: E402
from chatroom_async.store.keys import Keys  # noqa: E402
from chatroom_async.store.queue import TaskQueue  # noqa: E402
from tests.conftest import REAL_URL, _real_client, wait_until  # noqa: E402
from tests.providers.helpers import MODEL, serving  # noqa: E402

pytestmark = pytest.mark.real_redis


@pytest.fixture
async def real_namespace(namespace: str) -> AsyncIterator[str]:
    client = await _real_client()
    yield namespace
    await TaskQueue(client, Keys(namespace)).purge()
    await client.aclose()


async def test_a_worker_process_runs_tasks_through_sim_server(real_namespace: str) -> None:
    async with serving(api_key="sim-key") as server:
        env = {**os.environ, "OPENAI_API_KEY": "sim-key",
               "CHATROOM_ASYNC_OPENAI_BASE_URL": server.base_url}
        worker = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "chatroom_async", "worker", "--redis-url", REAL_URL,
            "--namespace", real_namespace, "--concurrency", "4", "--backend", "openai",
            "--model", MODEL, "--task-headers", env=env, stdout=asyncio.subprocess.DEVNULL)
        try:
            async with AsyncAIProcessor(REAL_URL, max_workers=0,
                                        namespace=real_namespace) as client:
                chunks: list[Any] = []
                got = asyncio.Event()
                client.add_callback("task_progress", lambda t: (chunks.append(t), got.set()))
                await client.hear_others()
                ids = [await client.submit_task(1, "chat_completion", {"message": f"你好 {i}"})
                       for i in range(3)]
                finals = [await client.wait_for_task(task_id, timeout=60) for task_id in ids]
                await wait_until(lambda: {c.task_id for c in chunks} == set(ids), got)
        finally:
            worker.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(worker.wait(), 30) == 0
    assert [f["status"] for f in finals] == ["completed"] * 3
    assert all(f["result"]["usage"]["completion_tokens"] > 0 for f in finals)
    assert {r.task_id for r in server.records} == set(ids)  # the task id went as a header
    assert all(r.stream and r.outcome == "ok" for r in server.records)
