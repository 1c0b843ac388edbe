"""`Lab`: a processor, a simulated provider, a load generator, a live dashboard and the
controls that change them while they run, in one object a notebook cell displays.

The lab's client (`max_workers=0`) owns the Redis connection (the embedded fakeredis by
default); it submits the load and is the only thing the dashboard reads, through stats and
events, exactly as it would watch worker processes elsewhere. The workers are a second
processor on the same connection and namespace: a new concurrency restarts them (the old
ones hand their unfinished tasks back to the queue). Provider settings change in place
through `SimulatedAIBackend.update`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine
from typing import Any

import ipywidgets as widgets  # type: ignore[import-untyped]

from chatroom_async import AsyncAIProcessor, ProcessorSettings, SimulatedAIBackend

from .live import LiveDashboard
from .load import LoadGenerator

#: Latency profiles of the simulated provider (SimSettings fields).
LATENCY_PROFILES: dict[str, dict[str, Any]] = {
    "fast": {"ttft_p50_s": 0.1, "ttft_p99_s": 0.4, "output_tps_p50": 300.0,
             "output_tokens_p50": 60.0},
    "realistic": {"ttft_p50_s": 0.45, "ttft_p99_s": 1.8, "output_tps_p50": 70.0,
                  "output_tokens_p50": 150.0},
    "slow": {"ttft_p50_s": 1.5, "ttft_p99_s": 6.0, "output_tps_p50": 30.0,
             "output_tokens_p50": 150.0},
}


class Lab:
    """Watch and steer a processor under load.

    Args:
        redis_url: None for the embedded fakeredis, or a Redis URL.
        concurrency: the workers' `max_workers`.
        rate: the load's arrivals per second.
        latency: a key of `LATENCY_PROFILES`.
        failure_rate: the provider's random fault rate per attempt.
        provider_limit: the provider's concurrency cap (429 beyond it); None for none.
        rpm: the provider's requests per minute (429 beyond it); None for none.
        seed: seeds the provider, the load and the processors.
        interval_s: seconds between dashboard frames.
        render: where frames are drawn, "process" or "thread" (see `LiveDashboard`).
    """

    def __init__(self, redis_url: str | None = None, *, concurrency: int = 4,
                 rate: float = 8.0, latency: str = "fast", failure_rate: float = 0.0,
                 provider_limit: int | None = None, rpm: float | None = None, seed: int = 0,
                 interval_s: float = 2.0, render: str = "process") -> None:
        self.namespace = f"lab-{uuid.uuid4().hex[:12]}"
        self.seed, self.concurrency = seed, concurrency
        self.backend = SimulatedAIBackend(seed=seed, soft_capacity=1000.0,
                                          max_concurrency=provider_limit, rpm=rpm,
                                          failure_rate=failure_rate, **LATENCY_PROFILES[latency])
        self.latency = latency
        self.client = AsyncAIProcessor(redis_url, max_workers=0, namespace=self.namespace)
        self.workers: AsyncAIProcessor | None = None
        self.load = LoadGenerator(self.client, rate, seed=seed)
        self.dashboard = LiveDashboard(self.client, interval_s=interval_s,
                                       limit=lambda: self.concurrency,
                                       title="chatroom_async: live processor", render=render)
        self.restarts = 0
        self._lock = asyncio.Lock()
        self._pending: set[asyncio.Task[Any]] = set()
        from .controls import Controls  # the widgets call back into this lab

        self.controls = Controls(self)
        self.widget = widgets.VBox([self.controls.widget, self.dashboard.widget])

    async def start(self, *, load: bool = True) -> Lab:
        """Start the client, the workers, the dashboard and (unless `load=False`) the load."""
        await self.client.start()
        await self._start_workers()
        self.dashboard.start()
        if load:
            self.load.start()
        self.controls.refresh()
        return self

    async def _start_workers(self) -> None:
        self.workers = AsyncAIProcessor(
            max_workers=self.concurrency, backend=self.backend, namespace=self.namespace,
            redis=self.client.redis, seed=self.seed + self.restarts,
            settings=ProcessorSettings(stream=False, drain_timeout_s=1.0))
        await self.workers.start()

    async def set_concurrency(self, n: int) -> None:
        """Restart the workers with `n` in flight; unfinished tasks go back to the queue."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"concurrency must be an int >= 1, got {n!r}")
        async with self._lock:
            if n == self.concurrency and self.workers is not None:
                return
            if self.workers is not None:
                await self.workers.stop(drain_timeout_s=0)
            self.concurrency = n
            self.restarts += 1
            await self._start_workers()

    def set_provider(self, **changes: Any) -> None:
        """Change the simulated provider's settings (`SimSettings` fields) now."""
        self.backend.update(**changes)

    def set_latency(self, name: str) -> None:
        """Switch the provider to a latency profile of `LATENCY_PROFILES`."""
        if name not in LATENCY_PROFILES:
            raise ValueError(f"unknown latency profile {name!r}; one of {list(LATENCY_PROFILES)}")
        self.backend.update(**LATENCY_PROFILES[name])
        self.latency = name

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a control's coroutine in the background, keeping a reference until it ends."""
        task = asyncio.get_running_loop().create_task(coro)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def settle(self) -> None:
        """Wait until every control change started so far has been applied."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def stop(self) -> None:
        """Stop the load, draw the dashboard's last frame, stop the processors."""
        await self.load.stop()
        await self.settle()
        await self.dashboard.stop()
        if self.workers is not None:
            await self.workers.stop(drain_timeout_s=0)
        await self.client.stop()
        self.controls.refresh()

    async def __aenter__(self) -> Lab:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)
