"""A live dashboard on the real Redis, watching a worker process it does not own: the
series come from the shared stats and the other process's events."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator

import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("ipywidgets")

from chatroom_async import AsyncAIProcessor  # noqa: E402
from chatroom_async.dashboard import LiveDashboard, LoadGenerator  # noqa: E402
from chatroom_async.dashboard.figure import COLORS  # noqa: E402
from chatroom_async.store.keys import Keys  # noqa: E402
from chatroom_async.store.queue import TaskQueue  # noqa: E402
from tests.conftest import REAL_URL, _real_client  # noqa: E402
from tests.test_dashboard import has_color, others_tasks, panel, pixels, wait_for  # noqa: E402

pytestmark = pytest.mark.real_redis


@pytest.fixture
async def real_namespace(namespace: str) -> AsyncIterator[str]:
    client = await _real_client()
    yield namespace
    await TaskQueue(client, Keys(namespace)).purge()
    await client.aclose()


async def test_dashboard_watches_a_worker_process(real_namespace: str) -> None:
    before = others_tasks()
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chatroom_async", "worker", "--redis-url", REAL_URL,
        "--namespace", real_namespace, "--concurrency", "3", "--backend", "sleep:0.05",
        stdout=asyncio.subprocess.PIPE)
    try:
        assert worker.stdout is not None
        line = await worker.stdout.readline()
        assert b"running 3 in flight" in line and b"loop=uvloop" in line  # dev has uvloop
        async with AsyncAIProcessor(REAL_URL, max_workers=0, namespace=real_namespace) as c:
            dash = LiveDashboard(c, interval_s=0.05, limit=3, render="thread")
            first = await dash.tick()
            load = LoadGenerator(c, rate=100.0, seed=1).start()
            await wait_for(dash, lambda: load.submitted >= 30)
            await load.stop()
            await wait_for(dash, lambda: dash.sampler.samples[-1].completed == load.submitted)
            await wait_for(dash, lambda: dash.sampler.heard["completed"] == load.submitted)
            last = await dash.tick()
            await dash.stop()
    finally:
        worker.send_signal(signal.SIGTERM)
        await worker.wait()
    assert first.completed == 0 and last.stats["worker_count"] == 0  # a client, no workers
    assert (last.stats["workers"], last.stats["worker_slots"]) == (1, 3)  # the process's
    assert last.completed == last.stats["completed_tasks"] == last.submitted
    assert max(s.in_flight for s in dash.sampler.samples) <= 3
    assert last.latency["processing"]["p50"] == pytest.approx(0.05, abs=0.04)
    rgb = pixels(dash.png())
    assert has_color(panel(rgb, 0, 0), COLORS["completed"])
    assert has_color(panel(rgb, 0, 2), COLORS["limit"])
    assert others_tasks() == before
