"""Worker processes on the real Redis: a SIGKILLed worker's tasks all run again elsewhere,
and the command line drives a shared queue."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator

import pytest
import redis as sync_redis

from chatroom_async import AsyncAIProcessor, ProcessorSettings
from chatroom_async.cli import main as cli_main
from chatroom_async.store.keys import Keys
from chatroom_async.store.queue import TaskQueue
from tests.conftest import REAL_URL, _real_client, wait_until

pytestmark = pytest.mark.real_redis


@pytest.fixture
async def real_namespace(namespace: str) -> AsyncIterator[str]:
    client = await _real_client()
    yield namespace
    await TaskQueue(client, Keys(namespace)).purge()
    await client.aclose()


async def test_sigkilled_worker_loses_nothing(real_namespace: str) -> None:
    settings = ProcessorSettings(lease_s=1.0)
    client = AsyncAIProcessor(REAL_URL, max_workers=0, namespace=real_namespace)
    await client.start()
    started: set[str] = set()
    seen = asyncio.Event()
    client.add_callback("task_started", lambda t: (started.add(t.task_id), seen.set()))
    ids = [await client.submit_task(1, "chat_completion", {"message": f"m{i}"}) for i in range(6)]
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chatroom_async", "worker", "--redis-url", REAL_URL,
        "--namespace", real_namespace, "--concurrency", "6", "--backend", "sleep:600",
        "--lease", "1.0", stdout=asyncio.subprocess.DEVNULL)
    try:
        await wait_until(lambda: started == set(ids), seen, timeout=30)
    finally:
        worker.send_signal(signal.SIGKILL)
        await worker.wait()
    assert worker.returncode == -signal.SIGKILL
    assert (await client.get_stats())["active_tasks_count"] == 6
    async with AsyncAIProcessor(REAL_URL, max_workers=6, namespace=real_namespace,
                                settings=settings) as rescuer:
        finals = [await rescuer.wait_for_task(task_id, timeout=30) for task_id in ids]
        stats = await rescuer.get_stats()
    await client.stop()
    assert [f["status"] for f in finals] == ["completed"] * 6
    assert all(f["deliveries"] == 2 for f in finals)
    assert stats["reclaimed_tasks"] == 6 and stats["completed_tasks"] == 6


def test_command_line_submit_status_cancel_stats(real_namespace: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--redis-url", REAL_URL, "--namespace", real_namespace]
    assert cli_main(["submit", *common, "--data", '{"message": "你好"}', "--priority", "high"]) == 0
    task_id = json.loads(capsys.readouterr().out)["task_id"]
    assert cli_main(["status", *common, task_id]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["status"] == "pending" and status["priority"] == 3
    assert cli_main(["cancel", *common, task_id]) == 0
    assert json.loads(capsys.readouterr().out) is True
    assert cli_main(["cancel", *common, task_id]) == 1  # already finished
    capsys.readouterr()
    assert cli_main(["stats", *common]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["total_tasks"] == 1 and stats["cancelled_tasks"] == 1
    assert cli_main(["status", *common, "nope"]) == 4  # no such task: see cli_errors
    keys = sync_redis.Redis.from_url(REAL_URL)
    assert keys.exists(Keys(real_namespace).task(task_id))
    keys.close()


async def test_cancel_reaches_a_task_running_in_another_os_process(real_namespace: str) -> None:
    client = AsyncAIProcessor(REAL_URL, max_workers=0, namespace=real_namespace)
    await client.start()
    seen = asyncio.Event()
    started: list[str] = []
    client.add_callback("task_started", lambda t: (started.append(t.task_id), seen.set()))
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chatroom_async", "worker", "--redis-url", REAL_URL,
        "--namespace", real_namespace, "--concurrency", "1", "--backend", "sleep:600",
        stdout=asyncio.subprocess.DEVNULL)
    try:
        long_one = await client.submit_task(1, "chat_completion", {"message": "long"})
        await wait_until(lambda: started == [long_one], seen, timeout=30)
        queued = await client.submit_task(1, "chat_completion", {"message": "next"},
                                          timeout=0.5, max_retries=0)
        assert await client.cancel_task(long_one) is True
        # The worker has one slot: the next task can start only if the cancelled coroutine
        # in the other process really stopped and freed it.
        await wait_until(lambda: queued in started, seen, timeout=30)
        final = await client.wait_for_task(queued, timeout=30)
        assert final["error_type"] == "AITimeoutError"  # it ran there, and slept past 0.5 s
        assert (await client.get_task_status(long_one))["status"] == "cancelled"  # type: ignore[index]
    finally:
        worker.send_signal(signal.SIGTERM)
        await worker.wait()
        await client.stop()
    assert worker.returncode == 0  # SIGTERM is a graceful stop
