"""The workloads. Each takes the run context and an adapter class, returns its figures.

Every workload opens its own adapter under a fresh name (`<run id>-<queue>-<tag>`), so its
queue, keys and probe are its own, and in the end stops its workers and deletes its keys.
Timing uses `time.time()` (the worker processes stamp with the same wall clock).
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from benchmarks.adapters.base import QueueAdapter
from benchmarks.crash import kill_and_recover
from benchmarks.probe import Progress, read_progress
from benchmarks.procs import WorkerProcess, rss_kib, spawn_worker, stop_worker
from benchmarks.redis_tools import memory_usage, used_memory
from benchmarks.settings import (
    CRASH_TASKS,
    HOLD_IN_FLIGHT,
    HOLD_SECONDS,
    IN_FLIGHT,
    LONG_SLEEP_SECONDS,
    SLEEP_SECONDS,
    Sizes,
)

Figures = dict[str, float | None]
POLL_SECONDS = 0.01
FILL_CONCURRENCY = 50
READY_TIMEOUT = 30.0
LATENCY_WARMUP = 3


@dataclass
class RunContext:
    """What every workload needs: the runner's Redis client, the run id and the sizes."""

    client: aioredis.Redis
    redis_url: str
    run_id: str
    sizes: Sizes
    notes: list[str] = field(default_factory=list)
    #: figures that failed inside a workload whose other figures stand (key -> error)
    failures: dict[str, str] = field(default_factory=dict)


@dataclass
class Session:
    """One adapter under one name, its worker processes and its probe key."""

    ctx: RunContext
    adapter: QueueAdapter
    workers: list[WorkerProcess] = field(default_factory=list)

    @property
    def probe_key(self) -> str:
        return f"{self.adapter.name}:probe"

    def spawn(self, kind: str, count: int = 1, concurrency: int = IN_FLIGHT) -> float:
        """Start `count` worker processes; return the time the first was spawned."""
        argv = self.adapter.worker_argv(kind, concurrency, self.probe_key)
        started = [spawn_worker(argv) for _ in range(count)]
        self.workers += started
        return started[0].spawned_at

    async def progress(self) -> Progress:
        return await read_progress(self.ctx.client, self.probe_key)

    async def wait_until(self, done: Callable[[Progress], bool], timeout: float) -> Progress:
        """Poll the probe every 10 ms until `done(progress)`; fail if a worker dies."""
        deadline = time.monotonic() + timeout
        while True:
            progress = await self.progress()
            if done(progress):
                return progress
            for worker in self.workers:
                worker.check_alive()
            if time.monotonic() > deadline:
                logs = "\n".join(w.log_tail() for w in self.workers)
                raise TimeoutError(f"gave up after {timeout:.0f} s at {progress}\n{logs}")
            await asyncio.sleep(POLL_SECONDS)

    async def fill(self, count: int, indexed: bool = False) -> None:
        """Queue `count` tasks quickly (up to 50 submits in flight; not a timed figure);
        with `indexed`, task i carries the index i (else `enqueue()` gets no argument, so an
        adapter without the index parameter still runs every other workload)."""
        for start in range(0, count, FILL_CONCURRENCY):
            indices = range(start, min(start + FILL_CONCURRENCY, count))
            await asyncio.gather(
                *(self.adapter.enqueue(i) if indexed else self.adapter.enqueue() for i in indices)
            )


@asynccontextmanager
async def session(
    ctx: RunContext, adapter_cls: type[QueueAdapter], tag: str
) -> AsyncIterator[Session]:
    """Open an adapter under a fresh name; finally stop its workers and delete its keys."""
    adapter = adapter_cls(ctx.redis_url, f"{ctx.run_id}-{adapter_cls.label}-{tag}")
    current = Session(ctx, adapter)
    try:
        await adapter.open()
        yield current
    finally:
        for worker in current.workers:
            stop_worker(worker)
        try:
            await adapter.close()
        finally:
            await adapter.cleanup(ctx.client)


def _timeout_for(tasks: int, per_second: float = 50.0) -> float:
    return 60.0 + tasks / per_second


# --- 1. enqueue rate ---------------------------------------------------------------------


async def enqueue_rate(ctx: RunContext, adapter_cls: type[QueueAdapter]) -> Figures:
    """N submits awaited one after another; and N in batches if the API has batch submit."""
    n = ctx.sizes.tasks
    async with session(ctx, adapter_cls, "enqueue") as s:
        began = time.perf_counter()
        for _ in range(n):
            await s.adapter.enqueue()
        figures: Figures = {"enqueue_one": n / (time.perf_counter() - began)}
        try:
            figures["enqueue_batch"] = await _batch_rate(s.adapter, n, ctx.sizes.batch_size)
        except Exception as exc:  # noqa: BLE001 - keep the one-at-a-time figure
            ctx.failures["enqueue_batch"] = f"{type(exc).__name__}: {exc}"
    return figures


async def _batch_rate(adapter: QueueAdapter, n: int, batch_size: int) -> float | None:
    if not adapter.supports_batch:
        return None
    began = time.perf_counter()
    for start in range(0, n, batch_size):
        await adapter.enqueue_batch(min(batch_size, n - start))
    return n / (time.perf_counter() - began)


# --- 2. / 6. no-op throughput and scale-out ------------------------------------------------


async def drain(
    s: Session, kind: str, n: int, workers: int = 1, concurrency: int = IN_FLIGHT
) -> Figures:
    """Queue n tasks, spawn the workers, time until all n are done (probe counts)."""
    await s.fill(n)
    spawned = s.spawn(kind, count=workers, concurrency=concurrency)
    p = await s.wait_until(lambda p: p.done >= n, _timeout_for(n))
    if p.done > n:
        s.ctx.notes.append(f"{s.adapter.label}: {p.done - n} extra executions of {n} ({kind})")
    return {
        "total": n / (p.last_done - spawned),
        "steady": n / (p.last_done - p.first_start),
        "startup": p.first_start - spawned,
        "peak": p.peak,
    }


async def noop_throughput(ctx: RunContext, adapter_cls: type[QueueAdapter]) -> Figures:
    """N no-op tasks queued first, then one worker process with 100 in flight."""
    async with session(ctx, adapter_cls, "noop") as s:
        f = await drain(s, "noop", ctx.sizes.tasks)
    return {"noop_total": f["total"], "noop_steady": f["steady"], "startup_s": f["startup"]}


async def redis1_throughput(ctx: RunContext, adapter_cls: type[QueueAdapter]) -> Figures:
    """As no-op, but each task does one Redis command (INCR) with the probe's own client."""
    n = ctx.sizes.tasks
    async with session(ctx, adapter_cls, "redis1") as s:
        f = await drain(s, "redis1", n)
        counted = int(await ctx.client.get(f"{s.probe_key}:incr") or 0)
    if counted < n:
        raise RuntimeError(f"the tasks counted {counted} INCRs for {n} tasks done")
    return {"redis1_total": f["total"], "redis1_steady": f["steady"]}


async def scale_out(ctx: RunContext, adapter_cls: type[QueueAdapter]) -> Figures:
    """N no-op tasks drained by one, then (afresh) by two worker processes."""
    figures: Figures = {}
    for workers in (1, 2):
        async with session(ctx, adapter_cls, f"scale{workers}") as s:
            f = await drain(s, "noop", ctx.sizes.tasks, workers)
        figures[f"scale{workers}_total"] = f["total"]
        figures[f"scale{workers}_steady"] = f["steady"]
    figures["scale_speedup"] = figures["scale2_steady"] / figures["scale1_steady"]
    return figures


# --- 3. I/O efficiency ---------------------------------------------------------------------


async def io_efficiency(ctx: RunContext, adapter_cls: type[QueueAdapter]) -> Figures:
    """Tasks that each sleep 0.1 s, 100 in flight: throughput against the ideal 1,000/s."""
    ideal = IN_FLIGHT / SLEEP_SECONDS
    async with session(ctx, adapter_cls, "io") as s:
        f = await drain(s, "sleep", ctx.sizes.io_tasks)
    return {
        "io_total": f["total"],
        "io_steady": f["steady"],
        "io_efficiency": 100.0 * f["steady"] / ideal,
    }


async def io1000_efficiency(ctx: RunContext, adapter_cls: type[QueueAdapter]) -> Figures:
    """Tasks that each sleep 1 s, 1,000 in flight: throughput against the ideal 1,000/s.

    Efficiency is given from the first start (as for `io`) and from the worker's spawn
    (start-up included); `io1000_peak` shows whether the worker really held 1,000 at once.
    """
    ideal = HOLD_IN_FLIGHT / LONG_SLEEP_SECONDS
    async with session(ctx, adapter_cls, "io1000") as s:
        f = await drain(s, "sleep1", ctx.sizes.io1000_tasks, concurrency=HOLD_IN_FLIGHT)
    if f["peak"] < HOLD_IN_FLIGHT:
        ctx.notes.append(
            f"{adapter_cls.label}: io1000 held at most {f['peak']:.0f} tasks in flight, "
            f"not {HOLD_IN_FLIGHT}"
        )
    return {
        "io1000_total": f["total"],
        "io1000_steady": f["steady"],
        "io1000_efficiency": 100.0 * f["steady"] / ideal,
        "io1000_efficiency_total": 100.0 * f["total"] / ideal,
        "io1000_peak": f["peak"],
    }


# --- 4. pickup latency ---------------------------------------------------------------------


async def pickup_latency(ctx: RunContext, adapter_cls: type[QueueAdapter]) -> Figures:
    """Submit-to-start on an idle worker, each submit after the previous task started: the
    sizes' number of samples, or as many as the sizes' time budget allows."""
    async with session(ctx, adapter_cls, "latency") as s:
        s.spawn("stamp")
        await s.wait_until(lambda p: p.ready >= 1, READY_TIMEOUT)
        await _latencies(s, LATENCY_WARMUP)
        samples = await _latencies(s, ctx.sizes.latency_samples, ctx.sizes.latency_budget_s)
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {"latency_p50": cuts[49], "latency_p95": cuts[94], "latency_p99": cuts[98],
            "latency_samples": float(len(samples))}


async def _latencies(s: Session, count: int, budget_s: float = math.inf) -> list[float]:
    """Up to `count` submit-to-start times in milliseconds, one task at a time, taken
    within `budget_s` seconds (at least two)."""
    stamps = f"{s.probe_key}:stamps"
    result: list[float] = []
    deadline = time.monotonic() + budget_s
    for _ in range(count):
        if len(result) >= 2 and time.monotonic() > deadline:
            break
        submitted = time.time()
        await s.adapter.enqueue()
        popped = await s.ctx.client.blpop([stamps], timeout=10)
        if popped is None:
            for worker in s.workers:
                worker.check_alive()
            raise TimeoutError("a submitted task did not start within 10 s")
        result.append(1000.0 * (float(popped[1]) - submitted))
    return result


# --- 5. memory -----------------------------------------------------------------------------


async def memory(ctx: RunContext, adapter_cls: type[QueueAdapter]) -> Figures:
    """Redis bytes per queued task, and worker RSS per in-flight task."""
    figures = await _redis_bytes(ctx, adapter_cls)
    figures.update(await _worker_rss(ctx, adapter_cls))
    return figures


async def _redis_bytes(ctx: RunContext, adapter_cls: type[QueueAdapter]) -> Figures:
    """Queue N tasks (no worker, one at a time); MEMORY USAGE and used_memory per task."""
    n = ctx.sizes.tasks
    async with session(ctx, adapter_cls, "memory") as s:
        before = await used_memory(ctx.client)
        for _ in range(n):
            await s.adapter.enqueue()
        after = await used_memory(ctx.client)
        total, _keys = await memory_usage(ctx.client, s.adapter.name)
    return {"redis_bytes_usage": total / n, "redis_bytes_used_memory": (after - before) / n}


async def _worker_rss(ctx: RunContext, adapter_cls: type[QueueAdapter]) -> Figures:
    """RSS of a worker with 1 slot idle, with 1,000 slots idle, then with 1,000 tasks sleeping.

    Per in-flight task: (1,000 sleeping - 1,000 slots idle) / 1,000; a
    queue that sets up every slot at start (SAQ: a dequeue coroutine and a connection each)
    pays most of it while idle, so (1,000 sleeping - 1 slot idle) / 1,000 is shown too.
    """
    n = HOLD_IN_FLIGHT
    base = await _idle_rss(ctx, adapter_cls, concurrency=1)
    async with session(ctx, adapter_cls, "rss") as s:
        idle = await _spawn_idle(s, concurrency=n)
        await s.fill(n)
        await s.wait_until(lambda p: p.started >= n, HOLD_SECONDS - 1.0)
        await asyncio.sleep(0.3)
        busy = rss_kib(s.workers[0].pid)
        p = await s.progress()
        if p.in_flight != n:
            raise RuntimeError(f"expected {n} tasks in flight at the RSS reading, saw {p}")
    return {
        "rss_base_mib": base / 1024,
        "rss_idle_mib": idle / 1024,
        "rss_busy_mib": busy / 1024,
        "rss_per_task_kib": (busy - idle) / n,
        "rss_per_slot_kib": (busy - base) / n,
    }


async def _idle_rss(ctx: RunContext, adapter_cls: type[QueueAdapter], concurrency: int) -> int:
    async with session(ctx, adapter_cls, f"rss{concurrency}") as s:
        return await _spawn_idle(s, concurrency)


async def _spawn_idle(s: Session, concurrency: int) -> int:
    """Spawn one `hold` worker, let it settle for a second, return its RSS (KiB)."""
    s.spawn("hold", concurrency=concurrency)
    await s.wait_until(lambda p: p.ready >= 1, READY_TIMEOUT)
    await asyncio.sleep(1.0)
    return rss_kib(s.workers[0].pid)


# --- crash recovery ------------------------------------------------------------------------


async def crash(ctx: RunContext, adapter_cls: type[QueueAdapter]) -> Figures:
    """K indexed 2 s tasks running in one worker; SIGKILL it, start a fresh one, and wait
    until every index has completed (see `benchmarks.crash`)."""
    async with session(ctx, adapter_cls, "crash") as s:
        await s.fill(CRASH_TASKS, indexed=True)
        s.spawn("crash")
        await s.wait_until(lambda p: p.started >= CRASH_TASKS, READY_TIMEOUT)
        return await kill_and_recover(s, CRASH_TASKS, ctx.sizes.crash_wait_s)


WORKLOADS = {
    "enqueue": enqueue_rate,
    "noop": noop_throughput,
    "redis1": redis1_throughput,
    "io": io_efficiency,
    "io1000": io1000_efficiency,
    "latency": pickup_latency,
    "memory": memory,
    "scaleout": scale_out,
    "crash": crash,
}
