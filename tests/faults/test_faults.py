"""Fault tests: several `chatroom-async worker` processes under load on a real redis-server
of the tests' own, through repeated kills, connection kills, CLIENT PAUSE, a server crash
and restart from its AOF, SIGTERM and SIGINT during a drain, and a cancel race. Each ends
with every task terminal and the counts reconciled: submitted == completed + failed +
cancelled, and no task ran more often than its deliveries say."""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from chatroom_async import AsyncAIProcessor
from tests.conftest import wait_until
from tests.faults.conftest import Fleet, RedisServer

pytestmark = pytest.mark.real_redis

TERMINAL = {"completed", "failed", "cancelled"}
STOPPED = re.compile(r"stopped: (\d+) running tasks ended during the drain, (\d+) handed back")


class Load:
    """A namespace, its fleet, and a client that counts the task_started events it hears."""

    def __init__(self, server: RedisServer, namespace: str, folder: Path,
                 sleep_s: float) -> None:
        self.server = server
        self.fleet = Fleet(server.url, namespace, folder, sleep_s)
        self.client = AsyncAIProcessor(server.url, max_workers=0, namespace=namespace)
        self.started = 0
        self.heard = asyncio.Event()
        self.ids: list[str] = []

    def _on_started(self, _task: Any) -> None:
        self.started += 1
        self.heard.set()

    async def begin(self, tasks: int, workers: int, **worker_options: Any) -> None:
        self.client.add_callback("task_started", self._on_started)
        await self.client.start()
        for _ in range(workers):
            await self.fleet.spawn(**worker_options)
        self.ids = await self.client.submit_many(
            [{"user_id": i % 7 + 1, "request_type": "chat_completion",
              "request_data": {"message": f"m{i}"}} for i in range(tasks)])

    async def until_started(self, n: int) -> None:
        await wait_until(lambda: self.started >= n, self.heard, timeout=30)

    async def settle(self, handed_back: int = 0) -> dict[str, Any]:
        """Wait (event-driven) for every task's end, on a fresh client; check the counts."""
        async with AsyncAIProcessor(self.server.url, max_workers=0,
                                    namespace=self.fleet.namespace) as fresh:
            finals = await asyncio.gather(*(fresh.wait_for_task(t, timeout=40)
                                            for t in self.ids))
            stats = await fresh.get_stats()
        redis = Redis.from_url(self.server.url, decode_responses=True)
        runs = {k: int(v) for k, v in (await redis.hgetall(f"{self.fleet.namespace}-runs"))
                .items()}
        await redis.aclose()
        by_status = {s: sum(f["status"] == s for f in finals) for s in TERMINAL}
        assert sum(by_status.values()) == len(self.ids), "every task ends"
        assert stats["total_tasks"] == len(self.ids)
        assert (stats["completed_tasks"], stats["failed_tasks"], stats["cancelled_tasks"]) == \
            (by_status["completed"], by_status["failed"], by_status["cancelled"])
        assert stats["in_flight"] == 0 and stats["current_queue_size"] == 0
        over = {f["task_id"]: (runs.get(f["task_id"], 0), f["deliveries"]) for f in finals
                if runs.get(f["task_id"], 0) > f["deliveries"]}
        assert sum(r - d for r, d in over.values()) <= handed_back, over
        return {"finals": finals, "stats": stats, "runs": runs, "by_status": by_status}

    async def close(self) -> None:
        await self.client.stop()
        for proc in self.fleet.procs:
            await self.fleet.stop(proc)
        await self.fleet.close()


@pytest.fixture
async def load(server: RedisServer, namespace: str, tmp_path: Path) -> AsyncIterator[Any]:
    made: list[Load] = []

    def make(sleep_s: float = 0.25) -> Load:
        made.append(Load(server, namespace, tmp_path, sleep_s))
        return made[-1]

    yield make
    for each in made:
        await each.close()


async def test_repeated_kills_with_replacements(load: Any) -> None:
    run = load()
    await run.begin(tasks=48, workers=3)
    for k in range(3):
        await run.until_started(8 * (k + 1))
        victim = run.fleet.procs[k]
        assert await run.fleet.stop(victim, signal.SIGKILL) == -signal.SIGKILL
        await run.fleet.spawn()
    result = await run.settle()
    assert result["by_status"]["completed"] == 48
    assert result["stats"]["reclaimed_tasks"] >= 1  # the killed ones held tasks


async def test_connection_kills(load: Any) -> None:
    run = load()
    await run.begin(tasks=48, workers=3)
    admin = Redis.from_url(run.server.url, decode_responses=True)
    for k in range(3):
        await run.until_started(10 * (k + 1))
        killed = await admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        killed += await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        assert killed >= 3
    await admin.aclose()
    result = await run.settle()
    assert result["by_status"]["completed"] == 48


async def test_client_pause(load: Any) -> None:
    run = load()
    await run.begin(tasks=48, workers=3)
    await run.until_started(10)
    admin = Redis.from_url(run.server.url, decode_responses=True)
    await admin.execute_command("CLIENT", "PAUSE", "1500", "ALL")
    await admin.aclose()
    result = await run.settle()
    assert result["by_status"]["completed"] == 48


async def test_a_redis_server_crash_and_restart_from_its_aof(load: Any) -> None:
    run = load()
    await run.begin(tasks=48, workers=3)
    await run.until_started(12)
    run.server.crash()
    await asyncio.to_thread(run.server.start)  # same port, same AOF
    result = await run.settle()
    assert result["by_status"]["completed"] == 48


async def test_sigterm_and_sigint_during_a_drain(load: Any) -> None:
    run = load(sleep_s=0.6)
    await run.begin(tasks=24, workers=0)
    patient = await run.fleet.spawn(drain=10.0)  # its running tasks finish
    hasty = await run.fleet.spawn(drain=0.05)  # its running tasks go back to the queue
    await run.until_started(8)
    codes = await asyncio.gather(run.fleet.stop(patient, signal.SIGTERM),
                                 run.fleet.stop(hasty, signal.SIGINT))
    assert codes == [0, 0]  # both are graceful stops
    lines = [STOPPED.search(log.read_text()) for log in run.fleet.logs]
    assert all(lines), [log.read_text() for log in run.fleet.logs]
    (drained, kept), (_, handed) = [(int(m[1]), int(m[2])) for m in lines if m]
    assert drained >= 1 and kept == 0 and handed >= 1
    await run.fleet.spawn()  # the rest, and what was handed back
    result = await run.settle(handed_back=handed)
    assert result["by_status"]["completed"] == 24


async def test_a_cancel_race_across_processes(load: Any) -> None:
    run = load(sleep_s=0.3)
    await run.begin(tasks=40, workers=3)
    await run.until_started(6)
    targets = run.ids[::2]
    async with AsyncAIProcessor(run.server.url, max_workers=0,
                                namespace=run.fleet.namespace) as other:
        mine, theirs = await asyncio.gather(
            asyncio.gather(*(run.client.cancel_task(t) for t in targets)),
            asyncio.gather(*(other.cancel_task(t) for t in reversed(targets))))
    theirs = list(reversed(theirs))
    assert not any(a and b for a, b in zip(mine, theirs, strict=True))  # one winner at most
    result = await run.settle()
    final = {f["task_id"]: f["status"] for f in result["finals"]}
    won = {t for t, a, b in zip(targets, mine, theirs, strict=True) if a or b}
    assert {t for t, s in final.items() if s == "cancelled"} == won
    assert all(final[t] == "completed" for t in set(run.ids) - won)
    assert result["by_status"]["cancelled"] >= 1
