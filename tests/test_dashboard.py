"""The dashboards, driven against a processor on the embedded fakeredis (and one worker
process on the real Redis): their series match the processor's stats, the controls change
the load, the PNG has its six panels, and stopping leaves no task running."""

from __future__ import annotations

import asyncio
import io
import multiprocessing
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("ipywidgets")
from PIL import Image  # noqa: E402 - after the skips

from chatroom_async import (  # noqa: E402
    AIRequest,
    AsyncAIProcessor,
    ContentFilterError,
    FunctionBackend,
    ProcessorSettings,
    RateLimitError,
    RetryPolicy,
    TaskPriority,
)
from chatroom_async.dashboard import Lab, LiveDashboard  # noqa: E402
from chatroom_async.dashboard.figure import COLORS, DPI, SIZE_IN  # noqa: E402

FAST_RETRY = ProcessorSettings(retry=RetryPolicy(base_s=0.01, jitter="none"), stream=False)


def pixels(png: bytes) -> np.ndarray:
    """The PNG as an RGB array (through numpy, not Pillow's deprecated getdata)."""
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(png)) as img:
        return np.asarray(img.convert("RGB")).astype(int)


def has_color(rgb: np.ndarray, hex_color: str, tolerance: int = 12, least: int = 20) -> bool:
    want = np.array([int(hex_color[i:i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(rgb - want).max(axis=-1) <= tolerance).sum()) >= least


def panel(rgb: np.ndarray, row: int, col: int) -> np.ndarray:
    """One of the 2 x 3 panels (below the title band)."""
    h, w = rgb.shape[:2]
    top = int(h * 0.12)
    ph, pw = (h - top) // 2, w // 3
    return rgb[top + row * ph: top + (row + 1) * ph, col * pw: (col + 1) * pw]


def others_tasks() -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


class Scripted:
    """A backend: tasks named block* wait for `release`; rl* answer 429 on their first
    call; bad* are refused by the content filter; the rest answer at once."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.limited: set[str] = set()
        self.backend = FunctionBackend(self.call)

    async def call(self, req: AIRequest) -> dict[str, Any]:
        if req.task_id.startswith("block"):
            await self.release.wait()
        if req.task_id.startswith("rl") and req.task_id not in self.limited:
            self.limited.add(req.task_id)
            raise RateLimitError("1302 too many in flight", code="1302", retry_after=0.01)
        if req.task_id.startswith("bad"):
            raise ContentFilterError("1301 blocked")
        return {"response": "ok"}


async def wait_for(dash: LiveDashboard, predicate: Callable[[], bool], timeout: float = 20) -> None:
    """Until `predicate()` holds, frame by frame (no sleeping)."""
    await dash.wait_until(lambda _: predicate(), timeout)


async def test_series_match_the_processor_stats() -> None:
    script = Scripted()
    async with AsyncAIProcessor(max_workers=2, backend=script.backend,
                                settings=FAST_RETRY) as p:
        dash = LiveDashboard(p, interval_s=0.05, render="thread")
        first = await dash.tick()
        prios = [TaskPriority.URGENT, TaskPriority.HIGH, TaskPriority.NORMAL, TaskPriority.LOW,
                 TaskPriority.LOW, TaskPriority.NORMAL]
        for i, prio in enumerate(prios):
            await p.submit_task(1, "chat_completion", {"message": "q"}, priority=prio,
                                task_id=f"block{i}")
        await wait_for(dash, lambda: dash.sampler.samples[-1].in_flight == 2)
        blocked = dash.sampler.samples[-1]
        stats = blocked.stats
        assert blocked.queue == {"urgent": 0, "high": 0, "normal": 2, "low": 2, "retry wait": 0}
        assert blocked.queue["low"] == stats["queue_depth"]["low"] and blocked.limit == 2
        script.release.set()
        for i in range(3):
            await p.submit_task(1, "chat_completion", {"message": "q"}, task_id=f"rl{i}")
        await p.submit_task(1, "chat_completion", {"message": "q"}, task_id="bad0")
        await wait_for(dash, lambda: dash.sampler.samples[-1].completed == 9
                       and dash.sampler.samples[-1].failed == 1)
        last = await dash.tick()
        stats = await p.get_stats()
        await dash.stop()
    assert first.completed == 0
    assert (last.completed, last.failed, last.in_flight) == (9, 1, 0)
    assert last.completed == stats["completed_tasks"] and last.retried == stats["retried_tasks"]
    frame = dash.sampler.frame()
    samples = list(dash.sampler.samples)
    area = sum(rate * (b.t - a.t) for rate, a, b in zip(frame.completed_per_s[1:], samples,
                                                           samples[1:], strict=False))
    assert area == pytest.approx(last.completed - first.completed)
    assert dash.sampler.retries_by_kind == {"RateLimitError": 3} == {
        "RateLimitError": stats["retried_tasks"]}
    assert dash.sampler.failures_by_kind == {"ContentFilterError": 1}
    limited = sum(rate * (b.t - a.t) for rate, a, b in zip(frame.rate_limited_per_s[1:], samples,
                                                            samples[1:], strict=False))
    assert last.rate_limited == 3 and limited == pytest.approx(3)
    waits = last.latency["queue wait"]
    assert waits["p50"] is not None and waits["p50"] <= waits["p95"] <= waits["p99"]
    assert last.latency["processing"]["p99"] is not None


async def test_png_has_the_six_panels() -> None:
    script = Scripted()
    script.release.set()
    async with AsyncAIProcessor(max_workers=2, backend=script.backend,
                                settings=FAST_RETRY) as p:
        dash = LiveDashboard(p, interval_s=0.05, render="thread")
        await dash.tick()
        for i in range(4):
            await p.submit_task(1, "chat_completion", {"message": "q"}, task_id=f"rl{i}")
        await p.submit_task(1, "chat_completion", {"message": "q"}, task_id="bad")
        await wait_for(dash, lambda: dash.sampler.samples[-1].completed == 4
                       and dash.sampler.samples[-1].failed == 1)
        await dash.stop()
    rgb = pixels(dash.png())
    assert rgb.shape == (round(SIZE_IN[1] * DPI), round(SIZE_IN[0] * DPI), 3)
    assert (rgb.sum(axis=-1) < 600).mean() > 0.03  # not blank: text, axes, lines
    assert has_color(panel(rgb, 0, 0), COLORS["completed"])  # throughput line
    assert has_color(panel(rgb, 0, 2), COLORS["in flight"])
    assert has_color(panel(rgb, 0, 2), COLORS["limit"])  # the concurrency limit
    assert has_color(panel(rgb, 1, 1), COLORS["retries"], least=200)  # retry bars
    assert has_color(panel(rgb, 1, 1), COLORS["failures"], least=200)
    assert has_color(panel(rgb, 1, 2), COLORS["429"])  # 429s per second
    assert not has_color(panel(rgb, 0, 0), COLORS["429"])  # each colour in its panel
    assert "stopped" in dash.label.value and "completed 4" in dash.label.value


async def test_background_redraws_and_stops_cleanly() -> None:
    before = others_tasks()
    async with AsyncAIProcessor(max_workers=2) as p:
        dash = LiveDashboard(p, interval_s=0.01).start()  # frames in a worker process
        assert dash.running
        while not (dash.renderer.ready and dash.draws >= 3):
            await dash.next_frame()
        assert multiprocessing.active_children()
        await dash.stop()
        assert not dash.running
        assert not [t for t in others_tasks() if t.get_name() == "chatroom_async.dashboard"]
        draws = dash.draws
    assert draws >= 4  # the last one inside stop()
    assert others_tasks() == before and not multiprocessing.active_children()


async def test_stopping_the_processor_ends_the_dashboard() -> None:
    before = others_tasks()
    p = AsyncAIProcessor(max_workers=1)
    await p.start()
    dash = LiveDashboard(p, interval_s=0.01, render="thread").start()
    await dash.next_frame()
    await p.stop()
    while dash.running:
        await dash.next_frame()
    assert dash.error is not None and "not running" in dash.label.value
    await dash.stop()  # still fine: draws what it has
    assert others_tasks() == before


async def test_lab_controls_change_the_load() -> None:
    before = others_tasks()
    lab = await Lab(rate=20.0, concurrency=2, latency="fast", interval_s=0.05, seed=3,
                    render="thread").start()
    c = lab.controls
    dash = lab.dashboard
    await wait_for(dash, lambda: dash.sampler.samples[-1].completed >= 5)
    c.rate.value = 40.0
    assert lab.load.rate == 40.0
    c.concurrency.value = 6
    await lab.settle()
    assert lab.workers is not None and lab.workers.max_workers == 6 and lab.restarts == 1
    await wait_for(dash, lambda: dash.sampler.samples[-1].in_flight > 2)
    assert dash.sampler.samples[-1].limit == 6
    c.provider_limit.value = 1  # the provider now answers 429 beyond one call in flight
    await wait_for(dash, lambda: dash.sampler.rate_limited >= 3)
    assert lab.backend.settings.max_concurrency == 1
    c.failure_rate.value = 0.2
    c.latency.value = "slow"
    c.rpm.value = 600
    s = lab.backend.settings
    assert (s.failure_rate, s.ttft_p50_s, s.rpm) == (0.2, 1.5, 600.0)
    c.load.value = False
    await lab.settle()
    assert not lab.load.running
    submitted = (await lab.client.get_stats())["total_tasks"]
    assert submitted == lab.load.submitted
    await lab.stop()
    assert others_tasks() == before
    assert "stopped" in dash.label.value and has_color(pixels(dash.png()), COLORS["429"])
